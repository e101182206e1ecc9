//! The alert outbox: pending deliveries, their outcomes, and reminders computed from the
//! times stored here (so that a restart neither resets nor hastens them).

use super::incidents::insert_event;
use super::{Store, StoreError};
use crate::domain::{Category, DeliveryState, EventKind};
use serde::Serialize;

/// One delivery waiting to go out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingDelivery {
    pub delivery_id: i64,
    pub event_id: i64,
    pub incident_id: i64,
    pub channel: String,
    pub kind: EventKind,
    pub category: Category,
    pub created_at_ms: i64,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
}

/// Delivery outcomes per channel, for `status` and the metrics.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryCounts {
    pub channel: String,
    pub state: DeliveryState,
    pub count: i64,
}

/// A delivery given up on, for `status`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedDelivery {
    pub channel: String,
    pub incident_id: i64,
    /// The channel's last answer.
    pub error: String,
}

/// The latest firing or reminder event of an open incident: when a reminder is due.
#[derive(Debug, sqlx::FromRow)]
struct LastNotice {
    incident_id: i64,
    category: Category,
    event_id: i64,
    created_at_ms: i64,
    sent_at_ms: Option<i64>,
    /// Deliveries of that event still pending.
    pending: i64,
}

impl Store {
    /// Pending deliveries due by `horizon_ms`, oldest first. A delivery waits while an
    /// earlier event of the same incident is still pending on the same channel: events of one
    /// incident reach a channel in order (a `resolved` never overtakes its `firing`).
    pub async fn pending_deliveries(
        &self,
        horizon_ms: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, PendingDelivery>(
            "select d.id as delivery_id, d.event_id, e.incident_id, d.channel, e.kind, e.category, e.created_at_ms, \
             d.attempts, d.next_attempt_at_ms \
             from alert_deliveries d join alert_events e on e.id = d.event_id \
             where d.state = $1 and d.next_attempt_at_ms <= $2 \
             and not exists (select 1 from alert_deliveries d2 join alert_events e2 on e2.id = d2.event_id \
               where d2.state = $1 and d2.channel = d.channel and e2.incident_id = e.incident_id and e2.id < e.id) \
             order by d.next_attempt_at_ms, d.id",
        )
        .bind(DeliveryState::Pending)
        .bind(horizon_ms)
        .fetch_all(c).await)?)
    }

    /// When the next pending delivery is due, if any.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        // A delivery another agent has claimed is looked at again when the claim ends.
        let row: Option<i64> = on!(self.pool, c => sqlx::query_scalar(
            "select min(case when lease_until_ms > next_attempt_at_ms \
             then lease_until_ms else next_attempt_at_ms end) \
             from alert_deliveries where state = $1",
        )
                .bind(DeliveryState::Pending)
                .fetch_one(c).await)?;
        Ok(row)
    }

    /// Marks deliveries as accepted by the channel, where `owner` still holds them: a row
    /// another agent took over (this one's lease lapsed while it sent) or already settled is
    /// left as it is. Returns how many rows were this owner's to mark.
    pub async fn mark_sent(
        &self,
        ids: &[i64],
        owner: &str,
        now_ms: i64,
        message_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut marked = 0;
        for id in ids {
            marked += on!(tx, c => sqlx::query("update alert_deliveries set state = $1, attempts = attempts + 1, sent_at_ms = $2, last_error = null, message_id = $3, \
                 lease_owner = null, lease_until_ms = null \
                 where id = $4 and state = $5 and (lease_owner = $6 or lease_owner is null)")
                .bind(DeliveryState::Sent)
                .bind(now_ms)
                .bind(message_id)
                .bind(id)
                .bind(DeliveryState::Pending)
                .bind(owner)
                .execute(c).await.map(|r| r.rows_affected()))?;
        }
        self.commit(tx).await?;
        Ok(marked)
    }

    /// What the status page at `source` last said, with its validators (ETag,
    /// Last-Modified) for the next conditional request.
    pub async fn upstream_state(
        &self,
        source: &str,
    ) -> Result<
        Option<(
            crate::upstream::UpstreamState,
            Option<String>,
            Option<String>,
        )>,
        StoreError,
    > {
        let row: Option<(String, Option<String>, Option<String>)> = on!(self.pool, c => sqlx::query_as(
            "select state, etag, last_modified from upstream_status where source = $1",
        )
        .bind(source)
        .fetch_optional(c).await)?;
        Ok(row.map(|(state, etag, modified)| {
            (
                serde_json::from_str(&state).unwrap_or_default(),
                etag,
                modified,
            )
        }))
    }

    pub async fn save_upstream_state(
        &self,
        source: &str,
        state: &crate::upstream::UpstreamState,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(state)
            .map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))?;
        let _writing = self.changes.writing();
        on!(self.pool, c => sqlx::query(
            "insert into upstream_status (source, state, etag, last_modified) values ($1, $2, $3, $4) \
             on conflict (source) do update set state = excluded.state, etag = excluded.etag, \
             last_modified = excluded.last_modified",
        )
        .bind(source)
        .bind(json)
        .bind(etag)
        .bind(last_modified)
        .execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// This database's installation id (made with the database, never changed).
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        let (id,): (String,) = on!(self.pool, c => sqlx::query_as("select id from installation limit 1")
            .fetch_one(c).await)?;
        Ok(id)
    }

    /// For each incident, the Message-ID of the first message sent about it through
    /// `channel`, if one was: the root of that incident's thread.
    pub async fn thread_roots(
        &self,
        incident_ids: &[i64],
        channel: &str,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut out = Vec::with_capacity(incident_ids.len());
        for id in incident_ids {
            let root: Option<(String,)> = on!(self.pool, c => sqlx::query_as(
                "select d.message_id from alert_deliveries d join alert_events e on e.id = d.event_id \
                 where e.incident_id = $1 and d.channel = $2 and d.state = $3 and d.message_id is not null \
                 order by d.sent_at_ms, d.id limit 1",
            )
            .bind(id)
            .bind(channel)
            .bind(DeliveryState::Sent)
            .fetch_optional(c).await)?;
            out.push(root.map(|(m,)| m));
        }
        Ok(out)
    }

    /// Records deliveries that a silence or a maintenance window kept from going out.
    pub async fn mark_suppressed(
        &self,
        ids: &[i64],
        by: &crate::silence::Suppression,
    ) -> Result<(), StoreError> {
        use crate::silence::Suppression;
        let (silence, maintenance) = match by {
            Suppression::Silence(id) => (Some(*id), None),
            Suppression::Maintenance(name) => (None, Some(name.as_str())),
        };
        let mut tx = self.write_tx().await?;
        for id in ids {
            on!(tx, c => sqlx::query(
                "update alert_deliveries set state = $1, silence_id = $2, maintenance = $3 where id = $4 and state = $5",
            )
            .bind(DeliveryState::Suppressed)
            .bind(silence)
            .bind(maintenance)
            .bind(id)
            .bind(DeliveryState::Pending)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Open incidents with a channel whose firing alert was suppressed and that has had no
    /// other firing alert (pending, sent or failed): (incident, channel). Once nothing
    /// suppresses them, their firing alert goes out.
    pub async fn suppressed_firings(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as(
            "select distinct e.incident_id, d.channel from alert_deliveries d \
             join alert_events e on e.id = d.event_id join incidents i on i.id = e.incident_id \
             where i.resolved_at_ms is null and e.kind = $1 and d.state = $2 \
             and not exists (select 1 from alert_deliveries d2 join alert_events e2 on e2.id = d2.event_id \
               where e2.incident_id = e.incident_id and e2.kind = $1 and d2.channel = d.channel and d2.state != $2)",
        )
        .bind(EventKind::Firing)
        .bind(DeliveryState::Suppressed)
        .fetch_all(c).await)?)
    }

    /// Writes a new firing event of `incident_id` for `channels`, due now.
    pub async fn refire(
        &self,
        incident_id: i64,
        category: Category,
        channels: &[&str],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        // Agents sharing the database take turns, and each looks again under the lock: a
        // firing another agent re-fired meanwhile is not written twice.
        tx.serialize(super::engine::OUTBOX_LOCK).await?;
        let mut still = Vec::new();
        for channel in channels {
            let fired: i64 = on!(tx, c => sqlx::query_scalar(
                "select count(*) from alert_deliveries d join alert_events e on e.id = d.event_id \
                 where e.incident_id = $1 and e.kind = $2 and d.channel = $3 and d.state != $4",
            )
            .bind(incident_id)
            .bind(EventKind::Firing)
            .bind(*channel)
            .bind(DeliveryState::Suppressed)
            .fetch_one(c).await)?;
            if fired == 0 {
                still.push(*channel);
            }
        }
        insert_event(
            &mut tx,
            incident_id,
            EventKind::Firing,
            category,
            now_ms,
            0,
            &still,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Claims deliveries for `owner` (an agent's location) for `lease`: those still
    /// pending that no other agent holds a live claim on. Returns the ids claimed. Agents
    /// sharing a PostgreSQL database each claim before sending, so that a delivery goes out
    /// once; the claim of an agent that dies mid-send lapses at `until_ms`, and another agent
    /// sends it then (at least once). On PostgreSQL the update locks the row: a second agent
    /// claiming at the same moment waits, then sees the claim and skips the row.
    ///
    /// The lease runs for `lease` from the moment the claim is written (not from the start of
    /// the notifier's pass, which may be long ago after slow channels).
    pub async fn claim_deliveries(
        &self,
        ids: &[i64],
        owner: &str,
        now_ms: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        let until_ms = now_ms.saturating_add(crate::clock::millis(lease));
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<i64> = on!(tx, c => sqlx::query_scalar(
                "update alert_deliveries set lease_owner = $1, lease_until_ms = $2 \
                 where id = $3 and state = $4 \
                 and (lease_until_ms is null or lease_until_ms <= $5 or lease_owner = $1) returning id",
            )
            .bind(owner)
            .bind(until_ms)
            .bind(id)
            .bind(DeliveryState::Pending)
            .bind(now_ms)
            .fetch_optional(c).await)?;
            claimed.extend(row);
        }
        self.commit(tx).await?;
        Ok(claimed)
    }

    /// Records a failed attempt: retry at `next_ms`, or give up (`next_ms` = None). Like
    /// `mark_sent`, only rows still pending and held by `owner` (or by no one) change: a late
    /// failure never sets another agent's sent row back to pending. Returns how many changed.
    pub async fn mark_attempt_failed(
        &self,
        ids: &[i64],
        owner: &str,
        next_ms: Option<i64>,
        error: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut marked = 0;
        for id in ids {
            let (state, next) = match next_ms {
                Some(next) => (DeliveryState::Pending, Some(next)),
                None => (DeliveryState::Failed, None),
            };
            marked += on!(tx, c => sqlx::query(
                "update alert_deliveries set state = $1, attempts = attempts + 1, \
                 next_attempt_at_ms = coalesce($2, next_attempt_at_ms), last_error = $3, \
                 lease_owner = null, lease_until_ms = null \
                 where id = $4 and state = $5 and (lease_owner = $6 or lease_owner is null)",
            )
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(id)
            .bind(DeliveryState::Pending)
            .bind(owner)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        self.commit(tx).await?;
        Ok(marked)
    }

    /// Puts off pending deliveries to `next_ms` without counting an attempt, noting why:
    /// for a channel this agent does not have (removed on reload), so that its alerts are
    /// kept for when it comes back instead of being given up.
    pub async fn postpone_deliveries(
        &self,
        ids: &[i64],
        next_ms: i64,
        note: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for id in ids {
            on!(tx, c => sqlx::query(
                "update alert_deliveries set next_attempt_at_ms = $1, last_error = $2 \
                 where id = $3 and state = $4 and lease_owner is null",
            )
            .bind(next_ms)
            .bind(note)
            .bind(id)
            .bind(DeliveryState::Pending)
            .execute(c).await.map(|r| r.rows_affected()))?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Writes a reminder for every open incident whose last firing or reminder message went out
    /// `interval_ms` ago (and is not still waiting to go out). Returns how many.
    pub async fn enqueue_reminders(
        &self,
        now_ms: i64,
        interval_ms: i64,
        group_wait_ms: i64,
    ) -> Result<usize, StoreError> {
        if interval_ms <= 0 {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        // One agent at a time: the next one sees the reminder written and writes none.
        tx.serialize(super::engine::OUTBOX_LOCK).await?;
        let rows = on!(tx, c => sqlx::query_as::<_, LastNotice>(
            "select i.id as incident_id, i.category, e.id as event_id, e.created_at_ms, \
               (select max(sent_at_ms) from alert_deliveries where event_id = e.id) as sent_at_ms, \
               (select count(*) from alert_deliveries where event_id = e.id and state = $1) as pending \
             from incidents i join alert_events e on e.id = \
               (select id from alert_events where incident_id = i.id and kind in ($2, $3) order by id desc limit 1) \
             where i.resolved_at_ms is null and i.acked_at_ms is null",
        )
        .bind(DeliveryState::Pending)
        .bind(EventKind::Firing)
        .bind(EventKind::Reminder)
        .fetch_all(c).await)?;
        let mut count = 0;
        for last in rows {
            let since = last.sent_at_ms.unwrap_or(last.created_at_ms);
            if last.pending > 0 || now_ms < since.saturating_add(interval_ms) {
                continue;
            }
            let channels: Vec<String> =
                // Only where the last notice went out: a suppressed firing is announced by
                // a new firing once nothing suppresses it, not by a reminder.
                on!(tx, c => sqlx::query_scalar("select channel from alert_deliveries where event_id = $1 and state = $2")
                    .bind(last.event_id)
                    .bind(DeliveryState::Sent)
                    .fetch_all(c).await)?;
            let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
            count += insert_event(
                &mut tx,
                last.incident_id,
                EventKind::Reminder,
                last.category,
                now_ms,
                group_wait_ms,
                &channels,
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(count)
    }

    /// How many deliveries are pending, sent and failed, per channel.
    pub async fn delivery_counts(&self) -> Result<Vec<DeliveryCounts>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, DeliveryCounts>(
            "select channel, state, count(*) as count from alert_deliveries group by channel, state order by channel, state",
        )
        .fetch_all(c).await)?)
    }

    /// The last error of failed deliveries, newest first (for `status`).
    pub async fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, FailedDelivery>(
            "select d.channel, e.incident_id, coalesce(d.last_error, '') as error from alert_deliveries d \
             join alert_events e on e.id = d.event_id where d.state = $1 order by d.id desc limit $2",
        )
        .bind(DeliveryState::Failed)
        .bind(limit)
        .fetch_all(c).await)?)
    }
}

/// One delivery of an alert about an incident, for the incident page.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub kind: EventKind,
    pub channel: String,
    pub state: DeliveryState,
    /// What suppressed it, if it was.
    pub silence_id: Option<i64>,
    pub maintenance: Option<String>,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

impl Store {
    /// The alerts about one incident, oldest first.
    pub async fn deliveries_for_incident(
        &self,
        incident_id: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        Ok(on!(self.pool, c => sqlx::query_as::<_, DeliveryRow>(
            "select e.kind, d.channel, d.state, d.silence_id, d.maintenance, d.attempts, e.created_at_ms, d.sent_at_ms, d.last_error \
             from alert_deliveries d join alert_events e on e.id = d.event_id where e.incident_id = $1 order by d.id",
        )
        .bind(incident_id)
        .fetch_all(c).await)?)
    }
}
