//! `migrate --to`: a SQLite history (a year of hourly rollups, a day of raw probes,
//! incidents with their alerts, a silence) copied into a real PostgreSQL database by the
//! built binary, twice: the counts agree, and the second run adds nothing.

use crate::helpers::*;
use openai_watch::store::{ChannelRoute, HOUR_MS, RollupRow, Routing, Store};

const TARGETS: usize = 20;

/// Fills a SQLite database through the store, as a daemon would have.
async fn history(ws: &Workspace) {
    let config = ws.write_config(
        &TargetSpec {
            name: "t00",
            base_url: "http://127.0.0.1:9/v1".into(),
            key_env: None,
            timeout: "10s",
            probes: &[("chat", "1m")],
        }
        .toml(),
    );
    let config = openai_watch::config::Config::load(&config).unwrap();
    let store = Store::open(&ws.db()).await.unwrap();
    let now = openai_watch::clock::now_ms();
    let this_hour = now - now.rem_euclid(HOUR_MS);
    let routing = Routing {
        channels: vec![ChannelRoute {
            name: "email".into(),
            categories: vec![openai_watch::domain::Category::Auth],
        }],
        routes: Vec::new(),
        send_resolved: true,
        group_wait_ms: 0,
    };
    for t in 0..TARGETS {
        let name = format!("t{t:02}");
        // A year of hourly rollups.
        let rows: Vec<RollupRow> = (1..=365 * 24)
            .map(|h| RollupRow {
                probe: Some(openai_watch::domain::ProbeKind::Chat),
                category: openai_watch::domain::Category::Ok,
                hour_ms: this_hour - h * HOUR_MS,
                count: 60,
                latency_sum_ms: 60 * 180,
                latency_max_ms: 400,
                used_max: Some(0.2),
            })
            .collect();
        store.add_rollups(&name, &rows).await.unwrap();
        // A day of raw probes at one a minute, with a revoked key for ten minutes: one
        // incident per target, opened and resolved, with its alerts.
        let mut states = std::collections::HashMap::new();
        let start = now - 24 * 60 * 60_000;
        for chunk in (0..24 * 60).collect::<Vec<i64>>().chunks(240) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|m| {
                    let id = if (600..610).contains(m) {
                        "invalid_api_key"
                    } else {
                        "ok"
                    };
                    observation(&name, id, start + m * 60_000)
                })
                .collect();
            store
                .record("fra-1", &batch, &mut states, &config.detection, &routing)
                .await
                .unwrap();
        }
    }
    store
        .add_silence(
            &openai_watch::silence::NewSilence {
                target: "t0*".into(),
                category: "*".into(),
                error_id: "*".into(),
                location: "*".into(),
                starts_at_ms: now,
                ends_at_ms: now + 3_600_000,
                comment: "maintenance of t0x".into(),
            },
            "cli:alice",
            now,
        )
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_history_is_copied_once_whatever_the_number_of_runs() {
    let ws = Workspace::new();
    history(&ws).await;
    let target = Workspace::on(Engine::Postgres);
    let url = target.pg_url.clone().unwrap();
    let config = ws.config_path();
    let migrate = || async {
        run_cli(
            &["--config", config.to_str().unwrap(), "migrate"],
            &[("OPENAI_WATCH_MIGRATE_TO", url.as_str())],
            ws.dir.path(),
        )
        .await
    };
    let first = migrate().await;
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains(&format!("probes: {} rows", TARGETS * 24 * 60)),
        "{stdout}"
    );
    assert!(
        !stdout.contains("postgres@"),
        "no credentials in the report: {stdout}"
    );

    let from = Store::open(&ws.db()).await.unwrap();
    let into = target.store().await;
    let counts = |store: Store| async move {
        let mut out = Vec::new();
        for table in Store::copied_tables() {
            out.push((table, store.count_rows(table).await.unwrap()));
        }
        out
    };
    let expected = counts(from.clone()).await;
    assert_eq!(counts(into.clone()).await, expected);
    let by_table = |t: &str| expected.iter().find(|(n, _)| *n == t).unwrap().1;
    // A year of hourly rollups, and those of the last day's raw probes.
    assert!(
        by_table("rollups") >= (TARGETS * 365 * 24) as i64,
        "{expected:?}"
    );
    assert!(
        stdout.contains(&format!("rollups: {} rows", by_table("rollups"))),
        "{stdout}"
    );
    assert_eq!(by_table("incidents"), TARGETS as i64, "{expected:?}");
    assert_eq!(by_table("alert_events"), 2 * TARGETS as i64, "{expected:?}");
    assert_eq!(by_table("silences"), 1);

    // Again: nothing is added twice.
    let second = migrate().await;
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(counts(into.clone()).await, expected);

    // The copy is a working store: the incidents read back with their alerts, and a new row
    // gets an id after the copied ones.
    let incidents = into.incidents_page(None, None, None, 1000).await.unwrap();
    assert_eq!(incidents.len(), TARGETS);
    assert!(incidents.iter().all(|i| i.resolved_at_ms.is_some()));
    let silence = into
        .add_silence(
            &openai_watch::silence::NewSilence {
                target: "*".into(),
                category: "*".into(),
                error_id: "*".into(),
                location: "*".into(),
                starts_at_ms: 1,
                ends_at_ms: 2,
                comment: "after".into(),
            },
            "test",
            1,
        )
        .await
        .unwrap();
    assert_eq!(silence.id, 2);
    from.close().await;
    into.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_database_holding_another_history_and_a_bad_url() {
    let ws = Workspace::new();
    let config = ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: "http://127.0.0.1:9/v1".into(),
            key_env: None,
            timeout: "10s",
            probes: &[("models", "1m")],
        }
        .toml(),
    );
    let store = Store::open(&ws.db()).await.unwrap();
    store
        .insert_probes("lab", &[observation("prod", "ok", 1_000)])
        .await
        .unwrap();
    store.close().await;
    // Another installation's history is already there.
    let other = Workspace::on(Engine::Postgres);
    let theirs = other.store().await;
    theirs
        .insert_probes("iad-1", &[observation("prod", "ok", 2_000)])
        .await
        .unwrap();
    theirs.close().await;
    let url = other.pg_url.clone().unwrap();
    let out = run_cli(
        &[
            "--config",
            config.to_str().unwrap(),
            "migrate",
            "--to",
            &url,
        ],
        &[],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already holds another history"), "{stderr}");
    assert_eq!(other.count("select count(*) from probes").await, 1);

    let out = run_cli(
        &[
            "--config",
            config.to_str().unwrap(),
            "migrate",
            "--to",
            "mysql://db/x",
        ],
        &[],
        ws.dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a PostgreSQL URL"));
}

/// Run again after an agent wrote into the database and the SQLite history changed: the
/// changed rows are brought up to date, the agent's rows are kept, and the rows whose ids
/// it took are reported, with a failing exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_updates_changed_rows_and_reports_what_it_could_not_copy() {
    let ws = Workspace::new();
    let config = ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: "http://127.0.0.1:9/v1".into(),
            key_env: None,
            timeout: "10s",
            probes: &[("models", "1m")],
        }
        .toml(),
    );
    let store = Store::open(&ws.db()).await.unwrap();
    let routing = Routing {
        channels: Vec::new(),
        routes: Vec::new(),
        send_resolved: true,
        group_wait_ms: 0,
    };
    let t0 = 1_700_000_000_000;
    let mut states = std::collections::HashMap::new();
    let detection = openai_watch::config::Detection::default();
    store
        .record(
            "fra-1",
            &[observation("prod", "invalid_api_key", t0)],
            &mut states,
            &detection,
            &routing,
        )
        .await
        .unwrap();
    store.close().await;
    let target = Workspace::on(Engine::Postgres);
    let url = target.pg_url.clone().unwrap();
    let migrate = || async {
        run_cli(
            &["--config", config.to_str().unwrap(), "migrate"],
            &[("OPENAI_WATCH_MIGRATE_TO", url.as_str())],
            ws.dir.path(),
        )
        .await
    };
    let first = migrate().await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // An agent writes three probes into the database; they take the next ids.
    let agent = target.store().await;
    agent
        .insert_probes(
            "iad-1",
            &(1..=3)
                .map(|i| observation("prod", "ok", t0 + i * 60_000))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    agent.close().await;
    // Meanwhile the SQLite history goes on: five probes, and the incident resolves.
    let store = Store::open(&ws.db()).await.unwrap();
    store
        .record(
            "fra-1",
            &(1..=5)
                .map(|i| observation("prod", "ok", t0 + i * 30_000))
                .collect::<Vec<_>>(),
            &mut states,
            &detection,
            &routing,
        )
        .await
        .unwrap();
    store.close().await;
    let second = migrate().await;
    let stdout = String::from_utf8_lossy(&second.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("not copied: 3 probes"), "{stderr}");
    assert!(
        stdout.contains("probes: 6 rows (2 new, 0 updated, 1 unchanged, 3 skipped)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("incidents: 1 rows (0 new, 1 updated, 0 unchanged, 0 skipped)"),
        "{stdout}"
    );
    // The resolution reached the database; the agent's probes are still its own.
    assert_eq!(
        target
            .count("select count(*) from incidents where resolved_at_ms is not null")
            .await,
        1
    );
    assert_eq!(
        target
            .count("select count(*) from probes where location = 'iad-1'")
            .await,
        3
    );
}
