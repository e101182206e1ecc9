//! The daemon's HTTP server (SPEC §9): status page, incident pages, JSON API, metrics and
//! health, and the day-two writes (silences, acknowledgements). Loopback by default; named
//! tokens guard everything but `/healthz`, and every write needs one.

mod api;
mod auth;
mod cache;
mod pages;
pub mod serve;
pub mod view;
mod writes;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::watch;

/// Per target: (start of the day it was computed on, daily rollups of the 89 days before).
pub type PastDays = std::collections::HashMap<String, (i64, Arc<Vec<crate::store::RollupRow>>)>;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    /// The running config; replaced on reload.
    pub config: watch::Receiver<Arc<Config>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Per target: the start of the day it was computed on, and the daily rollups of the
    /// 89 days before it. Past days do not change, so the 90-day bar is computed once a day.
    pub past_days: std::sync::Mutex<PastDays>,
    /// The status page as last rendered.
    pub page: cache::PageCache,
    /// `/api/v1/status` as last rendered.
    pub status_json: cache::PageCache,
}

impl AppState {
    pub fn new(
        store: Store,
        config: watch::Receiver<Arc<Config>>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> AppState {
        AppState {
            store,
            config,
            metrics,
            health,
            past_days: Default::default(),
            page: cache::PageCache::new("text/html; charset=utf-8"),
            status_json: cache::PageCache::new("application/json"),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }
}

/// Errors of the web layer; internal causes are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Limit(why) => Error::Conflict(why),
            e => Error::Internal(e.into()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Internal(e) => {
                tracing::error!(error = %crate::error_chain::anyhow_chain(e), "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"openai-watch\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    let guarded = Router::new()
        .merge(pages::router())
        .merge(api::router())
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        // Writes check their own token (403 when none is configured, 401 without it).
        .merge(writes::router())
        .fallback(|| async { Error::NotFound("no such page".into()) })
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.health.check(crate::clock::now_ms()) {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unhealthy", "error": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, Error> {
    state
        .metrics
        .set_open_incidents(&state.store.open_incidents().await?);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response())
}

/// An error answered by the framework rather than a handler (405 for a method, 413 for a
/// body over the limit, a rejected extractor) as JSON `{"error": …}` like every other error:
/// its own short plain text, or the status's reason.
async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let mut json = (status, Json(serde_json::json!({ "error": text }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// The security headers of SPEC §9 on every answer, and errors as JSON.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = json_error(next.run(request).await).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Unless the answer says otherwise (the status page revalidates by ETag).
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
