//! The write endpoints and the day-two commands against careless and hostile input, with
//! the built binary: empty form posts, look-alike content types and origins, comments too
//! long or with control characters, and the framework's own refusals answered as JSON.

use crate::helpers::*;

const KEY: &str = "sk-write-guards-0000000000000";
const TOKEN: &str = "guard-token-000000";

async fn app() -> TestApp {
    let sim = start_simulator().await;
    sim.state.set_tag("prod", "invalid_api_key").unwrap();
    let target = one_second_target("prod", sim.tag_url("prod"), "models");
    TestApp::builder()
        .with(&format!(
            "[dashboard]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"TOK\"\n\n{target}"
        ))
        .env("K", KEY)
        .env("TOK", TOKEN)
        .start_with(sim)
        .await
}

async fn acks(ws: &Workspace) -> i64 {
    ws.count("select count(*) from incidents where acked_at_ms is not null")
        .await
}

#[tokio::test]
async fn look_alike_writes_are_refused_and_every_refusal_is_json() {
    let app = app().await;
    eventually("the auth incident", || async {
        (app.ws.try_count("select count(*) from incidents").await == Some(1)).then_some(())
    })
    .await;
    let id: i64 = app.ws.count("select id from incidents").await;
    let ack = format!("{}/api/v1/incidents/{id}/ack", app.url);
    let post = |ct: Option<&str>, origin: Option<&str>, body: &'static str| {
        let mut r = app.http.post(&ack).bearer_auth(TOKEN).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let host = app.url.trim_start_matches("http://").to_string();
    let cases = [
        // An empty form post is still a form post.
        (Some("application/x-www-form-urlencoded"), None, "", 415),
        (Some("application/jsonfoo"), None, "{}", 415),
        (Some("text/plain"), None, "", 415),
        (
            Some("application/json"),
            Some(format!("evil://{host}")),
            "{}",
            403,
        ),
        (
            Some("application/json"),
            Some("null".to_string()),
            "{}",
            403,
        ),
    ];
    for (ct, origin, body, status) in &cases {
        let r = post(*ct, origin.as_deref(), body).await.unwrap();
        assert_eq!(r.status(), *status, "{ct:?} {origin:?}");
        let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(json["error"].is_string(), "{json}");
    }
    assert_eq!(
        acks(&app.ws).await,
        0,
        "a refused write acknowledged the incident"
    );
    // A comment is counted in characters, and holds no control characters.
    let r = post_json(
        &app,
        &ack,
        serde_json::json!({ "comment": "é".repeat(1000) }),
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "1000 characters of two bytes each are allowed"
    );
    let r = post_json(
        &app,
        &ack,
        serde_json::json!({ "comment": "x".repeat(1001) }),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("1001 characters"));
    let r = post_json(
        &app,
        &format!("{}/api/v1/silences", app.url),
        serde_json::json!({
            "target": "prod", "category": "auth", "duration": "1h",
            "comment": "\u{1b}]8;;http://evil\u{7}click\u{1b}]8;;\u{7}\nsecond line"
        }),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("control characters"));
    // The framework's own refusals: a method, a body over the limit.
    let r = app
        .http
        .put(format!("{}/api/v1/silences", app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(json["error"].is_string(), "{json}");
    // Over the body limit: written over a raw socket, the answer read while the rest of
    // the body may still be refused.
    let (status, body) = oversized_post(&app.url, "/api/v1/silences", 3 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["error"].is_string(), "{json}");
}

/// POSTs `body` as JSON with the token.
async fn post_json(app: &TestApp, url: &str, body: serde_json::Value) -> reqwest::Response {
    app.http
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// POSTs `size` bytes of JSON-typed body with the token over a plain socket and returns the
/// status and body of the answer, however much of the body the server read.
async fn oversized_post(base: &str, path: &str, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_ok() {
            let _ = write.write_all(&vec![b' '; size]).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        read.read_to_end(&mut answer),
    )
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn silences_are_capped_with_a_clear_refusal_and_the_page_lists_a_few() {
    let app = app().await;
    // 999 silences in force, written as an operator's script would have.
    let now = openai_watch::clock::now_ms();
    let values: Vec<String> = (0..999)
        .map(|i| {
            format!(
                "('prod', 'auth', '*', '*', {now}, {}, 'planned work {i}', 'script', {now})",
                now + 3_600_000
            )
        })
        .collect();
    app.ws
        .sqlite_exec(&format!(
            "insert into silences (target, category, error_id, location, starts_at_ms, ends_at_ms, \
             comment, created_by, created_at_ms) values {}",
            values.join(", ")
        ))
        .await;
    let silences = format!("{}/api/v1/silences", app.url);
    let one_more = || {
        serde_json::json!({
            "target": "prod", "category": "auth", "duration": "1h", "comment": "one more"
        })
    };
    assert_eq!(
        post_json(&app, &silences, one_more()).await.status(),
        201,
        "the thousandth"
    );
    let r = post_json(&app, &silences, one_more()).await;
    assert_eq!(r.status(), 409);
    let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("1000 silences have not ended"),
        "{json}"
    );
    assert_eq!(app.ws.count("select count(*) from silences").await, 1000);
    // The command line is refused the same way.
    let config = app.ws.config_path();
    let out = run_cli(
        &[
            "--config",
            config.to_str().unwrap(),
            "silence",
            "add",
            "--target",
            "prod",
            "--category",
            "auth",
            "--for",
            "1h",
            "--comment",
            "cli",
        ],
        &[],
        app.ws.dir.path(),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("1000 silences have not ended"), "{err}");
    // The page lists the newest twenty and links to the rest.
    let page = app
        .http
        .get(format!("{}/", app.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("and 980 more silences"), "a summary");
    assert!(page.len() < 64 * 1024, "{} bytes", page.len());
}

#[tokio::test]
async fn the_command_line_refuses_long_comments_and_prints_none_raw() {
    let app = app().await;
    eventually("the auth incident", || async {
        (app.ws.try_count("select count(*) from incidents").await == Some(1)).then_some(())
    })
    .await;
    let id: i64 = app.ws.count("select id from incidents").await;
    let config = app.ws.config_path();
    let config = config.to_str().unwrap();
    let long = "x".repeat(120_000);
    let out = run_cli(
        &[
            "--config",
            config,
            "ack",
            &id.to_string(),
            "--comment",
            &long,
        ],
        &[],
        app.ws.dir.path(),
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("at most 1000"), "{err}");
    assert_eq!(acks(&app.ws).await, 0);
    // A comment stored before comments were checked is cleaned when printed.
    let out = run_cli(
        &[
            "--config",
            config,
            "silence",
            "add",
            "--target",
            "prod",
            "--category",
            "auth",
            "--for",
            "1h",
            "--comment",
            "ok",
        ],
        &[],
        app.ws.dir.path(),
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.ws
        .sqlite_exec(
            "update silences set comment = 'a' || char(27) || '[31mred' || char(10) || 'x'",
        )
        .await;
    let out = run_cli(
        &["--config", config, "silence", "list"],
        &[],
        app.ws.dir.path(),
    )
    .await;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
}
