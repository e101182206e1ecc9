//! SMTP faults: a temporary refusal (4xx) is retried until delivery, a permanent one (5xx)
//! ends in a visible failure with the server's reply, and a server that accepts the
//! connection and never answers does not slow probing.

use crate::helpers::smtp::SmtpServer;
use crate::helpers::*;
use mailin_embedded::response;

fn config(
    ws: &Workspace,
    sim: &openai_watch::simulate::Simulator,
    port: u16,
) -> std::path::PathBuf {
    let mut text = email_alerts(port, "");
    text.push_str(
        &TargetSpec {
            name: "prod",
            base_url: sim.base_url("invalid_api_key"),
            key_env: Some("K"),
            timeout: "10s",
            probes: &[("models", "1s")],
        }
        .toml(),
    );
    ws.write_config(&text)
}

/// (state, attempts, last error) of the one delivery.
async fn delivery(ws: &Workspace) -> Option<(String, i64, Option<String>)> {
    ws.try_rows("select state, attempts, last_error from alert_deliveries")
        .await
        .ok()?
        .pop()
}

async fn wait_delivery(
    ws: &Workspace,
    what: &str,
    pred: impl Fn(&(String, i64, Option<String>)) -> bool,
) -> (String, i64, Option<String>) {
    eventually(what, || async { delivery(ws).await.filter(|d| pred(d)) }).await
}

async fn a_temporary_refusal_is_retried_until_the_email_is_accepted(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    smtp.refuse(Some(response::INTERNAL_ERROR));
    let daemon = Daemon::start(
        &config(&ws, &sim, smtp.port),
        &[("K", "sk-smtp-fault-000000")],
    );
    let (state, _, error) = wait_delivery(&ws, "two refused attempts", |d| d.1 >= 2).await;
    assert_eq!(state, "pending", "a 4xx is temporary");
    assert!(
        error.as_deref().is_some_and(|e| e.contains("451")),
        "{error:?}"
    );
    smtp.refuse(None);
    wait_for("the email", || smtp.mails().len() == 1).await;
    let (state, _, _) = wait_delivery(&ws, "sent", |d| d.0 == "sent").await;
    assert_eq!(state, "sent");
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert_eq!(smtp.mails().len(), 1);
}

async fn a_permanent_refusal_is_a_visible_failure_with_the_servers_reply(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let smtp = SmtpServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), None);
    smtp.refuse(Some(response::NO_MAILBOX));
    let config = config(&ws, &sim, smtp.port);
    let daemon = Daemon::start(&config, &[("K", "sk-smtp-fault-000000")]);
    let url = daemon.dashboard_url().await;
    let (_, attempts, error) = wait_delivery(&ws, "the failure", |d| d.0 == "failed").await;
    assert_eq!(attempts, 1, "a 5xx is not retried");
    let error = error.unwrap();
    assert!(
        error.contains("550") && error.contains("Mailbox unavailable"),
        "{error}"
    );
    openai_watch::tls::install_crypto_provider();
    let page = reqwest::get(format!("{url}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Mailbox unavailable"),
        "the dashboard shows the failure"
    );
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("openai_watch_alerts_total{channel=\"email\",result=\"failed\"} 1"),
        "{metrics}"
    );
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        log.contains("alert delivery failed for good"),
        "the log says so"
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "status"],
        &[],
        ws.dir.path(),
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alert to email for incident #1 failed") && text.contains("550"),
        "{text}"
    );
}

async fn an_smtp_server_that_never_answers_does_not_slow_probing(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    // Accepts connections and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let daemon = Daemon::start(&config(&ws, &sim, port), &[("K", "sk-smtp-fault-000000")]);
    let url = daemon.dashboard_url().await;
    // The alert is stuck in the SMTP greeting; probing goes on at its 1 s pace.
    wait_for("the incident", || {
        daemon.stderr.lock().unwrap().contains("incident opened")
    })
    .await;
    let before = sim.state.requests().len();
    let t = tokio::time::Instant::now();
    wait_for("five more probes", || {
        sim.state.requests().len() >= before + 5
    })
    .await;
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "probing slowed down: {:?}",
        t.elapsed()
    );
    openai_watch::tls::install_crypto_provider();
    assert_eq!(
        reqwest::get(format!("{url}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    // SIGTERM with a delivery stuck in progress: the daemon still stops within 10 s, and the
    // delivery stays pending for the next start.
    let t = std::time::Instant::now();
    let (status, log) = daemon.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "stopped in {:?}",
        t.elapsed()
    );
    let states: Vec<(String,)> = ws.rows("select state from alert_deliveries").await;
    assert_eq!(states, vec![("pending".to_string(),)]);
}

crate::both_engines!(
    a_temporary_refusal_is_retried_until_the_email_is_accepted,
    a_permanent_refusal_is_a_visible_failure_with_the_servers_reply,
    an_smtp_server_that_never_answers_does_not_slow_probing,
);
