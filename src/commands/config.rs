//! `config check`: the config is valid, and this is what it defines.

use super::Exit;
use crate::config::Config;
use crate::domain::Category;
use crate::timefmt::rfc3339;
use std::io::Write;

/// Prints the targets, probes and channels of a valid config, and its warnings.
pub fn describe(config: &Config, now: i64, out: &mut impl Write) -> anyhow::Result<Exit> {
    writeln!(out, "config {} is valid", config.source.display())?;
    writeln!(out, "location: {}", config.location)?;
    writeln!(out, "database: {}", config.database.describe())?;
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
        routing_table(config, out)?;
    }
    maintenance(config, now, out)?;
    for w in config.warnings() {
        writeln!(out, "warning: {w}")?;
    }
    Ok(Exit::Success)
}

/// Which channel gets what: each channel's categories, then the routes in order.
fn routing_table(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let alerts = &config.alerts;
    let names = |c: &[Category]| c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    let channels = alerts
        .email
        .iter()
        .map(|e| ("email", &e.name, &e.categories))
        .chain(
            alerts
                .webhook
                .iter()
                .map(|w| ("webhook", &w.name, &w.categories)),
        );
    for (kind, name, categories) in channels {
        writeln!(
            out,
            "  {kind} {name}: told about {}",
            names(categories.as_ref().unwrap_or(&alerts.categories))
        )?;
    }
    if alerts.routes.is_empty() {
        writeln!(
            out,
            "routing: every event goes to every channel told about its category"
        )?;
        return Ok(());
    }
    writeln!(out, "routing (first match wins; continue goes on):")?;
    for (i, r) in alerts.routes.iter().enumerate() {
        writeln!(
            out,
            "  {}. {} -> {}{}",
            i + 1,
            r.describe(),
            r.channels.join(", "),
            if r.continue_ { " (continue)" } else { "" }
        )?;
    }
    writeln!(out, "  otherwise: nobody")?;
    Ok(())
}

/// The maintenance windows and when each holds next.
fn maintenance(config: &Config, now: i64, out: &mut impl Write) -> anyhow::Result<()> {
    for m in &config.maintenance {
        let next = match m.schedule.current_or_next(now) {
            Some((start, end)) if start <= now => {
                format!("holding from {} until {}", rfc3339(start), rfc3339(end))
            }
            Some((start, end)) => format!("next from {} until {}", rfc3339(start), rfc3339(end)),
            None => "over".to_string(),
        };
        let targets = if m.targets.is_empty() {
            "every target".to_string()
        } else {
            m.targets.join(", ")
        };
        writeln!(
            out,
            "maintenance {}: {}, {targets}; {next}",
            m.name,
            m.schedule.describe()
        )?;
    }
    Ok(())
}
