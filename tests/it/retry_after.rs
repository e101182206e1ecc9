//! A `retry-after` answer delays the next probe of that kind: the monitor must never be the
//! cause of a rate limit. Timing is judged against a control target probed by the same daemon
//! at the same interval, not against wall-clock sleeps.

use crate::helpers::*;
use openai_watch::simulate::RATE_LIMIT_RETRY_AFTER_SECS;

async fn a_retry_after_answer_delays_the_next_probe_of_that_kind(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let limited = TargetSpec {
        name: "limited",
        base_url: sim.base_url("rate_limit_exceeded"),
        key_env: Some("K"),
        timeout: "20s",
        probes: &[("models", "1s")],
    };
    let control = TargetSpec {
        name: "control",
        base_url: sim.base_url("ok"),
        key_env: Some("K"),
        timeout: "20s",
        probes: &[("models", "1s")],
    };
    let config = ws.write_config(&format!("{}{}", limited.toml(), control.toml()));
    let daemon = Daemon::start(&config, &[("K", "sk-retry-after-test-0000")]);

    let count = |scenario: &str| {
        sim.state
            .requests()
            .iter()
            .filter(|r| r.scenario == scenario)
            .count()
    };
    // The control target at the same 1 s interval gets at least 5 probes: 4 s or more pass.
    wait_for("the control target to be probed 5 times", || {
        count("ok") >= 5
    })
    .await;
    let limited_probes = count("rate_limit_exceeded");
    const { assert!(RATE_LIMIT_RETRY_AFTER_SECS >= 20) };
    assert_eq!(
        limited_probes, 1,
        "after retry-after: {RATE_LIMIT_RETRY_AFTER_SECS}, the rate-limited target was probed again within the pause"
    );

    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("upstream asked to wait"),
        "the pause is logged: {log}"
    );
    let rows = ws.probe_rows().await;
    assert_eq!(rows.iter().filter(|r| r.target == "limited").count(), 1);
    assert!(rows.iter().filter(|r| r.target == "control").count() >= 5);
}

async fn a_pause_asked_for_survives_a_reload_and_a_restart(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let spec = |name, url| TargetSpec {
        name,
        base_url: url,
        key_env: Some("K"),
        timeout: "20s",
        probes: &[("models", "1s")],
    };
    let config = ws.write_config(&format!(
        "{}{}",
        spec("limited", sim.base_url("rate_limit_exceeded")).toml(),
        spec("control", sim.base_url("ok")).toml()
    ));
    let count = |scenario: &str| {
        sim.state
            .requests()
            .iter()
            .filter(|r| r.scenario == scenario)
            .count()
    };
    // The control target, probed every second by the same daemon, is the clock: each wait
    // below lets at least 4 s pass, well inside the simulator's 20 s pause.
    const { assert!(RATE_LIMIT_RETRY_AFTER_SECS >= 20) };
    let control_grows_by = |n: usize| {
        let from = count("ok");
        move || count("ok") >= from + n
    };
    let daemon = Daemon::start(&config, &[("K", "sk-retry-after-test-0000")]);
    wait_for("the first rate-limited answer", || {
        count("rate_limit_exceeded") == 1
    })
    .await;

    daemon.signal("HUP");
    wait_for("the reload", || {
        daemon.stderr.lock().unwrap().contains("config reloaded")
    })
    .await;
    wait_for("4 s of probing after the reload", control_grows_by(5)).await;
    assert_eq!(
        count("rate_limit_exceeded"),
        1,
        "the reload forgot the pause"
    );

    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    let daemon = Daemon::start(&config, &[("K", "sk-retry-after-test-0000")]);
    daemon.dashboard_url().await;
    wait_for("4 s of probing after the restart", control_grows_by(5)).await;
    assert_eq!(
        count("rate_limit_exceeded"),
        1,
        "the restart forgot the pause"
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
}

crate::both_engines!(
    a_retry_after_answer_delays_the_next_probe_of_that_kind,
    a_pause_asked_for_survives_a_reload_and_a_restart,
);
