//! The peer of SPEC §11, run in the same benchmark when it is installed: Vigil
//! (`cargo install vigil-server --locked`), a status-page monitor. It probes the same
//! simulator, with the same number of targets as HTTP replicas (a GET of `/v1/models`, the
//! request of our `models` probe), `poll_interval = 1` and `poll_retry = 0`, pinned to the
//! daemon's core; its figures are measured from outside the same way as ours, and its probes
//! are counted in the simulator's request log.

use super::{Proc, free_port, memory, pinned_program, wait};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// An installed Vigil and the page assets it renders with.
pub struct Peer {
    bin: PathBuf,
    assets: PathBuf,
}

/// Why no peer runs, when none does.
pub enum Missing {
    NotOnPath,
    NoAssets(PathBuf),
}

impl Peer {
    /// `vigil` on PATH, with its assets from `$VIGIL_ASSETS` or from the crate's source that
    /// `cargo install` left in the registry.
    pub fn find() -> Result<Peer, Missing> {
        let bin = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("vigil"))
                    .find(|p| p.is_file())
            })
            .ok_or(Missing::NotOnPath)?;
        let assets = std::env::var_os("VIGIL_ASSETS")
            .map(PathBuf::from)
            .or_else(registry_assets)
            .filter(|p| p.join("templates").is_dir())
            .ok_or_else(|| Missing::NoAssets(bin.clone()))?;
        Ok(Peer { bin, assets })
    }

    /// Starts Vigil on `n` targets of the simulator at `sim`; returns it, its page's URL and
    /// the path prefix of its requests in the simulator's log.
    pub fn start(&self, dir: &Path, sim: &str, n: usize) -> Running {
        let port = free_port();
        let prefix = "/t/peer";
        let mut nodes = String::new();
        for i in 0..n {
            nodes.push_str(&format!(
                "[[probe.service.node]]\nid = \"t{i}\"\nlabel = \"t{i}\"\nmode = \"poll\"\n\
                 http_method = \"GET\"\nreplicas = [\"http://{sim}{prefix}{i}/v1/models\"]\n\n"
            ));
        }
        let config = format!(
            "[server]\nlog_level = \"error\"\ninet = \"127.0.0.1:{port}\"\nworkers = 1\n\
             manager_token = \"bench\"\nreporter_token = \"bench\"\n\n\
             [assets]\npath = \"{}\"\n\n\
             [branding]\npage_title = \"bench\"\npage_url = \"http://127.0.0.1:{port}/\"\n\
             company_name = \"bench\"\nicon_color = \"#1972F5\"\n\
             icon_url = \"http://127.0.0.1:{port}/icon.png\"\nlogo_color = \"#1972F5\"\n\
             logo_url = \"http://127.0.0.1:{port}/logo.svg\"\n\
             website_url = \"http://127.0.0.1:{port}/\"\nsupport_url = \"mailto:bench@example.com\"\n\n\
             [metrics]\npoll_interval = 1\npoll_retry = 0\n\n\
             [probe]\n\n[[probe.service]]\nid = \"bench\"\nlabel = \"bench\"\n\n{nodes}",
            self.assets.display()
        );
        let path = dir.join("vigil.cfg");
        std::fs::write(&path, config).unwrap();
        let child = pinned_program("0", &self.bin)
            .args(["-c", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let up = wait(
            || std::net::TcpStream::connect(&addr).is_ok(),
            Duration::from_secs(30),
        );
        assert!(up, "vigil did not listen on {addr}");
        Running {
            proc: Proc(child),
            page: format!("http://{addr}/"),
            prefix: prefix.to_string(),
        }
    }
}

/// A running peer.
pub struct Running {
    pub proc: Proc,
    pub page: String,
    /// Its requests' paths start with this in the simulator's log.
    pub prefix: String,
}

impl Running {
    /// Resident memory, KiB.
    pub fn resident_kib(&self) -> u64 {
        memory(self.proc.pid()).0
    }
}

/// `~/.cargo/registry/src/*/vigil-server-*/res/assets`, the newest version found.
fn registry_assets() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| e.file_name().to_string_lossy().starts_with("vigil-server-"))
        .map(|e| e.path().join("res/assets"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// "ours (peer: theirs, ours/theirs = r×)", or ours alone.
pub fn beside(ours: f64, theirs: Option<f64>, show: impl Fn(f64) -> String) -> String {
    match theirs {
        Some(t) if t > 0.0 => format!("{} (vigil {}, {:.2}x)", show(ours), show(t), ours / t),
        Some(t) => format!("{} (vigil {})", show(ours), show(t)),
        None => show(ours),
    }
}
