//! openai-watch: watches an OpenAI (or OpenAI-compatible) API account, classifies every answer
//! against the documented error catalog, and records the history in SQLite.
//!
//! Data moves one way: config → scheduler → probe → classify → store.

pub mod catalog; // the documented error catalog and `classify()`
pub mod check; // the `check` command: every probe once, Nagios exit codes
pub mod cli; // command-line interface and exit codes
pub mod config; // typed configuration, validation, secrets
pub mod daemon; // the `run` command: wiring of tasks and shutdown
pub mod demo; // the `demo` command: simulator + daemon + dashboard, scripted
pub mod detect; // incident state machine (pure)
pub mod health; // what /healthz reports
pub mod metrics; // Prometheus metrics
pub mod notify; // alert outbox worker, email and webhook channels
pub mod probe; // HTTP probing → `Observation`
pub mod redact; // masking of secrets in untrusted text
pub mod scheduler; // when each probe runs
pub mod simulate; // the OpenAI-shaped fake API
pub mod status; // the `status` command: state and open incidents from the database
pub mod store; // SQLite storage
pub mod systemd; // sd_notify: READY, STATUS, WATCHDOG, STOPPING
pub mod timefmt; // RFC 3339 times
pub mod web; // dashboard, JSON API, metrics endpoint
