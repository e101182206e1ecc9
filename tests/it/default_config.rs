//! The shipped default config, run the way the README says, gives a clear answer and never
//! hangs: a missing key is one configuration error; with a key, every probe is classified
//! (offline: `connection_failed` or `timeout`) and check exits critical.

use crate::helpers::*;
use std::path::PathBuf;

fn default_config() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("config/openai-watch.toml")
        .display()
        .to_string()
}

#[tokio::test]
async fn without_an_api_key_the_default_config_is_one_configuration_error() {
    let ws = Workspace::new();
    let out = run_cli(
        &["check", "--config", &default_config()],
        &[],
        ws.dir.path(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY is not set"), "{stderr}");
    assert!(stderr.contains("openai-watch.toml:"), "{stderr}");
}

#[tokio::test]
async fn with_an_api_key_the_default_config_gives_classified_critical_results() {
    let ws = Workspace::new();
    let out = run_cli(
        &["check", "--json", "--config", &default_config()],
        &[("OPENAI_API_KEY", "sk-not-a-real-key-0000000000")],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lines.len(), 2, "models and chat");
    for l in &lines {
        // Offline this is connection_failed or timeout; with internet access the fake key is refused.
        let id = l["error_id"].as_str().unwrap();
        assert!(
            ["connection_failed", "timeout", "invalid_api_key"].contains(&id),
            "{l}"
        );
        assert_eq!(l["severity"], "critical");
    }
    // The default database lands in the working directory.
    assert!(ws.dir.path().join("openai-watch.db").exists());
}
