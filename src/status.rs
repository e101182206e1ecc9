//! The current state of every target and the open incidents, read from the database alone
//! (no network): shared by the `status` command, `GET /api/v1/status` and the status page.

use crate::catalog;
use crate::domain::{Category, TargetState};
use crate::store::{IncidentRow, ProbeRow, Store};
use crate::timefmt::rfc3339;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    pub overall: TargetState,
    pub targets: Vec<TargetStatus>,
    /// What OpenAI's status page last said, where it is polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::upstream::UpstreamState>,
}

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub state: TargetState,
    /// Category and catalog id of the latest probe.
    pub category: Option<Category>,
    pub error_id: Option<String>,
    /// When the oldest open incident opened.
    pub since: Option<String>,
    pub last_probe_at: Option<String>,
    pub open_incidents: Vec<IncidentSummary>,
    /// The latest probe from each agent's location (SPEC §14); one entry on one machine.
    pub locations: Vec<LocationStatus>,
}

/// What one location saw last of a target.
#[derive(Debug, Clone, Serialize)]
pub struct LocationStatus {
    pub location: String,
    pub category: Category,
    pub error_id: String,
    pub last_probe_at: String,
    /// The agent at this location has gone silent: this is old news.
    pub silent: bool,
}

#[derive(Debug, Serialize)]
pub struct IncidentSummary {
    pub id: i64,
    pub category: Category,
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
            category: r.category,
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

/// The latest probes of every agent's location: (location, silent, probes). A SQLite file
/// has one writer, so the targets' latest probes (`latest`) are that agent's: no query more.
async fn per_location(
    names: &[&str],
    store: &Store,
    latest: &[ProbeRow],
) -> anyhow::Result<Vec<(String, bool, Vec<ProbeRow>)>> {
    if !store.is_postgres() {
        let mut locations: Vec<String> = latest.iter().map(|p| p.location.clone()).collect();
        locations.sort();
        locations.dedup();
        return Ok(locations
            .into_iter()
            .map(|l| {
                let mine = latest.iter().filter(|p| p.location == l).cloned().collect();
                (l, false, mine)
            })
            .collect());
    }
    // Every agent that wrote a heartbeat, and any location that probed before its first one.
    let now = crate::clock::now_ms();
    let mut locations: Vec<(String, bool)> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| {
            let silent = a.is_silent(now);
            (a.location, silent)
        })
        .collect();
    for p in latest {
        if !locations.iter().any(|(l, _)| *l == p.location) {
            locations.push((p.location.clone(), false));
        }
    }
    locations.sort();
    let mut out = Vec::with_capacity(locations.len());
    for (location, silent) in locations {
        let rows = store.latest_probes_at(&location, names).await?;
        out.push((location, silent, rows));
    }
    Ok(out)
}

/// Reads the status of every configured target.
pub async fn read(names: &[&str], store: &Store) -> anyhow::Result<Status> {
    Ok(read_with_latest(names, store).await?.0)
}

/// Like `read`, also giving each target's latest probe (in the order of the config).
pub async fn read_with_latest(
    names: &[&str],
    store: &Store,
) -> anyhow::Result<(Status, Vec<Option<ProbeRow>>)> {
    let open = store.open_incidents().await?;
    let latest = store.latest_probes(names).await?;
    let by_location = per_location(names, store, &latest).await?;
    let mut latest_by_target: std::collections::HashMap<String, ProbeRow> =
        latest.into_iter().map(|p| (p.target.clone(), p)).collect();
    let mut targets = Vec::new();
    let mut latests = Vec::new();
    for name in names {
        let name = name.to_string();
        let latest = latest_by_target.remove(&name);
        let mine: Vec<&IncidentRow> = open.iter().filter(|i| i.target == name).collect();
        let locations = by_location
            .iter()
            .filter_map(|(location, silent, rows)| {
                rows.iter()
                    .find(|p| p.target == name)
                    .map(|p| LocationStatus {
                        location: location.clone(),
                        category: p.category,
                        error_id: p.error_id.clone(),
                        last_probe_at: rfc3339(p.at_ms),
                        silent: *silent,
                    })
            })
            .collect();
        let state = if mine.iter().any(|i| i.category.is_down()) {
            TargetState::Down
        } else if !mine.is_empty() || latest.as_ref().is_some_and(|p| p.category != Category::Ok) {
            TargetState::Degraded
        } else if latest.is_none() {
            TargetState::Unknown
        } else {
            TargetState::Ok
        };
        targets.push(TargetStatus {
            name,
            state,
            category: latest.as_ref().map(|p| p.category),
            error_id: latest.as_ref().map(|p| p.error_id.clone()),
            since: mine.iter().map(|i| i.opened_at_ms).min().map(rfc3339),
            last_probe_at: latest.as_ref().map(|p| rfc3339(p.at_ms)),
            open_incidents: mine.into_iter().map(IncidentSummary::from).collect(),
            locations,
        });
        latests.push(latest);
    }
    let overall = TargetState::overall(targets.iter().map(|t| &t.state));
    Ok((
        Status {
            overall,
            targets,
            upstream: None,
        },
        latests,
    ))
}
