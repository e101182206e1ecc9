//! What the detector needs back after a restart: its stored states, reconciled with the open
//! incidents, and the pauses the API asked for.

use super::engine::Pool;
use super::{Store, StoreError};

/// The recent probes of `location` for the targets named in `$1` (a JSON array for SQLite, an
/// array for PostgreSQL), oldest first.
macro_rules! recent_sql {
    ($list:literal) => {
        concat!(
            "select p.target, p.at_ms, p.category from ",
            $list,
            " join probes p on p.target = t.value and p.at_ms > $2 and p.location = $3 \
             order by p.at_ms, p.id"
        )
    };
}
const RECENT_SQL: &str = recent_sql!("json_each($1) t");
const RECENT_PG_SQL: &str = recent_sql!("unnest($1::text[]) t(value)");
use crate::detect::{self, TargetState};
use crate::domain::{Category, ProbeKind};
use std::collections::HashMap;

impl Store {
    /// The detector states of `location` saved with its last recorded batch, by target, with
    /// the windows of `targets` rebuilt from that location's probes of the last `window_ms`
    /// before `now_ms`.
    pub async fn load_detector_states(
        &self,
        location: &str,
        targets: &[&str],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<HashMap<String, TargetState>, StoreError> {
        // Rows from before locations were stored (location '') come first, so that the
        // location's own rows, if any, win.
        let rows: Vec<(String, String)> = on!(self.pool, c => sqlx::query_as(
            "select target, state from detector_states where location = $1 or location = '' \
             order by location = $1, target",
        )
        .bind(location)
        .fetch_all(c).await)?;
        let mut out = HashMap::new();
        for (target, json) in rows {
            match serde_json::from_str::<TargetState>(&json) {
                Ok(state) => {
                    out.insert(target, state);
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "unreadable detector state; starting that target afresh")
                }
            }
        }
        // The incidents table is the truth about what is open: a state that lost an open
        // incident (an unreadable row, a state from before a crash) learns it again, so that
        // nothing is opened twice; one that remembers an incident resolved since forgets it.
        // Open for this detector: seen from this location (other locations' sightings are
        // their detectors' business).
        let open: Vec<(String, Category, ProbeKind)> = on!(self.pool, c => sqlx::query_as(
            "select i.target, i.category, i.probe from incidents i \
             join incident_locations l on l.incident_id = i.id \
             where i.resolved_at_ms is null and l.location = $1 and l.until_ms is null",
        )
        .bind(location)
        .fetch_all(c).await)?;
        let is_open = |target: &str, category: Category| {
            open.iter().any(|(t, c, _)| t == target && *c == category)
        };
        for (target, state) in out.iter_mut() {
            state.open.retain(|c, _| is_open(target, *c));
            for (category, signal) in state.signals.iter_mut() {
                signal.open = is_open(target, *category);
            }
        }
        for (target, category, probe) in &open {
            let state = out.entry(target.clone()).or_default();
            if category.is_signal() {
                state.signals.entry(*category).or_default().open = true;
            } else if !state.open.contains_key(category) {
                tracing::info!(%target, %category, "detector state rebuilt from the open incident");
                state.open.insert(
                    *category,
                    detect::OpenIncident {
                        kinds: vec![*probe],
                        healthy: 0,
                    },
                );
            }
        }
        // Down the (target, at_ms) index, one range per configured target.
        let since = now_ms.saturating_sub(window_ms);
        let recent: Vec<(String, i64, Category)> = match &self.pool {
            Pool::Sqlite(pool) => {
                let names = serde_json::to_string(targets)
                    .map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query_as(RECENT_SQL)
                    .bind(names)
                    .bind(since)
                    .bind(location)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(RECENT_PG_SQL)
                    .bind(targets)
                    .bind(since)
                    .bind(location)
                    .fetch_all(pool)
                    .await?
            }
        };
        for (target, at_ms, category) in recent {
            out.entry(target).or_default().window.push(at_ms, category);
        }
        Ok(out)
    }

    /// The pauses the API asked for that last beyond `now_ms`, by (target, probe kind).
    pub async fn holds(&self, now_ms: i64) -> Result<Vec<((String, ProbeKind), i64)>, StoreError> {
        let rows: Vec<(String, ProbeKind, i64)> = on!(self.pool, c => sqlx::query_as("select target, probe, until_ms from probe_holds where until_ms > $1")
                .bind(now_ms)
                .fetch_all(c).await)?;
        Ok(rows.into_iter().map(|(t, k, u)| ((t, k), u)).collect())
    }
}
