//! Reading a streamed chat completion (server-sent events, parsed by `eventsource-stream`):
//! when the first token came, whether the stream finished, or what error it carried.

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use std::time::Instant;

/// What a stream said.
#[derive(Debug)]
pub enum StreamEnd {
    /// `data: [DONE]` arrived (or the last chunk had a `finish_reason`).
    Done,
    /// An `error` object came inside the stream: its JSON, to classify like a body.
    Error(Vec<u8>),
    /// The stream ended, or broke, before it finished.
    Cut { events: usize, reason: String },
}

/// The result of reading a stream.
#[derive(Debug)]
pub struct StreamRead {
    pub end: StreamEnd,
    /// Milliseconds from the probe's start to the first chunk that carried a choice.
    pub ttft_ms: Option<i64>,
}

/// Reads the events of `response` until the stream finishes, errs or breaks.
pub async fn read(response: reqwest::Response, started: Instant) -> StreamRead {
    let mut events = response.bytes_stream().eventsource();
    let mut ttft_ms = None;
    let mut count = 0;
    let mut finished = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                return StreamRead {
                    end: StreamEnd::Cut {
                        events: count,
                        reason: crate::error_chain::error_chain(&e),
                    },
                    ttft_ms,
                };
            }
        };
        count += 1;
        let data = event.data.trim();
        if data == "[DONE]" {
            return StreamRead {
                end: StreamEnd::Done,
                ttft_ms,
            };
        }
        let Ok(chunk) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        if chunk.get("error").is_some() || event.event == "error" {
            return StreamRead {
                end: StreamEnd::Error(data.as_bytes().to_vec()),
                ttft_ms,
            };
        }
        if let Some(choices) = chunk.get("choices").and_then(|c| c.as_array()) {
            if ttft_ms.is_none() && !choices.is_empty() {
                ttft_ms = Some(crate::clock::millis(started.elapsed()));
            }
            finished |= choices
                .iter()
                .any(|c| c.get("finish_reason").is_some_and(|f| !f.is_null()));
        }
    }
    // Some servers close after the last chunk without `[DONE]`; a finish_reason says the
    // answer was complete. Anything else is a stream cut halfway.
    let end = if finished {
        StreamEnd::Done
    } else {
        StreamEnd::Cut {
            events: count,
            reason: "the connection closed before the stream finished".into(),
        }
    };
    StreamRead { end, ttft_ms }
}
