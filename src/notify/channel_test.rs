//! `alert test`: a test message through each channel, with an incident that is not one.

use super::*;

/// What one channel did with a test message.
#[derive(Debug)]
pub struct TestOutcome {
    pub channel: String,
    pub result: Result<(), SendError>,
}

/// `alert test`: sends a test message through each channel (or the one named).
pub async fn test(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<TestOutcome>> {
    let channels = channels(config)?;
    let renderer = Renderer::new(config);
    let secrets = config.secrets();
    let now = now_ms();
    let row = IncidentRow {
        id: 0,
        target: "test".into(),
        category: Category::Auth,
        location: config.location.clone(),
        probe: ProbeKind::Models,
        first_error_id: "invalid_api_key".into(),
        last_error_id: "invalid_api_key".into(),
        http_status: Some(401),
        opened_at_ms: now,
        last_seen_at_ms: now,
        resolved_at_ms: None,
        probe_count: 1,
        last_message: Some(
            "This is a test notification from openai-watch; nothing is wrong.".into(),
        ),
        request_id: None,
        acked_at_ms: None,
        acked_by: None,
        ack_comment: None,
        locations: Vec::new(),
        healthy_locations: Vec::new(),
        fleet: false,
    };
    let alert = renderer.alert(MessageKind::Test, Category::Auth, &[row]);
    let mut out = Vec::new();
    for (name, channel) in &channels {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let delivery = Delivery {
            first_event_id: 0,
            // Test messages are in no thread; a random id keeps their Message-IDs unique.
            installation: format!("test{:016x}", fastrand::u64(..)),
            thread_roots: vec![None],
        };
        let result = channel.send(&alert, &delivery).await.map(|_| ());
        out.push(TestOutcome {
            channel: name.clone(),
            result: result.map_err(|e| SendError {
                message: mask(&secrets, &e.message),
                ..e
            }),
        });
    }
    Ok(out)
}
