//! HTTP probing (SPEC §4): one reused client, one request per probe, no retries. Turns what
//! the wire said into an `Observation`, classified and with its message masked.

mod headers;
pub mod request;
mod stream;
mod transport;

pub use headers::{RateLimits, retry_after};

use crate::catalog::{self, Entry, Expect};
use crate::config::{self, Probe, ProbeKind, Target, TargetName};
use crate::domain::TransportErrorKind;
use crate::error_chain::error_chain;
use crate::redact;
use headers::{header_str, rate_limits};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::SecretString;
use std::time::{Duration, Instant, SystemTime};
use transport::{is_local_failure, transport_kind};

/// Bodies are read up to this many bytes; the rest is discarded unread.
pub const BODY_CAP: usize = 64 * 1024;
/// Connect timeout of the shared client; the per-target `timeout` bounds the whole probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One probe's result: what was asked, what came back, and what it means.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Start of the probe, Unix milliseconds (UTC).
    pub at_ms: i64,
    pub target: TargetName,
    pub kind: ProbeKind,
    /// The model asked for; empty for `models` probes.
    pub model: String,
    pub latency_ms: i64,
    pub http_status: Option<u16>,
    /// Why no HTTP answer arrived, when none did.
    pub transport_error: Option<TransportErrorKind>,
    pub entry: &'static Entry,
    /// Upstream message, masked and truncated.
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub rate_limits: RateLimits,
    /// How long the answer asked us to wait before the next request.
    pub retry_after: Option<Duration>,
    /// `chat_stream`: milliseconds from the start to the first token.
    pub ttft_ms: Option<i64>,
    /// The probe's absolute bound for `slow`, if it has one.
    pub slow_after: Option<Duration>,
    /// The request could not be made for a reason on this machine (no file descriptors, no
    /// memory, no local address): it says nothing about the API, so it is never stored as a
    /// probe, never opens an incident, never alerts.
    pub local_failure: bool,
}

/// The shared HTTP client and the secrets to mask in anything the wire says.
pub struct Prober {
    client: reqwest::Client,
    secrets: Vec<SecretString>,
}

impl Prober {
    pub fn new(secrets: Vec<SecretString>) -> anyhow::Result<Prober> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("openai-watch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // The key must never travel to another host.
            .redirect(crate::tls::same_origin_redirects())
            .pool_idle_timeout(Duration::from_secs(90))
            // A wave of probes to one host (every target on api.openai.com) goes out at once:
            // keep a connection for each probe that can be in flight, or every wave would
            // open and close most of them again.
            .pool_max_idle_per_host(crate::scheduler::MAX_IN_FLIGHT)
            .build()?;
        Ok(Prober { client, secrets })
    }

    fn mask(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(config::expose).collect();
        redact::clean_message(text, &secrets)
    }

    /// Probes `probe` of `target` once. Never fails: every outcome is an `Observation`.
    #[tracing::instrument(skip_all, fields(target = %target.name(), probe = %probe.kind))]
    pub async fn probe(&self, target: &Target, probe: &Probe) -> Observation {
        let at_ms = crate::clock::now_ms();
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(target.timeout(), self.exchange(target, probe, started)).await;
        let latency_ms = crate::clock::millis(started.elapsed());
        let mut obs = Observation {
            at_ms,
            target: target.name().clone(),
            kind: probe.kind,
            model: probe.model.clone(),
            latency_ms,
            http_status: None,
            transport_error: None,
            entry: catalog::classify_transport(TransportErrorKind::Timeout),
            message: None,
            request_id: None,
            rate_limits: RateLimits::default(),
            retry_after: None,
            ttft_ms: None,
            slow_after: probe.slow_after,
            local_failure: false,
        };
        match outcome {
            Err(_elapsed) => {
                obs.transport_error = Some(TransportErrorKind::Timeout);
                obs.message = Some(format!(
                    "no complete answer within {}",
                    humantime::format_duration(target.timeout())
                ));
            }
            Ok(Err(e)) => {
                let kind = transport_kind(&e);
                obs.local_failure = is_local_failure(&e);
                obs.transport_error = Some(kind);
                obs.entry = catalog::classify_transport(kind);
                obs.message = Some(self.mask(&error_chain(&e)));
            }
            Ok(Ok(answer)) => self.read_answer(&mut obs, probe.kind, answer),
        }
        tracing::debug!(
            category = %obs.entry.category,
            error_id = obs.entry.id,
            status = ?obs.http_status,
            latency_ms = obs.latency_ms,
            "probe done"
        );
        obs
    }

    /// Fills `obs` from an HTTP answer: its classification, message and headers.
    fn read_answer(&self, obs: &mut Observation, kind: ProbeKind, answer: Answer) {
        obs.http_status = Some(answer.status);
        obs.request_id = header_str(&answer.headers, "x-request-id").map(|v| self.mask(&v));
        obs.rate_limits = rate_limits(&answer.headers);
        obs.retry_after = retry_after(&answer.headers, SystemTime::now());
        if let Some(read) = answer.stream {
            obs.ttft_ms = read.ttft_ms;
            match read.end {
                stream::StreamEnd::Done => {
                    obs.entry = &catalog::OK;
                    return;
                }
                // An error inside the stream is classified like a body.
                stream::StreamEnd::Error(body) => {
                    let verdict = catalog::classify(answer.status, &body, Expect::Chat);
                    obs.entry = verdict.entry;
                    obs.message = verdict.message.map(|m| self.mask(&m));
                    return;
                }
                // A stream that does not finish within the cap is not the answer asked for.
                stream::StreamEnd::Oversized { events } => {
                    obs.entry = catalog::must("unexpected_status");
                    obs.message = Some(format!(
                        "the stream passed {} KiB after {events} event(s) without finishing; the rest was not read",
                        BODY_CAP / 1024
                    ));
                    return;
                }
                // A stream cut halfway is an outage-class answer, never a success.
                stream::StreamEnd::Cut { events, reason } => {
                    obs.transport_error = Some(TransportErrorKind::Reset);
                    obs.entry = catalog::classify_transport(TransportErrorKind::Reset);
                    obs.message = Some(self.mask(&format!(
                        "the stream was cut after {events} event(s): {reason}"
                    )));
                    return;
                }
            }
        }
        let expect = request::expect(kind);
        // A model list longer than the cap (many fine-tuned models) is healthy when its
        // beginning has the shape of one; the rest is never read.
        let verdict = if answer.truncated
            && expect == Expect::List
            && (200..300).contains(&answer.status)
            && catalog::is_list_prefix(&answer.body)
        {
            catalog::Verdict {
                entry: &catalog::OK,
                message: None,
            }
        } else {
            catalog::classify(answer.status, &answer.body, expect)
        };
        obs.entry = verdict.entry;
        obs.message = match (&answer.redirect_to, verdict.message) {
            (Some(loc), _) if (300..400).contains(&answer.status) => {
                Some(self.mask(&format!("redirect to {loc} not followed")))
            }
            (_, m) => m.map(|m| self.mask(&m)).filter(|m| !m.is_empty()),
        };
    }

    async fn exchange(
        &self,
        target: &Target,
        probe: &Probe,
        started: Instant,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = request::build(&self.client, target, probe);
        if let Some(key) = &target.api_key {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", config::expose(key)))
                    .unwrap_or_else(|_| {
                        reqwest::header::HeaderValue::from_static("Bearer invalid")
                    });
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(org) = &target.organization {
            request = request.header("OpenAI-Organization", org);
        }
        if let Some(project) = &target.project {
            request = request.header("OpenAI-Project", project);
        }
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let redirect_to = header_str(&headers, "location");
        let is_stream = probe.kind == ProbeKind::ChatStream
            && (200..300).contains(&status)
            && header_str(&headers, "content-type")
                .is_some_and(|t| t.starts_with("text/event-stream"));
        if is_stream {
            return Ok(Answer {
                status,
                headers,
                body: Vec::new(),
                truncated: false,
                redirect_to,
                stream: Some(stream::read(response, started).await),
            });
        }
        let mut body = Vec::with_capacity(1024);
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = BODY_CAP - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() >= room {
                truncated = chunk.len() > room || response.chunk().await?.is_some();
                break; // dropping `response` closes the connection instead of reading on
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
            truncated,
            redirect_to,
            stream: None,
        })
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    /// The first `BODY_CAP` bytes (empty for a stream).
    body: Vec<u8>,
    /// More came than `BODY_CAP`; the rest was not read.
    truncated: bool,
    redirect_to: Option<String>,
    /// What a streamed answer said.
    stream: Option<stream::StreamRead>,
}
