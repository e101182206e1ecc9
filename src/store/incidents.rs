//! Incidents, the detector's state, and the transaction that records a batch of probes
//! together with the incident changes and alert events they cause.

use super::{Store, StoreError};
use crate::catalog::Category;
use crate::config::Detection;
use crate::detect::{self, TargetState, Transition};
use crate::probe::Observation;
use serde::Serialize;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

/// Which channels an event of a category goes to, and how events are grouped.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// (channel name, categories it is notified of).
    pub channels: Vec<(String, Vec<Category>)>,
    pub send_resolved: bool,
    pub group_wait_ms: i64,
}

impl Routing {
    pub fn channels_for(&self, category: Category) -> Vec<&str> {
        self.channels
            .iter()
            .filter(|(_, cats)| cats.contains(&category))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// An incident as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct IncidentRow {
    pub id: i64,
    pub target: String,
    pub category: String,
    pub location: String,
    pub probe: String,
    pub first_error_id: String,
    pub last_error_id: String,
    pub http_status: Option<i64>,
    pub opened_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub probe_count: i64,
    pub last_message: Option<String>,
    pub request_id: Option<String>,
}

const INCIDENT_COLUMNS: &str = "id, target, category, location, probe, first_error_id, last_error_id, http_status, \
     opened_at_ms, last_seen_at_ms, resolved_at_ms, probe_count, last_message, request_id";

/// What a recorded batch changed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// (target, transition) in order; `Seen` transitions left out.
    pub changes: Vec<(String, Transition, i64)>,
    /// Alert events written to the outbox.
    pub events: usize,
}

impl Store {
    /// Records a batch of probes, advances the detector of each target, writes the incident
    /// changes and the alert events they cause — all in one transaction. On failure nothing is
    /// written and `states` is left as it was.
    pub async fn record(
        &self,
        location: &str,
        batch: &[Observation],
        states: &mut HashMap<String, TargetState>,
        detection: &Detection,
        routing: &Routing,
    ) -> Result<Recorded, StoreError> {
        let backup: HashMap<String, TargetState> = batch
            .iter()
            .filter_map(|o| {
                states
                    .get(o.target.as_str())
                    .map(|s| (o.target.to_string(), s.clone()))
            })
            .collect();
        let result = self
            .record_tx(location, batch, states, detection, routing)
            .await;
        if result.is_err() {
            for o in batch {
                states.remove(o.target.as_str());
            }
            states.extend(backup);
        }
        result
    }

    async fn record_tx(
        &self,
        location: &str,
        batch: &[Observation],
        states: &mut HashMap<String, TargetState>,
        detection: &Detection,
        routing: &Routing,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        Store::insert_probes_on(&mut tx, location, batch).await?;
        let mut recorded = Recorded::default();
        let mut touched: Vec<&str> = Vec::new();
        for o in batch {
            let state = states.entry(o.target.to_string()).or_default();
            let verdict = detect::Verdict {
                at_ms: o.at_ms,
                kind: o.kind,
                category: o.entry.category,
            };
            for t in detect::step(state, detection, verdict) {
                let events = apply(&mut tx, location, o, t, routing).await?;
                recorded.events += events;
                if !matches!(t, Transition::Seen { .. }) {
                    let id = open_or_last_id(&mut tx, o.target.as_str(), category_of(t)).await?;
                    recorded.changes.push((o.target.to_string(), t, id));
                }
            }
            if !touched.contains(&o.target.as_str()) {
                touched.push(o.target.as_str());
            }
        }
        for target in touched {
            let json = serde_json::to_string(&states[target])
                .map_err(|e| StoreError::Sql(sqlx::Error::Decode(Box::new(e))))?;
            sqlx::query("insert into detector_state (target, state) values (?, ?) on conflict (target) do update set state = excluded.state")
                .bind(target)
                .bind(json)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// The detector states saved with the last recorded batch, by target, with each window
    /// rebuilt from the probes of the last `window_ms` before `now_ms`.
    pub async fn load_detector_states(
        &self,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<HashMap<String, TargetState>, StoreError> {
        let rows = sqlx::query("select target, state from detector_state")
            .fetch_all(&self.pool)
            .await?;
        let mut out = HashMap::new();
        for row in rows {
            let target: String = row.get(0);
            let json: String = row.get(1);
            match serde_json::from_str::<TargetState>(&json) {
                Ok(state) => {
                    out.insert(target, state);
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "unreadable detector state; starting that target afresh")
                }
            }
        }
        let recent = sqlx::query(
            "select target, at_ms, category from probes where at_ms > ? order by at_ms, id",
        )
        .bind(now_ms.saturating_sub(window_ms))
        .fetch_all(&self.pool)
        .await?;
        for row in recent {
            let target: String = row.get(0);
            let category = Category::parse(row.get::<&str, _>(2)).unwrap_or(Category::Unknown);
            out.entry(target)
                .or_default()
                .window
                .push_back((row.get(1), category));
        }
        Ok(out)
    }

    /// Open incidents, oldest first.
    pub async fn open_incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "select {INCIDENT_COLUMNS} from incidents where resolved_at_ms is null order by opened_at_ms, id"
        );
        Ok(sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// The latest resolved incidents, newest first.
    pub async fn recent_resolved_incidents(
        &self,
        limit: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "select {INCIDENT_COLUMNS} from incidents where resolved_at_ms is not null order by resolved_at_ms desc, id desc limit ?"
        );
        Ok(sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every incident, newest first.
    pub async fn all_incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        let sql =
            format!("select {INCIDENT_COLUMNS} from incidents order by opened_at_ms desc, id desc");
        Ok(sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Incidents by id, in the order of `ids`.
    pub async fn incidents_by_id(&self, ids: &[i64]) -> Result<Vec<IncidentRow>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let sql = format!("select {INCIDENT_COLUMNS} from incidents where id = ?");
        for id in ids {
            if let Some(row) = sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            {
                out.push(row);
            }
        }
        Ok(out)
    }
}

fn category_of(t: Transition) -> Category {
    match t {
        Transition::Opened { category, .. }
        | Transition::Seen { category }
        | Transition::Resolved { category } => category,
    }
}

async fn open_or_last_id(
    tx: &mut SqliteConnection,
    target: &str,
    category: Category,
) -> Result<i64, StoreError> {
    let row = sqlx::query("select id from incidents where target = ? and category = ? order by (resolved_at_ms is null) desc, id desc limit 1")
        .bind(target)
        .bind(category.as_str())
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.get(0))
}

/// Applies one transition to the incidents table and writes its alert events; returns how
/// many events were written.
async fn apply(
    tx: &mut SqliteConnection,
    location: &str,
    o: &Observation,
    t: Transition,
    routing: &Routing,
) -> Result<usize, StoreError> {
    match t {
        Transition::Opened {
            category,
            probe_count,
            since_ms,
        } => {
            let row = sqlx::query(
                "insert into incidents (target, category, location, probe, first_error_id, last_error_id, http_status, \
                 opened_at_ms, last_seen_at_ms, probe_count, last_message, request_id) \
                 values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id",
            )
            .bind(o.target.as_str())
            .bind(category.as_str())
            .bind(location)
            .bind(o.kind.as_str())
            .bind(o.entry.id)
            .bind(o.entry.id)
            .bind(o.http_status.map(i64::from))
            .bind(since_ms)
            .bind(o.at_ms)
            .bind(i64::from(probe_count))
            .bind(o.message.as_deref())
            .bind(o.request_id.as_deref())
            .fetch_one(&mut *tx)
            .await?;
            let id: i64 = row.get(0);
            let channels = routing.channels_for(category);
            insert_event(
                tx,
                id,
                "firing",
                category,
                o.at_ms,
                routing.group_wait_ms,
                &channels,
            )
            .await
        }
        Transition::Seen { category } => {
            sqlx::query(
                "update incidents set last_error_id = ?, http_status = ?, last_seen_at_ms = ?, probe_count = probe_count + 1, \
                 last_message = coalesce(?, last_message), request_id = coalesce(?, request_id) \
                 where target = ? and category = ? and resolved_at_ms is null",
            )
            .bind(o.entry.id)
            .bind(o.http_status.map(i64::from))
            .bind(o.at_ms)
            .bind(o.message.as_deref())
            .bind(o.request_id.as_deref())
            .bind(o.target.as_str())
            .bind(category.as_str())
            .execute(&mut *tx)
            .await?;
            Ok(0)
        }
        Transition::Resolved { category } => {
            let row = sqlx::query(
                "update incidents set resolved_at_ms = ? where target = ? and category = ? and resolved_at_ms is null returning id",
            )
            .bind(o.at_ms)
            .bind(o.target.as_str())
            .bind(category.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(0) };
            let id: i64 = row.get(0);
            if !routing.send_resolved {
                return Ok(0);
            }
            // A resolved message goes where the firing message went, and only there.
            let channels: Vec<String> = sqlx::query(
                "select distinct d.channel from alert_deliveries d join alert_events e on e.id = d.event_id \
                 where e.incident_id = ? and e.kind = 'firing'",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
            insert_event(
                tx,
                id,
                "resolved",
                category,
                o.at_ms,
                routing.group_wait_ms,
                &channels,
            )
            .await
        }
    }
}

/// Writes an alert event and one pending delivery per channel; nothing when no channel wants it.
pub(super) async fn insert_event(
    tx: &mut SqliteConnection,
    incident_id: i64,
    kind: &str,
    category: Category,
    at_ms: i64,
    group_wait_ms: i64,
    channels: &[&str],
) -> Result<usize, StoreError> {
    if channels.is_empty() {
        return Ok(0);
    }
    let due = at_ms + group_wait_ms;
    let row = sqlx::query(
        "insert into alert_events (incident_id, kind, category, created_at_ms, due_at_ms) values (?, ?, ?, ?, ?) returning id",
    )
    .bind(incident_id)
    .bind(kind)
    .bind(category.as_str())
    .bind(at_ms)
    .bind(due)
    .fetch_one(&mut *tx)
    .await?;
    let event_id: i64 = row.get(0);
    for channel in channels {
        sqlx::query("insert into alert_deliveries (event_id, channel, state, next_attempt_at_ms) values (?, ?, 'pending', ?)")
            .bind(event_id)
            .bind(channel)
            .bind(due)
            .execute(&mut *tx)
            .await?;
    }
    Ok(1)
}
