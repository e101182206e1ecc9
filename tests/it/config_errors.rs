//! Every malformed config gets one clear line naming file:line:column and the key, exit 78,
//! and never a panic.

use crate::helpers::*;

const GOOD_TARGET: &str = "[[targets]]\nname = \"prod\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"K\"\n[[targets.probes]]\nkind = \"models\"\ninterval = \"60s\"\n";

/// (what is wrong, config text, expected line, a fragment the message must contain)
fn cases() -> Vec<(&'static str, String, usize, &'static str)> {
    let t = GOOD_TARGET;
    vec![
        (
            "unknown top-level table",
            format!("{t}[dashbord]\nlisten = \"127.0.0.1:1\"\n"),
            8,
            "dashbord",
        ),
        (
            "misspelt probe key",
            t.replace("interval =", "intervall ="),
            7,
            "intervall",
        ),
        (
            "bad duration",
            t.replace("\"60s\"", "\"sixty\""),
            7,
            "invalid duration",
        ),
        (
            "bad target name",
            t.replace("\"prod\"", "\"Prod!\""),
            2,
            "invalid target name",
        ),
        (
            "duplicate target",
            format!("{t}{t}"),
            9,
            "duplicate target name",
        ),
        (
            "unknown probe kind",
            t.replace("\"models\"", "\"completions\""),
            6,
            "completions",
        ),
        (
            "unsupported URL scheme",
            t.replace("http://127.0.0.1:9/v1", "ftp://example.com"),
            3,
            "http",
        ),
        ("TOML syntax error", t.replace("\"prod\"", "\"prod"), 2, ""),
        (
            "wrong type",
            format!("[detection]\nfailure_threshold = \"three\"\n{t}"),
            2,
            "failure_threshold",
        ),
        (
            "zero threshold",
            format!("[detection]\nsuccess_threshold = 0\n{t}"),
            2,
            "success_threshold",
        ),
        (
            "ratio above 1",
            format!("[detection]\nfailure_ratio = 1.5\n{t}"),
            2,
            "failure_ratio",
        ),
        (
            "two key sources",
            t.replace(
                "api_key_env = \"K\"",
                "api_key_env = \"K\"\napi_key_file = \"/k\"",
            ),
            5,
            "only one of",
        ),
        (
            "unknown alert category",
            format!("{t}[alerts]\ncategories = [\"auth\", \"quotas\"]\n"),
            9,
            "quotas",
        ),
        (
            "unknown TLS mode",
            format!(
                "{t}[alerts.email]\nsmtp_host = \"h\"\ntls = \"ssl\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n"
            ),
            10,
            "ssl",
        ),
        (
            "model on a models probe",
            t.replace("kind = \"models\"", "kind = \"models\"\nmodel = \"gpt-4o\""),
            7,
            "does not apply to models probes",
        ),
        (
            "interval below 1s",
            t.replace("\"60s\"", "\"500ms\""),
            7,
            "between 1s and 1day",
        ),
        (
            "an interval that would overflow the scheduler",
            t.replace("\"60s\"", "\"300000000000y\""),
            7,
            "out of range",
        ),
        (
            "a reminder every millisecond",
            format!("{t}[alerts]\nreminder_interval = \"1ms\"\n"),
            9,
            "reminder_interval",
        ),
        (
            "a reminder interval that would wrap around",
            format!("{t}[alerts]\nreminder_interval = \"300000000y\"\n"),
            9,
            "out of range",
        ),
        (
            "raw rows kept for no time",
            format!("[storage]\nraw_retention = \"0s\"\n{t}"),
            2,
            "raw_retention",
        ),
        (
            "a group wait of a year",
            format!("{t}[alerts]\ngroup_wait = \"365d\"\n"),
            9,
            "group_wait",
        ),
        (
            "a password in base_url",
            t.replace(
                "http://127.0.0.1:9/v1",
                "https://user:hunter2@api.example.com/v1",
            ),
            3,
            "user name or password",
        ),
        (
            "a URL without a host",
            t.replace("http://127.0.0.1:9/v1", "http:///v1"),
            3,
            "no host",
        ),
        (
            "a line break in the organization header",
            t.replace(
                "api_key_env",
                "organization = \"org-1\\r\\nX-Evil: 1\"\napi_key_env",
            ),
            4,
            "HTTP header",
        ),
        (
            "SMTP credentials in clear text to another host",
            format!(
                "{t}[alerts.email]\nsmtp_host = \"smtp.example.com\"\ntls = \"none\"\nusername_env = \"K\"\n\
                 password_env = \"K\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n"
            ),
            10,
            "clear text",
        ),
        (
            "bad listen address",
            format!("[dashboard]\nlisten = \"localhost\"\n{t}"),
            2,
            "listen",
        ),
        (
            "no targets",
            "[detection]\nfailure_threshold = 3\n".to_string(),
            3,
            "no [[targets]]",
        ),
        (
            "missing API key variable",
            t.replace(
                "api_key_env = \"K\"",
                "api_key_env = \"OPENAI_WATCH_TEST_UNSET\"",
            ),
            4,
            "is not set",
        ),
        (
            "bad recipient",
            format!("{t}[alerts.email]\nsmtp_host = \"h\"\nfrom = \"a@b\"\nto = [\"nobody\"]\n"),
            11,
            "invalid address",
        ),
        (
            "duplicate probe kind",
            format!("{t}[[targets.probes]]\nkind = \"models\"\ninterval = \"30s\"\n"),
            9,
            "duplicate probe kind",
        ),
    ]
}

#[tokio::test]
async fn malformed_configs_give_one_line_with_position_and_exit_78() {
    let ws = Workspace::new();
    let path = ws.config_path();
    let shown = path.display().to_string();
    let cases = cases();
    assert!(cases.len() >= 10);
    for (what, text, line, fragment) in cases {
        std::fs::write(&path, &text).unwrap();
        let out = run_cli(
            &["--config", &shown, "config", "check"],
            &[("K", "sk-key-for-config-tests")],
            ws.dir.path(),
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(78),
            "{what}: exit code; stderr: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{what}: one line, got: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{what}: a password echoed: {stderr}"
        );
        assert!(
            !stderr.contains("__serde"),
            "{what}: internal names leak: {stderr}"
        );
        let prefix = format!("error: {shown}:{line}:");
        assert!(
            stderr.starts_with(&prefix),
            "{what}: expected {prefix}…, got: {stderr}"
        );
        let col: String = stderr[prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(
            col.parse::<usize>().is_ok_and(|c| c >= 1),
            "{what}: column in {stderr}"
        );
        assert!(
            stderr.contains(fragment),
            "{what}: expected {fragment:?} in {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
    }
}

#[tokio::test]
async fn a_missing_or_unreadable_config_is_a_configuration_error() {
    let ws = Workspace::new();
    let missing = ws.dir.path().join("nope.toml");
    let out = run_cli(
        &["--config", missing.to_str().unwrap(), "check"],
        &[],
        ws.dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );

    std::fs::write(ws.config_path(), b"[[targets]]\nname = \"\xff\"\n").unwrap();
    let out = run_cli(
        &[
            "--config",
            ws.config_path().to_str().unwrap(),
            "config",
            "check",
        ],
        &[],
        ws.dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2:9:") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

#[tokio::test]
async fn usage_errors_exit_64() {
    let ws = Workspace::new();
    for args in [vec!["frobnicate"], vec!["check", "--jsn"], vec![]] {
        let out = run_cli(&args, &[], ws.dir.path()).await;
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    let out = run_cli(&["--help"], &[], ws.dir.path()).await;
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn the_config_path_falls_back_to_the_environment_variable() {
    let ws = Workspace::new();
    let config = ws.write_config(GOOD_TARGET);
    let out = run_cli(
        &["config", "check"],
        &[
            ("OPENAI_WATCH_CONFIG", config.to_str().unwrap()),
            ("K", "sk-x-0000000000"),
        ],
        ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("prod") && stdout.contains("models every 1m"),
        "{stdout}"
    );
}
