//! The SQLite store on a real file: pragmas, migrations applied once and again, batches.

use openai_watch::catalog;
use openai_watch::config::{ProbeKind, TargetName};
use openai_watch::probe::{Observation, RateLimits};
use openai_watch::store::Store;
use sqlx::Row;

fn observation(target: &str, id: &str, at_ms: i64) -> Observation {
    Observation {
        at_ms,
        target: TargetName::parse(target).unwrap(),
        kind: ProbeKind::Chat,
        latency_ms: 42,
        http_status: Some(429),
        transport_error: None,
        entry: catalog::entry(id).unwrap(),
        message: Some("You exceeded your current quota".into()),
        request_id: Some("req_1".into()),
        rate_limits: RateLimits {
            remaining_requests: Some(0),
            reset_tokens: Some("6m0s".into()),
            ..Default::default()
        },
        retry_after: None,
    }
}

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
    assert_eq!(recent[0].category, "quota");
    assert_eq!(recent[0].location, "fra-1");
    assert_eq!(recent[0].ratelimit_remaining_requests, Some(0));
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
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
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

#[tokio::test]
async fn reminders_follow_the_last_message_sent_and_a_restart_changes_nothing() {
    use openai_watch::catalog::Category;
    use openai_watch::config::Detection;
    use openai_watch::store::Routing;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watch.db");
    let store = Store::open(&path).await.unwrap();
    let routing = Routing {
        channels: vec![("email".into(), vec![Category::Auth])],
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
        .mark_sent(&[due[0].delivery_id], t0 + 1_000)
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
    let store = Store::open(&path).await.unwrap(); // a restart: the timing comes from the database
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
        .mark_sent(&[due[0].delivery_id], t0 + 9 * hour)
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
