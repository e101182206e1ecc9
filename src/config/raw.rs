//! The config file as read from TOML (SPEC §3): every section, with the spans that errors
//! point at and secrets named by where they come from, not yet read. `Document::resolve`
//! turns this into a `Config`.
//!
//! Unknown keys are errors: a typo must never silently switch off alerting.

use super::secrets::SecretSources;
use super::values::{self, Dur, TargetName};
use crate::domain::{Category, ProbeKind};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const THIRTY_DAYS_MS: u64 = 30 * DAY_MS;
const TEN_YEARS_MS: u64 = 3_650 * DAY_MS;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: Option<Agent>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub dashboard: RawDashboard,
    #[serde(default)]
    pub detection: Detection,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub upstream_status: RawUpstreamStatus,
    #[serde(default)]
    pub maintenance: Vec<RawMaintenance>,
}

/// `[[maintenance]]`: a window in which alerts are suppressed (SPEC §15).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: Spanned<String>,
    /// Target names or globs; none: every target.
    pub targets: Option<Spanned<Vec<String>>>,
    #[serde(default, deserialize_with = "values::opt_categories")]
    pub categories: Option<Vec<Category>>,
    /// RFC 3339, with `end`.
    pub start: Option<Spanned<String>>,
    pub end: Option<Spanned<String>>,
    /// `sun 02:00-04:00`, instead of `start`/`end`.
    pub weekly: Option<Spanned<String>>,
    /// IANA time zone of `weekly`; UTC unless given.
    pub tz: Option<Spanned<String>>,
    pub comment: Option<String>,
}

/// `[upstream_status]`: OpenAI's status page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstreamStatus {
    /// A Statuspage v2 `summary.json`.
    #[serde(deserialize_with = "values::opt_url")]
    pub url: Option<reqwest::Url>,
    /// 10 seconds to 1 hour.
    #[serde(deserialize_with = "values::dur_within::<_, 10_000, HOUR_MS>")]
    pub interval: Dur,
    /// Default: on while a target is on api.openai.com, or when `url` is given.
    pub enabled: Option<bool>,
}

impl Default for RawUpstreamStatus {
    fn default() -> Self {
        RawUpstreamStatus {
            url: None,
            interval: Dur(Duration::from_secs(120)),
            enabled: None,
        }
    }
}

/// Where this daemon probes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Default: the host name.
    pub location: Option<String>,
    /// How long another agent may go without a heartbeat before the others raise a
    /// `monitor` incident about it. Default: 3 × the longest probe interval, at least 3 min;
    /// at least 2 × the longest interval when given.
    pub silent_after: Option<Spanned<Dur>>,
    /// A dead-man's switch: fetched (GET) every minute while the scheduler is healthy.
    #[serde(default, deserialize_with = "values::opt_url")]
    pub heartbeat_url: Option<reqwest::Url>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The SQLite database; relative paths are relative to the working directory.
    #[serde(deserialize_with = "db_path")]
    pub path: Option<Spanned<PathBuf>>,
    /// A PostgreSQL database (`postgres://…`) instead of `path`: a fleet of agents shares it.
    /// The URL may hold a password, so it can also come from a secret source.
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub url_file: Option<Spanned<PathBuf>>,
    pub url_credential: Option<Spanned<String>>,
    /// 1 hour to 10 years.
    #[serde(deserialize_with = "values::dur_within::<_, HOUR_MS, TEN_YEARS_MS>")]
    pub raw_retention: Dur,
    /// 1 day to 10 years.
    #[serde(deserialize_with = "values::dur_within::<_, DAY_MS, TEN_YEARS_MS>")]
    pub rollup_retention: Dur,
}

/// The SQLite file when the config names none.
pub const DEFAULT_DB_PATH: &str = "openai-watch.db";

impl Default for Storage {
    fn default() -> Self {
        Storage {
            path: None,
            url: None,
            url_env: None,
            url_file: None,
            url_credential: None,
            raw_retention: Dur(Duration::from_secs(14 * 86_400)),
            rollup_retention: Dur(Duration::from_secs(400 * 86_400)),
        }
    }
}

impl Storage {
    /// The SQLite file this names (the default when neither `path` nor a URL is given).
    pub fn sqlite_path(&self) -> PathBuf {
        self.path
            .as_ref()
            .map_or_else(|| PathBuf::from(DEFAULT_DB_PATH), |p| p.get_ref().clone())
    }

    /// Where the PostgreSQL URL comes from, when it is a secret.
    pub fn url_sources(&self) -> SecretSources {
        SecretSources {
            env: self.url_env.clone(),
            file: self.url_file.clone(),
            credential: self.url_credential.clone(),
        }
    }
}

fn db_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<PathBuf>>, D::Error> {
    let v = Spanned::<PathBuf>::deserialize(d)?;
    if v.get_ref().as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "the database path must not be empty",
        ));
    }
    Ok(Some(v))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDashboard {
    pub listen: SocketAddr,
    #[serde(deserialize_with = "values::opt_url")]
    pub public_url: Option<reqwest::Url>,
    /// Environment variable holding the bearer token / basic-auth password (the token
    /// named `dashboard`).
    pub auth_token_env: Option<Spanned<String>>,
    /// More named tokens: writes are stored with the name of the token that made them.
    pub tokens: Vec<RawToken>,
}

/// `[[dashboard.tokens]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: Spanned<String>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<PathBuf>>,
    pub token_credential: Option<Spanned<String>>,
}

impl RawToken {
    pub fn sources(&self) -> SecretSources {
        SecretSources {
            env: self.token_env.clone(),
            file: self.token_file.clone(),
            credential: self.token_credential.clone(),
        }
    }
}

impl Default for RawDashboard {
    fn default() -> Self {
        RawDashboard {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            auth_token_env: None,
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    pub failure_threshold: NonZeroU32,
    pub success_threshold: NonZeroU32,
    /// 1 second to 1 day.
    #[serde(deserialize_with = "values::dur_within::<_, 1_000, DAY_MS>")]
    pub window: Dur,
    #[serde(deserialize_with = "values::ratio")]
    pub failure_ratio: f64,
    pub min_samples: NonZeroU32,
    /// The used share of a rate limit at which `headroom` opens.
    #[serde(deserialize_with = "values::ratio")]
    pub headroom_warn: f64,
    /// `slow` opens when answers take this many times their usual latency ...
    #[serde(deserialize_with = "values::factor")]
    pub slow_factor: f64,
    /// ... and longer than this.
    #[serde(deserialize_with = "values::dur_within::<_, 1, 600_000>")]
    pub slow_floor: Dur,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            failure_threshold: NonZeroU32::new(3).expect("non-zero"),
            success_threshold: NonZeroU32::new(2).expect("non-zero"),
            window: Dur(Duration::from_secs(600)),
            failure_ratio: 0.5,
            min_samples: NonZeroU32::new(5).expect("non-zero"),
            headroom_warn: 0.9,
            slow_factor: 3.0,
            slow_floor: Dur(Duration::from_secs(2)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<TargetName>,
    #[serde(deserialize_with = "values::url")]
    pub base_url: reqwest::Url,
    pub api_key_env: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<PathBuf>>,
    pub api_key_credential: Option<Spanned<String>>,
    pub organization: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Dur>,
    pub probes: Vec<RawProbe>,
}

fn default_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(30)))
}

impl RawTarget {
    pub fn key_sources(&self) -> SecretSources {
        SecretSources {
            env: self.api_key_env.clone(),
            file: self.api_key_file.clone(),
            credential: self.api_key_credential.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub kind: Spanned<ProbeKind>,
    pub interval: Spanned<Dur>,
    /// Chat probes only.
    pub model: Option<Spanned<String>>,
    /// Chat probes only: the name of the one-token limit the server knows.
    pub max_tokens_field: Option<Spanned<TokenLimitField>>,
    /// An absolute bound for `slow`, instead of the factor over the usual latency.
    #[serde(default, deserialize_with = "values::opt_dur_within::<_, 1, 600_000>")]
    pub slow_after: Option<Dur>,
}

/// How a chat probe names its one-token limit: `max_completion_tokens`, today's parameter
/// (reasoning models refuse the old one), or `max_tokens` for OpenAI-compatible servers that
/// know only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLimitField {
    #[default]
    MaxCompletionTokens,
    MaxTokens,
}

impl TokenLimitField {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
            TokenLimitField::MaxTokens => "max_tokens",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Channel name; default `email`, `email-2`, ….
    pub name: Option<Spanned<String>>,
    pub smtp_host: String,
    pub smtp_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: Spanned<SmtpTls>,
    /// Lets `tls = "none"` send credentials to a host that is not loopback.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    pub username_env: Option<Spanned<String>>,
    pub username_file: Option<Spanned<PathBuf>>,
    pub username_credential: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub password_credential: Option<Spanned<String>>,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<String>>,
    /// Extra CA certificate (PEM) to trust for the SMTP server, e.g. a private relay's.
    pub ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "values::opt_categories")]
    pub categories: Option<Vec<Category>>,
}

fn default_tls() -> Spanned<SmtpTls> {
    Spanned::new(0..0, SmtpTls::Starttls)
}

impl RawEmail {
    /// The channel name: as configured, else `email` for the first, `email-N` after.
    pub fn channel_name(&self, index: usize) -> String {
        channel_name(self.name.as_ref(), "email", index)
    }

    /// Whether a user name or password is configured.
    pub fn has_credentials(&self) -> bool {
        [self.username_sources(), self.password_sources()]
            .iter()
            .any(|s| s.env.is_some() || s.file.is_some() || s.credential.is_some())
    }

    pub fn username_sources(&self) -> SecretSources {
        SecretSources {
            env: self.username_env.clone(),
            file: self.username_file.clone(),
            credential: self.username_credential.clone(),
        }
    }
    pub fn password_sources(&self) -> SecretSources {
        SecretSources {
            env: self.password_env.clone(),
            file: self.password_file.clone(),
            credential: self.password_credential.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    Json,
    Slack,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Channel name for `alert test --channel`; default `webhook`, `webhook-2`, ….
    pub name: Option<Spanned<String>>,
    #[serde(deserialize_with = "values::url")]
    pub url: reqwest::Url,
    #[serde(default = "default_webhook_format")]
    pub format: WebhookFormat,
    #[serde(default, deserialize_with = "values::opt_categories")]
    pub categories: Option<Vec<Category>>,
}

fn default_webhook_format() -> WebhookFormat {
    WebhookFormat::Json
}

impl RawWebhook {
    /// The channel name: as configured, else `webhook` for the first, `webhook-N` after.
    pub fn channel_name(&self, index: usize) -> String {
        channel_name(self.name.as_ref(), "webhook", index)
    }
}

fn channel_name(name: Option<&Spanned<String>>, kind: &str, index: usize) -> String {
    match name {
        Some(n) => n.get_ref().clone(),
        None if index == 0 => kind.to_string(),
        None => format!("{kind}-{}", index + 1),
    }
}

/// `[alerts.email]` (one table, version 1) or `[[alerts.email]]` (several, named).
#[derive(Debug, Clone, Default)]
pub struct EmailTables(pub Vec<RawEmail>);

impl<'de> Deserialize<'de> for EmailTables {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EmailTables;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an [alerts.email] table or [[alerts.email]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EmailTables, A::Error> {
                RawEmail::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|e| EmailTables(vec![e]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<EmailTables, A::Error> {
                Vec::<RawEmail>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(EmailTables)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[[alerts.routes]]`: which channels get the events that match (first match wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Target names or globs; none: every target.
    pub targets: Option<Spanned<Vec<String>>>,
    #[serde(default, deserialize_with = "values::opt_categories")]
    pub categories: Option<Vec<Category>>,
    /// Location names or globs; none: every location.
    #[serde(default)]
    pub locations: Vec<String>,
    pub channels: Spanned<Vec<String>>,
    /// Go on to the next routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    #[serde(deserialize_with = "values::categories")]
    pub categories: Vec<Category>,
    /// Off ("0s"), or 1 minute to 30 days.
    #[serde(deserialize_with = "values::dur_off_or_within::<_, 60_000, THIRTY_DAYS_MS>")]
    pub reminder_interval: Dur,
    pub send_resolved: bool,
    /// At most 1 hour.
    #[serde(deserialize_with = "values::dur_within::<_, 0, HOUR_MS>")]
    pub group_wait: Dur,
    pub email: EmailTables,
    pub webhook: Vec<RawWebhook>,
    pub routes: Vec<RawRoute>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            categories: vec![
                Category::Auth,
                Category::Quota,
                Category::Region,
                Category::Outage,
                Category::Overload,
                // Only a fleet raises it (SPEC §14): an agent that went silent.
                Category::Monitor,
            ],
            reminder_interval: Dur(Duration::from_secs(4 * 3600)),
            send_resolved: true,
            group_wait: Dur(Duration::from_secs(30)),
            email: EmailTables::default(),
            webhook: Vec::new(),
            routes: Vec::new(),
        }
    }
}
