//! An OpenAI-shaped fake API that answers with any catalog entry: for trying alert routes,
//! for the `demo`, and for the tests (which talk to it over real TCP sockets).
//!
//! Which answer a request gets:
//! - `/s/{scenario}/v1/...` always answers with that scenario;
//! - `/t/{tag}/v1/...` answers with the scenario set for `tag` (`PUT /_sim/tags/{tag}`), else
//!   the default one;
//! - `/v1/...` answers with the default scenario (`--scenario`, or `PUT /_sim/scenario`).
//!
//! Scenarios are `ok` and every catalog id. `timeout` hangs without answering,
//! `connection_failed` cuts the connection in the middle of the answer, `edge_blocked` serves an
//! HTML block page, and `rate_limit_exceeded` carries `retry-after`. A request without an
//! `Authorization: Bearer` header gets the 401 the real API gives. `invalid_api_key` echoes the
//! key it was sent, as a careless server would: the monitor must mask it.

mod answers;
mod status_page;

pub use status_page::StatusPage;

use crate::catalog;
use answers::{answer, api_error, api_error_full, cut_connection, html, not_found};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// Requests remembered for `GET /_sim/requests`.
const LOG_CAPACITY: usize = 10_000;
/// What `rate_limit_exceeded` asks the client to wait, in seconds.
pub const RATE_LIMIT_RETRY_AFTER_SECS: u64 = 20;

/// Every scenario name the simulator knows: `ok`, then the catalog ids.
/// A healthy account with a long model list (many fine-tuned models): about 600 KiB.
pub const OK_MANY_MODELS: &str = "ok_many_models";

/// A stream that starts, then carries an `error` event (streamed chat completions only).
pub const STREAM_ERROR: &str = "stream_error";
/// A stream that starts, then breaks off (streamed chat completions only).
pub const STREAM_CUT: &str = "stream_cut";

pub fn scenarios() -> Vec<&'static str> {
    ["ok", OK_MANY_MODELS, STREAM_ERROR, STREAM_CUT]
        .into_iter()
        .chain(catalog::CATALOG.iter().map(|e| e.id))
        .collect()
}

/// One request the simulator answered.
#[derive(Debug, Clone, Serialize)]
pub struct RequestLog {
    pub at_ms: i64,
    pub method: String,
    pub path: String,
    pub scenario: String,
}

/// The simulator's mutable state: which scenario answers, and what was asked.
pub struct SimState {
    default: RwLock<String>,
    tags: RwLock<HashMap<String, String>>,
    /// Per tag: a message that replaces the scenario's error message (e.g. hostile text).
    messages: RwLock<HashMap<String, String>>,
    /// Per tag: the share of the rate limits left, in the `x-ratelimit-remaining-*` headers.
    remaining: RwLock<HashMap<String, f64>>,
    /// Per tag: how long every answer waits before it goes out.
    delays: RwLock<HashMap<String, Duration>>,
    /// What `/_sim/status/summary.json` serves.
    status_page: RwLock<StatusPage>,
    /// How many times the status page answered 304 Not Modified.
    pub status_not_modified: AtomicU64,
    log: Mutex<Vec<RequestLog>>,
    counter: AtomicU64,
    /// Bodies POSTed to `/_sim/webhook` (the demo's alert channel), latest last.
    webhooks: Mutex<Vec<serde_json::Value>>,
}

impl SimState {
    pub fn new(default: &str) -> Result<Arc<SimState>, String> {
        check_scenario(default)?;
        Ok(Arc::new(SimState {
            default: RwLock::new(default.to_string()),
            tags: RwLock::new(HashMap::new()),
            messages: RwLock::new(HashMap::new()),
            remaining: RwLock::new(HashMap::new()),
            delays: RwLock::new(HashMap::new()),
            status_page: RwLock::new(StatusPage::Clear),
            status_not_modified: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
            webhooks: Mutex::new(Vec::new()),
        }))
    }

    /// Sets the scenario of `/v1/...`.
    pub fn set_default(&self, scenario: &str) -> Result<(), String> {
        check_scenario(scenario)?;
        *self.default.write().unwrap_or_else(|e| e.into_inner()) = scenario.to_string();
        Ok(())
    }

    /// Sets the scenario of `/t/{tag}/v1/...`.
    pub fn set_tag(&self, tag: &str, scenario: &str) -> Result<(), String> {
        check_scenario(scenario)?;
        self.tags
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.to_string(), scenario.to_string());
        Ok(())
    }

    /// Makes the error answers of `/t/{tag}/v1/...` carry `message` instead of their own.
    pub fn set_tag_message(&self, tag: &str, message: &str) {
        self.messages
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.to_string(), message.to_string());
    }

    /// Sets the share of the rate limits left (0 to 1) that answers for `tag` report; a
    /// negative share reports a negative count, as a broken relay might.
    pub fn set_tag_remaining(&self, tag: &str, share: f64) {
        self.remaining
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.to_string(), share.clamp(-1.0, 1.0));
    }

    /// The bodies POSTed to `/_sim/webhook`, oldest first.
    pub fn webhooks(&self) -> Vec<serde_json::Value> {
        self.webhooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets what the simulated status page says.
    pub fn set_status_page(&self, page: StatusPage) {
        *self.status_page.write().unwrap_or_else(|e| e.into_inner()) = page;
    }

    /// Makes every answer for `tag` wait `delay` (zero for none).
    pub fn set_tag_delay(&self, tag: &str, delay: Duration) {
        self.delays
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tag.to_string(), delay);
    }

    fn tag_delay(&self, tag: &str) -> Option<Duration> {
        self.delays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tag)
            .copied()
    }

    fn tag_remaining(&self, tag: &str) -> Option<f64> {
        self.remaining
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tag)
            .copied()
    }

    fn tag_message(&self, tag: &str) -> Option<String> {
        self.messages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tag)
            .cloned()
    }

    /// The requests answered so far (the latest `LOG_CAPACITY`).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests came so far (without copying the log).
    pub fn request_count(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn default_scenario(&self) -> String {
        self.default
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn tag_scenario(&self, tag: &str) -> String {
        let tags = self.tags.read().unwrap_or_else(|e| e.into_inner());
        tags.get(tag)
            .cloned()
            .unwrap_or_else(|| self.default_scenario())
    }

    fn record(&self, method: &Method, path: &str, scenario: &str) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= LOG_CAPACITY {
            log.remove(0);
        }
        log.push(RequestLog {
            at_ms: crate::clock::unix_ms(SystemTime::now()),
            method: method.to_string(),
            path: path.to_string(),
            scenario: scenario.to_string(),
        });
    }
}

fn check_scenario(name: &str) -> Result<(), String> {
    if scenarios().contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown scenario {name:?}; known: {}",
            scenarios().join(", ")
        ))
    }
}

/// A running simulator.
pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Serves on an already bound listener until dropped.
    pub fn start(listener: TcpListener, state: Arc<SimState>) -> std::io::Result<Simulator> {
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Simulator { addr, state, task })
    }

    /// `http://ADDR/s/{scenario}/v1`: a base URL that always answers with `scenario`.
    pub fn base_url(&self, scenario: &str) -> String {
        format!("http://{}/s/{scenario}/v1", self.addr)
    }

    /// `http://ADDR/t/{tag}/v1`: a base URL whose scenario `set_tag` changes.
    pub fn tag_url(&self, tag: &str) -> String {
        format!("http://{}/t/{tag}/v1", self.addr)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The simulator's routes: control endpoints under `/_sim`, everything else is the fake API.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/scenarios", get(|| async { axum::Json(scenarios()) }))
        .route("/_sim/scenario", put(put_default))
        .route("/_sim/tags/{tag}", put(put_tag))
        .route("/_sim/tags/{tag}/remaining", put(put_remaining))
        .route("/_sim/tags/{tag}/delay", put(put_delay))
        .route("/_sim/status/summary.json", get(status_page::get))
        .route("/_sim/status", put(status_page::put))
        .route("/_sim/requests", get(get_requests))
        .route(
            "/_sim/webhook",
            axum::routing::post(post_webhook).get(get_webhooks),
        )
        .fallback(api)
        .with_state(state)
}

async fn put_default(State(state): State<Arc<SimState>>, body: String) -> Response {
    match state.set_default(body.trim()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": e})),
        )
            .into_response(),
    }
}

async fn put_tag(
    State(state): State<Arc<SimState>>,
    Path(tag): Path<String>,
    body: String,
) -> Response {
    match state.set_tag(&tag, body.trim()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": e})),
        )
            .into_response(),
    }
}

/// `PUT /_sim/tags/{tag}/remaining` with a share such as `0.05`: answers for the tag report
/// that much of their rate limits left.
async fn put_remaining(
    State(state): State<Arc<SimState>>,
    Path(tag): Path<String>,
    body: String,
) -> Response {
    match body.trim().parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => {
            state.set_tag_remaining(&tag, share);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "give the share of the limits left, from 0 to 1, e.g. 0.05\n",
        )
            .into_response(),
    }
}

/// `PUT /_sim/tags/{tag}/delay` with milliseconds: answers for the tag wait that long.
async fn put_delay(
    State(state): State<Arc<SimState>>,
    Path(tag): Path<String>,
    body: String,
) -> Response {
    match body.trim().parse::<u64>() {
        Ok(ms) if ms <= 600_000 => {
            state.set_tag_delay(&tag, Duration::from_millis(ms));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "give the delay in milliseconds, at most 600000\n",
        )
            .into_response(),
    }
}

async fn post_webhook(State(state): State<Arc<SimState>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let mut hooks = state.webhooks.lock().unwrap_or_else(|e| e.into_inner());
    if hooks.len() >= LOG_CAPACITY {
        hooks.remove(0);
    }
    hooks.push(value);
    StatusCode::NO_CONTENT
}

async fn get_webhooks(State(state): State<Arc<SimState>>) -> axum::Json<Vec<serde_json::Value>> {
    axum::Json(state.webhooks())
}

async fn get_requests(State(state): State<Arc<SimState>>) -> axum::Json<Vec<RequestLog>> {
    axum::Json(state.requests())
}

/// Which endpoint a request is for.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Endpoint {
    Models,
    Chat,
    /// `chat/completions` with `"stream": true`: server-sent events.
    ChatStream,
    Responses,
    Embeddings,
}

/// The parameter checks of a healthy chat endpoint, as servers make them: reasoning models
/// (o-series, gpt-5) refuse `max_tokens`; a server that knows only `max_tokens` (models named
/// `legacy-…` here) refuses `max_completion_tokens`.
fn refused_parameter(
    scenario: &str,
    endpoint: Endpoint,
    request: &serde_json::Value,
) -> Option<Response> {
    if !matches!(scenario, "ok" | OK_MANY_MODELS)
        || !matches!(endpoint, Endpoint::Chat | Endpoint::ChatStream)
    {
        return None;
    }
    let model = request.get("model").and_then(|m| m.as_str()).unwrap_or("");
    let reasoning = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model.starts_with(p));
    if reasoning && request.get("max_tokens").is_some() {
        return Some(api_error_full(
            StatusCode::BAD_REQUEST,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "invalid_request_error",
            Some("max_tokens"),
            Some("unsupported_parameter"),
        ));
    }
    if model.starts_with("legacy-") && request.get("max_completion_tokens").is_some() {
        return Some(api_error_full(
            StatusCode::BAD_REQUEST,
            "Unrecognized request argument supplied: max_completion_tokens",
            "invalid_request_error",
            Some("max_completion_tokens"),
            None,
        ));
    }
    None
}

async fn api(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let mut tag = None;
    let (scenario, rest) = if let Some(rest) = path.strip_prefix("/s/") {
        match rest.split_once('/') {
            Some((name, rest)) => (name.to_string(), rest),
            None => return not_found(),
        }
    } else if let Some(rest) = path.strip_prefix("/t/") {
        match rest.split_once('/') {
            Some((t, rest)) => {
                tag = Some(t);
                (state.tag_scenario(t), rest)
            }
            None => return not_found(),
        }
    } else {
        (state.default_scenario(), path.trim_start_matches('/'))
    };
    let endpoint = match (&method, rest.trim_end_matches('/')) {
        (&Method::GET, "v1/models") => Endpoint::Models,
        (&Method::POST, "v1/chat/completions") => Endpoint::Chat,
        (&Method::POST, "v1/responses") => Endpoint::Responses,
        (&Method::POST, "v1/embeddings") => Endpoint::Embeddings,
        _ => return not_found(),
    };
    if check_scenario(&scenario).is_err() {
        return not_found();
    }
    state.record(&method, path, &scenario);
    if let Some(delay) = tag.and_then(|t| state.tag_delay(t)) {
        tokio::time::sleep(delay).await;
    }
    let request_id = format!(
        "req_sim{:08x}",
        state.counter.fetch_add(1, Ordering::Relaxed)
    );
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let request = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let endpoint = if endpoint == Endpoint::Chat && request["stream"] == true {
        Endpoint::ChatStream
    } else {
        endpoint
    };
    let model = request
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or("gpt-4o-mini")
        .to_string();

    let mut response = match (scenario.as_str(), key) {
        ("timeout", _) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        ("connection_failed", _) => cut_connection(),
        ("edge_blocked", _) => html(
            StatusCode::FORBIDDEN,
            "Attention Required! | Cloudflare",
            "Sorry, you have been blocked",
        ),
        (_, None) => api_error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
        ),
        (scenario, Some(key)) => match refused_parameter(scenario, endpoint, &request) {
            Some(refusal) => refusal,
            None => answer(scenario, endpoint, key, &model),
        },
    };
    if let Some(message) = tag.and_then(|t| state.tag_message(t)) {
        response = replace_error_message(response, &message).await;
    }
    let h = response.headers_mut();
    let hv = |s: &str| {
        s.parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("0"))
    };
    h.insert("x-request-id", hv(&request_id));
    h.insert("openai-processing-ms", hv("12"));
    h.insert("x-ratelimit-limit-requests", hv("500"));
    h.insert("x-ratelimit-limit-tokens", hv("200000"));
    if scenario == "rate_limit_exceeded" {
        h.insert("x-ratelimit-remaining-requests", hv("0"));
        h.insert("x-ratelimit-remaining-tokens", hv("0"));
        h.insert("retry-after", hv(&RATE_LIMIT_RETRY_AFTER_SECS.to_string()));
        h.insert(
            "retry-after-ms",
            hv(&(RATE_LIMIT_RETRY_AFTER_SECS * 1000).to_string()),
        );
    } else {
        let share = tag.and_then(|t| state.tag_remaining(t)).unwrap_or(0.998);
        let left = |limit: f64| format!("{}", (limit * share).round() as i64);
        h.insert("x-ratelimit-remaining-requests", hv(&left(500.0)));
        h.insert("x-ratelimit-remaining-tokens", hv(&left(200_000.0)));
    }
    h.insert("x-ratelimit-reset-requests", hv("120ms"));
    h.insert("x-ratelimit-reset-tokens", hv("6m0s"));
    response
}

/// Puts `message` into the `error.message` of a JSON error answer; other answers pass through.
async fn replace_error_message(response: Response, message: &str) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || !is_json {
        return response;
    }
    let Ok(bytes) = axum::body::to_bytes(response.into_body(), 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    body["error"]["message"] = serde_json::Value::String(message.to_string());
    (status, axum::Json(body)).into_response()
}
