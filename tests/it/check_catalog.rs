//! `check --json` against the simulator over real TCP, for every catalog entry: the printed
//! JSON and the rows in the SQLite file carry the right category, id and HTTP status.

use crate::helpers::*;
use std::collections::HashMap;

/// (scenario, category, HTTP status) — written out here, not derived from the catalog, so
/// that a change to the catalog that breaks the contract fails this test.
const EXPECTED: &[(&str, &str, Option<i64>)] = &[
    ("ok", "ok", Some(200)),
    ("invalid_authentication", "auth", Some(401)),
    ("invalid_api_key", "auth", Some(401)),
    ("no_organization", "auth", Some(401)),
    ("mismatched_organization", "auth", Some(401)),
    ("account_deactivated", "auth", Some(401)),
    ("ip_not_authorized", "auth", Some(401)),
    ("insufficient_permissions", "auth", Some(401)),
    ("unsupported_region", "region", Some(403)),
    ("edge_blocked", "region", Some(403)),
    ("rate_limit_exceeded", "rate_limit", Some(429)),
    ("slow_down", "rate_limit", Some(503)),
    ("insufficient_quota", "quota", Some(429)),
    ("server_error", "outage", Some(500)),
    ("bad_gateway", "outage", Some(502)),
    ("engine_overloaded", "overload", Some(503)),
    ("gateway_timeout", "outage", Some(504)),
    ("timeout", "outage", None),
    ("connection_failed", "outage", None),
    ("model_not_found", "client_error", Some(404)),
    ("bad_request", "client_error", Some(400)),
    ("unexpected_status", "unknown", Some(200)),
];

#[tokio::test]
async fn check_classifies_and_records_every_catalog_entry() {
    // Every catalog id is covered by the table above, and nothing else is in it.
    let mut ids: Vec<&str> = openai_watch::catalog::CATALOG
        .iter()
        .map(|e| e.id)
        .collect();
    ids.push("ok");
    ids.sort_unstable();
    let mut covered: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    covered.sort_unstable();
    assert_eq!(ids, covered);

    let sim = start_simulator().await;
    let ws = Workspace::new();
    let mut targets = String::new();
    for (scenario, _, _) in EXPECTED {
        let timeout = if *scenario == "timeout" { "2s" } else { "20s" };
        targets.push_str(
            &TargetSpec {
                name: &scenario.replace('_', "-"),
                base_url: sim.base_url(scenario),
                key_env: Some("TEST_KEY"),
                timeout,
                probes: &[("models", "60s"), ("chat", "15m")],
            }
            .toml(),
        );
    }
    // Two more ways to fail: nothing listening, and no key at all.
    targets.push_str(
        &TargetSpec {
            name: "refused",
            base_url: format!("http://127.0.0.1:{}/v1", closed_port()),
            key_env: Some("TEST_KEY"),
            timeout: "20s",
            probes: &[("models", "60s")],
        }
        .toml(),
    );
    targets.push_str(
        &TargetSpec {
            name: "no-key",
            base_url: sim.base_url("ok"),
            key_env: None,
            timeout: "20s",
            probes: &[("models", "60s")],
        }
        .toml(),
    );
    let config = ws.write_config(&targets);

    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("TEST_KEY", "sk-test-0123456789abcdef")],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "critical entries make check exit 2; stderr: {stderr}"
    );

    let printed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("check --json prints one JSON array");
    assert_eq!(printed.len(), EXPECTED.len() * 2 + 2);
    for line in &printed {
        for field in [
            "target",
            "probe",
            "category",
            "error_id",
            "severity",
            "http_status",
            "latency_ms",
            "message",
            "request_id",
        ] {
            assert!(line.get(field).is_some(), "field {field} missing in {line}");
        }
    }

    let rows = probe_rows(&ws.db()).await;
    assert_eq!(rows.len(), printed.len(), "one row per probe");
    let by_target: HashMap<(String, String), &Row_> = rows
        .iter()
        .map(|r| ((r.target.clone(), r.probe.clone()), r))
        .collect();
    for (scenario, category, status) in EXPECTED {
        for probe in ["models", "chat"] {
            let row = by_target[&(scenario.replace('_', "-"), probe.to_string())];
            assert_eq!(row.error_id, *scenario, "{scenario}/{probe}: {row:?}");
            assert_eq!(row.category, *category, "{scenario}/{probe}");
            assert_eq!(row.http_status, *status, "{scenario}/{probe}");
            assert_eq!(row.location, "test-lab");
            let json = printed
                .iter()
                .find(|l| l["target"] == scenario.replace('_', "-") && l["probe"] == probe)
                .unwrap();
            assert_eq!(json["error_id"], *scenario);
            assert_eq!(json["category"], *category);
            assert_eq!(json["http_status"].as_i64(), *status);
        }
    }
    let refused = by_target[&("refused".to_string(), "models".to_string())];
    assert_eq!(
        (
            refused.error_id.as_str(),
            refused.category.as_str(),
            refused.http_status
        ),
        ("connection_failed", "outage", None)
    );
    let no_key = by_target[&("no-key".to_string(), "models".to_string())];
    assert_eq!(
        (no_key.error_id.as_str(), no_key.http_status),
        ("invalid_authentication", Some(401))
    );
    // The rate-limit answer's headers are kept.
    let rl = printed
        .iter()
        .find(|l| l["error_id"] == "rate_limit_exceeded")
        .unwrap();
    assert!(rl["request_id"].as_str().unwrap().starts_with("req_sim"));
}

#[tokio::test]
async fn check_exits_0_when_everything_is_healthy_and_1_on_warnings() {
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let healthy = TargetSpec {
        name: "prod",
        base_url: sim.base_url("ok"),
        key_env: Some("K"),
        timeout: "20s",
        probes: &[("models", "60s"), ("chat", "60s")],
    }
    .toml();
    let config = ws.write_config(&healthy);
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        &[("K", "sk-healthy-key-000000")],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.starts_with("OK ")), "{text}");

    let warning = TargetSpec {
        name: "limited",
        base_url: sim.base_url("rate_limit_exceeded"),
        key_env: Some("K"),
        timeout: "20s",
        probes: &[("models", "60s")],
    }
    .toml();
    let config = ws.write_config(&format!("{healthy}{warning}"));
    let out = run_cli(
        &["--config", config.to_str().unwrap(), "check"],
        &[("K", "sk-healthy-key-000000")],
        ws.dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("WARNING  limited/models rate_limit rate_limit_exceeded 429")
    );
}
