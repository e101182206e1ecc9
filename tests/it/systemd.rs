//! Running under systemd: sd_notify messages over a real Unix datagram socket, SIGHUP
//! reloads, retention, and the unit file itself (systemd-analyze).

use crate::helpers::*;
use openai_watch::probe::Observation;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects every datagram sent to a socket the test owns.
fn notify_socket(path: &std::path::Path) -> Arc<Mutex<Vec<String>>> {
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Arc::strong_count(&sink) == 1 {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    messages
}

#[tokio::test]
async fn the_daemon_tells_systemd_ready_watchdog_status_and_stopping() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let socket = ws.dir.path().join("notify.sock");
    let messages = notify_socket(&socket);
    let config = ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: sim.base_url("insufficient_quota"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("chat", "1s")],
        }
        .toml(),
    );
    let daemon = Daemon::start(
        &config,
        &[
            ("K", "sk-notify-test-000000"),
            ("NOTIFY_SOCKET", socket.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let all = |pred: &dyn Fn(&str) -> bool| {
        messages
            .lock()
            .unwrap()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| pred(l))
            .count()
    };
    wait_for("READY=1", || all(&|l| l == "READY=1") == 1).await;
    assert!(
        all(&|l| l == "STATUS=1 target, 0 open incidents") == 1,
        "{:?}",
        messages.lock().unwrap()
    );
    wait_for("three WATCHDOG=1 pings", || {
        all(&|l| l == "WATCHDOG=1") >= 3
    })
    .await;
    wait_for("a STATUS= line after the quota incident opened", || {
        all(&|l| l == "STATUS=1 target, 1 open incident") >= 1
    })
    .await;
    let stop = Instant::now();
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        stop.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        stop.elapsed()
    );
    assert_eq!(all(&|l| l == "STOPPING=1"), 1);
    let ready_at = messages
        .lock()
        .unwrap()
        .iter()
        .position(|m| m.contains("READY=1"))
        .unwrap();
    assert_eq!(
        ready_at, 0,
        "READY=1 comes first, after migrations and the listener"
    );
}

#[tokio::test]
async fn sighup_adds_a_target_and_a_broken_config_is_refused_while_probing_goes_on() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let first = TargetSpec {
        name: "first",
        base_url: sim.tag_url("first"),
        key_env: Some("K"),
        timeout: "10s",
        probes: &[("models", "1s")],
    }
    .toml();
    let second = TargetSpec {
        name: "second",
        base_url: sim.tag_url("second"),
        key_env: Some("K"),
        timeout: "10s",
        probes: &[("models", "1s")],
    }
    .toml();
    let config = ws.write_config(&first);
    let daemon = Daemon::start(&config, &[("K", "sk-reload-test-000000")]);
    let url = daemon.dashboard_url().await;
    let count = |tag: &str| {
        sim.state
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(&format!("/t/{tag}/")))
            .count()
    };
    wait_for("the first target to be probed", || count("first") >= 1).await;

    ws.write_config(&format!("{first}{second}"));
    daemon.signal("HUP");
    wait_for("the added target to be probed", || count("second") >= 2).await;
    openai_watch::tls::install_crypto_provider();
    let status: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("{url}/api/v1/status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        status["targets"].as_array().unwrap().len(),
        2,
        "the API sees the new target"
    );

    std::fs::write(&config, "[[targets]]\nname = \"broken\nbase_url = 1\n").unwrap();
    daemon.signal("HUP");
    wait_for("the refusal in the log", || {
        daemon
            .stderr
            .lock()
            .unwrap()
            .contains("config reload refused")
    })
    .await;
    let (a, b) = (count("first"), count("second"));
    wait_for("probing to go on with the old config", || {
        count("first") >= a + 3 && count("second") >= b + 3
    })
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    let refusal = log
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap();
    assert!(
        refusal.contains("openai-watch.toml:2:"),
        "the refusal names file:line: {refusal}"
    );
}

#[tokio::test]
async fn old_raw_rows_are_pruned_while_rollups_and_the_90_day_bars_keep_them() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let now = openai_watch::clock::now_ms();
    let day = 86_400_000;
    let ten_days_ago = now - 10 * day;
    {
        let store = openai_watch::store::Store::open(&ws.db()).await.unwrap();
        let old: Vec<Observation> = (0..30)
            .map(|i| observation("prod", "server_error", ten_days_ago + i * 1000))
            .collect();
        store.insert_probes("test-lab", &old).await.unwrap();
        let older: Vec<Observation> = (0..5)
            .map(|i| observation("prod", "server_error", now - 500 * day + i))
            .collect();
        store.insert_probes("test-lab", &older).await.unwrap();
        store.close().await;
    }
    let config = ws.write_config_with_storage(
        "raw_retention = \"1d\"\nrollup_retention = \"400d\"\n",
        &TargetSpec {
            name: "prod",
            base_url: sim.base_url("ok"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml(),
    );
    let daemon = Daemon::start(&config, &[("K", "sk-retention-test-00000")]);
    let url = daemon.dashboard_url().await;
    wait_for("the pruning log line", || {
        daemon
            .stderr
            .lock()
            .unwrap()
            .contains("pruned rows past retention")
    })
    .await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", ws.db().display()))
        .await
        .unwrap();
    let (old_raw,): (i64,) = sqlx::query_as("select count(*) from probes where at_ms < ?")
        .bind(now - day)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(old_raw, 0, "raw rows older than raw_retention are gone");
    let (kept,): (i64,) = sqlx::query_as(
        "select coalesce(sum(count), 0) from rollups where category = 'outage' and hour_ms < ?",
    )
    .bind(now - day)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        kept, 30,
        "the rollups of the last 400 days keep the counts; older ones are pruned"
    );
    pool.close().await;

    openai_watch::tls::install_crypto_provider();
    let page = reqwest::get(format!("{url}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("class=\"c-outage\"><title>outage: 1 of 90 days</title>"),
        "the 90-day bar still shows that day"
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
}

fn systemd_analyze() -> Option<&'static str> {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is required in CI (.ci/run installs systemd)"
        );
        eprintln!("SKIPPED: systemd-analyze not installed");
        return None;
    }
    Some("systemd-analyze")
}

#[test]
fn the_unit_file_verifies_and_its_exposure_is_at_most_2() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/openai-watch.service");
    let out = std::process::Command::new(tool)
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 2.0, "exposure {score}: {line}");

    // verify, with the binary path of this build
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("openai-watch.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/bin/openai-watch", BIN);
    std::fs::write(&copy, text).unwrap();
    let out = std::process::Command::new(tool)
        .arg("verify")
        // The man page named by Documentation= is installed by the package, not here.
        .arg("--man=no")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
