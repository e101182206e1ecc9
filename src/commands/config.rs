//! `config check`: the config is valid, and this is what it defines.

use super::Exit;
use crate::config::Config;
use std::io::Write;

/// Prints the targets, probes and channels of a valid config, and its warnings.
pub fn describe(config: &Config, out: &mut impl Write) -> anyhow::Result<Exit> {
    writeln!(out, "config {} is valid", config.source.display())?;
    writeln!(out, "location: {}", config.location)?;
    writeln!(out, "database: {}", config.storage.path.display())?;
    writeln!(out, "targets: {}", config.targets.len())?;
    for t in &config.targets {
        let key = if t.api_key.is_some() {
            "key set"
        } else {
            "no key"
        };
        writeln!(
            out,
            "  {} {} ({key}, timeout {})",
            t.name,
            t.base_url,
            humantime::format_duration(t.timeout)
        )?;
        for p in &t.probes {
            let model = if p.kind.is_chat() {
                format!(" model {} ({} = 1)", p.model, p.max_tokens_field.as_str())
            } else if p.kind.takes_model() {
                format!(" model {}", p.model)
            } else {
                String::new()
            };
            writeln!(
                out,
                "    {} every {}{model}",
                p.kind,
                humantime::format_duration(p.interval)
            )?;
        }
    }
    let channels = config.alerts.channel_names();
    if channels.is_empty() {
        writeln!(
            out,
            "alert channels: none (incidents are recorded, nobody is notified)"
        )?;
    } else {
        writeln!(out, "alert channels: {}", channels.join(", "))?;
    }
    for w in config.warnings() {
        writeln!(out, "warning: {w}")?;
    }
    Ok(Exit::Success)
}
