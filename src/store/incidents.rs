//! Incidents, the detector's state, and the transaction that records a batch of probes
//! together with the incident changes and alert events they cause.

use super::engine::Tx;
use super::{Store, StoreError};
use crate::config::Detection;
use crate::detect::{self, TargetState, Transition};
use crate::domain::{Category, DeliveryState, EventKind};
use crate::probe::Observation;
use std::collections::HashMap;

/// Which channels an event goes to, and how events are grouped.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    pub channels: Vec<ChannelRoute>,
    /// `[[alerts.routes]]`; empty: every channel.
    pub routes: Vec<crate::config::Route>,
    pub send_resolved: bool,
    pub group_wait_ms: i64,
}

impl Routing {
    /// The channels an event about (target, category, location) goes to: the routes' when
    /// there are routes (first match wins, `continue` goes on), else every channel; either
    /// way only the channels told about the category.
    pub fn channels_for(&self, target: &str, category: Category, location: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if self.routes.is_empty() {
            out.extend(self.channels.iter().map(|c| c.name.as_str()));
        } else {
            for route in self
                .routes
                .iter()
                .filter(|r| r.matches(target, category, location))
            {
                for c in &route.channels {
                    if !out.contains(&c.as_str()) {
                        out.push(c);
                    }
                }
                if !route.continue_ {
                    break;
                }
            }
        }
        out.retain(|name| {
            self.channels
                .iter()
                .any(|c| c.name == *name && c.categories.contains(&category))
        });
        out
    }
}

/// A channel and the categories it is notified of.
#[derive(Debug, Clone)]
pub struct ChannelRoute {
    pub name: String,
    pub categories: Vec<Category>,
}

/// What a recorded batch changed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Incidents opened and resolved, in order.
    pub changes: Vec<IncidentChange>,
    /// Alert events written to the outbox.
    pub events: usize,
}

/// An incident that opened or resolved.
#[derive(Debug, Clone)]
pub struct IncidentChange {
    pub target: String,
    pub incident_id: i64,
    /// `Opened` or `Resolved`.
    pub transition: Transition,
    /// `Opened` by another location already: this one joined it (no new incident).
    pub joined: bool,
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
        let mut tx = self.write_tx().await?;
        // Agents sharing a PostgreSQL database take turns at incident changes, so that two
        // locations opening or resolving one incident at once cannot both alert or both
        // leave it open.
        tx.serialize(super::engine::INCIDENTS_LOCK).await?;
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
            let mut steps: Vec<(Transition, Evidence<'_>)> =
                detect::step(state, detection, verdict)
                    .into_iter()
                    .map(|t| (t, Evidence::of(o)))
                    .collect();
            let headroom = crate::leading::headroom(o, detection)
                .map(|r| (r, detection.failure_threshold.get()));
            let slow = if o.entry.is_ok() {
                let recent = state
                    .latencies
                    .entry(crate::leading::latency_key(o))
                    .or_default();
                recent.push_back(o.latency_ms);
                while recent.len() > detection.failure_threshold.get() as usize {
                    recent.pop_front();
                }
                let recent: Vec<i64> = recent.iter().copied().collect();
                let baseline = self.latency_baseline(&mut tx, o).await?;
                // The recent median is over several probes already: one reading opens it.
                crate::leading::slow(o, &recent, baseline, detection).map(|r| (r, 1))
            } else {
                None
            };
            for (reading, open_after) in headroom.iter().chain(slow.iter()) {
                if let Some(t) = detect::step_signal(state, detection, &reading.signal, *open_after)
                {
                    steps.push((
                        t,
                        Evidence {
                            error_id: reading.signal.category.as_str(),
                            http_status: None,
                            message: Some(&reading.message),
                            request_id: o.request_id.as_deref(),
                        },
                    ));
                }
            }
            for (t, evidence) in steps {
                let (events, joined) = apply(&mut tx, location, o, t, &evidence, routing).await?;
                recorded.events += events;
                if !matches!(t, Transition::Seen { .. }) {
                    let incident_id =
                        open_or_last_id(&mut tx, o.target.as_str(), category_of(t)).await?;
                    recorded.changes.push(IncidentChange {
                        target: o.target.to_string(),
                        incident_id,
                        transition: t,
                        joined,
                    });
                }
            }
            if !touched.contains(&o.target.as_str()) {
                touched.push(o.target.as_str());
            }
        }
        for o in batch {
            if let Some(wait) = o.retry_after {
                let until = o
                    .at_ms
                    .saturating_add(o.latency_ms)
                    .saturating_add(crate::clock::millis(wait));
                on!(tx, c => sqlx::query(
                    "insert into probe_holds (target, probe, until_ms) values ($1, $2, $3) \
                     on conflict (target, probe) do update set until_ms = \
                     case when excluded.until_ms > probe_holds.until_ms then excluded.until_ms else probe_holds.until_ms end",
                )
                .bind(o.target.as_str())
                .bind(o.kind)
                .bind(until)
                .execute(c).await.map(|r| r.rows_affected()))?;
            }
        }
        // A state whose latencies alone changed is written at most once a minute: at one
        // probe a second, writing every state of every batch was a third of the work.
        let now_ms = batch.iter().map(|o| o.at_ms).max().unwrap_or(0);
        touched.retain(|target| states[*target].needs_storing(now_ms));
        let saved = touched
            .iter()
            .map(|&target| {
                serde_json::to_string(&states[target])
                    .map(|json| (target, json))
                    .map_err(|e| StoreError::Sql(sqlx::Error::Decode(Box::new(e))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in super::probes::row_chunks(&saved) {
            write_on!(tx, q = "insert into detector_states (location, target, state) " => {
                q.push_values(chunk, |mut row, (target, json)| {
                    row.push_bind(location).push_bind(*target).push_bind(json.as_str());
                });
                q.push(" on conflict (location, target) do update set state = excluded.state");
            })?;
        }
        self.commit(tx).await?;
        for target in touched {
            if let Some(state) = states.get_mut(target) {
                state.mark_stored(now_ms);
            }
        }
        Ok(recorded)
    }

    /// Resolves every open incident of a target that is no longer configured, with the
    /// resolved alerts the routing asks for, and forgets its detector state. Returns the
    /// incidents resolved.
    pub async fn resolve_removed_target(
        &self,
        location: &str,
        target: &str,
        at_ms: i64,
        routing: &Routing,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.write_tx().await?;
        tx.serialize(super::engine::INCIDENTS_LOCK).await?;
        let open: Vec<(Category,)> = on!(tx, c => sqlx::query_as(
            "select i.category from incidents i join incident_locations l on l.incident_id = i.id \
             where i.target = $1 and i.resolved_at_ms is null and l.location = $2 and l.until_ms is null",
        )
        .bind(target)
        .bind(location)
        .fetch_all(c).await)?;
        let mut recorded = Recorded::default();
        for (category,) in open {
            if let Some((incident_id, events)) =
                resolve(&mut tx, location, target, category, at_ms, routing).await?
            {
                recorded.events += events;
                recorded.changes.push(IncidentChange {
                    target: target.to_string(),
                    incident_id,
                    transition: Transition::Resolved { category },
                    joined: false,
                });
            }
        }
        on!(tx, c => sqlx::query("delete from detector_states where target = $1 and location in ($2, '')")
            .bind(target)
            .bind(location)
            .execute(c).await.map(|r| r.rows_affected()))?;
        self.commit(tx).await?;
        Ok(recorded)
    }
}

fn category_of(t: Transition) -> Category {
    match t {
        Transition::Opened { category, .. }
        | Transition::Seen { category }
        | Transition::Resolved { category } => category,
    }
}

async fn open_or_last_id(tx: &mut Tx, target: &str, category: Category) -> Result<i64, StoreError> {
    let (id,): (i64,) = on!(tx, c => sqlx::query_as("select id from incidents where target = $1 and category = $2 order by (resolved_at_ms is null) desc, id desc limit 1")
        .bind(target)
        .bind(category)
        .fetch_one(c).await)?;
    Ok(id)
}

/// Applies one transition to the incidents table and writes its alert events; returns how
/// many events were written.
impl Store {
    /// The usual latency of healthy probes of `o`'s target and kind: the median of the hourly
    /// mean latencies of the 24 whole hours before the hour of `o` (from the rollups, so that
    /// it survives restarts). Those hours are over, so it is read once an hour per target
    /// and kind, not once a probe.
    async fn latency_baseline(
        &self,
        tx: &mut Tx,
        o: &Observation,
    ) -> Result<Option<f64>, StoreError> {
        let hour = o.at_ms - o.at_ms.rem_euclid(super::HOUR_MS);
        let key = (o.target.to_string(), o.kind);
        let cached = self
            .baselines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        if let Some((for_hour, baseline)) = cached
            && for_hour == hour
        {
            return Ok(baseline);
        }
        let means: Vec<(f64,)> = on!(tx, c => sqlx::query_as(
            "select cast(latency_sum_ms as double precision) / count from rollups \
             where target = $1 and probe = $2 and category = $3 and hour_ms >= $4 and hour_ms < $5 and count > 0",
        )
        .bind(o.target.as_str())
        .bind(o.kind)
        .bind(Category::Ok)
        .bind(hour.saturating_sub(24 * super::HOUR_MS))
        .bind(hour)
        .fetch_all(c).await)?;
        let baseline = crate::leading::median(means.into_iter().map(|(m,)| m));
        self.baselines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (hour, baseline));
        Ok(baseline)
    }
}

/// What an incident row records of the probe that changed it: its answer, or for a leading
/// signal, the signal's words.
struct Evidence<'a> {
    error_id: &'a str,
    http_status: Option<i64>,
    message: Option<&'a str>,
    request_id: Option<&'a str>,
}

impl<'a> Evidence<'a> {
    fn of(o: &'a Observation) -> Evidence<'a> {
        Evidence {
            error_id: o.entry.id,
            http_status: o.http_status.map(i64::from),
            message: o.message.as_deref(),
            request_id: o.request_id.as_deref(),
        }
    }
}

async fn apply(
    tx: &mut Tx,
    location: &str,
    o: &Observation,
    t: Transition,
    ev: &Evidence<'_>,
    routing: &Routing,
) -> Result<(usize, bool), StoreError> {
    match t {
        Transition::Opened {
            category,
            probe_count,
            since_ms,
        } => {
            // The first location to see it opens the incident; later ones join it.
            let opened: Option<i64> = on!(tx, c => sqlx::query_scalar(
                "insert into incidents (target, category, location, probe, first_error_id, last_error_id, http_status, \
                 opened_at_ms, last_seen_at_ms, probe_count, last_message, request_id) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 on conflict (target, category) where resolved_at_ms is null do nothing returning id",
            )
            .bind(o.target.as_str())
            .bind(category)
            .bind(location)
            .bind(o.kind)
            .bind(ev.error_id)
            .bind(ev.error_id)
            .bind(ev.http_status)
            .bind(since_ms)
            .bind(o.at_ms)
            .bind(i64::from(probe_count))
            .bind(ev.message)
            .bind(ev.request_id)
            .fetch_optional(c).await)?;
            let id = match opened {
                Some(id) => id,
                None => open_or_last_id(tx, o.target.as_str(), category).await?,
            };
            on!(tx, c => sqlx::query(
                "insert into incident_locations (incident_id, location, since_ms) values ($1, $2, $3) \
                 on conflict (incident_id, location) do update set since_ms = excluded.since_ms, until_ms = null",
            )
            .bind(id)
            .bind(location)
            .bind(since_ms)
            .execute(c).await.map(|r| r.rows_affected()))?;
            if opened.is_none() {
                return Ok((0, true));
            }
            let channels = routing.channels_for(o.target.as_str(), category, location);
            insert_event(
                tx,
                id,
                EventKind::Firing,
                category,
                o.at_ms,
                routing.group_wait_ms,
                &channels,
            )
            .await
            .map(|events| (events, false))
        }
        Transition::Seen { category } => {
            write_on!(tx, q = "update incidents set last_error_id = " => {
                q.push_bind(ev.error_id)
                    .push(", http_status = ")
                    .push_bind(ev.http_status)
                    .push(", last_seen_at_ms = ")
                    .push_bind(o.at_ms)
                    .push(", probe_count = probe_count + 1, last_message = coalesce(")
                    .push_bind(ev.message)
                    .push(", last_message), request_id = coalesce(")
                    .push_bind(ev.request_id)
                    .push(", request_id) where target = ")
                    .push_bind(o.target.as_str())
                    .push(" and category = ")
                    .push_bind(category)
                    .push(" and resolved_at_ms is null");
            })?;
            Ok((0, false))
        }
        Transition::Resolved { category } => Ok((
            resolve(tx, location, o.target.as_str(), category, o.at_ms, routing)
                .await?
                .map_or(0, |(_, events)| events),
            false,
        )),
    }
}

/// `location` no longer sees the open incident of (target, category). When no location
/// sees it any more, the incident is resolved and its resolved event written; returns the
/// incident's id and the number of events written then.
pub(super) async fn resolve(
    tx: &mut Tx,
    location: &str,
    target: &str,
    category: Category,
    at_ms: i64,
    routing: &Routing,
) -> Result<Option<(i64, usize)>, StoreError> {
    let open: Option<i64> = on!(tx, c => sqlx::query_scalar(
        "select id from incidents where target = $1 and category = $2 and resolved_at_ms is null",
    )
    .bind(target)
    .bind(category)
    .fetch_optional(c).await)?;
    let Some(open) = open else { return Ok(None) };
    let elsewhere: i64 = on!(tx, c => sqlx::query_scalar(
        "select count(*) from incident_locations where incident_id = $1 and location != $2 and until_ms is null",
    )
    .bind(open)
    .bind(location)
    .fetch_one(c).await)?;
    on!(tx, c => sqlx::query(
        "update incident_locations set until_ms = $1 where incident_id = $2 and location = $3 and until_ms is null",
    )
    .bind(at_ms)
    .bind(open)
    .bind(location)
    .execute(c).await.map(|r| r.rows_affected()))?;
    if elsewhere > 0 {
        return Ok(None);
    }
    close_incident(tx, open, category, at_ms, routing)
        .await
        .map(Some)
}

/// Resolves an open incident and writes its resolved event; returns the incident's id and the
/// number of events written.
pub(super) async fn close_incident(
    tx: &mut Tx,
    id: i64,
    category: Category,
    at_ms: i64,
    routing: &Routing,
) -> Result<(i64, usize), StoreError> {
    on!(tx, c => sqlx::query("update incidents set resolved_at_ms = $1 where id = $2")
        .bind(at_ms)
        .bind(id)
        .execute(c).await.map(|r| r.rows_affected()))?;
    if !routing.send_resolved {
        return Ok((id, 0));
    }
    // A resolved message goes where the firing message went, and only there (not where it
    // was suppressed).
    let channels: Vec<(String,)> = on!(tx, c => sqlx::query_as(
        "select distinct d.channel from alert_deliveries d join alert_events e on e.id = d.event_id \
         where e.incident_id = $1 and e.kind = $2 and d.state != $3",
    )
    .bind(id)
    .bind(EventKind::Firing)
    .bind(DeliveryState::Suppressed)
    .fetch_all(c).await)?;
    let channels: Vec<&str> = channels.iter().map(|(c,)| c.as_str()).collect();
    let events = insert_event(
        tx,
        id,
        EventKind::Resolved,
        category,
        at_ms,
        routing.group_wait_ms,
        &channels,
    )
    .await?;
    Ok((id, events))
}

/// Writes an alert event and one pending delivery per channel; nothing when no channel wants it.
pub(super) async fn insert_event(
    tx: &mut Tx,
    incident_id: i64,
    kind: EventKind,
    category: Category,
    at_ms: i64,
    group_wait_ms: i64,
    channels: &[&str],
) -> Result<usize, StoreError> {
    if channels.is_empty() {
        return Ok(0);
    }
    let due = at_ms.saturating_add(group_wait_ms);
    let event_id: i64 = on!(tx, c => sqlx::query_scalar(
        "insert into alert_events (incident_id, kind, category, created_at_ms, due_at_ms) values ($1, $2, $3, $4, $5) returning id",
    )
    .bind(incident_id)
    .bind(kind)
    .bind(category)
    .bind(at_ms)
    .bind(due)
    .fetch_one(c).await)?;
    for channel in channels {
        on!(tx, c => sqlx::query("insert into alert_deliveries (event_id, channel, state, next_attempt_at_ms) values ($1, $2, $3, $4)")
            .bind(event_id)
            .bind(channel)
            .bind(DeliveryState::Pending)
            .bind(due)
            .execute(c).await.map(|r| r.rows_affected()))?;
    }
    Ok(1)
}
