//! What a hostile environment and a careless operator found (issue: hardening II), each
//! against the built binary: markup injection into Slack, case-insensitive auth schemes,
//! config and key paths that are devices or FIFOs, clear-text SMTP credentials.

use crate::helpers::*;

const KEY: &str = "sk-hardening-test-key-0000";

#[tokio::test]
async fn upstream_text_cannot_ping_a_slack_channel_or_disguise_a_link() {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "insufficient_quota").unwrap();
    sim.state.set_tag_message(
        "prod",
        "<!channel> quota gone: <https://evil.example|Re-enter your key> & retry",
    );
    let config = format!(
        "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\nformat = \"slack\"\n\n{}",
        sim.addr,
        TargetSpec {
            name: "prod",
            base_url: sim.tag_url("prod"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("chat", "1s")],
        }
        .toml()
    );
    let app = TestApp::builder()
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let hooks_url = format!("http://{}/_sim/webhook", app.sim.addr);
    let text = eventually("the Slack message", || async {
        let body = app
            .http
            .get(&hooks_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let hooks: serde_json::Value = serde_json::from_str(&body).unwrap();
        hooks
            .as_array()
            .unwrap()
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

#[tokio::test]
async fn the_dashboard_token_is_accepted_with_the_scheme_in_any_case() {
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

#[tokio::test]
async fn every_email_about_an_incident_grouped_or_not_is_in_its_thread_with_ids_of_this_installation()
 {
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
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.ws.db().display()))
        .await
        .unwrap();
    let (installation,): (String,) = sqlx::query_as("select id from installation")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
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
    let other = Workspace::new();
    let store = openai_watch::store::Store::open(&other.db()).await.unwrap();
    assert_ne!(store.installation_id().await.unwrap(), installation);
    store.close().await;
}
