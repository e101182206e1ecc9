//! The email channel: SMTP through lettre (rustls), a text and an HTML part, threading headers.

use super::message::MessageKind;
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

    pub async fn send(&self, alert: &Alert, delivery: &Delivery) -> Result<(), SendError> {
        let domain = self.from.email.domain().to_string();
        let roots: Vec<String> = alert
            .incidents
            .iter()
            .map(|i| format!("<incident-{}@{domain}>", i.id))
            .collect();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(alert.subject());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        // The first message about a lone incident is the thread's root; later ones reply to it.
        let single_firing = alert.kind == MessageKind::Firing && alert.incidents.len() == 1;
        builder = if single_firing {
            builder.message_id(Some(roots[0].clone()))
        } else {
            let own = format!(
                "<alert-{}-{}@{domain}>",
                alert.kind.as_str(),
                delivery.first_event_id
            );
            let mut b = builder.message_id(Some(own));
            if !roots.is_empty() {
                b = b.in_reply_to(roots[0].clone()).references(roots.join(" "));
            }
            b
        };
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
            Ok(_) => Ok(()),
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
