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

    let http = http_client();
    let categories = [
        "auth",
        "quota",
        "region",
        "outage",
        "overload",
        "rate_limit",
        "headroom",
        "slow",
    ];
    // The page shows a category as a badge (latest probe, recent incidents) or as the border
    // of an open incident.
    let shown = eventually_within(
        std::time::Duration::from_secs(180),
        "the page to show five categories",
        || async {
            let page = http
                .get(format!("{url}/"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let shown: HashSet<&str> = categories
                .into_iter()
                .filter(|c| {
                    page.contains(&format!("badge c-{c}\""))
                        || page.contains(&format!("c-border-{c}\""))
                })
                .collect();
            (shown.len() >= 5).then_some(shown)
        },
    )
    .await;
    let recorded = eventually_within(
        std::time::Duration::from_secs(180),
        "incidents of five categories",
        || async {
            let body = http
                .get(format!("{url}/api/v1/incidents"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let incidents: serde_json::Value = serde_json::from_str(&body).ok()?;
            let recorded: HashSet<String> = incidents
                .as_array()?
                .iter()
                .filter_map(|i| i["category"].as_str().map(str::to_string))
                .collect();
            (recorded.len() >= 5).then_some(recorded)
        },
    )
    .await;
    assert!(
        recorded.iter().all(|c| categories.contains(&c.as_str())),
        "{recorded:?}"
    );
    eprintln!("the page showed {shown:?}; incidents of {recorded:?}");
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
