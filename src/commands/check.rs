//! The `check` command: every probe of every target once, recorded like the daemon records
//! them, printed one line per probe (or as JSON), with the Nagios exit code of the worst.

use super::Exit;
use crate::catalog::Severity;
use crate::config::Config;
use crate::probe::{Observation, Prober};
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
}

impl<'a> From<&'a Observation> for CheckLine<'a> {
    fn from(o: &'a Observation) -> Self {
        CheckLine {
            target: o.target.as_str(),
            probe: o.kind.as_str(),
            category: o.entry.category.as_str(),
            error_id: o.entry.id,
            severity: o.entry.severity.as_str(),
            http_status: o.http_status,
            latency_ms: o.latency_ms,
            message: o.message.as_deref(),
            request_id: o.request_id.as_deref(),
        }
    }
}

/// The exit code for a set of observations: the worst severity.
pub fn exit_code(observations: &[Observation]) -> Exit {
    match observations.iter().map(|o| o.entry.severity).max() {
        None => Exit::Unknown,
        Some(Severity::Ok) => Exit::Success,
        Some(Severity::Warning) => Exit::Warning,
        Some(Severity::Critical) => Exit::Critical,
    }
}

/// Probes everything once, concurrently. Every probe ends within its target's timeout.
pub async fn probe_all(config: &Config) -> anyhow::Result<Vec<Observation>> {
    let prober = Arc::new(Prober::new(config.secrets())?);
    let mut set = tokio::task::JoinSet::new();
    for (ti, target) in config.targets.iter().enumerate() {
        for (pi, probe) in target.probes.iter().enumerate() {
            let prober = prober.clone();
            let target = target.clone();
            let (kind, model) = (probe.kind(), probe.model().to_string());
            set.spawn(async move { ((ti, pi), prober.probe(&target, kind, &model).await) });
        }
    }
    let mut results = set.join_all().await;
    results.sort_by_key(|(order, _)| *order);
    Ok(results.into_iter().map(|(_, o)| o).collect())
}

/// Runs `check`: probes, records, prints; returns the exit code.
pub async fn run(config: &Config, json: bool, out: &mut impl Write) -> anyhow::Result<Exit> {
    let observations = probe_all(config).await?;
    match Store::open(&config.storage.path).await {
        Ok(store) => {
            if let Err(e) = store.insert_probes(&config.location(), &observations).await {
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
    if let Some(m) = &o.message {
        line.push_str(&format!(" — {m}"));
    }
    if let Some(r) = &o.request_id {
        line.push_str(&format!(" [{r}]"));
    }
    line
}
