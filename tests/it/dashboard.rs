//! The dashboard, the JSON API, the metrics and the health endpoint of a running daemon with
//! real probe history (simulator over TCP), hostile upstream text, the token, and a headless
//! Chromium loading the page.

use crate::helpers::*;
use std::collections::HashSet;

const XSS_SCRIPT: &str = "<script>alert(1)</script>";
const XSS_ATTR: &str = "\"><img src=x onerror=alert(1)>";
const SECURITY_HEADERS: [&str; 4] = [
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
];

/// A daemon with three targets: healthy, out of quota (with a hostile message) and down.
async fn start(engine: Engine, extra_config: &str, env: &[(&str, &str)]) -> TestApp {
    let sim = start_simulator().await;
    sim.state.set_tag("broke", "insufficient_quota").unwrap();
    sim.state.set_tag_message(
        "broke",
        &format!("quota gone {XSS_SCRIPT} and {XSS_ATTR} end"),
    );
    let mut config = format!("{extra_config}[detection]\nfailure_threshold = 3\n\n");
    for (name, url, probe) in [
        ("good", sim.base_url("ok"), "models"),
        ("broke", sim.tag_url("broke"), "chat"),
        ("down", sim.base_url("server_error"), "models"),
    ] {
        config.push_str(
            &TargetSpec {
                name,
                base_url: url,
                key_env: Some("K"),
                timeout: "10s",
                probes: &[(probe, "1s")],
            }
            .toml(),
        );
    }
    let mut app = TestApp::builder()
        .on(engine)
        .with(&config)
        .env("K", "sk-dashboard-test-key-0000");
    for (k, v) in env {
        app = app.env(k, v);
    }
    app.start_with(sim).await
}

/// Waits until both failing targets have an open incident.
async fn wait_for_incidents(app: &TestApp) -> Vec<serde_json::Value> {
    app.json_until(
        "both failing targets to have an open incident",
        "/api/v1/incidents?state=open",
        |open| open.as_array().is_some_and(|a| a.len() >= 2),
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

fn keys(v: &serde_json::Value) -> HashSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(fields: &[&str]) -> HashSet<String> {
    fields.iter().map(|s| s.to_string()).collect()
}

async fn the_api_answers_every_route_with_the_documented_fields(engine: Engine) {
    // A webhook that refuses connections: alerts are attempted and retried.
    let hook = format!(
        "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:{}/hook\"\n\n",
        closed_port()
    );
    let app = start(engine, &hook, &[]).await;
    let open = wait_for_incidents(&app).await;

    // /api/v1/status
    let status = app.json("/api/v1/status").await;
    assert_eq!(keys(&status), set(&["overall", "targets"]));
    assert_eq!(status["overall"], "down");
    let targets = status["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3);
    for t in targets {
        assert_eq!(
            keys(t),
            set(&[
                "name",
                "state",
                "category",
                "error_id",
                "since",
                "last_probe_at",
                "open_incidents",
                "locations"
            ])
        );
        // One machine: one location, the agent's, with the latest answer.
        let locations = t["locations"].as_array().unwrap();
        assert_eq!(locations.len(), 1, "{t}");
        assert_eq!(locations[0]["location"], "test-lab");
        assert_eq!(locations[0]["error_id"], t["error_id"]);
        assert_eq!(locations[0]["silent"], false);
    }
    let by_name = |n: &str| targets.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(by_name("good")["state"], "ok");
    assert_eq!(by_name("good")["since"], serde_json::Value::Null);
    assert_eq!(by_name("broke")["state"], "down");
    assert_eq!(by_name("broke")["category"], "quota");
    assert_eq!(by_name("down")["error_id"], "server_error");
    assert!(
        by_name("down")["last_probe_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "RFC 3339 UTC"
    );
    assert_eq!(
        by_name("down")["open_incidents"].as_array().unwrap().len(),
        1
    );

    // /api/v1/incidents
    let incident_fields = set(&[
        "id",
        "target",
        "category",
        "error_id",
        "http_status",
        "opened_at",
        "resolved_at",
        "probe_count",
        "last_message",
        "cause",
        "resolution",
        "acknowledged",
        "locations",
        "healthy_locations",
    ]);
    for i in &open {
        assert_eq!(i["locations"], serde_json::json!(["test-lab"]), "{i}");
        assert_eq!(keys(i), incident_fields);
        assert_eq!(i["resolved_at"], serde_json::Value::Null);
    }
    let quota = open.iter().find(|i| i["category"] == "quota").unwrap();
    assert_eq!(quota["target"], "broke");
    assert_eq!(quota["http_status"], 429);
    assert!(
        quota["resolution"]
            .as_str()
            .unwrap()
            .starts_with("Buy additional credits")
    );
    let outage = open.iter().find(|i| i["category"] == "outage").unwrap();
    assert!(outage["probe_count"].as_i64().unwrap() >= 3);
    let only_down = app.json("/api/v1/incidents?state=all&target=down").await;
    assert!(
        only_down
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["target"] == "down")
    );
    assert_eq!(
        app.json("/api/v1/incidents?state=resolved")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // /api/v1/targets/{name}/probes
    let probes = app.json("/api/v1/targets/down/probes?limit=2").await;
    let probes = probes.as_array().unwrap();
    assert_eq!(probes.len(), 2);
    assert_eq!(
        keys(&probes[0]),
        set(&[
            "at",
            "location",
            "target",
            "probe",
            "latency_ms",
            "http_status",
            "transport_error",
            "category",
            "error_id",
            "message",
            "request_id",
            "ratelimit_remaining_requests",
            "ratelimit_remaining_tokens",
            "ttft_ms"
        ])
    );
    assert_eq!(probes[0]["location"], "test-lab");
    assert!(
        probes[0]["ttft_ms"].is_null(),
        "only streamed probes have one"
    );
    assert_eq!(probes[0]["http_status"], 500);
    let future = app
        .json("/api/v1/targets/down/probes?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future.as_array().unwrap().len(), 0);

    // Bad parameters are 400 and unknown things 404, all with a JSON error.
    for (path, status) in [
        ("/api/v1/incidents?state=sideways", 400),
        ("/api/v1/incidents?target=nobody", 404),
        ("/api/v1/incidents?bogus=1", 400),
        ("/api/v1/targets/down/probes?limit=0", 400),
        ("/api/v1/targets/down/probes?limit=abc", 400),
        ("/api/v1/targets/down/probes?since=yesterday", 400),
        (
            &format!("/api/v1/targets/down/probes?since={}", "9".repeat(5000)),
            400,
        ),
        ("/api/v1/targets/nobody/probes", 404),
        ("/incidents/abc", 400),
        ("/incidents/99999999999999999999999", 400),
        ("/incidents/424242", 404),
        ("/incidents/..%2F..%2Fetc%2Fpasswd", 400),
        ("/../../etc/passwd", 404),
        ("/no/such/page", 404),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        for h in SECURITY_HEADERS {
            assert!(r.headers().contains_key(h), "{h} on {path}");
        }
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap())
            .unwrap_or_else(|e| panic!("{path}: JSON error body: {e}"));
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }

    // /healthz
    let health = app.json("/healthz").await;
    assert_eq!(health["status"], "ok");

    // /metrics parses as Prometheus text and carries the documented series.
    let mut text = String::new();
    let start = tokio::time::Instant::now();
    while !text.contains("openai_watch_alerts_total{") {
        assert!(
            start.elapsed() < DEADLINE,
            "no alert attempt counted:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let r = app.get("/metrics").await;
        assert_eq!(r.status(), 200);
        text = r.text().await.unwrap();
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for series in [
        "openai_watch_probes_total",
        "openai_watch_probe_duration_seconds",
        "openai_watch_target_up",
        "openai_watch_incident_open",
        "openai_watch_ratelimit_remaining",
        "openai_watch_alerts_total",
    ] {
        assert!(names.contains(series), "{series} missing in\n{text}");
    }
    let sample = |metric: &str, label: &str, value: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label) == Some(value))
            .unwrap_or_else(|| panic!("{metric}{{{label}={value}}}"))
    };
    let probe_total = sample(
        "openai_watch_probes_total",
        "error_id",
        "insufficient_quota",
    );
    assert_eq!(probe_total.labels.get("target"), Some("broke"));
    assert_eq!(probe_total.labels.get("category"), Some("quota"));
    assert_eq!(probe_total.labels.get("probe"), Some("chat"));
    assert!(
        matches!(sample("openai_watch_target_up", "target", "good").value, prometheus_parse::Value::Gauge(v) if v == 1.0)
    );
    assert!(
        matches!(sample("openai_watch_target_up", "target", "down").value, prometheus_parse::Value::Gauge(v) if v == 0.0)
    );
    assert_eq!(
        sample("openai_watch_incident_open", "target", "down")
            .labels
            .get("category"),
        Some("outage")
    );
    assert!(
        sample("openai_watch_ratelimit_remaining", "target", "good")
            .labels
            .get("kind")
            .is_some()
    );
    assert_eq!(
        sample("openai_watch_alerts_total", "channel", "webhook")
            .labels
            .get("result"),
        Some("retry")
    );
    assert!(matches!(
        sample("openai_watch_probe_duration_seconds", "target", "good").value,
        prometheus_parse::Value::Histogram(_)
    ));

    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
    drop(app.sim);
    drop(app.ws);
}

async fn hostile_upstream_text_is_shown_as_text_on_every_page(engine: Engine) {
    let app = start(engine, "", &[]).await;
    let open = wait_for_incidents(&app).await;
    let quota = open.iter().find(|i| i["category"] == "quota").unwrap();
    assert!(
        quota["last_message"].as_str().unwrap().contains(XSS_SCRIPT),
        "the API gives the text as it came (JSON is not HTML)"
    );
    for path in ["/".to_string(), format!("/incidents/{}", quota["id"])] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 200);
        for h in SECURITY_HEADERS {
            assert!(r.headers().contains_key(h), "{h} on {path}");
        }
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let html = r.text().await.unwrap();
        assert!(!html.contains(XSS_SCRIPT), "{path}: raw script tag");
        assert!(!html.contains("<img src=x onerror"), "{path}: raw img tag");
        assert!(
            !html.to_lowercase().contains("<script"),
            "{path}: the pages have no script at all"
        );
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}: the script is shown as text"
        );
        assert!(
            html.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"),
            "{path}: the attribute breaker is shown as text"
        );
    }
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
}

async fn with_a_token_every_route_but_healthz_needs_it(engine: Engine) {
    let app = start(
        engine,
        "[dashboard]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"DASH_TOKEN\"\n\n",
        &[("DASH_TOKEN", "s3cret-dashboard-token")],
    )
    .await;
    for path in [
        "/",
        "/incidents/1",
        "/api/v1/status",
        "/api/v1/incidents",
        "/api/v1/targets/good/probes",
        "/metrics",
        "/assets/style.css",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = app
            .http
            .get(format!("{}{path}", app.url))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = app
            .http
            .get(format!("{}{path}", app.url))
            .bearer_auth("s3cret-dashboard-token")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 401, "{path} with the bearer token");
        let r = app
            .http
            .get(format!("{}{path}", app.url))
            .basic_auth("anyone", Some("s3cret-dashboard-token"))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 401, "{path} with basic auth");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success());
    assert!(
        !log.contains("s3cret-dashboard-token"),
        "the token is never logged"
    );
}

/// Finds the Chromium binary; in CI `.ci/run` installs it, elsewhere the test says how.
fn chromium() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

async fn headless(args: &[&str], url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(chromium().unwrap())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished")
    .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn a_headless_browser_shows_every_target_and_the_resolution_without_console_errors(
    engine: Engine,
) {
    if chromium().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: install Debian's chromium package to run the browser test");
        return;
    }
    let app = start(engine, "", &[]).await;
    wait_for_incidents(&app).await;
    let (dom, log) = headless(&["--dump-dom"], &format!("{}/", app.url)).await;
    for target in ["good", "broke", "down"] {
        assert!(
            dom.contains(&format!("id=\"target-{target}\"")),
            "card of {target} in the rendered page"
        );
    }
    assert!(
        dom.contains("Buy additional credits"),
        "the open quota incident's resolution is visible"
    );
    assert!(
        !dom.contains("<img src=\"x\""),
        "the hostile message did not become an element"
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    // A directory of this run's own: both engines' runs go at once, and a shared file name
    // let one remove the other's screenshot.
    let shots = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shot = shots.path().join("dashboard.png");
    let (_, log) = headless(
        &[
            "--window-size=1280,1700",
            &format!("--screenshot={}", shot.display()),
        ],
        &format!("{}/", app.url),
    )
    .await;
    assert!(shot.exists(), "screenshot written: {log}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    let (status, _) = app.daemon.terminate().await;
    assert!(status.success());
}

/// The newest probe of `target` as stored: its error id.
async fn stored_latest(ws: &Workspace, target: &str) -> Option<String> {
    ws.try_rows::<(String,)>(&format!(
        "select error_id from probes where target = '{target}' order by at_ms desc, id desc limit 1"
    ))
    .await
    .ok()?
    .pop()
    .map(|(id,)| id)
}

async fn the_cached_status_page_and_api_show_a_new_probe_result_on_the_next_request(
    engine: Engine,
) {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "ok").unwrap();
    let app = TestApp::builder()
        .on(engine)
        .with(&one_second_target("prod", sim.tag_url("prod"), "models"))
        .env("K", "sk-page-cache-0000")
        .start_with(sim)
        .await;
    let card = |page: &str| {
        let start = page.find("id=\"target-prod\"").unwrap();
        page[start..start + page[start..].find("</article>").unwrap()].to_string()
    };
    for scenario in ["invalid_api_key", "ok", "insufficient_quota", "ok"] {
        app.sim.state.set_tag("prod", scenario).unwrap();
        // Keep the page and the API's answer cached meanwhile: requests while the probe is
        // on its way.
        let _ = app.get("/").await.text().await.unwrap();
        let _ = app.get("/api/v1/status").await.text().await.unwrap();
        let expected = if scenario == "ok" { "ok" } else { scenario };
        eventually("the probe stored", || async {
            (stored_latest(&app.ws, "prod").await.as_deref() == Some(expected)).then_some(())
        })
        .await;
        // The very next request after the row is stored shows it.
        let status = app.json("/api/v1/status").await;
        assert_eq!(
            status["targets"][0]["error_id"], expected,
            "{scenario}: {status}"
        );
        let page = app.get("/").await.text().await.unwrap();
        let card = card(&page);
        if scenario == "ok" {
            assert!(
                card.contains("badge c-ok\">ok</span>"),
                "{scenario}: {card}"
            );
        } else {
            assert!(card.contains(scenario), "{scenario}: {card}");
        }
    }
}

async fn the_status_page_is_revalidated_by_etag_and_gzipped_for_clients_that_ask(engine: Engine) {
    let sim = start_simulator().await;
    let app = TestApp::builder()
        .on(engine)
        .with(
            &TargetSpec {
                name: "hourly",
                base_url: sim.base_url("ok"),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[("models", "1h")],
            }
            .toml(),
        )
        .env("K", "sk-page-cache-0000")
        .start_with(sim)
        .await;
    eventually("the first probe stored", || async {
        stored_latest(&app.ws, "hourly").await
    })
    .await;
    let first = app.get("/").await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let plain = first.bytes().await.unwrap();
    // Nothing new recorded: the same version, so 304 without a body.
    let again = app
        .http
        .get(format!("{}/", app.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    // Compressed for a client that accepts gzip: the same page, much smaller.
    let gz = app
        .http
        .get(format!("{}/", app.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "Accept-Encoding");
    let body = gz.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
    let mut html = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut html).unwrap();
    assert_eq!(html.as_bytes(), &plain[..]);
    assert!(
        body.len() * 2 < plain.len(),
        "{} vs {}",
        body.len(),
        plain.len()
    );
}

crate::both_engines!(
    the_api_answers_every_route_with_the_documented_fields,
    hostile_upstream_text_is_shown_as_text_on_every_page,
    with_a_token_every_route_but_healthz_needs_it,
    a_headless_browser_shows_every_target_and_the_resolution_without_console_errors,
    the_cached_status_page_and_api_show_a_new_probe_result_on_the_next_request,
    the_status_page_is_revalidated_by_etag_and_gzipped_for_clients_that_ask,
);
