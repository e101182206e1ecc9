//! One writer per database: a second daemon is refused with one line and exit 75, `check`
//! and `status` work beside the first, two processes started at once on a new file never
//! trip over the migrations (nor does a daemon take a migrating command for a daemon), and
//! a batch the database refuses for good never wedges the recorder.

use crate::helpers::*;

const KEY: &str = "sk-single-writer-test-000";

fn target(name: &str, url: String) -> String {
    TargetSpec {
        name,
        base_url: url,
        key_env: Some("K"),
        timeout: "10s",
        probes: &[("models", "1s")],
    }
    .toml()
}

/// Waits for a daemon to exit on its own; its exit code and log.
async fn exit_of(mut daemon: Daemon) -> (Option<i32>, String) {
    let status = tokio::time::timeout(DEADLINE, daemon.child.wait())
        .await
        .expect("the daemon exited")
        .unwrap();
    // The whole error line, not only its beginning.
    wait_for("the log to end", || {
        let log = daemon.stderr.lock().unwrap();
        log.find("error:")
            .is_some_and(|at| log[at..].contains('\n'))
    })
    .await;
    let log = daemon.stderr.lock().unwrap().clone();
    (status.code(), log)
}

#[tokio::test]
async fn a_second_daemon_on_the_same_database_is_refused_while_check_and_status_work() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let config = ws.write_config(&target("prod", sim.base_url("ok")));
    let first = Daemon::start(&config, &[("K", KEY)]);
    first.dashboard_url().await;

    let second = Daemon::start(&config, &[("K", KEY)]);
    let (code, log) = exit_of(second).await;
    assert_eq!(code, Some(75), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("already running") && errors[0].contains("watch.db"),
        "{log}"
    );

    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "status"],
        &[],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Once the first one stopped, another may take over.
    let (status, log) = first.terminate().await;
    assert!(status.success(), "{log}");
    let next = Daemon::start(&config, &[("K", KEY)]);
    next.dashboard_url().await;
    let (status, log) = next.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn two_daemons_started_at_once_on_a_new_file_leave_one_running_and_no_migration_error() {
    let sim = start_simulator().await;
    for round in 0..5 {
        let ws = Workspace::new();
        let config = ws.write_config(&target("prod", sim.base_url("ok")));
        let a = Daemon::start(&config, &[("K", KEY)]);
        let b = Daemon::start(&config, &[("K", KEY)]);
        // Exactly one of them exits, refused; the other serves.
        let refused = eventually("one of the two to be refused", || async {
            let a_log = a.stderr.lock().unwrap().clone();
            let b_log = b.stderr.lock().unwrap().clone();
            match (
                a_log.contains("already running"),
                b_log.contains("already running"),
            ) {
                (true, false) => Some('a'),
                (false, true) => Some('b'),
                (true, true) => panic!("round {round}: both refused:\n{a_log}\n{b_log}"),
                (false, false) => None,
            }
        })
        .await;
        let (running, loser) = if refused == 'a' { (b, a) } else { (a, b) };
        let (code, log) = exit_of(loser).await;
        assert_eq!(code, Some(75), "round {round}: {log}");
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "round {round}: one line: {log}");
        assert!(
            errors[0].contains("already running"),
            "round {round}: {log}"
        );
        running.dashboard_url().await;
        let (status, log) = running.terminate().await;
        assert!(status.success(), "round {round}: {log}");
        assert!(
            !log.contains("cannot apply the database migrations") && !log.contains(" ERROR "),
            "round {round}: {log}"
        );
    }
}

#[tokio::test]
async fn a_row_the_database_refuses_for_good_is_dropped_and_everything_else_is_written() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let config = ws.write_config(&format!(
        "{}{}",
        target("healthy", sim.tag_url("healthy")),
        target("clash", sim.tag_url("clash"))
    ));
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    let url = daemon.dashboard_url().await;
    let count = |target: &'static str| {
        let db = ws.db();
        async move {
            probe_rows(&db)
                .await
                .iter()
                .filter(|r| r.target == target)
                .count()
        }
    };
    eventually("both targets recorded", || async {
        (count("healthy").await > 0 && count("clash").await > 0).then_some(())
    })
    .await;
    // A constraint the database enforces for good (here a trigger, as a stricter schema or an
    // operator's check would): every failing probe of `clash` is refused, whatever the retry.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", ws.db().display()))
        .await
        .unwrap();
    sqlx::query(
        "create trigger refuse_clash before insert on probes \
         when new.target = 'clash' and new.category = 'auth' \
         begin select raise(abort, 'clash refused'); end",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    sim.state.set_tag("clash", "invalid_api_key").unwrap();
    wait_for("the refused row to be logged", || {
        daemon
            .stderr
            .lock()
            .unwrap()
            .contains("probe row refused by the database; dropped")
    })
    .await;
    // The healthy target goes on being written, and the daemon says it is healthy.
    let before = count("healthy").await;
    eventually("the healthy target to be written on", || async {
        (count("healthy").await >= before + 3).then_some(())
    })
    .await;
    openai_watch::tls::install_crypto_provider();
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn an_unreadable_detector_state_is_rebuilt_from_the_open_incidents() {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let ws = Workspace::new();
    let config = ws.write_config(&target("prod", sim.tag_url("prod")));
    let incidents = |db: std::path::PathBuf| async move {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .unwrap();
        let rows: Vec<(i64, Option<i64>)> =
            sqlx::query_as("select id, resolved_at_ms from incidents order by id")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows
    };
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    daemon.dashboard_url().await;
    eventually("the auth incident", || async {
        (incidents(ws.db()).await.len() == 1).then_some(())
    })
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");

    // The state row is garbage now; the open incident is still in the table.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", ws.db().display()))
        .await
        .unwrap();
    let spoiled = sqlx::query("update detector_states set state = 'not json'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(spoiled.rows_affected(), 1);
    pool.close().await;

    let daemon = Daemon::start(&config, &[("K", KEY)]);
    daemon.dashboard_url().await;
    let probes = probe_rows(&ws.db()).await.len();
    eventually("more failing probes to be written", || async {
        (probe_rows(&ws.db()).await.len() >= probes + 3).then_some(())
    })
    .await;
    assert_eq!(incidents(ws.db()).await.len(), 1, "nothing opened twice");
    sim.state.set_tag("prod", "ok").unwrap();
    let rows = eventually("the incident to resolve", || async {
        let rows = incidents(ws.db()).await;
        rows.iter().all(|r| r.1.is_some()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1);
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("detector state rebuilt from the open incident"),
        "{log}"
    );
    assert!(!log.contains("refused by the database"), "{log}");
}

#[tokio::test]
async fn a_daemon_started_while_another_process_migrates_the_file_waits_for_it_and_starts() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let config = ws.write_config(&target("prod", sim.base_url("ok")));
    // What `check` holds while it migrates a new file, taken here so that the moment lasts.
    let migrating =
        std::fs::File::create(openai_watch::store::migration_lock_path(&ws.db())).unwrap();
    migrating.try_lock().unwrap();
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    wait_for("the daemon to wait for the migration", || {
        daemon
            .stderr
            .lock()
            .unwrap()
            .contains("waiting for another process to migrate the database")
    })
    .await;
    drop(migrating);
    daemon.dashboard_url().await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(!log.contains("already running"), "{log}");
}

#[tokio::test]
async fn check_started_with_a_daemon_on_a_new_file_waits_for_its_migrations_and_succeeds() {
    let sim = start_simulator().await;
    for round in 0..3 {
        let ws = Workspace::new();
        let config = ws.write_config(&target("prod", sim.base_url("ok")));
        let daemon = Daemon::start(&config, &[("K", KEY)]);
        let out = run_cli(
            &["--config", config.to_str().unwrap(), "check"],
            &[("K", KEY)],
            ws.dir.path(),
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "round {round}: recorded without a warning"
        );
        daemon.dashboard_url().await;
        let (status, log) = daemon.terminate().await;
        assert!(status.success(), "round {round}: {log}");
    }
}
