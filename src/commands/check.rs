//! The `check` command: every probe of every target once, recorded like the daemon records
//! them, printed one line per probe (or as JSON), with the Nagios exit code of the worst.

use super::Exit;
use crate::catalog::Severity;
use crate::config::Config;
use crate::probe::{Observation, Prober};
use crate::scheduler::MAX_IN_FLIGHT;
use crate::store::Store;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;

/// One line of `check --json` (SPEC §2); the field names are a contract.
#[derive(Debug, Serialize)]
pub struct CheckLine<'a> {
    pub target: &'a str,
    pub probe: &'a str,
    pub category: &'a str,
    pub error_id: &'a str,
    pub severity: &'a str,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub message: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// `chat_stream`: time to the first token.
    pub ttft_ms: Option<i64>,
}

/// How `check` names a probe that failed on this machine: not the API's category.
const LOCAL: (&str, &str, &str) = ("monitor", "local_failure", "unknown");

impl<'a> From<&'a Observation> for CheckLine<'a> {
    fn from(o: &'a Observation) -> Self {
        let (category, error_id, severity) = if o.local_failure {
            LOCAL
        } else {
            (
                o.entry.category.as_str(),
                o.entry.id,
                o.entry.severity.as_str(),
            )
        };
        CheckLine {
            target: o.target.as_str(),
            probe: o.kind.as_str(),
            category,
            error_id,
            severity,
            http_status: o.http_status,
            latency_ms: o.latency_ms,
            message: o.message.as_deref(),
            request_id: o.request_id.as_deref(),
            ttft_ms: o.ttft_ms,
        }
    }
}

/// The exit code for a set of observations: the worst severity of the API's answers; a
/// probe that could not be made here makes an otherwise healthy result unknown.
pub fn exit_code(observations: &[Observation]) -> Exit {
    let local = observations.iter().any(|o| o.local_failure);
    let worst = observations
        .iter()
        .filter(|o| !o.local_failure)
        .map(|o| o.entry.severity)
        .max();
    match worst {
        Some(Severity::Critical) => Exit::Critical,
        _ if local => Exit::Unknown,
        None => Exit::Unknown,
        Some(Severity::Ok) => Exit::Success,
        Some(Severity::Warning) => Exit::Warning,
    }
}

/// Probes everything once, at most `MAX_IN_FLIGHT` at a time, like the daemon. Every probe
/// ends within its target's timeout.
pub async fn probe_all(config: &Config) -> anyhow::Result<Vec<Observation>> {
    let prober = Arc::new(Prober::new(config.secrets())?);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut set = tokio::task::JoinSet::new();
    for (ti, target) in config.targets.iter().enumerate() {
        for (pi, probe) in target.probes.iter().enumerate() {
            let (prober, permits) = (prober.clone(), permits.clone());
            let (target, probe) = (target.clone(), probe.clone());
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                ((ti, pi), prober.probe(&target, &probe).await)
            });
        }
    }
    let mut results = set.join_all().await;
    results.sort_by_key(|(order, _)| *order);
    Ok(results.into_iter().map(|(_, o)| o).collect())
}

/// Runs `check`: probes, records, prints; returns the exit code.
pub async fn run(config: &Config, json: bool, out: &mut impl Write) -> anyhow::Result<Exit> {
    // The database is opened before probing: under a tight descriptor limit the probes'
    // connections, still closing when probing ends, would leave none for it.
    let store = Store::connect(&config.database).await;
    let observations = probe_all(config).await?;
    // A probe that could not be made here says nothing about the API: not recorded.
    let answered: Vec<Observation> = observations
        .iter()
        .filter(|o| !o.local_failure)
        .cloned()
        .collect();
    match store {
        Ok(store) => {
            if let Err(e) = store.insert_probes(&config.location, &answered).await {
                eprintln!("warning: results not recorded: {e}");
            }
            store.close().await;
        }
        Err(e) => eprintln!("warning: results not recorded: {e}"),
    }
    if json {
        let lines: Vec<CheckLine<'_>> = observations.iter().map(CheckLine::from).collect();
        serde_json::to_writer_pretty(&mut *out, &lines)?;
        writeln!(out)?;
    } else {
        for o in &observations {
            writeln!(out, "{}", text_line(o))?;
        }
    }
    Ok(exit_code(&observations))
}

fn text_line(o: &Observation) -> String {
    if o.local_failure {
        return format!(
            "UNKNOWN  {}/{} {} {} - {}ms — not a problem of the API: the probe could not be made on this machine: {}",
            o.target,
            o.kind,
            LOCAL.0,
            LOCAL.1,
            o.latency_ms,
            o.message.as_deref().unwrap_or("-")
        );
    }
    let status = o.http_status.map_or_else(
        || o.transport_error.map_or("-", |k| k.as_str()).to_string(),
        |s| s.to_string(),
    );
    let mut line = format!(
        "{:<8} {}/{} {} {} {} {}ms",
        o.entry.severity.as_str().to_uppercase(),
        o.target,
        o.kind,
        o.entry.category,
        o.entry.id,
        status,
        o.latency_ms
    );
    if let Some(ttft) = o.ttft_ms {
        line.push_str(&format!(" (first token {ttft}ms)"));
    }
    if let Some(m) = &o.message {
        line.push_str(&format!(" — {m}"));
    }
    if let Some(r) = &o.request_id {
        line.push_str(&format!(" [{r}]"));
    }
    line
}
