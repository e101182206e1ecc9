//! The catalog itself: one row per documented error, with the codes, types, messages and
//! statuses that mean it, and its cause and resolution in the project's words.

use super::{Category, Entry, Severity, StatusRule};

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

/// Leading signals: not answers of the API but what healthy answers say (SPEC §13), and the
/// silence of an agent of the fleet (SPEC §14). Never matched by `classify()`.
pub static SIGNALS: &[Entry] = &[
    entry!(
    "slow", "answers much slower than usual", &[], Slow, Warning,
    codes: &[], types: &[], messages: &[], status: StatusRule::None,
    cause: "Healthy answers of this probe take several times their usual latency (the median of the latest probes against the median of the previous 24 hours, or above the probe's slow_after): the API, the network to it, or this model is degraded, and timeouts usually follow.",
    resolution: "Check status.openai.com and the network between this host and the API (DNS, proxy, region); keep client timeouts and retries with backoff in place, and consider a faster model or region for latency-sensitive traffic. The message gives the latest and usual latency.",
    ),
    entry!(
    "headroom", "rate-limit headroom low", &[], Headroom, Warning,
    codes: &[], types: &[], messages: &[], status: StatusRule::None,
    cause: "The account has used most of a rate limit of this model in the current window (the x-ratelimit-* headers of healthy answers say how much is left; the application's own traffic counts): requests beyond it will get 429 rate_limit_exceeded.",
    resolution: "Spread the traffic over the window, batch requests, move work to the Batch API, or use another model for part of it; if the load is meant to stay, request a higher usage tier (Limits page of the organization settings). The message names the limit (requests or tokens), the model and how much is left.",
    ),
    entry!(
    "agent_silent", "monitoring agent silent", &[], Monitor, Critical,
    codes: &[], types: &[], messages: &[], status: StatusRule::None,
    cause: "An agent of the fleet has written no heartbeat to the shared database for longer than its silent_after: its machine, its network to the database, or the daemon itself is down, and nothing is probed from its location meanwhile. The other agents raised this.",
    resolution: "Check the agent's machine and `systemctl status openai-watch` there, and its connection to the database. The incident resolves by itself when the agent writes its next heartbeat. An agent retired on purpose stays in the agents table: delete its row there.",
    ),
];

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
        codes: &[], types: &[], messages: &["the server had an error"],
        status: StatusRule::Any(&[500]),
        cause: "An issue on the API's servers while processing the request.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "bad_gateway", "bad gateway", &[502, 520, 521, 523], Outage, Critical,
        codes: &[], types: &[], messages: &[],
        // 520, 521 and 523 are the edge network's own: the origin answered nothing usable,
        // refused the connection, or could not be reached.
        status: StatusRule::Any(&[502, 520, 521, 523]),
        cause: "A gateway in front of the API (or the edge network's proxy, with 520, 521 or 523) received an invalid answer from the servers behind it, or none.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "gateway_timeout", "gateway timeout", &[504, 522, 524], Outage, Critical,
        codes: &[], types: &["cf_gateway_timeout"], messages: &[],
        // 522 and 524 are the edge network's own: connecting to, or waiting for, the origin
        // timed out.
        status: StatusRule::Any(&[504, 522, 524]),
        cause: "A gateway in front of the API (or the edge network's proxy, with 522 or 524) gave up waiting for the servers behind it.",
        resolution: "Retry after a brief wait; if it persists, check status.openai.com and contact support with the x-request-id.",
    ),
    entry!(
        "model_not_found", "model not found", &[404, 403], ClientError, Warning,
        codes: &["model_not_found"], types: &[],
        // "*" joins parts that must appear in this order: "The model `x` does not exist",
        // "That model does not exist", "The requested model 'x' does not exist."
        messages: &["model*does not exist", "does not have access to model"],
        status: StatusRule::None,
        cause: "The model the probe's config asks for does not exist, was retired, or the key's project has no access to it.",
        resolution: "Set `model` of the chat probe to a model that GET /models lists for this key; pin a dated model that is still offered.",
    ),
    entry!(
        "bad_request", "bad request", &[400, 404, 409, 422], ClientError, Warning,
        codes: &[], types: &[], messages: &[],
        status: StatusRule::Any(&[400, 404, 409, 422]),
        cause: "The API refused the probe's own request: the probe's config is at fault (a wrong base_url path, a parameter or model this server does not take), not the account.",
        resolution: "Check the target's base_url (for OpenAI it ends in /v1) and the chat probe's model; for an OpenAI-compatible server that knows only max_tokens, set max_tokens_field = \"max_tokens\" on the probe. The recorded message names what the server did not accept.",
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
