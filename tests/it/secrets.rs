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

/// A database password with an unencoded '/' makes the URL parse as a host, a port and a
/// path; whatever the URL looks like, its userinfo is never printed.
#[tokio::test]
async fn a_database_password_never_reaches_an_error_however_the_url_parses() {
    const SECRET: &str = "TopSecret";
    let ws = Workspace::new();
    let base = "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n";
    let closed = closed_port();
    let cases = [
        // (url, exit code, what the line must say)
        (
            format!("postgres://watch:9999/{SECRET}@127.0.0.1:{closed}/db"),
            78,
            "percent-encode",
        ),
        (
            format!("postgres://watch:{SECRET}@127.0.0.1:99999/db"),
            78,
            "port",
        ),
        (
            format!("postgres://watch:{SECRET}@127.0.0.1:{closed}/db?sslmode=bogus"),
            78,
            "sslmode",
        ),
        // Unreachable: the cause is named (not only "pool timed out"), the password is not.
        (
            format!("postgres://watch:{SECRET}@127.0.0.1:{closed}/db"),
            1,
            "refused",
        ),
    ];
    for (url, code, says) in &cases {
        let config = ws.dir.path().join("pg.toml");
        std::fs::write(&config, format!("[storage]\nurl = \"{url}\"\n\n{base}")).unwrap();
        for args in [&["run"][..], &["status"][..]] {
            let mut all = vec!["--config", config.to_str().unwrap()];
            all.extend_from_slice(args);
            let out = run_cli(&all, &[], ws.dir.path()).await;
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains(SECRET), "{args:?} {url}: {err}");
            assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
            assert_eq!(out.status.code(), Some(*code), "{args:?} {url}: {err}");
            assert!(err.to_lowercase().contains(says), "{args:?} {url}: {err}");
            assert_eq!(err.matches("pool timed out").count(), 0, "{err}");
            // One line, each cause said once.
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.matches("(os error").count() <= 1, "{err}");
            assert!(err.matches("database").count() <= 2, "{err}");
        }
    }
    // `migrate` with the URL in its environment variable.
    let config = ws.write_config(base);
    std::fs::write(ws.db(), b"").ok();
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "migrate"],
        &[("OPENAI_WATCH_MIGRATE_TO", &cases[0].0)],
        ws.dir.path(),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(out.status.code(), Some(64), "{err}");
}
