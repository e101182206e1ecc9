//! A hostile upstream, served by a raw TCP server in this test: never-ending and huge bodies,
//! a gzip bomb, a slow drip, invalid UTF-8, 10 000 headers, a redirect to another host and a
//! TLS failure. Every probe ends within its timeout with a classified result, memory stays
//! bounded, and the key never follows the redirect.

use crate::helpers::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-hostile-test-key-0123456789";

async fn read_request(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Answers according to the first path segment.
async fn hostile(mut s: TcpStream, other: u16) {
    let request = read_request(&mut s).await;
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let kind = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let _ = match kind.as_str() {
        "endless" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n").await;
            let chunk = format!("{:x}\r\n{}\r\n", 16384, "a".repeat(16384));
            loop {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break Ok(());
                }
            }
        }
        "huge" => {
            let size = 100 * 1024 * 1024;
            let _ = s
                .write_all(
                    format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {size}\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let block = vec![b'x'; 1 << 20];
            for _ in 0..100 {
                if s.write_all(&block).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        "gzip" => {
            // 10 MB of zeros compress to about 10 KB; a client that inflated it would balloon.
            let bomb = gzip_zeros(10 * 1024 * 1024);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                bomb.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            s.write_all(&bomb).await
        }
        "drip" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                .await;
            loop {
                if s.write_all(b"{").await.is_err() {
                    break Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        "utf8" => {
            s.write_all(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 8\r\n\r\n\xff\xfe\xfd\xc3\x28abc",
            )
            .await
        }
        "headers" => {
            let mut head = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..10_000 {
                head.push_str(&format!("x-h{i}: {i}\r\n"));
            }
            head.push_str("content-length: 2\r\n\r\n{}");
            s.write_all(head.as_bytes()).await
        }
        // A streamed answer whose event never ends: `data: ` lines, never a blank line.
        "sse_lines" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n").await;
            let line = format!("data: {}\n", "x".repeat(1000));
            let chunk = format!("{:x}\r\n{}\r\n", line.len() * 16, line.repeat(16));
            loop {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break Ok(());
                }
            }
        }
        // A streamed answer of one endless line.
        "sse_line" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n").await;
            let _ = s.write_all(b"6\r\ndata: \r\n").await;
            let chunk = format!("{:x}\r\n{}\r\n", 16384, "y".repeat(16384));
            loop {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break Ok(());
                }
            }
        }
        "redirect" => {
            let to = format!("http://127.0.0.1:{other}/steal/v1/models");
            s.write_all(
                format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .await
        }
        _ => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await
        }
    };
}

/// A gzip stream of `n` zero bytes: one fixed-Huffman deflate block of a literal zero and
/// 258-byte back-references (about 1 000 : 1). The CRC is left zero: nothing here inflates it.
fn gzip_zeros(n: usize) -> Vec<u8> {
    // Fixed-Huffman deflate: a literal 0 followed by length-258 matches at distance 1.
    let mut bits: Vec<bool> = Vec::new();
    let push = |bits: &mut Vec<bool>, value: u32, count: u32, msb_first: bool| {
        for i in 0..count {
            let bit = if msb_first {
                (value >> (count - 1 - i)) & 1
            } else {
                (value >> i) & 1
            };
            bits.push(bit == 1);
        }
    };
    push(&mut bits, 1, 1, false); // BFINAL
    push(&mut bits, 1, 2, false); // BTYPE = fixed
    push(&mut bits, 0b0011_0000, 8, true); // literal 0
    let matches = (n - 1) / 258;
    for _ in 0..matches {
        push(&mut bits, 0b1100_0101, 8, true); // length 258 = code 285
        push(&mut bits, 0, 5, true); // distance code 0 = distance 1
    }
    push(&mut bits, 0, 7, true); // end of block
    let mut deflate = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            deflate[i / 8] |= 1 << (i % 8);
        }
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(deflate);
    out.extend([0u8; 4]); // CRC32 (not checked by anyone here)
    out.extend(((1 + matches * 258) as u32).to_le_bytes());
    out
}

#[tokio::test]
async fn hostile_answers_end_within_the_timeout_classified_and_memory_stays_bounded() {
    // The host a redirect points at: it must never be contacted with the key.
    let steal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let steal_port = steal.local_addr().unwrap().port();
    let stolen = Arc::new(AtomicUsize::new(0));
    let counter = stolen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = steal.accept().await {
            let request = read_request(&mut s).await;
            if request.to_ascii_lowercase().contains("authorization") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"data\":[]}\n")
                .await;
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(hostile(s, steal_port));
        }
    });
    // A TLS target on a port that speaks plain HTTP.
    let plain = start_simulator().await;

    let ws = Workspace::new();
    let cases = [
        ("endless", "unexpected_status"),
        ("huge", "engine_overloaded"),
        ("gzip", "unexpected_status"),
        ("drip", "timeout"),
        ("utf8", "invalid_authentication"),
        ("headers", "connection_failed"),
        ("redirect", "unexpected_status"),
    ];
    let mut config = String::new();
    for (name, _) in cases {
        config.push_str(
            &TargetSpec {
                name,
                base_url: format!("http://127.0.0.1:{port}/{name}/v1"),
                key_env: Some("K"),
                timeout: "3s",
                probes: &[("models", "60s")],
            }
            .toml(),
        );
    }
    config.push_str(
        &TargetSpec {
            name: "tls",
            base_url: format!("https://{}/v1", plain.addr),
            key_env: Some("K"),
            timeout: "3s",
            probes: &[("models", "60s")],
        }
        .toml(),
    );
    let config = ws.write_config(&config);

    let started = std::time::Instant::now();
    let (out, peak_rss_kib) = run_cli_with_peak_rss(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Probes run concurrently, each bounded by its 3 s timeout.
    assert!(
        took < std::time::Duration::from_secs(20),
        "check took {took:?}"
    );
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (name, id) in cases.iter().chain([("tls", "connection_failed")].iter()) {
        let line = lines.iter().find(|l| l["target"] == *name).unwrap();
        assert_eq!(line["error_id"], *id, "{name}: {line}");
        assert!(
            line["latency_ms"].as_i64().unwrap() <= 3500,
            "{name} ended within its timeout: {line}"
        );
    }
    let redirect = lines.iter().find(|l| l["target"] == "redirect").unwrap();
    assert!(
        redirect["message"]
            .as_str()
            .unwrap()
            .contains("not followed"),
        "{redirect}"
    );
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the key followed a redirect to another host"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));

    assert!(peak_rss_kib > 0, "the peak was measured");
    let max_rss_mib = peak_rss_kib / 1024;
    assert!(
        max_rss_mib < 64,
        "check peaked at {max_rss_mib} MiB against 100 MB bodies and a gzip bomb"
    );
    let rows = probe_rows(&ws.db()).await;
    assert_eq!(rows.len(), cases.len() + 1, "every probe recorded");
}

#[tokio::test]
async fn endless_streams_are_cut_at_the_body_cap_and_classified_with_memory_flat() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(hostile(s, 0));
        }
    });
    let sim = start_simulator().await;
    let ws = Workspace::new();
    let mut config = String::new();
    for name in ["sse_lines", "sse_line"] {
        config.push_str(
            &TargetSpec {
                name,
                base_url: format!("http://127.0.0.1:{port}/{name}/v1"),
                key_env: Some("K"),
                timeout: "20s",
                probes: &[("chat_stream", "60s")],
            }
            .toml(),
        );
    }
    // A healthy neighbour probed at the same moment: it is answered while the streams run.
    config.push_str(
        &TargetSpec {
            name: "neighbour",
            base_url: sim.base_url("ok"),
            key_env: Some("K"),
            timeout: "20s",
            probes: &[("models", "60s")],
        }
        .toml(),
    );
    let config = ws.write_config(&config);
    let (out, peak_rss_kib) = run_cli_with_peak_rss(
        &["--config", config.to_str().unwrap(), "check", "--json"],
        &[("K", KEY)],
        ws.dir.path(),
    )
    .await;
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    for name in ["sse_lines", "sse_line"] {
        let line = lines.iter().find(|l| l["target"] == name).unwrap();
        assert_eq!(line["error_id"], "unexpected_status", "{name}: {line}");
        assert!(
            line["message"].as_str().unwrap().contains("64 KiB"),
            "{name}: the message says why: {line}"
        );
        // Cut by the cap, not by the 20 s timeout.
        assert!(
            line["latency_ms"].as_i64().unwrap() < 15_000,
            "{name} ended at the cap, not at the timeout: {line}"
        );
    }
    let neighbour = lines.iter().find(|l| l["target"] == "neighbour").unwrap();
    assert_eq!(neighbour["error_id"], "ok", "{neighbour}");
    let peak_mib = peak_rss_kib / 1024;
    assert!(
        peak_rss_kib > 0 && peak_mib < 64,
        "check peaked at {peak_mib} MiB against endless streams"
    );
}
