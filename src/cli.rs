//! The command line (SPEC §2) and the mapping of outcomes to exit codes.

use crate::config::{self, Config, ConfigError};
use crate::simulate;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit code for usage errors (sysexits `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;
/// Exit code when the daemon or a command fails for a reason that is not the config.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "openai-watch",
    version,
    about = "Watches an OpenAI (or OpenAI-compatible) API account and tells you, with the documented cause and resolution, when it breaks."
)]
pub struct Cli {
    /// Config file [default: $OPENAI_WATCH_CONFIG, ./config/openai-watch.toml, /etc/openai-watch/openai-watch.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: probe on schedule and record the history.
    Run,
    /// Probe every probe of every target once; exit 0 ok, 1 warning, 2 critical, 3 unknown.
    Check {
        /// Print one JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Current state and open incidents, read from the database (no network).
    Status {
        /// Print JSON (the shape of GET /api/v1/status).
        #[arg(long)]
        json: bool,
    },
    /// Alerting commands.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Simulator, daemon and dashboard in one process on a temporary database, walking
    /// through every category; prints the dashboard URL. With --config, its alert channels
    /// get the alerts too.
    Demo {
        /// Dashboard address (a free port is used when this one is taken).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Serve an OpenAI-shaped fake API that answers with any catalog entry.
    Simulate {
        /// Address to listen on, e.g. 127.0.0.1:9090.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Scenario of /v1/... : `ok` or a catalog id.
        #[arg(long, value_name = "NAME", default_value = "ok")]
        scenario: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test notification through each channel (or one); exit 1 if one fails.
    Test {
        /// Only this channel (`email`, or a webhook's name).
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print the targets, probes and channels it defines.
    Check,
}

/// Loads the config the CLI points at, with secrets when `secrets` is true.
pub fn load_config(cli: &Cli, secrets: bool) -> Result<Config, ConfigError> {
    let path = config::resolve_path(cli.config.as_deref());
    let mut config = Config::load(&path)?;
    if secrets {
        config.resolve_secrets()?;
    }
    Ok(config)
}

/// Prints what `config check` found.
pub fn describe(config: &Config, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "config {} is valid", config.source.display())?;
    writeln!(out, "location: {}", config.location())?;
    writeln!(out, "database: {}", config.storage.path.display())?;
    writeln!(out, "targets: {}", config.targets.len())?;
    for t in &config.targets {
        let key = if t.api_key.is_some() {
            "key set"
        } else {
            "no key"
        };
        writeln!(
            out,
            "  {} {} ({key}, timeout {})",
            t.name(),
            t.base_url,
            humantime::format_duration(t.timeout())
        )?;
        for p in &t.probes {
            let model = if p.kind() == config::ProbeKind::Chat {
                format!(" model {}", p.model())
            } else {
                String::new()
            };
            writeln!(
                out,
                "    {} every {}{model}",
                p.kind(),
                humantime::format_duration(p.interval())
            )?;
        }
    }
    let channels = config.alerts.channel_names();
    if channels.is_empty() {
        writeln!(
            out,
            "alert channels: none (incidents are recorded, nobody is notified)"
        )?;
    } else {
        writeln!(out, "alert channels: {}", channels.join(", "))?;
    }
    for w in config.warnings() {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// Serves the simulator until interrupted.
pub async fn simulate(
    listen: SocketAddr,
    scenario: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = simulate::SimState::new(scenario).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let sim = simulate::Simulator::start(listener, state)?;
    println!(
        "simulator listening on http://{}/v1 (scenario {scenario})",
        sim.addr
    );
    println!(
        "fixed scenarios: http://{}/s/{{scenario}}/v1; scenarios: {}",
        sim.addr,
        simulate::scenarios().join(", ")
    );
    shutdown.await;
    Ok(())
}

/// Runs `alert test`: prints one line per channel; exit 0 when every one accepted.
pub async fn alert_test(
    config: &Config,
    only: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let names = config.alerts.channel_names();
    if names.is_empty() {
        anyhow::bail!("no alert channel is configured: add [alerts.email] or [[alerts.webhook]]");
    }
    if let Some(name) = only.filter(|n| !names.iter().any(|c| c == n)) {
        anyhow::bail!(
            "no channel named {name:?}; configured: {}",
            names.join(", ")
        );
    }
    let mut code = 0;
    for (name, result) in crate::notify::test(config, only).await? {
        match result {
            Ok(()) => writeln!(out, "{name}: sent")?,
            Err(e) => {
                writeln!(out, "{name}: FAILED: {}", e.message)?;
                code = EXIT_FAILURE;
            }
        }
    }
    Ok(code)
}
