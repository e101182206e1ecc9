//! End to end: the daemon, the simulator and a real SMTP server on loopback. Emails carry the
//! documented cause and resolution, resolve when the simulator recovers, group across targets,
//! survive an SMTP outage and a restart, and never carry the API key.

use crate::helpers::smtp::{Mail, SmtpServer, self_signed};
use crate::helpers::*;
use openai_watch::catalog;
use std::sync::{Arc, Mutex};

const KEY: &str = "sk-proj-ALERTINGsecretKEY0123456789abcdefQRST";

fn email_config(port: u16, tls: &str, ca: Option<&std::path::Path>, group_wait: &str) -> String {
    let ca = ca.map_or(String::new(), |p| {
        format!("ca_file = \"{}\"\n", p.display())
    });
    format!(
        "[detection]\nfailure_threshold = 3\nsuccess_threshold = 2\n\n\
         [dashboard]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://status.example.com\"\n\n\
         [alerts]\ngroup_wait = \"{group_wait}\"\nreminder_interval = \"4h\"\n\n\
         [alerts.email]\nsmtp_host = \"localhost\"\nsmtp_port = {port}\ntls = \"{tls}\"\n{ca}\
         from = \"openai-watch <watch@example.com>\"\nto = [\"oncall@example.com\"]\n\n"
    )
}

/// A webhook receiver on loopback that keeps every JSON body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body.0);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), bodies)
}

fn find<'a>(mails: &'a [Mail], prefix: &str) -> Option<&'a Mail> {
    mails.iter().find(|m| m.subject.starts_with(prefix))
}

async fn each_category_sends_a_documented_email_over_starttls_and_a_resolved_one_follows(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let (cert, key) = self_signed(ws.dir.path());
    let smtp = SmtpServer::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        Some((&cert, &key)),
    );
    let (hook_url, hooks) = webhook_receiver().await;

    // (target, scenario, category, probe kind)
    let cases = [
        ("auth", "invalid_api_key", "auth", "models"),
        ("quota", "insufficient_quota", "quota", "chat"),
        ("region", "unsupported_region", "region", "models"),
        ("outage", "server_error", "outage", "models"),
        ("overload", "engine_overloaded", "overload", "models"),
    ];
    let mut config = email_config(smtp.port, "starttls", Some(&cert), "0s");
    config.push_str(&format!(
        "[[alerts.webhook]]\nurl = \"{hook_url}\"\nformat = \"json\"\n\n"
    ));
    for (name, scenario, _, probe) in cases {
        sim.state.set_tag(name, scenario).unwrap();
        config.push_str(
            &TargetSpec {
                name,
                base_url: sim.tag_url(name),
                key_env: Some("OPENAI_API_KEY"),
                timeout: "10s",
                probes: &[(probe, "1s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&config);
    let daemon = Daemon::start(&config, &[("OPENAI_API_KEY", KEY)]);

    wait_for("a FIRING email per category", || {
        let mails = smtp.mails();
        cases.iter().all(|(name, _, category, _)| {
            find(
                &mails,
                &format!("[openai-watch] FIRING {category}: {name} "),
            )
            .is_some()
        })
    })
    .await;
    let mails = smtp.mails();
    for (name, scenario, category, probe) in cases {
        let mail = find(
            &mails,
            &format!("[openai-watch] FIRING {category}: {name} "),
        )
        .unwrap();
        let entry = catalog::entry(scenario).unwrap();
        assert!(
            mail.subject.contains(&format!("— {} (", entry.title)),
            "{}",
            mail.subject
        );
        assert!(mail.subject.contains(scenario), "{}", mail.subject);
        for part in [&mail.text, &mail.html] {
            assert!(part.contains(name), "{name}: target in the email");
            assert!(part.contains(scenario), "{name}: catalog id in the email");
            assert!(part.contains(probe), "{name}: probe kind");
            assert!(
                part.contains("http://status.example.com/incidents/"),
                "{name}: dashboard link"
            );
            assert!(part.contains(catalog::DOCS_URL), "{name}: docs link");
        }
        assert!(
            mail.text.contains(entry.cause),
            "{name}: documented cause in\n{}",
            mail.text
        );
        assert!(
            mail.text.contains(entry.resolution),
            "{name}: documented resolution"
        );
        assert!(
            mail.html.contains(&entry.resolution[..40]),
            "{name}: resolution in the HTML part"
        );
        assert!(
            mail.header("Message-ID")
                .is_some_and(|m| m.starts_with("<alert-firing-")),
            "a Message-ID of its own"
        );
        assert_eq!(mail.header("In-Reply-To"), None, "the thread's root");
    }

    // The simulator recovers: one RESOLVED email per incident, threaded under its firing one.
    for (name, ..) in cases {
        sim.state.set_tag(name, "ok").unwrap();
    }
    wait_for("a RESOLVED email per category", || {
        let mails = smtp.mails();
        cases.iter().all(|(name, _, category, _)| {
            find(
                &mails,
                &format!("[openai-watch] RESOLVED {category}: {name} "),
            )
            .is_some()
        })
    })
    .await;
    let mails = smtp.mails();
    for (name, _, category, _) in cases {
        let firing = find(
            &mails,
            &format!("[openai-watch] FIRING {category}: {name} "),
        )
        .unwrap();
        let resolved = find(
            &mails,
            &format!("[openai-watch] RESOLVED {category}: {name} "),
        )
        .unwrap();
        assert_eq!(
            resolved.header("In-Reply-To"),
            firing.header("Message-ID"),
            "{name}: threaded"
        );
        assert!(resolved.text.contains("Resolved:"), "{name}");
    }

    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("incident opened") && log.contains("alert sent"),
        "one line per incident change and alert outcome"
    );
    assert_eq!(
        mails.len(),
        10,
        "one firing and one resolved per incident, nothing twice"
    );

    // The webhook got the same events in the documented JSON shape.
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 10, "{hooks:#?}");
    let quota = hooks
        .iter()
        .find(|h| h["event"] == "firing" && h["category"] == "quota")
        .unwrap();
    assert_eq!(quota["version"], 1);
    assert_eq!(quota["incidents"][0]["target"], "quota");
    assert_eq!(quota["incidents"][0]["error_id"], "insufficient_quota");
    assert_eq!(quota["incidents"][0]["http_status"], 429);
    assert!(
        quota["incidents"][0]["resolution"]
            .as_str()
            .unwrap()
            .starts_with("Buy additional credits")
    );

    // The key is in no email, no webhook payload, no log line; the echoed one was masked.
    let key_parts = [KEY, &KEY[..20], &KEY[10..40]];
    for m in &mails {
        for part in key_parts {
            assert!(
                !String::from_utf8_lossy(&m.raw).contains(part)
                    && !m.text.contains(part)
                    && !m.html.contains(part),
                "key in email {}",
                m.subject
            );
        }
    }
    let all_hooks = serde_json::to_string(&hooks).unwrap();
    for part in key_parts {
        assert!(!all_hooks.contains(part), "key in a webhook payload");
        assert!(!log.contains(part), "key in the log");
    }
    let auth = find(&mails, "[openai-watch] FIRING auth: auth ").unwrap();
    assert!(
        auth.text.contains("sk-…QRST"),
        "the echoed key is shown masked:\n{}",
        auth.text
    );

    // `status` reads the same history from the database.
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "status", "--json"],
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
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["overall"], "ok", "{status:#}");
    assert_eq!(status["targets"].as_array().unwrap().len(), 5);
}

async fn two_targets_failing_together_within_group_wait_produce_one_email(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let mut config = email_config(smtp.port, "none", None, "8s");
    for name in ["eu-prod", "us-prod"] {
        config.push_str(
            &TargetSpec {
                name,
                base_url: sim.base_url("server_error"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&config);
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    wait_for("the grouped outage email", || !smtp.mails().is_empty()).await;
    let mails = smtp.mails();
    let mail = &mails[0];
    assert!(
        mail.subject.starts_with("[openai-watch] FIRING outage: "),
        "{}",
        mail.subject
    );
    assert!(
        mail.subject.contains("eu-prod") && mail.subject.contains("us-prod"),
        "one email naming both: {}",
        mail.subject
    );
    assert!(
        mail.text.contains("Target:      eu-prod") && mail.text.contains("Target:      us-prod")
    );
    let refs = mail.header("References").unwrap_or_default().to_string();
    assert_eq!(
        refs.matches("<incident-").count(),
        2,
        "threads with both incidents: {refs}"
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert_eq!(smtp.mails().len(), 1, "nothing else was sent");
}

async fn an_smtp_outage_delays_the_email_and_a_restart_neither_loses_nor_repeats_it(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let port = closed_port();
    let mut config = email_config(port, "none", None, "0s");
    config.push_str(
        &TargetSpec {
            name: "prod",
            base_url: sim.base_url("insufficient_quota"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("chat", "1s")],
        }
        .toml(),
    );
    config.push_str(
        &TargetSpec {
            name: "control",
            base_url: sim.base_url("ok"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml(),
    );
    let config = ws.write_config(&config);
    let attempts = || async {
        ws.try_rows::<(i64, String)>("select attempts, state from alert_deliveries")
            .await
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .unwrap_or((0, String::new()))
    };

    let daemon = Daemon::start(&config, &[("K", KEY)]);
    let state = eventually("a delivery attempt to be recorded", || async {
        let (n, state) = attempts().await;
        (n >= 1).then_some(state)
    })
    .await;
    assert_eq!(
        state, "pending",
        "a refused connection is a temporary failure"
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("will retry"), "the failure is logged: {log}");

    // Restart, then bring the SMTP server up on the port the config names.
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    let smtp = SmtpServer::start(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        None,
    );
    wait_for("the delayed email", || !smtp.mails().is_empty()).await;
    // Let the daemon run on for a while (ten more control probes) to see that nothing repeats.
    let before = sim.state.requests().len();
    wait_for("ten more probes", || {
        sim.state.requests().len() >= before + 10
    })
    .await;
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        1,
        "{:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    assert!(mails[0].subject.starts_with(
        "[openai-watch] FIRING quota: prod — exceeded current quota (429 insufficient_quota)"
    ));
    let (_, state) = attempts().await;
    assert_eq!(state, "sent");
    // One incident, not two, after the restart.
    assert_eq!(ws.count("select count(*) from incidents").await, 1);
}

crate::both_engines!(
    each_category_sends_a_documented_email_over_starttls_and_a_resolved_one_follows,
    two_targets_failing_together_within_group_wait_produce_one_email,
    an_smtp_outage_delays_the_email_and_a_restart_neither_loses_nor_repeats_it,
);
