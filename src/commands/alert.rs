//! `alert test`: a test notification through each channel, or the one named.

use super::Exit;
use crate::config::Config;
use std::io::Write;

/// Prints one line per channel; `Success` when every one accepted.
pub async fn test(
    config: &Config,
    only: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<Exit> {
    let names = config.alerts.channel_names();
    if names.is_empty() {
        anyhow::bail!("no alert channel is configured: add [alerts.email] or [[alerts.webhook]]");
    }
    if let Some(name) = only.filter(|n| !names.iter().any(|c| c == n)) {
        anyhow::bail!(
            "no channel named {name:?}; configured: {}",
            names.join(", ")
        );
    }
    let mut exit = Exit::Success;
    for outcome in crate::notify::test(config, only).await? {
        match outcome.result {
            Ok(()) => writeln!(out, "{}: sent", outcome.channel)?,
            Err(e) => {
                writeln!(out, "{}: FAILED: {}", outcome.channel, e.message)?;
                exit = Exit::Failure;
            }
        }
    }
    Ok(exit)
}
