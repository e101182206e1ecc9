//! The command line (SPEC §2): the one definition that parsing, `--help` and the docs share.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The package version and, when built from a git checkout, the commit it was built from
/// (`-modified` when tracked files had uncommitted changes): `0.1.0 (commit 1a2b3c4d5e6f)`.
pub fn version() -> &'static str {
    const COMMIT: &str = git_version::git_version!(
        args = [
            "--always",
            "--dirty=-modified",
            "--abbrev=12",
            "--exclude=*"
        ],
        fallback = ""
    );
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match COMMIT {
        "" => env!("CARGO_PKG_VERSION").to_owned(),
        commit => format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")),
    })
}

#[derive(Debug, Parser)]
#[command(
    name = "openai-watch",
    version = version(),
    after_long_help = "Exit codes: 0 done (check: every probe healthy); 1 failed (check: a warning); \
2 check: critical; 3 check: unknown; 64 usage error; 75 another daemon writes this database; \
78 configuration error.\n\nFiles: /etc/openai-watch/openai-watch.toml (the packaged config); \
/etc/openai-watch/credentials/ (the API key and SMTP password, handed over by systemd); \
/var/lib/openai-watch/openai-watch.db (the history, under the packaged service).\n\n\
Documentation: /usr/share/doc/openai-watch/README.md",
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
    /// Silences: keep alerts that match from being sent, for a while (the incidents are still
    /// opened, shown and recorded).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// The agents of a fleet: retire the location of one that is gone.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Acknowledge an open incident: no more reminders; the resolved alert says who and when.
    Ack {
        /// The incident's id (see `status` or the dashboard).
        incident: i64,
        /// Why, or what is being done.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Copy the SQLite history of the config into a PostgreSQL database, for a fleet of agents.
    ///
    /// Probes, rollups, incidents, the alert outbox, silences and the audit log, with their
    /// ids. Run it again to copy what is new: rows already there are skipped. Stop the
    /// daemon first.
    Migrate {
        /// The PostgreSQL database, e.g. postgres://watch@db:5432/watch (or
        /// $OPENAI_WATCH_MIGRATE_TO, which keeps a password out of the process list).
        #[arg(
            long,
            value_name = "URL",
            env = "OPENAI_WATCH_MIGRATE_TO",
            hide_env_values = true
        )]
        to: String,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    Man {
        /// Write openai-watch.1 and a page per subcommand (openai-watch-check.1, ...) here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Where `silence` and `ack` write: the database of the config, or a running daemon's API.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// A running daemon's dashboard URL, e.g. http://monitor:8080; the token is read from
    /// $OPENAI_WATCH_TOKEN. Without it, the database of the config is written directly.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Retire the location of an agent that was removed or renamed: what only it saw
    /// resolves, its silence stops being reported, its heartbeat is forgotten. Refused while
    /// an agent at that location runs.
    Retire {
        /// The `[agent] location` of the agent that is gone.
        location: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Add a silence. Matchers are exact names or `*` globs and default to `*`.
    Add {
        #[arg(long, value_name = "NAME|GLOB")]
        target: Option<String>,
        #[arg(long, value_name = "NAME|GLOB")]
        category: Option<String>,
        #[arg(long, value_name = "ID|GLOB")]
        error_id: Option<String>,
        #[arg(long, value_name = "NAME|GLOB")]
        location: Option<String>,
        /// How long, from the start: 30m, 2h, 1d.
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// When it starts (RFC 3339); default now.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// Why (required).
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the silences that have not ended (or all of them).
    List {
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// End a silence now.
    Expire {
        id: i64,
        #[command(flatten)]
        remote: Remote,
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
    Check {
        /// Judge the maintenance windows at this time (RFC 3339) instead of now: which
        /// holds then, and when the next one starts and ends.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<jiff::Timestamp>,
    },
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse::<jiff::Timestamp>()
        .map_err(|e| format!("expected an RFC 3339 time such as 2027-03-28T01:30:00Z: {e}"))
}
