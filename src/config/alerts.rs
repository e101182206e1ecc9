//! `[alerts]`, `[[alerts.email]]`, `[[alerts.webhook]]` and `[[alerts.routes]]`: validation,
//! the resolved channels and the routing table.

use super::error::{ConfigError, Source};
use super::raw::{RawAlerts, RawEmail, RawRoute, SmtpTls, WebhookFormat};
use super::values::TargetName;
use crate::domain::Category;
use secrecy::SecretString;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// What notifies, when, and through which channels.
#[derive(Debug, Clone)]
pub struct Alerts {
    pub categories: Vec<Category>,
    /// Zero turns reminders off.
    pub reminder_interval: Duration,
    pub send_resolved: bool,
    pub group_wait: Duration,
    pub email: Vec<Email>,
    pub webhook: Vec<Webhook>,
    /// Empty: every channel gets the categories it is told about (version 1).
    pub routes: Vec<Route>,
}

/// A route: events matching it go to its channels.
#[derive(Debug, Clone)]
pub struct Route {
    /// Globs; empty: every target.
    pub targets: Vec<String>,
    pub categories: Option<Vec<Category>>,
    /// Globs; empty: every location.
    pub locations: Vec<String>,
    pub channels: Vec<String>,
    pub continue_: bool,
}

impl Route {
    pub fn matches(&self, target: &str, category: Category, location: &str) -> bool {
        use crate::silence::glob_matches;
        (self.targets.is_empty() || self.targets.iter().any(|t| glob_matches(t, target)))
            && self
                .categories
                .as_ref()
                .is_none_or(|c| c.contains(&category))
            && (self.locations.is_empty()
                || self.locations.iter().any(|l| glob_matches(l, location)))
    }

    /// `targets prod-*, categories auth, any location`, for `config check`.
    pub fn describe(&self) -> String {
        let list = |v: &[String], one: &str, many: &str| {
            if v.is_empty() {
                format!("any {one}")
            } else {
                format!("{many} {}", v.join(", "))
            }
        };
        let categories = self.categories.as_ref().map_or_else(
            || "any category".to_string(),
            |c| {
                format!(
                    "categories {}",
                    c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                )
            },
        );
        format!(
            "{}; {categories}; {}",
            list(&self.targets, "target", "targets"),
            list(&self.locations, "location", "locations")
        )
    }
}

/// An email channel, its credentials read.
#[derive(Debug, Clone)]
pub struct Email {
    /// As configured, else `email` for the first, `email-N` after.
    pub name: String,
    pub smtp_host: String,
    pub smtp_port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<SecretString>,
    pub password: Option<SecretString>,
    pub from: String,
    pub to: Vec<String>,
    /// Extra CA certificate (PEM) to trust for the SMTP server, e.g. a private relay's.
    pub ca_file: Option<PathBuf>,
    /// Overrides `[alerts] categories` for this channel.
    pub categories: Option<Vec<Category>>,
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

/// A webhook channel.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// As configured, else `webhook` for the first, `webhook-N` after.
    pub name: String,
    pub url: reqwest::Url,
    pub format: WebhookFormat,
    /// Overrides `[alerts] categories` for this channel.
    pub categories: Option<Vec<Category>>,
}

impl Alerts {
    /// Channel names, in order: the emails', then the webhooks'.
    pub fn channel_names(&self) -> Vec<String> {
        self.email
            .iter()
            .map(|e| e.name.clone())
            .chain(self.webhook.iter().map(|w| w.name.clone()))
            .collect()
    }
}

/// Checks the channels: one source per secret, well-formed addresses, unique channel names.
pub(super) fn validate(
    src: &Source,
    alerts: &RawAlerts,
    targets: &[&str],
) -> Result<(), ConfigError> {
    for email in &alerts.email.0 {
        validate_email(src, email)?;
    }
    let mut channels = HashSet::new();
    let names = alerts
        .email
        .0
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                format!("alerts.email[{i}].name"),
                e.channel_name(i),
                &e.name,
            )
        })
        .chain(alerts.webhook.iter().enumerate().map(|(i, w)| {
            (
                format!("alerts.webhook[{i}].name"),
                w.channel_name(i),
                &w.name,
            )
        }));
    for (key, name, spanned) in names {
        let span = spanned.as_ref().map_or(0..0, |n| n.span());
        if TargetName::parse(&name).is_err() || !channels.insert(name.clone()) {
            return Err(src.err_at(
                span,
                key,
                format!("invalid or duplicate channel name {name:?}"),
            ));
        }
    }
    for (i, route) in alerts.routes.iter().enumerate() {
        validate_route(src, i, route, &channels, targets)?;
    }
    Ok(())
}

/// A route must name known channels, and its exact target names must be configured: a
/// route that can never match is a mistake, not a policy.
fn validate_route(
    src: &Source,
    i: usize,
    route: &RawRoute,
    channels: &HashSet<String>,
    targets: &[&str],
) -> Result<(), ConfigError> {
    let key = format!("alerts.routes[{i}].channels");
    if route.channels.get_ref().is_empty() {
        return Err(src.err_at(route.channels.span(), key, "name at least one channel"));
    }
    if let Some(bad) = route
        .channels
        .get_ref()
        .iter()
        .find(|c| !channels.contains(*c))
    {
        let mut known: Vec<&str> = channels.iter().map(String::as_str).collect();
        known.sort_unstable();
        return Err(src.err_at(
            route.channels.span(),
            key,
            format!(
                "unknown channel {bad:?}; the channels are: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    if let Some(t) = &route.targets {
        check_target_names(src, &format!("alerts.routes[{i}].targets"), t, targets)?;
    }
    Ok(())
}

/// Names without `*` or `?` must be configured targets.
pub(super) fn check_target_names(
    src: &Source,
    key: &str,
    names: &toml::Spanned<Vec<String>>,
    targets: &[&str],
) -> Result<(), ConfigError> {
    if let Some(bad) = names
        .get_ref()
        .iter()
        .find(|n| !n.contains(['*', '?']) && !targets.contains(&n.as_str()))
    {
        return Err(src.err_at(
            names.span(),
            key,
            format!(
                "no target is named {bad:?} (use a glob such as \"{bad}*\" for targets to come)"
            ),
        ));
    }
    Ok(())
}

fn validate_email(src: &Source, email: &RawEmail) -> Result<(), ConfigError> {
    // Key paths keep the version-1 spelling; a named table is found by its name.
    email
        .username_sources()
        .check_one(src, "username", "alerts.email.username")?;
    email
        .password_sources()
        .check_one(src, "password", "alerts.email.password")?;
    if *email.tls.get_ref() == SmtpTls::None
        && email.has_credentials()
        && !is_loopback(&email.smtp_host)
        && !email.allow_plaintext_auth
    {
        return Err(src.err_at(
            email.tls.span(),
            "alerts.email.tls",
            format!(
                "tls = \"none\" would send the SMTP user name and password in clear text to {}; \
                 use \"starttls\" or \"tls\", or set allow_plaintext_auth = true",
                email.smtp_host
            ),
        ));
    }
    if !looks_like_mailbox(email.from.get_ref()) {
        return Err(src.err_at(
            email.from.span(),
            "alerts.email.from",
            format!(
                "invalid address {:?}: expected \"name <user@host>\" or \"user@host\"",
                email.from.get_ref()
            ),
        ));
    }
    if email.to.get_ref().is_empty() {
        return Err(src.err_at(
            email.to.span(),
            "alerts.email.to",
            "no recipients: give at least one address",
        ));
    }
    if let Some(bad) = email.to.get_ref().iter().find(|a| !looks_like_mailbox(a)) {
        return Err(src.err_at(
            email.to.span(),
            "alerts.email.to",
            format!("invalid address {bad:?}"),
        ));
    }
    Ok(())
}

/// The resolved alerts: SMTP credentials read, webhook names given.
pub(super) fn resolve(src: &Source, alerts: &RawAlerts) -> Result<Alerts, ConfigError> {
    let email = alerts
        .email
        .0
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Email {
                name: e.channel_name(i),
                smtp_host: e.smtp_host.clone(),
                smtp_port: e.smtp_port,
                tls: *e.tls.get_ref(),
                username: e.username_sources().read(src, "alerts.email.username")?,
                password: e.password_sources().read(src, "alerts.email.password")?,
                from: e.from.get_ref().clone(),
                to: e.to.get_ref().clone(),
                ca_file: e.ca_file.clone(),
                categories: e.categories.clone(),
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(Alerts {
        categories: alerts.categories.clone(),
        reminder_interval: alerts.reminder_interval.0,
        send_resolved: alerts.send_resolved,
        group_wait: alerts.group_wait.0,
        email,
        webhook: alerts
            .webhook
            .iter()
            .enumerate()
            .map(|(i, w)| Webhook {
                name: w.channel_name(i),
                url: w.url.clone(),
                format: w.format,
                categories: w.categories.clone(),
            })
            .collect(),
        routes: alerts
            .routes
            .iter()
            .map(|r| Route {
                targets: r
                    .targets
                    .as_ref()
                    .map(|t| t.get_ref().clone())
                    .unwrap_or_default(),
                categories: r.categories.clone(),
                locations: r.locations.clone(),
                channels: r.channels.get_ref().clone(),
                continue_: r.continue_,
            })
            .collect(),
    })
}

/// `localhost` or a loopback address: traffic that never leaves the machine.
pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_shapes() {
        assert!(looks_like_mailbox("openai-watch <w@example.com>"));
        assert!(looks_like_mailbox("oncall@example.com"));
        assert!(!looks_like_mailbox("oncall"));
        assert!(!looks_like_mailbox("x <y@z"));
    }
}
