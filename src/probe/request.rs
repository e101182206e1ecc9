//! The one request each probe kind sends, with the cheapest settings that still exercise the
//! endpoint, and the shape a healthy answer has.

use crate::catalog::Expect;
use crate::config::{Probe, ProbeKind, Target};
use reqwest::header::CONTENT_TYPE;

/// The embedding model asked for when none is configured: the cheapest.
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";
/// The smallest output limit the Responses API accepts.
pub const RESPONSES_MIN_OUTPUT_TOKENS: u32 = 16;

/// The endpoint path (after `base_url`) and the JSON body of a probe; no body for `models`.
pub fn path_and_body(probe: &Probe) -> (&'static str, Option<serde_json::Value>) {
    let model = probe.model.as_str();
    match probe.kind {
        ProbeKind::Models => ("models", None),
        ProbeKind::Chat | ProbeKind::ChatStream => {
            let mut body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
            });
            body[probe.max_tokens_field.as_str()] = serde_json::json!(1);
            if probe.kind == ProbeKind::ChatStream {
                body["stream"] = serde_json::json!(true);
            }
            ("chat/completions", Some(body))
        }
        ProbeKind::Responses => (
            "responses",
            Some(serde_json::json!({
                "model": model,
                "input": "ping",
                "max_output_tokens": RESPONSES_MIN_OUTPUT_TOKENS,
                "store": false,
            })),
        ),
        ProbeKind::Embeddings => (
            "embeddings",
            Some(serde_json::json!({"model": model, "input": "ping"})),
        ),
    }
}

/// The request of a probe, without its headers of authentication.
pub fn build(client: &reqwest::Client, target: &Target, probe: &Probe) -> reqwest::RequestBuilder {
    let (path, body) = path_and_body(probe);
    let url = target.endpoint(path);
    let request = match body {
        None => client.get(url),
        Some(body) => client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string()),
    };
    let accept = if probe.kind == ProbeKind::ChatStream {
        "text/event-stream"
    } else {
        "application/json"
    };
    request.header("accept", accept)
}

/// What a healthy answer of `kind` looks like.
pub fn expect(kind: ProbeKind) -> Expect {
    match kind {
        ProbeKind::Models | ProbeKind::Embeddings => Expect::List,
        ProbeKind::Chat | ProbeKind::ChatStream => Expect::Chat,
        ProbeKind::Responses => Expect::Response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenLimitField;

    fn probe(kind: ProbeKind, model: &str) -> Probe {
        Probe {
            kind,
            interval: std::time::Duration::from_secs(60),
            model: model.into(),
            max_tokens_field: TokenLimitField::default(),
            slow_after: None,
        }
    }

    #[test]
    fn each_kind_asks_for_as_little_as_the_endpoint_allows() {
        let (path, body) = path_and_body(&probe(ProbeKind::Chat, "gpt-4o-mini"));
        assert_eq!(path, "chat/completions");
        let body = body.unwrap();
        assert_eq!(body["max_completion_tokens"], 1);
        assert!(body.get("stream").is_none());
        let (_, body) = path_and_body(&probe(ProbeKind::ChatStream, "gpt-4o-mini"));
        assert_eq!(body.unwrap()["stream"], true);
        let (path, body) = path_and_body(&probe(ProbeKind::Responses, "gpt-4o-mini"));
        assert_eq!(path, "responses");
        assert_eq!(body.unwrap()["max_output_tokens"], 16);
        let (path, body) = path_and_body(&probe(ProbeKind::Embeddings, DEFAULT_EMBEDDING_MODEL));
        assert_eq!(path, "embeddings");
        assert_eq!(body.unwrap()["input"], "ping");
        assert_eq!(path_and_body(&probe(ProbeKind::Models, "")).1, None);
    }
}
