//! `run`: the daemon, until SIGINT or SIGTERM; SIGHUP reloads the config.

use super::Exit;
use crate::config::Config;
use std::future::Future;

pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Exit> {
    crate::daemon::run(config, None, shutdown, crate::signals::reload()).await?;
    Ok(Exit::Success)
}
