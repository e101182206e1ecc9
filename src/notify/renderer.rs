//! Turning incident rows into alerts, and masking what channels answer.

use super::message::{Alert, IncidentView, MessageKind};
use crate::config::Config;
use crate::domain::Category;
use crate::redact;
use crate::store::IncidentRow;
use std::collections::HashMap;

/// Turns incident rows into alerts: knows the targets' base URLs and the dashboard's address.
pub struct Renderer {
    base_urls: HashMap<String, String>,
    public_url: String,
    pub(super) location: String,
}

impl Renderer {
    pub fn new(config: &Config) -> Renderer {
        Renderer {
            base_urls: config
                .targets
                .iter()
                .map(|t| (t.name().to_string(), t.base_url.to_string()))
                .collect(),
            public_url: config.dashboard.public_url(),
            location: config.location.clone(),
        }
    }

    /// Builds the message for a group of incidents.
    pub fn alert(&self, kind: MessageKind, category: Category, rows: &[IncidentRow]) -> Alert {
        Alert {
            kind,
            category,
            incidents: rows
                .iter()
                .map(|r| {
                    IncidentView::new(
                        r,
                        self.base_urls.get(&r.target).map_or("", String::as_str),
                        &self.public_url,
                    )
                })
                .collect(),
            dashboard_url: self.public_url.clone(),
            location: self.location.clone(),
            upstream: None,
        }
    }
}

pub(super) fn mask(secrets: &[secrecy::SecretString], text: &str) -> String {
    let secrets: Vec<&str> = secrets.iter().map(crate::config::expose).collect();
    redact::clean_message(text, &secrets)
}
