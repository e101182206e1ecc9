//! Typed configuration (SPEC §3): loading, validation with file:line:column positions, and
//! secrets read from the environment, files or systemd credentials.
//!
//! Unknown keys are errors: a typo must never silently switch off alerting.

use crate::catalog::Category;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Exit code for configuration errors (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

/// A configuration error: where it is and what is wrong, printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a position in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted path of the key, e.g. `targets[0].probes[1].interval`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        match &self.key {
            Some(key) if !key.is_empty() && key != "." => write!(f, ": {key}: {}", self.message),
            _ => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A duration written as `"30s"`, `"15m"`, `"4h"`, `"14d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: write a number and a unit, such as \"30s\", \"15m\", \"4h\" or \"14d\""
            ))
        })
    }
}

/// A target name: 1 to 64 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetName(String);

impl TargetName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(TargetName(s.to_string()))
        } else {
            Err(format!(
                "invalid target name {s:?}: use 1 to 64 characters of a-z, 0-9, '_' and '-'"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TargetName::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn deserialize_category<'de, D: Deserializer<'de>>(d: D) -> Result<Category, D::Error> {
    let s = String::deserialize(d)?;
    match Category::parse(&s) {
        Some(Category::Ok) | None => {
            let valid: Vec<&str> = Category::ALL[1..].iter().map(|c| c.as_str()).collect();
            Err(serde::de::Error::custom(format!(
                "unknown category {s:?}; expected one of {}",
                valid.join(", ")
            )))
        }
        Some(c) => Ok(c),
    }
}

fn deserialize_categories<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Category>, D::Error> {
    #[derive(Deserialize)]
    struct C(#[serde(deserialize_with = "deserialize_category")] Category);
    let list = Vec::<C>::deserialize(d)?;
    Ok(list.into_iter().map(|c| c.0).collect())
}

fn deserialize_opt_categories<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Category>>, D::Error> {
    deserialize_categories(d).map(Some)
}

fn deserialize_url<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Url, D::Error> {
    let s = String::deserialize(d)?;
    let url = reqwest::Url::parse(s.trim())
        .map_err(|e| serde::de::Error::custom(format!("invalid URL {s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(serde::de::Error::custom(format!(
            "invalid URL {s:?}: must be http:// or https:// with a host"
        )));
    }
    Ok(url)
}

/// Where this daemon probes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Default: the host name.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// The SQLite database; relative paths are relative to the working directory.
    #[serde(deserialize_with = "deserialize_db_path")]
    pub path: PathBuf,
    pub raw_retention: Dur,
    pub rollup_retention: Dur,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            path: PathBuf::from("openai-watch.db"),
            raw_retention: Dur(Duration::from_secs(14 * 86_400)),
            rollup_retention: Dur(Duration::from_secs(400 * 86_400)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    pub listen: SocketAddr,
    #[serde(deserialize_with = "deserialize_opt_url")]
    pub public_url: Option<reqwest::Url>,
    /// Environment variable holding the bearer token / basic-auth password.
    pub auth_token_env: Option<Spanned<String>>,
    /// Filled in by `Config::resolve_secrets`.
    #[serde(skip)]
    pub auth_token: Option<SecretString>,
}

fn deserialize_opt_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    deserialize_url(d).map(Some)
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            auth_token_env: None,
            auth_token: None,
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    pub failure_threshold: NonZeroU32,
    pub success_threshold: NonZeroU32,
    #[serde(deserialize_with = "deserialize_positive_dur")]
    pub window: Dur,
    #[serde(deserialize_with = "deserialize_ratio")]
    pub failure_ratio: f64,
    pub min_samples: NonZeroU32,
}

fn deserialize_positive_dur<'de, D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
    let v = Dur::deserialize(d)?;
    if v.0.is_zero() {
        return Err(serde::de::Error::custom("must be longer than 0s"));
    }
    Ok(v)
}

fn deserialize_ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a ratio above 0 and at most 1"
        )))
    }
}

fn deserialize_db_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let v = PathBuf::deserialize(d)?;
    if v.as_os_str().is_empty() {
        return Err(serde::de::Error::custom(
            "the database path must not be empty",
        ));
    }
    Ok(v)
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            failure_threshold: NonZeroU32::new(3).expect("non-zero"),
            success_threshold: NonZeroU32::new(2).expect("non-zero"),
            window: Dur(Duration::from_secs(600)),
            failure_ratio: 0.5,
            min_samples: NonZeroU32::new(5).expect("non-zero"),
        }
    }
}

/// The probe kinds of SPEC §4.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// `GET {base_url}/models`: free; sees key, region and outage problems.
    Models,
    /// `POST {base_url}/chat/completions` with one output token: sees quota and overload.
    Chat,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Models => "models",
            ProbeKind::Chat => "chat",
        }
    }
    pub fn parse(s: &str) -> Option<ProbeKind> {
        match s {
            "models" => Some(ProbeKind::Models),
            "chat" => Some(ProbeKind::Chat),
            _ => None,
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model a chat probe asks for when none is configured.
pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub kind: Spanned<ProbeKind>,
    pub interval: Spanned<Dur>,
    /// Chat probes only.
    pub model: Option<Spanned<String>>,
}

impl Probe {
    pub fn kind(&self) -> ProbeKind {
        *self.kind.get_ref()
    }
    pub fn interval(&self) -> Duration {
        self.interval.get_ref().0
    }
    pub fn model(&self) -> &str {
        self.model
            .as_ref()
            .map_or(DEFAULT_CHAT_MODEL, |m| m.get_ref().as_str())
    }
}

/// Where a secret comes from: `*_env`, `*_file` or `*_credential`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretSources {
    env: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
    credential: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: Spanned<TargetName>,
    #[serde(deserialize_with = "deserialize_url")]
    pub base_url: reqwest::Url,
    api_key_env: Option<Spanned<String>>,
    api_key_file: Option<Spanned<PathBuf>>,
    api_key_credential: Option<Spanned<String>>,
    pub organization: Option<String>,
    pub project: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Dur>,
    pub probes: Vec<Probe>,
    /// Filled in by `Config::resolve_secrets`.
    #[serde(skip)]
    pub api_key: Option<SecretString>,
}

fn default_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(30)))
}

impl Target {
    pub fn name(&self) -> &TargetName {
        self.name.get_ref()
    }
    pub fn timeout(&self) -> Duration {
        self.timeout.get_ref().0
    }
    /// `base_url` without a trailing slash, ready for `/models` to be appended.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}/{}", self.base_url.as_str().trim_end_matches('/'), path)
    }
    fn key_sources(&self) -> SecretSources {
        SecretSources {
            env: self.api_key_env.clone(),
            file: self.api_key_file.clone(),
            credential: self.api_key_credential.clone(),
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
pub struct Email {
    pub smtp_host: String,
    pub smtp_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    username_env: Option<Spanned<String>>,
    username_file: Option<Spanned<PathBuf>>,
    username_credential: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    password_credential: Option<Spanned<String>>,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<String>>,
    /// Extra CA certificate (PEM) to trust for the SMTP server, e.g. a private relay's.
    pub ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "deserialize_opt_categories")]
    pub categories: Option<Vec<Category>>,
    #[serde(skip)]
    pub username: Option<SecretString>,
    #[serde(skip)]
    pub password: Option<SecretString>,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

impl Email {
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
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
pub struct Webhook {
    /// Channel name for `alert test --channel`; default `webhook`, `webhook-2`, ….
    pub name: Option<Spanned<String>>,
    #[serde(deserialize_with = "deserialize_url")]
    pub url: reqwest::Url,
    #[serde(default = "default_webhook_format")]
    pub format: WebhookFormat,
    #[serde(default, deserialize_with = "deserialize_opt_categories")]
    pub categories: Option<Vec<Category>>,
}

fn default_webhook_format() -> WebhookFormat {
    WebhookFormat::Json
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    #[serde(deserialize_with = "deserialize_categories")]
    pub categories: Vec<Category>,
    pub reminder_interval: Dur,
    pub send_resolved: bool,
    pub group_wait: Dur,
    pub email: Option<Email>,
    pub webhook: Vec<Webhook>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            categories: vec![
                Category::Auth,
                Category::Quota,
                Category::Region,
                Category::Outage,
                Category::Overload,
            ],
            reminder_interval: Dur(Duration::from_secs(4 * 3600)),
            send_resolved: true,
            group_wait: Dur(Duration::from_secs(30)),
            email: None,
            webhook: Vec::new(),
        }
    }
}

impl Alerts {
    /// Channel names, in order: `email`, then each webhook's.
    pub fn channel_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.email.is_some() {
            names.push("email".to_string());
        }
        for (i, w) in self.webhook.iter().enumerate() {
            names.push(webhook_name(w, i));
        }
        names
    }
}

fn webhook_name(w: &Webhook, index: usize) -> String {
    match &w.name {
        Some(n) => n.get_ref().clone(),
        None if index == 0 => "webhook".to_string(),
        None => format!("webhook-{}", index + 1),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    agent: Option<Agent>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub dashboard: Dashboard,
    #[serde(default)]
    pub detection: Detection,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub alerts: Alerts,
    /// The file this was read from.
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(skip)]
    text: String,
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

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

impl Config {
    /// Reads and validates a config file. Secrets are not read yet: see `resolve_secrets`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let (line, col) = line_col(&text, e.utf8_error().valid_up_to());
            ConfigError {
                file: path.to_path_buf(),
                position: Some((line, col)),
                key: None,
                message: "the file is not valid UTF-8".into(),
            }
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let error = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            ConfigError {
                file: path.to_path_buf(),
                position: span.map(|s| line_col(text, s.start)),
                key,
                message,
            }
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| error(e.span(), None, first_line(e.message())))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` fields add a private segment to the path; users never wrote it.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            error(inner.span(), Some(key), first_line(inner.message()))
        })?;
        config.source = path.to_path_buf();
        config.text = text.to_string();
        config.validate()?;
        Ok(config)
    }

    fn err_at(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            position: (span.end > 0).then(|| line_col(&self.text, span.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() {
            return Err(ConfigError {
                file: self.source.clone(),
                position: Some(line_col(&self.text, self.text.len())),
                key: Some("targets".into()),
                message: "no [[targets]] configured: add at least one target to probe".into(),
            });
        }
        let mut names = HashSet::new();
        for (ti, t) in self.targets.iter().enumerate() {
            let at = |k: &str| format!("targets[{ti}].{k}");
            if !names.insert(t.name()) {
                return Err(self.err_at(
                    t.name.span(),
                    at("name"),
                    format!("duplicate target name {:?}", t.name().as_str()),
                ));
            }
            let timeout = t.timeout();
            if timeout.is_zero() || timeout > Duration::from_secs(600) {
                return Err(self.err_at(
                    t.timeout.span(),
                    at("timeout"),
                    "timeout must be between 1ms and 10m",
                ));
            }
            self.check_one_source("api_key", &t.key_sources(), &at("api_key"))?;
            if t.probes.is_empty() {
                return Err(self.err_at(
                    t.name.span(),
                    at("probes"),
                    "target has no [[targets.probes]]: add a `models` or `chat` probe",
                ));
            }
            let mut kinds = HashSet::new();
            for (pi, p) in t.probes.iter().enumerate() {
                let pat = |k: &str| format!("targets[{ti}].probes[{pi}].{k}");
                if !kinds.insert(p.kind()) {
                    return Err(self.err_at(
                        p.kind.span(),
                        pat("kind"),
                        format!(
                            "duplicate probe kind {:?} in target {:?}",
                            p.kind().as_str(),
                            t.name().as_str()
                        ),
                    ));
                }
                if p.interval() < Duration::from_secs(1) {
                    return Err(self.err_at(
                        p.interval.span(),
                        pat("interval"),
                        "interval must be at least 1s",
                    ));
                }
                if let Some(model) = &p.model {
                    if p.kind() != ProbeKind::Chat {
                        return Err(self.err_at(
                            model.span(),
                            pat("model"),
                            "`model` applies to chat probes only",
                        ));
                    }
                    if model.get_ref().trim().is_empty() {
                        return Err(self.err_at(
                            model.span(),
                            pat("model"),
                            "model must not be empty",
                        ));
                    }
                }
            }
        }
        if let Some(email) = &self.alerts.email {
            self.check_one_source(
                "username",
                &email.username_sources(),
                "alerts.email.username",
            )?;
            self.check_one_source(
                "password",
                &email.password_sources(),
                "alerts.email.password",
            )?;
            if !looks_like_mailbox(email.from.get_ref()) {
                return Err(self.err_at(
                    email.from.span(),
                    "alerts.email.from",
                    format!(
                        "invalid address {:?}: expected \"name <user@host>\" or \"user@host\"",
                        email.from.get_ref()
                    ),
                ));
            }
            if email.to.get_ref().is_empty() {
                return Err(self.err_at(
                    email.to.span(),
                    "alerts.email.to",
                    "no recipients: give at least one address",
                ));
            }
            if let Some(bad) = email.to.get_ref().iter().find(|a| !looks_like_mailbox(a)) {
                return Err(self.err_at(
                    email.to.span(),
                    "alerts.email.to",
                    format!("invalid address {bad:?}"),
                ));
            }
        }
        let mut channels = HashSet::new();
        for (i, w) in self.alerts.webhook.iter().enumerate() {
            let name = webhook_name(w, i);
            let span = w.name.as_ref().map_or(0..0, |n| n.span());
            if name == "email"
                || TargetName::parse(&name).is_err()
                || !channels.insert(name.clone())
            {
                return Err(self.err_at(
                    span,
                    format!("alerts.webhook[{i}].name"),
                    format!("invalid or duplicate channel name {name:?}"),
                ));
            }
        }
        Ok(())
    }

    fn check_one_source(
        &self,
        what: &str,
        s: &SecretSources,
        key: &str,
    ) -> Result<(), ConfigError> {
        let spans: Vec<_> = [
            s.env.as_ref().map(|v| v.span()),
            s.file.as_ref().map(|v| v.span()),
            s.credential.as_ref().map(|v| v.span()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if spans.len() > 1 {
            return Err(self.err_at(
                spans[1].clone(),
                key,
                format!("give only one of {what}_env, {what}_file and {what}_credential"),
            ));
        }
        Ok(())
    }

    /// Where this daemon probes from: `[agent] location`, else the host name.
    pub fn location(&self) -> String {
        self.agent
            .as_ref()
            .and_then(|a| a.location.clone())
            .filter(|l| !l.trim().is_empty())
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    /// Reads every secret (API keys, SMTP credentials) from its source. Errors point at the
    /// key that names the source.
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let mut resolved = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            resolved.push(self.read_secret(&t.key_sources(), &format!("targets[{i}].api_key"))?);
        }
        for (t, key) in self.targets.iter_mut().zip(resolved) {
            t.api_key = key;
        }
        if let Some(var) = &self.dashboard.auth_token_env {
            let sources = SecretSources {
                env: Some(var.clone()),
                ..SecretSources::default()
            };
            self.dashboard.auth_token = self.read_secret(&sources, "dashboard.auth_token")?;
        }
        if let Some(email) = &self.alerts.email {
            let username = self.read_secret(&email.username_sources(), "alerts.email.username")?;
            let password = self.read_secret(&email.password_sources(), "alerts.email.password")?;
            let email = self.alerts.email.as_mut().expect("checked above");
            email.username = username;
            email.password = password;
        }
        Ok(())
    }

    fn read_secret(
        &self,
        s: &SecretSources,
        key: &str,
    ) -> Result<Option<SecretString>, ConfigError> {
        let value = if let Some(var) = &s.env {
            let name = var.get_ref();
            match std::env::var(name) {
                Ok(v) => Some((
                    v,
                    var.span(),
                    format!("{key}_env"),
                    format!("environment variable {name}"),
                )),
                Err(std::env::VarError::NotPresent) => {
                    return Err(self.err_at(
                        var.span(),
                        format!("{key}_env"),
                        format!("environment variable {name} is not set"),
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(self.err_at(
                        var.span(),
                        format!("{key}_env"),
                        format!("environment variable {name} is not valid UTF-8"),
                    ));
                }
            }
        } else if let Some(file) = &s.file {
            let path = file.get_ref();
            let v = std::fs::read_to_string(path).map_err(|e| {
                self.err_at(
                    file.span(),
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some((
                v,
                file.span(),
                format!("{key}_file"),
                format!("file {}", path.display()),
            ))
        } else if let Some(cred) = &s.credential {
            let name = cred.get_ref();
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                self.err_at(cred.span(), format!("{key}_credential"), "CREDENTIALS_DIRECTORY is not set: credentials are given by systemd's LoadCredential=")
            })?;
            if name.contains('/') || name.is_empty() {
                return Err(self.err_at(
                    cred.span(),
                    format!("{key}_credential"),
                    format!("invalid credential name {name:?}"),
                ));
            }
            let path = Path::new(&dir).join(name);
            let v = std::fs::read_to_string(&path).map_err(|e| {
                self.err_at(
                    cred.span(),
                    format!("{key}_credential"),
                    format!("cannot read credential {}: {e}", path.display()),
                )
            })?;
            Some((
                v,
                cred.span(),
                format!("{key}_credential"),
                format!("credential {name}"),
            ))
        } else {
            None
        };
        match value {
            None => Ok(None),
            Some((v, span, k, from)) => {
                let v = v.trim();
                if v.is_empty() {
                    Err(self.err_at(span, k, format!("{from} is empty")))
                } else if v.chars().any(|c| c.is_control() || c == ' ') {
                    Err(self.err_at(
                        span,
                        k,
                        format!("{from} contains spaces or control characters"),
                    ))
                } else {
                    Ok(Some(SecretString::from(v.to_string())))
                }
            }
        }
    }

    /// Every configured secret, for masking text that might echo one.
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out: Vec<SecretString> = self
            .targets
            .iter()
            .filter_map(|t| t.api_key.clone())
            .collect();
        if let Some(e) = &self.alerts.email {
            out.extend(e.password.clone());
        }
        out.extend(self.dashboard.auth_token.clone());
        out
    }

    /// Warnings that do not stop the daemon (e.g. probing api.openai.com more than every 10 s).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.targets {
            if t.base_url.host_str() == Some("api.openai.com") {
                for p in &t.probes {
                    if p.interval() < Duration::from_secs(10) {
                        out.push(format!(
                            "target {}: {} probe every {} is faster than 10s against api.openai.com",
                            t.name(),
                            p.kind(),
                            humantime::format_duration(p.interval())
                        ));
                    }
                }
            }
        }
        out
    }
}

impl Email {
    fn username_sources(&self) -> SecretSources {
        SecretSources {
            env: self.username_env.clone(),
            file: self.username_file.clone(),
            credential: self.username_credential.clone(),
        }
    }
    fn password_sources(&self) -> SecretSources {
        SecretSources {
            env: self.password_env.clone(),
            file: self.password_file.clone(),
            credential: self.password_credential.clone(),
        }
    }
}

fn looks_like_mailbox(s: &str) -> bool {
    let addr = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b && b == s.trim_end().len() - 1 => &s[a + 1..b],
        (None, None) => s.trim(),
        _ => return false,
    };
    match addr.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !addr.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_string()
}

/// Exposes a secret for use in a request header. Kept here so that every use is greppable.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
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
    fn mailbox_shapes() {
        assert!(looks_like_mailbox("openai-watch <w@example.com>"));
        assert!(looks_like_mailbox("oncall@example.com"));
        assert!(!looks_like_mailbox("oncall"));
        assert!(!looks_like_mailbox("x <y@z"));
    }
}
