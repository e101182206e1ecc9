//! `[[maintenance]]`: windows in which alerts are suppressed, one-off (`start`/`end`, RFC
//! 3339) or weekly (`weekly = "sun 02:00-04:00"`, UTC unless `tz` names a zone).

use super::error::{ConfigError, Source};
use super::raw::RawMaintenance;
use crate::silence::{Maintenance, Schedule};
use std::collections::HashSet;

/// Checks and resolves every window; errors point at the key at fault.
pub(super) fn resolve(
    src: &Source,
    windows: &[RawMaintenance],
    targets: &[&str],
) -> Result<Vec<Maintenance>, ConfigError> {
    let mut names = HashSet::new();
    windows
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = |k: &str| format!("maintenance[{i}].{k}");
            let name = m.name.get_ref().trim();
            if name.is_empty() || name.len() > 100 || !names.insert(name.to_string()) {
                return Err(src.err_at(
                    m.name.span(),
                    key("name"),
                    format!("give each window a unique name of 1 to 100 characters, not {name:?}"),
                ));
            }
            if let Some(t) = &m.targets {
                super::alerts::check_target_names(src, &key("targets"), t, targets)?;
            }
            let schedule = schedule(src, m, &key)?;
            Ok(Maintenance {
                name: name.to_string(),
                targets: m
                    .targets
                    .as_ref()
                    .map(|t| t.get_ref().clone())
                    .unwrap_or_default(),
                categories: m.categories.clone(),
                schedule,
                comment: m.comment.clone(),
            })
        })
        .collect()
}

fn schedule(
    src: &Source,
    m: &RawMaintenance,
    key: &dyn Fn(&str) -> String,
) -> Result<Schedule, ConfigError> {
    match (&m.start, &m.end, &m.weekly) {
        (Some(start), Some(end), None) => {
            if let Some(tz) = &m.tz {
                return Err(src.err_at(
                    tz.span(),
                    key("tz"),
                    "tz applies to weekly windows; start and end carry their own offset",
                ));
            }
            let at = |s: &toml::Spanned<String>, k: &str| {
                s.get_ref()
                    .parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        src.err_at(
                            s.span(),
                            key(k),
                            format!("expected an RFC 3339 time such as 2026-12-01T02:00:00Z: {e}"),
                        )
                    })
            };
            let (start_ms, end_ms) = (at(start, "start")?, at(end, "end")?);
            if end_ms <= start_ms {
                return Err(src.err_at(
                    end.span(),
                    key("end"),
                    "the window must end after it starts",
                ));
            }
            Ok(Schedule::Once { start_ms, end_ms })
        }
        (None, None, Some(weekly)) => {
            let (tz, tz_name) = match &m.tz {
                None => (jiff::tz::TimeZone::UTC, "UTC".to_string()),
                Some(name) => match jiff::tz::TimeZone::get(name.get_ref()) {
                    Ok(tz) => (tz, name.get_ref().clone()),
                    Err(_) => {
                        return Err(src.err_at(
                            name.span(),
                            key("tz"),
                            format!("unknown time zone {:?}: use an IANA name such as \"Europe/Berlin\"", name.get_ref()),
                        ));
                    }
                },
            };
            Schedule::weekly(weekly.get_ref(), tz, tz_name)
                .map_err(|e| src.err_at(weekly.span(), key("weekly"), e))
        }
        _ => Err(src.err_at(
            m.name.span(),
            key("name"),
            "give either start and end (RFC 3339) or weekly = \"DAY HH:MM-HH:MM\"",
        )),
    }
}
