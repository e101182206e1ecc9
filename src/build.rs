//! Build script: lays out the code the daemon runs every second side by side in the release
//! binary. The kernel maps a binary's code 64 KiB at a time around each page used, so code
//! that runs in steady state but is scattered over the whole `.text` keeps most of it
//! resident; placed together (the linker's `--symbol-ordering-file`, from the list in
//! `src/hot-code.txt`), it fits in about 2 MiB, and `resident::trim` hands back the rest.
//!
//! The list comes from a profile of the daemon in steady state (`benches/hot-code.sh`).
//! A name the binary no longer has is skipped by the linker; a stale list costs memory,
//! never correctness. Only where the linker is known to be LLD: Rust's own default on
//! x86_64 Linux since 1.90, unless a linker was chosen (then nothing is asked of it).

use std::env;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=src/hot-code.txt");
    println!("cargo::rerun-if-env-changed=OPENAI_WATCH_CODE_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").unwrap_or_default();
    let wanted = env::var("OPENAI_WATCH_CODE_ORDER").map_or(true, |v| v != "0");
    if !(release && wanted && target == "x86_64-unknown-linux-gnu" && default_linker_is_lld()) {
        return;
    }
    let list = format!("{}/src/hot-code.txt", env!("CARGO_MANIFEST_DIR"));
    println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
    println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether the binary will be linked by Rust's bundled LLD: rustc 1.90 or later and no
/// linker chosen in the flags or the config.
fn default_linker_is_lld() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker")
        || flags.contains("fuse-ld")
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
