//! Faults: the database locked by another writer, and kill -9 at random moments. Probing goes
//! on, /healthz says why it is unhealthy, nothing recorded is lost, no incident is duplicated,
//! and every alert that was due is delivered; silences, acknowledgements and routes hold.

use crate::helpers::smtp::SmtpServer;
use crate::helpers::*;
use sqlx::Connection;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

async fn healthz(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A daemon probing one healthy target every second, with its dashboard URL and a client.
async fn one_target_daemon(
    sim: &openai_watch::simulate::Simulator,
    ws: &Workspace,
) -> (Daemon, String, reqwest::Client) {
    let config = ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: sim.base_url("ok"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml(),
    );
    let daemon = Daemon::start(&config, &[("K", "sk-fault-test-00000000")]);
    let url = daemon.dashboard_url().await;
    openai_watch::tls::install_crypto_provider();
    (daemon, url, reqwest::Client::new())
}

#[tokio::test]
async fn a_locked_database_is_reported_probing_goes_on_and_writing_resumes() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let (daemon, url, http) = one_target_daemon(&sim, &ws).await;
    wait_for("a few probes", || sim.state.requests().len() >= 2).await;

    // Another process takes the write lock and keeps it.
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", ws.db().display()))
        .await
        .unwrap();
    sqlx::query("begin exclusive")
        .execute(&mut blocker)
        .await
        .unwrap();
    let locked_at = openai_watch::clock::now_ms();
    let reason = wait_health(&http, &url, 503).await;
    assert!(
        reason.contains("database not writable") && reason.contains("locked"),
        "{reason}"
    );
    // Probing goes on while the database cannot be written.
    let before = sim.state.requests().len();
    wait_for("probing to go on", || {
        sim.state.requests().len() >= before + 3
    })
    .await;

    sqlx::query("commit").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    wait_health(&http, &url, 200).await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    // The probes made while the database was locked were kept in memory and written after.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", ws.db().display()))
        .await
        .unwrap();
    let (during,): (i64,) =
        sqlx::query_as("select count(*) from probes where at_ms >= ? and at_ms < ?")
            .bind(locked_at)
            .bind(locked_at + 5_000)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        during >= 3,
        "probes of the locked period were written afterwards ({during})"
    );
    assert!(log.contains("database writable again"), "{log}");
}

/// (incident id, event kind) pairs an email covers, from its subject and threading headers.
fn covered(mail: &crate::helpers::smtp::Mail) -> Vec<(i64, String)> {
    let kind = if mail.subject.contains("] FIRING ") {
        "firing"
    } else if mail.subject.contains("] RESOLVED ") {
        "resolved"
    } else {
        "reminder"
    };
    let refs = format!(
        "{} {}",
        mail.header("Message-ID").unwrap_or(""),
        mail.header("References").unwrap_or("")
    );
    let mut ids: Vec<i64> = refs
        .split("<incident-")
        .skip(1)
        // `<incident-{id}.{installation}@{domain}>`
        .filter_map(|s| s.split(['.', '@']).next()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|id| (id, kind.to_string())).collect()
}

/// Runs the command line on the config of `ws`; panics unless it succeeds.
async fn cli_ok(ws: &Workspace, args: &[&str]) -> String {
    let config = ws.config_path();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_cli(&all, &[("USER", "crash")], ws.dir.path()).await;
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kill_9_at_random_moments_keeps_the_database_whole_and_loses_no_alert() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let main = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let batch = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    // Two named channels; a route sends t1* to `batch` only, everything else to `main`.
    let mut config =
        String::from("[alerts]\ngroup_wait = \"0s\"\ncategories = [\"auth\", \"quota\"]\n\n");
    for (name, port) in [("main", main.port), ("batch", batch.port)] {
        config.push_str(&format!(
            "[[alerts.email]]\nname = \"{name}\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\n\
             tls = \"none\"\nfrom = \"w@example.com\"\nto = [\"{name}@example.com\"]\n\n"
        ));
    }
    config.push_str(
        "[[alerts.routes]]\ntargets = [\"t1*\"]\nchannels = [\"batch\"]\n\n\
         [[alerts.routes]]\nchannels = [\"main\"]\n\n",
    );
    let targets: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    for name in &targets {
        config.push_str(
            &TargetSpec {
                name,
                base_url: sim.tag_url(name),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&config);
    // t4 and t40–t49 are silenced from the start.
    cli_ok(
        &ws,
        &[
            "silence",
            "add",
            "--target",
            "t4*",
            "--for",
            "2h",
            "--comment",
            "t4x rotation",
        ],
    )
    .await;

    // Incidents open and close all the time: every target flips between healthy and a revoked
    // key (auth opens at once, resolves after two healthy probes) or an exhausted quota.
    let state = sim.state.clone();
    let flipper = tokio::spawn(async move {
        let mut round = 0usize;
        loop {
            for (i, name) in (0..50).map(|i| (i, format!("t{i}"))) {
                let scenario = match (i + round) % 6 {
                    0 => "invalid_api_key",
                    3 => "insufficient_quota",
                    _ => "ok",
                };
                state.set_tag(&name, scenario).unwrap();
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });

    let kills = 20;
    let mut acked = None;
    for round in 0..kills {
        let mut daemon = Daemon::start(&config, &[("K", "sk-crash-test-0000000")]);
        daemon.dashboard_url().await;
        // Beside the running daemon: an acknowledgement and a second silence, written by the
        // command line, each just before a kill.
        let pause = Duration::from_millis(300 + fastrand::u64(0..1500));
        let writes = async {
            if acked.is_none() && round >= 3 {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", ws.db().display()))
                        .await
                        .unwrap();
                let open: Option<(i64,)> = sqlx::query_as(
                    "select id from incidents where resolved_at_ms is null and target not like 't4%' limit 1",
                )
                .fetch_optional(&pool)
                .await
                .unwrap();
                pool.close().await;
                if let Some((id,)) = open {
                    // Incidents here resolve within a second or two: one may have resolved
                    // since it was read, which `ack` refuses; then a later round tries again.
                    let config = ws.config_path();
                    let id_text = id.to_string();
                    let args = [
                        "--config",
                        config.to_str().unwrap(),
                        "ack",
                        &id_text,
                        "--comment",
                        "crash test ack",
                    ];
                    let out = run_cli(&args, &[("USER", "crash")], ws.dir.path()).await;
                    let err = String::from_utf8_lossy(&out.stderr);
                    if out.status.success() {
                        acked = Some(id);
                    } else {
                        assert!(err.contains("is resolved"), "{args:?}: {err}");
                    }
                }
            }
            if round == 10 {
                cli_ok(
                    &ws,
                    &[
                        "silence",
                        "add",
                        "--target",
                        "t2?",
                        "--for",
                        "2h",
                        "--comment",
                        "second",
                    ],
                )
                .await;
            }
        };
        tokio::join!(writes, tokio::time::sleep(pause));
        daemon.child.start_kill().unwrap();
        daemon.child.wait().await.unwrap();
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", ws.db().display()))
            .await
            .unwrap();
        let (check,): (String,) = sqlx::query_as("pragma integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(check, "ok");
        conn.close().await.unwrap();
    }
    flipper.abort();
    for name in &targets {
        sim.state.set_tag(name, "ok").unwrap();
    }

    // A last run until every incident resolved and the outbox is empty (sent or suppressed).
    let daemon = Daemon::start(&config, &[("K", "sk-crash-test-0000000")]);
    let url = format!("sqlite://{}?mode=ro", ws.db().display());
    eventually_within(
        Duration::from_secs(120),
        "every incident resolved and every alert sent or suppressed",
        || async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (open,): (i64,) =
                sqlx::query_as("select count(*) from incidents where resolved_at_ms is null")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let (pending,): (i64,) = sqlx::query_as(
                "select count(*) from alert_deliveries where state not in ('sent', 'suppressed')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            (open == 0 && pending == 0).then_some(())
        },
    )
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    // No incident duplicated: per (target, category), incidents never overlap.
    let rows: Vec<(String, String, i64, Option<i64>)> =
        sqlx::query_as("select target, category, opened_at_ms, resolved_at_ms from incidents order by target, category, opened_at_ms, id").fetch_all(&pool).await.unwrap();
    assert!(
        rows.len() >= 20,
        "incidents opened and closed: {}",
        rows.len()
    );
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.0 == b.0 && a.1 == b.1 {
            assert!(
                a.3.is_some_and(|resolved| resolved <= b.2),
                "overlapping incidents {a:?} {b:?}"
            );
        }
    }

    // The silences, the acknowledgement and the route survived.
    let silences = cli_ok(&ws, &["silence", "list", "--json"]).await;
    let silences: serde_json::Value = serde_json::from_str(&silences).unwrap();
    let comments: Vec<&str> = silences
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["comment"].as_str().unwrap())
        .collect();
    assert_eq!(comments, ["second", "t4x rotation"], "{silences}");
    let acked = acked.expect("an incident was open to acknowledge");
    let (by, comment): (Option<String>, Option<String>) =
        sqlx::query_as("select acked_by, ack_comment from incidents where id = ?")
            .bind(acked)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(by.as_deref(), Some("cli:crash"));
    assert_eq!(comment.as_deref(), Some("crash test ack"));
    let target_of: HashMap<i64, String> = sqlx::query_as("select id, target from incidents")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    // Suppressed only what a silence matched: t4*, and t2? once the second silence existed.
    let suppressed: Vec<(i64,)> = sqlx::query_as(
        "select e.incident_id from alert_deliveries d join alert_events e on e.id = d.event_id where d.state = 'suppressed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!suppressed.is_empty());
    for (id,) in &suppressed {
        let t = &target_of[id];
        assert!(
            t.starts_with("t4") || (t.starts_with("t2") && t.len() == 3),
            "{t} suppressed"
        );
    }

    // Every event sent according to the outbox reached an SMTP server; a repeat only where a
    // kill fell between the server's acceptance and the outbox update. Routes held: t1* only
    // at `batch`, the others only at `main`; nothing about the silenced t4* at all.
    let events: Vec<(i64, String)> = sqlx::query_as(
        "select distinct e.incident_id, e.kind from alert_events e join alert_deliveries d on d.event_id = e.id where d.state = 'sent'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut received: HashMap<(i64, String), usize> = HashMap::new();
    for (server, mails) in [("main", main.mails()), ("batch", batch.mails())] {
        for mail in mails {
            for key in covered(&mail) {
                let t = &target_of[&key.0];
                assert!(!t.starts_with("t4"), "an alert about silenced {t}");
                assert_eq!(t.starts_with("t1"), server == "batch", "{t} at {server}");
                *received.entry(key).or_default() += 1;
            }
        }
    }
    let expected: HashSet<(i64, String)> = events.into_iter().collect();
    assert!(expected.len() >= 20, "alerts were due: {}", expected.len());
    eprintln!(
        "{} incidents, {} alert events sent, {} suppressed deliveries, {} + {} emails over {kills} kills",
        rows.len(),
        expected.len(),
        suppressed.len(),
        main.mails().len(),
        batch.mails().len()
    );
    let lost: Vec<&(i64, String)> = expected
        .iter()
        .filter(|e| !received.contains_key(*e))
        .collect();
    assert!(lost.is_empty(), "alerts lost: {lost:?}");
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 2).collect();
    assert!(
        twice.is_empty(),
        "an alert arrived more than twice: {twice:?}"
    );
}

async fn wait_health(http: &reqwest::Client, url: &str, code: u16) -> String {
    eventually(&format!("/healthz to answer {code}"), || async {
        let (status, body) = healthz(http, url).await;
        (status == code).then_some(body)
    })
    .await
}

fn run_ok(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips (outside CI) when the machine does not allow the fault to be made.
fn can(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{what} must work in CI");
        eprintln!("SKIPPED: cannot {what} here");
    }
    ok
}

#[tokio::test]
async fn a_read_only_database_is_reported_and_writing_resumes_when_it_is_writable() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let (daemon, url, http) = one_target_daemon(&sim, &ws).await;
    wait_health(&http, &url, 200).await;
    // Immutable even for root: the way to make the files read-only under a root CI. Not the
    // -shm file: SQLite maps it into memory, and the kernel answers a write to a mapped page
    // of an immutable file with SIGBUS, which no program survives. The database and its WAL
    // are what "not writable" means.
    let files: Vec<String> = ["", "-wal"]
        .iter()
        .map(|s| format!("{}{s}", ws.db().display()))
        .collect();
    let mut args = vec!["+i"];
    args.extend(files.iter().map(String::as_str));
    if !can(
        "make the database immutable (chattr)",
        run_ok("chattr", &args),
    ) {
        return;
    }
    let reason = wait_health(&http, &url, 503).await;
    args[0] = "-i";
    let before = sim.state.requests().len();
    wait_for("probing to go on", || {
        sim.state.requests().len() >= before + 3
    })
    .await;
    assert!(run_ok("chattr", &args), "chattr -i");
    assert!(reason.contains("database not writable"), "{reason}");
    wait_health(&http, &url, 200).await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("database writable again"), "{log}");
}

#[tokio::test]
async fn a_full_disk_is_reported_and_writing_resumes_when_there_is_room() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let tiny = ws.dir.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let mount = tiny.to_str().unwrap().to_string();
    if !can(
        "mount a tmpfs",
        run_ok(
            "mount",
            &["-t", "tmpfs", "-o", "size=320k", "tmpfs", &mount],
        ),
    ) {
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let mut targets = String::new();
    for i in 0..5 {
        targets.push_str(
            &TargetSpec {
                name: &format!("t{i}"),
                base_url: sim.base_url("ok"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1s")],
            }
            .toml(),
        );
    }
    let config = ws.dir.path().join("full.toml");
    std::fs::write(&config, format!("[storage]\npath = \"{mount}/watch.db\"\n\n[dashboard]\nlisten = \"127.0.0.1:0\"\n\n{targets}")).unwrap();
    let daemon = Daemon::start(&config, &[("K", "sk-fault-test-00000000")]);
    let url = daemon.dashboard_url().await;
    openai_watch::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let reason = eventually("/healthz to report the database not writable", || async {
        let (status, body) = healthz(&http, &url).await;
        (status == 503 && body.contains("database not writable")).then_some(body)
    })
    .await;
    assert!(reason.contains("full"), "{reason}");
    let before = sim.state.requests().len();
    wait_for("probing to go on", || {
        sim.state.requests().len() >= before + 5
    })
    .await;
    assert!(
        run_ok("mount", &["-o", "remount,size=64m", &mount]),
        "remount"
    );
    wait_health(&http, &url, 200).await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("database writable again"), "{log}");
}
