//! Silences and maintenance windows (SPEC §15): what keeps an alert from being sent while
//! its incident is still opened, shown and recorded. Both match an incident by target,
//! category, error id and location, exactly or with `*` / `?` globs.

use crate::domain::Category;
use crate::store::IncidentRow;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// `*` matches anything, `?` one character; anything else matches itself.
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || wildmatch::WildMatch::new(pattern).matches(value)
}

/// A silence as stored.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, PartialEq, Eq)]
pub struct Silence {
    pub id: i64,
    pub target: String,
    pub category: String,
    pub error_id: String,
    pub location: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expired_at_ms: Option<i64>,
}

/// A silence as asked for by `silence add` or `POST /api/v1/silences`: matchers default to
/// `*`, the start to now; an end or a duration is required.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    pub target: Option<String>,
    pub category: Option<String>,
    pub error_id: Option<String>,
    pub location: Option<String>,
    /// RFC 3339; default now.
    pub starts_at: Option<String>,
    /// RFC 3339.
    pub ends_at: Option<String>,
    /// From the start, e.g. `2h`, instead of `ends_at`.
    pub duration: Option<String>,
    pub comment: String,
}

/// The longest silence: a year. Longer is a config change, not a silence.
const MAX_SILENCE_MS: i64 = 366 * 24 * 3600 * 1000;

impl SilenceRequest {
    pub fn into_new(self, now_ms: i64) -> Result<NewSilence, String> {
        let time = |s: &str, what: &str| {
            s.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| {
                    format!("{what}: expected an RFC 3339 time such as 2026-12-01T02:00:00Z: {e}")
                })
        };
        let starts_at_ms = match &self.starts_at {
            Some(s) => time(s, "starts_at")?,
            None => now_ms,
        };
        let ends_at_ms = match (&self.ends_at, &self.duration) {
            (Some(e), None) => time(e, "ends_at")?,
            (None, Some(d)) => {
                let d = humantime::parse_duration(d.trim())
                    .map_err(|e| format!("duration {d:?}: {e} (e.g. 30m, 2h, 1d)"))?;
                starts_at_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            _ => return Err("give either an end time or a duration".into()),
        };
        if ends_at_ms <= now_ms {
            return Err("the silence would already be over".into());
        }
        if ends_at_ms.saturating_sub(starts_at_ms) > MAX_SILENCE_MS {
            return Err("a silence lasts at most a year".into());
        }
        let or_any = |v: Option<String>| v.filter(|v| !v.is_empty()).unwrap_or_else(|| "*".into());
        let new = NewSilence {
            target: or_any(self.target),
            category: or_any(self.category),
            error_id: or_any(self.error_id),
            location: or_any(self.location),
            starts_at_ms,
            ends_at_ms,
            comment: self.comment.trim().to_string(),
        };
        new.validate()?;
        Ok(new)
    }
}

/// What a new silence matches and for how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewSilence {
    pub target: String,
    pub category: String,
    pub error_id: String,
    pub location: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub comment: String,
}

impl NewSilence {
    /// Checks the matchers and times: one clear sentence on what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("target", &self.target),
            ("category", &self.category),
            ("error_id", &self.error_id),
            ("location", &self.location),
        ] {
            if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
                return Err(format!("{key} must be 1 to 200 printable characters"));
            }
        }
        if !self.category.contains(['*', '?']) && Category::parse(&self.category).is_none() {
            return Err(format!(
                "unknown category {:?}: one of {}",
                self.category,
                Category::ALL_NAMES.join(", ")
            ));
        }
        if self.comment.trim().is_empty() || self.comment.len() > 1000 {
            return Err("a comment of 1 to 1000 characters is required".into());
        }
        if self.ends_at_ms <= self.starts_at_ms {
            return Err("the silence must end after it starts".into());
        }
        Ok(())
    }
}

impl Silence {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    pub fn matches(&self, incident: &IncidentRow) -> bool {
        glob_matches(&self.target, &incident.target)
            && glob_matches(&self.category, incident.category.as_str())
            && (glob_matches(&self.error_id, &incident.first_error_id)
                || glob_matches(&self.error_id, &incident.last_error_id))
            && glob_matches(&self.location, &incident.location)
    }
}

/// A maintenance window of the config.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    /// Globs; empty means every target.
    pub targets: Vec<String>,
    /// None: every category.
    pub categories: Option<Vec<Category>>,
    pub schedule: Schedule,
    pub comment: Option<String>,
}

/// When a maintenance window holds.
#[derive(Debug, Clone)]
pub enum Schedule {
    Once {
        start_ms: i64,
        end_ms: i64,
    },
    /// Every week from `weekday` at `minute` of the day (in `tz`) for `length_min` minutes.
    Weekly {
        weekday: Weekday,
        minute: i32,
        length_min: i32,
        tz: TimeZone,
        tz_name: String,
    },
}

impl Schedule {
    /// Parses `sun 02:00-04:00` (a window past midnight ends the next day).
    pub fn weekly(text: &str, tz: TimeZone, tz_name: String) -> Result<Schedule, String> {
        let bad =
            || format!("expected \"DAY HH:MM-HH:MM\" such as \"sun 02:00-04:00\", got {text:?}");
        let (day, times) = text.trim().split_once(' ').ok_or_else(bad)?;
        let weekday = match day.to_ascii_lowercase().get(..3) {
            Some("mon") => Weekday::Monday,
            Some("tue") => Weekday::Tuesday,
            Some("wed") => Weekday::Wednesday,
            Some("thu") => Weekday::Thursday,
            Some("fri") => Weekday::Friday,
            Some("sat") => Weekday::Saturday,
            Some("sun") => Weekday::Sunday,
            _ => return Err(bad()),
        };
        let (from, to) = times.trim().split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<i32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
        };
        let (start, end) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
        if start == end {
            return Err(format!("{text:?}: the window is empty"));
        }
        let length_min = if end > start {
            end - start
        } else {
            end + 1440 - start
        };
        Ok(Schedule::Weekly {
            weekday,
            minute: start,
            length_min,
            tz,
            tz_name,
        })
    }

    /// The window holding at `now_ms`, else the next one to come: (start, end) in ms.
    pub fn current_or_next(&self, now_ms: i64) -> Option<(i64, i64)> {
        match self {
            Schedule::Once { start_ms, end_ms } => {
                (now_ms < *end_ms).then_some((*start_ms, *end_ms))
            }
            Schedule::Weekly {
                weekday,
                minute,
                length_min,
                tz,
                ..
            } => {
                let now = jiff::Timestamp::from_millisecond(now_ms)
                    .ok()?
                    .to_zoned(tz.clone());
                let today = now.date();
                // The latest start a week or less ago may still hold; else the next start.
                (-7..=7).find_map(|days: i64| {
                    let date = today.checked_add(jiff::Span::new().days(days)).ok()?;
                    if date.weekday() != *weekday {
                        return None;
                    }
                    let start = date
                        .at((*minute / 60) as i8, (*minute % 60) as i8, 0, 0)
                        .to_zoned(tz.clone())
                        .ok()?
                        .timestamp()
                        .as_millisecond();
                    let end = start + i64::from(*length_min) * 60_000;
                    (now_ms < end).then_some((start, end))
                })
            }
        }
    }

    /// How the config said it, for pages and `config check`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Once { start_ms, end_ms } => format!(
                "{} to {}",
                crate::timefmt::rfc3339(*start_ms),
                crate::timefmt::rfc3339(*end_ms)
            ),
            Schedule::Weekly {
                weekday,
                minute,
                length_min,
                tz_name,
                ..
            } => {
                let end = (minute + length_min) % 1440;
                format!(
                    "every {weekday:?} {:02}:{:02}-{:02}:{:02} {tz_name}",
                    minute / 60,
                    minute % 60,
                    end / 60,
                    end % 60
                )
            }
        }
    }
}

impl Maintenance {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.schedule
            .current_or_next(now_ms)
            .is_some_and(|(start, end)| start <= now_ms && now_ms < end)
    }

    pub fn matches(&self, incident: &IncidentRow) -> bool {
        (self.targets.is_empty()
            || self
                .targets
                .iter()
                .any(|t| glob_matches(t, &incident.target)))
            && self
                .categories
                .as_ref()
                .is_none_or(|c| c.contains(&incident.category))
    }
}

/// Why an alert was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    Silence(i64),
    Maintenance(String),
}

/// The silences and maintenance windows holding at one moment.
#[derive(Debug, Default)]
pub struct Suppressor {
    pub silences: Vec<Silence>,
    pub maintenance: Vec<Maintenance>,
}

impl Suppressor {
    /// What keeps an alert about `incident` from going out at `now_ms`, if anything.
    pub fn reason(&self, incident: &IncidentRow, now_ms: i64) -> Option<Suppression> {
        if let Some(s) = self
            .silences
            .iter()
            .find(|s| s.is_active(now_ms) && s.matches(incident))
        {
            return Some(Suppression::Silence(s.id));
        }
        self.maintenance
            .iter()
            .find(|m| m.is_active(now_ms) && m.matches(incident))
            .map(|m| Suppression::Maintenance(m.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn globs_match_exactly_or_by_wildcard() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("prod-*", "prod-eu"));
        assert!(!glob_matches("prod-*", "batch"));
        assert!(glob_matches("prod", "prod"));
        assert!(!glob_matches("prod", "prod2"));
        assert!(glob_matches("fra-?", "fra-1"));
    }

    #[test]
    fn a_weekly_window_holds_in_its_time_zone_and_knows_the_next_one() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let s = Schedule::weekly("sun 02:00-04:00", berlin, "Europe/Berlin".into()).unwrap();
        // Sunday 2026-11-29 02:30 in Berlin is 01:30 UTC (CET, +01:00).
        let inside = ms("2026-11-29T01:30:00Z");
        assert_eq!(
            s.current_or_next(inside),
            Some((ms("2026-11-29T01:00:00Z"), ms("2026-11-29T03:00:00Z")))
        );
        // On Wednesday the next one is that Sunday.
        let before = ms("2026-11-25T12:00:00Z");
        assert_eq!(
            s.current_or_next(before).unwrap().0,
            ms("2026-11-29T01:00:00Z")
        );
        // Just after it ends, the next is a week later.
        assert_eq!(
            s.current_or_next(ms("2026-11-29T03:00:00Z")).unwrap().0,
            ms("2026-12-06T01:00:00Z")
        );
    }

    #[test]
    fn a_window_past_midnight_ends_the_next_day() {
        let s = Schedule::weekly("sat 23:00-01:00", TimeZone::UTC, "UTC".into()).unwrap();
        let (start, end) = s.current_or_next(ms("2026-11-29T00:30:00Z")).unwrap();
        assert_eq!(
            (start, end),
            (ms("2026-11-28T23:00:00Z"), ms("2026-11-29T01:00:00Z"))
        );
    }

    #[test]
    fn bad_weekly_schedules_are_refused() {
        for bad in [
            "sunday",
            "xyz 02:00-03:00",
            "sun 25:00-26:00",
            "sun 02:00-02:00",
            "sun 2-3",
        ] {
            assert!(
                Schedule::weekly(bad, TimeZone::UTC, "UTC".into()).is_err(),
                "{bad}"
            );
        }
    }
}
