//! The HTML pages: the status page and one page per incident. Askama templates, escaping by
//! default: upstream messages are untrusted and only ever shown as text.

use super::view::{self, IncidentCard, Segment};
use super::{AppState, Error};
use crate::catalog;
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
    day: Vec<Segment>,
    quarter: Vec<Segment>,
    latency: Vec<view::LatencyBar>,
    latency_max: i64,
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
    failures: Vec<(String, i64, String)>,
}

fn render(page: &impl Template) -> Result<Response, Error> {
    let html = page.render().map_err(|e| Error::Internal(e.into()))?;
    Ok(Html(html).into_response())
}

async fn index(State(state): State<Arc<AppState>>) -> Result<Response, Error> {
    let now = crate::notify::now_ms();
    let config = state.config();
    let status = crate::status::read(&config, &state.store)
        .await
        .map_err(Error::Internal)?;
    let mut targets = Vec::new();
    for (t, s) in config.targets.iter().zip(&status.targets) {
        let latest = state
            .store
            .recent_probes(&s.name, 1)
            .await?
            .into_iter()
            .next();
        let quarter_rollups = state
            .store
            .rollups(&s.name, now - 90 * 24 * HOUR_MS)
            .await?;
        let (latency, latency_max) = view::latency_bars(&quarter_rollups, now);
        targets.push(TargetCard {
            name: s.name.clone(),
            base_url: t.base_url.to_string(),
            state: s.state.to_string(),
            category: s.category.clone().unwrap_or_else(|| "none".into()),
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
            day: view::day_bar(&quarter_rollups, now),
            quarter: view::quarter_bar(&quarter_rollups, now),
            latency,
            latency_max,
        });
    }
    let incidents = state.store.all_incidents().await?;
    let open = incidents
        .iter()
        .filter(|i| i.resolved_at_ms.is_none())
        .map(IncidentCard::from)
        .collect();
    let recent = incidents
        .iter()
        .filter(|i| i.resolved_at_ms.is_some())
        .take(10)
        .map(IncidentCard::from)
        .collect();
    render(&IndexPage {
        overall: status.overall.to_string(),
        generated_at: rfc3339(now),
        refresh_secs: REFRESH_SECS,
        targets,
        open,
        recent,
        deliveries: state.store.delivery_counts().await?,
        failures: state.store.failed_deliveries(10).await?,
    })
}

struct TimelineRow {
    at: String,
    probe: String,
    category: String,
    error_id: String,
    status: String,
    latency_ms: i64,
    message: String,
    request_id: String,
}

struct AlertRow {
    kind: String,
    channel: String,
    state: String,
    attempts: i64,
    created_at: String,
    sent_at: String,
    error: String,
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
    let until = row.resolved_at_ms.unwrap_or_else(crate::notify::now_ms);
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
            status: p
                .http_status
                .map_or_else(|| p.transport_error.unwrap_or_default(), |s| s.to_string()),
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
