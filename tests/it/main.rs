//! The black-box tests, in one test binary: the built daemon in its own process, the
//! simulator and SMTP servers on real sockets, real SQLite files, headless Chromium.
//! One binary links the crate once instead of once per file.

mod helpers;

mod alerts;
mod check_catalog;
mod classify;
mod config_errors;
mod dashboard;
mod day_two;
mod default_config;
mod demo;
mod dst;
mod faults;
mod fleet;
mod fleet_faults;
mod hardening;
mod history;
mod hostile;
mod leading;
mod migrate;
mod package;
mod probes;
mod properties;
mod readme;
mod reload;
mod retry_after;
mod secrets;
mod single_writer;
mod smtp_faults;
mod store;
mod systemd;
mod write_guards;
