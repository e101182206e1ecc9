//! Agents' heartbeats and the `monitor` incidents about silent ones (SPEC §14). Every agent
//! writes its heartbeat to the shared database; the others notice when one stops, without
//! talking to each other.

use super::incidents::{IncidentChange, Recorded, Routing, close_incident, insert_event};
use super::{Store, StoreError};
use crate::detect::Transition;
use crate::domain::{Category, EventKind, ProbeKind};
use serde::Serialize;

/// The target name of the `monitor` incident about the agent at `location`.
pub fn monitor_target(location: &str) -> String {
    format!("agent:{location}")
}

/// The error id of a `monitor` incident.
pub const AGENT_SILENT: &str = "agent_silent";

/// One agent of the fleet, as its heartbeat says.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AgentRow {
    pub location: String,
    pub seen_at_ms: i64,
    pub silent_after_ms: i64,
    pub started_at_ms: i64,
    pub version: String,
}

impl AgentRow {
    /// Whether the agent has been silent for longer than it allows at `now_ms`.
    pub fn is_silent(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.seen_at_ms) > self.silent_after_ms
    }
}

/// What one heartbeat wrote.
#[derive(Debug)]
pub struct Heartbeat {
    pub recorded: Recorded,
    /// The time the heartbeat was written at, by the database's clock.
    pub at_ms: i64,
}

/// Since when an agent's own heartbeats have followed each other without a gap, by the
/// database's clock: it judges others silent only within that time. After it could not
/// write for a while itself (a database outage, a lock held by a frozen agent, this process
/// stopped), the others' silence is its own view's gap, not theirs, until they had
/// `silent_after` to write again.
#[derive(Debug, Clone, Copy)]
pub struct Continuity {
    last_beat_ms: Option<i64>,
    since_ms: i64,
    /// The longest pause between two heartbeats that is not a gap.
    max_gap_ms: i64,
}

impl Continuity {
    pub fn new(max_gap_ms: i64) -> Continuity {
        Continuity {
            last_beat_ms: None,
            since_ms: 0,
            max_gap_ms,
        }
    }

    /// From when others' silence counts, for a heartbeat at `now_ms`.
    fn judge_from(&self, now_ms: i64) -> i64 {
        match self.last_beat_ms {
            Some(last) if now_ms.saturating_sub(last) <= self.max_gap_ms => self.since_ms,
            _ => now_ms,
        }
    }

    /// A heartbeat was written at `at_ms`.
    pub fn beat(&mut self, at_ms: i64) {
        self.since_ms = self.judge_from(at_ms);
        self.last_beat_ms = Some(at_ms);
    }
}

/// What retiring a location did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Retired {
    /// Its sightings were closed: the incidents it alone saw (`resolved`) resolved.
    Retired {
        location: String,
        resolved: Vec<i64>,
    },
    /// Its agent wrote a heartbeat within its `silent_after`: it runs, and is not retired.
    Live { location: String, seen_at_ms: i64 },
    /// No agent and no sighting has this location.
    Unknown,
}

/// PostgreSQL's clock now, in Unix ms.
const NOW_MS: &str = "select (extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The class of the advisory locks (two-key form) that say a location is in use.
const LOCATION_LOCK_CLASS: i32 = 0x6f77;

/// The database's clock, in Unix ms: every agent of a fleet compares times by this one
/// clock, never by its own. SQLite is one machine: its clock is the daemon's.
async fn database_now_ms(tx: &mut super::Tx) -> Result<i64, StoreError> {
    if !tx.is_postgres() {
        return Ok(crate::clock::now_ms());
    }
    Ok(on!(tx, c => sqlx::query_scalar::<_, i64>(NOW_MS).fetch_one(c).await)?)
}

impl Store {
    /// Writes the heartbeat of the agent at `me`; resolves the `monitor` incident about it, if
    /// one is open (it is back); and opens one about every other agent silent for longer than
    /// its `silent_after`, alerted through `routing`. One transaction, agents taking turns.
    ///
    /// Times are the database's (`me.seen_at_ms` is ignored). No agent is found silent for
    /// a silence that began before this agent's own heartbeats became continuous
    /// (`continuity`, which the caller updates once the heartbeat is written).
    pub async fn heartbeat(
        &self,
        me: &AgentRow,
        continuity: &Continuity,
        routing: &Routing,
    ) -> Result<Heartbeat, StoreError> {
        let mut tx = self.write_tx().await?;
        tx.serialize(super::engine::INCIDENTS_LOCK).await?;
        let now_ms = database_now_ms(&mut tx).await?;
        let judge_from_ms = continuity.judge_from(now_ms);
        on!(tx, c => sqlx::query(
            "insert into agents (location, seen_at_ms, silent_after_ms, started_at_ms, version) \
             values ($1, $2, $3, $4, $5) on conflict (location) do update set \
             seen_at_ms = excluded.seen_at_ms, silent_after_ms = excluded.silent_after_ms, \
             started_at_ms = excluded.started_at_ms, version = excluded.version",
        )
        .bind(&me.location)
        .bind(now_ms)
        .bind(me.silent_after_ms)
        .bind(me.started_at_ms)
        .bind(&me.version)
        .execute(c).await.map(|r| r.rows_affected()))?;
        if !tx.is_postgres() {
            // One daemon writes a SQLite file: any other row is this daemon under a former
            // location name, not an agent to find silent.
            on!(tx, c => sqlx::query("delete from agents where location != $1")
                .bind(&me.location)
                .execute(c).await.map(|r| r.rows_affected()))?;
        }
        let mut recorded = Recorded::default();
        let mine = monitor_target(&me.location);
        let open: Option<i64> = on!(tx, c => sqlx::query_scalar(
            "select id from incidents where target = $1 and category = $2 and resolved_at_ms is null",
        )
        .bind(&mine)
        .bind(Category::Monitor)
        .fetch_optional(c).await)?;
        if let Some(id) = open {
            let (id, events) =
                close_incident(&mut tx, id, Category::Monitor, now_ms, routing).await?;
            recorded.events += events;
            recorded.changes.push(IncidentChange {
                target: mine,
                incident_id: id,
                transition: Transition::Resolved {
                    category: Category::Monitor,
                },
                joined: false,
            });
        }
        let others: Vec<AgentRow> = on!(tx, c => sqlx::query_as::<_, AgentRow>(
            "select location, seen_at_ms, silent_after_ms, started_at_ms, version from agents \
             where location != $1 order by location",
        )
        .bind(&me.location)
        .fetch_all(c).await)?;
        let silent = others.iter().filter(|a| {
            a.is_silent(now_ms)
                && now_ms.saturating_sub(a.seen_at_ms.max(judge_from_ms)) > a.silent_after_ms
        });
        for other in silent {
            let target = monitor_target(&other.location);
            let since = crate::timefmt::rfc3339(other.seen_at_ms);
            let message = format!(
                "agent {} silent since {since} (allowed: {} s); seen by {}",
                other.location,
                other.silent_after_ms / 1000,
                me.location
            );
            // A monitor incident concerns no probe; the column is required, and `models` is
            // the probe every agent makes.
            let opened: Option<i64> = on!(tx, c => sqlx::query_scalar(
                "insert into incidents (target, category, location, probe, first_error_id, last_error_id, \
                 opened_at_ms, last_seen_at_ms, probe_count, last_message) \
                 values ($1, $2, $3, $4, $5, $5, $6, $7, 0, $8) \
                 on conflict (target, category) where resolved_at_ms is null do nothing returning id",
            )
            .bind(&target)
            .bind(Category::Monitor)
            .bind(&me.location)
            .bind(ProbeKind::Models)
            .bind(AGENT_SILENT)
            .bind(other.seen_at_ms)
            .bind(now_ms)
            .bind(&message)
            .fetch_optional(c).await)?;
            let Some(id) = opened else { continue };
            let channels = routing.channels_for(&target, Category::Monitor, &me.location);
            recorded.events += insert_event(
                &mut tx,
                id,
                EventKind::Firing,
                Category::Monitor,
                now_ms,
                routing.group_wait_ms,
                &channels,
            )
            .await?;
            recorded.changes.push(IncidentChange {
                target,
                incident_id: id,
                transition: Transition::Opened {
                    category: Category::Monitor,
                    probe_count: 0,
                    since_ms: other.seen_at_ms,
                },
                joined: false,
            });
        }
        self.commit(tx).await?;
        Ok(Heartbeat {
            recorded,
            at_ms: now_ms,
        })
    }

    /// Retires the location of an agent that was removed or renamed: closes what it sees
    /// (an incident that no other location sees resolves, its resolved alert going where
    /// the firing one went), resolves the `monitor` incident about it, and forgets its
    /// heartbeat and detector state. A location whose agent still writes its heartbeat is
    /// refused.
    pub async fn retire_location(
        &self,
        location: &str,
        actor: &str,
        routing: &Routing,
    ) -> Result<Retired, StoreError> {
        let mut tx = self.write_tx().await?;
        tx.serialize(super::engine::INCIDENTS_LOCK).await?;
        let now_ms = database_now_ms(&mut tx).await?;
        let agent: Option<AgentRow> = on!(tx, c => sqlx::query_as::<_, AgentRow>(
            "select location, seen_at_ms, silent_after_ms, started_at_ms, version from agents where location = $1",
        )
        .bind(location)
        .fetch_optional(c).await)?;
        if let Some(a) = &agent
            && !a.is_silent(now_ms)
        {
            return Ok(Retired::Live {
                location: location.to_string(),
                seen_at_ms: a.seen_at_ms,
            });
        }
        let sightings: Vec<(String, Category)> = on!(tx, c => sqlx::query_as(
            "select i.target, i.category from incidents i join incident_locations l on l.incident_id = i.id \
             where l.location = $1 and l.until_ms is null and i.resolved_at_ms is null order by i.id",
        )
        .bind(location)
        .fetch_all(c).await)?;
        if agent.is_none() && sightings.is_empty() {
            return Ok(Retired::Unknown);
        }
        let mut resolved = Vec::new();
        for (target, category) in &sightings {
            if let Some((id, _)) =
                super::incidents::resolve(&mut tx, location, target, *category, now_ms, routing)
                    .await?
            {
                resolved.push(id);
            }
        }
        let about: Option<i64> = on!(tx, c => sqlx::query_scalar(
            "select id from incidents where target = $1 and category = $2 and resolved_at_ms is null",
        )
        .bind(monitor_target(location))
        .bind(Category::Monitor)
        .fetch_optional(c).await)?;
        if let Some(id) = about {
            close_incident(&mut tx, id, Category::Monitor, now_ms, routing).await?;
            resolved.push(id);
        }
        for sql in [
            "delete from agents where location = $1",
            "delete from detector_states where location = $1",
        ] {
            on!(tx, c => sqlx::query(sql).bind(location).execute(c).await.map(|r| r.rows_affected()))?;
        }
        super::silences::audit(
            &mut tx,
            now_ms,
            actor,
            "agent.retire",
            serde_json::json!({ "location": location, "resolved": resolved }),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Retired::Retired {
            location: location.to_string(),
            resolved,
        })
    }

    /// The database's clock, in Unix ms (the daemon's own on SQLite).
    pub async fn clock_ms(&self) -> Result<i64, StoreError> {
        if !self.is_postgres() {
            return Ok(crate::clock::now_ms());
        }
        Ok(on!(self.pool, c => sqlx::query_scalar::<_, i64>(NOW_MS).fetch_one(c).await)?)
    }

    /// Every agent that has written a heartbeat, by location.
    pub async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, AgentRow>(
            "select location, seen_at_ms, silent_after_ms, started_at_ms, version from agents order by location",
        )
        .fetch_all(c).await)?)
    }
}

/// A PostgreSQL session-level advisory lock, held for as long as this value lives on a
/// connection of its own (taken out of the pool): when the agent dies, its connection
/// closes and the lock goes with it. On SQLite there is one writer, which always holds it.
pub struct SessionLock {
    conn: Option<sqlx::PgConnection>,
}

impl SessionLock {
    /// Whether the lock is still held: its connection still answers.
    pub async fn alive(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return true;
        };
        sqlx::query("select 1").execute(conn).await.is_ok()
    }
}

impl Store {
    /// Takes the lock that says `location` is in use, held while this agent's connection
    /// lives; `None` when another live agent holds it (a second agent under the same name
    /// would take over the first one's leases and mask its death). Always granted on SQLite,
    /// which has one writer.
    pub async fn try_location_lock(
        &self,
        location: &str,
    ) -> Result<Option<SessionLock>, StoreError> {
        let super::engine::Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(SessionLock { conn: None }));
        };
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, hashtext($2))")
            .bind(LOCATION_LOCK_CLASS)
            .bind(location)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(SessionLock { conn: Some(conn) }))
    }

    /// Takes the advisory lock `key` if no other agent holds it; `None` when one does.
    pub async fn try_session_lock(&self, key: i64) -> Result<Option<SessionLock>, StoreError> {
        let super::engine::Pool::Postgres(pool) = &self.pool else {
            return Ok(Some(SessionLock { conn: None }));
        };
        let mut conn = pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(SessionLock { conn: Some(conn) }))
    }
}
