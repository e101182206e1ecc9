//! The email channel: SMTP through lettre (rustls), a text and an HTML part, threading headers.

use super::{Delivery, SendError};
use crate::config::{self, Email, SmtpTls};
use crate::notify::message::Alert;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP exchange may take before it counts as a (temporary) failure.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailChannel {
    pub fn new(cfg: &Email) -> anyhow::Result<EmailChannel> {
        crate::tls::install_crypto_provider();
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("alerts.email.from: {e}"))?;
        let to = cfg
            .to
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| anyhow::anyhow!("alerts.email.to {a:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls_parameters = || -> anyhow::Result<TlsParameters> {
            let mut builder = TlsParameters::builder(cfg.smtp_host.clone());
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("alerts.email.ca_file {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
            }
            Ok(builder.build_rustls()?)
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.clone())
                .port(cfg.port())
                .timeout(Some(SMTP_TIMEOUT));
        builder = match cfg.tls {
            SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters()?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(
                config::expose(user).to_string(),
                config::expose(pass).to_string(),
            ));
        }
        Ok(EmailChannel {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// Sends the alert; returns the Message-ID it went out with.
    ///
    /// Threading: every message has an id of its own, unique per installation. The first
    /// message about an incident (alone or grouped) is the root of its thread; every later one
    /// replies to that root, and lists, for each incident it is about, both the root and a
    /// stable per-incident anchor, so that clients that thread by `References` alone agree.
    pub async fn send(&self, alert: &Alert, delivery: &Delivery) -> Result<String, SendError> {
        let domain = self.from.email.domain().to_string();
        let install = &delivery.installation;
        let own = format!(
            "<alert-{}-{}.{install}@{domain}>",
            alert.kind.as_str(),
            delivery.first_event_id
        );
        let mut references: Vec<String> = Vec::new();
        for (i, root) in alert.incidents.iter().zip(&delivery.thread_roots) {
            references.extend(root.iter().cloned());
            references.push(format!("<incident-{}.{install}@{domain}>", i.id));
        }
        references.dedup();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject())
            .message_id(Some(own.clone()));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        if let Some(root) = delivery.thread_roots.iter().flatten().next() {
            builder = builder.in_reply_to(root.clone());
        }
        if !references.is_empty() {
            builder = builder.references(references.join(" "));
        }
        let body = match alert.html() {
            Some(html) => builder.multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(alert.text()))
                    .singlepart(SinglePart::html(html)),
            ),
            None => builder.singlepart(SinglePart::plain(alert.text())),
        };
        let message =
            body.map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(own),
            Err(e) => {
                let text = crate::error_chain::error_chain(&e);
                if e.is_permanent() {
                    Err(SendError::permanent(text))
                } else {
                    Err(SendError::temporary(text))
                }
            }
        }
    }
}
