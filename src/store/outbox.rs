//! The alert outbox: pending deliveries, their outcomes, and reminders computed from the
//! times stored here (so that a restart neither resets nor hastens them).

use super::incidents::insert_event;
use super::{Store, StoreError};
use crate::domain::{Category, DeliveryState, EventKind};
use serde::Serialize;
use sqlx::Row;

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
        Ok(sqlx::query_as::<_, PendingDelivery>(
            "select d.id as delivery_id, d.event_id, e.incident_id, d.channel, e.kind, e.category, e.created_at_ms, \
             d.attempts, d.next_attempt_at_ms \
             from alert_deliveries d join alert_events e on e.id = d.event_id \
             where d.state = ?1 and d.next_attempt_at_ms <= ?2 \
             and not exists (select 1 from alert_deliveries d2 join alert_events e2 on e2.id = d2.event_id \
               where d2.state = ?1 and d2.channel = d.channel and e2.incident_id = e.incident_id and e2.id < e.id) \
             order by d.next_attempt_at_ms, d.id",
        )
        .bind(DeliveryState::Pending)
        .bind(horizon_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// When the next pending delivery is due, if any.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        let row =
            sqlx::query("select min(next_attempt_at_ms) from alert_deliveries where state = ?")
                .bind(DeliveryState::Pending)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.get(0))
    }

    /// Marks deliveries as accepted by the channel.
    pub async fn mark_sent(
        &self,
        ids: &[i64],
        now_ms: i64,
        message_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for id in ids {
            sqlx::query("update alert_deliveries set state = ?, attempts = attempts + 1, sent_at_ms = ?, last_error = null, message_id = ? where id = ?")
                .bind(DeliveryState::Sent)
                .bind(now_ms)
                .bind(message_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(())
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
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "select state, etag, last_modified from upstream_status where source = ?",
        )
        .bind(source)
        .fetch_optional(&self.pool)
        .await?;
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
        sqlx::query(
            "insert into upstream_status (source, state, etag, last_modified) values (?, ?, ?, ?) \
             on conflict (source) do update set state = excluded.state, etag = excluded.etag, \
             last_modified = excluded.last_modified",
        )
        .bind(source)
        .bind(json)
        .bind(etag)
        .bind(last_modified)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// This database's installation id (made with the database, never changed).
    pub async fn installation_id(&self) -> Result<String, StoreError> {
        let (id,): (String,) = sqlx::query_as("select id from installation limit 1")
            .fetch_one(&self.pool)
            .await?;
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
            let root: Option<(String,)> = sqlx::query_as(
                "select d.message_id from alert_deliveries d join alert_events e on e.id = d.event_id \
                 where e.incident_id = ? and d.channel = ? and d.state = ? and d.message_id is not null \
                 order by d.sent_at_ms, d.id limit 1",
            )
            .bind(id)
            .bind(channel)
            .bind(DeliveryState::Sent)
            .fetch_optional(&self.pool)
            .await?;
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
            sqlx::query(
                "update alert_deliveries set state = ?, silence_id = ?, maintenance = ? where id = ?",
            )
            .bind(DeliveryState::Suppressed)
            .bind(silence)
            .bind(maintenance)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Open incidents with a channel whose firing alert was suppressed and that has had no
    /// other firing alert (pending, sent or failed): (incident, channel). Once nothing
    /// suppresses them, their firing alert goes out.
    pub async fn suppressed_firings(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "select distinct e.incident_id, d.channel from alert_deliveries d \
             join alert_events e on e.id = d.event_id join incidents i on i.id = e.incident_id \
             where i.resolved_at_ms is null and e.kind = ?1 and d.state = ?2 \
             and not exists (select 1 from alert_deliveries d2 join alert_events e2 on e2.id = d2.event_id \
               where e2.incident_id = e.incident_id and e2.kind = ?1 and d2.channel = d.channel and d2.state != ?2)",
        )
        .bind(EventKind::Firing)
        .bind(DeliveryState::Suppressed)
        .fetch_all(&self.pool)
        .await?)
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
        insert_event(
            &mut tx,
            incident_id,
            EventKind::Firing,
            category,
            now_ms,
            0,
            channels,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Records a failed attempt: retry at `next_ms`, or give up (`next_ms` = None).
    pub async fn mark_attempt_failed(
        &self,
        ids: &[i64],
        next_ms: Option<i64>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for id in ids {
            let (state, next) = match next_ms {
                Some(next) => (DeliveryState::Pending, Some(next)),
                None => (DeliveryState::Failed, None),
            };
            sqlx::query(
                "update alert_deliveries set state = ?, attempts = attempts + 1, \
                 next_attempt_at_ms = coalesce(?, next_attempt_at_ms), last_error = ? where id = ?",
            )
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
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
        let rows = sqlx::query_as::<_, LastNotice>(
            "select i.id as incident_id, i.category, e.id as event_id, e.created_at_ms, \
               (select max(sent_at_ms) from alert_deliveries where event_id = e.id) as sent_at_ms, \
               (select count(*) from alert_deliveries where event_id = e.id and state = ?) as pending \
             from incidents i join alert_events e on e.id = \
               (select id from alert_events where incident_id = i.id and kind in (?, ?) order by id desc limit 1) \
             where i.resolved_at_ms is null and i.acked_at_ms is null",
        )
        .bind(DeliveryState::Pending)
        .bind(EventKind::Firing)
        .bind(EventKind::Reminder)
        .fetch_all(&mut *tx)
        .await?;
        let mut count = 0;
        for last in rows {
            let since = last.sent_at_ms.unwrap_or(last.created_at_ms);
            if last.pending > 0 || now_ms < since.saturating_add(interval_ms) {
                continue;
            }
            let channels: Vec<String> =
                // Only where the last notice went out: a suppressed firing is announced by
                // a new firing once nothing suppresses it, not by a reminder.
                sqlx::query("select channel from alert_deliveries where event_id = ? and state = ?")
                    .bind(last.event_id)
                    .bind(DeliveryState::Sent)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
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
        Ok(sqlx::query_as::<_, DeliveryCounts>(
            "select channel, state, count(*) as count from alert_deliveries group by channel, state order by channel, state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last error of failed deliveries, newest first (for `status`).
    pub async fn failed_deliveries(&self, limit: i64) -> Result<Vec<FailedDelivery>, StoreError> {
        Ok(sqlx::query_as::<_, FailedDelivery>(
            "select d.channel, e.incident_id, coalesce(d.last_error, '') as error from alert_deliveries d \
             join alert_events e on e.id = d.event_id where d.state = ? order by d.id desc limit ?",
        )
        .bind(DeliveryState::Failed)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
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
        Ok(sqlx::query_as::<_, DeliveryRow>(
            "select e.kind, d.channel, d.state, d.silence_id, d.maintenance, d.attempts, e.created_at_ms, d.sent_at_ms, d.last_error \
             from alert_deliveries d join alert_events e on e.id = d.event_id where e.incident_id = ? order by d.id",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
