//! One file per command of SPEC §2, and the dispatch from the parsed command line to them.
//! Every command ends in an [`Exit`]; `main` only turns it into the process's exit code.

mod alert;
mod check;
mod config;
mod day_two;
mod demo;
mod generate;
mod migrate;
mod run;
mod simulate;
mod status;

pub use check::{CheckLine, probe_all};
pub use demo::demo_config;

use crate::cli::{AgentCommand, AlertCommand, Cli, Command, ConfigCommand};
use crate::config::{Config, ConfigError, Document};
use crate::signals;

/// How a command ended: the one place that knows the process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; for `check`, every probe was healthy.
    Success,
    /// 1: the command failed for a reason other than the config.
    Failure,
    /// 1 (`check`): the worst probe was a warning.
    Warning,
    /// 2 (`check`): the worst probe was critical.
    Critical,
    /// 3 (`check`): nothing could be probed or judged.
    Unknown,
    /// 64 (sysexits `EX_USAGE`): the command line is wrong.
    Usage,
    /// 75 (sysexits `EX_TEMPFAIL`): another daemon already writes this database; try again
    /// once it stopped.
    TempFail,
    /// 78 (sysexits `EX_CONFIG`): the config is wrong.
    Config,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure | Exit::Warning => 1,
            Exit::Critical => 2,
            Exit::Unknown => 3,
            Exit::Usage => 64,
            Exit::TempFail => 75,
            Exit::Config => 78,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// Runs the command the command line names.
pub async fn dispatch(cli: Cli) -> Exit {
    let shutdown = signals::shutdown();
    let result = match &cli.command {
        Command::Silence { command } => {
            day_two::silence(|| document(&cli), command, &mut std::io::stdout().lock()).await
        }
        Command::Agent {
            command: AgentCommand::Retire { location, remote },
        } => {
            day_two::retire(
                || document(&cli),
                location,
                remote,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::Ack {
            incident,
            comment,
            remote,
        } => {
            day_two::ack(
                || document(&cli),
                *incident,
                comment.as_deref(),
                remote,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::Completions { shell } => {
            generate::completions(*shell, &mut std::io::stdout().lock())
        }
        Command::Man { out_dir } => {
            generate::man(out_dir.as_deref(), &mut std::io::stdout().lock())
        }
        Command::Simulate { listen, scenario } => simulate::run(*listen, scenario, shutdown).await,
        Command::Demo { listen } => {
            // The demo makes its own config; an explicitly given one lends its alert channels.
            let user = match cli.config.is_some().then(|| resolved(&cli)).transpose() {
                Ok(user) => user,
                Err(exit) => return exit,
            };
            demo::run(*listen, user, shutdown).await
        }
        Command::Migrate { to } => match document(&cli) {
            Ok(doc) => migrate::run(&doc, to, &mut std::io::stdout().lock()).await,
            Err(exit) => return exit,
        },
        Command::Status { json } => match document(&cli) {
            // Reads the database only: no secret is needed, none is read.
            Ok(doc) => status::run(&doc, *json, &mut std::io::stdout().lock()).await,
            Err(exit) => return exit,
        },
        Command::Run => match resolved(&cli) {
            Ok(config) => run::run(config, shutdown).await,
            Err(exit) => return exit,
        },
        Command::Check { json } => {
            let config = match resolved(&cli) {
                Ok(config) => config,
                Err(exit) => return exit,
            };
            // `check` speaks the Nagios convention even when it fails: 3, unknown.
            return check::run(&config, *json, &mut std::io::stdout().lock())
                .await
                .unwrap_or_else(|e| {
                    print_error(format_args!("{}", crate::error_chain::anyhow_chain(&e)));
                    Exit::Unknown
                });
        }
        Command::Alert {
            command: AlertCommand::Test { channel },
        } => match resolved(&cli) {
            Ok(config) => {
                alert::test(&config, channel.as_deref(), &mut std::io::stdout().lock()).await
            }
            Err(exit) => return exit,
        },
        Command::Config {
            command: ConfigCommand::Check { at },
        } => match resolved(&cli) {
            Ok(config) => config::describe(
                &config,
                at.map_or_else(crate::clock::now_ms, |t| t.as_millisecond()),
                &mut std::io::stdout().lock(),
            ),
            Err(exit) => return exit,
        },
    };
    result.unwrap_or_else(|e| {
        print_error(format_args!("{}", crate::error_chain::anyhow_chain(&e)));
        // A config found wrong only once a command looks deeper (the database URL of
        // `status`) is still a configuration error.
        if e.downcast_ref::<ConfigError>().is_some() {
            Exit::Config
        } else {
            Exit::Failure
        }
    })
}

/// Prints `error: MESSAGE` and its line end on stderr in one write: a line written in
/// pieces (what `eprintln!` does) can be split by other output, or read half by a process
/// reading the pipe.
pub fn print_error(message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = format!("error: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The config file the command line points at, read and validated.
fn document(cli: &Cli) -> Result<Document, Exit> {
    Document::load(&crate::config::resolve_path(cli.config.as_deref())).map_err(config_error)
}

/// The config with its secrets read.
fn resolved(cli: &Cli) -> Result<Config, Exit> {
    document(cli)?.resolve().map_err(config_error)
}

fn config_error(e: ConfigError) -> Exit {
    print_error(format_args!("{e}"));
    Exit::Config
}
