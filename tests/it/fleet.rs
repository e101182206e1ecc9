//! A fleet (SPEC §14): several agents, each a separate process with its own config and
//! location, sharing one real PostgreSQL database, with the simulator and a real SMTP
//! server. Incidents are seen per location, alerts go out once across the fleet, and the
//! survivors raise a `monitor` incident about an agent that went silent.

use crate::helpers::smtp::{Mail, SmtpServer};
use crate::helpers::*;
use std::time::Duration;

const KEY: &str = "sk-fleet-test-key-00000000000000";

/// `[alerts]` with one email channel and `group_wait = 0`.
fn alerts(smtp_port: u16) -> String {
    format!(
        "[detection]\nfailure_threshold = 1\nsuccess_threshold = 1\n\n\
         [alerts]\ngroup_wait = \"0s\"\ncategories = [\"auth\", \"region\", \"monitor\"]\n\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\n\
         from = \"w@example.com\"\nto = [\"oncall@example.com\"]\n\n"
    )
}

/// Writes the config of the agent at `location` into the workspace, on its database.
fn agent_config(ws: &Workspace, location: &str, rest: &str) -> std::path::PathBuf {
    let path = ws.dir.path().join(format!("{location}.toml"));
    let text = format!(
        "[agent]\nlocation = \"{location}\"\nsilent_after = \"3s\"\n\n[storage]\n{}\n\n\
         [dashboard]\nlisten = \"127.0.0.1:0\"\n\n{rest}",
        ws.storage_line()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn subjects(mails: &[Mail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_problem_seen_from_one_location_opens_one_incident_naming_it() {
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    sim.state.set_tag("prod-fra", "unsupported_region").unwrap();
    sim.state.set_tag("prod-elsewhere", "ok").unwrap();
    // Each agent names the target `prod`; only fra-1 reaches it through a route the API
    // refuses (here: the simulator's tag for fra-1).
    let target = |tag: &str| {
        TargetSpec {
            name: "prod",
            base_url: sim.tag_url(tag),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml()
    };
    let mut agents = Vec::new();
    for location in ["iad-1", "sfo-1"] {
        let config = agent_config(
            &ws,
            location,
            &(alerts(smtp.port) + &target("prod-elsewhere")),
        );
        agents.push(Daemon::start(&config, &[("K", KEY)]));
    }
    eventually("two heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(2)).then_some(())
    })
    .await;
    let fra = agent_config(&ws, "fra-1", &(alerts(smtp.port) + &target("prod-fra")));
    agents.push(Daemon::start(&fra, &[("K", KEY)]));

    wait_for("the FIRING email", || {
        smtp.mails()
            .iter()
            .any(|m| m.subject.starts_with("[openai-watch] FIRING region: prod"))
    })
    .await;
    // The other locations keep probing healthy answers for a while: nothing else opens.
    let before = sim.state.requests().len();
    wait_for("ten more probes", || {
        sim.state.requests().len() >= before + 10
    })
    .await;
    let incidents: Vec<(i64, String, String)> = ws
        .rows("select id, target, category from incidents order by id")
        .await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(
        (incidents[0].1.as_str(), incidents[0].2.as_str()),
        ("prod", "region")
    );
    let seen: Vec<(String,)> = ws
        .rows("select location from incident_locations where until_ms is null order by location")
        .await;
    assert_eq!(seen, vec![("fra-1".to_string(),)]);
    let mails = smtp.mails();
    let firing: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.subject.starts_with("[openai-watch] FIRING"))
        .collect();
    assert_eq!(firing.len(), 1, "{:?}", subjects(&mails));
    assert!(
        firing[0]
            .text
            .contains("Where:       unsupported_region from fra-1 only; iad-1, sfo-1 healthy"),
        "{}",
        firing[0].text
    );
    assert!(
        firing[0]
            .html
            .contains("unsupported_region from fra-1 only; iad-1, sfo-1 healthy")
    );

    // The API of any agent lists the incident with its locations.
    let url = agents[0].dashboard_url().await;
    let api = json_of(http_client().get(format!("{url}/api/v1/incidents"))).await;
    assert_eq!(api[0]["locations"], serde_json::json!(["fra-1"]), "{api}");
    assert_eq!(
        api[0]["healthy_locations"],
        serde_json::json!(["iad-1", "sfo-1"]),
        "{api}"
    );

    // The status API gives each location's latest answer, and the page shows the grid.
    let status = json_of(http_client().get(format!("{url}/api/v1/status"))).await;
    let locations = &status["targets"][0]["locations"];
    let seen: Vec<(String, String)> = locations
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap().to_string(),
                l["error_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("fra-1".to_string(), "unsupported_region".to_string()),
            ("iad-1".to_string(), "ok".to_string()),
            ("sfo-1".to_string(), "ok".to_string()),
        ],
        "{status}"
    );
    let page = http_client()
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>By location</h2>"), "{page}");
    assert!(
        page.contains(
            "<th scope=\"col\">fra-1</th><th scope=\"col\">iad-1</th><th scope=\"col\">sfo-1</th>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"badge c-region\">unsupported_region</span>"),
        "{page}"
    );

    // fra-1's route recovers: one RESOLVED, and still one FIRING.
    sim.state.set_tag("prod-fra", "ok").unwrap();
    wait_for("the RESOLVED email", || {
        smtp.mails().iter().any(|m| {
            m.subject
                .starts_with("[openai-watch] RESOLVED region: prod")
        })
    })
    .await;
    for agent in agents {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
        assert!(!log.contains(KEY), "the key never reaches the log");
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{:?}", subjects(&mails));
}

/// Opens and resolves an auth incident on each of `targets` in turn (every agent sees it),
/// waiting for each one's FIRING and RESOLVED emails.
async fn cycle_incidents(
    sim: &openai_watch::simulate::Simulator,
    smtp: &SmtpServer,
    targets: &[String],
) {
    for name in targets {
        sim.state.set_tag(name, "invalid_api_key").unwrap();
        let firing = format!("[openai-watch] FIRING auth: {name} ");
        wait_for(&firing, || {
            smtp.mails().iter().any(|m| m.subject.starts_with(&firing))
        })
        .await;
        sim.state.set_tag(name, "ok").unwrap();
        let resolved = format!("[openai-watch] RESOLVED auth: {name} ");
        eventually_within(Duration::from_secs(180), &resolved, || async {
            smtp.mails()
                .iter()
                .any(|m| m.subject.starts_with(&resolved))
                .then_some(())
        })
        .await;
    }
}

fn fleet_targets(sim: &openai_watch::simulate::Simulator, n: usize) -> (Vec<String>, String) {
    let names: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
    let mut toml = String::new();
    for name in &names {
        sim.state.set_tag(name, "ok").unwrap();
        toml.push_str(
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
    (names, toml)
}

/// Counts the emails per subject prefix (`FIRING auth: t03`) for the targets.
fn per_incident(mails: &[Mail], kind: &str, targets: &[String]) -> Vec<usize> {
    targets
        .iter()
        .map(|t| {
            let prefix = format!("[openai-watch] {kind} auth: {t} ");
            mails
                .iter()
                .filter(|m| m.subject.starts_with(&prefix))
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_send_each_of_twenty_alerts_exactly_once() {
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let (targets, toml) = fleet_targets(&sim, 20);
    let agents: Vec<Daemon> = ["fra-1", "iad-1", "sfo-1"]
        .iter()
        .map(|l| {
            Daemon::start(
                &agent_config(&ws, l, &(alerts(smtp.port) + &toml)),
                &[("K", KEY)],
            )
        })
        .collect();
    eventually("three heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(3)).then_some(())
    })
    .await;
    cycle_incidents(&sim, &smtp, &targets).await;
    // Alerts due are claimed at once; give every agent a few passes to (wrongly) send again.
    let before = sim.state.requests().len();
    wait_for("thirty more probes", || {
        sim.state.requests().len() >= before + 30
    })
    .await;
    for agent in agents {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
    }
    let mails = smtp.mails();
    assert_eq!(
        per_incident(&mails, "FIRING", &targets),
        vec![1; 20],
        "{:?}",
        subjects(&mails)
    );
    assert_eq!(
        per_incident(&mails, "RESOLVED", &targets),
        vec![1; 20],
        "{:?}",
        subjects(&mails)
    );
    assert_eq!(mails.len(), 40, "{:?}", subjects(&mails));
    assert_eq!(
        ws.count("select count(*) from alert_deliveries where state != 'sent'")
            .await,
        0
    );
    assert_eq!(
        ws.count("select count(*) from incidents where resolved_at_ms is null")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_at_random_moments_loses_no_alert_and_the_others_report_its_silence() {
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let (targets, toml) = fleet_targets(&sim, 20);
    let config = |l: &str| agent_config(&ws, l, &(alerts(smtp.port) + &toml));
    let survivors: Vec<Daemon> = ["fra-1", "iad-1"]
        .iter()
        .map(|l| Daemon::start(&config(l), &[("K", KEY)]))
        .collect();
    let victim_config = config("sfo-1");
    let victim = std::sync::Arc::new(tokio::sync::Mutex::new(Some(Daemon::start(
        &victim_config,
        &[("K", KEY)],
    ))));
    eventually("three heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(3)).then_some(())
    })
    .await;

    // The killer: 10 times, after a random while, kill -9 sfo-1 and bring it back after a
    // random pause; the fifth time the pause is long enough for the others to notice.
    let killer = {
        let victim = victim.clone();
        let victim_config = victim_config.clone();
        tokio::spawn(async move {
            for round in 0..10 {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(500..4000))).await;
                let mut guard = victim.lock().await;
                if let Some(mut d) = guard.take() {
                    d.child.start_kill().unwrap();
                    let _ = d.child.wait().await;
                }
                let pause = if round == 4 {
                    Duration::from_secs(8)
                } else {
                    Duration::from_millis(fastrand::u64(100..1500))
                };
                tokio::time::sleep(pause).await;
                *guard = Some(Daemon::start(&victim_config, &[("K", KEY)]));
            }
        })
    };
    cycle_incidents(&sim, &smtp, &targets).await;
    killer.await.unwrap();

    // The silence of sfo-1 was raised by the others and resolved when it came back.
    eventually("the monitor incident to resolve", || async {
        (smtp.mails().iter().any(|m| {
            m.subject
                .starts_with("[openai-watch] RESOLVED monitor: agent:sfo-1")
        }))
        .then_some(())
    })
    .await;
    // A restart slower than `silent_after` raises the silence again; it resolves once the
    // others see the agent's heartbeat, which may come after the first resolution above.
    eventually_within(
        Duration::from_secs(180),
        "every incident resolved",
        || async {
            (ws.count("select count(*) from incidents where resolved_at_ms is null")
                .await
                == 0)
                .then_some(())
        },
    )
    .await;
    // Every delivery went out (a claim of a killed agent lapses or is taken up again).
    eventually_within(Duration::from_secs(180), "every delivery sent", || async {
        (ws.count("select count(*) from alert_deliveries where state != 'sent'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    for agent in survivors {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
    }
    if let Some(d) = victim.lock().await.take() {
        d.terminate().await;
    }
    let mails = smtp.mails();
    eprintln!(
        "fleet kill test: {} emails, {} about sfo-1's silence; firing per incident {:?}; resolved {:?}",
        mails.len(),
        mails
            .iter()
            .filter(|m| m.subject.contains("monitor"))
            .count(),
        per_incident(&mails, "FIRING", &targets),
        per_incident(&mails, "RESOLVED", &targets)
    );
    for (kind, counts) in [
        ("FIRING", per_incident(&mails, "FIRING", &targets)),
        ("RESOLVED", per_incident(&mails, "RESOLVED", &targets)),
    ] {
        assert!(
            counts.iter().all(|n| (1..=2).contains(n)),
            "{kind}: every alert arrives, none more than twice: {counts:?}\n{:?}",
            subjects(&mails)
        );
    }
    let monitor: Vec<&Mail> = mails
        .iter()
        .filter(|m| m.subject.contains("monitor: agent:sfo-1"))
        .collect();
    assert!(
        monitor.iter().any(|m| m
            .subject
            .starts_with("[openai-watch] FIRING monitor: agent:sfo-1")),
        "{:?}",
        subjects(&mails)
    );
    let firing = monitor
        .iter()
        .find(|m| m.subject.contains("FIRING"))
        .unwrap();
    assert!(
        firing.text.contains("agent sfo-1 silent since"),
        "{}",
        firing.text
    );
    assert!(
        firing.text.contains("monitoring agent silent"),
        "{}",
        firing.text
    );
    // Every incident in the database is resolved, and each has one firing and one resolved
    // event (never two of either, whatever was killed when).
    assert_eq!(
        ws.count("select count(*) from incidents where resolved_at_ms is null")
            .await,
        0
    );
    let events: Vec<(i64, String, i64)> = ws
        .rows("select incident_id, kind, count(*) from alert_events group by incident_id, kind order by 1, 2")
        .await;
    assert!(events.iter().all(|e| e.2 == 1), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_agent_calls_its_dead_mans_switch() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let (calls_tx, mut calls) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/ping/{token}",
        axum::routing::get(
            move |axum::extract::Path(token): axum::extract::Path<String>| {
                let calls_tx = calls_tx.clone();
                async move {
                    let _ = calls_tx.send(token);
                    "OK"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = ws.write_config(
        &TargetSpec {
            name: "prod",
            base_url: sim.tag_url("prod"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml(),
    );
    // The switch goes under [agent]: rewrite the agent table the workspace wrote.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[agent]\n",
        &format!("[agent]\nheartbeat_url = \"http://{addr}/ping/secret-check-token\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, &[("K", KEY)]);
    let token = tokio::time::timeout(DEADLINE, calls.recv())
        .await
        .expect("the switch is called within the deadline")
        .unwrap();
    assert_eq!(token, "secret-check-token");
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("secret-check-token"),
        "the switch's URL is not logged"
    );
}
