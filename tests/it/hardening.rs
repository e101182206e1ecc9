//! What a hostile environment and a careless operator found (issue: hardening II), each
//! against the built binary: markup injection into Slack, case-insensitive auth schemes,
//! config and key paths that are devices or FIFOs, clear-text SMTP credentials.

use crate::helpers::*;

const KEY: &str = "sk-hardening-test-key-0000";

async fn upstream_text_cannot_ping_a_slack_channel_or_disguise_a_link(engine: Engine) {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "insufficient_quota").unwrap();
    sim.state.set_tag_message(
        "prod",
        "<!channel> quota gone: <https://evil.example|Re-enter your key> & retry",
    );
    let config = format!(
        "{}{}",
        webhook_alerts(&format!("http://{}/_sim/webhook", sim.addr), "slack"),
        one_second_target("prod", sim.tag_url("prod"), "chat")
    );
    let app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let text = eventually("the Slack message", || async {
        app.sim
            .state
            .webhooks()
            .first()
            .map(|h| h["text"].as_str().unwrap().to_string())
    })
    .await;
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<https://evil"), "{text}");
    assert!(
        text.contains("&lt;!channel&gt;") && text.contains("&amp; retry"),
        "the text is kept, escaped: {text}"
    );
    // Our own link to the dashboard is still a link.
    assert!(text.contains("|dashboard>"), "{text}");
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
}

async fn the_dashboard_token_is_accepted_with_the_scheme_in_any_case(engine: Engine) {
    let sim = start_simulator().await;
    let target = TargetSpec {
        name: "prod",
        base_url: sim.base_url("ok"),
        key_env: Some("K"),
        timeout: "10s",
        probes: &[("models", "1s")],
    }
    .toml();
    let app = TestApp::builder()
        .on(engine)
        .with(&format!(
            "[dashboard]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"T\"\n\n{target}"
        ))
        .env("K", KEY)
        .env("T", "dashboard-token-0000")
        .start_with(sim)
        .await;
    let status_url = format!("{}/api/v1/status", app.url);
    for auth in [
        "Bearer dashboard-token-0000",
        "bearer dashboard-token-0000",
        "BEARER dashboard-token-0000",
        // basic auth, any user, the token as password: "x:dashboard-token-0000"
        "basic eDpkYXNoYm9hcmQtdG9rZW4tMDAwMA==",
    ] {
        let r = app
            .http
            .get(&status_url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{auth}");
    }
    for auth in ["bearer wrong-token", "token dashboard-token-0000", ""] {
        let r = app
            .http
            .get(&status_url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn a_config_or_key_path_that_is_a_device_or_a_fifo_is_one_clear_error() {
    let ws = Workspace::new();
    let fifo = ws.dir.path().join("config.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for (what, config) in [
        ("a device", "/dev/zero".to_string()),
        ("a FIFO", fifo.display().to_string()),
        ("a directory", ws.dir.path().display().to_string()),
    ] {
        let out = run_cli(
            &["--config", &config, "config", "check"],
            &[],
            ws.dir.path(),
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{what}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    }
    let config = ws.write_config(
        "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_file = \"/dev/zero\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n",
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    let line = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("api_key_file"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(":{line}:"))
            && stderr.contains("api_key_file")
            && stderr.contains("not a regular file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn clear_text_smtp_credentials_to_loopback_are_allowed_with_a_warning() {
    let ws = Workspace::new();
    let config = ws.write_config(
        "[alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\ntls = \"none\"\n\
         username_env = \"U\"\npassword_env = \"P\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n\n\
         [[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n",
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[("U", "watch"), ("P", "smtp-password-0000")],
        ws.dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "warning: alerts.email: tls = \"none\" sends the SMTP credentials in clear text"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("smtp-password-0000"));
}

#[tokio::test]
async fn status_reads_a_thousand_targets_with_one_indexed_query() {
    let ws = Workspace::new();
    let n = 1000;
    let names: Vec<String> = (0..n).map(|i| format!("t{i:04}")).collect();
    {
        let store = openai_watch::store::Store::open(&ws.db()).await.unwrap();
        let now = openai_watch::clock::now_ms();
        let batch: Vec<_> = names
            .iter()
            .enumerate()
            .flat_map(|(i, name)| {
                let latest = if i % 10 == 0 { "server_error" } else { "ok" };
                [
                    observation(name, "ok", now - 60_000),
                    observation(name, latest, now - i as i64),
                ]
            })
            .collect();
        store.insert_probes("lab", &batch).await.unwrap();
        let plan = store.latest_probes_plan().await.unwrap().join("\n");
        assert!(
            plan.contains("probes_target_at"),
            "each target's latest probe is found through the index:\n{plan}"
        );
        assert!(
            !plan
                .lines()
                .any(|l| l.trim() == "SCAN p" || l.contains("SCAN probes")),
            "no full scan of the probes:\n{plan}"
        );
        store.close().await;
    }
    let mut config = String::new();
    for name in &names {
        config.push_str(&format!(
            "[[targets]]\nname = \"{name}\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [[targets.probes]]\nkind = \"chat\"\ninterval = \"60s\"\n"
        ));
    }
    let config = ws.write_config(&config);
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "status", "--json"],
        &[],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = status["targets"].as_array().unwrap();
    assert_eq!(targets.len(), n);
    for (i, t) in targets.iter().enumerate() {
        assert_eq!(t["name"], names[i].as_str());
        let want = if i % 10 == 0 { "server_error" } else { "ok" };
        assert_eq!(t["error_id"], want, "{t}");
    }
}

/// A config with one target and its database in `ws`.
fn one_target(ws: &Workspace) -> std::path::PathBuf {
    ws.write_config(
        "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n",
    )
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_in_words_an_operator_can_act_on() {
    let ws = Workspace::new();
    let config = one_target(&ws);
    openai_watch::store::Store::open(&ws.db())
        .await
        .unwrap()
        .close()
        .await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", ws.db().display()))
        .await
        .unwrap();
    sqlx::query(
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time) \
         values (99, 'from the future', true, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    for command in [&["status"][..], &["run"][..]] {
        let mut args = vec!["--config", config.to_str().unwrap()];
        args.extend_from_slice(command);
        let out = run_cli(&args, &[], ws.dir.path()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {stderr}");
        assert!(
            stderr.contains("written by a newer openai-watch (schema 99")
                && stderr.contains("upgrade openai-watch"),
            "{command:?}: {stderr}"
        );
        assert!(!stderr.contains("missing"), "{command:?}: {stderr}");
    }
}

#[tokio::test]
async fn status_reads_a_database_it_cannot_write() {
    let ws = Workspace::new();
    let config = one_target(&ws);
    {
        let store = openai_watch::store::Store::open(&ws.db()).await.unwrap();
        let now = openai_watch::clock::now_ms();
        store
            .insert_probes("lab", &[observation("prod", "insufficient_quota", now)])
            .await
            .unwrap();
        store.close().await;
    }
    // Immutable even for root (CI runs as root, for whom file modes do not count).
    let db = ws.db().display().to_string();
    let immutable = std::process::Command::new("chattr")
        .args(["+i", &db])
        .status()
        .is_ok_and(|s| s.success());
    if !immutable {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to make a file immutable"
        );
        eprintln!("SKIPPED: cannot make the database immutable here");
        return;
    }
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "status", "--json"],
        &[],
        ws.dir.path(),
    )
    .await;
    let _ = std::process::Command::new("chattr")
        .args(["-i", &db])
        .status();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["targets"][0]["error_id"], "insufficient_quota");
}

async fn every_email_about_an_incident_grouped_or_not_is_in_its_thread_with_ids_of_this_installation(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let smtp = crate::helpers::smtp::SmtpServer::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        None,
    );
    let mut config = format!(
        "[detection]\nfailure_threshold = 1\nsuccess_threshold = 1\n\n\
         [alerts]\ngroup_wait = \"3s\"\n\n[alerts.email]\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {}\ntls = \"none\"\nfrom = \"w@example.com\"\nto = [\"o@example.com\"]\n\n",
        smtp.port
    );
    for name in ["eu", "us"] {
        config.push_str(
            &TargetSpec {
                name,
                base_url: sim.tag_url("both"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1s")],
            }
            .toml(),
        );
    }
    sim.state.set_tag("both", "invalid_api_key").unwrap();
    let app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let firing = eventually("the grouped FIRING email", || async {
        smtp.mails()
            .into_iter()
            .find(|m| m.subject.contains("FIRING auth: "))
    })
    .await;
    assert!(
        firing.subject.contains("eu") && firing.subject.contains("us"),
        "one email about both incidents: {}",
        firing.subject
    );
    app.sim.state.set_tag("both", "ok").unwrap();
    let resolved = eventually("the RESOLVED email", || async {
        smtp.mails()
            .into_iter()
            .find(|m| m.subject.contains("RESOLVED auth"))
    })
    .await;
    let (installation,) = app
        .ws
        .rows::<(String,)>("select id from installation")
        .await
        .remove(0);
    assert_eq!(installation.len(), 32);

    let firing_id = firing.header("Message-ID").unwrap().trim().to_string();
    assert!(firing_id.contains(&installation), "{firing_id}");
    assert_eq!(
        resolved.header("In-Reply-To").map(str::trim),
        Some(firing_id.as_str()),
        "the resolution replies to the message that was sent"
    );
    let refs = resolved.header("References").unwrap_or_default();
    assert!(refs.contains(&firing_id), "{refs}");
    assert!(
        resolved
            .header("Message-ID")
            .is_some_and(|id| id.contains(&installation) && id.trim() != firing_id),
        "a Message-ID of its own"
    );
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");

    // Another installation (a new database) never reuses these ids.
    let other = Workspace::on(engine);
    let store = other.store().await;
    assert_ne!(store.installation_id().await.unwrap(), installation);
    store.close().await;
}

async fn a_resolved_alert_never_overtakes_its_firing_one(engine: Engine) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    // A webhook that answers 503 until told otherwise, and keeps what it accepted, in order.
    let up = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let (flag, sink) = (up.clone(), accepted.clone());
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (flag, sink) = (flag.clone(), sink.clone());
            async move {
                if !flag.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                sink.lock()
                    .unwrap()
                    .push(v["event"].as_str().unwrap().to_string());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let config = format!(
        "[detection]\nsuccess_threshold = 1\n\n{}{}",
        webhook_alerts(&format!("http://{hook_addr}/hook"), "json"),
        one_second_target("prod", sim.tag_url("prod"), "models")
    );
    let app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let query = |sql: &'static str| app.ws.count(sql);
    // The firing alert fails a few times: its next attempt is several seconds away.
    eventually("the firing alert to fail 3 times", || async {
        (query("select coalesce(max(attempts), 0) from alert_deliveries").await >= 3).then_some(())
    })
    .await;
    app.sim.state.set_tag("prod", "ok").unwrap();
    eventually("the resolved event", || async {
        (query("select count(*) from alert_events where kind = 'resolved'").await == 1)
            .then_some(())
    })
    .await;
    up.store(true, Ordering::SeqCst);
    let events = eventually("both alerts delivered", || async {
        let got = accepted.lock().unwrap().clone();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(events, ["firing", "resolved"], "in order");
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
}

/// Runs `check` with the file-descriptor limit set to `limit`.
async fn check_with_fd_limit(
    config: &std::path::Path,
    limit: u32,
    cwd: &std::path::Path,
) -> std::process::Output {
    let script = format!("ulimit -n {limit} && exec \"$0\" --config \"$1\" check");
    run_cli_via_sh(
        &script,
        &[BIN, config.to_str().unwrap()],
        &[("K", KEY)],
        cwd,
    )
    .await
}

#[tokio::test]
async fn check_with_many_probes_keeps_to_the_concurrency_bound_and_never_blames_the_api_for_local_failures()
 {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let mut config = String::new();
    for i in 0..300 {
        config.push_str(
            &TargetSpec {
                name: &format!("t{i}"),
                base_url: sim.base_url("ok"),
                key_env: Some("K"),
                timeout: "20s",
                probes: &[("models", "60s"), ("chat", "60s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&config);

    // 600 probes, 256 descriptors: all of them answered, all healthy.
    let out = check_with_fd_limit(&config, 256, ws.dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("OK")).count(), 600);
    assert_eq!(probe_rows(&ws.db()).await.len(), 600);

    // 40 descriptors: most probes cannot even be made. That is this machine's problem:
    // UNKNOWN (exit 3), never a CRITICAL outage, and nothing of it stored as the API's.
    let out = check_with_fd_limit(&config, 40, ws.dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("CRITICAL"), "{stdout}");
    let local: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("UNKNOWN"))
        .collect();
    assert!(
        !local.is_empty(),
        "the limit was low enough to bite: {stdout}"
    );
    assert!(
        local
            .iter()
            .all(|l| l.contains("monitor local_failure") && l.contains("not a problem of the API")),
        "{local:?}"
    );
    let rows = probe_rows(&ws.db()).await;
    assert_eq!(
        rows.len(),
        600 + stdout.lines().filter(|l| l.starts_with("OK")).count(),
        "only answered probes are stored"
    );
    assert!(
        rows.iter()
            .all(|r| r.category == "ok"
                && !r.message.as_deref().unwrap_or("").contains("open files")),
        "no local failure stored"
    );
}

#[tokio::test]
async fn idle_dashboard_connections_never_take_the_probes_descriptors() {
    use tokio::io::AsyncReadExt;
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let config = ws.write_config(&format!(
        "[detection]\nfailure_threshold = 1\n\n[alerts]\ngroup_wait = \"0s\"\n\n\
         [[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\n\n{}",
        sim.addr,
        TargetSpec {
            name: "prod",
            base_url: sim.base_url("ok"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml()
    ));
    // 256 descriptors in all, and more idle connections than that.
    let daemon = Daemon::start_with_fd_limit(&config, &[("K", KEY)], 256);
    let url = daemon.dashboard_url().await;
    let addr = url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            idle.push(s);
        }
    }
    // Probing goes on, healthy, while they are held.
    let before = probe_rows(&ws.db()).await.len();
    eventually("5 more probes while the dashboard is flooded", || async {
        (probe_rows(&ws.db()).await.len() >= before + 5).then_some(())
    })
    .await;
    // The server closes every one of them: refused beyond the cap, or idle too long.
    for (i, s) in idle.iter_mut().enumerate() {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection {i} still open: {read:?}"
        );
    }
    drop(idle);
    openai_watch::tls::install_crypto_provider();
    let health = eventually("/healthz to answer 200", || async {
        let r = reqwest::get(format!("{url}/healthz")).await.ok()?;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(health.status(), 200);
    let rows = probe_rows(&ws.db()).await;
    assert!(
        rows.iter().all(|r| r.category == "ok"),
        "no probe failed for want of descriptors: {:?}",
        rows.iter().find(|r| r.category != "ok")
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(!log.contains("incident opened"), "no false outage: {log}");
}

#[tokio::test]
async fn a_model_list_longer_than_the_body_cap_is_healthy() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let config = ws.write_config(
        &TargetSpec {
            name: "many",
            base_url: sim.base_url(openai_watch::simulate::OK_MANY_MODELS),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "60s"), ("chat", "60s")],
        }
        .toml(),
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(lines.iter().all(|l| l["error_id"] == "ok"), "{stdout}");
    // The list really is longer than what a probe reads.
    let list = http_client()
        .get(format!(
            "{}/models",
            sim.base_url(openai_watch::simulate::OK_MANY_MODELS)
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        list.len() > 4 * openai_watch::probe::BODY_CAP,
        "{} bytes",
        list.len()
    );
}

crate::both_engines!(
    upstream_text_cannot_ping_a_slack_channel_or_disguise_a_link,
    the_dashboard_token_is_accepted_with_the_scheme_in_any_case,
    every_email_about_an_incident_grouped_or_not_is_in_its_thread_with_ids_of_this_installation,
    a_resolved_alert_never_overtakes_its_firing_one,
);
