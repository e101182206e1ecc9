//! The daemon's HTTP server (SPEC §9): status page, incident pages, JSON API, metrics and
//! health. Loopback by default; an optional token guards everything but `/healthz`.

mod api;
mod pages;
pub mod serve;
pub mod view;

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
use secrecy::ExposeSecret;
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
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::Internal(e.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
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
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
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

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Accepts `Authorization: Bearer TOKEN` or HTTP basic auth with TOKEN as the password.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    let Some(token) = &config.dashboard.auth_token else {
        return next.run(request).await;
    };
    let expected = token.expose_secret().as_bytes();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Schemes are case-insensitive (RFC 7235 §2.1): `bearer` is `Bearer`.
    let (scheme, credentials) = given.split_once(' ').unwrap_or((given, ""));
    let ok = if scheme.eq_ignore_ascii_case("bearer") {
        same_secret(credentials.trim().as_bytes(), expected)
    } else if scheme.eq_ignore_ascii_case("basic") {
        let basic = credentials;
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|raw| {
                raw.iter()
                    .position(|b| *b == b':')
                    .map(|i| raw[i + 1..].to_vec())
            })
            .is_some_and(|password| same_secret(&password, expected))
    } else {
        false
    };
    if ok {
        next.run(request).await
    } else {
        Error::Unauthorized.into_response()
    }
}

/// The security headers of SPEC §9 on every answer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
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
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
