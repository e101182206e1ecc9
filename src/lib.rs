//! openai-watch: watches an OpenAI (or OpenAI-compatible) API account, classifies every answer
//! against the documented error catalog, records the history in SQLite, opens and resolves
//! incidents and sends alerts with the documented cause and resolution.
//!
//! # Layout
//!
//! Data moves one way, each stage handing a plain value to the next:
//!
//! ```text
//! config ─► scheduler ─► probe ─► catalog ─► daemon::recorder ─► store ◄─► detect
//!                                                  │                 └─► outbox ─► notify
//!                                                  └─────────────────────────────► web
//! ```
//!
//! - `main.rs` parses the command line ([`cli`]) and hands it to [`commands`], one file per
//!   command; every command ends in a [`commands::Exit`].
//! - [`config`] reads the file in two steps: a validated [`config::Document`], then a
//!   [`config::Config`] with its secrets read.
//! - [`domain`] holds the closed vocabularies (category, probe kind, event kind, delivery
//!   state, …) that rows, the API and alerts carry.
//! - [`scheduler`] decides when each probe runs; [`probe`] turns one HTTP exchange into an
//!   `Observation`, classified by [`catalog`].
//! - [`daemon`] wires the tasks of `run`: its [`daemon::recorder`] writes observations, the
//!   detector's steps ([`detect`], pure) and the alert events in one transaction of the
//!   [`store`]; [`daemon::maintenance`] prunes old rows.
//! - [`notify`] delivers the outbox by email and webhook, through the routes of the config,
//!   holding back what a [`silence`] or maintenance window suppresses; [`web`] serves the
//!   dashboard, the JSON API (with the day-two writes behind tokens) and the metrics,
//!   reading what [`status`] summarises.
//! - Small shared helpers: [`clock`] (Unix milliseconds), [`error_chain`], [`tls`],
//!   [`redact`] (masking), [`timefmt`] (RFC 3339), [`signals`], [`systemd`], [`health`].

pub mod catalog; // the documented error catalog and `classify()`
pub mod cli; // the command-line definition
pub mod clock; // Unix milliseconds, saturating conversions
pub mod commands; // one file per command, and the exit codes
pub mod config; // configuration: raw schema, validation, secrets
pub mod daemon; // the `run` command: wiring of tasks, reload and shutdown
pub mod detect; // incident state machine (pure)
pub mod domain; // closed vocabularies stored in rows
pub mod error_chain; // an error and its causes on one line
pub mod health; // what /healthz reports
pub mod leading; // leading signals from healthy answers: rate-limit headroom
pub mod metrics; // Prometheus metrics
pub mod notify; // alert outbox worker, email and webhook channels
pub mod probe; // HTTP probing → `Observation`
pub mod redact; // masking of secrets in untrusted text
pub mod resident; // handing back code pages only starting ran
pub mod scheduler; // when each probe runs
pub mod signals; // SIGINT/SIGTERM/SIGHUP
pub mod silence; // silences and maintenance windows: what keeps an alert from going out
pub mod simulate; // the OpenAI-shaped fake API
pub mod status; // state of every target and open incidents, from the database
pub mod store; // SQLite storage
pub mod systemd; // sd_notify: READY, STATUS, WATCHDOG, STOPPING
pub mod timefmt; // RFC 3339 times
pub mod tls; // the rustls crypto provider
pub mod upstream; // OpenAI's status page: poller and the "them or us" sentence
pub mod web; // dashboard, JSON API, metrics endpoint
