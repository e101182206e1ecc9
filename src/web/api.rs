//! The JSON API (SPEC §9). Field names are a contract.

use super::{AppState, Error};
use crate::catalog;
use crate::domain::{Category, ProbeKind, TransportErrorKind};
use crate::store::IncidentRow;
use crate::timefmt::rfc3339;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most probes one request returns.
const MAX_LIMIT: i64 = 1000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/targets/{name}/probes", get(probes))
}

/// Served from memory while nothing it shows has changed, like the status page.
async fn status(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    let config = state.config();
    let answer = state
        .status_json
        .get_or_render(
            || state.store.generation(),
            config.clone(),
            || async {
                let mut status = crate::status::read(&config.target_names(), &state.store)
                    .await
                    .map_err(Error::Internal)?;
                status.upstream = upstream(&state, &config).await?;
                serde_json::to_string(&status).map_err(|e| Error::Internal(e.into()))
            },
        )
        .await?;
    Ok(answer.respond(&headers))
}

/// What the status page last said, where it is polled (`None` where it is not).
pub async fn upstream(
    state: &AppState,
    config: &crate::config::Config,
) -> Result<Option<crate::upstream::UpstreamState>, Error> {
    if !config.upstream_status.enabled {
        return Ok(None);
    }
    Ok(Some(
        state
            .store
            .upstream_state(config.upstream_status.url.as_str())
            .await?
            .map(|s| s.0)
            .unwrap_or_default(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    state: Option<String>,
    target: Option<String>,
    /// At most this many (default 100, at most 1000), newest first.
    limit: Option<i64>,
    /// Only incidents with an id below this one: the cursor of the next page.
    before: Option<i64>,
}

/// The default and the largest page of `/api/v1/incidents`.
const INCIDENTS_PAGE: i64 = 100;
const MAX_INCIDENTS_PAGE: i64 = 1000;

/// An incident in the API.
#[derive(Debug, Serialize)]
pub struct ApiIncident {
    pub id: i64,
    pub target: String,
    pub category: Category,
    pub error_id: String,
    pub http_status: Option<i64>,
    pub opened_at: String,
    pub resolved_at: Option<String>,
    pub probe_count: i64,
    pub last_message: Option<String>,
    pub cause: String,
    pub resolution: String,
    /// `{ "by", "at", "comment" }` once acknowledged, else null.
    pub acknowledged: Option<ApiAck>,
    /// Where it is seen now (every location that saw it, once resolved); SPEC §14.
    pub locations: Vec<String>,
    /// Locations of running agents that do not see it (a fleet; empty on one machine).
    pub healthy_locations: Vec<String>,
}

/// Who acknowledged an incident, when, and why.
#[derive(Debug, Serialize)]
pub struct ApiAck {
    pub by: String,
    pub at: String,
    pub comment: Option<String>,
}

impl From<&IncidentRow> for ApiIncident {
    fn from(r: &IncidentRow) -> Self {
        let entry = catalog::entry(&r.last_error_id);
        ApiIncident {
            id: r.id,
            target: r.target.clone(),
            category: r.category,
            error_id: r.last_error_id.clone(),
            http_status: r.http_status,
            opened_at: rfc3339(r.opened_at_ms),
            resolved_at: r.resolved_at_ms.map(rfc3339),
            probe_count: r.probe_count,
            last_message: r.last_message.clone(),
            cause: entry.map_or("", |e| e.cause).to_string(),
            resolution: entry.map_or("", |e| e.resolution).to_string(),
            locations: r.locations.clone(),
            healthy_locations: r.healthy_locations.clone(),
            acknowledged: r.acked_at_ms.map(|at| ApiAck {
                by: r.acked_by.clone().unwrap_or_default(),
                at: rfc3339(at),
                comment: r.ack_comment.clone(),
            }),
        }
    }
}

fn bad_query(e: QueryRejection) -> Error {
    Error::BadRequest(format!("bad query: {}", e.body_text()))
}

/// A page of incidents, newest first; when more follow, a `Link: <…>; rel="next"` header
/// names the next page (the body stays the documented array).
async fn incidents(
    State(state): State<Arc<AppState>>,
    query: Result<Query<IncidentQuery>, QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(bad_query)?;
    let wanted = match q.state.as_deref().unwrap_or("all") {
        "open" => Some(true),
        "resolved" => Some(false),
        "all" => None,
        other => {
            return Err(Error::BadRequest(format!(
                "state must be open, resolved or all, not {:?}",
                other.chars().take(64).collect::<String>()
            )));
        }
    };
    if let Some(t) = &q.target {
        known_target(&state, t)?;
    }
    let limit = q.limit.unwrap_or(INCIDENTS_PAGE);
    if !(1..=MAX_INCIDENTS_PAGE).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {MAX_INCIDENTS_PAGE}"
        )));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(Error::BadRequest("before must be an incident id".into()));
    }
    // One more than asked: whether a next page exists.
    let mut rows = state
        .store
        .incidents_page(q.target.as_deref(), wanted, q.before, limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut response = Json(rows.iter().map(ApiIncident::from).collect::<Vec<_>>()).into_response();
    if more && let Some(last) = rows.last() {
        let mut next = format!("/api/v1/incidents?limit={limit}&before={}", last.id);
        if let Some(s) = &q.state {
            next.push_str(&format!("&state={s}"));
        }
        if let Some(t) = &q.target {
            next.push_str(&format!("&target={t}"));
        }
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}

fn known_target(state: &AppState, name: &str) -> Result<(), Error> {
    if state
        .config()
        .targets
        .iter()
        .any(|t| t.name().as_str() == name)
    {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "no target named {:?}",
            name.chars().take(64).collect::<String>()
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeQuery {
    since: Option<String>,
    limit: Option<i64>,
}

/// A raw probe in the API.
#[derive(Debug, Serialize)]
pub struct ApiProbe {
    pub at: String,
    pub location: String,
    pub target: String,
    pub probe: ProbeKind,
    pub latency_ms: i64,
    pub http_status: Option<i64>,
    pub transport_error: Option<TransportErrorKind>,
    pub category: Category,
    pub error_id: String,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub ratelimit_remaining_requests: Option<i64>,
    pub ratelimit_remaining_tokens: Option<i64>,
    /// `chat_stream`: time to the first token.
    pub ttft_ms: Option<i64>,
}

async fn probes(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ProbeQuery>, QueryRejection>,
) -> Result<Json<Vec<ApiProbe>>, Error> {
    let Path(name) = name.map_err(|e| Error::BadRequest(e.body_text()))?;
    let Query(q) = query.map_err(bad_query)?;
    known_target(&state, &name)?;
    let since_ms = match q.since.as_deref() {
        None => 0,
        Some(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
            .map_err(|_| {
                Error::BadRequest(format!(
                    "since must be an RFC 3339 time such as 2026-11-25T00:00:00Z, not {:?}",
                    s.chars().take(64).collect::<String>()
                ))
            })?,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let rows = state.store.probes_since(&name, since_ms, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|p| ApiProbe {
                at: rfc3339(p.at_ms),
                location: p.location,
                target: p.target,
                probe: p.probe,
                latency_ms: p.latency_ms,
                http_status: p.http_status,
                transport_error: p.transport_error,
                category: p.category,
                error_id: p.error_id,
                message: p.message,
                request_id: p.request_id,
                ratelimit_remaining_requests: p.ratelimit_remaining_requests,
                ratelimit_remaining_tokens: p.ratelimit_remaining_tokens,
                ttft_ms: p.ttft_ms,
            })
            .collect(),
    ))
}
