//! The `demo` command: the simulator, the daemon and the dashboard in one process on a
//! temporary database, with a scripted scenario that walks three targets through every
//! category — healthy, rate limit, quota, key, region, overload, outage — in a few minutes.

use super::Exit;
use crate::config::Config;
use crate::simulate::{SimState, Simulator};
use secrecy::SecretString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long each step of the script lasts.
pub const STEP: Duration = Duration::from_secs(15);

/// The script: every failure is followed by a healthy step, so that incidents open and resolve.
pub const SCRIPT: [&str; 12] = [
    "ok",
    "rate_limit_exceeded",
    "ok",
    "insufficient_quota",
    "ok",
    "invalid_api_key",
    "ok",
    "unsupported_region",
    "ok",
    "engine_overloaded",
    "ok",
    "server_error",
];

/// (target, where in the script it starts): staggered so that within a minute the page shows
/// most categories at once.
pub const TARGETS: [(&str, usize); 3] = [("prod", 3), ("staging", 7), ("eu-west", 11)];

/// The target that walks through the leading signals: healthy, close to its rate limit,
/// healthy, slow while the (simulated) status page reports an incident.
pub const SIGNALS_TARGET: &str = "batch";

/// What the leading-signals target does at `step`: (share of the rate limit left, answer
/// delay, the status page's incident).
pub fn signals_at(step: usize) -> (f64, Duration, Option<&'static str>) {
    match step % 4 {
        1 => (0.04, Duration::ZERO, None),
        3 => (
            0.8,
            Duration::from_millis(1500),
            Some("Elevated latency on Chat Completions"),
        ),
        _ => (0.8, Duration::ZERO, None),
    }
}

/// The scenario of `target_offset`'s target at step `step`.
pub fn scenario_at(target_offset: usize, step: usize) -> &'static str {
    SCRIPT[(target_offset + step) % SCRIPT.len()]
}

/// A config for the demo: three targets on the simulator, probed every 2 s, alerts to the
/// simulator's webhook receiver; `user_alerts` (an explicitly given config's `[alerts]`) adds
/// its channels, so that a configured SMTP server gets the emails too.
pub fn demo_config(
    sim: SocketAddr,
    db: &std::path::Path,
    listen: SocketAddr,
    user: Option<&Config>,
) -> anyhow::Result<Config> {
    let mut text = format!(
        "[agent]\nlocation = \"demo\"\n\n[storage]\npath = {db:?}\n\n[dashboard]\nlisten = \"{listen}\"\n\n\
         [detection]\nfailure_threshold = 3\nsuccess_threshold = 2\n\n\
         [alerts]\ngroup_wait = \"2s\"\ncategories = [\"auth\", \"quota\", \"region\", \"outage\", \"overload\", \"rate_limit\", \"headroom\", \"slow\"]\n\n\
         [[alerts.webhook]]\nname = \"demo-webhook\"\nurl = \"http://{sim}/_sim/webhook\"\n\n\
         [upstream_status]\nurl = \"http://{sim}/_sim/status/summary.json\"\ninterval = \"10s\"\n\n\
         [[targets]]\nname = \"{SIGNALS_TARGET}\"\nbase_url = \"http://{sim}/t/{SIGNALS_TARGET}/v1\"\ntimeout = \"5s\"\n\
         [[targets.probes]]\nkind = \"chat_stream\"\ninterval = \"2s\"\nslow_after = \"1s\"\n\n",
        db = db.display().to_string()
    );
    for (name, _) in TARGETS {
        text.push_str(&format!(
            "[[targets]]\nname = \"{name}\"\nbase_url = \"http://{sim}/t/{name}/v1\"\ntimeout = \"5s\"\n\
             [[targets.probes]]\nkind = \"models\"\ninterval = \"2s\"\n\
             [[targets.probes]]\nkind = \"chat\"\ninterval = \"2s\"\n\n"
        ));
    }
    let mut config =
        Config::parse(&text, std::path::Path::new("(demo)")).map_err(|e| anyhow::anyhow!("{e}"))?;
    for t in &mut config.targets {
        t.api_key = Some(SecretString::from(format!(
            "sk-demo-{}-0000000000",
            t.name()
        )));
    }
    if let Some(user) = user {
        config.alerts.email = user.alerts.email.clone();
        config
            .alerts
            .webhook
            .extend(user.alerts.webhook.iter().cloned());
    }
    Ok(config)
}

/// Runs the demo until `shutdown`; prints the dashboard URL when it is ready.
pub async fn run(
    listen: SocketAddr,
    user: Option<Config>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Exit> {
    let dir = std::env::temp_dir().join(format!("openai-watch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, listen, user, shutdown).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| Exit::Success)
}

async fn run_in(
    dir: &std::path::Path,
    listen: SocketAddr,
    user: Option<Config>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = SimState::new("ok").map_err(anyhow::Error::msg)?;
    let sim = Simulator::start(TcpListener::bind("127.0.0.1:0").await?, state.clone())?;
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot listen on {listen} ({e}); using a free port instead");
            TcpListener::bind(SocketAddr::new(listen.ip(), 0)).await?
        }
    };
    let url = format!("http://{}", listener.local_addr()?);
    let db: PathBuf = dir.join("demo.db");
    let mut config = demo_config(sim.addr, &db, listener.local_addr()?, user.as_ref())?;
    config.dashboard.public_url = reqwest::Url::parse(&url).ok();

    let script = tokio::spawn(async move {
        let mut step = 0;
        loop {
            for (name, offset) in TARGETS {
                let _ = state.set_tag(name, scenario_at(offset, step));
            }
            let (left, delay, incident) = signals_at(step);
            state.set_tag_remaining(SIGNALS_TARGET, left);
            state.set_tag_delay(SIGNALS_TARGET, delay);
            state.set_status_page(match incident {
                Some(name) => crate::simulate::StatusPage::Incident(name.into()),
                None => crate::simulate::StatusPage::Clear,
            });
            tokio::time::sleep(STEP).await;
            step += 1;
        }
    });
    println!("openai-watch demo: dashboard at {url}/");
    println!(
        "  three targets on a simulated API walk through rate limit, quota, key, region, overload and outage,"
    );
    println!(
        "  a fourth through rate-limit headroom and slowness while the simulated status page reports an incident;"
    );
    println!(
        "  alerts go to the simulator's webhook{}. Ctrl-C stops it.",
        if user.as_ref().is_some_and(|u| !u.alerts.email.is_empty()) {
            " and to your email"
        } else {
            ""
        }
    );
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let result = crate::daemon::run(config, Some(listener), shutdown, reload_rx).await;
    script.abort();
    drop(sim);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_three_steps_the_targets_show_six_failure_categories() {
        let mut seen = std::collections::HashSet::new();
        for step in 0..3 {
            for (_, offset) in TARGETS {
                seen.insert(
                    crate::catalog::entry(scenario_at(offset, step))
                        .map_or("ok", |e| e.category.as_str()),
                );
            }
        }
        for cat in [
            "quota",
            "region",
            "outage",
            "auth",
            "overload",
            "rate_limit",
        ] {
            assert!(seen.contains(cat), "{cat} missing: {seen:?}");
        }
    }
}
