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

use crate::catalog;
use axum::Router;
use axum::body::{Body, Bytes};
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

pub fn scenarios() -> Vec<&'static str> {
    ["ok", OK_MANY_MODELS]
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
    axum::Json(
        state
            .webhooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

async fn get_requests(State(state): State<Arc<SimState>>) -> axum::Json<Vec<RequestLog>> {
    axum::Json(state.requests())
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Models,
    Chat,
}

/// The parameter checks of a healthy chat endpoint, as servers make them: reasoning models
/// (o-series, gpt-5) refuse `max_tokens`; a server that knows only `max_tokens` (models named
/// `legacy-…` here) refuses `max_completion_tokens`.
fn refused_parameter(
    scenario: &str,
    endpoint: Endpoint,
    request: &serde_json::Value,
) -> Option<Response> {
    if !matches!(scenario, "ok" | OK_MANY_MODELS) || endpoint != Endpoint::Chat {
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
        _ => return not_found(),
    };
    if check_scenario(&scenario).is_err() {
        return not_found();
    }
    state.record(&method, path, &scenario);
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
        h.insert("x-ratelimit-remaining-requests", hv("499"));
        h.insert("x-ratelimit-remaining-tokens", hv("199999"));
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

fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "Invalid URL",
        "invalid_request_error",
        None,
    )
}

fn api_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    api_error_full(status, message, kind, None, code)
}

fn api_error_full(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": param, "code": code}
    });
    (status, axum::Json(body)).into_response()
}

fn html(status: StatusCode, title: &str, text: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{text}</h1></body></html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// Sends the status line and headers, then fails the body: the client sees the connection
/// cut in the middle of the answer.
fn cut_connection() -> Response {
    let stream = futures_util::stream::iter([
        Ok(Bytes::from_static(b"{\"object\":")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated reset",
        )),
    ]);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn answer(scenario: &str, endpoint: Endpoint, key: &str, model: &str) -> Response {
    use StatusCode as S;
    match scenario {
        OK_MANY_MODELS if endpoint == Endpoint::Models => {
            let data: Vec<serde_json::Value> = (0..5_000)
                .map(|i| serde_json::json!({
                    "id": format!("ft:gpt-4o-mini-2024-07-18:acme:customer-support-{i:05}:AbCdEf12"),
                    "object": "model", "created": 1721172741, "owned_by": "acme-org"
                }))
                .collect();
            axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
        }
        "ok" | OK_MANY_MODELS => match endpoint {
            Endpoint::Models => axum::Json(serde_json::json!({
                "object": "list",
                "data": [
                    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
                    {"id": "gpt-4o-mini-2024-07-18", "object": "model", "created": 1721172717, "owned_by": "system"}
                ]
            }))
            .into_response(),
            Endpoint::Chat => axum::Json(serde_json::json!({
                "id": "chatcmpl-sim", "object": "chat.completion", "created": 1721172741, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}
            }))
            .into_response(),
        },
        "invalid_authentication" => api_error(S::UNAUTHORIZED, "Invalid authorization header", "invalid_request_error", None),
        "invalid_api_key" => api_error(
            S::UNAUTHORIZED,
            &format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        "no_organization" => api_error(
            S::UNAUTHORIZED,
            "You must be a member of an organization to use the API. Please contact us through our help center at help.openai.com.",
            "invalid_request_error",
            Some("no_organization"),
        ),
        "mismatched_organization" => api_error(
            S::UNAUTHORIZED,
            "OpenAI-Organization header should match organization for API key",
            "invalid_request_error",
            Some("mismatched_organization"),
        ),
        "account_deactivated" => api_error(
            S::UNAUTHORIZED,
            "This key is associated with a deactivated account. If you feel this is an error, contact us through our help center at help.openai.com.",
            "invalid_request_error",
            Some("account_deactivated"),
        ),
        "ip_not_authorized" => api_error(
            S::UNAUTHORIZED,
            "You are not authorized to access this organization from this IP address.",
            "invalid_request_error",
            Some("ip_not_authorized"),
        ),
        "insufficient_permissions" => api_error(
            S::UNAUTHORIZED,
            "You have insufficient permissions for this operation. Missing scopes: model.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
            "invalid_request_error",
            None,
        ),
        "unsupported_region" => api_error(
            S::FORBIDDEN,
            "Country, region, or territory not supported",
            "request_forbidden",
            Some("unsupported_country_region_territory"),
        ),
        "rate_limit_exceeded" => api_error(
            S::TOO_MANY_REQUESTS,
            &format!("Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {RATE_LIMIT_RETRY_AFTER_SECS}s. Visit https://platform.openai.com/account/rate-limits to learn more."),
            "requests",
            Some("rate_limit_exceeded"),
        ),
        "slow_down" => api_error(
            S::SERVICE_UNAVAILABLE,
            "Slow Down: please reduce your request rate.",
            "server_error",
            Some("slow_down"),
        ),
        "insufficient_quota" => api_error(
            S::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        "server_error" => api_error(
            S::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        "bad_gateway" => html(S::BAD_GATEWAY, "502 Bad Gateway", "502 Bad Gateway"),
        "engine_overloaded" => api_error(
            S::SERVICE_UNAVAILABLE,
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
        ),
        "gateway_timeout" => html(S::GATEWAY_TIMEOUT, "504 Gateway Time-out", "504 Gateway Time-out"),
        "model_not_found" => api_error(
            S::NOT_FOUND,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
        ),
        "bad_request" => api_error(
            S::BAD_REQUEST,
            "Unrecognized request argument supplied: max_tokenz",
            "invalid_request_error",
            None,
        ),
        // A 2xx that is not an API answer: a captive portal in front of the API.
        _ => html(S::OK, "Sign in to the network", "Please sign in to continue"),
    }
}
