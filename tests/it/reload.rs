//! SIGHUP with a config the daemon cannot take whole, and with one that drops a target that
//! has an open incident: the daemon keeps running, and the dropped target's incident resolves.

use crate::helpers::*;

const KEY: &str = "sk-reload-safety-test-0000";

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

/// How many probes the simulator answered for `tag`.
fn probes_of(app: &TestApp, tag: &str) -> usize {
    app.sim
        .state
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(&format!("/t/{tag}/")))
        .count()
}

async fn a_reload_whose_alert_channel_cannot_be_built_is_refused_and_probing_goes_on(
    engine: Engine,
) {
    let sim = start_simulator().await;
    let keep = target("keep", sim.tag_url("keep"));
    let app = TestApp::builder()
        .on(engine)
        .with(&keep)
        .env("K", KEY)
        .start_with(sim)
        .await;
    wait_for("the target to be probed", || probes_of(&app, "keep") >= 1).await;

    // Valid TOML, valid keys, but the SMTP client cannot be built: its CA file is missing.
    let missing_ca = app.ws.dir.path().join("no-such-ca.pem");
    app.ws.write_config(&format!(
        "{keep}[alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 1\ntls = \"starttls\"\n\
         ca_file = \"{}\"\nfrom = \"w@example.com\"\nto = [\"o@example.com\"]\n",
        missing_ca.display()
    ));
    app.daemon.signal("HUP");
    wait_for("the reload to be refused", || {
        app.daemon
            .stderr
            .lock()
            .unwrap()
            .contains("config reload refused")
    })
    .await;
    let after_refusal = probes_of(&app, "keep");
    wait_for("probing to go on after the refused reload", || {
        probes_of(&app, "keep") >= after_refusal + 2
    })
    .await;
    let status = app.json("/api/v1/status").await;
    assert_eq!(status["targets"][0]["name"], "keep");

    let (status, log) = app.daemon.terminate().await;
    assert!(
        status.success(),
        "the daemon ran on and stopped cleanly: {log}"
    );
    let refusal = log
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap();
    assert!(
        refusal.contains("alert channels") && refusal.contains("no-such-ca.pem"),
        "the refusal says what could not be built: {refusal}"
    );
}

async fn a_reload_that_removes_a_target_resolves_its_open_incident(engine: Engine) {
    let sim = start_simulator().await;
    sim.state.set_tag("gone", "invalid_api_key").unwrap();
    let keep = target("keep", sim.tag_url("keep"));
    let gone = target("gone", sim.tag_url("gone"));
    let webhook = format!(
        "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.webhook]]\nurl = \"http://{}/_sim/webhook\"\n\n",
        sim.addr
    );
    let app = TestApp::builder()
        .on(engine)
        .with(&format!("{webhook}{keep}{gone}"))
        .env("K", KEY)
        .start_with(sim)
        .await;
    let open = app
        .json_until(
            "the auth incident of the failing target",
            "/api/v1/incidents?state=open&target=gone",
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    let id = open[0]["id"].as_i64().unwrap();
    assert_eq!(open[0]["category"], "auth");

    app.ws.write_config(&format!("{webhook}{keep}"));
    app.daemon.signal("HUP");
    // The target is no longer configured, so the incident is looked up among all of them.
    let resolved = app
        .json_until(
            "the removed target's incident to resolve",
            "/api/v1/incidents?state=resolved",
            |v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|i| i["id"] == id))
            },
        )
        .await;
    let incident = resolved
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap();
    assert_eq!(incident["target"], "gone");
    assert!(incident["resolved_at"].is_string());
    assert!(
        app.json("/api/v1/incidents?state=open")
            .await
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing stays open"
    );

    // The resolved alert goes where the firing one went.
    let events = eventually("the resolved alert at the webhook", || async {
        let events: Vec<String> = app
            .sim
            .state
            .webhooks()
            .iter()
            .map(|h| h["event"].as_str().unwrap_or("").to_string())
            .collect();
        events.contains(&"resolved".to_string()).then_some(events)
    })
    .await;
    assert_eq!(
        events.iter().filter(|e| *e == "firing").count(),
        1,
        "{events:?}"
    );

    // The daemon goes on with the target that stays, and only with it.
    let status = app.json("/api/v1/status").await;
    let names: Vec<&str> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep"]);
    let before = probes_of(&app, "keep");
    wait_for("probing to go on", || probes_of(&app, "keep") >= before + 2).await;
    let (status, log) = app.daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("the target is no longer in the config"),
        "the resolution is logged with its reason: {log}"
    );
}

crate::both_engines!(
    a_reload_whose_alert_channel_cannot_be_built_is_refused_and_probing_goes_on,
    a_reload_that_removes_a_target_resolves_its_open_incident,
);

/// A channel taken out of the config on reload keeps its pending alerts, says so, and sends
/// them when it is put back.
#[tokio::test]
async fn a_channel_removed_on_reload_keeps_its_alerts_until_it_is_back() {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let prod = target("prod", sim.tag_url("prod"));
    let hook = |url: &str| {
        format!(
            "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{url}\"\n\n"
        )
    };
    // The receiver is down at first: the firing alert waits, retried.
    let down = format!("http://127.0.0.1:{}/hook", closed_port());
    let app = TestApp::builder()
        .with(&(hook(&down) + &prod))
        .env("K", KEY)
        .start_with(sim)
        .await;
    let state = || async {
        app.ws
            .try_rows::<(String, i64, Option<String>)>(
                "select state, attempts, last_error from alert_deliveries",
            )
            .await
            .unwrap_or_default()
    };
    eventually("a failed attempt", || async {
        state().await.first().filter(|d| d.1 >= 1).cloned()
    })
    .await;
    // Taken out of the config: kept, with the reason, never given up.
    app.ws.write_config(&prod);
    app.daemon.signal("HUP");
    let kept = eventually("the alert kept for the missing channel", || async {
        state().await.into_iter().find(|d| {
            d.2.as_deref()
                .is_some_and(|e| e.contains("no longer configured"))
        })
    })
    .await;
    assert_eq!(kept.0, "pending", "{kept:?}");
    assert!(
        app.daemon
            .stderr
            .lock()
            .unwrap()
            .contains("wait for a channel that is no longer configured"),
        "the log says so"
    );
    // Put back, reachable: the alert goes out.
    let up = format!("http://{}/_sim/webhook", app.sim.addr);
    app.ws.write_config(&(hook(&up) + &prod));
    app.daemon.signal("HUP");
    eventually("the kept alert delivered", || async {
        app.sim
            .state
            .webhooks()
            .into_iter()
            .find(|h| h["event"] == "firing")
    })
    .await;
    assert_eq!(state().await[0].0, "sent");
}
