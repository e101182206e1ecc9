//! Leading signals against the simulator over TCP, with the built daemon: rate-limit headroom
//! opens at 0.9 used, resolves at 0.5, survives a restart without a second incident, alerts
//! where `[alerts] categories` names it, and shows in the metrics.

use crate::helpers::*;

const KEY: &str = "sk-leading-signals-test-000";

/// The incidents of the workspace's database: (id, category, resolved, last message).
async fn incidents(ws: &Workspace) -> Vec<(i64, String, bool, Option<String>)> {
    ws.try_rows::<(i64, String, Option<i64>, Option<String>)>(
        "select id, category, resolved_at_ms, last_message from incidents order by id",
    )
    .await
    .unwrap_or_default()
    .into_iter()
    .map(|(id, c, r, m)| (id, c, r.is_some(), m))
    .collect()
}

async fn headroom_opens_at_ninety_percent_used_resolves_at_half_and_survives_a_restart(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let config = format!(
        "[detection]\nfailure_threshold = 3\nsuccess_threshold = 2\nheadroom_warn = 0.9\n\n\
         [alerts]\ngroup_wait = \"0s\"\ncategories = [\"headroom\"]\n\n\
         [[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\n\n{}",
        sim.addr,
        one_second_target("prod", sim.tag_url("prod"), "chat")
    );
    sim.state.set_tag_remaining("prod", 0.05);
    let app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let open = eventually("the headroom incident", || async {
        incidents(&app.ws)
            .await
            .into_iter()
            .find(|i| i.1 == "headroom" && !i.2)
    })
    .await;
    let message = open.3.clone().unwrap();
    assert!(
        message.contains("gpt-4o-mini")
            && message.contains("95% of the")
            && message.contains("limit used"),
        "the message names the model and the limit: {message}"
    );
    // The answers themselves are healthy: no failure incident, every probe ok.
    assert!(app.ws.probe_rows().await.iter().all(|r| r.category == "ok"));

    // It alerts, with the documented cause and resolution.
    let firing = eventually("the headroom alert", || async {
        app.sim
            .state
            .webhooks()
            .into_iter()
            .find(|h| h["event"] == "firing")
    })
    .await;
    assert_eq!(firing["category"], "headroom");
    let text = firing.to_string();
    assert!(text.contains("higher usage tier"), "{text}");

    // The gauge of the metrics, per model.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("openai_watch_ratelimit_remaining{")
                && l.contains("model=\"gpt-4o-mini\"")
                && l.contains("kind=\"requests\"")
                && l.ends_with(" 25")),
        "{metrics}"
    );
    assert!(
        metrics.contains("openai_watch_ratelimit_limit{"),
        "{metrics}"
    );
    // The status page shows the gauge and its 24-hour history for the model.
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("Rate limit used, gpt-4o-mini: <strong class=\"h-warn\">95%</strong>"),
        "{page}"
    );
    assert!(
        page.contains("highest share of a rate limit used per hour (UTC): ")
            && page.contains(" 95%</title>"),
        "the hourly bar"
    );

    // A restart continues: the same incident stays open, no second one.
    let TestApp {
        sim, ws, daemon, ..
    } = app;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    let config_path = ws.config_path();
    let daemon = Daemon::start(&config_path, &[("K", KEY)]);
    daemon.dashboard_url().await;
    let probes = ws.probe_rows().await.len();
    eventually("three more probes after the restart", || async {
        (ws.probe_rows().await.len() >= probes + 3).then_some(())
    })
    .await;
    let after = incidents(&ws).await;
    assert_eq!(
        after.iter().filter(|i| i.1 == "headroom").count(),
        1,
        "no duplicate incident: {after:?}"
    );
    assert!(
        after.iter().any(|i| i.0 == open.0 && !i.2),
        "still open: {after:?}"
    );

    // Half the limit left: it resolves.
    sim.state.set_tag_remaining("prod", 0.5);
    eventually("the headroom incident to resolve", || async {
        incidents(&ws)
            .await
            .into_iter()
            .any(|i| i.0 == open.0 && i.2)
            .then_some(())
    })
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
}

async fn slow_opens_when_answers_go_from_50_ms_to_3_s_and_resolves_when_they_come_back(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    // A day of history: healthy chat answers in about 50 ms, as the rollups keep it.
    {
        let store = ws.store().await;
        let now = openai_watch::clock::now_ms();
        let hour = openai_watch::store::HOUR_MS;
        let rows: Vec<openai_watch::store::RollupRow> = (1..24)
            .map(|h| openai_watch::store::RollupRow {
                probe: Some(openai_watch::domain::ProbeKind::Chat),
                category: openai_watch::domain::Category::Ok,
                hour_ms: now - now.rem_euclid(hour) - h * hour,
                count: 60,
                latency_sum_ms: 60 * 50,
                latency_max_ms: 80,
                used_max: None,
            })
            .collect();
        store.add_rollups("prod", &rows).await.unwrap();
        store.close().await;
    }
    let config = ws.write_config(&format!(
        "[detection]\nfailure_threshold = 3\nsuccess_threshold = 2\nslow_floor = \"1s\"\n\n\
         [alerts]\ngroup_wait = \"0s\"\ncategories = [\"slow\"]\n\n\
         [[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\n\n{}",
        sim.addr,
        one_second_target("prod", sim.tag_url("prod"), "chat")
    ));
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    daemon.dashboard_url().await;
    eventually("healthy probes", || async {
        (ws.probe_rows().await.len() >= 3).then_some(())
    })
    .await;
    assert!(incidents(&ws).await.is_empty(), "fast answers are not slow");

    sim.state
        .set_tag_delay("prod", std::time::Duration::from_secs(3));
    let open = eventually_within(
        std::time::Duration::from_secs(120),
        "the slow incident",
        || async {
            incidents(&ws)
                .await
                .into_iter()
                .find(|i| i.1 == "slow" && !i.2)
        },
    )
    .await;
    let message = open.3.clone().unwrap();
    assert!(
        message.contains("chat gpt-4o-mini: median 3") && message.contains("usually 50 ms"),
        "{message}"
    );

    // A restart keeps the baseline and the open incident: no second one.
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    daemon.dashboard_url().await;
    let probes = ws.probe_rows().await.len();
    eventually_within(
        std::time::Duration::from_secs(120),
        "two more slow probes after the restart",
        || async { (ws.probe_rows().await.len() >= probes + 2).then_some(()) },
    )
    .await;
    assert_eq!(
        incidents(&ws)
            .await
            .iter()
            .filter(|i| i.1 == "slow")
            .count(),
        1
    );

    sim.state.set_tag_delay("prod", std::time::Duration::ZERO);
    eventually_within(
        std::time::Duration::from_secs(120),
        "the slow incident to resolve",
        || async {
            incidents(&ws)
                .await
                .into_iter()
                .any(|i| i.0 == open.0 && i.2)
                .then_some(())
        },
    )
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    // Every answer was healthy all along: slowness is a signal, not a failure.
    assert!(ws.probe_rows().await.iter().all(|r| r.category == "ok"));
}

/// Waits until the daemon's API shows the status page read with `incidents` incidents.
async fn upstream_read(app: &TestApp, incidents: usize, after_ms: i64) {
    app.json_until("the status page to be read", "/api/v1/status", |s| {
        s["upstream"]["fetched_at_ms"]
            .as_i64()
            .is_some_and(|t| t >= after_ms)
            && s["upstream"]["incidents"].as_array().map(Vec::len) == Some(incidents)
    })
    .await;
}

async fn every_outage_alert_says_whether_openai_reports_an_incident_and_never_waits_for_it(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let smtp = crate::helpers::smtp::SmtpServer::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        None,
    );
    sim.state
        .set_status_page(openai_watch::simulate::StatusPage::Incident(
            "Elevated error rates on the API".into(),
        ));
    let mut config = format!(
        "[detection]\nfailure_threshold = 1\n\n[upstream_status]\nurl = \"http://{}/_sim/status/summary.json\"\ninterval = \"10s\"\n\n{}",
        sim.addr,
        email_alerts(smtp.port, "\"outage\"")
    );
    for name in ["first", "second", "third", "fourth"] {
        config.push_str(&one_second_target(name, sim.tag_url(name), "models"));
    }
    let app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    let start = openai_watch::clock::now_ms();
    let outage_email = |target: &'static str| {
        let smtp = &smtp;
        async move {
            eventually(&format!("the outage email about {target}"), || async {
                smtp.mails()
                    .into_iter()
                    .find(|m| m.subject.contains("FIRING outage") && m.subject.contains(target))
            })
            .await
        }
    };

    // OpenAI reports an incident: the alert names it.
    upstream_read(&app, 1, start).await;
    app.sim.state.set_tag("first", "server_error").unwrap();
    let mail = outage_email("first").await;
    assert!(
        mail.text.contains(
            "OpenAI reports: Elevated error rates on the API (investigating) https://stspg.io/sim"
        ),
        "{}",
        mail.text
    );
    assert!(mail.html.contains("OpenAI reports: Elevated error rates"));

    // No incident: the alert says the problem may be on this side.
    app.sim
        .state
        .set_status_page(openai_watch::simulate::StatusPage::Clear);
    upstream_read(&app, 0, openai_watch::clock::now_ms()).await;
    app.sim.state.set_tag("second", "server_error").unwrap();
    let mail = outage_email("second").await;
    assert!(
        mail.text.contains(
            "OpenAI's status page reports no incident: the problem may be between you and the API"
        ),
        "{}",
        mail.text
    );

    // The status page hangs: the alert goes out without waiting for it, with what was last
    // read (the poll in flight takes 10 s to give up; the email comes before).
    app.sim
        .state
        .set_status_page(openai_watch::simulate::StatusPage::Hang);
    app.sim.state.set_tag("third", "server_error").unwrap();
    let mail = outage_email("third").await;
    assert!(mail.text.contains("reports no incident"), "{}", mail.text);

    // Garbage: once it cannot be read, alerts say so.
    app.sim
        .state
        .set_status_page(openai_watch::simulate::StatusPage::Garbage);
    eventually_within(
        std::time::Duration::from_secs(90),
        "the status page to count as unavailable",
        || async {
            let s = app.json("/api/v1/status").await;
            s["upstream"]["unavailable_since_ms"].as_i64().map(|_| ())
        },
    )
    .await;
    app.sim.state.set_tag("fourth", "server_error").unwrap();
    let mail = outage_email("fourth").await;
    assert!(
        mail.text
            .contains("OpenAI's status page is unavailable since"),
        "{}",
        mail.text
    );
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("status page is unavailable since"),
        "the banner"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("openai_watch_upstream_indicator -1"),
        "{metrics}"
    );
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
}

async fn the_status_page_is_read_with_conditional_requests_and_a_304_keeps_what_it_said(
    engine: Engine,
) {
    let sim = start_simulator().await;
    sim.state
        .set_status_page(openai_watch::simulate::StatusPage::Incident(
            "Degraded API".into(),
        ));
    let ws = Workspace::on(engine);
    let store = ws.store().await;
    let settings = openai_watch::config::UpstreamStatus {
        url: reqwest::Url::parse(&format!("http://{}/_sim/status/summary.json", sim.addr)).unwrap(),
        interval: std::time::Duration::from_secs(120),
        enabled: true,
    };
    let client = http_client();
    let first = openai_watch::upstream::fetch_once(&client, &store, &settings).await;
    assert_eq!(first.incidents.len(), 1);
    let second = openai_watch::upstream::fetch_once(&client, &store, &settings).await;
    assert_eq!(
        sim.state
            .status_not_modified
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the second request carried the ETag and got 304"
    );
    assert_eq!(
        second.incidents, first.incidents,
        "a 304 keeps what the page said"
    );
    assert!(second.fetched_at_ms >= first.fetched_at_ms);
    // A change is read in full again.
    sim.state
        .set_status_page(openai_watch::simulate::StatusPage::Clear);
    let third = openai_watch::upstream::fetch_once(&client, &store, &settings).await;
    assert!(third.incidents.is_empty());
    assert_eq!(third.indicator.as_deref(), Some("none"));
    store.close().await;
}

crate::both_engines!(
    headroom_opens_at_ninety_percent_used_resolves_at_half_and_survives_a_restart,
    slow_opens_when_answers_go_from_50_ms_to_3_s_and_resolves_when_they_come_back,
    every_outage_alert_says_whether_openai_reports_an_incident_and_never_waits_for_it,
    the_status_page_is_read_with_conditional_requests_and_a_304_keeps_what_it_said,
);

/// A negative `x-ratelimit-remaining` makes no sense: it is ignored, not read as the whole
/// limit used, and never exported.
#[tokio::test]
async fn a_negative_remaining_count_opens_no_headroom_incident_and_is_not_exported() {
    let sim = start_simulator().await;
    sim.state.set_tag_remaining("prod", -0.01);
    let config = format!(
        "[detection]\nfailure_threshold = 2\n\n{}",
        one_second_target("prod", sim.tag_url("prod"), "chat")
    );
    let app = TestApp::builder()
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    eventually("five probes", || async {
        (app.ws.probe_rows().await.len() >= 5).then_some(())
    })
    .await;
    assert!(
        incidents(&app.ws).await.is_empty(),
        "{:?}",
        incidents(&app.ws).await
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let remaining: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("openai_watch_ratelimit_remaining{"))
        .collect();
    assert!(remaining.iter().all(|l| !l.contains(" -")), "{remaining:?}");
    let requests = metrics
        .lines()
        .any(|l| l.starts_with("openai_watch_ratelimit_limit{") && l.contains("requests"));
    assert!(requests, "the sensible limit is still exported: {metrics}");
}

/// A status page listing 500 incidents of 210 characters, with terminal escapes and an
/// OSC-8 link in every name: the alert keeps a few, cut and cleaned, after its own facts.
#[tokio::test]
async fn a_careless_status_page_stays_small_clean_and_after_the_facts_in_every_alert() {
    let sim = start_simulator().await;
    let smtp = crate::helpers::smtp::SmtpServer::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        None,
    );
    let name = format!(
        "\u{1b}[31mred\u{1b}[0m \u{1b}]8;;https://evil.example\u{7}click\u{1b}]8;;\u{7} {}",
        "x".repeat(170)
    );
    sim.state
        .set_status_page(openai_watch::simulate::StatusPage::Incidents(500, name));
    let config = format!(
        "[detection]\nfailure_threshold = 1\n\n[upstream_status]\nurl = \"http://{}/_sim/status/summary.json\"\ninterval = \"10s\"\n\n{}\
         [[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\nformat = \"slack\"\n\n{}",
        sim.addr,
        email_alerts(smtp.port, "\"outage\""),
        sim.addr,
        one_second_target("prod", sim.tag_url("prod"), "models")
    );
    let app = TestApp::builder()
        .with(&config)
        .env("K", KEY)
        .start_with(sim)
        .await;
    upstream_read(&app, openai_watch::upstream::MAX_INCIDENTS, 0).await;
    app.sim.state.set_tag("prod", "server_error").unwrap();
    let mail = eventually("the outage email", || async {
        smtp.mails()
            .into_iter()
            .find(|m| m.subject.contains("FIRING outage"))
    })
    .await;
    let hook = eventually("the Slack message", || async {
        app.sim.state.webhooks().into_iter().find(|h| {
            h["text"]
                .as_str()
                .is_some_and(|t| t.contains("FIRING outage"))
        })
    })
    .await;
    let slack = hook["text"].as_str().unwrap().to_string();
    for (what, text, facts) in [
        ("text email", &mail.text, "Cause:"),
        ("html email", &mail.html, "Cause."),
        ("slack", &slack, "_Cause:_"),
    ] {
        assert!(text.len() < 8 * 1024, "{what}: {} bytes", text.len());
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: {text:?}"
        );
        assert!(text.contains("and 497 more"), "{what}: {text}");
        let cause = text.find(facts).unwrap();
        let upstream = text.find("OpenAI reports").unwrap();
        assert!(cause < upstream, "{what}: the facts come first: {text}");
    }
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.len() < 64 * 1024, "{} bytes", page.len());
}

/// A status page that redirects to another host is not followed there; one that drips its
/// bytes is reported as a timeout, not as a decoding error.
#[tokio::test]
async fn the_status_poller_stays_on_its_host_and_names_a_dripping_page_a_timeout() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let contacted = std::sync::Arc::new(AtomicUsize::new(0));
    let c = contacted.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = elsewhere.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_port = page.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = page.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                if request.starts_with("GET /redirect") {
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{elsewhere_port}/summary.json\r\ncontent-length: 0\r\n\r\n"
                            )
                            .as_bytes(),
                        )
                        .await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
                        .await;
                    for _ in 0..1000 {
                        if s.write_all(b" ").await.is_err() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            });
        }
    });
    for (path, says) in [
        ("redirect", "a redirect to another host is not followed"),
        ("drip", "no complete answer within 10s"),
    ] {
        let sim = start_simulator().await;
        let config = format!(
            "[upstream_status]\nurl = \"http://127.0.0.1:{page_port}/{path}\"\ninterval = \"10s\"\n\n{}",
            one_second_target("prod", sim.tag_url("prod"), "models")
        );
        let app = TestApp::builder()
            .with(&config)
            .env("K", KEY)
            .start_with(sim)
            .await;
        app.json_until(
            &format!("the {path} page reported"),
            "/api/v1/status",
            |s| {
                s["upstream"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(says))
            },
        )
        .await;
    }
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "the other host was contacted"
    );
}
