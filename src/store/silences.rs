//! Silences, acknowledgements and the audit trail of the writes that make them (SPEC §15).
//! Every write and its audit row share one transaction.

use super::engine::Tx;
use super::{IncidentRow, Store, StoreError};
use crate::silence::{NewSilence, Silence};

const SILENCE_COLUMNS: &str = "id, target, category, error_id, location, starts_at_ms, ends_at_ms, \
     comment, created_by, created_at_ms, expired_at_ms";

/// What `expire_silence` found.
#[derive(Debug)]
pub enum Expired {
    Expired(Silence),
    /// It had already ended; nothing changed.
    AlreadyEnded(Silence),
    NotFound,
}

/// What `ack_incident` found.
#[derive(Debug)]
pub enum Acked {
    Acked(IncidentRow),
    Resolved(IncidentRow),
    NotFound,
}

pub(super) async fn audit(
    tx: &mut Tx,
    at_ms: i64,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    on!(tx, c => sqlx::query("insert into audit_log (at_ms, actor, action, detail) values ($1, $2, $3, $4)")
        .bind(at_ms)
        .bind(actor)
        .bind(action)
        .bind(detail.to_string())
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The most silences that may be active or to come at once: each is matched against every
/// alert and shown on the status page.
pub const MAX_SILENCES: i64 = 1000;

impl Store {
    /// Stores a silence (validated by the caller) and its audit row.
    pub async fn add_silence(
        &self,
        new: &NewSilence,
        actor: &str,
        now_ms: i64,
    ) -> Result<Silence, StoreError> {
        let mut tx = self.write_tx().await?;
        let live: i64 = on!(tx, c => sqlx::query_scalar("select count(*) from silences where ends_at_ms > $1")
            .bind(now_ms)
            .fetch_one(c).await)?;
        if live >= MAX_SILENCES {
            return Err(StoreError::Limit(format!(
                "{live} silences have not ended, the most there may be: expire some (silence expire ID) or silence more broadly with a `*` glob"
            )));
        }
        let silence = on!(tx, c => sqlx::query_as::<_, Silence>(sqlx::AssertSqlSafe(format!(
            "insert into silences (target, category, error_id, location, starts_at_ms, ends_at_ms, \
             comment, created_by, created_at_ms) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {SILENCE_COLUMNS}"
        )))
        .bind(&new.target)
        .bind(&new.category)
        .bind(&new.error_id)
        .bind(&new.location)
        .bind(new.starts_at_ms)
        .bind(new.ends_at_ms)
        .bind(&new.comment)
        .bind(actor)
        .bind(now_ms)
        .fetch_one(c).await)?;
        audit(
            &mut tx,
            now_ms,
            actor,
            "silence.add",
            serde_json::to_value(&silence).unwrap_or_default(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(silence)
    }

    /// Silences that have not ended by `now_ms` (active or to come), or all with `all`;
    /// newest first.
    pub async fn silences(&self, now_ms: i64, all: bool) -> Result<Vec<Silence>, StoreError> {
        Ok(
            on!(self.pool, c => sqlx::query_as::<_, Silence>(sqlx::AssertSqlSafe(format!(
            "select {SILENCE_COLUMNS} from silences where $2 or ends_at_ms > $1 order by id desc"
        )))
        .bind(now_ms)
        .bind(all)
        .fetch_all(c).await)?,
        )
    }

    /// Ends a silence now.
    pub async fn expire_silence(
        &self,
        id: i64,
        actor: &str,
        now_ms: i64,
    ) -> Result<Expired, StoreError> {
        let mut tx = self.write_tx().await?;
        let found = on!(tx, c => sqlx::query_as::<_, Silence>(sqlx::AssertSqlSafe(format!(
            "select {SILENCE_COLUMNS} from silences where id = $1"
        )))
        .bind(id)
        .fetch_optional(c).await)?;
        let Some(found) = found else {
            return Ok(Expired::NotFound);
        };
        if found.ends_at_ms <= now_ms {
            return Ok(Expired::AlreadyEnded(found));
        }
        // A silence that has not started yet ends before it starts: keep the row valid.
        let ends = now_ms.max(found.starts_at_ms + 1);
        let silence = on!(tx, c => sqlx::query_as::<_, Silence>(sqlx::AssertSqlSafe(format!(
            "update silences set ends_at_ms = $1, expired_at_ms = $2 where id = $3 returning {SILENCE_COLUMNS}"
        )))
        .bind(ends)
        .bind(now_ms)
        .bind(id)
        .fetch_one(c).await)?;
        audit(
            &mut tx,
            now_ms,
            actor,
            "silence.expire",
            serde_json::json!({ "id": id }),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Expired::Expired(silence))
    }

    /// Acknowledges an open incident: no more reminders; the resolved alert says who and when.
    pub async fn ack_incident(
        &self,
        id: i64,
        actor: &str,
        comment: Option<&str>,
        now_ms: i64,
    ) -> Result<Acked, StoreError> {
        let mut tx = self.write_tx().await?;
        let found = on!(tx, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(format!(
            "select {} from incidents where id = $1",
            super::incident_reads::INCIDENT_COLUMNS
        )))
        .bind(id)
        .fetch_optional(c).await)?;
        let Some(found) = found else {
            return Ok(Acked::NotFound);
        };
        if found.resolved_at_ms.is_some() {
            return Ok(Acked::Resolved(found));
        }
        let row = on!(tx, c => sqlx::query_as::<_, IncidentRow>(sqlx::AssertSqlSafe(format!(
            "update incidents set acked_at_ms = $1, acked_by = $2, ack_comment = $3 where id = $4 returning {}",
            super::incident_reads::INCIDENT_COLUMNS
        )))
        .bind(now_ms)
        .bind(actor)
        .bind(comment)
        .bind(id)
        .fetch_one(c).await)?;
        audit(
            &mut tx,
            now_ms,
            actor,
            "incident.ack",
            serde_json::json!({ "id": id, "comment": comment }),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Acked::Acked(row))
    }
}
