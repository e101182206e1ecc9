//! A throwaway PostgreSQL cluster for the tests: `initdb` in a temporary directory (as the
//! unprivileged user `nobody` when the tests run as root, since PostgreSQL refuses root),
//! started on a free loopback port, one fresh database per workspace. A small supervisor
//! shell stops the cluster and removes its directory once the test process has ended, however
//! it ended.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    pub port: u16,
    bindir: PathBuf,
}

/// The supervisor: creates and starts the cluster, says `ready`, waits for the test process
/// to end, then stops the cluster and removes its directory.
const SUPERVISOR: &str = r#"
set -e
dir=$1 port=$2 parent=$3 bindir=$4
"$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
"$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
echo ready
while [ -d "/proc/$parent" ]; do sleep 1; done
"$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$dir"
"#;

/// Where PostgreSQL's server programs are: next to `initdb` on PATH, or Debian's
/// `/usr/lib/postgresql/VERSION/bin` (the newest).
fn bindir() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let real = std::fs::canonicalize(&initdb).map_err(|e| e.to_string())?;
                return Ok(real.parent().expect("a file has a parent").to_path_buf());
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed: no initdb on PATH and no /usr/lib/postgresql (apt-get install postgresql)".to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".to_string())
}

fn start() -> Result<Cluster, String> {
    let bindir = bindir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::Builder::new()
        .prefix("openai-watch-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let script = dir.join("supervise.sh");
    std::fs::write(&script, SUPERVISOR).map_err(|e| e.to_string())?;
    let as_root = unsafe { libc_geteuid() } == 0;
    let args = [
        script.display().to_string(),
        dir.display().to_string(),
        port.to_string(),
        std::process::id().to_string(),
        bindir.display().to_string(),
    ];
    let mut command = if as_root {
        let status = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("chown nobody {} failed", dir.display()));
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the PostgreSQL supervisor: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "ready" {
        let log = std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("the test PostgreSQL cluster did not start:\n{log}"));
    }
    // The supervisor outlives this handle on purpose: it ends with the test process.
    std::mem::forget(child);
    Ok(Cluster { port, bindir })
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

impl Cluster {
    /// One of PostgreSQL's client programs, pointed at this cluster as its superuser.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bindir.join(program));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        c
    }

    /// Every row of the database at `url` (from this cluster), as `pg_dump` writes it.
    pub fn dump(&self, url: &str) -> Vec<u8> {
        let name = url.rsplit('/').next().expect("a database name");
        let out = self
            .client("pg_dump")
            .args(["--data-only", "-d", name])
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("w{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let out = self
            .client("psql")
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("create database {name}"))
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "create database {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}
