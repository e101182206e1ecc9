//! The configured API key never reaches the database file, the logs, or `check`'s output,
//! even when the upstream echoes it back in full.

use crate::helpers::*;

const KEY: &str = "sk-proj-RECOGNISABLEsecretKEY0123456789abcdefWXYZ";

fn assert_no_key(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(KEY), "the key leaked into {what}");
    // Not even a long piece of it.
    assert!(
        !text.contains(&KEY[..20]),
        "a prefix of the key leaked into {what}"
    );
    assert!(
        !text.contains(&KEY[8..40]),
        "the middle of the key leaked into {what}"
    );
}

async fn the_api_key_never_reaches_the_database_the_logs_or_check_output(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let mut targets = String::new();
    for scenario in [
        "invalid_api_key",
        "ok",
        "rate_limit_exceeded",
        "insufficient_quota",
    ] {
        targets.push_str(
            &TargetSpec {
                name: &scenario.replace('_', "-"),
                base_url: sim.base_url(scenario),
                key_env: Some("OPENAI_API_KEY"),
                timeout: "20s",
                probes: &[("models", "1s"), ("chat", "1s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&targets);
    let cfg = config.to_str().unwrap();
    let env = [("OPENAI_API_KEY", KEY), ("RUST_LOG", "trace")];

    // check, as text and as JSON, with every log level on
    for args in [
        vec!["--config", cfg, "check"],
        vec!["--config", cfg, "check", "--json"],
        vec!["--config", cfg, "--log-format", "json", "check"],
    ] {
        let out = run_cli(&args, &env, ws.dir.path()).await;
        assert_eq!(out.status.code(), Some(2));
        assert_no_key("check stdout", &out.stdout);
        assert_no_key("check stderr", &out.stderr);
        assert!(
            !out.stderr.is_empty(),
            "trace logging produced output to search"
        );
    }
    let out = run_cli(&["--config", cfg, "config", "check"], &env, ws.dir.path()).await;
    assert_eq!(out.status.code(), Some(0));
    assert_no_key("config check output", &out.stdout);

    // the daemon, with debug logs, for a few rounds of probes
    let echoes = || {
        sim.state
            .requests()
            .iter()
            .filter(|r| r.scenario == "invalid_api_key")
            .count()
    };
    let before = echoes();
    let daemon = Daemon::start(&config, &[("OPENAI_API_KEY", KEY)]);
    wait_for(
        "the daemon to probe the echoing target twice per kind",
        || echoes() >= before + 4,
    )
    .await;
    // Every page and API answer of the running daemon.
    let url = daemon.dashboard_url().await;
    openai_watch::tls::install_crypto_provider();
    for path in [
        "/",
        "/incidents/1",
        "/api/v1/status",
        "/api/v1/incidents",
        "/api/v1/targets/invalid-api-key/probes?limit=1000",
        "/metrics",
        "/healthz",
    ] {
        let body = reqwest::get(format!("{url}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.len() > 10, "{path} answered");
        assert_no_key(path, body.as_bytes());
    }
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "daemon exit: {status:?}\n{log}");
    assert!(
        log.contains("invalid_api_key"),
        "the log shows the failure: {log}"
    );
    assert_no_key("daemon log", log.as_bytes());

    // The upstream echoed the key, so the masked form must be in the database instead.
    let rows = ws.probe_rows().await;
    let echoed = rows
        .iter()
        .find(|r| r.error_id == "invalid_api_key")
        .unwrap();
    let message = echoed.message.as_deref().unwrap();
    assert!(
        message.contains("sk-…WXYZ"),
        "masked to the last four characters: {message}"
    );
    assert_no_key("the database file", &ws.db_bytes());
}

crate::both_engines!(the_api_key_never_reaches_the_database_the_logs_or_check_output,);
