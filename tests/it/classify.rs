//! The classifier against the real error bodies of the reference, and against the variants
//! that real servers and the network in front of them produce.

use openai_watch::catalog::{Category, Expect, classify};

/// The rows of the reference table: (status, catalog id, body).
fn reference_bodies() -> Vec<(u16, String, String)> {
    let text = include_str!("../fixtures/openai-error-bodies.md");
    text.lines()
        .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(3, '|').map(str::trim).collect();
            let body = cells[2]
                .trim_end_matches('|')
                .trim()
                .trim_matches('`')
                .to_string();
            (cells[0].parse().unwrap(), cells[1].to_string(), body)
        })
        .collect()
}

#[test]
fn every_reference_body_gets_its_documented_entry() {
    let rows = reference_bodies();
    assert_eq!(rows.len(), 8, "the reference table has 8 bodies");
    for (status, id, body) in rows {
        serde_json::from_str::<serde_json::Value>(&body).expect("fixture body is JSON");
        for expect in [Expect::List, Expect::Chat] {
            let v = classify(status, body.as_bytes(), expect);
            assert_eq!(v.entry.id, id, "status {status} body {body}");
            assert!(
                v.message.as_deref().is_some_and(|m| !m.is_empty()),
                "{id}: message kept"
            );
        }
    }
}

#[test]
fn rate_limit_and_quota_are_never_confused() {
    let rows = reference_bodies();
    let get = |id: &str| rows.iter().find(|r| r.1 == id).unwrap().2.clone();
    let rl = classify(429, get("rate_limit_exceeded").as_bytes(), Expect::Chat);
    let q = classify(429, get("insufficient_quota").as_bytes(), Expect::Chat);
    assert_eq!(rl.entry.category, Category::RateLimit);
    assert_eq!(q.entry.category, Category::Quota);
    // Quota recognised by message alone, with the type of a rate limit.
    let b = br#"{"error":{"message":"You exceeded your current quota, please check your plan.","type":"requests","code":null}}"#;
    assert_eq!(
        classify(429, b, Expect::Chat).entry.id,
        "rate_limit_exceeded",
        "type is matched before message"
    );
    let b = br#"{"error":{"message":"You exceeded your current quota, please check your plan.","type":null,"code":null}}"#;
    assert_eq!(
        classify(429, b, Expect::Chat).entry.id,
        "insufficient_quota"
    );
    // A bare 429 with no body is a pace problem, not billing.
    assert_eq!(
        classify(429, b"", Expect::Chat).entry.id,
        "rate_limit_exceeded"
    );
}

/// (status, body, expected id): variants that are not in the reference.
const VARIANTS: &[(u16, &[u8], &str)] = &[
    // null, numeric and missing codes
    (401, br#"{"error":{"message":"Incorrect API key provided: sk-xx**yy.","type":"invalid_request_error","param":null,"code":null}}"#, "invalid_api_key"),
    (429, br#"{"error":{"message":"Too many","type":"x","code":429}}"#, "rate_limit_exceeded"),
    (500, br#"{"error":{"message":"boom","type":"server_error","code":500}}"#, "server_error"),
    (403, br#"{"error":{"message":"Country, region, or territory not supported","type":"request_forbidden"}}"#, "unsupported_region"),
    (401, br#"{"error":{"message":"x","type":"invalid_request_error","code":"invalid_organization"}}"#, "mismatched_organization"),
    (429, br#"{"error":{"message":"x","type":"insufficient_quota","code":null}}"#, "insufficient_quota"),
    (429, br#"{"error":{"message":"x","type":"billing_not_active","code":null}}"#, "insufficient_quota"),
    (429, br#"{"error":{"message":"x","type":"x","code":"project_spend_limit_exceeded"}}"#, "insufficient_quota"),
    (503, br#"{"error":{"message":"Slow Down","type":"x","code":"slow_down"}}"#, "slow_down"),
    (503, br#"{"error":{"message":"x","type":"x","code":"server_is_overloaded"}}"#, "engine_overloaded"),
    (401, br#"{"error":{"message":"This key is associated with a deactivated account.","type":"invalid_request_error","code":null}}"#, "account_deactivated"),
    (403, br#"{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: model.read.","type":"invalid_request_error"}}"#, "insufficient_permissions"),
    (401, br#"{"error":{"message":"x","code":"ip_not_authorized"}}"#, "ip_not_authorized"),
    // no `error` wrapper (OpenAI-compatible servers)
    (401, br#"{"object":"error","message":"Incorrect API key provided","type":"invalid_request_error","code":401}"#, "invalid_api_key"),
    (404, br#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#, "model_not_found"),
    (429, br#"{"message":"Rate limit reached for requests","code":"rate_limit_exceeded"}"#, "rate_limit_exceeded"),
    (400, br#"{"error":"invalid model name"}"#, "bad_request"),
    // HTML from the edge, and other non-JSON bodies
    (403, b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>blocked</body></html>", "edge_blocked"),
    (502, b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>", "bad_gateway"),
    (504, b"<html><body>Gateway Time-out</body></html>", "gateway_timeout"),
    (503, b"upstream connect error or disconnect/reset before headers", "engine_overloaded"),
    (200, b"<html><head><title>Sign in</title></head></html>", "unexpected_status"),
    // empty bodies
    (401, b"", "invalid_authentication"),
    (403, b"", "edge_blocked"),
    (500, b"", "server_error"),
    (404, b"   \n", "bad_request"),
    // truncated JSON (a cut connection, or the 64 KiB cap): the text still names the error
    (429, br#"{"error":{"message":"You exceeded your current quota, plea"#, "insufficient_quota"),
    (429, br#"{"error":{"message":"Rate limit rea"#, "rate_limit_exceeded"),
    (503, br#"{"error":{"message":"The engine is cur"#, "engine_overloaded"),
    // invalid UTF-8
    (401, b"\xff\xfe\x00garbage \xc3\x28", "invalid_authentication"),
    (200, b"\xff\xfe\xfd", "unexpected_status"),
    // unknown statuses
    (418, br#"{"error":{"message":"I'm a teapot","type":"x","code":null}}"#, "unexpected_status"),
    (520, b"", "bad_gateway"),
    (599, b"", "unexpected_status"),
    (302, b"", "unexpected_status"),
    // a 2xx without the expected shape
    (200, br#"{"object":"list"}"#, "unexpected_status"),
    (200, b"null", "unexpected_status"),
    (200, b"[1,2,3]", "unexpected_status"),
    // a 2xx that carries an error object
    (200, br#"{"error":{"message":"x","code":"insufficient_quota"}}"#, "insufficient_quota"),
    // a code of the wrong JSON type
    (401, br#"{"error":{"message":null,"type":["a"],"code":{"x":1}}}"#, "invalid_authentication"),
];

#[test]
fn variants_outside_the_reference_are_classified() {
    assert!(VARIANTS.len() >= 15);
    for (status, body, id) in VARIANTS {
        let v = classify(*status, body, Expect::List);
        assert_eq!(
            v.entry.id,
            *id,
            "status {status} body {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn healthy_answers_are_ok_only_with_the_expected_shape() {
    let list = br#"{"object":"list","data":[{"id":"gpt-4o-mini"}]}"#;
    let chat = br#"{"id":"c","choices":[{"index":0}]}"#;
    assert_eq!(classify(200, list, Expect::List).entry.id, "ok");
    assert_eq!(classify(200, chat, Expect::Chat).entry.id, "ok");
    assert_eq!(
        classify(200, chat, Expect::List).entry.id,
        "unexpected_status"
    );
    assert_eq!(
        classify(200, list, Expect::Chat).entry.id,
        "unexpected_status"
    );
}

#[test]
fn html_pages_record_their_title_as_the_message() {
    let v = classify(
        403,
        b"<html><head><title>\n Access denied\n</title></head></html>",
        Expect::List,
    );
    assert_eq!(v.message.as_deref(), Some("HTML page: Access denied"));
}

/// One real answer reported in public, with where it was reported.
#[derive(serde::Deserialize)]
struct Reported {
    status: u16,
    id: String,
    body: String,
    source: String,
}

/// The corpus of real error answers (API, edge network, relays) collected from public
/// reports: every body gets the entry its fixture names, whatever wording it uses.
#[test]
fn every_publicly_reported_error_body_is_classified_as_its_fixture_says() {
    let corpus: Vec<Reported> =
        serde_json::from_str(include_str!("../fixtures/error-corpus.json")).unwrap();
    assert!(corpus.len() >= 60, "{} bodies", corpus.len());
    let mut wrong = Vec::new();
    for r in &corpus {
        assert!(r.source.starts_with("https://"), "a source for {}", r.body);
        let got = classify(r.status, r.body.as_bytes(), Expect::Chat).entry.id;
        if got != r.id {
            wrong.push(format!(
                "{} {} → {got}, expected {} ({})",
                r.status,
                r.body
                    .chars()
                    .take(90)
                    .collect::<String>()
                    .replace('\n', " "),
                r.id,
                r.source
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Every catalog entry an answer can carry is covered by at least one real body.
    for entry in openai_watch::catalog::CATALOG {
        if matches!(entry.id, "timeout" | "connection_failed") {
            continue;
        }
        assert!(
            corpus.iter().any(|r| r.id == entry.id),
            "no reported body for {}",
            entry.id
        );
    }
    for status in [520, 521, 522, 523, 524] {
        assert!(
            corpus.iter().any(|r| r.status == status),
            "no edge answer with status {status}"
        );
    }
}
