//! The documented error catalog (SPEC §5) as data, and `classify()`, which maps every answer
//! of the API — or the lack of one — to exactly one catalog entry.
//!
//! Matching order: `error.code`, then `error.type`, then the message text, then the HTTP
//! status, then the transport error. The table below is the only place that knows which code,
//! type or message means what; adding a provider's errors means adding rows.

use serde::Serialize;

/// The link every alert and page gives for the official description of the errors.
pub const DOCS_URL: &str = "https://platform.openai.com/docs/guides/error-codes/api-errors";

mod table;

pub use crate::domain::{Category, TransportErrorKind};
pub use table::{CATALOG, OK, SIGNALS};

/// How bad an answer is; ordered so that `max()` gives the worst (Nagios convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// When an entry applies by HTTP status alone (step 4 of the matching order).
#[derive(Debug, Clone, Copy)]
pub enum StatusRule {
    /// Never matched by status alone.
    None,
    /// Any of these statuses.
    Any(&'static [u16]),
    /// These statuses, when the body carried an API error object.
    WithApiError(&'static [u16]),
    /// These statuses, when the body was not an API error (an HTML page, an empty body).
    WithoutApiError(&'static [u16]),
}

/// One documented error.
#[derive(Debug)]
pub struct Entry {
    /// Stable id, e.g. `insufficient_quota`.
    pub id: &'static str,
    /// Short headline for subjects and cards, e.g. "exceeded current quota".
    pub title: &'static str,
    /// The HTTP statuses this error comes with (documentation; `—` for transport errors).
    pub statuses: &'static [u16],
    pub category: Category,
    pub severity: Severity,
    /// Values of `error.code` that mean this entry.
    pub codes: &'static [&'static str],
    /// Values of `error.type` that mean this entry.
    pub types: &'static [&'static str],
    /// Lower-case fragments of the error message that mean this entry.
    pub messages: &'static [&'static str],
    pub status_rule: StatusRule,
    /// What the error means, in the project's words, faithful to the official page.
    pub cause: &'static str,
    /// What to do about it.
    pub resolution: &'static str,
}

impl Entry {
    pub fn is_ok(&self) -> bool {
        self.category == Category::Ok
    }
}

/// Looks an entry up by id (`ok` included).
pub fn entry(id: &str) -> Option<&'static Entry> {
    if id == OK.id {
        return Some(&OK);
    }
    CATALOG.iter().chain(SIGNALS).find(|e| e.id == id)
}

pub(crate) fn must(id: &str) -> &'static Entry {
    entry(id).expect("catalog id used by the classifier is in the catalog")
}

/// What kind of answer a probe expects on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A list: `{"object": "list", "data": [...]}` (GET /models).
    List,
    /// A chat completion: `{"choices": [...]}`.
    Chat,
    /// A response of the Responses API: `{"object": "response", "output": [...]}`.
    Response,
}

/// The outcome of classification: the entry and the upstream message, not yet masked.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub entry: &'static Entry,
    pub message: Option<String>,
}

/// The parts of an error object that classification looks at.
#[derive(Debug, Default)]
struct ErrorFields {
    code: Option<String>,
    kind: Option<String>,
    message: Option<String>,
}

/// Everything the body says, as far as classification is concerned.
enum Body {
    /// A JSON error object (wrapped in `error`, or the bare `{"object":"error",…}` form).
    ApiError(ErrorFields),
    /// JSON that is not an error.
    Json(serde_json::Value),
    /// An HTML page; its title, if any.
    Html(Option<String>),
    /// Plain text (or bytes that are not valid UTF-8, lossily decoded).
    Text(String),
    Empty,
}

fn scalar_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn error_fields(obj: &serde_json::Map<String, serde_json::Value>) -> ErrorFields {
    let get = |k: &str| obj.get(k).and_then(scalar_to_string);
    ErrorFields {
        code: get("code"),
        kind: get("type"),
        message: get("message").or_else(|| get("detail")),
    }
}

fn parse_body(body: &[u8]) -> Body {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Body::Empty;
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(trimmed) {
        if let serde_json::Value::Object(obj) = &value {
            match obj.get("error") {
                Some(serde_json::Value::Object(inner)) => {
                    return Body::ApiError(error_fields(inner));
                }
                Some(serde_json::Value::String(s)) => {
                    let mut fields = error_fields(obj);
                    fields.message = Some(s.clone());
                    return Body::ApiError(fields);
                }
                _ => {}
            }
            let is_bare_error = obj.get("object").and_then(|o| o.as_str()) == Some("error")
                || (obj.contains_key("message")
                    && (obj.contains_key("code") || obj.contains_key("type")));
            if is_bare_error {
                return Body::ApiError(error_fields(obj));
            }
        }
        return Body::Json(value);
    }
    let text = String::from_utf8_lossy(trimmed);
    let lower_start: String = text
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower_start.starts_with("<!doctype html")
        || lower_start.starts_with("<html")
        || lower_start.contains("<body")
        || lower_start.contains("<head")
    {
        return Body::Html(html_title(&text));
    }
    Body::Text(text.into_owned())
}

fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title = html
        .get(open_end..close)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!title.is_empty()).then_some(title)
}

fn by_code(code: &str) -> Option<&'static Entry> {
    CATALOG
        .iter()
        .find(|e| e.codes.iter().any(|c| c.eq_ignore_ascii_case(code)))
}

/// An `error.type` names an entry only with a status that entry comes with (or inside a
/// 2xx): relays put `"type": "requests"` on a 401 about a deactivated account, and that is no
/// rate limit.
fn by_type(kind: &str, status: u16) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| {
        e.types.iter().any(|t| t.eq_ignore_ascii_case(kind))
            && (e.statuses.contains(&status) || (200..300).contains(&status))
    })
}

fn by_message(message: &str) -> Option<&'static Entry> {
    let lower = message.to_lowercase();
    CATALOG
        .iter()
        .find(|e| e.messages.iter().any(|m| contains_in_order(&lower, m)))
}

/// Whether `text` holds the `*`-separated parts of `pattern`, in order.
fn contains_in_order(text: &str, pattern: &str) -> bool {
    let mut rest = text;
    for part in pattern.split('*') {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn by_status(status: u16, api_error: bool) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| match e.status_rule {
        StatusRule::None => false,
        StatusRule::Any(s) => s.contains(&status),
        StatusRule::WithApiError(s) => api_error && s.contains(&status),
        StatusRule::WithoutApiError(s) => !api_error && s.contains(&status),
    })
}

fn has_expected_shape(value: &serde_json::Value, expect: Expect) -> bool {
    match expect {
        Expect::List => value.get("data").is_some_and(|d| d.is_array()),
        Expect::Chat => value.get("choices").is_some_and(|c| c.is_array()),
        Expect::Response => value.get("output").is_some_and(|o| o.is_array()),
    }
}

/// Whether `prefix`, the beginning of a body cut at the read cap, is the beginning of a list
/// answer: `{`, then (before any `"error"` key) `"data"` `:` `[`, whitespace allowed, and a
/// first element that is an object.
pub fn is_list_prefix(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix);
    let text = text.trim_start();
    if !text.starts_with('{') {
        return false;
    }
    let Some(at) = text.find("\"data\"") else {
        return false;
    };
    if text[..at].contains("\"error\"") {
        return false;
    }
    let mut rest = text[at + "\"data\"".len()..].trim_start().chars();
    rest.next() == Some(':')
        && rest.as_str().trim_start().starts_with('[')
        && rest.as_str().trim_start()[1..]
            .trim_start()
            .starts_with('{')
}

/// Classifies an HTTP answer: its status and (the first bytes of) its body.
pub fn classify(status: u16, body: &[u8], expect: Expect) -> Verdict {
    let parsed = parse_body(body);
    let success = (200..300).contains(&status);
    match parsed {
        Body::ApiError(fields) => {
            let entry = fields
                .code
                .as_deref()
                .and_then(by_code)
                .or_else(|| fields.kind.as_deref().and_then(|k| by_type(k, status)))
                .or_else(|| fields.message.as_deref().and_then(by_message))
                .or_else(|| by_status(status, true))
                .unwrap_or_else(|| must("unexpected_status"));
            Verdict {
                entry,
                message: fields.message,
            }
        }
        Body::Json(value) if success => {
            if has_expected_shape(&value, expect) {
                Verdict {
                    entry: &OK,
                    message: None,
                }
            } else {
                Verdict {
                    entry: must("unexpected_status"),
                    message: Some(format!("HTTP {status} answer without the expected shape")),
                }
            }
        }
        Body::Json(_) | Body::Empty => Verdict {
            entry: status_or_unexpected(status, false),
            message: None,
        },
        Body::Html(title) => Verdict {
            entry: status_or_unexpected(status, false),
            message: Some(match title {
                Some(t) => format!("HTML page: {t}"),
                None => "HTML page without a title".to_string(),
            }),
        },
        Body::Text(text) => {
            // A plain-text body is the only message there is; it may still name the error.
            let entry = (!success)
                .then(|| by_message(&text))
                .flatten()
                .unwrap_or_else(|| status_or_unexpected(status, false));
            Verdict {
                entry,
                message: Some(text),
            }
        }
    }
}

fn status_or_unexpected(status: u16, api_error: bool) -> &'static Entry {
    by_status(status, api_error).unwrap_or_else(|| must("unexpected_status"))
}

/// Classifies a probe that got no complete HTTP answer.
pub fn classify_transport(error: TransportErrorKind) -> &'static Entry {
    match error {
        TransportErrorKind::Timeout => must("timeout"),
        TransportErrorKind::Dns
        | TransportErrorKind::Refused
        | TransportErrorKind::Reset
        | TransportErrorKind::Tls
        | TransportErrorKind::Connect => must("connection_failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_list_is_recognised_by_its_beginning_only() {
        assert!(is_list_prefix(
            br#"{"object":"list","data":[{"id":"ft:gpt-4o"#
        ));
        assert!(is_list_prefix(
            b"\n { \"object\" : \"list\", \"data\" :\n [ {\"id\""
        ));
        assert!(!is_list_prefix(br#"{"error":{"message":"x"},"data":[{"#));
        assert!(!is_list_prefix(br#"{"data":"nope"}"#));
        assert!(!is_list_prefix(br#"<html><body>{"data":[{"#));
        assert!(!is_list_prefix(br#"{"data":[1,2,3"#));
    }

    #[test]
    fn every_entry_has_real_texts_and_a_unique_id() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "duplicate catalog id");
        for e in CATALOG {
            assert!(e.cause.len() > 40, "{} cause too short", e.id);
            assert!(e.resolution.len() > 40, "{} resolution too short", e.id);
            assert!(!e.title.is_empty());
            assert_ne!(e.category, Category::Ok);
        }
    }

    #[test]
    fn the_catalog_holds_every_id_of_the_spec() {
        let spec = [
            ("invalid_authentication", Category::Auth, Severity::Critical),
            ("invalid_api_key", Category::Auth, Severity::Critical),
            ("no_organization", Category::Auth, Severity::Critical),
            (
                "mismatched_organization",
                Category::Auth,
                Severity::Critical,
            ),
            ("account_deactivated", Category::Auth, Severity::Critical),
            ("ip_not_authorized", Category::Auth, Severity::Critical),
            (
                "insufficient_permissions",
                Category::Auth,
                Severity::Critical,
            ),
            ("unsupported_region", Category::Region, Severity::Critical),
            ("edge_blocked", Category::Region, Severity::Critical),
            (
                "rate_limit_exceeded",
                Category::RateLimit,
                Severity::Warning,
            ),
            ("slow_down", Category::RateLimit, Severity::Warning),
            ("insufficient_quota", Category::Quota, Severity::Critical),
            ("server_error", Category::Outage, Severity::Critical),
            ("bad_gateway", Category::Outage, Severity::Critical),
            ("engine_overloaded", Category::Overload, Severity::Critical),
            ("gateway_timeout", Category::Outage, Severity::Critical),
            ("timeout", Category::Outage, Severity::Critical),
            ("connection_failed", Category::Outage, Severity::Critical),
            ("model_not_found", Category::ClientError, Severity::Warning),
            ("bad_request", Category::ClientError, Severity::Warning),
            ("unexpected_status", Category::Unknown, Severity::Warning),
        ];
        assert_eq!(spec.len(), CATALOG.len());
        for (id, cat, sev) in spec {
            let e = entry(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!((e.category, e.severity), (cat, sev), "{id}");
        }
    }
}
