//! The simulated status page: a Statuspage v2 `summary.json` whose incidents can be switched at
//! run time, with ETags and 304 answers, or garbage, or no answer at all.

use super::SimState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the simulated status page says (a Statuspage v2 `summary.json`).
#[derive(Debug, Clone, PartialEq)]
pub enum StatusPage {
    /// All systems operational, no incident.
    Clear,
    /// An incident under investigation, with this name.
    Incident(String),
    /// This many incidents under investigation, each with this name (a careless or hostile
    /// page).
    Incidents(usize, String),
    /// An answer that is not a status page.
    Garbage,
    /// No answer at all.
    Hang,
}

pub(super) async fn get(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let page = state
        .status_page
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // Conditional requests, as Statuspage answers them: the ETag names what the page says.
    let etag = format!(
        "\"{}\"",
        match &page {
            StatusPage::Clear => "clear".to_string(),
            StatusPage::Incident(name) => format!("incident-{}", name.len()),
            StatusPage::Incidents(n, name) => format!("incidents-{n}-{}", name.len()),
            StatusPage::Garbage | StatusPage::Hang => "other".to_string(),
        }
    );
    if matches!(
        page,
        StatusPage::Clear | StatusPage::Incident(_) | StatusPage::Incidents(..)
    ) && headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        state.status_not_modified.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let summary = |indicator: &str, description: &str, incidents: serde_json::Value| {
        axum::Json(serde_json::json!({
            "page": {"id": "sim", "name": "OpenAI (simulated)", "url": "http://status.sim"},
            "status": {"indicator": indicator, "description": description},
            "components": [{"name": "API", "status": if indicator == "none" { "operational" } else { "major_outage" }}],
            "incidents": incidents,
            "scheduled_maintenances": []
        }))
        .into_response()
    };
    match page {
        StatusPage::Clear => with_etag(
            summary("none", "All Systems Operational", serde_json::json!([])),
            &etag,
        ),
        StatusPage::Incident(name) => with_etag(
            summary(
                "major",
                "Partial System Outage",
                serde_json::json!([{
                    "name": name, "status": "investigating", "impact": "major",
                    "shortlink": "https://stspg.io/sim", "updated_at": "2026-11-25T10:00:00Z"
                }]),
            ),
            &etag,
        ),
        StatusPage::Incidents(n, name) => with_etag(
            summary(
                "major",
                "Partial System Outage",
                serde_json::Value::Array(
                    (0..n)
                        .map(|i| {
                            serde_json::json!({
                                "name": name, "status": "investigating", "impact": "major",
                                "shortlink": format!("https://stspg.io/sim{i}"),
                                "updated_at": "2026-11-25T10:00:00Z"
                            })
                        })
                        .collect(),
                ),
            ),
            &etag,
        ),
        StatusPage::Garbage => (StatusCode::OK, "<html>maintenance</html>").into_response(),
        StatusPage::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

fn with_etag(mut response: Response, etag: &str) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `PUT /_sim/status` with `clear`, `incident NAME`, `garbage` or `hang`.
pub(super) async fn put(State(state): State<Arc<SimState>>, body: String) -> Response {
    let body = body.trim();
    let page = match body {
        "clear" => StatusPage::Clear,
        "garbage" => StatusPage::Garbage,
        "hang" => StatusPage::Hang,
        _ => match body.strip_prefix("incident ") {
            Some(name) if !name.trim().is_empty() => StatusPage::Incident(name.trim().to_string()),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "give clear, incident NAME, garbage or hang\n",
                )
                    .into_response();
            }
        },
    };
    state.set_status_page(page);
    StatusCode::NO_CONTENT.into_response()
}
