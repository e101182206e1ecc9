//! `[[targets]]` and their probes: validation of the raw tables and the resolved `Target`.

use super::error::{ConfigError, Source};
use super::raw::{RawProbe, RawTarget, TokenLimitField};
use super::values::{TargetName, check_within};
use crate::domain::ProbeKind;
use secrecy::SecretString;
use std::collections::HashSet;
use std::time::Duration;

/// The model a chat probe asks for when none is configured.
pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";

/// A target to probe, its key read.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: TargetName,
    pub base_url: reqwest::Url,
    /// `None` when the target is configured without a key (it is probed without one).
    pub api_key: Option<SecretString>,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub timeout: Duration,
    pub probes: Vec<Probe>,
}

/// One probe of a target.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kind: ProbeKind,
    pub interval: Duration,
    /// The model asked for (chat probes).
    pub model: String,
    /// How the one-token limit is named in the request (chat probes).
    pub max_tokens_field: TokenLimitField,
    /// An absolute latency bound for `slow`, instead of the factor over the usual latency.
    pub slow_after: Option<Duration>,
}

impl Target {
    pub fn name(&self) -> &TargetName {
        &self.name
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// `base_url` with the segments of `path` appended to its path (`…/v1` or `…/v1/`, and
    /// `chat/completions`: `…/v1/chat/completions`). Built from the URL parsed when the
    /// config was read: parsing it again for every probe was a twentieth of a probe's work.
    pub fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.base_url.clone();
        // An http(s) URL with a host (what the config accepts) always has path segments.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path.split('/'));
        }
        url
    }
}

impl Probe {
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }
    pub fn interval(&self) -> Duration {
        self.interval
    }
    pub fn model(&self) -> &str {
        &self.model
    }
}

/// Checks every target: at least one, unique names, a sane timeout, one key source, at least
/// one probe, each kind once, intervals of 1 s or more, `model` on chat probes only.
pub(super) fn validate(src: &Source, targets: &[RawTarget]) -> Result<(), ConfigError> {
    if targets.is_empty() {
        return Err(src.err_at_end(
            "targets",
            "no [[targets]] configured: add at least one target to probe",
        ));
    }
    let mut names = HashSet::new();
    for (ti, t) in targets.iter().enumerate() {
        let at = |k: &str| format!("targets[{ti}].{k}");
        if !names.insert(t.name.get_ref()) {
            return Err(src.err_at(
                t.name.span(),
                at("name"),
                format!("duplicate target name {:?}", t.name.get_ref().as_str()),
            ));
        }
        let timeout = t.timeout.get_ref().0;
        if timeout.is_zero() || timeout > Duration::from_secs(600) {
            return Err(src.err_at(
                t.timeout.span(),
                at("timeout"),
                "timeout must be between 1ms and 10m",
            ));
        }
        t.key_sources().check_one(src, "api_key", &at("api_key"))?;
        for (key, value) in [("organization", &t.organization), ("project", &t.project)] {
            if let Some(v) = value {
                check_header_value(v.get_ref()).map_err(|e| src.err_at(v.span(), at(key), e))?;
            }
        }
        if t.probes.is_empty() {
            return Err(src.err_at(
                t.name.span(),
                at("probes"),
                "target has no [[targets.probes]]: add a `models`, `chat`, `responses`, `chat_stream` or `embeddings` probe",
            ));
        }
        let mut kinds = HashSet::new();
        for (pi, p) in t.probes.iter().enumerate() {
            validate_probe(
                src,
                t,
                p,
                &mut kinds,
                &format!("targets[{ti}].probes[{pi}]"),
            )?;
        }
    }
    Ok(())
}

fn validate_probe(
    src: &Source,
    t: &RawTarget,
    p: &RawProbe,
    kinds: &mut HashSet<ProbeKind>,
    at: &str,
) -> Result<(), ConfigError> {
    let kind = *p.kind.get_ref();
    if !kinds.insert(kind) {
        return Err(src.err_at(
            p.kind.span(),
            format!("{at}.kind"),
            format!(
                "duplicate probe kind {:?} in target {:?}",
                kind.as_str(),
                t.name.get_ref().as_str()
            ),
        ));
    }
    check_within(
        p.interval.get_ref().0,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    )
    .map_err(|e| src.err_at(p.interval.span(), format!("{at}.interval"), e))?;
    if let Some(field) = &p.max_tokens_field
        && !kind.is_chat()
    {
        return Err(src.err_at(
            field.span(),
            format!("{at}.max_tokens_field"),
            "`max_tokens_field` applies to chat and chat_stream probes only",
        ));
    }
    if let Some(model) = &p.model {
        if !kind.takes_model() {
            return Err(src.err_at(
                model.span(),
                format!("{at}.model"),
                "`model` does not apply to models probes",
            ));
        }
        if model.get_ref().trim().is_empty() {
            return Err(src.err_at(
                model.span(),
                format!("{at}.model"),
                "model must not be empty",
            ));
        }
    }
    Ok(())
}

/// A value sent as an HTTP header (`OpenAI-Organization`, `OpenAI-Project`): visible ASCII
/// only. A line break or another control character would make every request invalid, and
/// every probe a false outage.
fn check_header_value(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "{c:?} cannot be sent in an HTTP header: use letters, digits and punctuation only"
        ));
    }
    Ok(())
}

/// The model a probe asks for when none is configured: the cheapest that serves it.
pub fn default_model(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Embeddings => crate::probe::request::DEFAULT_EMBEDDING_MODEL,
        ProbeKind::Models => "",
        ProbeKind::Chat | ProbeKind::ChatStream | ProbeKind::Responses => DEFAULT_CHAT_MODEL,
    }
}

/// The resolved target: its key read from its source.
pub(super) fn resolve(src: &Source, index: usize, t: &RawTarget) -> Result<Target, ConfigError> {
    Ok(Target {
        name: t.name.get_ref().clone(),
        base_url: t.base_url.clone(),
        api_key: t
            .key_sources()
            .read(src, &format!("targets[{index}].api_key"))?,
        organization: t.organization.as_ref().map(|o| o.get_ref().clone()),
        project: t.project.as_ref().map(|p| p.get_ref().clone()),
        timeout: t.timeout.get_ref().0,
        probes: t
            .probes
            .iter()
            .map(|p| Probe {
                kind: *p.kind.get_ref(),
                interval: p.interval.get_ref().0,
                model: p.model.as_ref().map_or_else(
                    || default_model(*p.kind.get_ref()).to_string(),
                    |m| m.get_ref().clone(),
                ),
                max_tokens_field: p
                    .max_tokens_field
                    .as_ref()
                    .map(|f| *f.get_ref())
                    .unwrap_or_default(),
                slow_after: p.slow_after.map(|d| d.0),
            })
            .collect(),
    })
}
