//! The documented error catalog (SPEC §5) as data, and `classify()`, which maps every answer
//! of the API — or the lack of one — to exactly one catalog entry.
//!
//! Matching order: `error.code`, then `error.type`, then the message text, then the HTTP
//! status, then the transport error. The table below is the only place that knows which code,
//! type or message means what; adding a provider's errors means adding rows.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The link every alert and page gives for the official description of the errors.
pub const DOCS_URL: &str = "https://platform.openai.com/docs/guides/error-codes/api-errors";

/// The stable vocabulary of config, API, metrics and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Ok,
    Auth,
    Region,
    Quota,
    RateLimit,
    Overload,
    Outage,
    ClientError,
    Unknown,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::Ok,
        Category::Auth,
        Category::Region,
        Category::Quota,
        Category::RateLimit,
        Category::Overload,
        Category::Outage,
        Category::ClientError,
        Category::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Ok => "ok",
            Category::Auth => "auth",
            Category::Region => "region",
            Category::Quota => "quota",
            Category::RateLimit => "rate_limit",
            Category::Overload => "overload",
            Category::Outage => "outage",
            Category::ClientError => "client_error",
            Category::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Categories that pass on their own and open an incident only when they persist
    /// (`failure_threshold` in a row, or the flapping rule).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Category::Outage | Category::Overload | Category::RateLimit | Category::Unknown
        )
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

macro_rules! entry {
    ($id:literal, $title:literal, $statuses:expr, $cat:ident, $sev:ident,
     codes: $codes:expr, types: $types:expr, messages: $messages:expr, status: $rule:expr,
     cause: $cause:literal, resolution: $resolution:literal $(,)?) => {
        Entry {
            id: $id,
            title: $title,
            statuses: $statuses,
            category: Category::$cat,
            severity: Severity::$sev,
            codes: $codes,
            types: $types,
            messages: $messages,
            status_rule: $rule,
            cause: $cause,
            resolution: $resolution,
        }
    };
}

/// The healthy answer: not an error, but every probe gets an entry.
pub static OK: Entry = entry!(
    "ok", "healthy", &[200], Ok, Ok,
    codes: &[], types: &[], messages: &[], status: StatusRule::None,
    cause: "The API answered as expected.",
    resolution: "Nothing to do.",
);

/// Every documented error, in matching priority order within each step.
pub static CATALOG: &[Entry] = &[
    entry!(
        "invalid_api_key", "incorrect API key provided", &[401], Auth, Critical,
        codes: &["invalid_api_key"], types: &[],
        messages: &["incorrect api key provided", "invalid api key"],
        status: StatusRule::None,
        cause: "The API key sent is not correct: it was mistyped, revoked, rotated, or belongs to a deleted project.",
        resolution: "Check the key this monitor reads (environment variable, file or systemd credential) and the one your application uses. If the key was revoked or deleted, generate a new one on the API keys page of the platform and deploy it.",
    ),
    entry!(
        "no_organization", "not a member of an organization", &[401], Auth, Critical,
        codes: &["no_organization"], types: &[],
        messages: &["must be a member of an organization"],
        status: StatusRule::None,
        cause: "The account that owns the key is not part of any organization.",
        resolution: "Ask your organization's owner or manager to invite the account to the organization, or contact OpenAI support to be added to a new organization.",
    ),
    entry!(
        "mismatched_organization", "organization mismatch", &[401], Auth, Critical,
        codes: &["mismatched_organization", "invalid_organization"], types: &[],
        messages: &["openai-organization header should match", "does not match organization", "no such organization"],
        status: StatusRule::None,
        cause: "The requesting organization is wrong: the OpenAI-Organization header names an organization that the key does not belong to, or one that does not exist.",
        resolution: "Set the target's `organization` to the id of an organization that the key's owner belongs to (Settings → Organization on the platform), or remove it so that the key's default organization is used.",
    ),
    entry!(
        "account_deactivated", "account deactivated", &[401], Auth, Critical,
        codes: &["account_deactivated"], types: &[],
        messages: &["deactivated account", "account has been deactivated", "account is deactivated", "account deactivated"],
        status: StatusRule::None,
        cause: "The account or organization behind the key has been deactivated; every request with it is refused.",
        resolution: "Contact OpenAI support through the help center to learn why and to have the account reactivated. A new key of the same account does not help.",
    ),
    entry!(
        "ip_not_authorized", "IP address not authorized", &[401], Auth, Critical,
        codes: &["ip_not_authorized"], types: &[],
        messages: &["not authorized to access this organization from", "ip address is not authorized"],
        status: StatusRule::None,
        cause: "The organization or project has an IP allowlist, and the address this request came from is not on it.",
        resolution: "Add this host's egress address (the NAT gateway or proxy your traffic leaves through) to the allowlist in the organization or project settings, or send requests from an allowed network.",
    ),
    entry!(
        "insufficient_permissions", "insufficient permissions", &[401, 403], Auth, Critical,
        codes: &["insufficient_permissions", "missing_scope"], types: &[],
        messages: &["insufficient permissions", "missing scopes"],
        status: StatusRule::WithApiError(&[403]),
        cause: "The key is valid but may not use this endpoint: a restricted key without the needed scope, or a project role without access.",
        resolution: "Give the key the scopes the probes need (read on Models, write on Chat completions) or use a key with full permissions; a project owner can change roles in the project settings.",
    ),
    entry!(
        "unsupported_region", "country, region, or territory not supported", &[403], Region, Critical,
        codes: &["unsupported_country_region_territory", "unsupported_country"], types: &[],
        messages: &["country, region, or territory not supported", "country, region or territory not supported"],
        status: StatusRule::None,
        cause: "The API is being accessed from a country, region, or territory where it is not supported.",
        resolution: "Run the workload from a supported location: check where this host's traffic leaves (cloud region, proxy, VPN exit) and compare it with OpenAI's list of supported countries and territories.",
    ),
    entry!(
        "edge_blocked", "blocked at the edge", &[403], Region, Critical,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::WithoutApiError(&[403]),
        cause: "A 403 page came from the network in front of the API, not from the API itself: the request was blocked at the edge, most often because of the location or reputation of the address it came from.",
        resolution: "Check the egress address of this host and where it is located (proxy, VPN, cloud region) and route the traffic through a supported location; the page title is recorded as the message.",
    ),
    entry!(
        "insufficient_quota", "exceeded current quota", &[429], Quota, Critical,
        codes: &["insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
                 "project_spend_limit_exceeded", "organization_usage_limit_exceeded", "billing_not_active"],
        types: &["insufficient_quota", "billing_not_active"],
        messages: &["exceeded your current quota", "billing hard limit", "credit balance is too low"],
        status: StatusRule::None,
        cause: "With prepaid billing, all credits of the account are used up; with monthly billing, the monthly budget or a spend limit is exceeded (or billing is not active). Retrying does not help.",
        resolution: "Buy additional credits or raise the organization's or project's spend limit in the billing settings of the platform, and check that billing is active. Requests succeed again as soon as credit is available.",
    ),
    entry!(
        "rate_limit_exceeded", "rate limit reached", &[429], RateLimit, Warning,
        codes: &["rate_limit_exceeded"], types: &["requests", "tokens"],
        messages: &["rate limit reached", "rate limit exceeded"],
        status: StatusRule::Any(&[429]),
        cause: "The assigned rate limit was hit: too many requests or tokens per minute for this organization or project and model. It passes when the window resets; it is not a billing problem.",
        resolution: "Pace the requests: wait for the time the answer gives (retry-after), retry with exponential backoff, spread traffic over time, or move to a higher usage tier for higher limits.",
    ),
    entry!(
        "slow_down", "slow down", &[429, 503], RateLimit, Warning,
        codes: &["slow_down"], types: &[], messages: &["slow down"],
        status: StatusRule::None,
        cause: "A sudden increase of the request rate was throttled to protect the reliability of the service.",
        resolution: "Reduce the request rate to its earlier level, keep it steady for a while, then raise it gradually; retry with backoff.",
    ),
    entry!(
        "engine_overloaded", "engine overloaded", &[503], Overload, Critical,
        codes: &["server_is_overloaded", "engine_overloaded"], types: &[],
        messages: &["overloaded"],
        status: StatusRule::Any(&[503]),
        cause: "The servers are experiencing high traffic and cannot take the request now.",
        resolution: "Retry the requests after a brief wait, with backoff; if it lasts, check status.openai.com.",
    ),
    entry!(
        "server_error", "server error", &[500], Outage, Critical,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::Any(&[500]),
        cause: "An issue on the API's servers while processing the request.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "bad_gateway", "bad gateway", &[502], Outage, Critical,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::Any(&[502]),
        cause: "A gateway in front of the API received an invalid answer from the servers behind it.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "gateway_timeout", "gateway timeout", &[504], Outage, Critical,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::Any(&[504]),
        cause: "A gateway in front of the API gave up waiting for the servers behind it.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "model_not_found", "model not found", &[404], ClientError, Warning,
        codes: &["model_not_found"], types: &[],
        messages: &["does not exist or you do not have access to it"],
        status: StatusRule::None,
        cause: "The model the probe asks for does not exist, was retired, or the key has no access to it.",
        resolution: "Set `model` of the chat probe to a model that GET /models lists for this key; pin a dated model that is still offered.",
    ),
    entry!(
        "bad_request", "bad request", &[400, 404, 409, 422], ClientError, Warning,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::Any(&[400, 404, 409, 422]),
        cause: "The API rejected the probe's request itself: the probe is misconfigured (a wrong base_url path, an unknown parameter or model).",
        resolution: "Check the target's base_url (for OpenAI it ends in /v1) and the chat probe's model; the recorded message names what the API did not accept.",
    ),
    entry!(
        "invalid_authentication", "invalid authentication", &[401], Auth, Critical,
        codes: &["invalid_authentication", "missing_api_key"], types: &[],
        messages: &["didn't provide an api key", "invalid authentication", "invalid authorization header"],
        status: StatusRule::Any(&[401]),
        cause: "The request was not authenticated: no API key was sent, the Authorization header is malformed, or the requesting organization is wrong.",
        resolution: "Make sure the correct API key and requesting organization are used: the key must be sent as `Authorization: Bearer <key>`; check that the configured secret is not empty and has no stray characters.",
    ),
    entry!(
        "timeout", "timed out", &[], Outage, Critical,
        codes: &[], types: &[], messages: &[], status: StatusRule::None,
        cause: "No complete answer arrived within the probe's timeout: the API, or the network path to it, is not responding.",
        resolution: "Check status.openai.com and this host's connectivity (proxy, firewall, route); raise the target's `timeout` only if answers are legitimately slow.",
    ),
    entry!(
        "connection_failed", "connection failed", &[], Outage, Critical,
        codes: &[], types: &[], messages: &[], status: StatusRule::None,
        cause: "No connection could be made or it was cut: DNS failure, connection refused or reset, or a TLS failure.",
        resolution: "Check DNS resolution of the API host, outbound firewall and proxy rules, and the system's CA certificates; then check status.openai.com.",
    ),
    entry!(
        "unexpected_status", "unexpected answer", &[], Unknown, Warning,
        codes: &[], types: &[], messages: &[], status: StatusRule::None,
        cause: "An answer the catalog does not know: an unusual status code, or a success answer without the shape of an API answer (a captive portal or a proxy page, for instance).",
        resolution: "Look at the recorded status and message, and check base_url and any proxy between this host and the API.",
    ),
];

/// Looks an entry up by id (`ok` included).
pub fn entry(id: &str) -> Option<&'static Entry> {
    if id == OK.id {
        return Some(&OK);
    }
    CATALOG.iter().find(|e| e.id == id)
}

fn must(id: &str) -> &'static Entry {
    entry(id).expect("catalog id used by the classifier is in the catalog")
}

/// What kind of answer a probe expects on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A list: `{"object": "list", "data": [...]}` (GET /models).
    List,
    /// A chat completion: `{"choices": [...]}`.
    Chat,
}

/// Why no HTTP answer was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    Timeout,
    Connect,
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

fn by_type(kind: &str) -> Option<&'static Entry> {
    CATALOG
        .iter()
        .find(|e| e.types.iter().any(|t| t.eq_ignore_ascii_case(kind)))
}

fn by_message(message: &str) -> Option<&'static Entry> {
    let lower = message.to_lowercase();
    CATALOG
        .iter()
        .find(|e| e.messages.iter().any(|m| lower.contains(m)))
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
    }
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
                .or_else(|| fields.kind.as_deref().and_then(by_type))
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
pub fn classify_transport(error: TransportError) -> &'static Entry {
    match error {
        TransportError::Timeout => must("timeout"),
        TransportError::Connect => must("connection_failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
