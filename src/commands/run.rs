//! `run`: the daemon, until SIGINT or SIGTERM; SIGHUP reloads the config.

use super::Exit;
use crate::config::Config;
use crate::store::LockError;
use std::future::Future;

/// Runs the daemon; `TempFail` when another daemon already writes the same database.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Exit> {
    match crate::daemon::run(config, None, shutdown, crate::signals::reload()).await {
        Ok(()) => Ok(Exit::Success),
        Err(e)
            if e.downcast_ref::<LockError>()
                .is_some_and(|l| matches!(l, LockError::Held { .. })) =>
        {
            eprintln!("error: {e}");
            Ok(Exit::TempFail)
        }
        Err(e) => Err(e),
    }
}
