//! `demo` starts the simulator, the daemon and the dashboard in one process, prints the URL,
//! and within three minutes the page shows at least five categories.

use crate::helpers::*;
use std::collections::HashSet;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_demo_prints_its_url_and_walks_through_five_categories() {
    let ws = Workspace::new();
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(ws.dir.path())
        .env_remove("OPENAI_WATCH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the demo printed")
        .unwrap()
        .unwrap();
    let url = first
        .split("dashboard at ")
        .nth(1)
        .expect("the URL is printed")
        .trim()
        .trim_end_matches('/')
        .to_string();

    openai_watch::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let start = tokio::time::Instant::now();
    let mut seen = HashSet::new();
    while seen.len() < 5 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "only {seen:?} within 3 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Ok(r) = http.get(format!("{url}/api/v1/incidents")).send().await else {
            continue;
        };
        let incidents: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        seen.extend(
            incidents
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["category"].as_str().unwrap().to_string()),
        );
    }
    let page = http
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown: HashSet<&str> = [
        "auth",
        "quota",
        "region",
        "outage",
        "overload",
        "rate_limit",
    ]
    .into_iter()
    .filter(|c| page.contains(&format!("badge c-{c}\"")))
    .collect();
    assert!(shown.len() >= 5, "the page shows {shown:?}");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
