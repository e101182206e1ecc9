//! Helpers shared by the black-box tests: the simulator on a real socket, config files in a
//! temporary directory, the built binary, and the SQLite file it writes.
#![allow(dead_code)]

pub mod smtp;

use openai_watch::simulate::{SimState, Simulator};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// A generous bound for anything a test waits for: the machine is shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const BIN: &str = env!("CARGO_BIN_EXE_openai-watch");

/// Starts the simulator on 127.0.0.1:0 with `ok` as the default scenario.
pub async fn start_simulator() -> Simulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(listener, SimState::new("ok").unwrap()).unwrap()
}

/// A port on loopback where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One `[[targets]]` block.
pub struct TargetSpec<'a> {
    pub name: &'a str,
    pub base_url: String,
    pub key_env: Option<&'a str>,
    pub timeout: &'a str,
    pub probes: &'a [(&'a str, &'a str)],
}

impl TargetSpec<'_> {
    pub fn toml(&self) -> String {
        let mut s = format!(
            "[[targets]]\nname = \"{}\"\nbase_url = \"{}\"\ntimeout = \"{}\"\n",
            self.name, self.base_url, self.timeout
        );
        if let Some(env) = self.key_env {
            s.push_str(&format!("api_key_env = \"{env}\"\n"));
        }
        for (kind, interval) in self.probes {
            s.push_str(&format!(
                "  [[targets.probes]]\n  kind = \"{kind}\"\n  interval = \"{interval}\"\n"
            ));
        }
        s
    }
}

/// A temporary directory holding a config file and the database it names.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("watch.db")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("openai-watch.toml")
    }
    /// Writes a config: `[storage]` pointing into the workspace, then `rest`.
    pub fn write_config(&self, rest: &str) -> PathBuf {
        self.write_config_with_storage("", rest)
    }

    /// Like `write_config`, with more `[storage]` keys (e.g. retention).
    pub fn write_config_with_storage(&self, storage: &str, rest: &str) -> PathBuf {
        // Every daemon of a test listens on a port of its own.
        let dashboard = if rest.contains("[dashboard]") {
            ""
        } else {
            "[dashboard]\nlisten = \"127.0.0.1:0\"\n\n"
        };
        let text = format!(
            "[agent]\nlocation = \"test-lab\"\n\n[storage]\npath = \"{}\"\n{storage}\n{dashboard}{rest}",
            self.db().display()
        );
        std::fs::write(self.config_path(), text).unwrap();
        self.config_path()
    }
    /// Every file of the database (main file, WAL, shared memory) as bytes.
    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", self.db().display()));
            if let Ok(b) = std::fs::read(p) {
                all.extend(b);
            }
        }
        all
    }
}

/// Runs the binary to completion (bounded by `DEADLINE`) with extra environment variables.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("OPENAI_WATCH_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("the command finished within the deadline")
        .unwrap()
}

/// A probe row as the black-box tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row_ {
    pub target: String,
    pub probe: String,
    pub category: String,
    pub error_id: String,
    pub http_status: Option<i64>,
    pub location: String,
    pub message: Option<String>,
}

/// Reads every probe row of a database file, oldest first.
pub async fn probe_rows(db: &Path) -> Vec<Row_> {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query("select target, probe, category, error_id, http_status, location, message from probes order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| Row_ {
            target: r.get(0),
            probe: r.get(1),
            category: r.get(2),
            error_id: r.get(3),
            http_status: r.get(4),
            location: r.get(5),
            message: r.get(6),
        })
        .collect()
}

/// Waits until `cond` holds, checking every 100 ms, failing after `DEADLINE`.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running daemon (`run`), killed when dropped.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("OPENAI_WATCH_CONFIG")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon {
            child,
            stderr,
            reader,
        }
    }

    /// The dashboard's base URL, read from the start-up log line.
    pub async fn dashboard_url(&self) -> String {
        let mut url = None;
        wait_for("the dashboard to listen", || {
            let log = self.stderr.lock().unwrap();
            url = log
                .lines()
                .find_map(|l| l.split("dashboard listening on ").nth(1))
                .map(|u| u.trim().to_string());
            url.is_some()
        })
        .await;
        url.unwrap()
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the daemon.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("daemon stopped")
            .unwrap();
        // The pipe closes when the process exits: the reader ends after the last line.
        let _ = tokio::time::timeout(DEADLINE, self.reader).await;
        let log = self.stderr.lock().unwrap().clone();
        (status, log)
    }
}
