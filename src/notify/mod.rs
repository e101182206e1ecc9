//! The notifier (SPEC §7): turns outbox rows into messages and delivers them at least once,
//! grouping events of one kind and category that fall due within `group_wait`, retrying with
//! exponential backoff (1 s doubling to 10 min) for up to 24 h.

mod channel_test;
pub mod email;
pub mod message;
mod renderer;
pub mod webhook;

use crate::clock::{millis, now_ms};
use crate::config::Config;
use crate::domain::{Category, EventKind, ProbeKind};
use crate::metrics::{AlertResult, Metrics};
use crate::silence::{Suppression, Suppressor};
use crate::store::{ChannelRoute, IncidentRow, PendingDelivery, Routing, Store, StoreError};
pub use channel_test::{TestOutcome, test};
use message::{Alert, MessageKind};
pub use renderer::Renderer;
use renderer::mask;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// First retry delay; it doubles per attempt up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Longest one delivery attempt may take, whatever the channel does.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the outbox is looked at while nothing in it is due: what the daemon writes
/// itself wakes the notifier at once; rows from another process (`silence expire`, another
/// agent of a fleet) are seen within this.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// The shortest pause after an outbox pass that sent nothing.
const IDLE_PASS_PAUSE: Duration = Duration::from_millis(200);
/// How long a claim on a delivery lasts: longer than a send may take. An agent killed
/// mid-send leaves its deliveries to the others after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How long a delivery in progress may go on once shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the alerts of a channel removed on reload are looked at again: a channel put
/// back gets them within this.
const REMOVED_CHANNEL_LOOK_EVERY: Duration = Duration::from_secs(30);
/// After this long, a delivery that was never accepted is marked failed.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Says so when some of the deliveries just sent were no longer this agent's to mark: its
/// claim lapsed during the send (a frozen process) and another agent took them over.
fn warn_if_taken_over(channel: &str, sent: usize, marked: u64) {
    if (marked as usize) < sent {
        tracing::warn!(%channel, deliveries = sent - marked as usize, "another agent took over deliveries while this one sent them (its claim had lapsed); their state is left to that agent");
    }
}

/// Why a channel did not accept a message.
#[derive(Debug, Clone)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            permanent: true,
            message: message.into(),
        }
    }
    pub fn temporary(message: impl Into<String>) -> Self {
        SendError {
            permanent: false,
            message: message.into(),
        }
    }
}

/// What a channel needs to know about the delivery it makes.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub first_event_id: i64,
    /// The database's installation id: part of every Message-ID, so that ids are unique
    /// across installations.
    pub installation: String,
    /// Per incident of the alert, in order: the Message-ID of the first message sent about
    /// it on this channel (the root of its thread), if any was.
    pub thread_roots: Vec<Option<String>>,
}

/// An alert channel.
pub enum Channel {
    Email(email::EmailChannel),
    Webhook(webhook::WebhookChannel),
}

impl Channel {
    /// Delivers the alert; the Message-ID it went out with, for channels that have one.
    pub async fn send(
        &self,
        alert: &Alert,
        delivery: &Delivery,
    ) -> Result<Option<String>, SendError> {
        match self {
            Channel::Email(c) => c.send(alert, delivery).await.map(Some),
            Channel::Webhook(c) => c.send(alert).await.map(|()| None),
        }
    }
}

/// The delay before retry number `attempts` (1-based): 1 s, 2 s, 4 s, … capped at 10 min.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    FIRST_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
}

/// Routing of the config: the channels in order, each with the categories it is told about.
pub fn routing(config: &Config) -> Routing {
    let alerts = &config.alerts;
    let route = |name: &str, categories: &Option<Vec<Category>>| ChannelRoute {
        name: name.to_string(),
        categories: categories
            .clone()
            .unwrap_or_else(|| alerts.categories.clone()),
    };
    let channels = alerts
        .email
        .iter()
        .map(|e| route(&e.name, &e.categories))
        .chain(alerts.webhook.iter().map(|w| route(&w.name, &w.categories)))
        .collect();
    Routing {
        channels,
        routes: alerts.routes.clone(),
        send_resolved: alerts.send_resolved,
        group_wait_ms: millis(alerts.group_wait),
    }
}

/// Builds the channels of the config, by name.
pub fn channels(config: &Config) -> anyhow::Result<Vec<(String, Channel)>> {
    let mut out = Vec::new();
    for e in &config.alerts.email {
        out.push((e.name.clone(), Channel::Email(email::EmailChannel::new(e)?)));
    }
    for hook in &config.alerts.webhook {
        out.push((
            hook.name.clone(),
            Channel::Webhook(webhook::WebhookChannel::new(hook)?),
        ));
    }
    Ok(out)
}

/// Events grouped into one message: same channel, same kind, same category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    channel: String,
    kind: EventKind,
    category: Category,
}

/// The outbox worker.
pub struct Notifier {
    store: Store,
    channels: Vec<(String, Channel)>,
    renderer: Renderer,
    reminder_ms: i64,
    group_wait_ms: i64,
    secrets: Vec<secrecy::SecretString>,
    upstream: crate::config::UpstreamStatus,
    maintenance: Vec<crate::silence::Maintenance>,
    /// The database's installation id, read once: it never changes.
    installation: tokio::sync::OnceCell<String>,
    metrics: Arc<Metrics>,
    /// Woken by the recorder when it wrote events.
    pub wake: Arc<Notify>,
    /// When reminders were last looked for: every `REMINDER_CHECK`, not every pass.
    reminders_checked_at: std::sync::atomic::AtomicI64,
    /// Whether a suppressed firing alert may wait for its silence to end: set when one is
    /// suppressed (and at start), cleared when a look finds none.
    maybe_suppressed: std::sync::atomic::AtomicBool,
}

/// How often reminders are looked for (the shortest reminder interval is a minute).
const REMINDER_CHECK_MS: i64 = 10_000;

impl Notifier {
    pub fn new(config: &Config, store: Store, metrics: Arc<Metrics>) -> anyhow::Result<Notifier> {
        Ok(Notifier {
            store,
            metrics,
            channels: channels(config)?,
            renderer: Renderer::new(config),
            reminder_ms: millis(config.alerts.reminder_interval),
            group_wait_ms: millis(config.alerts.group_wait),
            secrets: config.secrets(),
            upstream: config.upstream_status.clone(),
            maintenance: config.maintenance.clone(),
            installation: tokio::sync::OnceCell::new(),
            wake: Arc::new(Notify::new()),
            reminders_checked_at: std::sync::atomic::AtomicI64::new(i64::MIN),
            maybe_suppressed: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// One pass: enqueue due reminders, then deliver every due group once. Returns the number
    /// of messages accepted.
    pub async fn run_once(&self, now: i64) -> Result<usize, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        // The fixed cost of a pass is kept low: a daemon with few targets makes one a second.
        let checked = self.reminders_checked_at.load(Relaxed);
        if now < checked || now.saturating_sub(checked) >= REMINDER_CHECK_MS {
            self.store
                .enqueue_reminders(now, self.reminder_ms, self.group_wait_ms)
                .await?;
            self.reminders_checked_at.store(now, Relaxed);
        }
        let mut pending = self
            .store
            .pending_deliveries(now.saturating_add(self.group_wait_ms))
            .await?;
        let maybe_suppressed = self.maybe_suppressed.load(Relaxed);
        if pending.is_empty() && !maybe_suppressed {
            return Ok(0);
        }
        let suppressor = Suppressor {
            silences: self.store.silences(now, false).await?,
            maintenance: self.maintenance.clone(),
        };
        if maybe_suppressed && self.refire_unsuppressed(&suppressor, now).await? {
            // New firing events: take them into this pass.
            pending = self
                .store
                .pending_deliveries(now.saturating_add(self.group_wait_ms))
                .await?;
        }
        let pending = self.suppress(pending, &suppressor, now).await?;
        // Group by (channel, kind, category); a group goes out when its earliest member is due.
        let mut groups: BTreeMap<GroupKey, Vec<PendingDelivery>> = BTreeMap::new();
        for d in pending {
            groups
                .entry(GroupKey {
                    channel: d.channel.clone(),
                    kind: d.kind,
                    category: d.category,
                })
                .or_default()
                .push(d);
        }
        let mut sent = 0;
        for (
            GroupKey {
                channel: channel_name,
                kind,
                category,
            },
            members,
        ) in groups
        {
            if members
                .iter()
                .map(|d| d.next_attempt_at_ms)
                .min()
                .unwrap_or(i64::MAX)
                > now
            {
                continue;
            }
            let Some((_, channel)) = self.channels.iter().find(|(n, _)| *n == channel_name) else {
                if self.store.is_postgres() {
                    // Another agent of the fleet may have this channel (each agent's config
                    // is its own): left to it.
                    continue;
                }
                // The channel was removed from the config (a reload): its alerts are kept for
                // when it comes back, looked at again later, and given up only after the
                // usual 24 hours.
                let ids: Vec<i64> = members.iter().map(|d| d.delivery_id).collect();
                let oldest = members.iter().map(|d| d.created_at_ms).min().unwrap_or(now);
                if now.saturating_sub(oldest) > millis(GIVE_UP_AFTER) {
                    self.store
                        .mark_attempt_failed(
                            &ids,
                            &self.renderer.location,
                            None,
                            "the channel is no longer configured",
                        )
                        .await?;
                    tracing::error!(channel = %channel_name, alerts = ids.len(), "alerts for a channel that is no longer configured were given up after 24 h");
                } else {
                    self.store
                        .postpone_deliveries(
                            &ids,
                            now.saturating_add(millis(REMOVED_CHANNEL_LOOK_EVERY)),
                            "the channel is no longer configured; kept until it is again (24 h at most)",
                        )
                        .await?;
                    tracing::warn!(channel = %channel_name, alerts = ids.len(), "alerts wait for a channel that is no longer configured; they go out if it is configured again within 24 h");
                }
                continue;
            };
            // Claimed first: agents sharing the database send each delivery once.
            let ids: Vec<i64> = members.iter().map(|d| d.delivery_id).collect();
            let claimed = self
                .store
                .claim_deliveries(
                    &ids,
                    &self.renderer.location,
                    // Leases are compared across agents: by the database's clock.
                    self.store.clock_ms().await?,
                    CLAIM_LEASE,
                )
                .await?;
            let members: Vec<PendingDelivery> = members
                .into_iter()
                .filter(|d| claimed.contains(&d.delivery_id))
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut incident_ids: Vec<i64> = members.iter().map(|d| d.incident_id).collect();
            incident_ids.dedup();
            let rows = self.store.incidents_by_id(&incident_ids).await?;
            let mut alert = self.renderer.alert(kind.into(), category, &rows);
            alert.upstream = self.upstream_sentence(category).await;
            let delivery = Delivery {
                first_event_id: members[0].event_id,
                installation: self
                    .installation
                    .get_or_try_init(|| self.store.installation_id())
                    .await?
                    .clone(),
                thread_roots: self
                    .store
                    .thread_roots(
                        &rows.iter().map(|r| r.id).collect::<Vec<_>>(),
                        &channel_name,
                    )
                    .await?,
            };
            let ids: Vec<i64> = members.iter().map(|d| d.delivery_id).collect();
            let outcome = tokio::time::timeout(SEND_TIMEOUT, channel.send(&alert, &delivery))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::temporary(format!(
                        "no answer within {}",
                        humantime::format_duration(SEND_TIMEOUT)
                    )))
                });
            match outcome {
                Ok(message_id) => {
                    let marked = self
                        .store
                        .mark_sent(
                            &ids,
                            &self.renderer.location,
                            now_ms(),
                            message_id.as_deref(),
                        )
                        .await?;
                    warn_if_taken_over(&channel_name, ids.len(), marked);
                    self.metrics.alert(&channel_name, AlertResult::Sent);
                    sent += 1;
                    tracing::info!(channel = %channel_name, event = %kind, %category, targets = alert.incidents.len(), "alert sent");
                }
                Err(e) => {
                    let error = mask(&self.secrets, &e.message);
                    let attempts =
                        u32::try_from(members.iter().map(|d| d.attempts).max().unwrap_or(0) + 1)
                            .unwrap_or(u32::MAX);
                    let oldest = members.iter().map(|d| d.created_at_ms).min().unwrap_or(now);
                    let next = now.saturating_add(millis(backoff(attempts)));
                    let give_up = e.permanent || next - oldest > millis(GIVE_UP_AFTER);
                    let marked = self
                        .store
                        .mark_attempt_failed(
                            &ids,
                            &self.renderer.location,
                            (!give_up).then_some(next),
                            &error,
                        )
                        .await?;
                    warn_if_taken_over(&channel_name, ids.len(), marked);
                    self.metrics.alert(
                        &channel_name,
                        if give_up {
                            AlertResult::Failed
                        } else {
                            AlertResult::Retry
                        },
                    );
                    if give_up {
                        tracing::error!(channel = %channel_name, event = %kind, %category, attempts, error = %error, "alert delivery failed for good");
                    } else {
                        tracing::warn!(channel = %channel_name, event = %kind, %category, attempts, retry_in = %humantime::format_duration(backoff(attempts)), error = %error, "alert delivery failed; will retry");
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Records the due deliveries that a silence or maintenance window holds back as
    /// suppressed (with what suppressed them) and returns the others.
    async fn suppress(
        &self,
        pending: Vec<PendingDelivery>,
        suppressor: &Suppressor,
        now: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        if suppressor.silences.is_empty() && suppressor.maintenance.is_empty() {
            return Ok(pending);
        }
        let mut ids: Vec<i64> = pending.iter().map(|d| d.incident_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let rows: HashMap<i64, IncidentRow> = self
            .store
            .incidents_by_id(&ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let mut keep = Vec::with_capacity(pending.len());
        let mut held: BTreeMap<String, (Suppression, Vec<i64>)> = BTreeMap::new();
        for d in pending {
            let reason = (d.next_attempt_at_ms <= now)
                .then(|| rows.get(&d.incident_id))
                .flatten()
                .and_then(|row| suppressor.reason(row, now));
            match reason {
                Some(reason) => {
                    tracing::info!(channel = %d.channel, event = %d.kind, incident = d.incident_id, by = ?reason, "alert suppressed");
                    held.entry(format!("{reason:?}"))
                        .or_insert((reason, Vec::new()))
                        .1
                        .push(d.delivery_id);
                }
                None => keep.push(d),
            }
        }
        for (reason, ids) in held.into_values() {
            self.store.mark_suppressed(&ids, &reason).await?;
            self.maybe_suppressed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(keep)
    }

    /// Open incidents whose firing alert was suppressed get it now on each channel where
    /// nothing suppresses them any more. Whether it wrote any.
    async fn refire_unsuppressed(
        &self,
        suppressor: &Suppressor,
        now: i64,
    ) -> Result<bool, StoreError> {
        let candidates = self.store.suppressed_firings().await?;
        if candidates.is_empty() {
            self.maybe_suppressed
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        let mut wrote = false;
        let mut ids: Vec<i64> = candidates.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        for row in self.store.incidents_by_id(&ids).await? {
            if row.resolved_at_ms.is_some() || suppressor.reason(&row, now).is_some() {
                continue;
            }
            let channels: Vec<&str> = candidates
                .iter()
                .filter(|(id, c)| *id == row.id && self.channels.iter().any(|(n, _)| n == c))
                .map(|(_, c)| c.as_str())
                .collect();
            if !channels.is_empty() {
                tracing::info!(
                    incident = row.id,
                    "nothing suppresses the incident any more; its firing alert goes out"
                );
                self.store
                    .refire(row.id, row.category, &channels, now)
                    .await?;
                wrote = true;
            }
        }
        Ok(wrote)
    }

    /// What the stored state of the status page says for an alert of `category`: read from
    /// the database only, never fetched here, so it never delays an alert.
    async fn upstream_sentence(&self, category: Category) -> Option<String> {
        if !self.upstream.enabled {
            return None;
        }
        let state = match self.store.upstream_state(self.upstream.url.as_str()).await {
            Ok(state) => state.map(|s| s.0).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored status page state");
                crate::upstream::UpstreamState::default()
            }
        };
        let stale_ms = crate::upstream::stale_after_ms(self.upstream.interval);
        crate::upstream::sentence(category, &state, now_ms(), stale_ms)
    }

    /// Takes over a reloaded config: channels, routing times and targets.
    fn reconfigure(&mut self, config: &Config) {
        match channels(config) {
            Ok(c) => self.channels = c,
            Err(e) => {
                tracing::error!(error = %e, "alert channels of the reloaded config are invalid; keeping the old ones")
            }
        }
        self.renderer = Renderer::new(config);
        self.reminder_ms = millis(config.alerts.reminder_interval);
        self.group_wait_ms = millis(config.alerts.group_wait);
        self.secrets = config.secrets();
        self.upstream = config.upstream_status.clone();
        self.maintenance = config.maintenance.clone();
    }

    /// Runs until cancelled: a pass whenever woken, and at least every second. A send in
    /// progress at cancellation is allowed to finish, so that its outcome is recorded.
    pub async fn run(
        mut self,
        mut config: tokio::sync::watch::Receiver<Arc<Config>>,
        cancel: CancellationToken,
    ) {
        loop {
            if config.has_changed().unwrap_or(false) {
                let c = config.borrow_and_update().clone();
                self.reconfigure(&c);
            }
            // On shutdown a send in progress gets a grace period to finish and record its
            // outcome; past it, the delivery stays pending and goes out after the restart.
            let grace = async {
                cancel.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            let mut sent_any = true;
            tokio::select! {
                result = self.run_once(now_ms()) => {
                    match result {
                        Ok(sent) => sent_any = sent > 0,
                        Err(e) => tracing::error!(error = %e, "alert outbox pass failed; retrying"),
                    }
                }
                () = grace => {
                    tracing::warn!("alert delivery still in progress at shutdown; it stays pending");
                    break;
                }
            }
            let next = self.store.next_delivery_at().await.ok().flatten();
            let wait = next.map_or(LOOK_EVERY, |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(LOOK_EVERY)
            });
            // A due delivery this agent cannot send (a fleet: a channel only another agent
            // has) must not make it spin: after a pass that sent nothing, a short pause.
            let wait = if sent_any {
                wait
            } else {
                wait.max(IDLE_PASS_PAUSE)
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {},
                () = tokio::time::sleep(wait) => {},
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten_minutes() {
        let secs: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
