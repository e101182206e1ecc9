//! The SQLite store on a real file: pragmas, migrations applied once and again, batches.

use crate::helpers::{Engine, Workspace, observation};
use openai_watch::catalog;
use openai_watch::probe::Observation;
use openai_watch::store::Store;
use sqlx::Row;

#[tokio::test]
async fn the_store_uses_wal_applies_migrations_once_and_writes_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/watch.db");
    let store = Store::open(&path).await.unwrap();
    let batch: Vec<Observation> = (0..1000)
        .map(|i| observation("prod", "insufficient_quota", 1_700_000_000_000 + i))
        .collect();
    store.insert_probes("fra-1", &batch).await.unwrap();
    store.close().await;

    // Reopening applies nothing twice and keeps the rows.
    let store = Store::open(&path).await.unwrap();
    let recent = store.recent_probes("prod", 5).await.unwrap();
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0].at_ms, 1_700_000_000_999, "newest first");
    assert_eq!(recent[0].category, catalog::Category::Quota);
    assert_eq!(recent[0].location, "fra-1");
    assert_eq!(recent[0].ratelimit_remaining_requests, Some(499));
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query("pragma journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    let count: i64 = sqlx::query("select count(*) from probes")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1000);
    let migrations: i64 = sqlx::query("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        migrations,
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
            .unwrap()
            .count() as i64
    );
    let reset: String = sqlx::query("select ratelimit_reset_tokens from probes limit 1")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(reset, "6m0s");
}

#[tokio::test]
async fn an_unwritable_database_location_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file.join("watch.db"))
        .await
        .err()
        .expect("cannot open under a file");
    assert!(err.to_string().contains("not-a-dir/watch.db"), "{err}");
}

async fn reminders_follow_the_last_message_sent_and_a_restart_changes_nothing(engine: Engine) {
    use openai_watch::catalog::Category;
    use openai_watch::config::Detection;
    use openai_watch::store::Routing;
    let ws = Workspace::on(engine);
    let store = ws.store().await;
    let routing = Routing {
        channels: vec![openai_watch::store::ChannelRoute {
            name: "email".into(),
            categories: vec![Category::Auth],
        }],
        routes: Vec::new(),
        send_resolved: true,
        group_wait_ms: 0,
    };
    let mut states = std::collections::HashMap::new();
    let t0 = 1_700_000_000_000;
    let hour = 3_600_000;
    let recorded = store
        .record(
            "lab",
            &[observation("prod", "invalid_api_key", t0)],
            &mut states,
            &Detection::default(),
            &routing,
        )
        .await
        .unwrap();
    assert_eq!(recorded.events, 1, "the firing event");
    let due = store.pending_deliveries(t0).await.unwrap();
    assert_eq!(due.len(), 1);
    store
        .mark_sent(&[due[0].delivery_id], "lab", t0 + 1_000, None)
        .await
        .unwrap();

    // Every 4 hours after the last message sent, not after the incident opened.
    assert_eq!(
        store
            .enqueue_reminders(t0 + 1_000 + 4 * hour - 1, 4 * hour, 0)
            .await
            .unwrap(),
        0
    );
    store.close().await;
    let store = ws.store().await; // a restart: the timing comes from the database
    assert_eq!(
        store
            .enqueue_reminders(t0 + 1_000 + 4 * hour, 4 * hour, 0)
            .await
            .unwrap(),
        1
    );
    // Not again while that reminder waits to go out.
    assert_eq!(
        store
            .enqueue_reminders(t0 + 9 * hour, 4 * hour, 0)
            .await
            .unwrap(),
        0
    );
    let due = store.pending_deliveries(t0 + 9 * hour).await.unwrap();
    assert_eq!((due.len(), due[0].kind.as_str()), (1, "reminder"));
    store
        .mark_sent(&[due[0].delivery_id], "lab", t0 + 9 * hour, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .enqueue_reminders(t0 + 13 * hour - 1, 4 * hour, 0)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .enqueue_reminders(t0 + 13 * hour, 4 * hour, 0)
            .await
            .unwrap(),
        1
    );
    // "0s" turns them off.
    assert_eq!(
        store
            .enqueue_reminders(t0 + 100 * hour, 0, 0)
            .await
            .unwrap(),
        0
    );
}

/// Every column that holds a closed vocabulary, with the values it may hold.
const ENUMERATED: &[(&str, &str, &[&str])] = &[
    (
        "probes",
        "probe",
        openai_watch::domain::ProbeKind::ALL_NAMES,
    ),
    (
        "probes",
        "category",
        openai_watch::domain::Category::ALL_NAMES,
    ),
    (
        "probes",
        "transport_error",
        openai_watch::domain::TransportErrorKind::ALL_NAMES,
    ),
    (
        "incidents",
        "probe",
        openai_watch::domain::ProbeKind::ALL_NAMES,
    ),
    ("incidents", "category", &["auth", "quota"]),
    (
        "alert_events",
        "kind",
        openai_watch::domain::EventKind::ALL_NAMES,
    ),
    ("alert_events", "category", &["outage"]),
    (
        "alert_deliveries",
        "state",
        openai_watch::domain::DeliveryState::ALL_NAMES,
    ),
    (
        "rollups",
        "probe",
        openai_watch::domain::ProbeKind::ALL_NAMES,
    ),
    (
        "rollups",
        "category",
        openai_watch::domain::Category::ALL_NAMES,
    ),
];

#[tokio::test]
async fn a_version_1_database_migrates_to_check_constraints_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    // The database as version 1 left it: migrations 1 to 3, with a probe, an incident and
    // its alert in it.
    let mut v1 = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/sqlite"
    )))
    .await
    .unwrap();
    v1.migrations = v1.migrations[..3].to_vec().into();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    v1.run(&pool).await.unwrap();
    for sql in [
        "insert into probes (at_ms, location, target, probe, latency_ms, http_status, category, error_id) \
         values (1, 'lab', 'prod', 'chat', 10, 429, 'quota', 'insufficient_quota')",
        "insert into incidents (target, category, location, probe, first_error_id, last_error_id, \
         opened_at_ms, last_seen_at_ms, probe_count) values ('prod', 'quota', 'lab', 'chat', \
         'insufficient_quota', 'insufficient_quota', 1, 1, 1)",
        "insert into alert_events (incident_id, kind, category, created_at_ms, due_at_ms) \
         values (1, 'firing', 'quota', 1, 1)",
        "insert into alert_deliveries (event_id, channel, state, next_attempt_at_ms) \
         values (1, 'email', 'pending', 1)",
        "insert into rollups values ('prod', 'chat', 'quota', 0, 1, 10, 10)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = Store::open(&path).await.unwrap();
    let open = store.open_incidents().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].category, catalog::Category::Quota);
    let pending = store.pending_deliveries(i64::MAX).await.unwrap();
    assert_eq!(pending.len(), 1, "the pending alert survived the migration");
    assert_eq!(pending[0].kind, openai_watch::domain::EventKind::Firing);
    assert_eq!(store.probe_count().await.unwrap(), 1);
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (fk_problems,): (i64,) = sqlx::query_as("select count(*) from pragma_foreign_key_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        fk_problems, 0,
        "foreign keys still point at the right tables"
    );
    for (table, column, _) in ENUMERATED {
        let (sql,): (String,) =
            sqlx::query_as("select sql from sqlite_master where type = 'table' and name = ?")
                .bind(table)
                .fetch_one(&pool)
                .await
                .unwrap();
        let line = sql
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{column} ")))
            .unwrap_or_else(|| panic!("{table}.{column} in {sql}"));
        assert!(
            line.contains("check ("),
            "{table}.{column} has a CHECK: {line}"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn every_enumerated_column_accepts_its_names_and_refuses_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.db");
    Store::open(&path).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // A row of each table with every column valid; the column under test is set afterwards.
    let seed = [
        "insert into probes (id, at_ms, location, target, probe, latency_ms, category, error_id) \
         values (1, 1, 'lab', 'prod', 'models', 1, 'ok', 'ok')",
        "insert into incidents (id, target, category, location, probe, first_error_id, \
         last_error_id, opened_at_ms, last_seen_at_ms, resolved_at_ms, probe_count) \
         values (1, 'prod', 'auth', 'lab', 'models', 'x', 'x', 1, 1, 2, 1)",
        "insert into alert_events (id, incident_id, kind, category, created_at_ms, due_at_ms) \
         values (1, 1, 'firing', 'auth', 1, 1)",
        "insert into alert_deliveries (id, event_id, channel, state, next_attempt_at_ms) \
         values (1, 1, 'email', 'pending', 1)",
        "insert into rollups values ('prod', 'models', 'ok', 0, 1, 1, 1, null)",
    ];
    for sql in seed {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    for (table, column, names) in ENUMERATED {
        // `monitor` is raised by the agents of a fleet, on PostgreSQL only: one daemon on a
        // SQLite file never has another agent to find silent.
        for name in names.iter().filter(|n| **n != "monitor") {
            let sql = format!("update {table} set {column} = ?");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(*name)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{table}.{column} = {name}: {e}"));
        }
        let sql = format!("update {table} set {column} = 'not-a-name'");
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        let err = refused.expect_err(&format!("{table}.{column} refuses an unknown name"));
        assert!(err.to_string().contains("CHECK"), "{table}.{column}: {err}");
    }
    pool.close().await;
}

/// A batch adds up in its hourly rollups (several probes of one hour in one multi-row
/// statement), and retention takes each target's old hours in batches, keeping the rest.
async fn rollups_add_up_per_batch_and_retention_takes_each_targets_old_hours(engine: Engine) {
    use openai_watch::store::{HOUR_MS, PRUNE_BATCH, RollupRow};
    let ws = Workspace::on(engine);
    let store = ws.store().await;
    let hour0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS;
    // 75 probes in one batch: 72 healthy, 3 failing, all in one hour, plus 5 in the next.
    let mut batch: Vec<Observation> = (0..75)
        .map(|i| {
            let id = if i % 25 == 0 { "server_error" } else { "ok" };
            observation("a", id, hour0 + i * 1000)
        })
        .collect();
    batch.extend((0..5).map(|i| observation("a", "ok", hour0 + HOUR_MS + i)));
    store.insert_probes("fra-1", &batch).await.unwrap();
    let rows = store.rollups("a", hour0).await.unwrap();
    let count = |hour: i64, category: &str| {
        rows.iter()
            .filter(|r| r.hour_ms == hour && r.category.as_str() == category)
            .map(|r| r.count)
            .sum::<i64>()
    };
    assert_eq!(
        (count(hour0, "ok"), count(hour0, "outage")),
        (72, 3),
        "{rows:?}"
    );
    assert_eq!(count(hour0 + HOUR_MS, "ok"), 5);
    let ok = rows
        .iter()
        .find(|r| r.hour_ms == hour0 && r.category.as_str() == "ok")
        .unwrap();
    let expected: i64 = batch[..75]
        .iter()
        .filter(|o| o.entry.is_ok())
        .map(|o| o.latency_ms)
        .sum();
    assert_eq!(ok.latency_sum_ms, expected);

    // Old hours: more than one batch's worth for `b`, a few for `c`; and one recent hour each.
    let cutoff = hour0 - 10 * HOUR_MS;
    let hours = |target_hours: std::ops::Range<i64>| -> Vec<RollupRow> {
        target_hours
            .map(|h| RollupRow {
                probe: Some(openai_watch::domain::ProbeKind::Models),
                category: openai_watch::domain::Category::Ok,
                hour_ms: cutoff - h * HOUR_MS,
                count: 1,
                latency_sum_ms: 100,
                latency_max_ms: 100,
                used_max: None,
            })
            .collect()
    };
    let old_b = PRUNE_BATCH + 100;
    store.add_rollups("b", &hours(1..old_b + 1)).await.unwrap();
    store.add_rollups("c", &hours(1..11)).await.unwrap();
    for t in ["b", "c"] {
        store.add_rollups(t, &hours(-5..-4)).await.unwrap();
    }
    let mut pruned = Vec::new();
    loop {
        let n = store.prune_rollups_batch(cutoff).await.unwrap();
        pruned.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(
        pruned,
        [PRUNE_BATCH as u64 + 10, 100, 0],
        "one batch per target per pass"
    );
    for (target, left) in [("a", 3), ("b", 1), ("c", 1)] {
        assert_eq!(
            store.rollups(target, 0).await.unwrap().len(),
            left,
            "{target} keeps its hours after the cutoff"
        );
    }
    store.close().await;
}

/// A sender whose claim lapsed (a frozen process) never settles a delivery another agent
/// took over: not set back to pending, not marked sent twice. A claim runs from the moment
/// it is taken.
async fn a_lapsed_claim_never_changes_a_delivery_another_agent_took_over(engine: Engine) {
    use openai_watch::catalog::Category;
    use openai_watch::config::Detection;
    use openai_watch::store::Routing;
    use std::time::Duration;
    let ws = Workspace::on(engine);
    let store = ws.store().await;
    let routing = Routing {
        channels: vec![openai_watch::store::ChannelRoute {
            name: "hook".into(),
            categories: vec![Category::Auth],
        }],
        routes: Vec::new(),
        send_resolved: true,
        group_wait_ms: 0,
    };
    let t0 = 1_700_000_000_000;
    store
        .record(
            "fra-1",
            &[observation("prod", "invalid_api_key", t0)],
            &mut std::collections::HashMap::new(),
            &Detection::default(),
            &routing,
        )
        .await
        .unwrap();
    let id = store.pending_deliveries(t0).await.unwrap()[0].delivery_id;
    let lease = Duration::from_secs(60);
    // fra-1 claims late in a long pass: the lease counts from the claim.
    assert_eq!(
        store
            .claim_deliveries(&[id], "fra-1", t0 + 50_000, lease)
            .await
            .unwrap(),
        vec![id]
    );
    assert!(
        store
            .claim_deliveries(&[id], "iad-1", t0 + 100_000, lease)
            .await
            .unwrap()
            .is_empty(),
        "the claim holds 60 s from when it was taken"
    );
    // fra-1 freezes; its claim lapses and iad-1 sends.
    assert_eq!(
        store
            .claim_deliveries(&[id], "iad-1", t0 + 111_000, lease)
            .await
            .unwrap(),
        vec![id]
    );
    assert_eq!(
        store
            .mark_sent(&[id], "iad-1", t0 + 112_000, None)
            .await
            .unwrap(),
        1
    );
    // fra-1 resumes: its failure and its success change nothing.
    assert_eq!(
        store
            .mark_attempt_failed(&[id], "fra-1", Some(t0 + 200_000), "timed out")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .mark_sent(&[id], "fra-1", t0 + 113_000, None)
            .await
            .unwrap(),
        0
    );
    let rows: Vec<(String, i64, Option<String>)> = ws
        .rows(&format!(
            "select state, attempts, last_error from alert_deliveries where id = {id}"
        ))
        .await;
    assert_eq!(rows, vec![("sent".to_string(), 1, None)]);
    store.close().await;
}

crate::both_engines!(
    a_lapsed_claim_never_changes_a_delivery_another_agent_took_over,
    reminders_follow_the_last_message_sent_and_a_restart_changes_nothing,
    rollups_add_up_per_batch_and_retention_takes_each_targets_old_hours,
);
