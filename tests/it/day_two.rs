//! Day two (SPEC §15), black-box: silences, maintenance windows, acknowledgements and routes
//! with the real binary, the simulator and real SMTP servers; the write endpoints' guards.

use crate::helpers::smtp::{Mail, SmtpServer};
use crate::helpers::*;
use std::time::Duration;

const KEY: &str = "sk-day-two-0000000000000000";

fn smtp() -> SmtpServer {
    SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None)
}

/// One named email channel to a plaintext SMTP server on loopback.
fn email_channel(name: &str, port: u16) -> String {
    format!(
        "[[alerts.email]]\nname = \"{name}\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\n\
         from = \"w@example.com\"\nto = [\"{name}@example.com\"]\n\n"
    )
}

fn target(sim: &openai_watch::simulate::Simulator, name: &str, kind: &str) -> String {
    TargetSpec {
        name,
        base_url: sim.tag_url(name),
        key_env: Some("K"),
        timeout: "10s",
        probes: &[(kind, "1s")],
    }
    .toml()
}

fn firing_about<'a>(mails: &'a [Mail], target: &str) -> Vec<&'a Mail> {
    let line = format!("Target:      {target} (");
    mails
        .iter()
        .filter(|m| m.subject.contains("] FIRING ") && m.text.contains(&line))
        .collect()
}

/// Deliveries of `target`'s incidents: (kind, channel, state, silence id, maintenance).
async fn deliveries(
    ws: &Workspace,
    target: &str,
) -> Vec<(String, String, String, Option<i64>, Option<String>)> {
    ws.rows(&format!(
        "select e.kind, d.channel, d.state, d.silence_id, d.maintenance from alert_deliveries d \
         join alert_events e on e.id = d.event_id join incidents i on i.id = e.incident_id \
         where i.target = '{target}' order by d.id"
    ))
    .await
}

async fn cli(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let config = ws.config_path();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_cli(&all, env, ws.dir.path()).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn a_silenced_quota_incident_sends_nothing_and_fires_once_when_the_silence_ends(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let mail = smtp();
    let ws = Workspace::on(engine);
    sim.state.set_tag("prod", "insufficient_quota").unwrap();
    let config = format!(
        "[detection]\nfailure_threshold = 2\n\n{}{}",
        email_alerts(mail.port, "\"quota\""),
        target(&sim, "prod", "chat")
    );
    ws.write_config(&config);

    // Silenced before the daemon starts: the command line makes the database.
    let (code, out, err) = cli(
        &ws,
        &[
            "silence",
            "add",
            "--target",
            "prod",
            "--category",
            "quota",
            "--for",
            "2h",
            "--comment",
            "fixing billing",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence 1 added"), "{out}");

    let daemon = Daemon::start(&ws.config_path(), &[("K", KEY)]);
    let url = daemon.dashboard_url().await;
    // The incident opens, is shown, and its alert is recorded as suppressed by silence 1.
    eventually("the firing alert recorded as suppressed", || async {
        let d = deliveries(&ws, "prod").await;
        d.iter()
            .any(|r| r.0 == "firing" && r.2 == "suppressed" && r.3 == Some(1))
            .then_some(())
    })
    .await;
    let http = http_client();
    let incidents = json_of(http.get(format!("{url}/api/v1/incidents"))).await;
    assert!(
        incidents.to_string().contains("insufficient_quota"),
        "{incidents}"
    );
    let page = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("alerts suppressed by silence #1"), "{page}");
    assert!(page.contains("fixing billing"), "{page}");
    assert!(
        mail.mails().is_empty(),
        "sent while silenced: {:?}",
        mail.mails()[0].subject
    );

    // The silence ends while the incident is still open: the firing alert goes out, once.
    let (code, out, err) = cli(&ws, &["silence", "expire", "1"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence 1 ends"), "{out}");
    eventually("one FIRING email after the silence ended", || async {
        (firing_about(&mail.mails(), "prod").len() == 1).then_some(())
    })
    .await;
    // It recovers: a RESOLVED follows, and there was only ever one FIRING.
    sim.state.set_tag("prod", "ok").unwrap();
    eventually("the RESOLVED email", || async {
        mail.mails()
            .iter()
            .any(|m| m.subject.contains("] RESOLVED "))
            .then_some(())
    })
    .await;
    assert_eq!(firing_about(&mail.mails(), "prod").len(), 1);
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("alert suppressed"), "{log}");
}

async fn a_maintenance_window_suppresses_and_then_lets_the_alert_through(engine: Engine) {
    let sim = start_simulator().await;
    let mail = smtp();
    let ws = Workspace::on(engine);
    sim.state.set_tag("batch", "invalid_api_key").unwrap();
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let now = jiff::Timestamp::now();
    let end = now + jiff::SignedDuration::from_secs(25);
    let config = format!(
        "[[maintenance]]\nname = \"key-rotation\"\ntargets = [\"batch\"]\nstart = \"{}\"\nend = \"{end}\"\n\n{}{}{}",
        now - jiff::SignedDuration::from_secs(60),
        email_alerts(mail.port, "\"auth\""),
        target(&sim, "batch", "models"),
        target(&sim, "prod", "models"),
    );
    ws.write_config(&config);
    let daemon = Daemon::start(&ws.config_path(), &[("K", KEY)]);
    let url = daemon.dashboard_url().await;

    // prod is outside the window: its alert goes out at once; batch's is suppressed.
    eventually("prod's FIRING email", || async {
        (!firing_about(&mail.mails(), "prod").is_empty()).then_some(())
    })
    .await;
    eventually("batch's alert suppressed by the window", || async {
        deliveries(&ws, "batch")
            .await
            .iter()
            .any(|r| r.2 == "suppressed" && r.4.as_deref() == Some("key-rotation"))
            .then_some(())
    })
    .await;
    let page = http_client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("maintenance key-rotation"), "{page}");
    assert!(page.contains("holding until"), "{page}");
    assert!(firing_about(&mail.mails(), "batch").is_empty());

    // After the window, batch is still failing: its alert goes out then, not before.
    let batch = eventually_within(
        Duration::from_secs(120),
        "batch's FIRING after the window",
        || async {
            firing_about(&mail.mails(), "batch")
                .first()
                .map(|m| (*m).clone())
        },
    )
    .await;
    let sent_at = std::time::SystemTime::now() - batch.accepted_at.elapsed();
    let sent_at = jiff::Timestamp::try_from(sent_at).unwrap();
    assert!(sent_at >= end, "sent at {sent_at}, window ended {end}");
    assert_eq!(firing_about(&mail.mails(), "batch").len(), 1);
    drop(daemon);
}

async fn routes_send_auth_and_outage_to_their_own_mailboxes_and_continue_sends_to_both(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let (security, oncall) = (smtp(), smtp());
    let ws = Workspace::on(engine);
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    sim.state.set_tag("batch", "invalid_api_key").unwrap();
    sim.state.set_tag("down", "server_error").unwrap();
    let config = format!(
        "[detection]\nfailure_threshold = 2\n\n[alerts]\ngroup_wait = \"0s\"\n\n{}{}\
         [[alerts.routes]]\ntargets = [\"prod\"]\ncategories = [\"auth\"]\nchannels = [\"security\"]\ncontinue = true\n\n\
         [[alerts.routes]]\ntargets = [\"batch\"]\ncategories = [\"auth\"]\nchannels = [\"security\"]\n\n\
         [[alerts.routes]]\nchannels = [\"oncall\"]\n\n{}{}{}",
        email_channel("security", security.port),
        email_channel("oncall", oncall.port),
        target(&sim, "prod", "models"),
        target(&sim, "batch", "models"),
        target(&sim, "down", "models"),
    );
    ws.write_config(&config);
    let (code, out, err) = cli(&ws, &["config", "check"], &[("K", KEY)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1. targets prod; categories auth; any location -> security (continue)"),
        "{out}"
    );
    assert!(
        out.contains("3. any target; any category; any location -> oncall"),
        "{out}"
    );

    let daemon = Daemon::start(&ws.config_path(), &[("K", KEY)]);
    daemon.dashboard_url().await;
    eventually("every FIRING email", || async {
        let (s, o) = (security.mails(), oncall.mails());
        (!firing_about(&s, "prod").is_empty()
            && !firing_about(&s, "batch").is_empty()
            && !firing_about(&o, "prod").is_empty()
            && !firing_about(&o, "down").is_empty())
        .then_some(())
    })
    .await;
    // Settle: anything misrouted would have been sent in the same passes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, o) = (security.mails(), oncall.mails());
    assert!(
        firing_about(&s, "down").is_empty(),
        "outage reached security"
    );
    assert!(
        firing_about(&o, "batch").is_empty(),
        "batch's auth went on past a route without continue"
    );
    assert!(
        s.iter()
            .all(|m| m.header("To") == Some("security@example.com"))
    );
    assert!(
        o.iter()
            .all(|m| m.header("To") == Some("oncall@example.com"))
    );

    // A channel can be tested by name.
    let (code, out, err) = cli(
        &ws,
        &["alert", "test", "--channel", "oncall"],
        &[("K", KEY)],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    eventually("the test email at oncall only", || async {
        oncall
            .mails()
            .iter()
            .any(|m| m.subject.contains("TEST"))
            .then_some(())
    })
    .await;
    assert!(!security.mails().iter().any(|m| m.subject.contains("TEST")));
    drop(daemon);
}

async fn an_acknowledged_incident_gets_no_reminder_and_its_resolved_alert_says_who(engine: Engine) {
    let sim = start_simulator().await;
    let mail = smtp();
    let ws = Workspace::on(engine);
    sim.state.set_tag("acked", "invalid_api_key").unwrap();
    sim.state.set_tag("control", "invalid_api_key").unwrap();
    let config = format!(
        "[alerts]\ngroup_wait = \"0s\"\nreminder_interval = \"1m\"\ncategories = [\"auth\"]\n\n{}{}{}",
        email_channel("email", mail.port),
        target(&sim, "acked", "models"),
        target(&sim, "control", "models"),
    );
    ws.write_config(&config);
    let daemon = Daemon::start(&ws.config_path(), &[("K", KEY)]);
    daemon.dashboard_url().await;
    eventually("both FIRING emails", || async {
        let m = mail.mails();
        (!firing_about(&m, "acked").is_empty() && !firing_about(&m, "control").is_empty())
            .then_some(())
    })
    .await;
    let id = ws
        .rows::<(i64,)>("select id from incidents where target = 'acked'")
        .await[0]
        .0;
    let (code, out, err) = cli(
        &ws,
        &["ack", &id.to_string(), "--comment", "rotating the key"],
        &[("USER", "alice")],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acknowledged by cli:alice at"), "{out}");
    assert!(out.contains(": rotating the key"), "{out}");

    // The control incident is reminded after a minute; the acknowledged one is not.
    let reminded = |m: &Mail, t: &str| {
        m.subject.contains("] STILL FIRING ") && m.text.contains(&format!("Target:      {t} ("))
    };
    eventually_within(
        Duration::from_secs(150),
        "the control incident's reminder",
        || async {
            mail.mails()
                .iter()
                .any(|m| reminded(m, "control"))
                .then_some(())
        },
    )
    .await;
    assert!(
        !mail.mails().iter().any(|m| reminded(m, "acked")),
        "an acknowledged incident was reminded"
    );

    sim.state.set_tag("acked", "ok").unwrap();
    let resolved = eventually("the RESOLVED email", || async {
        mail.mails()
            .into_iter()
            .find(|m| m.subject.contains("] RESOLVED ") && m.text.contains("Target:      acked ("))
    })
    .await;
    assert!(
        resolved
            .text
            .contains("Ack:         acknowledged by cli:alice at"),
        "{}",
        resolved.text
    );
    assert!(
        resolved.text.contains(": rotating the key"),
        "{}",
        resolved.text
    );
    assert!(
        resolved.html.contains("acknowledged by cli:alice"),
        "{}",
        resolved.html
    );
    drop(daemon);
}

/// The rows the writes may change: silences, acknowledgements and the audit log.
async fn written(ws: &Workspace) -> (i64, i64, i64) {
    (
        ws.count("select count(*) from silences").await,
        ws.count("select count(*) from incidents where acked_at_ms is not null")
            .await,
        ws.count("select count(*) from audit_log").await,
    )
}

const SILENCE: &str =
    r#"{"target": "prod", "category": "auth", "duration": "1h", "comment": "rotation"}"#;

async fn writes_are_refused_without_a_configured_token_and_nothing_changes(engine: Engine) {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let app = TestApp::builder()
        .on(engine)
        .with(&target(&sim, "prod", "models"))
        .env("K", KEY)
        .start_with(sim)
        .await;
    app.json_until("the auth incident", "/api/v1/incidents", |v| {
        v.to_string().contains("invalid_api_key")
    })
    .await;
    let http = &app.http;
    let answers = [
        http.post(format!("{}/api/v1/silences", app.url))
            .header("content-type", "application/json")
            .body(SILENCE)
            .send()
            .await
            .unwrap(),
        http.delete(format!("{}/api/v1/silences/1", app.url))
            .send()
            .await
            .unwrap(),
        http.post(format!("{}/api/v1/incidents/1/ack", app.url))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    ];
    for a in answers {
        assert_eq!(a.status(), 403);
        assert!(
            a.text()
                .await
                .unwrap()
                .contains("writes need a dashboard token")
        );
    }
    // Reads stay open without a token.
    assert_eq!(app.get("/api/v1/silences").await.status(), 200);
    assert_eq!(written(&app.ws).await, (0, 0, 0));
}

async fn writes_need_a_valid_token_from_this_site_and_are_stored_with_its_name(engine: Engine) {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let app = TestApp::builder()
        .on(engine)
        .with(
            "[dashboard]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"TOK\"\n\n\
             [[dashboard.tokens]]\nname = \"alice\"\ntoken_env = \"ALICE\"\n\n",
        )
        .with(&target(&sim, "prod", "models"))
        .env("K", KEY)
        .env("TOK", "dashboard-token-0000")
        .env("ALICE", "alice-token-0000")
        .start_with(sim)
        .await;
    let http = &app.http;
    let incidents_url = format!("{}/api/v1/incidents", app.url);
    eventually("the auth incident", || async {
        let r = http
            .get(&incidents_url)
            .bearer_auth("alice-token-0000")
            .send()
            .await
            .unwrap();
        r.text()
            .await
            .unwrap()
            .contains("invalid_api_key")
            .then_some(())
    })
    .await;
    let post = |token: Option<&str>, origin: Option<&str>, ct: &str, body: &str| {
        let mut r = http
            .post(format!("{}/api/v1/silences", app.url))
            .header("content-type", ct)
            .body(body.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    // Missing or wrong token: 401.
    assert_eq!(
        post(None, None, "application/json", SILENCE)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(Some("wrong"), None, "application/json", SILENCE)
            .await
            .unwrap()
            .status(),
        401
    );
    let r = http
        .post(format!("{}/api/v1/incidents/1/ack", app.url))
        .header("content-type", "application/json")
        .bearer_auth("nope")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another site's form, even with the right credentials: refused.
    let form = "target=prod&comment=x";
    let r = post(
        Some("alice-token-0000"),
        Some("https://evil.example"),
        "application/x-www-form-urlencoded",
        form,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{}/api/v1/silences", app.url))
        .basic_auth("x", Some("alice-token-0000"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "text/plain")
        .body(SILENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The right token, but a form body from this site: refused too (JSON only).
    let r = post(
        Some("alice-token-0000"),
        None,
        "application/x-www-form-urlencoded",
        form,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    // A bad body: 400 with the reason.
    let r = post(
        Some("alice-token-0000"),
        None,
        "application/json",
        r#"{"comment": "x"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("end time or a duration"));
    assert_eq!(
        written(&app.ws).await,
        (0, 0, 0),
        "a refused write changed the database"
    );

    // Accepted: stored with the token's name, in the audit log too.
    let r = post(
        Some("alice-token-0000"),
        Some(&app.url),
        "application/json",
        SILENCE,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let silence: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(silence["created_by"], "alice");
    let r = http
        .post(format!("{}/api/v1/incidents/1/ack", app.url))
        .bearer_auth("dashboard-token-0000")
        .header("content-type", "application/json")
        .body(r#"{"comment": "on it"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(acked["incident"]["acked_by"], "dashboard");
    let incidents = json_of(http.get(&incidents_url).bearer_auth("alice-token-0000")).await;
    assert_eq!(
        incidents[0]["acknowledged"]["by"], "dashboard",
        "{incidents}"
    );
    assert_eq!(
        incidents[0]["acknowledged"]["comment"], "on it",
        "{incidents}"
    );
    let r = http
        .delete(format!("{}/api/v1/silences/{}", app.url, silence["id"]))
        .bearer_auth("alice-token-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(written(&app.ws).await, (1, 1, 3));
    let log = app.daemon.stderr.lock().unwrap().clone();
    assert!(
        log.contains("silence added") && log.contains("actor=alice"),
        "{log}"
    );
    assert!(!log.contains("alice-token-0000"));

    // The command line through the API: the token from $OPENAI_WATCH_TOKEN.
    let cwd = tempfile::tempdir().unwrap();
    let env = [("OPENAI_WATCH_TOKEN", "alice-token-0000")];
    let out = run_cli(
        &[
            "silence",
            "add",
            "--url",
            &app.url,
            "--target",
            "prod",
            "--for",
            "30m",
            "--comment",
            "from a laptop",
        ],
        &env,
        cwd.path(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(
        &["silence", "list", "--url", &app.url, "--json"],
        &env,
        cwd.path(),
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["comment"], "from a laptop");
    assert_eq!(list[0]["created_by"], "alice");
    let out = run_cli(&["silence", "list", "--url", &app.url], &[], cwd.path()).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPENAI_WATCH_TOKEN"));
    let out = run_cli(
        &["ack", "999", "--url", &app.url],
        &[("OPENAI_WATCH_TOKEN", "wrong")],
        cwd.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn bad_silences_on_the_command_line_get_one_clear_line() {
    let ws = Workspace::new();
    ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: format!("http://127.0.0.1:{}/v1", closed_port()),
            key_env: None,
            timeout: "10s",
            probes: &[("models", "1m")],
        }
        .toml(),
    );
    for (args, needle) in [
        (
            vec!["silence", "add", "--comment", "x"],
            "end time or a duration",
        ),
        (
            vec!["silence", "add", "--for", "2 fortnights", "--comment", "x"],
            "duration",
        ),
        (
            vec![
                "silence",
                "add",
                "--for",
                "1h",
                "--category",
                "quotas",
                "--comment",
                "x",
            ],
            "unknown category",
        ),
        (
            vec![
                "silence",
                "add",
                "--until",
                "2001-01-01T00:00:00Z",
                "--comment",
                "x",
            ],
            "already be over",
        ),
        (
            vec!["silence", "add", "--for", "1h", "--comment", " "],
            "comment",
        ),
    ] {
        let (code, _, err) = cli(&ws, &args, &[]).await;
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, _, err) = cli(&ws, &["silence", "expire", "42"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no silence 42"), "{err}");
    let (code, out, _) = cli(&ws, &["silence", "list"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "no silences");
}

async fn a_silence_ends_at_its_end_time_and_the_firing_alert_goes_out_then(engine: Engine) {
    use openai_watch::silence::NewSilence;
    let mail = smtp();
    let ws = Workspace::on(engine);
    let path = ws.write_config(&format!(
        "{}{}",
        email_alerts(mail.port, "\"auth\""),
        TargetSpec {
            name: "prod",
            base_url: "http://127.0.0.1:9/v1".into(),
            key_env: None,
            timeout: "10s",
            probes: &[("models", "1m")],
        }
        .toml()
    ));
    let config = openai_watch::config::Config::load(&path).unwrap();
    let store = ws.store().await;
    let notifier = openai_watch::notify::Notifier::new(
        &config,
        store.clone(),
        std::sync::Arc::new(openai_watch::metrics::Metrics::new()),
    )
    .unwrap();
    // Explicit times: the silence holds from t0 - 1 s to t0 + 60 s. (Near the real clock:
    // a delivery's sent time is the real one, and reminders count from it.)
    let t0 = openai_watch::clock::now_ms();
    let silence = NewSilence {
        target: "prod".into(),
        category: "*".into(),
        error_id: "invalid_*".into(),
        location: "*".into(),
        starts_at_ms: t0 - 1_000,
        ends_at_ms: t0 + 60_000,
        comment: "key rotation".into(),
    };
    let silence = store
        .add_silence(&silence, "test", t0 - 1_000)
        .await
        .unwrap();
    let mut states = std::collections::HashMap::new();
    store
        .record(
            "lab",
            &[observation("prod", "invalid_api_key", t0)],
            &mut states,
            &config.detection,
            &openai_watch::notify::routing(&config),
        )
        .await
        .unwrap();

    assert_eq!(notifier.run_once(t0).await.unwrap(), 0);
    let d = store.deliveries_for_incident(1).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, openai_watch::domain::DeliveryState::Suppressed);
    assert_eq!(d[0].silence_id, Some(silence.id));
    assert_eq!(
        notifier.run_once(t0 + 59_999).await.unwrap(),
        0,
        "still silenced"
    );
    assert_eq!(
        store.deliveries_for_incident(1).await.unwrap().len(),
        1,
        "no new alert yet"
    );

    // The end: the incident is still open, so its firing alert goes out, once.
    assert_eq!(notifier.run_once(t0 + 60_000).await.unwrap(), 1);
    assert_eq!(notifier.run_once(t0 + 61_000).await.unwrap(), 0);
    eventually("the FIRING email", || async {
        (firing_about(&mail.mails(), "prod").len() == 1).then_some(())
    })
    .await;
    let d = store.deliveries_for_incident(1).await.unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[1].state, openai_watch::domain::DeliveryState::Sent);
}

crate::both_engines!(
    a_silenced_quota_incident_sends_nothing_and_fires_once_when_the_silence_ends,
    a_maintenance_window_suppresses_and_then_lets_the_alert_through,
    routes_send_auth_and_outage_to_their_own_mailboxes_and_continue_sends_to_both,
    an_acknowledged_incident_gets_no_reminder_and_its_resolved_alert_says_who,
    writes_are_refused_without_a_configured_token_and_nothing_changes,
    writes_need_a_valid_token_from_this_site_and_are_stored_with_its_name,
    a_silence_ends_at_its_end_time_and_the_firing_alert_goes_out_then,
);
