//! Configuration (SPEC §3), in two steps:
//!
//! 1. [`Document`]: the file as read ([`raw`]), every span kept, validated part by part
//!    ([`targets`], [`alerts`]). Commands that never need a secret (`status`) stop here.
//! 2. [`Config`]: the document with every secret read from its source. A `Config` exists only
//!    with its secrets present; nothing has to be called on it first.
//!
//! Errors are one [`ConfigError`] line with file, line:column and key.

mod alerts;
mod error;
mod files;
mod maintenance;
pub mod raw;
mod secrets;
mod targets;
mod values;

pub use crate::domain::ProbeKind;
pub use alerts::{Alerts, Email, Route, Webhook};
pub use error::ConfigError;
pub use raw::{Agent, Detection, SmtpTls, Storage, TokenLimitField, WebhookFormat};
pub use secrets::expose;
pub use targets::{DEFAULT_CHAT_MODEL, Probe, Target};
pub use values::{Dur, TargetName, check_postgres_url, parse_dashboard_url};

use error::{Source, first_line};
use raw::RawConfig;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config file read and validated; its secrets not read yet.
#[derive(Debug, Clone)]
pub struct Document {
    raw: RawConfig,
    src: Source,
    /// The maintenance windows, resolved once while validating (time zones looked up).
    maintenance: Vec<crate::silence::Maintenance>,
}

/// The dashboard, its token read.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub listen: SocketAddr,
    pub public_url: Option<reqwest::Url>,
    /// Named tokens (`auth_token_env` is the one named `dashboard`). With none, reads are
    /// open and writes are refused.
    pub tokens: Vec<(String, SecretString)>,
}

impl Dashboard {
    /// The URL alerts link to: `public_url`, else derived from `listen`.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// The whole configuration, secrets read.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    /// Where this daemon probes from: `[agent] location`, else the host name.
    pub location: String,
    pub storage: Storage,
    /// The database `[storage]` names: SQLite (`path`) or PostgreSQL (`url…`).
    pub database: crate::store::Database,
    /// `[agent] silent_after`, resolved: how long another agent may be silent.
    pub silent_after: Duration,
    /// `[agent] heartbeat_url`.
    pub heartbeat_url: Option<reqwest::Url>,
    pub dashboard: Dashboard,
    pub detection: Detection,
    pub targets: Vec<Target>,
    pub alerts: Alerts,
    pub upstream_status: UpstreamStatus,
    pub maintenance: Vec<crate::silence::Maintenance>,
}

/// The status page to poll, and whether to.
#[derive(Debug, Clone)]
pub struct UpstreamStatus {
    pub url: reqwest::Url,
    pub interval: Duration,
    pub enabled: bool,
}

/// OpenAI's status page (Statuspage v2).
pub const DEFAULT_STATUS_URL: &str = "https://status.openai.com/api/v2/summary.json";

/// `path` and a URL name two databases: one of them only. One URL source only.
fn validate_storage(src: &Source, storage: &Storage) -> Result<(), ConfigError> {
    let sources = storage.url_sources();
    sources.check_one(src, "url", "storage.url")?;
    let url_span = storage
        .url
        .as_ref()
        .map(|u| u.span())
        .or_else(|| sources.env.as_ref().map(|u| u.span()))
        .or_else(|| sources.file.as_ref().map(|u| u.span()))
        .or_else(|| sources.credential.as_ref().map(|u| u.span()));
    if storage.url.is_some()
        && (sources.env.is_some() || sources.file.is_some() || sources.credential.is_some())
    {
        return Err(src.err_plain(
            url_span,
            "storage.url: give only one of url, url_env, url_file and url_credential".into(),
        ));
    }
    if let (Some(_), Some(span)) = (&storage.path, url_span) {
        return Err(src.err_plain(
            Some(span),
            "storage: give either path (SQLite) or url (PostgreSQL), not both".into(),
        ));
    }
    Ok(())
}

/// The longest probe interval of the config.
fn longest_interval(targets: &[raw::RawTarget]) -> Duration {
    targets
        .iter()
        .flat_map(|t| t.probes.iter().map(|p| p.interval.get_ref().0))
        .max()
        .unwrap_or(Duration::from_secs(60))
}

/// `[agent] silent_after`: at least 2 × the longest interval (a slower agent is not silent).
fn validate_agent(
    src: &Source,
    agent: Option<&raw::Agent>,
    targets: &[raw::RawTarget],
) -> Result<(), ConfigError> {
    let Some(given) = agent.and_then(|a| a.silent_after.as_ref()) else {
        return Ok(());
    };
    let least = longest_interval(targets) * 2;
    if given.get_ref().0 < least {
        return Err(src.err_at(
            given.span(),
            "agent.silent_after",
            format!(
                "must be at least twice the longest probe interval ({})",
                humantime::format_duration(least)
            ),
        ));
    }
    Ok(())
}

/// `[agent] silent_after`, or its default: 3 × the longest interval, at least 3 minutes.
fn silent_after(agent: Option<&raw::Agent>, targets: &[raw::RawTarget]) -> Duration {
    agent
        .and_then(|a| a.silent_after.as_ref())
        .map(|s| s.get_ref().0)
        .unwrap_or_else(|| (longest_interval(targets) * 3).max(Duration::from_secs(180)))
}

/// Resolves the config path as SPEC §2 says: `--config`, else `$OPENAI_WATCH_CONFIG`, else
/// `./config/openai-watch.toml`, else `/etc/openai-watch/openai-watch.toml`.
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("OPENAI_WATCH_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("config/openai-watch.toml");
    if local.exists() {
        return local;
    }
    PathBuf::from("/etc/openai-watch/openai-watch.toml")
}

impl Document {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Document, ConfigError> {
        let bytes =
            files::read_bounded(path, files::MAX_CONFIG_BYTES).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                position: None,
                key: None,
                message: format!("cannot read the config file: {e}"),
            })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            ConfigError {
                file: path.to_path_buf(),
                position: Some(error::line_col(&text, e.utf8_error().valid_up_to())),
                key: None,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        Document::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Document, ConfigError> {
        let src = Source::new(path, text);
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| src.err_plain(e.span(), first_line(e.message())))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` fields add a private segment to the path; users never wrote it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let mut err = src.err_plain(inner.span(), first_line(inner.message()));
            err.key = Some(key);
            err
        })?;
        targets::validate(&src, &raw.targets)?;
        let names: Vec<&str> = raw
            .targets
            .iter()
            .map(|t| t.name.get_ref().as_str())
            .collect();
        alerts::validate(&src, &raw.alerts, &names)?;
        let maintenance = maintenance::resolve(&src, &raw.maintenance, &names)?;
        validate_tokens(&src, &raw.dashboard)?;
        validate_storage(&src, &raw.storage)?;
        validate_agent(&src, raw.agent.as_ref(), &raw.targets)?;
        Ok(Document {
            raw,
            src,
            maintenance,
        })
    }

    /// The file this was read from.
    pub fn source(&self) -> &Path {
        &self.src.file
    }

    pub fn storage(&self) -> &Storage {
        &self.raw.storage
    }

    /// The database `[storage]` names, reading the PostgreSQL URL from its source when it is
    /// a secret (and nothing else: `status` needs no API key).
    pub fn database(&self) -> Result<crate::store::Database, ConfigError> {
        let storage = &self.raw.storage;
        let from_source = storage.url_sources().read(&self.src, "storage.url")?;
        let url = match (&storage.url, from_source) {
            (Some(url), _) => secrecy::SecretString::from(url.get_ref().clone()),
            (None, Some(secret)) => secret,
            (None, None) => return Ok(crate::store::Database::Sqlite(storage.sqlite_path())),
        };
        let span = storage
            .url
            .as_ref()
            .map(|u| u.span())
            .or_else(|| storage.url_env.as_ref().map(|u| u.span()))
            .or_else(|| storage.url_file.as_ref().map(|u| u.span()))
            .or_else(|| storage.url_credential.as_ref().map(|u| u.span()));
        let scheme_ok = {
            use secrecy::ExposeSecret;
            let u = url.expose_secret();
            u.starts_with("postgres://") || u.starts_with("postgresql://")
        };
        if !scheme_ok {
            return Err(self.src.err_plain(
                span,
                "storage.url: not a PostgreSQL URL (postgres://user@host:5432/database)".into(),
            ));
        }
        {
            use secrecy::ExposeSecret;
            if let Err(why) = values::check_postgres_url(url.expose_secret()) {
                return Err(self.src.err_plain(span, format!("storage.url: {why}")));
            }
        }
        Ok(crate::store::Database::Postgres(url))
    }

    /// The configured target names, in order.
    pub fn target_names(&self) -> Vec<TargetName> {
        self.raw
            .targets
            .iter()
            .map(|t| t.name.get_ref().clone())
            .collect()
    }

    /// Reads every secret (API keys, SMTP credentials, the dashboard token) from its source.
    /// Errors point at the key that names the source.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let src = &self.src;
        let raw = &self.raw;
        let targets = raw
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| targets::resolve(src, i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tokens = Vec::new();
        if let Some(var) = &raw.dashboard.auth_token_env {
            let sources = secrets::SecretSources {
                env: Some(var.clone()),
                ..Default::default()
            };
            tokens.extend(
                sources
                    .read(src, "dashboard.auth_token")?
                    .map(|t| ("dashboard".to_string(), t)),
            );
        }
        for (i, t) in raw.dashboard.tokens.iter().enumerate() {
            let key = format!("dashboard.tokens[{i}].token");
            if let Some(secret) = t.sources().read(src, &key)? {
                tokens.push((t.name.get_ref().clone(), secret));
            }
        }
        Ok(Config {
            source: src.file.clone(),
            location: raw
                .agent
                .as_ref()
                .and_then(|a| a.location.clone())
                .filter(|l| !l.trim().is_empty())
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            storage: raw.storage.clone(),
            database: self.database()?,
            silent_after: silent_after(raw.agent.as_ref(), &raw.targets),
            heartbeat_url: raw.agent.as_ref().and_then(|a| a.heartbeat_url.clone()),
            dashboard: Dashboard {
                listen: raw.dashboard.listen,
                public_url: raw.dashboard.public_url.clone(),
                tokens,
            },
            maintenance: self.maintenance.clone(),
            detection: raw.detection.clone(),
            upstream_status: UpstreamStatus {
                url: raw.upstream_status.url.clone().unwrap_or_else(|| {
                    reqwest::Url::parse(DEFAULT_STATUS_URL).expect("a valid default URL")
                }),
                interval: raw.upstream_status.interval.0,
                enabled: raw.upstream_status.enabled.unwrap_or_else(|| {
                    raw.upstream_status.url.is_some()
                        || targets
                            .iter()
                            .any(|t| t.base_url.host_str() == Some("api.openai.com"))
                }),
            },
            targets,
            alerts: alerts::resolve(src, &raw.alerts)?,
        })
    }
}

/// Token names are unique and each token has exactly one source.
fn validate_tokens(src: &Source, dashboard: &raw::RawDashboard) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    if dashboard.auth_token_env.is_some() {
        names.insert("dashboard".to_string());
    }
    for (i, t) in dashboard.tokens.iter().enumerate() {
        let name = t.name.get_ref();
        if TargetName::parse(name).is_err() || !names.insert(name.clone()) {
            return Err(src.err_at(
                t.name.span(),
                format!("dashboard.tokens[{i}].name"),
                format!(
                    "invalid or duplicate token name {name:?} (\"dashboard\" is auth_token_env's)"
                ),
            ));
        }
        let key = format!("dashboard.tokens[{i}].token");
        t.sources().check_one(src, "token", &key)?;
        if t.sources().env.is_none()
            && t.sources().file.is_none()
            && t.sources().credential.is_none()
        {
            return Err(src.err_at(
                t.name.span(),
                key,
                "give token_env, token_file or token_credential",
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Reads, validates and resolves a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Document::load(path)?.resolve()
    }

    /// Parses, validates and resolves config text; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Document::parse(text, path)?.resolve()
    }

    /// The target names, in the order of the file.
    pub fn target_names(&self) -> Vec<&str> {
        self.targets.iter().map(|t| t.name.as_str()).collect()
    }

    /// Every configured secret, for masking text that might echo one.
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out: Vec<SecretString> = self
            .targets
            .iter()
            .filter_map(|t| t.api_key.clone())
            .collect();
        for e in &self.alerts.email {
            out.extend(e.password.clone());
        }
        out.extend(self.dashboard.tokens.iter().map(|(_, t)| t.clone()));
        out
    }

    /// Warnings that do not stop the daemon (e.g. probing api.openai.com more than every 10 s).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.alerts.email {
            if e.tls == SmtpTls::None && (e.username.is_some() || e.password.is_some()) {
                out.push(format!(
                    "alerts.email: tls = \"none\" sends the SMTP credentials in clear text to {} (channel {})",
                    e.smtp_host, e.name
                ));
            }
        }
        for t in &self.targets {
            if t.base_url.host_str() == Some("api.openai.com") {
                for p in &t.probes {
                    if p.interval < Duration::from_secs(10) {
                        out.push(format!(
                            "target {}: {} probe every {} is faster than 10s against api.openai.com",
                            t.name,
                            p.kind,
                            humantime::format_duration(p.interval)
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    const MINIMAL: &str = "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n";

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.detection.failure_threshold.get(), 3);
        assert_eq!(c.targets[0].timeout(), Duration::from_secs(30));
        assert_eq!(
            c.targets[0].endpoint("models").as_str(),
            "http://127.0.0.1:1/v1/models"
        );
        let slash = parse(&MINIMAL.replace("/v1\"", "/v1/?x=1\"")).unwrap();
        assert_eq!(
            slash.targets[0].endpoint("chat/completions").as_str(),
            "http://127.0.0.1:1/v1/chat/completions?x=1"
        );
        assert_eq!(c.alerts.categories.len(), 6);
        assert_eq!(
            c.database.sqlite_path(),
            Some(PathBuf::from("openai-watch.db").as_path())
        );
        assert_eq!(c.silent_after, Duration::from_secs(180));
    }

    #[test]
    fn an_unknown_key_names_its_line_column_and_path() {
        let text = MINIMAL.replace("interval", "intervall");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(6), "{e}");
        assert!(e.to_string().contains("intervall"), "{e}");
        assert!(e.to_string().starts_with("t.toml:6:"), "{e}");
    }

    #[test]
    fn a_document_is_valid_without_its_secrets_and_resolving_reads_them() {
        let text = MINIMAL.replace(
            "base_url",
            "api_key_env = \"OPENAI_WATCH_TEST_UNSET_VARIABLE\"\nbase_url",
        );
        let doc = Document::parse(&text, Path::new("t.toml")).unwrap();
        assert_eq!(doc.target_names()[0].as_str(), "prod");
        let e = doc.resolve().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("targets[0].api_key_env"), "{e}");
        assert!(e.to_string().contains("is not set"), "{e}");
    }
}
