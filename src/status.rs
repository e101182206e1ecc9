//! The `status` command: the current state of every target and the open incidents, read from
//! the database alone (no network). Its JSON is the shape of `GET /api/v1/status`.

use crate::catalog::{self, Category};
use crate::config::Config;
use crate::store::{IncidentRow, ProbeRow, Store};
use crate::timefmt::rfc3339;
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Serialize)]
pub struct Status {
    pub overall: &'static str,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub name: String,
    /// `ok`, `degraded`, `down`, or `unknown` (never probed).
    pub state: &'static str,
    /// Category and catalog id of the latest probe.
    pub category: Option<String>,
    pub error_id: Option<String>,
    /// When the oldest open incident opened.
    pub since: Option<String>,
    pub last_probe_at: Option<String>,
    pub open_incidents: Vec<IncidentSummary>,
}

#[derive(Debug, Serialize)]
pub struct IncidentSummary {
    pub id: i64,
    pub category: String,
    pub error_id: String,
    pub http_status: Option<i64>,
    pub opened_at: String,
    pub probe_count: i64,
    pub last_message: Option<String>,
    pub cause: String,
    pub resolution: String,
}

impl From<&IncidentRow> for IncidentSummary {
    fn from(r: &IncidentRow) -> Self {
        let entry = catalog::entry(&r.last_error_id);
        IncidentSummary {
            id: r.id,
            category: r.category.clone(),
            error_id: r.last_error_id.clone(),
            http_status: r.http_status,
            opened_at: rfc3339(r.opened_at_ms),
            probe_count: r.probe_count,
            last_message: r.last_message.clone(),
            cause: entry.map_or("", |e| e.cause).to_string(),
            resolution: entry.map_or("", |e| e.resolution).to_string(),
        }
    }
}

/// Categories whose open incident means the target cannot serve traffic at all.
fn is_down(category: &str) -> bool {
    matches!(
        Category::parse(category),
        Some(Category::Auth | Category::Region | Category::Quota | Category::Outage)
    )
}

/// Reads the status of every configured target.
pub async fn read(config: &Config, store: &Store) -> anyhow::Result<Status> {
    Ok(read_with_latest(config, store).await?.0)
}

/// Like `read`, also giving each target's latest probe (in the order of the config).
pub async fn read_with_latest(
    config: &Config,
    store: &Store,
) -> anyhow::Result<(Status, Vec<Option<ProbeRow>>)> {
    let open = store.open_incidents().await?;
    let names: Vec<&str> = config.targets.iter().map(|t| t.name().as_str()).collect();
    let mut latest_by_target: std::collections::HashMap<String, ProbeRow> = store
        .latest_probes(&names)
        .await?
        .into_iter()
        .map(|p| (p.target.clone(), p))
        .collect();
    let mut targets = Vec::new();
    let mut latests = Vec::new();
    for t in &config.targets {
        let name = t.name().to_string();
        let latest = latest_by_target.remove(&name);
        let mine: Vec<&IncidentRow> = open.iter().filter(|i| i.target == name).collect();
        let state = if mine.iter().any(|i| is_down(&i.category)) {
            "down"
        } else if !mine.is_empty() || latest.as_ref().is_some_and(|p| p.category != "ok") {
            "degraded"
        } else if latest.is_none() {
            "unknown"
        } else {
            "ok"
        };
        targets.push(TargetStatus {
            name,
            state,
            category: latest.as_ref().map(|p| p.category.clone()),
            error_id: latest.as_ref().map(|p| p.error_id.clone()),
            since: mine.iter().map(|i| i.opened_at_ms).min().map(rfc3339),
            last_probe_at: latest.as_ref().map(|p| rfc3339(p.at_ms)),
            open_incidents: mine.into_iter().map(IncidentSummary::from).collect(),
        });
        latests.push(latest);
    }
    let overall = if targets.iter().any(|t| t.state == "down") {
        "down"
    } else if targets.iter().any(|t| t.state == "degraded") {
        "degraded"
    } else {
        "ok"
    };
    Ok((Status { overall, targets }, latests))
}

/// Runs `status`; the database must exist (this command never creates one).
pub async fn run(config: &Config, json: bool, out: &mut impl Write) -> anyhow::Result<i32> {
    let path = &config.storage.path;
    if !path.exists() {
        anyhow::bail!(
            "no database at {}: the daemon has not run with this config yet",
            path.display()
        );
    }
    let store = Store::open(path).await?;
    let status = read(config, &store).await?;
    let failed = store.failed_deliveries(5).await?;
    store.close().await;
    if json {
        serde_json::to_writer_pretty(&mut *out, &status)?;
        writeln!(out)?;
        return Ok(0);
    }
    writeln!(out, "overall: {}", status.overall)?;
    for t in &status.targets {
        writeln!(
            out,
            "{:<9} {} (latest: {} at {})",
            t.state.to_uppercase(),
            t.name,
            t.error_id.as_deref().unwrap_or("never probed"),
            t.last_probe_at.as_deref().unwrap_or("-")
        )?;
        for i in &t.open_incidents {
            writeln!(
                out,
                "  incident #{} {} {} since {} ({} probes): {}",
                i.id,
                i.category,
                i.error_id,
                i.opened_at,
                i.probe_count,
                i.last_message.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "    resolution: {}", i.resolution)?;
        }
    }
    for (channel, incident, error) in failed {
        writeln!(
            out,
            "alert to {channel} for incident #{incident} failed: {error}"
        )?;
    }
    Ok(0)
}
