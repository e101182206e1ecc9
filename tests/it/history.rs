//! A long incident history, black-box: `/api/v1/incidents` answers it a page at a time,
//! filtered by the database, and incidents resolved before `rollup_retention` are pruned.

use crate::helpers::*;

const KEY: &str = "sk-history-test-key-000000000";

#[tokio::test]
async fn incidents_come_a_page_at_a_time_and_old_resolved_ones_are_pruned() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    ws.store().await.close().await; // the schema
    let now = openai_watch::clock::now_ms();
    let day = 86_400_000;
    // 2 500 resolved incidents: 500 resolved three days ago, 2 000 an hour ago; and one open.
    let rows: Vec<String> = (0..2500)
        .map(|i| {
            let resolved = if i < 500 { now - 3 * day } else { now - 3_600_000 };
            let target = if i % 2 == 0 { "prod" } else { "batch" };
            format!(
                "('{target}', 'outage', 'test-lab', 'models', 'server_error', 'server_error', {}, {}, 3, {resolved})",
                resolved - 60_000,
                resolved - 1_000
            )
        })
        .collect();
    let columns = "(target, category, location, probe, first_error_id, last_error_id, \
                   opened_at_ms, last_seen_at_ms, probe_count, resolved_at_ms)";
    ws.sqlite_exec(&format!(
        "insert into incidents {columns} values {}",
        rows.join(", ")
    ))
    .await;
    ws.sqlite_exec(&format!(
        "insert into incidents {columns} values ('prod', 'quota', 'test-lab', 'chat', \
             'insufficient_quota', 'insufficient_quota', {now}, {now}, 1, null)"
    ))
    .await;
    let mut targets = String::new();
    for name in ["prod", "batch"] {
        targets.push_str(
            &TargetSpec {
                name,
                base_url: sim.base_url("ok"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "60s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config_with_storage(
        "raw_retention = \"1d\"\nrollup_retention = \"2d\"\n",
        &targets,
    );
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    let url = daemon.dashboard_url().await;
    eventually("the incidents resolved three days ago pruned", || async {
        (ws.try_count("select count(*) from incidents").await == Some(2001)).then_some(())
    })
    .await;
    assert_eq!(
        ws.count(
            "select count(*) from alert_events where incident_id not in (select id from incidents)"
        )
        .await,
        0
    );

    let http = http_client();
    // Every resolved incident once, newest first, following the pages' links.
    let mut next = Some("/api/v1/incidents?state=resolved&limit=700".to_string());
    let mut ids: Vec<i64> = Vec::new();
    let mut pages = 0;
    while let Some(path) = next.take() {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        next = r
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<'))
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(p, _)| p.to_string());
        let page: Vec<serde_json::Value> = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(page.len() <= 700);
        assert!(page.iter().all(|i| !i["resolved_at"].is_null()));
        ids.extend(page.iter().map(|i| i["id"].as_i64().unwrap()));
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), 2000);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, none twice"
    );
    // Filters: open ones, one target's.
    let open = json_of(http.get(format!("{url}/api/v1/incidents?state=open"))).await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["category"], "quota");
    let batch = json_of(http.get(format!("{url}/api/v1/incidents?target=batch&limit=1000"))).await;
    assert_eq!(batch.as_array().unwrap().len(), 1000);
    assert!(
        batch
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["target"] == "batch")
    );
    // The default page is 100; a page of 0 or 5 000 is refused with the reason.
    let all = json_of(http.get(format!("{url}/api/v1/incidents"))).await;
    assert_eq!(all.as_array().unwrap().len(), 100);
    for bad in ["limit=0", "limit=5000", "before=-3", "before=x"] {
        let r = http
            .get(format!("{url}/api/v1/incidents?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
}
