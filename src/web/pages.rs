//! The HTML pages: the status page and one page per incident. Askama templates, escaping by
//! default: upstream messages are untrusted and only ever shown as text.

use super::view::{self, IncidentCard};
use super::{AppState, Error};
use crate::catalog;
use crate::config::Config;
use crate::domain::{Category, DeliveryState, EventKind, ProbeKind};
use crate::store::{DeliveryCounts, HOUR_MS};
use crate::timefmt::rfc3339;
use askama::Template;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// How often the status page reloads itself.
const REFRESH_SECS: u32 = 30;
/// Most probes shown on an incident's timeline.
const TIMELINE_LIMIT: i64 = 500;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/incidents/{id}", get(incident))
        .route("/assets/style.css", get(css))
}

struct TargetCard {
    name: String,
    base_url: String,
    state: String,
    category: String,
    error_id: String,
    since: String,
    last_probe_at: String,
    message: String,
    latency_ms: String,
    day: Vec<view::ColourPath>,
    quarter: Vec<view::ColourPath>,
    latency: view::Chart,
    latency_max: i64,
    headroom: Vec<view::HeadroomView>,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    overall: String,
    generated_at: String,
    refresh_secs: u32,
    targets: Vec<TargetCard>,
    open: Vec<IncidentCard>,
    recent: Vec<IncidentCard>,
    deliveries: Vec<DeliveryCounts>,
    failures: Vec<crate::store::FailedDelivery>,
    /// "OpenAI reports: …", or that the status page is unavailable.
    upstream: Option<String>,
    silences: Vec<view::SilenceView>,
    /// Silences not listed (newest are): the API lists them all.
    silences_more: usize,
    maintenance: Vec<view::MaintenanceView>,
    /// Target × location, for a fleet (more than one location has probed).
    grid: Option<Grid>,
}

/// What each location saw last of each target (SPEC §14).
struct Grid {
    locations: Vec<String>,
    rows: Vec<(String, Vec<GridCell>)>,
}

struct GridCell {
    /// A category (`ok`, `region`, …), or `none` where the location has not probed it.
    class: &'static str,
    text: String,
    title: String,
}

fn grid(status: &crate::status::Status) -> Option<Grid> {
    let mut locations: Vec<String> = status
        .targets
        .iter()
        .flat_map(|t| t.locations.iter().map(|l| l.location.clone()))
        .collect();
    locations.sort();
    locations.dedup();
    if locations.len() < 2 {
        return None;
    }
    let rows = status
        .targets
        .iter()
        .map(|t| {
            let cells = locations
                .iter()
                .map(|l| match t.locations.iter().find(|s| s.location == *l) {
                    Some(s) => GridCell {
                        class: s.category.as_str(),
                        text: s.error_id.clone(),
                        title: format!(
                            "{} from {}: {} at {}{}",
                            t.name,
                            l,
                            s.error_id,
                            s.last_probe_at,
                            if s.silent { " (agent silent)" } else { "" }
                        ),
                    },
                    None => GridCell {
                        class: "none",
                        text: "—".into(),
                        title: format!("{} not probed from {l}", t.name),
                    },
                })
                .collect();
            (t.name.clone(), cells)
        })
        .collect();
    Some(Grid { locations, rows })
}

fn render(page: &impl Template) -> Result<Response, Error> {
    let html = page.render().map_err(|e| Error::Internal(e.into()))?;
    Ok(Html(html).into_response())
}

/// Most silences listed on the status page; the rest are counted and linked.
const SILENCES_SHOWN: usize = 20;

async fn index(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    let config = state.config();
    let page = state
        .page
        .get_or_render(
            || state.store.generation(),
            config.clone(),
            || render_index(&state, &config),
        )
        .await?;
    Ok(page.respond(&headers))
}

/// The status page as HTML, read from the database.
async fn render_index(state: &AppState, config: &Arc<Config>) -> Result<String, Error> {
    let now = crate::clock::now_ms();
    let (status, latests) = crate::status::read_with_latest(&config.target_names(), &state.store)
        .await
        .map_err(Error::Internal)?;
    let today = now - now.rem_euclid(24 * HOUR_MS);
    let mut recent_by_target: std::collections::HashMap<String, Vec<crate::store::RollupRow>> =
        std::collections::HashMap::new();
    for r in state
        .store
        .rollups_since(&config.target_names(), now - 24 * HOUR_MS)
        .await?
    {
        recent_by_target.entry(r.target).or_default().push(r.rollup);
    }
    let (day_frame, quarter_frame) = (view::Frame::day(now), view::Frame::quarter(now));
    let mut targets = Vec::new();
    for ((t, s), latest) in config.targets.iter().zip(&status.targets).zip(latests) {
        let recent = recent_by_target.remove(&s.name).unwrap_or_default();
        let past = past_days(state, &s.name, today).await?;
        let quarter = past
            .iter()
            .chain(recent.iter().filter(|r| r.hour_ms >= today));
        let (latency, latency_max) = view::latency_bars(&recent, now);
        targets.push(TargetCard {
            name: s.name.clone(),
            base_url: t.base_url.to_string(),
            state: s.state.to_string(),
            category: s.category.map_or("none", |c| c.as_str()).to_string(),
            error_id: s.error_id.clone().unwrap_or_default(),
            since: s.since.clone().unwrap_or_default(),
            last_probe_at: s.last_probe_at.clone().unwrap_or_else(|| "never".into()),
            message: latest
                .as_ref()
                .and_then(|p| p.message.clone())
                .unwrap_or_default(),
            latency_ms: latest
                .as_ref()
                .map_or_else(String::new, |p| format!("{} ms", p.latency_ms)),
            day: view::colour_paths(&day_frame.bar(&recent), 10, "hours"),
            quarter: view::colour_paths(&quarter_frame.bar(quarter), 3, "days"),
            latency: view::Chart::new(&latency, "mean latency per hour"),
            latency_max,
            headroom: view::headroom(
                &recent,
                now,
                &t.probes
                    .iter()
                    .map(|p| {
                        let model = if p.kind.takes_model() {
                            p.model.clone()
                        } else {
                            p.kind.to_string()
                        };
                        (p.kind, model)
                    })
                    .collect::<Vec<_>>(),
                config.detection.headroom_warn,
            ),
        });
    }
    let suppressor = crate::silence::Suppressor {
        silences: state.store.silences(now, false).await?,
        maintenance: config.maintenance.clone(),
    };
    let open = state
        .store
        .open_incidents()
        .await?
        .iter()
        .map(|r| IncidentCard::from(r).with_suppression(suppressor.reason(r, now)))
        .collect();
    let recent = state
        .store
        .recent_resolved_incidents(10)
        .await?
        .iter()
        .map(IncidentCard::from)
        .collect();
    IndexPage {
        grid: grid(&status),
        overall: status.overall.to_string(),
        // The time of the latest probe shown, not of the rendering: the page (and its ETag)
        // stays the same while nothing new was recorded.
        generated_at: status
            .targets
            .iter()
            .filter_map(|t| t.last_probe_at.clone())
            .max()
            .unwrap_or_else(|| "never".into()),
        refresh_secs: REFRESH_SECS,
        targets,
        open,
        recent,
        deliveries: state.store.delivery_counts().await?,
        failures: state.store.failed_deliveries(10).await?,
        silences: suppressor
            .silences
            .iter()
            .take(SILENCES_SHOWN)
            .map(|s| view::SilenceView::new(s, now))
            .collect(),
        silences_more: suppressor.silences.len().saturating_sub(SILENCES_SHOWN),
        maintenance: config
            .maintenance
            .iter()
            .filter_map(|m| view::MaintenanceView::new(m, now))
            .collect(),
        upstream: super::api::upstream(state, config).await?.and_then(|u| {
            crate::upstream::banner(
                &u,
                now,
                crate::upstream::stale_after_ms(config.upstream_status.interval),
            )
        }),
    }
    .render()
    .map_err(|e| Error::Internal(e.into()))
}

/// The daily rollups of the 89 days before `today` (a day's start), cached per day.
async fn past_days(
    state: &AppState,
    target: &str,
    today: i64,
) -> Result<Arc<Vec<crate::store::RollupRow>>, Error> {
    if let Some((day, rows)) = state
        .past_days
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(target)
        && *day == today
    {
        return Ok(rows.clone());
    }
    let rows = Arc::new(
        state
            .store
            .daily_rollups(target, today - 89 * 24 * HOUR_MS, today)
            .await?,
    );
    state
        .past_days
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(target.to_string(), (today, rows.clone()));
    Ok(rows)
}

struct TimelineRow {
    at: String,
    probe: ProbeKind,
    category: Category,
    error_id: String,
    status: String,
    latency_ms: i64,
    message: String,
    request_id: String,
}

struct AlertRow {
    kind: EventKind,
    channel: String,
    state: DeliveryState,
    attempts: i64,
    created_at: String,
    sent_at: String,
    error: String,
    /// What suppressed it: "silence #3" or "maintenance key-rotation".
    suppressed_by: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    incident: IncidentCard,
    state: String,
    docs_url: &'static str,
    timeline: Vec<TimelineRow>,
    alerts: Vec<AlertRow>,
    truncated: bool,
}

async fn incident(
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, Error> {
    let Path(id) =
        id.map_err(|_| Error::BadRequest("an incident id is a positive number".into()))?;
    let row = state
        .store
        .incidents_by_id(&[id])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound(format!("no incident {id}")))?;
    let until = row.resolved_at_ms.unwrap_or_else(crate::clock::now_ms);
    let probes = state
        .store
        .probes_between(&row.target, row.opened_at_ms, until, TIMELINE_LIMIT + 1)
        .await?;
    let truncated = probes.len() as i64 > TIMELINE_LIMIT;
    let timeline = probes
        .into_iter()
        .take(TIMELINE_LIMIT as usize)
        .map(|p| TimelineRow {
            at: rfc3339(p.at_ms),
            probe: p.probe,
            category: p.category,
            error_id: p.error_id,
            status: p.http_status.map_or_else(
                || p.transport_error.map_or("", |k| k.as_str()).to_string(),
                |s| s.to_string(),
            ),
            latency_ms: p.latency_ms,
            message: p.message.unwrap_or_default(),
            request_id: p.request_id.unwrap_or_default(),
        })
        .collect();
    let alerts = state
        .store
        .deliveries_for_incident(id)
        .await?
        .into_iter()
        .map(|d| AlertRow {
            kind: d.kind,
            channel: d.channel,
            state: d.state,
            attempts: d.attempts,
            created_at: rfc3339(d.created_at_ms),
            sent_at: d.sent_at_ms.map(rfc3339).unwrap_or_default(),
            error: d.last_error.unwrap_or_default(),
            suppressed_by: match (d.silence_id, d.maintenance) {
                (Some(id), _) => format!("silence #{id}"),
                (None, Some(name)) => format!("maintenance {name}"),
                (None, None) => String::new(),
            },
        })
        .collect();
    render(&IncidentPage {
        state: if row.resolved_at_ms.is_some() {
            "resolved".into()
        } else {
            "open".into()
        },
        incident: IncidentCard::from(&row),
        docs_url: catalog::DOCS_URL,
        timeline,
        alerts,
        truncated,
    })
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}
