//! The benchmark of SPEC §11: the real daemon (the release binary) against the simulator (a
//! separate process) and a local SMTP server, measured from the outside.
//!
//! Run: `cargo bench --bench harness` (add `-- --quick` for a shorter run). Prints one table.

#[path = "../tests/it/helpers/mod.rs"]
mod helpers;

#[path = "support/fleet.rs"]
mod fleet;

#[path = "support/peer.rs"]
mod peer;

use helpers::observation;
use helpers::smtp::SmtpServer;
use openai_watch::catalog::{self, Category, Expect};
use openai_watch::domain::ProbeKind;
use openai_watch::probe::Observation;
use openai_watch::store::{HOUR_MS, RollupRow, Store};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon measured: the release build, as shipped (`cargo build --release`, which this
/// runs first). The bench profile's own build of the binary gets other symbol names, which
/// `src/hot-code.txt` (the layout of the code that runs every second) does not name.
fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--release", "--locked", "--bin", "openai-watch"])
            .current_dir(root)
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cargo build --release failed");
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("release/openai-watch")
            .display()
            .to_string()
    })
}
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One line of the result table.
struct Figure {
    name: String,
    value: String,
    budget: &'static str,
    ok: Option<bool>,
}

struct Report(Vec<Figure>);

impl Report {
    fn add(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        budget: &'static str,
        ok: Option<bool>,
    ) {
        let f = Figure {
            name: name.into(),
            value: value.into(),
            budget,
            ok,
        };
        println!("  {:<58} {:>22}  {}", f.name, f.value, f.budget);
        self.0.push(f);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `taskset -c CPU` when available, so that the daemon and the simulator do not share a core.
fn pinned(cpu: &str) -> Command {
    pinned_program(cpu, Path::new(bin()))
}

/// `program` on core `cpu` (when `taskset` is available).
fn pinned_program(cpu: &str, program: &Path) -> Command {
    if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_simulator() -> (Proc, String) {
    let port = free_port();
    let child = pinned("1")
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("127.0.0.1:{port}");
    wait(
        || std::net::TcpStream::connect(&base).is_ok(),
        Duration::from_secs(10),
    );
    (Proc(child), base)
}

fn wait(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// (resident KiB, peak resident KiB) of a process.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used, all its threads (those ended too), from
/// its CPU clock: to the nanosecond, where `/proc/PID/stat` counts 10 ms ticks. Falls back
/// to the ticks where the clock cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write through the pointers given, to locals that outlive them.
    let read = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut now) == 0
    };
    if read {
        return now.tv_sec as f64 + now.tv_nsec as f64 / 1e9;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Daemon {
    proc: Proc,
    dashboard: String,
    db: PathBuf,
    /// Spawn to READY=1.
    ready_after: Duration,
}

/// Every version-2 feature the product has, for a benchmark run (SPEC §11: no budget met by
/// turning one off): the status page poller (on the simulator's Statuspage), two named email
/// channels with routes, a maintenance window, and (see `start_daemon`) a silence. Headroom
/// and slowness detection are on by default and stay on.
fn v2_features(sim: &str, smtp_port: u16) -> String {
    let mut s = format!(
        "[upstream_status]\nurl = \"http://{sim}/_sim/status/summary.json\"\ninterval = \"30s\"\n\n\
         [alerts]\ngroup_wait = \"0s\"\n\n"
    );
    for name in ["oncall", "security"] {
        s.push_str(&format!(
            "[[alerts.email]]\nname = \"{name}\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\n\
             tls = \"none\"\nfrom = \"w@example.com\"\nto = [\"{name}@example.com\"]\n\n"
        ));
    }
    s.push_str(
        "[[alerts.routes]]\ncategories = [\"auth\"]\nchannels = [\"security\"]\ncontinue = true\n\n\
         [[alerts.routes]]\nchannels = [\"oncall\"]\n\n\
         [[maintenance]]\nname = \"weekly\"\ntargets = [\"nightly-*\"]\nweekly = \"sun 02:00-04:00\"\n\n",
    );
    s
}

/// Starts the daemon pinned to core 0 and waits for READY=1 on a notify socket. Unless the
/// config has its own `[alerts]`, every version-2 feature is configured (`v2_features`, with
/// an SMTP port nobody listens on: these runs send no email).
fn start_daemon(dir: &Path, config: &str) -> Daemon {
    let port = free_port();
    let db = dir.join("watch.db");
    let config_path = dir.join("bench.toml");
    let features = if config.contains("[alerts]") {
        String::new()
    } else {
        let sim = config
            .split("base_url = \"http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("127.0.0.1:9");
        v2_features(sim, free_port())
    };
    // A silence that matches no target of the run, so that every alert path still runs.
    silence_in(&db);
    let text = format!(
        "[agent]\nlocation = \"bench\"\n\n[storage]\npath = \"{}\"\n\n[dashboard]\nlisten = \"127.0.0.1:{port}\"\n\n{features}{config}",
        db.display()
    );
    std::fs::write(&config_path, text).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = notify_socket(&socket_path);
    let started = Instant::now();
    let child = pinned("0")
        .args(["--config", config_path.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("K", "sk-bench-0000000000000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&socket);
    Daemon {
        proc: Proc(child),
        dashboard: format!("http://127.0.0.1:{port}"),
        db,
        ready_after: started.elapsed(),
    }
}

/// A socket at `path` for a daemon to say READY=1 on (`NOTIFY_SOCKET`).
fn notify_socket(path: &Path) -> UnixDatagram {
    let _ = std::fs::remove_file(path);
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    socket
}

/// Waits for READY=1 on a notify socket (60 s at the most).
fn wait_ready(socket: &UnixDatagram) {
    let mut buf = [0u8; 512];
    loop {
        let n = socket.recv(&mut buf).expect("READY=1 within 60 s");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            return;
        }
    }
}

/// Stores a silence (for `nightly-*`, a week long) in the database at `db`, made if missing.
fn silence_in(db: &Path) {
    let db = db.to_path_buf();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = Store::open(&db).await.unwrap();
                let now = openai_watch::clock::now_ms();
                let silence = openai_watch::silence::NewSilence {
                    target: "nightly-*".into(),
                    category: "*".into(),
                    error_id: "*".into(),
                    location: "*".into(),
                    starts_at_ms: now,
                    ends_at_ms: now + 7 * DAY_MS,
                    comment: "benchmark".into(),
                };
                if store.silences(now, false).await.unwrap().is_empty() {
                    store.add_silence(&silence, "bench", now).await.unwrap();
                }
                store.close().await;
            })
    })
    .join()
    .unwrap();
}

fn targets_toml(sim: &str, n: usize, interval: &str, path: impl Fn(usize) -> String) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "[[targets]]\nname = \"t{i}\"\nbase_url = \"http://{sim}{}\"\napi_key_env = \"K\"\ntimeout = \"10s\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"{interval}\"\n",
            path(i)
        ));
    }
    s
}

async fn probe_count(db: &Path) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("select count(*) from probes")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How much of `src/hot-code.txt` (the code laid out together, see `src/build.rs`) the
/// binary still has under the same names: a stale list costs resident memory.
fn hot_code_coverage(report: &mut Report) {
    let list = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/hot-code.txt"))
        .unwrap_or_default();
    let value = match Command::new("nm").args(["--defined-only", bin()]).output() {
        Ok(out) if out.status.success() => {
            let defined: std::collections::HashSet<&str> = std::str::from_utf8(&out.stdout)
                .unwrap_or("")
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .collect();
            let names: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
            let found = names.iter().filter(|n| defined.contains(*n)).count();
            format!(
                "{found} of {} functions ({:.0} %)",
                names.len(),
                100.0 * found as f64 / names.len().max(1) as f64
            )
        }
        _ => "nm not found".into(),
    };
    report.add(
        "hot code laid out together (`benches/hot-code.sh` renews the list)",
        value,
        "(no budget)",
        None,
    );
}

/// Memory at 10, 100 and 1 000 targets, each probed every 60 s (the default interval).
async fn memory_figures(report: &mut Report, sim: &str, settle: Duration) {
    hot_code_coverage(report);
    for (n, budget) in [(10, "<= 10 MiB"), (100, "<= 10 MiB"), (1000, "(no budget)")] {
        let dir = tempfile::tempdir().unwrap();
        let d = start_daemon(
            dir.path(),
            &targets_toml(sim, n, "60s", |_| "/s/ok/v1".into()),
        );
        // The first round of probes is spread over the first minute; measure after it.
        std::thread::sleep(settle);
        let (rss, hwm) = memory(d.proc.pid());
        let limit = (n <= 100).then_some(rss <= 10 * 1024);
        report.add(
            format!("resident memory, {n} targets, steady"),
            mib(rss),
            budget,
            limit,
        );
        report.add(
            format!("resident memory, {n} targets, peak"),
            mib(hwm),
            "",
            None,
        );
        d.proc.terminate();
    }
}

/// Requests in the simulator's log whose path starts with `prefix`, made at or after `since_ms`.
async fn simulator_requests(sim: &str, prefix: &str, since_ms: i64) -> usize {
    let body = reqwest::get(format!("http://{sim}/_sim/requests"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log: serde_json::Value = serde_json::from_str(&body).unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        .filter(|r| r["at_ms"].as_i64().is_some_and(|t| t >= since_ms))
        .count()
}

/// The peer's resident memory (MiB) and CPU per 1 000 probes with `n` targets at 1/s.
async fn peer_throughput(peer: &peer::Peer, sim: &str, n: usize, window: Duration) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let p = peer.start(dir.path(), sim, n);
    std::thread::sleep(Duration::from_secs(3));
    let (t0, c0) = (openai_watch::clock::now_ms(), cpu_seconds(p.proc.pid()));
    std::thread::sleep(window);
    let c1 = cpu_seconds(p.proc.pid());
    let probes = simulator_requests(sim, &p.prefix, t0).await;
    let rss = p.resident_kib() as f64 / 1024.0;
    p.proc.terminate();
    (rss, (c1 - c0) / (probes.max(1) as f64) * 1000.0)
}

/// CPU per 1 000 probes and resident memory with N targets at 1/s (beside the peer's, when
/// it is installed), and the sustained rate with 1 000 targets on one core.
async fn throughput_figures(
    report: &mut Report,
    sim: &str,
    window: Duration,
    peer: Option<&peer::Peer>,
) {
    // N targets every second, storage and detection included (10 % of them failing).
    for n in [10, 100] {
        let dir = tempfile::tempdir().unwrap();
        let d = start_daemon(
            dir.path(),
            &targets_toml(sim, n, "1s", |i| {
                if i % 10 == 0 {
                    "/s/server_error/v1".into()
                } else {
                    "/s/ok/v1".into()
                }
            }),
        );
        std::thread::sleep(Duration::from_secs(3));
        let (p0, c0) = (probe_count(&d.db).await, cpu_seconds(d.proc.pid()));
        // At 10 probes/s a longer window, for as many probes to count.
        let measured = if n == 10 { window * 3 } else { window };
        std::thread::sleep(measured);
        let (p1, c1) = (probe_count(&d.db).await, cpu_seconds(d.proc.pid()));
        let per_1000 = (c1 - c0) / ((p1 - p0).max(1) as f64) * 1000.0;
        let (rss, _) = memory(d.proc.pid());
        d.proc.terminate();
        let theirs = match peer {
            Some(peer) => Some(peer_throughput(peer, sim, n, measured).await),
            None => None,
        };
        report.add(
            format!("CPU per 1 000 probes ({n} targets at 1/s, 10 % failing)"),
            peer::beside(per_1000, theirs.map(|t| t.1), |v| format!("{v:.3} CPU-s")),
            "<= 0.2 CPU-s",
            Some(per_1000 <= 0.2),
        );
        let rss_mib = rss as f64 / 1024.0;
        report.add(
            format!("resident memory, {n} targets at 1/s"),
            peer::beside(rss_mib, theirs.map(|t| t.0), |v| format!("{v:.1} MiB")),
            "<= 10 MiB",
            Some(rss <= 10 * 1024),
        );
    }

    // 1 000 targets with three probes each every second (3 000 asked per second), daemon
    // pinned to one core: the ceiling it sustains.
    let dir = tempfile::tempdir().unwrap();
    let d = start_daemon(
        dir.path(),
        &targets_toml(sim, 1000, "1s", |_| "/s/ok/v1".into()).replace(
            "[[targets.probes]]\nkind = \"models\"\ninterval = \"1s\"\n",
            "[[targets.probes]]\nkind = \"models\"\ninterval = \"1s\"\n\
             [[targets.probes]]\nkind = \"chat\"\ninterval = \"1s\"\n\
             [[targets.probes]]\nkind = \"embeddings\"\ninterval = \"1s\"\n",
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (p0, t0) = (probe_count(&d.db).await, Instant::now());
    std::thread::sleep(window);
    let (p1, t1) = (probe_count(&d.db).await, Instant::now());
    let rate = (p1 - p0) as f64 / (t1 - t0).as_secs_f64();
    report.add(
        "sustained probe rate, 1 000 targets x 3 probes at 1/s, one core",
        format!("{rate:.0} probes/s"),
        ">= 2 000 probes/s",
        Some(rate >= 2000.0),
    );
    let (rss, _) = memory(d.proc.pid());
    report.add(
        "resident memory, 1 000 targets x 3 probes at 1/s",
        mib(rss),
        "(no budget)",
        None,
    );
    d.proc.terminate();
}

/// A year of 1-minute history for `targets` targets as default retention leaves it: raw rows
/// for the last 14 days, hourly rollups for the whole year. Written through the store.
async fn year_of_history(path: &Path, targets: usize, now: i64) -> Duration {
    let started = Instant::now();
    let store = Store::open(path).await.unwrap();
    let raw_from = now - 14 * DAY_MS;
    let year_from = now - 365 * DAY_MS;
    for t in 0..targets {
        let name = format!("t{t}");
        let mut batch = Vec::with_capacity(10_000);
        let mut at = raw_from;
        while at < now {
            // One minute in a hundred fails.
            let id = if (at / MINUTE_MS) % 100 == 7 {
                "server_error"
            } else {
                "ok"
            };
            batch.push(observation(&name, id, at));
            if batch.len() == 10_000 {
                store.insert_probes("bench", &batch).await.unwrap();
                batch.clear();
            }
            at += MINUTE_MS;
        }
        store.insert_probes("bench", &batch).await.unwrap();
        let rollups: Vec<RollupRow> = (0..)
            .map(|h| year_from - year_from.rem_euclid(HOUR_MS) + h * HOUR_MS)
            .take_while(|hour| *hour < raw_from - raw_from.rem_euclid(HOUR_MS))
            .flat_map(|hour| {
                [
                    RollupRow {
                        probe: Some(ProbeKind::Models),
                        category: Category::Ok,
                        hour_ms: hour,
                        count: 59,
                        latency_sum_ms: 59 * 200,
                        latency_max_ms: 400,
                        used_max: Some(0.002),
                    },
                    RollupRow {
                        probe: Some(ProbeKind::Models),
                        category: Category::Outage,
                        hour_ms: hour,
                        count: 1,
                        latency_sum_ms: 300,
                        latency_max_ms: 300,
                        used_max: None,
                    },
                ]
            })
            .collect();
        store.add_rollups(&name, &rollups).await.unwrap();
    }
    store.close().await;
    started.elapsed()
}

fn db_size(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| std::fs::metadata(format!("{}{s}", path.display())).map_or(0, |m| m.len()))
        .sum()
}

async fn latencies(http: &reqwest::Client, url: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.get(url).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// The peer's status page with 20 targets: p95 latency in ms over `requests` requests.
async fn peer_page_p95(peer: &peer::Peer, sim: &str, requests: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let p = peer.start(dir.path(), sim, 20);
    // A few polls first, so that the page shows every replica's state.
    std::thread::sleep(Duration::from_secs(3));
    let http = reqwest::Client::new();
    latencies(&http, &p.page, 20).await;
    let l = latencies(&http, &p.page, requests).await;
    p.proc.terminate();
    percentile(&l, 0.95)
}

/// Page latency, database size and start-to-READY on a year of history.
async fn history_figures(
    report: &mut Report,
    sim: &str,
    requests: usize,
    peer: Option<&peer::Peer>,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("watch.db");
    let now = openai_watch::clock::now_ms();
    let took = year_of_history(&db, 20, now).await;
    report.add(
        "generating 20 targets x 1 year (14 d raw + rollups)",
        format!("{:.1} s", took.as_secs_f64()),
        "",
        None,
    );
    if let Some(keep) = std::env::var_os("OPENAI_WATCH_BENCH_KEEP_DB") {
        // For profiling by hand: a copy of the year of history.
        std::fs::copy(&db, keep).unwrap();
    }
    let size = db_size(&db);
    report.add(
        "database size, 20 targets x 1 year, default retention",
        format!("{:.1} MB", size as f64 / 1e6),
        "<= 50 MB",
        Some(size <= 50_000_000),
    );

    // READY time on that database (median of 5 starts).
    let config = targets_toml(sim, 20, "60s", |_| "/s/ok/v1".into());
    let mut ready = Vec::new();
    for _ in 0..5 {
        let d = start_daemon(dir.path(), &config);
        ready.push(d.ready_after.as_secs_f64() * 1000.0);
        d.proc.terminate();
    }
    ready.sort_by(|a, b| a.partial_cmp(b).unwrap());
    report.add(
        "start to READY on that database (median of 5)",
        format!("{:.0} ms", ready[2]),
        "<= 50 ms",
        Some(ready[2] <= 50.0),
    );

    let d = start_daemon(dir.path(), &config);
    openai_watch::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    // Both of ours first, then the peer's page: the peer shares our core, and measuring
    // ours right after it measured its aftermath.
    let mut ours = Vec::new();
    for (path, label, budget_ms) in [("/", "/", 1.0), ("/api/v1/status", "/api/v1/status", 0.5)] {
        let url = format!("{}{path}", d.dashboard);
        let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        let gz = http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let kib = body.len() as f64 / 1024.0;
        report.add(
            format!("{label} size (gzip for clients that ask)"),
            format!("{kib:.0} KiB ({:.0} KiB)", gz.len() as f64 / 1024.0),
            if path == "/" { "<= 64 KiB" } else { "" },
            (path == "/").then_some(kib <= 64.0),
        );
        latencies(&http, &url, 20).await; // warm up
        ours.push((
            path,
            label,
            budget_ms,
            latencies(&http, &url, requests).await,
        ));
    }
    d.proc.terminate();
    for (path, label, budget_ms, l) in ours {
        let p95 = percentile(&l, 0.95);
        let theirs = match peer {
            Some(peer) if path == "/" => Some(peer_page_p95(peer, sim, requests).await),
            _ => None,
        };
        report.add(
            format!("{label} latency p50 / p95 / p99 ({requests} requests)"),
            format!(
                "{:.2} / {} / {:.2} ms",
                percentile(&l, 0.5),
                peer::beside(p95, theirs, |v| format!("{v:.2}")),
                percentile(&l, 0.99)
            ),
            if path == "/" {
                "p95 <= 1 ms"
            } else {
                "p95 <= 0.5 ms"
            },
            Some(p95 <= budget_ms),
        );
    }
}

/// Failing probe → email accepted by a local SMTP server, with group_wait = 0.
async fn alert_latency(report: &mut Report, sim: &str, samples: usize) {
    openai_watch::tls::install_crypto_provider();
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        v2_features(sim, smtp.port),
        targets_toml(sim, samples, "1s", |i| format!("/t/alert{i}/v1"))
    );
    let d = start_daemon(dir.path(), &config);
    let http = reqwest::Client::new();
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    for i in 0..samples {
        // Flip one target to a revoked key; the time the simulator answered the first failing
        // probe is the start, the SMTP server's acceptance of the email the end.
        let before = smtp.mails().len();
        http.put(format!("http://{sim}/_sim/tags/alert{i}"))
            .body("invalid_api_key")
            .send()
            .await
            .unwrap();
        let flipped = openai_watch::clock::now_ms();
        let got = wait(|| smtp.mails().len() > before, Duration::from_secs(30));
        assert!(got, "no email for target {i}");
        // The routes send an auth alert to two channels: the first email is the figure; the
        // next sample starts once the second went out too, with the notifier idle again.
        wait(|| smtp.mails().len() >= before + 2, Duration::from_secs(30));
        let email_at = openai_watch::clock::now_ms()
            - smtp
                .mails()
                .get(before)
                .map_or(0, |m| m.accepted_at.elapsed().as_millis() as i64);
        let log: serde_json::Value = serde_json::from_str(
            &http
                .get(format!("http://{sim}/_sim/requests"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let failing_at = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("/t/alert{i}/")))
                    && r["scenario"] == "invalid_api_key"
            })
            .filter_map(|r| r["at_ms"].as_i64())
            .filter(|t| *t >= flipped)
            .min()
            .unwrap_or(flipped);
        latencies.push((email_at - failing_at) as f64);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p95 = percentile(&latencies, 0.95);
    report.add(
        format!("failing probe -> email accepted, p50 / p95 ({samples} alerts)"),
        format!("{:.0} / {:.0} ms", percentile(&latencies, 0.5), p95),
        "<= 60 ms",
        Some(p95 <= 60.0),
    );
    d.proc.terminate();
}

/// The classifier on the reference bodies, in this process.
fn classifier_throughput(report: &mut Report) {
    let bodies: Vec<(u16, &[u8])> = vec![
        (401, br#"{"error":{"message":"Incorrect API key provided: sk-abc12***wxyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#),
        (429, br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#),
        (503, br#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#),
        (403, b"<html><head><title>Attention Required! | Cloudflare</title></head><body>blocked</body></html>"),
        (200, br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}"#),
    ];
    let n = 200_000;
    let t = Instant::now();
    let mut ok = 0;
    for i in 0..n {
        let (status, body) = bodies[i % bodies.len()];
        if catalog::classify(status, std::hint::black_box(body), Expect::List)
            .entry
            .is_ok()
        {
            ok += 1;
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ok, n / bodies.len());
    report.add(
        "classifier throughput (reference bodies)",
        format!("{:.0} answers/s", rate),
        "",
        None,
    );
}

/// Baselines: one transaction per probe vs batches; the 90-day bar from raw rows vs rollups.
async fn baselines(report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("b.db")).await.unwrap();
    let now = openai_watch::clock::now_ms();
    let batch: Vec<Observation> = (0..5000)
        .map(|i| observation("t0", "ok", now - i * 1000))
        .collect();
    let t = Instant::now();
    store
        .insert_probes_one_by_one("bench", &batch)
        .await
        .unwrap();
    let naive = batch.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in batch.chunks(512) {
        store.insert_probes("bench", chunk).await.unwrap();
    }
    let batched = batch.len() as f64 / t.elapsed().as_secs_f64();
    report.add(
        "store: one transaction per probe (naive)",
        format!("{naive:.0} probes/s"),
        "",
        None,
    );
    report.add(
        "store: batches of 512 (the daemon's design)",
        format!("{batched:.0} probes/s"),
        "",
        None,
    );

    // 90 days of 1-minute raw rows for one target, and their rollups.
    let obs: Vec<Observation> = (0..90 * 1440)
        .map(|i| {
            observation(
                "t1",
                if i % 100 == 7 { "server_error" } else { "ok" },
                now - i * MINUTE_MS,
            )
        })
        .collect();
    for chunk in obs.chunks(10_000) {
        store.insert_probes("bench", chunk).await.unwrap();
    }
    let since = now - 90 * DAY_MS;
    let t = Instant::now();
    let raw_rows = store
        .daily_counts_from_raw("t1", since)
        .await
        .unwrap()
        .len();
    let raw_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let roll_rows = store.rollups("t1", since).await.unwrap().len();
    let roll_ms = t.elapsed().as_secs_f64() * 1000.0;
    report.add(
        format!("90-day bar from raw rows (scan, {raw_rows} groups)"),
        format!("{raw_ms:.1} ms"),
        "",
        None,
    );
    report.add(
        format!("90-day bar from hourly rollups ({roll_rows} rows)"),
        format!("{roll_ms:.1} ms"),
        "",
        None,
    );
    store.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only NAME` runs one section: classifier, baselines, memory, throughput, alerts,
    // history, fleet.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "openai-watch benchmark ({}; {} cores)",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    openai_watch::tls::install_crypto_provider();
    println!("  daemon: {}", bin());
    let peer = peer::Peer::find();
    match &peer {
        Ok(_) => println!("  peer: vigil, run beside us on the same simulator and core"),
        Err(peer::Missing::NotOnPath) => println!(
            "  peer: `vigil` not found on PATH (`cargo install vigil-server --locked`): absolute figures only"
        ),
        Err(peer::Missing::NoAssets(bin)) => println!(
            "  peer: {} found, but not its page assets (set VIGIL_ASSETS to its res/assets): absolute figures only",
            bin.display()
        ),
    }
    let peer = peer.ok();
    let mut report = Report(Vec::new());
    let started = Instant::now();
    runtime.block_on(async {
        let (sim, base) = start_simulator();
        if run("classifier") {
            classifier_throughput(&mut report);
        }
        if run("baselines") {
            baselines(&mut report).await;
        }
        if run("memory") {
            memory_figures(
                &mut report,
                &base,
                Duration::from_secs(if quick { 15 } else { 70 }),
            )
            .await;
        }
        if run("throughput") {
            throughput_figures(
                &mut report,
                &base,
                Duration::from_secs(if quick { 5 } else { 20 }),
                peer.as_ref(),
            )
            .await;
        }
        if run("alerts") {
            alert_latency(&mut report, &base, if quick { 5 } else { 20 }).await;
        }
        if run("history") {
            history_figures(
                &mut report,
                &base,
                if quick { 100 } else { 500 },
                peer.as_ref(),
            )
            .await;
        }
        if run("fleet") {
            fleet::fleet_figures(
                &mut report,
                &base,
                Duration::from_secs(if quick { 10 } else { 60 }),
            )
            .await;
        }
        sim.terminate();
    });
    let missed: Vec<&str> = report
        .0
        .iter()
        .filter(|f| f.ok == Some(false))
        .map(|f| f.name.as_str())
        .collect();
    println!(
        "took {:.0} s; budgets missed: {}",
        started.elapsed().as_secs_f64(),
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join("; ")
        }
    );
}
