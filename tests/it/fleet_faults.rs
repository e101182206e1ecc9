//! A fleet under faults, black-box: agents as separate processes on a real PostgreSQL, one
//! of them frozen inside a transaction, the database cut off behind a proxy, a second agent
//! under a location that is taken. Nobody stops writing for long, nobody is blamed for the
//! fault of another or of the database, and no location is used twice.

use crate::helpers::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-fleet-faults-key-000000000000";
/// The advisory lock agents take for incident changes (the product's `INCIDENTS_LOCK`).
const INCIDENTS_LOCK: i64 = openai_watch::store::INCIDENTS_LOCK;

fn agent_config(ws: &Workspace, url: &str, location: &str, targets: &str) -> std::path::PathBuf {
    let path = ws.dir.path().join(format!("{location}.toml"));
    let text = format!(
        "[agent]\nlocation = \"{location}\"\nsilent_after = \"3s\"\n\n[storage]\nurl = \"{url}\"\n\n\
         [dashboard]\nlisten = \"127.0.0.1:0\"\n\n{targets}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn targets(sim: &openai_watch::simulate::Simulator, n: usize) -> String {
    (0..n)
        .map(|i| {
            TargetSpec {
                name: &format!("t{i}"),
                base_url: sim.base_url("ok"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1s")],
            }
            .toml()
        })
        .collect()
}

async fn probes_from(ws: &Workspace, location: &str) -> i64 {
    ws.try_count(&format!(
        "select count(*) from probes where location = '{location}'"
    ))
    .await
    .unwrap_or(0)
}

async fn monitor_incidents(ws: &Workspace) -> Vec<(String,)> {
    ws.rows("select target from incidents where category = 'monitor' order by id")
        .await
}

/// A TCP proxy in front of the database that the test can cut (every connection dropped,
/// new ones accepted and never answered, as behind a dead route) and restore: a network
/// outage between agents and database.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (o, l, h) = (open.clone(), links.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(down); // never answered
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                l.lock().unwrap().push(link);
            }
        });
        Proxy {
            port,
            open,
            links,
            held,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

fn port_of(url: &str) -> u16 {
    let after_host = url.rsplit_once(':').unwrap().1;
    after_host.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_agent_with_a_taken_location_is_refused_and_a_restart_is_not() {
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    let config = agent_config(&ws, &url, "fra-1", &targets(&sim, 1));
    let first = Daemon::start(&config, &[("K", KEY)]);
    eventually("fra-1's heartbeat", || async {
        (ws.try_count("select count(*) from agents").await == Some(1)).then_some(())
    })
    .await;
    // The same location again, as two hosts with the same name would by default.
    let twin = run_cli(
        &["--config", config.to_str().unwrap(), "run"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let err = String::from_utf8_lossy(&twin.stderr);
    assert_eq!(twin.status.code(), Some(75), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("\"fra-1\"") && errors[0].contains("[agent] location"),
        "{err}"
    );

    // Killed, the first one's location is free at once: a restart is not a twin.
    let mut first = first;
    first.child.start_kill().unwrap();
    let _ = first.child.wait().await;
    let restarted = Daemon::start(&config, &[("K", KEY)]);
    let before = probes_from(&ws, "fra-1").await;
    eventually("the restarted agent probes and writes", || async {
        (probes_from(&ws, "fra-1").await >= before + 3).then_some(())
    })
    .await;
    let (status, log) = restarted.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_frozen_inside_a_transaction_stops_no_one_and_blames_no_one() {
    use sqlx::Connection;
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    let mut agents = Vec::new();
    for location in ["fra-1", "iad-1", "sfo-1"] {
        let config = agent_config(&ws, &url, location, &targets(&sim, 2));
        agents.push(Daemon::start(&config, &[("K", KEY)]));
    }
    eventually("three heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(3)).then_some(())
    })
    .await;
    let fra_app = format!("openai-watch/{}", agents[0].child.id().unwrap());
    let fra_waiting = format!(
        "select count(*) from pg_locks l join pg_stat_activity a using (pid) \
         where l.locktype = 'advisory' and a.application_name = '{fra_app}' and not l.granted"
    );
    let fra_holding = fra_waiting.replace("not l.granted", "l.granted");

    // Hold the agents' lock until fra-1 waits for it inside a transaction; freeze fra-1;
    // let go: fra-1's session is granted the lock while its process is stopped.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(INCIDENTS_LOCK)
        .execute(&mut *tx)
        .await
        .unwrap();
    eventually("fra-1 waiting for the lock", || async {
        (ws.try_count(&fra_waiting).await.unwrap_or(0) > 0).then_some(())
    })
    .await;
    agents[0].signal("STOP");
    tx.commit().await.unwrap();
    eventually("fra-1's frozen session holding the lock", || async {
        (ws.try_count(&fra_holding).await.unwrap_or(0) > 0).then_some(())
    })
    .await;

    // The others write again while fra-1 stays frozen: its session loses the lock.
    let iad = probes_from(&ws, "iad-1").await;
    let sfo = probes_from(&ws, "sfo-1").await;
    eventually("iad-1 and sfo-1 writing while fra-1 is frozen", || async {
        (probes_from(&ws, "iad-1").await >= iad + 5 && probes_from(&ws, "sfo-1").await >= sfo + 5)
            .then_some(())
    })
    .await;

    // fra-1 resumes and writes again; a while later, nobody has blamed iad-1 or sfo-1.
    agents[0].signal("CONT");
    let fra = probes_from(&ws, "fra-1").await;
    eventually("fra-1 writing again", || async {
        (probes_from(&ws, "fra-1").await >= fra + 5).then_some(())
    })
    .await;
    let blamed: Vec<String> = monitor_incidents(&ws)
        .await
        .into_iter()
        .map(|(t,)| t)
        .filter(|t| t != "agent:fra-1")
        .collect();
    assert!(
        blamed.is_empty(),
        "agents that were blocked were blamed: {blamed:?}"
    );
    for agent in agents {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_silent_after_pages_no_one_and_probing_goes_on() {
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    let proxy = Proxy::start(port_of(&url)).await;
    let via_proxy = url.replace(
        &format!(":{}/", port_of(&url)),
        &format!(":{}/", proxy.port),
    );
    // fra-1 probes 300 targets a second, as a large agent does; iad-1 one.
    let n = 300;
    let mut agents = Vec::new();
    for (location, count) in [("fra-1", n), ("iad-1", 1)] {
        let config = agent_config(&ws, &via_proxy, location, &targets(&sim, count));
        agents.push(Daemon::start(&config, &[("K", KEY)]));
    }
    eventually("two heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(2)).then_some(())
    })
    .await;
    let dashboard = agents[0].dashboard_url().await;
    let http = http_client();
    // Eight times silent_after without the database.
    proxy.cut();
    let cut_at = openai_watch::clock::now_ms();
    let asked_before = sim.state.request_count();
    eventually("/healthz to say the database cannot be written", || async {
        let answer = http.get(format!("{dashboard}/healthz")).send().await.ok()?;
        (answer.status() == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(24)).await;
    let asked = sim.state.request_count() - asked_before;
    let outage_ms = openai_watch::clock::now_ms() - cut_at;
    proxy.restore();
    let restored_at = openai_watch::clock::now_ms();
    // Probing went on at its pace: n + 1 targets a second, less a margin for a loaded
    // machine (a scheduler blocked by the recorder made a fraction of this).
    let expected = (n as i64 + 1) * outage_ms / 1000;
    assert!(
        asked as i64 >= expected / 2,
        "{asked} probes made in {outage_ms} ms of outage; about {expected} due"
    );
    // What was probed during the outage is written once the database is back.
    eventually("the outage's probes written", || async {
        let kept = ws
            .try_count(&format!(
                "select count(*) from probes where at_ms >= {cut_at} and at_ms < {restored_at}"
            ))
            .await?;
        (kept >= expected / 2).then_some(())
    })
    .await;
    // Heartbeats resume; a while later (more than silent_after), nobody was paged.
    let beats = |location: &'static str| {
        let ws = &ws;
        async move {
            ws.try_count(&format!(
                "select count(*) from agents where location = '{location}' and seen_at_ms > {restored_at}"
            ))
            .await
        }
    };
    eventually("both heartbeats after the outage", || async {
        (beats("fra-1").await == Some(1) && beats("iad-1").await == Some(1)).then_some(())
    })
    .await;
    let later = sim.state.request_count() + n * 6;
    let log = || agents[0].stderr.lock().unwrap().clone();
    eventually_explained(
        DEADLINE,
        "six more seconds of probes",
        || std::future::ready((sim.state.request_count() >= later).then_some(())),
        || {
            let log = log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!("; fra-1's log ends:\n{}", tail.join("\n"))
        },
    )
    .await;
    assert_eq!(monitor_incidents(&ws).await, Vec::<(String,)>::new());
    for agent in agents {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_location_no_longer_keeps_its_incidents_open() {
    let sim = start_simulator().await;
    sim.state.set_tag("prod-fra", "unsupported_region").unwrap();
    sim.state.set_tag("prod-iad", "ok").unwrap();
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
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
    let token = "[dashboard]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"TOK\"\n\n";
    let fra_config = agent_config(&ws, &url, "fra-1", &target("prod-fra"));
    let iad_config = agent_config(&ws, &url, "iad-1", &target("prod-iad"));
    // iad-1's dashboard takes writes with a token.
    let iad_text = std::fs::read_to_string(&iad_config)
        .unwrap()
        .replace("[dashboard]\nlisten = \"127.0.0.1:0\"\n\n", token);
    std::fs::write(&iad_config, iad_text).unwrap();
    let env = [("K", KEY), ("TOK", "retire-token-0000")];
    let fra = Daemon::start(&fra_config, &env);
    let iad = Daemon::start(&iad_config, &env);
    eventually("the region incident seen from fra-1", || async {
        let seen: Vec<(String,)> = ws
            .try_rows(
                "select l.location from incidents i join incident_locations l on l.incident_id = i.id \
                 where i.category = 'region' and i.resolved_at_ms is null and l.until_ms is null",
            )
            .await
            .ok()?;
        (seen == vec![("fra-1".to_string(),)]).then_some(())
    })
    .await;
    let cli = |location: &'static str| {
        let config = iad_config.clone();
        let dir = ws.dir.path().to_path_buf();
        async move {
            run_cli(
                &[
                    "--config",
                    config.to_str().unwrap(),
                    "agent",
                    "retire",
                    location,
                ],
                &[("K", KEY), ("TOK", "retire-token-0000")],
                &dir,
            )
            .await
        }
    };
    // A running agent is not retired.
    let live = cli("iad-1").await;
    assert_eq!(
        live.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    // fra-1 is removed for good: the incident only it saw stays open until it is retired.
    let (status, log) = fra.terminate().await;
    assert!(status.success(), "{log}");
    let out = eventually("fra-1 retired once its heartbeat is old", || async {
        let out = cli("fra-1").await;
        out.status.success().then_some(out)
    })
    .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("location fra-1 retired; incidents resolved:"),
        "{said}"
    );
    assert_eq!(
        ws.count(
            "select count(*) from incidents where category = 'region' and resolved_at_ms is null"
        )
        .await,
        0
    );
    assert_eq!(
        ws.count("select count(*) from agents where location = 'fra-1'")
            .await,
        0
    );
    // Through the API: an unknown location is a 404 with the reason.
    let dashboard = iad.dashboard_url().await;
    let r = http_client()
        .delete(format!("{dashboard}/api/v1/agents/nowhere-9"))
        .bearer_auth("retire-token-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (status, log) = iad.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_logs_and_locations_say_what_each_agent_really_sees() {
    use crate::helpers::smtp::SmtpServer;
    let sim = start_simulator().await;
    sim.state.set_tag("prod-bad", "unsupported_region").unwrap();
    sim.state.set_tag("batch", "ok").unwrap();
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    let alerts = format!(
        "[detection]\nfailure_threshold = 1\n\n[alerts]\ngroup_wait = \"0s\"\ncategories = [\"region\"]\n\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
         from = \"w@example.com\"\nto = [\"oncall@example.com\"]\n\n",
        smtp.port
    );
    let target = |name: &str, tag: &str| {
        TargetSpec {
            name,
            base_url: sim.tag_url(tag),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml()
    };
    // fra-1 sees the region problem from its first probe; ops-1 never probes prod.
    let fra = Daemon::start(
        &agent_config(
            &ws,
            &url,
            "fra-1",
            &(alerts.clone() + &target("prod", "prod-bad")),
        ),
        &[("K", KEY)],
    );
    let ops = Daemon::start(
        &agent_config(
            &ws,
            &url,
            "ops-1",
            &(alerts.clone() + &target("batch", "batch")),
        ),
        &[("K", KEY)],
    );
    let firing = eventually("the FIRING email", || async {
        smtp.mails()
            .into_iter()
            .find(|m| m.subject.starts_with("[openai-watch] FIRING region: prod"))
    })
    .await;
    assert!(
        firing
            .text
            .contains("Where:       unsupported_region from fra-1"),
        "even the first alert says where: {}",
        firing.text
    );
    let dashboard = ops.dashboard_url().await;
    let incidents =
        json_of(http_client().get(format!("{dashboard}/api/v1/incidents?state=open"))).await;
    assert_eq!(
        incidents[0]["locations"],
        serde_json::json!(["fra-1"]),
        "{incidents}"
    );
    assert!(
        !incidents[0]["healthy_locations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "ops-1"),
        "ops-1 never probes prod: {incidents}"
    );
    // iad-1 joins and sees it too: it joins the incident, it does not open one.
    let iad = Daemon::start(
        &agent_config(&ws, &url, "iad-1", &(alerts + &target("prod", "prod-bad"))),
        &[("K", KEY)],
    );
    eventually("iad-1 seeing the incident too", || async {
        let seen: Vec<(String,)> = ws
            .try_rows(
                "select location from incident_locations where until_ms is null order by location",
            )
            .await
            .ok()?;
        (seen.len() == 2).then_some(())
    })
    .await;
    let mut logs = Vec::new();
    for agent in [fra, ops, iad] {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
        logs.push(log);
    }
    let iad_log = &logs[2];
    assert!(
        iad_log.contains("open incident seen from this location too"),
        "{iad_log}"
    );
    assert!(!iad_log.contains("incident opened"), "{iad_log}");
    for log in &logs {
        assert!(!log.contains("already exists, skipping"), "{log}");
    }
    let firing: Vec<_> = smtp
        .mails()
        .into_iter()
        .filter(|m| m.subject.contains("FIRING"))
        .collect();
    assert_eq!(firing.len(), 1, "one incident, one message");
}

/// Debian's libfaketime, which `.ci/run` installs: a process's wall clock set off.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_clock_is_ahead_blames_no_one_and_is_told() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install faketime"
    );
    let sim = start_simulator().await;
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    let fra = Daemon::start(
        &agent_config(&ws, &url, "fra-1", &targets(&sim, 1)),
        &[("K", KEY)],
    );
    // iad-1's clock is 40 s ahead (its timers, on the monotonic clock, are not).
    let iad = Daemon::start(
        &agent_config(&ws, &url, "iad-1", &targets(&sim, 1)),
        &[
            ("K", KEY),
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", "+40s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    eventually("two heartbeats", || async {
        (ws.try_count("select count(*) from agents").await == Some(2)).then_some(())
    })
    .await;
    // Several times silent_after of heartbeats from both.
    let before = probes_from(&ws, "iad-1").await;
    eventually("ten more probes from iad-1", || async {
        (probes_from(&ws, "iad-1").await >= before + 10).then_some(())
    })
    .await;
    assert_eq!(monitor_incidents(&ws).await, Vec::<(String,)>::new());
    let (_, fra_log) = fra.terminate().await;
    let (_, iad_log) = iad.terminate().await;
    assert!(iad_log.contains("clock is off the database's"), "{iad_log}");
    assert!(
        !fra_log.contains("clock is off the database's"),
        "{fra_log}"
    );
}

/// A sender frozen mid-send past its lease: another agent sends the alert (at least once),
/// and the frozen one, resumed, never sets that delivery back to pending, so no third copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_frozen_past_its_lease_never_causes_a_third_copy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let ws = Workspace::on(Engine::Postgres);
    let url = ws.pg_url.clone().unwrap();
    // The receiver: the first request is held unanswered; every later one gets 200.
    let receiver = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = receiver.local_addr().unwrap().port();
    let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = receiver.accept().await {
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let path = String::from_utf8_lossy(&got)
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let first = {
                let mut p = seen.lock().unwrap();
                p.push(path);
                p.len() == 1
            };
            if first {
                held.push(s);
            } else {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        }
    });
    let config = |location: &str| {
        agent_config(
            &ws,
            &url,
            location,
            &format!(
                "[detection]\nfailure_threshold = 1\n\n[alerts]\ngroup_wait = \"0s\"\ncategories = [\"auth\"]\n\n\
                 [[alerts.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/{location}\"\n\n{}",
                TargetSpec {
                    name: "prod",
                    base_url: sim.tag_url("prod"),
                    key_env: Some("K"),
                    timeout: "10s",
                    probes: &[("models", "1s")],
                }
                .toml()
            ),
        )
    };
    let agents = [
        Daemon::start(&config("fra-1"), &[("K", KEY)]),
        Daemon::start(&config("iad-1"), &[("K", KEY)]),
    ];
    // Whoever sends first is frozen while its request is held.
    let first = eventually("the first delivery attempt", || async {
        paths.lock().unwrap().first().cloned()
    })
    .await;
    let frozen = usize::from(first != "/fra-1");
    agents[frozen].signal("STOP");
    // Its lease (60 s) ends; the other agent sends.
    eventually_within(
        Duration::from_secs(120),
        "the other agent's delivery",
        || async { (paths.lock().unwrap().len() >= 2).then_some(()) },
    )
    .await;
    eventually("the delivery marked sent", || async {
        let state: Vec<(String,)> = ws
            .try_rows("select state from alert_deliveries")
            .await
            .ok()?;
        (state == vec![("sent".to_string(),)]).then_some(())
    })
    .await;
    // The frozen one resumes: its send has timed out meanwhile.
    agents[frozen].signal("CONT");
    let resumed = probes_from(&ws, if frozen == 0 { "fra-1" } else { "iad-1" }).await;
    eventually("the resumed agent writing again", || async {
        (probes_from(&ws, if frozen == 0 { "fra-1" } else { "iad-1" }).await >= resumed + 10)
            .then_some(())
    })
    .await;
    let state: Vec<(String,)> = ws.rows("select state from alert_deliveries").await;
    assert_eq!(state, vec![("sent".to_string(),)]);
    let requests = paths.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one held copy, one sent: {requests:?}");
    for agent in agents {
        let (status, log) = agent.terminate().await;
        assert!(status.success(), "{log}");
    }
}
