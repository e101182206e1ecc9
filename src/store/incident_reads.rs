//! Reading incidents back: lists for the page, the API and the commands, each with where it
//! is seen (SPEC §14).

use super::{Store, StoreError};
use crate::domain::{Category, ProbeKind};
use serde::Serialize;

/// An incident as stored.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct IncidentRow {
    pub id: i64,
    pub target: String,
    pub category: Category,
    pub location: String,
    pub probe: ProbeKind,
    pub first_error_id: String,
    pub last_error_id: String,
    pub http_status: Option<i64>,
    pub opened_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    pub probe_count: i64,
    pub last_message: Option<String>,
    pub request_id: Option<String>,
    /// Acknowledged: when, by whom (a dashboard token's name or `cli:USER`), and why.
    pub acked_at_ms: Option<i64>,
    pub acked_by: Option<String>,
    pub ack_comment: Option<String>,
    /// The locations that see it now; once resolved, every location that saw it (SPEC §14).
    #[sqlx(skip)]
    #[serde(default)]
    pub locations: Vec<String>,
    /// Locations of running agents that do not see it (none on one machine).
    #[sqlx(skip)]
    #[serde(default)]
    pub healthy_locations: Vec<String>,
    /// Whether it is a fleet's incident (a shared PostgreSQL database): alerts then always
    /// say where it is seen, even from the first seconds, before other agents probed.
    #[sqlx(skip)]
    #[serde(default)]
    pub fleet: bool,
}

pub(super) const INCIDENT_COLUMNS: &str = "id, target, category, location, probe, first_error_id, last_error_id, http_status, \
     opened_at_ms, last_seen_at_ms, resolved_at_ms, probe_count, last_message, request_id, \
     acked_at_ms, acked_by, ack_comment";

impl Store {
    /// How many incidents are open.
    pub async fn count_open_incidents(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on!(self.pool, c => sqlx::query_as("select count(*) from incidents where resolved_at_ms is null")
                .fetch_one(c).await)?;
        Ok(n)
    }

    /// Targets that have an open incident seen from `location`.
    pub async fn targets_with_open_incidents(
        &self,
        location: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on!(self.pool, c => sqlx::query_as(
            "select distinct i.target from incidents i join incident_locations l on l.incident_id = i.id \
             where i.resolved_at_ms is null and l.location = $1 and l.until_ms is null order by i.target",
        )
        .bind(location)
        .fetch_all(c).await)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// Open incidents, oldest first.
    pub async fn open_incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "select {INCIDENT_COLUMNS} from incidents where resolved_at_ms is null order by opened_at_ms, id"
        );
        let rows = on!(self.pool, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(c).await)?;
        self.with_locations(rows).await
    }

    /// The latest resolved incidents, newest first.
    pub async fn recent_resolved_incidents(
        &self,
        limit: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "select {INCIDENT_COLUMNS} from incidents where resolved_at_ms is not null order by resolved_at_ms desc, id desc limit $1"
        );
        let rows = on!(self.pool, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(c).await)?;
        self.with_locations(rows).await
    }

    /// One page of incidents, newest first: those with an id below `before` (all when
    /// `None`), of `target` if given, open (`Some(true)`), resolved (`Some(false)`) or both;
    /// at most `limit`. Filtered in SQL, so a long history is never read whole.
    pub async fn incidents_page(
        &self,
        target: Option<&str>,
        open: Option<bool>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let sql = format!(
            "select {INCIDENT_COLUMNS} from incidents where id < $1 \
             and ($2 is null or target = $2) \
             and ($3 is null or ($3 = (resolved_at_ms is null))) \
             order by id desc limit $4"
        );
        let rows = on!(self.pool, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql))
            .bind(before.unwrap_or(i64::MAX))
            .bind(target)
            .bind(open)
            .bind(limit)
            .fetch_all(c).await)?;
        self.with_locations(rows).await
    }

    /// Incidents by id, in the order of `ids`.
    pub async fn incidents_by_id(&self, ids: &[i64]) -> Result<Vec<IncidentRow>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let sql = format!("select {INCIDENT_COLUMNS} from incidents where id = $1");
        for id in ids {
            if let Some(row) = on!(self.pool, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(c).await)?
            {
                out.push(row);
            }
        }
        self.with_locations(out).await
    }

    /// Fills in where each incident is seen, and where the fleet is healthy.
    async fn with_locations(
        &self,
        mut rows: Vec<IncidentRow>,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let (Some(low), Some(high)) = (
            rows.iter().map(|r| r.id).min(),
            rows.iter().map(|r| r.id).max(),
        ) else {
            return Ok(rows);
        };
        let seen: Vec<(i64, String, Option<i64>)> = on!(self.pool, c => sqlx::query_as(
            "select incident_id, location, until_ms from incident_locations \
             where incident_id between $1 and $2 order by since_ms, location",
        )
        .bind(low)
        .bind(high)
        .fetch_all(c).await)?;
        // Healthy elsewhere: only a fleet has an elsewhere (a SQLite file has one writer).
        // Healthy where a running agent probes the target (it keeps a detector state for
        // it) and does not see the incident: an agent that never probes it says nothing.
        let now = crate::clock::now_ms();
        let fleet = self.is_postgres();
        let (running, probing): (Vec<String>, Vec<(String, String)>) = if fleet {
            let running = self
                .agents()
                .await?
                .into_iter()
                .filter(|a| !a.is_silent(now))
                .map(|a| a.location)
                .collect();
            let probing = on!(self.pool, c => sqlx::query_as(
                "select location, target from detector_states",
            )
            .fetch_all(c).await)?;
            (running, probing)
        } else {
            (Vec::new(), Vec::new())
        };
        for row in &mut rows {
            row.fleet = fleet;
            let open = row.resolved_at_ms.is_none();
            for (_, location, until) in seen.iter().filter(|s| s.0 == row.id) {
                if (!open || until.is_none()) && !row.locations.contains(location) {
                    row.locations.push(location.clone());
                }
            }
            if open && row.category != Category::Monitor {
                row.healthy_locations = running
                    .iter()
                    .filter(|l| !row.locations.contains(l))
                    .filter(|l| probing.iter().any(|(pl, pt)| pl == *l && *pt == row.target))
                    .cloned()
                    .collect();
            }
        }
        Ok(rows)
    }
}
