//! `[alerts]`, `[alerts.email]` and `[[alerts.webhook]]`: validation and the resolved channels.

use super::error::{ConfigError, Source};
use super::raw::{RawAlerts, RawEmail, SmtpTls, WebhookFormat};
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
    pub email: Option<Email>,
    pub webhook: Vec<Webhook>,
}

/// The email channel, its credentials read.
#[derive(Debug, Clone)]
pub struct Email {
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
    /// The channel name of the email channel.
    pub const NAME: &'static str = "email";

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
    /// Channel names, in order: `email`, then each webhook's.
    pub fn channel_names(&self) -> Vec<String> {
        self.email
            .iter()
            .map(|_| Email::NAME.to_string())
            .chain(self.webhook.iter().map(|w| w.name.clone()))
            .collect()
    }
}

/// Checks the channels: one source per secret, well-formed addresses, unique channel names.
pub(super) fn validate(src: &Source, alerts: &RawAlerts) -> Result<(), ConfigError> {
    if let Some(email) = &alerts.email {
        validate_email(src, email)?;
    }
    let mut channels = HashSet::new();
    for (i, w) in alerts.webhook.iter().enumerate() {
        let name = w.channel_name(i);
        let span = w.name.as_ref().map_or(0..0, |n| n.span());
        if name == Email::NAME
            || TargetName::parse(&name).is_err()
            || !channels.insert(name.clone())
        {
            return Err(src.err_at(
                span,
                format!("alerts.webhook[{i}].name"),
                format!("invalid or duplicate channel name {name:?}"),
            ));
        }
    }
    Ok(())
}

fn validate_email(src: &Source, email: &RawEmail) -> Result<(), ConfigError> {
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
    let email = match &alerts.email {
        None => None,
        Some(e) => Some(Email {
            smtp_host: e.smtp_host.clone(),
            smtp_port: e.smtp_port,
            tls: *e.tls.get_ref(),
            username: e.username_sources().read(src, "alerts.email.username")?,
            password: e.password_sources().read(src, "alerts.email.password")?,
            from: e.from.get_ref().clone(),
            to: e.to.get_ref().clone(),
            ca_file: e.ca_file.clone(),
            categories: e.categories.clone(),
        }),
    };
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
