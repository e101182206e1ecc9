//! The webhook channel: a JSON POST in the documented `json` format or as a Slack message.

use super::SendError;
use crate::config::{Webhook, WebhookFormat};
use crate::notify::message::Alert;
use std::time::Duration;

pub struct WebhookChannel {
    client: reqwest::Client,
    url: reqwest::Url,
    format: WebhookFormat,
}

impl WebhookChannel {
    pub fn new(cfg: &Webhook) -> anyhow::Result<WebhookChannel> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(WebhookChannel {
            client,
            url: cfg.url.clone(),
            format: cfg.format,
        })
    }

    pub async fn send(&self, alert: &Alert) -> Result<(), SendError> {
        let body = match self.format {
            WebhookFormat::Json => alert.json(),
            WebhookFormat::Slack => alert.slack(),
        };
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                SendError::temporary(format!(
                    "webhook request failed: {}",
                    crate::error_chain::error_chain(&e.without_url())
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let message = format!("webhook answered {status}: {}", text.trim());
        // 4xx means the request itself is refused: retrying will not help (but 408/429 will).
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(SendError::permanent(message))
        } else {
            Err(SendError::temporary(message))
        }
    }
}
