//! Resident memory of code. Most of the daemon's resident memory is its own code and
//! read-only data, mapped from the binary and its libraries, and much of that only ran while
//! starting (argument parsing, config validation, migrations). `trim` hands those pages back:
//! the kernel unmaps them from this process (they stay in the page cache, so nothing is read
//! from disk again) and maps again, at the next use, only what the daemon still runs.
//!
//! Only mappings that are a file's bytes unchanged are trimmed: not writable, and holding no
//! page of this process's own (`Anonymous: 0 kB`). Dropping such a page loses nothing.
//!
//! The heap is kept small the same way: one malloc arena for every thread (the daemon's few
//! threads allocate little, and an arena per thread keeps its own free memory), and the free
//! pages of the heap handed back at every trim.

use std::time::Duration;

/// When the first trim comes after start: start-up is over and the first probes of targets
/// probed every second have connected.
pub const FIRST_TRIM: Duration = Duration::from_secs(10);
/// How often the code not run since is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// A mapping that may be dropped and read again from its file.
#[derive(Debug, PartialEq, Eq)]
struct Clean {
    start: usize,
    len: usize,
}

/// The clean file mappings listed in `/proc/self/smaps` text.
fn clean_file_mappings(smaps: &str) -> Vec<Clean> {
    let mut out = Vec::new();
    let mut current: Option<(Clean, bool)> = None;
    let finish = |m: Option<(Clean, bool)>, out: &mut Vec<Clean>| {
        if let Some((clean, true)) = m {
            out.push(clean);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            finish(current.take(), &mut out);
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let path = fields.next().unwrap_or("");
            let read_only = perms.as_bytes().get(1) == Some(&b'-');
            let file = inode != "0" && path.starts_with('/');
            current = Some((
                Clean {
                    start,
                    len: end.saturating_sub(start),
                },
                read_only && file,
            ));
        } else if first == "Anonymous:"
            && let Some((_, eligible)) = current.as_mut()
        {
            *eligible &= fields.next() == Some("0");
        }
    }
    finish(current.take(), &mut out);
    out
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;
    /// `M_ARENA_MAX` of glibc's `<malloc.h>`.
    pub const M_ARENA_MAX: c_int = -8;
    unsafe extern "C" {
        pub fn mallopt(param: c_int, value: c_int) -> c_int;
        pub fn malloc_trim(pad: usize) -> c_int;
    }
}

/// Makes every thread allocate from one malloc arena. Called first thing, before any thread
/// is started. Where the C library is not glibc, its allocator is left as it is.
pub fn one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; M_ARENA_MAX takes any positive count.
    unsafe {
        glibc::mallopt(glibc::M_ARENA_MAX, 1);
    }
}

/// Hands the heap's free pages back to the kernel.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases memory the allocator holds free; no allocation moves.
    unsafe {
        glibc::malloc_trim(0);
    }
}

/// Hands back the pages of clean file mappings, and the heap's free pages; returns how many
/// bytes of mappings were trimmed.
pub fn trim() -> std::io::Result<usize> {
    trim_heap();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut trimmed = 0;
    for m in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is not writable and holds
        // no anonymous page: its contents are the file's bytes, which the kernel maps again,
        // unchanged, at the next access. Nothing in it is lost or changed.
        let done = unsafe {
            rustix::mm::madvise(
                m.start as *mut std::ffi::c_void,
                m.len,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
        if done.is_ok() {
            trimmed += m.len;
        }
    }
    Ok(trimmed)
}

/// Trims `FIRST_TRIM` after it is called, then every `TRIM_EVERY` until `cancel` fires.
pub async fn run(cancel: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_TRIM, TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = every.tick() => {
                if let Err(e) = trim() {
                    tracing::debug!(error = %e, "cannot read this process's mappings; code pages not trimmed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 1234 /usr/bin/openai-watch
Size:               1024 kB
Anonymous:             0 kB
55d0c0100000-55d0c0900000 r-xp 00100000 08:01 1234 /usr/bin/openai-watch
Size:               8192 kB
Anonymous:             0 kB
55d0c0900000-55d0c0940000 r--p 00900000 08:01 1234 /usr/bin/openai-watch
Size:                256 kB
Anonymous:           256 kB
55d0c0940000-55d0c0950000 rw-p 00940000 08:01 1234 /usr/bin/openai-watch
Size:                 64 kB
Anonymous:             4 kB
7f0000000000-7f0000100000 rw-s 00000000 08:01 99 /var/lib/openai-watch/watch.db-shm
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:           512 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_unchanged_read_only_file_mappings_are_trimmed() {
        assert_eq!(
            clean_file_mappings(SMAPS),
            vec![
                Clean {
                    start: 0x55d0c0000000,
                    len: 1024 * 1024
                },
                Clean {
                    start: 0x55d0c0100000,
                    len: 8192 * 1024
                },
            ],
            "not the relocated read-only data, the writable data, the shared database index, the heap or the vDSO"
        );
    }

    #[test]
    fn trimming_this_process_loses_nothing() {
        static TABLE: [u64; 4096] = {
            let mut t = [0u64; 4096];
            let mut i = 0;
            while i < t.len() {
                t[i] = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                i += 1;
            }
            t
        };
        let before: u64 = TABLE.iter().fold(0, |a, v| a ^ v);
        assert!(
            trim().unwrap() > 0,
            "the test binary has clean file mappings"
        );
        assert_eq!(TABLE.iter().fold(0, |a, v| a ^ v), before);
    }
}
