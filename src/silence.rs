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
        if self.comment.trim().is_empty() {
            return Err(format!(
                "a comment of 1 to {MAX_COMMENT_CHARS} characters is required"
            ));
        }
        check_comment(&self.comment)?;
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

/// The longest comment of a silence or an acknowledgement, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// A comment of a silence or an acknowledgement: at most `MAX_COMMENT_CHARS` characters
/// (not bytes), one line of text without control characters (which would reach terminals
/// and mails raw).
pub fn check_comment(comment: &str) -> Result<(), String> {
    let chars = comment.trim().chars().count();
    if chars > MAX_COMMENT_CHARS {
        return Err(format!(
            "the comment has {chars} characters; at most {MAX_COMMENT_CHARS} are allowed"
        ));
    }
    if comment.trim().chars().any(char::is_control) {
        return Err(
            "the comment holds control characters (a line break, an escape): give one line of text"
                .into(),
        );
    }
    Ok(())
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
    /// Every week from `weekday` at local time `start_min` (minutes of the day, in `tz`) to
    /// local time `end_min`, the next day when it is not after the start. Both ends are local
    /// times, so a window keeps its wall-clock hours across daylight-saving changes.
    Weekly {
        weekday: Weekday,
        start_min: i32,
        end_min: i32,
        tz: TimeZone,
        tz_name: String,
    },
}

impl Schedule {
    /// Parses `sun 02:00-04:00` strictly: a day (`sun` or `sunday`, any case), one or more
    /// spaces, `HH:MM-HH:MM` with two-digit minutes. A window past midnight ends the next day.
    pub fn weekly(text: &str, tz: TimeZone, tz_name: String) -> Result<Schedule, String> {
        let bad =
            || format!("expected \"DAY HH:MM-HH:MM\" such as \"sun 02:00-04:00\", got {text:?}");
        let (day, times) = text.trim().split_once(' ').ok_or_else(bad)?;
        let weekday = parse_weekday(day).ok_or_else(bad)?;
        let (from, to) = times.trim().split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (
            parse_minute(from).ok_or_else(bad)?,
            parse_minute(to).ok_or_else(bad)?,
        );
        if start_min == end_min {
            return Err(format!("{text:?}: the window is empty"));
        }
        Ok(Schedule::Weekly {
            weekday,
            start_min,
            end_min,
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
                start_min,
                end_min,
                tz,
                ..
            } => {
                let today = jiff::Timestamp::from_millisecond(now_ms)
                    .ok()?
                    .to_zoned(tz.clone())
                    .date();
                // The latest start a week or less ago may still hold; else the next start.
                (-8..=8).find_map(|days: i64| {
                    let date = today.checked_add(jiff::Span::new().days(days)).ok()?;
                    if date.weekday() != *weekday {
                        return None;
                    }
                    let end_date = if end_min > start_min {
                        date
                    } else {
                        date.tomorrow().ok()?
                    };
                    let start = local_instant(tz, date, *start_min)?;
                    let end = local_instant(tz, end_date, *end_min)?;
                    (now_ms < end && start < end).then_some((start, end))
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
                start_min,
                end_min,
                tz_name,
                ..
            } => {
                format!(
                    "every {weekday:?} {:02}:{:02}-{:02}:{:02} {tz_name}",
                    start_min / 60,
                    start_min % 60,
                    end_min / 60,
                    end_min % 60
                )
            }
        }
    }
}

/// `sun` or `sunday`, in any case.
fn parse_weekday(day: &str) -> Option<Weekday> {
    const DAYS: [(&str, Weekday); 7] = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    let day = day.to_ascii_lowercase();
    DAYS.iter()
        .find(|(name, _)| day == *name || day == name[..3])
        .map(|(_, d)| *d)
}

/// `HH:MM` (or `H:MM`), digits only, as minutes of the day.
fn parse_minute(text: &str) -> Option<i32> {
    let (h, m) = text.trim().split_once(':')?;
    let digits = |t: &str, lens: std::ops::RangeInclusive<usize>| {
        (lens.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i32>().ok())
            .flatten()
    };
    let (h, m) = (digits(h, 1..=2)?, digits(m, 2..=2)?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// The instant of local time `minute` on `date` in `tz`, in Unix ms. A time the clocks skip
/// (the spring gap) is the moment they jump; a time that occurs twice (the autumn fold)
/// counts from its first occurrence.
fn local_instant(tz: &TimeZone, date: jiff::civil::Date, minute: i32) -> Option<i64> {
    use jiff::tz::AmbiguousOffset;
    let dt = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
    let ts = match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok()?,
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok()?,
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, the time lies before the jump; the jump is the
            // zone's next transition.
            let early = after.to_timestamp(dt).ok()?;
            tz.following(early).next()?.timestamp()
        }
    };
    Some(ts.as_millisecond())
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
    fn weekly_windows_keep_their_local_hours_across_daylight_saving_changes() {
        let zone = |name: &str| TimeZone::get(name).unwrap();
        let berlin =
            Schedule::weekly("sun 02:00-04:00", zone("Europe/Berlin"), "x".into()).unwrap();
        // Autumn, 2027-10-31: 02:00 occurs twice (CEST, then CET); the window starts at the
        // first and ends at 04:00 CET.
        assert_eq!(
            berlin.current_or_next(ms("2027-10-30T12:00:00Z")),
            Some((ms("2027-10-31T00:00:00Z"), ms("2027-10-31T03:00:00Z")))
        );
        // Spring, 2027-03-28: 02:00 is skipped; the window begins when the clocks jump (03:00
        // CEST) and ends at 04:00 CEST.
        assert_eq!(
            berlin.current_or_next(ms("2027-03-27T12:00:00Z")),
            Some((ms("2027-03-28T01:00:00Z"), ms("2027-03-28T02:00:00Z")))
        );
        // New York, 2027-03-14: 01:30 EST to 02:30, which is skipped: it ends at the jump.
        let ny = Schedule::weekly("sun 01:30-02:30", zone("America/New_York"), "x".into()).unwrap();
        assert_eq!(
            ny.current_or_next(ms("2027-03-13T12:00:00Z")),
            Some((ms("2027-03-14T06:30:00Z"), ms("2027-03-14T07:00:00Z")))
        );
        // A window inside the gap is empty that day, and the next one is a week later.
        let gap = Schedule::weekly("sun 02:10-02:50", zone("Europe/Berlin"), "x".into()).unwrap();
        assert_eq!(
            gap.current_or_next(ms("2027-03-27T12:00:00Z")).unwrap().0,
            ms("2027-04-04T00:10:00Z")
        );
    }

    #[test]
    fn bad_weekly_schedules_are_refused() {
        for bad in [
            "sunXYZ 01:00-02:00",
            "sun +1:00-02:00",
            "sun 01:0-02:00",
            "sun 001:00-02:00",
            "sun 01:00-02:00x",
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
