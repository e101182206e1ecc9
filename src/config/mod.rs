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
pub use values::{Dur, TargetName, parse_dashboard_url};

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
            c.targets[0].endpoint("models"),
            "http://127.0.0.1:1/v1/models"
        );
        assert_eq!(c.alerts.categories.len(), 5);
        assert_eq!(c.storage.path, PathBuf::from("openai-watch.db"));
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
