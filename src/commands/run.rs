//! `run`: the daemon, until SIGINT or SIGTERM; SIGHUP reloads the config.

use super::Exit;
use crate::config::Config;
use crate::store::{LockError, StoreError};
use std::future::Future;

/// Runs the daemon; `TempFail` when another daemon already writes the same database, or
/// another process's migration of it did not end in time (both pass on their own).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Exit> {
    match crate::daemon::run(config, None, shutdown, crate::signals::reload()).await {
        Ok(()) => Ok(Exit::Success),
        Err(e) if passes_on_its_own(&e) => {
            super::print_error(format_args!("{}", crate::error_chain::anyhow_chain(&e)));
            Ok(Exit::TempFail)
        }
        Err(e) => Err(e),
    }
}

fn passes_on_its_own(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<LockError>(),
        Some(LockError::Held { .. } | LockError::LocationTaken { .. })
    ) || matches!(
        e.downcast_ref::<StoreError>(),
        Some(StoreError::MigrationStuck { .. })
    )
}
