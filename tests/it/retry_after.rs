//! A `retry-after` answer delays the next probe of that kind: the monitor must never be the
//! cause of a rate limit. Timing is judged against a control target probed by the same daemon
//! at the same interval, not against wall-clock sleeps.

use crate::helpers::*;
use openai_watch::simulate::RATE_LIMIT_RETRY_AFTER_SECS;

#[tokio::test]
async fn a_retry_after_answer_delays_the_next_probe_of_that_kind() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
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
    let rows = probe_rows(&ws.db()).await;
    assert_eq!(rows.iter().filter(|r| r.target == "limited").count(), 1);
    assert!(rows.iter().filter(|r| r.target == "control").count() >= 5);
}
