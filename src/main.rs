//! Entry point: parse the command line, set up logging, and hand over to the library.

use clap::Parser;
use openai_watch::cli::{self, AlertCommand, Cli, Command, ConfigCommand, LogFormat};
use openai_watch::config::EXIT_CONFIG;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { cli::EXIT_USAGE } else { 0 };
            let _ = e.print();
            return exit(code);
        }
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit(cli::EXIT_FAILURE);
        }
    };
    exit(runtime.block_on(dispatch(cli)))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn dispatch(cli: Cli) -> i32 {
    let shutdown = shutdown_signal();
    let reload = matches!(cli.command, Command::Run).then(reload_signal);
    let needs_secrets = !matches!(cli.command, Command::Status { .. });
    let config = match &cli.command {
        Command::Simulate { .. } => None,
        // The demo makes its own config; an explicitly given one lends its alert channels.
        Command::Demo { .. } if cli.config.is_none() => None,
        _ => match cli::load_config(&cli, needs_secrets) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_CONFIG;
            }
        },
    };
    let result = match (&cli.command, config) {
        (Command::Simulate { listen, scenario }, _) => {
            cli::simulate(*listen, scenario, shutdown).await.map(|()| 0)
        }
        (Command::Demo { listen }, config) => openai_watch::demo::run(*listen, config, shutdown)
            .await
            .map(|()| 0),
        (Command::Run, Some(config)) => openai_watch::daemon::run(
            config,
            None,
            shutdown,
            reload.unwrap_or_else(|| tokio::sync::mpsc::channel(1).1),
        )
        .await
        .map(|()| 0),
        (Command::Check { json }, Some(config)) => {
            openai_watch::check::run(&config, *json, &mut std::io::stdout().lock()).await
        }
        (Command::Status { json }, Some(config)) => {
            openai_watch::status::run(&config, *json, &mut std::io::stdout().lock()).await
        }
        (
            Command::Alert {
                command: AlertCommand::Test { channel },
            },
            Some(config),
        ) => cli::alert_test(&config, channel.as_deref(), &mut std::io::stdout().lock()).await,
        (
            Command::Config {
                command: ConfigCommand::Check,
            },
            Some(config),
        ) => cli::describe(&config, &mut std::io::stdout().lock())
            .map(|()| 0)
            .map_err(Into::into),
        (_, None) => unreachable!("every command but simulate loads the config"),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if matches!(cli.command, Command::Check { .. }) {
                openai_watch::check::UNKNOWN
            } else {
                cli::EXIT_FAILURE
            }
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Run | Command::Simulate { .. } => "info",
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

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so that a signal during start-up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}

/// A message for every SIGHUP: reload the config.
fn reload_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reload by restarting")
        }
    }
    rx
}
