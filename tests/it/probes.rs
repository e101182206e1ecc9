//! What the probes send: the chat probe speaks today's API (`max_completion_tokens`, which
//! reasoning models require) and, per probe, `max_tokens` for servers that know only that.

use crate::helpers::*;

const KEY: &str = "sk-probe-request-test-0000";

fn chat_target(name: &str, base_url: &str, model: &str, field: Option<&str>) -> String {
    let field = field.map_or(String::new(), |f| format!("max_tokens_field = \"{f}\"\n"));
    format!(
        "[[targets]]\nname = \"{name}\"\nbase_url = \"{base_url}\"\napi_key_env = \"K\"\n\
         [[targets.probes]]\nkind = \"chat\"\ninterval = \"60s\"\nmodel = \"{model}\"\n{field}\n"
    )
}

async fn the_chat_probe_sends_max_completion_tokens_or_the_field_the_server_knows(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    let url = sim.base_url("ok");
    let config = ws.write_config(&format!(
        "{}{}{}",
        chat_target("reasoning", &url, "o3-mini", None),
        chat_target("compatible", &url, "legacy-7b", Some("max_tokens")),
        chat_target("misconfigured", &url, "legacy-7b", None),
    ));
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by = |name: &str| lines.iter().find(|l| l["target"] == name).unwrap().clone();
    assert_eq!(by("reasoning")["error_id"], "ok", "{lines:?}");
    assert_eq!(by("compatible")["error_id"], "ok", "{lines:?}");
    // A server refusing the probe's own request is the probe's config, never the account.
    let refused = by("misconfigured");
    assert_eq!(refused["category"], "client_error", "{refused}");
    assert_eq!(refused["error_id"], "bad_request");
    assert_eq!(refused["http_status"], 400);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("max_completion_tokens"),
        "{refused}"
    );
    assert_eq!(out.status.code(), Some(1), "a warning, not an outage");
    let entry = openai_watch::catalog::entry("bad_request").unwrap();
    assert!(entry.resolution.contains("max_tokens_field"));

    // What went over the wire.
    let text = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("WARNING  misconfigured/chat client_error bad_request 400")
    );
}

#[tokio::test]
async fn max_tokens_field_is_refused_on_a_probe_that_is_not_chat() {
    let ws = Workspace::new();
    let config = ws.write_config(
        "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\nmax_tokens_field = \"max_tokens\"\n",
    );
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("max_tokens_field") && stderr.contains("chat and chat_stream probes only"),
        "{stderr}"
    );
}

async fn the_probe_kinds_of_todays_api_classify_every_answer(engine: Engine) {
    let sim = start_simulator().await;
    let ws = Workspace::on(engine);
    // (target, scenario, probe kind, expected catalog id)
    let mut cases = Vec::new();
    for kind in ["responses", "chat_stream", "embeddings"] {
        for (scenario, id) in [
            ("ok", "ok"),
            ("invalid_api_key", "invalid_api_key"),
            ("insufficient_quota", "insufficient_quota"),
        ] {
            cases.push((
                format!("{}-{}", kind.replace('_', "-"), scenario.replace('_', "-")),
                scenario,
                kind,
                id,
            ));
        }
    }
    // Inside a stream: an error event is classified like a body; a cut is an outage.
    cases.push((
        "stream-error".into(),
        "stream_error",
        "chat_stream",
        "server_error",
    ));
    cases.push((
        "stream-cut".into(),
        "stream_cut",
        "chat_stream",
        "connection_failed",
    ));
    let mut config = String::new();
    for (name, scenario, kind, _) in &cases {
        config.push_str(
            &TargetSpec {
                name,
                base_url: sim.base_url(scenario),
                key_env: Some("K"),
                timeout: "10s",
                probes: &[(kind, "60s")],
            }
            .toml(),
        );
    }
    let config = ws.write_config(&config);
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (name, _, kind, id) in &cases {
        let line = lines.iter().find(|l| l["target"] == name.as_str()).unwrap();
        assert_eq!(line["probe"], *kind, "{line}");
        assert_eq!(line["error_id"], *id, "{name}: {line}");
    }
    let stream_ok = lines
        .iter()
        .find(|l| l["target"] == "chat-stream-ok")
        .unwrap();
    let ttft = stream_ok["ttft_ms"].as_i64().expect("time to first token");
    assert!(
        ttft <= stream_ok["latency_ms"].as_i64().unwrap(),
        "{stream_ok}"
    );
    let cut = lines.iter().find(|l| l["target"] == "stream-cut").unwrap();
    assert_eq!(
        cut["category"], "outage",
        "a cut stream is never a success: {cut}"
    );
    assert!(
        cut["message"].as_str().unwrap().contains("stream was cut"),
        "{cut}"
    );
    let errored = lines
        .iter()
        .find(|l| l["target"] == "stream-error")
        .unwrap();
    assert!(
        errored["message"]
            .as_str()
            .unwrap()
            .contains("The server had an error"),
        "{errored}"
    );

    // What the simulator was asked: one request per probe, on the right endpoint.
    let paths: Vec<String> = sim
        .state
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(paths.iter().any(|p| p.ends_with("/v1/responses")));
    assert!(paths.iter().any(|p| p.ends_with("/v1/embeddings")));
    // The text output shows the time to first token of a streamed probe.
    let text = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let text = String::from_utf8_lossy(&text.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("chat-stream-ok/chat_stream"))
        .unwrap();
    assert!(line.contains("(first token "), "{line}");
    let rows = ws.probe_rows().await;
    assert_eq!(
        rows.iter().filter(|r| r.probe == "chat_stream").count(),
        2 * 5
    );
}

crate::both_engines!(
    the_chat_probe_sends_max_completion_tokens_or_the_field_the_server_knows,
    the_probe_kinds_of_todays_api_classify_every_answer,
);
