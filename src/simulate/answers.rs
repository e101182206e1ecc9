//! The simulator's answers: every scenario's body, as the API (or the network in front of it)
//! sends it.

use super::{Endpoint, OK_MANY_MODELS, RATE_LIMIT_RETRY_AFTER_SECS, STREAM_CUT, STREAM_ERROR};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(super) fn not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "Invalid URL",
        "invalid_request_error",
        None,
    )
}

pub(super) fn api_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response {
    api_error_full(status, message, kind, None, code)
}

pub(super) fn api_error_full(
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

pub(super) fn html(status: StatusCode, title: &str, text: &str) -> Response {
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
pub(super) fn cut_connection() -> Response {
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

/// A streamed chat completion as server-sent events: the role, one token, the finish and
/// `[DONE]`; with `stream_error`, an error event after the first chunk; with `stream_cut`,
/// a broken connection after it.
fn chat_stream(model: &str, how: &str) -> Response {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let c = serde_json::json!({
            "id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": 1721172741,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {c}\n\n")))
    };
    let mut events = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    match how {
        STREAM_ERROR => events.push(Ok(Bytes::from(
            "data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
        ))),
        STREAM_CUT => events.push(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated reset",
        ))),
        _ => {
            events.push(chunk(serde_json::json!({"content": "pong"}), None));
            events.push(chunk(serde_json::json!({}), Some("length")));
            events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(
            // A break comes after the first chunk is on the wire, as a mid-stream cut does.
            futures_util::StreamExt::then(futures_util::stream::iter(events), |e| async {
                if e.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                e
            }),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(super) fn answer(scenario: &str, endpoint: Endpoint, key: &str, model: &str) -> Response {
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
        STREAM_ERROR | STREAM_CUT if endpoint == Endpoint::ChatStream => {
            chat_stream(model, scenario)
        }
        "ok" | OK_MANY_MODELS | STREAM_ERROR | STREAM_CUT => match endpoint {
            Endpoint::ChatStream => chat_stream(model, "ok"),
            Endpoint::Responses => axum::Json(serde_json::json!({
                "id": "resp_sim", "object": "response", "status": "completed", "model": model,
                "output": [{"type": "message", "id": "msg_sim", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": "pong", "annotations": []}]}],
                "usage": {"input_tokens": 8, "output_tokens": 2, "total_tokens": 10}
            }))
            .into_response(),
            Endpoint::Embeddings => axum::Json(serde_json::json!({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0,
                          "embedding": [0.0023, -0.0093, 0.0161, -0.0071, 0.0012, 0.0049, -0.0185, 0.0027]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}
            }))
            .into_response(),
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
