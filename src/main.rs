//! Entry point: parse the command line, set up logging, and hand over to the commands.

use clap::Parser;
use openai_watch::cli::{Cli, Command, LogFormat};
use openai_watch::commands::{self, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    openai_watch::resident::one_heap();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let exit = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
            let _ = e.print();
            return exit.into();
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            openai_watch::commands::print_error(format_args!("cannot start the runtime: {e}"));
            return Exit::Failure.into();
        }
    };
    runtime.block_on(commands::dispatch(cli)).into()
}

fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Run | Command::Simulate { .. } => "info",
        Command::Completions { .. } | Command::Man { .. } => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // journald stamps every line itself: no second timestamp, no colours.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if journald => builder.without_time().with_ansi(false).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
