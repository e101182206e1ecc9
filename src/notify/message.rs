//! What an alert says: subject, text and HTML parts, the webhook JSON payload and the Slack
//! text. One message may cover several incidents (grouping), one per affected target.

use crate::catalog;
use crate::domain::{Category, EventKind, ProbeKind};
use crate::store::IncidentRow;
use crate::timefmt::rfc3339;
use askama::Template;
use serde::Serialize;

/// One incident as an alert shows it. Every string here is already masked.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub target: String,
    pub base_url: String,
    pub probe: ProbeKind,
    pub category: Category,
    pub error_id: String,
    pub title: String,
    pub http_status: Option<i64>,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved: Option<String>,
    /// "acknowledged by alice at 2026-…: fixing billing", once someone has.
    pub acknowledged: Option<String>,
    pub probe_count: i64,
    pub message: Option<String>,
    pub request_id: Option<String>,
    /// Where it is seen and where it is healthy, for a fleet: "unsupported_region from
    /// fra-1 only; iad-1 healthy". None on one machine.
    #[serde(rename = "where")]
    pub where_seen: Option<String>,
    pub locations: Vec<String>,
    pub cause: String,
    pub resolution: String,
    pub docs_url: String,
    pub dashboard_url: String,
}

/// "unsupported_region from fra-1 only; iad-1 healthy", "… from fra-1, iad-1 (every
/// location)", or for a resolved incident "was seen from fra-1": only when more than one
/// location is in the picture.
fn where_seen(row: &IncidentRow) -> Option<String> {
    let alone = row.locations.len() == 1 && row.healthy_locations.is_empty();
    if row.locations.is_empty() || (alone && !row.fleet) {
        return None;
    }
    let seen = row.locations.join(", ");
    Some(if row.resolved_at_ms.is_some() {
        format!("{} was seen from {seen}", row.last_error_id)
    } else if alone {
        format!(
            "{} from {seen}; no other location has probed {} yet",
            row.last_error_id, row.target
        )
    } else if row.healthy_locations.is_empty() {
        format!("{} from {seen} (every location)", row.last_error_id)
    } else {
        format!(
            "{} from {seen} only; {} healthy",
            row.last_error_id,
            row.healthy_locations.join(", ")
        )
    })
}

impl IncidentView {
    pub fn new(row: &IncidentRow, base_url: &str, public_url: &str) -> IncidentView {
        let entry = catalog::entry(&row.last_error_id);
        IncidentView {
            id: row.id,
            target: row.target.clone(),
            base_url: base_url.to_string(),
            probe: row.probe,
            category: row.category,
            error_id: row.last_error_id.clone(),
            title: entry.map_or_else(|| row.last_error_id.clone(), |e| e.title.to_string()),
            http_status: row.http_status,
            first_seen: rfc3339(row.opened_at_ms),
            last_seen: rfc3339(row.last_seen_at_ms),
            resolved: row.resolved_at_ms.map(rfc3339),
            acknowledged: acknowledgement(row),
            probe_count: row.probe_count,
            message: row.last_message.clone(),
            request_id: row.request_id.clone(),
            where_seen: where_seen(row),
            locations: row.locations.clone(),
            cause: entry.map_or("", |e| e.cause).to_string(),
            resolution: entry.map_or("", |e| e.resolution).to_string(),
            docs_url: catalog::DOCS_URL.to_string(),
            dashboard_url: format!("{}/incidents/{}", public_url.trim_end_matches('/'), row.id),
        }
    }

    /// `429 insufficient_quota`, or just the id when there was no HTTP answer.
    fn status_and_id(&self) -> String {
        match self.http_status {
            Some(s) => format!("{s} {}", self.error_id),
            None => self.error_id.clone(),
        }
    }
}

/// "acknowledged by alice at 2026-…: fixing billing", if the incident was acknowledged.
pub fn acknowledgement(row: &IncidentRow) -> Option<String> {
    let at = row.acked_at_ms?;
    let by = row.acked_by.as_deref().unwrap_or("someone");
    Some(match row.ack_comment.as_deref().filter(|c| !c.is_empty()) {
        Some(comment) => format!("acknowledged by {by} at {}: {comment}", rfc3339(at)),
        None => format!("acknowledged by {by} at {}", rfc3339(at)),
    })
}

/// What a message is about: an outbox event, or a test of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Firing,
    Reminder,
    Resolved,
    Test,
}

impl From<EventKind> for MessageKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Firing => MessageKind::Firing,
            EventKind::Reminder => MessageKind::Reminder,
            EventKind::Resolved => MessageKind::Resolved,
        }
    }
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Firing => "firing",
            MessageKind::Reminder => "reminder",
            MessageKind::Resolved => "resolved",
            MessageKind::Test => "test",
        }
    }
}

/// An alert: one event kind and category, one or more incidents.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `firing`, `reminder`, `resolved`, or `test`.
    pub kind: MessageKind,
    pub category: Category,
    pub incidents: Vec<IncidentView>,
    /// Where the dashboard is, for the footer.
    pub dashboard_url: String,
    /// The host this daemon runs on (for Message-ID), and where it probes from.
    pub location: String,
    /// What OpenAI's status page says ("OpenAI reports: …" or that it reports nothing), for
    /// the categories where the question "them or us?" arises.
    pub upstream: Option<String>,
}

impl Alert {
    fn label(&self) -> &'static str {
        match self.kind {
            MessageKind::Firing => "FIRING",
            MessageKind::Reminder => "STILL FIRING",
            MessageKind::Resolved => "RESOLVED",
            MessageKind::Test => "TEST",
        }
    }

    /// `[openai-watch] FIRING quota: prod — exceeded current quota (429 insufficient_quota)`
    pub fn subject(&self) -> String {
        let targets: Vec<&str> = self.incidents.iter().map(|i| i.target.as_str()).collect();
        let detail = match self.incidents.first() {
            Some(first) => format!(" — {} ({})", first.title, first.status_and_id()),
            None => String::new(),
        };
        format!(
            "[openai-watch] {} {}: {}{detail}",
            self.label(),
            self.category,
            targets.join(", ")
        )
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let verb = match self.kind {
            MessageKind::Resolved => "has recovered",
            MessageKind::Test => "is a test of this alert channel",
            MessageKind::Firing | MessageKind::Reminder => "is failing",
        };
        out.push_str(&format!(
            "{} {verb}.\n",
            self.subject().trim_start_matches("[openai-watch] ")
        ));
        for i in &self.incidents {
            out.push_str(&format!("\nTarget:      {} ({})\n", i.target, i.base_url));
            out.push_str(&format!("Probe:       {}\n", i.probe));
            out.push_str(&format!("Category:    {}\n", i.category));
            if let Some(w) = &i.where_seen {
                out.push_str(&format!("Where:       {w}\n"));
            }
            out.push_str(&format!("Error:       {} — {}\n", i.error_id, i.title));
            out.push_str(&format!(
                "HTTP status: {}\n",
                i.http_status
                    .map_or_else(|| "none (no answer)".to_string(), |s| s.to_string())
            ));
            out.push_str(&format!("First seen:  {}\n", i.first_seen));
            out.push_str(&format!("Last seen:   {}\n", i.last_seen));
            if let Some(r) = &i.resolved {
                out.push_str(&format!("Resolved:    {r}\n"));
            }
            if let Some(a) = &i.acknowledged {
                out.push_str(&format!("Ack:         {a}\n"));
            }
            out.push_str(&format!("Probes:      {}\n", i.probe_count));
            out.push_str(&format!(
                "Message:     {}\n",
                i.message.as_deref().unwrap_or("-")
            ));
            out.push_str(&format!(
                "Request id:  {}\n",
                i.request_id.as_deref().unwrap_or("-")
            ));
            out.push_str(&format!("\nCause: {}\n", i.cause));
            out.push_str(&format!("Resolution: {}\n", i.resolution));
            out.push_str(&format!("Docs: {}\n", i.docs_url));
            out.push_str(&format!("Dashboard: {}\n", i.dashboard_url));
        }
        // After the facts: a long status page never pushes the target and the error away.
        if let Some(u) = &self.upstream {
            out.push_str(&format!("\n{u}\n"));
        }
        out.push_str(&format!(
            "\n-- \nopenai-watch at {} — {}\n",
            self.location, self.dashboard_url
        ));
        out
    }

    /// The HTML part; `None` if the template cannot render (the email then goes out with
    /// its text part alone rather than with hand-built HTML).
    pub fn html(&self) -> Option<String> {
        let page = AlertHtml {
            alert: self,
            subject: self.subject(),
        };
        page.render()
            .inspect_err(
                |e| tracing::error!(error = %e, "alert HTML did not render; sending text only"),
            )
            .ok()
    }

    /// The documented JSON payload of the `json` webhook format (see README).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": 1,
            "source": "openai-watch",
            "event": self.kind,
            "category": self.category,
            "subject": self.subject(),
            "location": self.location,
            "dashboard_url": self.dashboard_url,
            "upstream": self.upstream,
            "incidents": self.incidents,
        })
    }

    /// The body of a Slack incoming webhook.
    /// Slack's `text`: its markup (`<!channel>`, `<url|label>`) is interpreted, so every
    /// string that is not our own template is escaped the way Slack asks (`&`, `<`, `>`).
    pub fn slack(&self) -> serde_json::Value {
        let mut text = format!(
            "*{}*",
            slack_escape(self.subject().trim_start_matches("[openai-watch] "))
        );
        for i in &self.incidents {
            text.push_str(&format!(
                "\n• *{}* ({}): {} — {}\n  _Cause:_ {}\n  _Resolution:_ {}\n  <{}|dashboard>",
                slack_escape(&i.target),
                i.probe,
                slack_escape(&i.status_and_id()),
                slack_escape(i.message.as_deref().unwrap_or("-")),
                slack_escape(&i.cause),
                slack_escape(&i.resolution),
                slack_escape(&i.dashboard_url)
            ));
            if let Some(w) = &i.where_seen {
                text.push_str(&format!("\n  _Where:_ {}", slack_escape(w)));
            }
            if let Some(a) = &i.acknowledged {
                text.push_str(&format!("\n  _{}_", slack_escape(a)));
            }
        }
        if let Some(u) = &self.upstream {
            text.push_str(&format!("\n{}", slack_escape(u)));
        }
        serde_json::json!({ "text": text })
    }
}

/// Escapes text for Slack's message formatting: `&`, `<` and `>` become entities, so that no
/// upstream text can mention `<!channel>` or disguise a link.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertHtml<'a> {
    alert: &'a Alert,
    subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_alert_says_where_it_is_seen_and_where_it_is_healthy() {
        let a = alert();
        assert_eq!(
            a.incidents[0].where_seen.as_deref(),
            Some("insufficient_quota from fra-1 only; iad-1 healthy")
        );
        assert!(
            a.text()
                .contains("Where:       insufficient_quota from fra-1 only; iad-1 healthy"),
            "{}",
            a.text()
        );
        assert!(a.html().unwrap().contains("from fra-1 only; iad-1 healthy"));
    }

    fn alert() -> Alert {
        let row = IncidentRow {
            id: 7,
            target: "prod".into(),
            category: Category::Quota,
            location: "fra-1".into(),
            probe: ProbeKind::Chat,
            first_error_id: "insufficient_quota".into(),
            last_error_id: "insufficient_quota".into(),
            http_status: Some(429),
            opened_at_ms: 1_700_000_000_000,
            last_seen_at_ms: 1_700_000_060_000,
            resolved_at_ms: None,
            probe_count: 2,
            last_message: Some("<script>alert(1)</script> You exceeded your current quota".into()),
            request_id: Some("req_1".into()),
            acked_at_ms: Some(1_700_000_030_000),
            acked_by: Some("alice".into()),
            ack_comment: Some("fixing <billing>".into()),
            locations: vec!["fra-1".into()],
            healthy_locations: vec!["iad-1".into()],
            fleet: true,
        };
        Alert {
            kind: MessageKind::Firing,
            category: Category::Quota,
            incidents: vec![IncidentView::new(
                &row,
                "https://api.openai.com/v1",
                "http://127.0.0.1:8080",
            )],
            dashboard_url: "http://127.0.0.1:8080".into(),
            location: "fra-1".into(),
            upstream: None,
        }
    }

    #[test]
    fn the_subject_follows_the_documented_shape() {
        assert_eq!(
            alert().subject(),
            "[openai-watch] FIRING quota: prod — exceeded current quota (429 insufficient_quota)"
        );
    }

    #[test]
    fn the_html_part_escapes_upstream_text() {
        let html = alert().html().unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(
            html.contains("Buy additional credits"),
            "the documented resolution"
        );
    }

    #[test]
    fn the_slack_text_names_the_target_error_and_resolution() {
        let slack = alert().slack();
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("*FIRING quota: prod"), "{text}");
        assert!(text.contains("429 insufficient_quota"));
        assert!(text.contains("_Resolution:_ Buy additional credits"));
        assert!(text.contains("<http://127.0.0.1:8080/incidents/7|dashboard>"));
        assert_eq!(slack.as_object().unwrap().len(), 1, "only `text`");
    }

    #[test]
    fn the_text_part_carries_cause_resolution_and_links() {
        let text = alert().text();
        for needle in [
            "Target:      prod (https://api.openai.com/v1)",
            "Cause: ",
            "Resolution: Buy additional credits",
            "http://127.0.0.1:8080/incidents/7",
            catalog::DOCS_URL,
            "2023-11-14T22:13:20Z",
            "req_1",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
