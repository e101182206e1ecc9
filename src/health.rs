//! What `/healthz` reports: the scheduler's heartbeat and whether the database is writable.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// A scheduler silent for longer than this is considered stuck.
pub const STALE_AFTER_MS: i64 = 30_000;

#[derive(Debug, Default)]
pub struct Health {
    heartbeat_ms: AtomicI64,
    db_error: Mutex<Option<String>>,
    /// Half the systemd watchdog timeout, when there is one.
    watchdog_ms: Option<i64>,
    last_ping_ms: AtomicI64,
    /// The last probe that could not be made for a reason on this machine: (when, why).
    local_failure: Mutex<Option<(i64, String)>>,
    /// When the write of probes now under way began; 0 when none is.
    write_began_ms: AtomicI64,
}

/// A write of probes that has not ended after this long is a stall (a lock held by another
/// agent, a database that does not answer), reported before it fails.
pub const WRITE_STALL_MS: i64 = 10_000;

/// How long a probe that failed on this machine keeps `/healthz` unhealthy.
pub const LOCAL_FAILURE_SHOWN_MS: i64 = 60_000;

impl Health {
    /// Reads the systemd watchdog setting of this process.
    pub fn new() -> Health {
        Health {
            watchdog_ms: crate::systemd::watchdog_interval().map(crate::clock::millis),
            ..Health::default()
        }
    }

    /// Called by the scheduler loop on every turn; pings the systemd watchdog when due, so
    /// that a stuck scheduler is restarted.
    pub fn beat(&self, now_ms: i64) {
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
        if let Some(every) = self.watchdog_ms
            && now_ms - self.last_ping_ms.load(Ordering::Relaxed) >= every
        {
            self.last_ping_ms.store(now_ms, Ordering::Relaxed);
            crate::systemd::watchdog();
        }
    }

    /// How often the scheduler must beat at least.
    pub fn beat_every(&self) -> std::time::Duration {
        let max = std::time::Duration::from_secs(5);
        self.watchdog_ms.map_or(max, |ms| {
            max.min(std::time::Duration::from_millis(
                u64::try_from(ms).unwrap_or(0).max(100),
            ))
        })
    }

    /// The recorder starts writing probes.
    pub fn write_began(&self, now_ms: i64) {
        self.write_began_ms.store(now_ms.max(1), Ordering::Relaxed);
    }

    /// The recorder's write ended, whatever its outcome.
    pub fn write_ended(&self) {
        self.write_began_ms.store(0, Ordering::Relaxed);
    }

    pub fn db_written(&self) {
        *self.db_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn db_failed(&self, error: String) {
        *self.db_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// A probe could not be made for a reason on this machine (no file descriptors, …).
    pub fn probe_failed_locally(&self, now_ms: i64, reason: String) {
        *self.local_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((now_ms, reason));
    }

    /// Whether the scheduler has beaten recently (an agent whose scheduler is stuck is not
    /// watching anything, and says so by staying silent).
    pub fn scheduler_ok(&self, now_ms: i64) -> bool {
        let beat = self.heartbeat_ms.load(Ordering::Relaxed);
        beat != 0 && now_ms - beat <= STALE_AFTER_MS
    }

    /// `Ok` when healthy, else why not.
    pub fn check(&self, now_ms: i64) -> Result<(), String> {
        let beat = self.heartbeat_ms.load(Ordering::Relaxed);
        if beat == 0 {
            return Err("scheduler not started".into());
        }
        if now_ms - beat > STALE_AFTER_MS {
            return Err(format!(
                "scheduler stalled: no heartbeat for {} s",
                (now_ms - beat) / 1000
            ));
        }
        let began = self.write_began_ms.load(Ordering::Relaxed);
        if began != 0 && now_ms - began > WRITE_STALL_MS {
            return Err(format!(
                "database: a write has waited {} s (a lock held by another agent, or the database does not answer)",
                (now_ms - began) / 1000
            ));
        }
        if let Some(e) = self
            .db_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Err(format!("database not writable: {e}"));
        }
        if let Some((at, reason)) = self
            .local_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && now_ms - at < LOCAL_FAILURE_SHOWN_MS
        {
            return Err(format!(
                "probes cannot be made on this machine (not a problem of the API): {reason}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reflects_heartbeat_and_database() {
        let h = Health::default();
        assert!(h.check(1_000).is_err());
        h.beat(1_000);
        assert!(h.check(2_000).is_ok());
        assert!(
            h.check(1_000 + STALE_AFTER_MS + 1)
                .unwrap_err()
                .contains("stalled")
        );
        h.db_failed("disk full".into());
        assert!(h.check(2_000).unwrap_err().contains("disk full"));
        h.db_written();
        assert!(h.check(2_000).is_ok());
    }
}
