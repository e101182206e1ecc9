//! Reading a streamed chat completion (server-sent events, parsed by `eventsource-stream`):
//! when the first token came, whether the stream finished, or what error it carried.
//!
//! The stream is read up to `BODY_CAP` bytes in all, like any body: an event that never ends
//! or a stream that never finishes is cut there and classified, so memory stays flat and the
//! parser's work is bounded by the cap, not by how long the server keeps sending.

use super::BODY_CAP;
use eventsource_stream::{EventStreamError, Eventsource};
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
    /// More than `BODY_CAP` bytes came without the stream finishing; the rest was not read.
    Oversized { events: usize },
}

/// The result of reading a stream.
#[derive(Debug)]
pub struct StreamRead {
    pub end: StreamEnd,
    /// Milliseconds from the probe's start to the first chunk that carried a choice.
    pub ttft_ms: Option<i64>,
}

/// Why the byte stream under the parser stopped.
#[derive(Debug)]
enum ReadError {
    Http(reqwest::Error),
    /// The next chunk would pass `BODY_CAP`.
    Cap,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Http(e) => f.write_str(&crate::error_chain::error_chain(e)),
            ReadError::Cap => write!(f, "more than {} KiB", BODY_CAP / 1024),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads the events of `response` until the stream finishes, errs, breaks or passes the cap.
pub async fn read(response: reqwest::Response, started: Instant) -> StreamRead {
    let capped = response.bytes_stream().scan(0usize, |read, chunk| {
        let item = match chunk {
            Err(e) => Err(ReadError::Http(e)),
            Ok(chunk) if *read + chunk.len() > BODY_CAP => Err(ReadError::Cap),
            Ok(chunk) => {
                *read += chunk.len();
                Ok(chunk)
            }
        };
        std::future::ready(Some(item))
    });
    let mut events = capped.eventsource();
    let mut ttft_ms = None;
    let mut count = 0;
    let mut finished = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(EventStreamError::Transport(ReadError::Cap)) => {
                return StreamRead {
                    end: StreamEnd::Oversized { events: count },
                    ttft_ms,
                };
            }
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
