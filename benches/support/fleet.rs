//! SPEC §11, last row: three agents (release binaries, separate processes) with 100 targets
//! each at 1/s, every version-2 feature on, writing to one local PostgreSQL (the tests'
//! throwaway cluster). Measured from outside: the lag from a probe's answer to its row being
//! visible in the database, and that every probe made was stored.

use super::{
    Proc, Report, bin, free_port, notify_socket, percentile, targets_toml, v2_features, wait_ready,
};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOCATIONS: [&str; 3] = ["fra-1", "iad-1", "sfo-1"];

/// Starts one agent and waits for READY=1; returns it and its dashboard URL.
fn start_agent(dir: &std::path::Path, location: &str, url: &str, rest: &str) -> (Proc, String) {
    let port = free_port();
    let config = dir.join(format!("{location}.toml"));
    std::fs::write(
        &config,
        format!(
            "[agent]\nlocation = \"{location}\"\n\n[storage]\nurl = \"{url}\"\n\n\
             [dashboard]\nlisten = \"127.0.0.1:{port}\"\n\n{rest}"
        ),
    )
    .unwrap();
    let socket_path = dir.join(format!("{location}.sock"));
    let socket = notify_socket(&socket_path);
    let child = Command::new(bin())
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("K", "sk-bench-0000000000000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&socket);
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// The probes an agent has made (and handed to its recorder), from its metrics.
async fn probes_made(http: &reqwest::Client, dashboard: &str) -> f64 {
    let text = http
        .get(format!("{dashboard}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("openai_watch_probes_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

pub async fn fleet_figures(report: &mut Report, sim: &str, window: Duration) {
    let url = super::helpers::postgres::cluster().fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let rest = v2_features(sim, free_port())
        + &targets_toml(sim, 100, "1s", |i| {
            if i % 10 == 0 {
                "/s/server_error/v1".into()
            } else {
                "/s/ok/v1".into()
            }
        });
    let agents: Vec<(Proc, String)> = LOCATIONS
        .iter()
        .map(|l| start_agent(dir.path(), l, &url, &rest))
        .collect();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // Settle, then watch new rows appear: every 50 ms, the rows not seen yet (ids are given
    // at insert, rows become visible at commit: look back 5 000 ids).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut seen: HashSet<i64> = HashSet::new();
    let mut lags: Vec<f64> = Vec::new();
    let mut last = sqlx::query_scalar::<_, Option<i64>>("select max(id) from probes")
        .fetch_one(&pool)
        .await
        .unwrap()
        .unwrap_or(0);
    let initial = last;
    let started = Instant::now();
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query_as("select id, at_ms, latency_ms from probes where id > $1")
                .bind(last - 5_000)
                .fetch_all(&pool)
                .await
                .unwrap();
        let now = openai_watch::clock::now_ms();
        for (id, at_ms, latency_ms) in rows {
            // Rows from before the window are not counted.
            if id > initial && seen.insert(id) {
                lags.push((now - (at_ms + latency_ms)) as f64);
            }
        }
        last = seen.iter().copied().max().unwrap_or(last);
    }
    openai_watch::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut made = 0.0;
    for (_, dashboard) in &agents {
        made += probes_made(&http, dashboard).await;
    }
    for (agent, _) in agents {
        agent.terminate();
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from probes")
        .fetch_one(&pool)
        .await
        .unwrap();
    let per_location: Vec<(String, i64)> =
        sqlx::query_as("select location, count(*) from probes group by location order by 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    lags.sort_by(f64::total_cmp);
    let p95 = percentile(&lags, 0.95);
    let all_stored = stored as f64 >= made;
    report.add(
        "PostgreSQL: 3 agents x 100 targets at 1/s, p95 probe-to-row lag",
        format!("{p95:.0} ms"),
        "<= 200 ms",
        Some(p95 <= 200.0 && all_stored),
    );
    println!(
        "    {} rows seen over {:.0} s ({:.0}/s), p50 {:.0} ms, p99 {:.0} ms (50 ms polling included); \
         stored {stored} of {made:.0} made ({}); by location {per_location:?}",
        lags.len(),
        window.as_secs_f64(),
        lags.len() as f64 / window.as_secs_f64(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        if all_stored {
            "every probe"
        } else {
            "PROBES MISSING"
        },
    );
}
