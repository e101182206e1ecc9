//! Helpers shared by the black-box tests: the simulator on a real socket, config files in a
//! temporary directory, the built binary, and the SQLite file it writes.
#![allow(dead_code)] // each test module uses a part of the helpers

pub mod postgres;
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

/// `[alerts]` with `group_wait = "0s"` and `[alerts.email]` to a plaintext SMTP server on
/// loopback, `categories` notifying (TOML list items, e.g. `"auth", "quota"`; empty for the
/// default categories).
pub fn email_alerts(smtp_port: u16, categories: &str) -> String {
    let categories = if categories.is_empty() {
        String::new()
    } else {
        format!("categories = [{categories}]\n")
    };
    format!(
        "[alerts]\ngroup_wait = \"0s\"\n{categories}\n[alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\nfrom = \"w@example.com\"\nto = [\"o@example.com\"]\n\n"
    )
}

/// An observation of `target` classified as catalog entry `id`, as a probe would make it
/// (a chat probe; status 200 when healthy, else the entry's first status).
pub fn observation(target: &str, id: &str, at_ms: i64) -> openai_watch::probe::Observation {
    let entry = openai_watch::catalog::entry(id).unwrap();
    openai_watch::probe::Observation {
        at_ms,
        target: openai_watch::config::TargetName::parse(target).unwrap(),
        kind: openai_watch::config::ProbeKind::Chat,
        model: "gpt-4o-mini".into(),
        latency_ms: 180 + at_ms.rem_euclid(97),
        http_status: Some(entry.statuses.first().copied().unwrap_or(200)),
        transport_error: None,
        entry,
        message: (!entry.is_ok()).then(|| format!("upstream says {id}")),
        request_id: Some(format!("req_{at_ms:x}")),
        rate_limits: openai_watch::probe::RateLimits {
            limit_requests: Some(500),
            remaining_requests: Some(499),
            reset_tokens: Some("6m0s".into()),
            ..Default::default()
        },
        retry_after: None,
        ttft_ms: None,
        slow_after: None,
        local_failure: false,
    }
}

/// Sends the request and parses the answer as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let text = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// An HTTP client for tests (rustls needs the process's crypto provider first).
pub fn http_client() -> reqwest::Client {
    openai_watch::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// A running product for a test: the simulator, a workspace with the config and the
/// database, the daemon in its own process, and an HTTP client for its dashboard.
pub struct TestApp {
    pub sim: Simulator,
    pub ws: Workspace,
    pub daemon: Daemon,
    /// The dashboard's base URL.
    pub url: String,
    pub http: reqwest::Client,
}

/// What a `TestApp` starts with.
#[derive(Default)]
pub struct TestAppBuilder {
    config: String,
    env: Vec<(String, String)>,
    engine: Engine,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// GET `path`, expecting 200 and JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    /// Waits until `GET path` answers JSON for which `pred` holds; returns it.
    pub async fn json_until(
        &self,
        what: &str,
        path: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(what, || async {
            let v = self.json(path).await;
            pred(&v).then_some(v)
        })
        .await
    }
}

impl TestAppBuilder {
    /// Adds config text as it is.
    pub fn with(mut self, text: &str) -> Self {
        self.config.push_str(text);
        self
    }

    /// The store the daemon runs on.
    pub fn on(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// An environment variable of the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes the config into a new workspace and starts the daemon; returns once the
    /// dashboard listens.
    pub async fn start_with(self, sim: Simulator) -> TestApp {
        let ws = Workspace::on(self.engine);
        let config = ws.write_config(&self.config);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let daemon = Daemon::start(&config, &env);
        let url = daemon.dashboard_url().await;
        openai_watch::tls::install_crypto_provider();
        TestApp {
            sim,
            ws,
            daemon,
            url,
            http: reqwest::Client::new(),
        }
    }
}

/// `[alerts]` with `group_wait = "0s"` and one JSON (or Slack) webhook to `url`.
pub fn webhook_alerts(url: &str, format: &str) -> String {
    format!(
        "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.webhook]]\nurl = \"{url}\"\nformat = \"{format}\"\n\n"
    )
}

/// One target probed every second with the key from `$K`.
pub fn one_second_target(name: &str, base_url: String, kind: &str) -> String {
    TargetSpec {
        name,
        base_url,
        key_env: Some("K"),
        timeout: "10s",
        probes: &[(kind, "1s")],
    }
    .toml()
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

/// The store a test runs against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Sqlite,
    /// A fresh database in the test process's throwaway cluster.
    Postgres,
}

/// Runs an `async fn(Engine)` test once per engine: `mod NAME { sqlite, postgres }`.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Engine;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Engine::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Engine::Postgres).await
                }
            }
        )+
    };
}

/// A temporary directory holding a config file and the database it names.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database of this workspace, when it runs on PostgreSQL.
    pub pg_url: Option<String>,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace::on(Engine::Sqlite)
    }

    pub fn on(engine: Engine) -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
            pg_url: (engine == Engine::Postgres).then(|| postgres::cluster().fresh_database()),
        }
    }

    /// The `[storage]` line naming this workspace's database.
    pub fn storage_line(&self) -> String {
        match &self.pg_url {
            Some(url) => format!("url = \"{url}\""),
            None => format!("path = \"{}\"", self.db().display()),
        }
    }

    /// Runs a query on this workspace's database (read-only for SQLite) and returns its
    /// rows; an error when the database cannot be read (yet).
    pub async fn try_rows<T>(&self, sql: &str) -> Result<Vec<T>, sqlx::Error>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.pg_url {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await?;
                let rows = sqlx::query_as::<_, T>(sql).fetch_all(&pool).await;
                pool.close().await;
                rows
            }
            None => {
                let url = format!("sqlite://{}?mode=ro", self.db().display());
                let pool = sqlx::SqlitePool::connect(&url).await?;
                let rows = sqlx::query_as::<_, T>(sql).fetch_all(&pool).await;
                pool.close().await;
                rows
            }
        }
    }

    /// Like `try_rows`, failing the test on an error.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        self.try_rows(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A `select count(*) …`, or `None` while the database cannot answer it (not created or
    /// migrated yet).
    pub async fn try_count(&self, sql: &str) -> Option<i64> {
        self.try_rows::<(i64,)>(sql).await.ok().map(|r| r[0].0)
    }

    /// A `select count(*) …`.
    pub async fn count(&self, sql: &str) -> i64 {
        self.rows::<(i64,)>(sql).await[0].0
    }

    /// Every probe row, oldest first.
    pub async fn probe_rows(&self) -> Vec<Row_> {
        self.rows::<(String, String, String, String, Option<i64>, String, Option<String>)>(
            "select target, probe, category, error_id, http_status, location, message from probes order by id",
        )
        .await
        .into_iter()
        .map(|r| Row_ {
            target: r.0,
            probe: r.1,
            category: r.2,
            error_id: r.3,
            http_status: r.4,
            location: r.5,
            message: r.6,
        })
        .collect()
    }

    /// The store, as the daemon opens it.
    pub async fn store(&self) -> openai_watch::store::Store {
        let database = match &self.pg_url {
            Some(url) => openai_watch::store::Database::Postgres(url.clone().into()),
            None => openai_watch::store::Database::Sqlite(self.db()),
        };
        openai_watch::store::Store::connect(&database)
            .await
            .unwrap()
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
            "[agent]\nlocation = \"test-lab\"\n\n[storage]\n{}\n{storage}\n{dashboard}{rest}",
            self.storage_line()
        );
        std::fs::write(self.config_path(), text).unwrap();
        self.config_path()
    }
    /// Runs one statement on the workspace's SQLite file directly, as an operator's script
    /// would (rows written before a check existed, a history seeded in bulk).
    pub async fn sqlite_exec(&self, sql: &str) {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.db().display()))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    }

    /// Every file of the database (main file, WAL, shared memory) as bytes; for PostgreSQL,
    /// a dump of every row.
    pub fn db_bytes(&self) -> Vec<u8> {
        if let Some(url) = &self.pg_url {
            return postgres::cluster().dump(url);
        }
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
    cmd.args(args);
    output_of(cmd, env, cwd).await
}

/// Runs `cmd` in `cwd` with `env` (and no config or log level from the test's own
/// environment) to completion, bounded by `DEADLINE`.
async fn output_of(mut cmd: tokio::process::Command, env: &[(&str, &str)], cwd: &Path) -> Output {
    cmd.current_dir(cwd)
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

/// Runs `sh -c script` with `args` as `$0 $1 …` (e.g. to set a `ulimit` before `exec`ing
/// the binary), bounded by `DEADLINE`.
pub async fn run_cli_via_sh(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
) -> Output {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(script).args(args);
    output_of(cmd, env, cwd).await
}

/// Runs the binary like `run_cli` and also gives the peak resident memory of that process
/// alone, in KiB: the highest `VmHWM` of `/proc/PID/status` seen while it runs (read every
/// 20 ms). Not `ru_maxrss`: Linux starts a child's counter from its parent's size at fork, and
/// the test binary is large.
pub async fn run_cli_with_peak_rss(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
) -> (Output, i64) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("OPENAI_WATCH_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id().unwrap());
    let output = child.wait_with_output();
    tokio::pin!(output);
    let mut peak_kib = 0i64;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(hwm) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak_kib = peak_kib.max(hwm);
        }
        tokio::select! {
            out = &mut output => return (out.unwrap(), peak_kib),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command did not finish within the deadline"
        );
    }
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

/// Waits until `check` gives a value, asking every 100 ms; fails after `DEADLINE`, naming
/// `what`. The one wait loop of the tests: conditions, never fixed sleeps.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// `eventually` with a deadline of its own, for waits known to take longer.
pub async fn eventually_within<T, F, Fut>(deadline: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_explained(deadline, what, check, String::new).await
}

/// `eventually_within` whose failure adds `explain()` (a log, say) to the message.
pub async fn eventually_explained<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut check: F,
    explain: impl Fn() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out waiting for {what}{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `cond` holds (a synchronous condition, e.g. on captured output).
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    eventually(what, || std::future::ready(cond().then_some(()))).await
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
        cmd.arg("--config").arg(config).arg("run");
        Daemon::spawn(cmd, env)
    }

    /// Starts the daemon with at most `limit` open file descriptors (soft and hard).
    pub fn start_with_fd_limit(config: &Path, env: &[(&str, &str)], limit: u32) -> Daemon {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" --config \"$1\" run"
            ))
            .arg(BIN)
            .arg(config);
        Daemon::spawn(cmd, env)
    }

    fn spawn(mut cmd: tokio::process::Command, env: &[(&str, &str)]) -> Daemon {
        cmd.env_remove("OPENAI_WATCH_CONFIG")
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
    /// Fails with the daemon's log (why it did not start) after `DEADLINE`.
    pub async fn dashboard_url(&self) -> String {
        let log = || self.stderr.lock().unwrap().clone();
        eventually_explained(
            DEADLINE,
            "the dashboard to listen",
            || {
                let url = log()
                    .lines()
                    .find_map(|l| l.split("dashboard listening on ").nth(1))
                    .map(|u| u.trim().to_string());
                std::future::ready(url)
            },
            || format!("; the daemon's log:\n{}", log()),
        )
        .await
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
