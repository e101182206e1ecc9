//! What the pages show, computed from the store: status bars from hourly rollups, latency
//! series, incident views. Plain values; the templates only lay them out.

use crate::catalog;
use crate::domain::{Category, ProbeKind};
use crate::store::{HOUR_MS, IncidentRow, RollupRow};
use crate::timefmt::rfc3339;

const DAY_MS: i64 = 24 * HOUR_MS;

/// One segment of a status bar.
#[derive(Debug, Clone)]
pub struct Segment {
    pub x: usize,
    /// CSS class: `c-ok`, `c-outage`, …, or `c-none` when nothing was probed.
    pub class: &'static str,
    /// Hover text.
    pub title: String,
}

/// How bad a category is, for colouring a segment with several.
fn rank(category: Category) -> u8 {
    match category {
        Category::Outage => 8,
        Category::Auth => 7,
        Category::Region => 6,
        Category::Quota => 5,
        Category::Overload => 4,
        Category::RateLimit => 3,
        Category::ClientError => 2,
        Category::Unknown => 1,
        // Probes are never stored as headroom; a badge may show it.
        // Probes are never stored as monitor either: it concerns an agent, not a target.
        Category::Headroom | Category::Slow | Category::Monitor => 1,
        Category::Ok => 0,
    }
}

fn class(category: Category) -> &'static str {
    match category {
        Category::Ok => "c-ok",
        Category::Auth => "c-auth",
        Category::Region => "c-region",
        Category::Quota => "c-quota",
        Category::RateLimit => "c-rate_limit",
        Category::Overload => "c-overload",
        Category::Outage => "c-outage",
        Category::ClientError => "c-client_error",
        Category::Unknown => "c-unknown",
        Category::Headroom => "c-headroom",
        Category::Slow => "c-slow",
        Category::Monitor => "c-monitor",
    }
}

/// The time slots of a bar: `slots` of `slot_ms` each, ending with the one holding `now_ms`,
/// with their labels. Computed once per page and shared by every target's bar.
pub struct Frame {
    first_start: i64,
    slot_ms: i64,
    labels: Vec<String>,
}

impl Frame {
    pub fn new(now_ms: i64, slot_ms: i64, slots: usize) -> Frame {
        let last_start = now_ms - now_ms.rem_euclid(slot_ms);
        let first_start = last_start - slot_ms * (slots as i64 - 1);
        let labels = (0..slots as i64)
            .map(|i| {
                let t = rfc3339(first_start + i * slot_ms);
                if slot_ms >= DAY_MS {
                    t[..10].to_string()
                } else {
                    format!("{} UTC", t[..16].replace('T', " "))
                }
            })
            .collect();
        Frame {
            first_start,
            slot_ms,
            labels,
        }
    }

    /// The last 24 hours, one segment an hour.
    pub fn day(now_ms: i64) -> Frame {
        Frame::new(now_ms, HOUR_MS, 24)
    }

    /// The last 90 days, one segment a day.
    pub fn quarter(now_ms: i64) -> Frame {
        Frame::new(now_ms, DAY_MS, 90)
    }

    /// The segments of a bar over this frame, from rollups (hourly or daily).
    pub fn bar<'a>(&self, rollups: impl IntoIterator<Item = &'a RollupRow>) -> Vec<Segment> {
        let mut counts: Vec<Vec<(Category, i64)>> = vec![Vec::new(); self.labels.len()];
        for r in rollups
            .into_iter()
            .filter(|r| r.hour_ms >= self.first_start)
        {
            let i = ((r.hour_ms - self.first_start) / self.slot_ms) as usize;
            let category = r.category;
            if let Some(slot) = counts.get_mut(i) {
                match slot.iter_mut().find(|(c, _)| *c == category) {
                    Some((_, n)) => *n += r.count,
                    None => slot.push((category, r.count)),
                }
            }
        }
        counts
            .into_iter()
            .zip(&self.labels)
            .enumerate()
            .map(|(i, (mut cats, when))| {
                cats.sort_by(|a, b| rank(b.0).cmp(&rank(a.0)).then(b.1.cmp(&a.1)));
                let Some((worst, _)) = cats.first() else {
                    return Segment {
                        x: i,
                        class: "c-none",
                        title: format!("{when}: no probes"),
                    };
                };
                let mut title = format!("{when}: ");
                for (k, (c, n)) in cats.iter().enumerate() {
                    if k > 0 {
                        title.push_str(", ");
                    }
                    title.push_str(&format!("{n} {c}"));
                }
                Segment {
                    x: i,
                    class: class(*worst),
                    title,
                }
            })
            .collect()
    }
}

/// One hour's mean latency as a bar of the latency chart (a 240×40 box).
#[derive(Debug, Clone)]
pub struct LatencyBar {
    pub x: usize,
    pub y: String,
    pub height: String,
    /// Short hover text: `13:00 180 ms`.
    pub title: String,
}

/// Bars drawn as one SVG path with one hover text: a few hundred bytes per chart instead of
/// an element per bar.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub path: String,
    pub title: String,
}

impl Chart {
    pub fn new(bars: &[LatencyBar], heading: &str) -> Chart {
        let mut path = String::with_capacity(bars.len() * 24);
        for b in bars {
            path.push_str(&format!("M{} {}h8v{}h-8z", b.x, b.y, b.height));
        }
        let values: Vec<&str> = bars.iter().map(|b| b.title.as_str()).collect();
        Chart {
            path,
            title: format!("{heading} (UTC): {}", values.join(", ")),
        }
    }
}

/// A bar drawn as one path per colour: a few hundred bytes instead of an element (and a
/// hover text) per slot. Each colour's hover text says how many slots it covers.
#[derive(Debug, Clone)]
pub struct ColourPath {
    pub class: &'static str,
    pub d: String,
    pub title: String,
}

/// The paths of `segments` for slots `pitch` apart: each run of neighbouring slots of one
/// colour is one horizontal stroke (`M{x} 8h{len}`); the page's style draws it 16 high and
/// dashed `pitch - 1` on, 1 off, so that slots still show apart. `unit` names a slot in the
/// hover text ("hours", "days").
pub fn colour_paths(segments: &[Segment], pitch: usize, unit: &str) -> Vec<ColourPath> {
    let mut out: Vec<(ColourPath, usize)> = Vec::new();
    let mut previous: Option<(&'static str, usize)> = None;
    for s in segments {
        let i = match out.iter().position(|(p, _)| p.class == s.class) {
            Some(i) => i,
            None => {
                out.push((
                    ColourPath {
                        class: s.class,
                        d: String::new(),
                        title: String::new(),
                    },
                    0,
                ));
                out.len() - 1
            }
        };
        let (path, n) = &mut out[i];
        *n += 1;
        match previous {
            // The run goes on: lengthen its stroke (rewrite the number after the last `h`).
            Some((class, x)) if class == s.class && x + 1 == s.x => {
                let at = path.d.rfind('h').expect("a run has a stroke") + 1;
                let len: usize = path.d[at..].parse().unwrap_or(0);
                path.d.truncate(at);
                path.d.push_str(&(len + pitch).to_string());
            }
            _ => path.d.push_str(&format!("M{} 8h{pitch}", s.x * pitch)),
        }
        previous = Some((s.class, s.x));
    }
    let total = segments.len();
    out.into_iter()
        .map(|(mut p, n)| {
            let what = match p.class {
                "c-none" => "no probes",
                "c-ok" => "healthy",
                class => class.trim_start_matches("c-"),
            };
            p.title = format!("{what}: {n} of {total} {unit}");
            p
        })
        .collect()
}

/// The rate-limit headroom of one probe kind (one model) of a target: a gauge of the
/// largest share used in the latest hour, and 24 hourly bars.
#[derive(Debug, Clone)]
pub struct HeadroomView {
    pub model: String,
    /// e.g. "95%".
    pub used: String,
    /// Gauge width, 0 to 100.
    pub width: String,
    /// `warn` at or above `headroom_warn`, else `ok`.
    pub level: &'static str,
    pub bars: Chart,
}

/// Headroom of each probe kind of a target that reported rate limits in the last 24 hours,
/// from the hourly `used_max` of the rollups. `models` names the model of each probe kind.
pub fn headroom(
    rollups: &[RollupRow],
    now_ms: i64,
    models: &[(ProbeKind, String)],
    warn: f64,
) -> Vec<HeadroomView> {
    let last = now_ms - now_ms.rem_euclid(HOUR_MS);
    let first = last - 23 * HOUR_MS;
    let mut out = Vec::new();
    for (kind, model) in models {
        let mut hours = [None::<f64>; 24];
        for r in rollups
            .iter()
            .filter(|r| r.probe == Some(*kind) && r.hour_ms >= first)
        {
            if let (Some(used), Some(slot)) = (
                r.used_max,
                hours.get_mut(((r.hour_ms - first) / HOUR_MS) as usize),
            ) {
                *slot = Some(slot.map_or(used, |s: f64| s.max(used)));
            }
        }
        let Some(latest) = hours.iter().rev().flatten().next().copied() else {
            continue;
        };
        let bars: Vec<LatencyBar> = hours
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.map(|u| (i, u)))
            .map(|(i, used)| {
                let height = (40.0 * used).max(1.0);
                LatencyBar {
                    x: i * 10,
                    y: format!("{:.1}", 40.0 - height),
                    height: format!("{height:.1}"),
                    title: format!(
                        "{} {:.0}%",
                        &rfc3339(first + i as i64 * HOUR_MS)[11..16],
                        used * 100.0
                    ),
                }
            })
            .collect();
        out.push(HeadroomView {
            model: model.clone(),
            used: format!("{:.0}%", latest * 100.0),
            width: format!("{:.1}", latest * 100.0),
            level: if latest >= warn { "warn" } else { "ok" },
            bars: Chart::new(&bars, "highest share of a rate limit used per hour"),
        });
    }
    out
}

/// Mean latency per hour over the last 24 hours, and the highest mean (ms) for the label.
pub fn latency_bars(rollups: &[RollupRow], now_ms: i64) -> (Vec<LatencyBar>, i64) {
    let last = now_ms - now_ms.rem_euclid(HOUR_MS);
    let first = last - 23 * HOUR_MS;
    let mut sums = [(0i64, 0i64); 24];
    for r in rollups.iter().filter(|r| r.hour_ms >= first) {
        let i = ((r.hour_ms - first) / HOUR_MS) as usize;
        if let Some(s) = sums.get_mut(i) {
            s.0 += r.latency_sum_ms;
            s.1 += r.count;
        }
    }
    let max = sums
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| s / n)
        .max()
        .unwrap_or(0)
        .max(1);
    let bars = sums
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, (sum, n))| {
            let mean = sum / n;
            let height = (40.0 * mean as f64 / max as f64).max(1.0);
            LatencyBar {
                x: i * 10,
                y: format!("{:.1}", 40.0 - height),
                height: format!("{height:.1}"),
                title: format!("{} {mean} ms", &rfc3339(first + i as i64 * HOUR_MS)[11..16]),
            }
        })
        .collect();
    (bars, max)
}

/// An incident as the pages show it.
#[derive(Debug, Clone)]
pub struct IncidentCard {
    pub id: i64,
    pub target: String,
    pub category: Category,
    pub error_id: String,
    pub title: String,
    pub http_status: String,
    pub opened_at: String,
    pub last_seen_at: String,
    pub resolved_at: Option<String>,
    pub probe_count: i64,
    pub message: String,
    pub request_id: String,
    pub probe: ProbeKind,
    pub cause: String,
    pub resolution: String,
    /// "acknowledged by alice at …: comment".
    pub acknowledged: Option<String>,
    /// "alerts suppressed by silence #3" while a silence or maintenance window holds.
    pub suppressed: Option<String>,
}

impl IncidentCard {
    /// Says what keeps its alerts from going out now, if anything.
    pub fn with_suppression(mut self, reason: Option<crate::silence::Suppression>) -> Self {
        use crate::silence::Suppression;
        self.suppressed = reason.map(|r| match r {
            Suppression::Silence(id) => format!("alerts suppressed by silence #{id}"),
            Suppression::Maintenance(name) => {
                format!("alerts suppressed by maintenance window {name}")
            }
        });
        self
    }
}

/// A silence on the status page.
pub struct SilenceView {
    pub id: i64,
    pub matches: String,
    pub from: String,
    pub until: String,
    pub active: bool,
    pub by: String,
    pub comment: String,
}

impl SilenceView {
    pub fn new(s: &crate::silence::Silence, now_ms: i64) -> SilenceView {
        SilenceView {
            id: s.id,
            matches: format!(
                "target {} · category {} · error {} · location {}",
                s.target, s.category, s.error_id, s.location
            ),
            from: rfc3339(s.starts_at_ms),
            until: rfc3339(s.ends_at_ms),
            active: s.is_active(now_ms),
            by: s.created_by.clone(),
            comment: s.comment.clone(),
        }
    }
}

/// A maintenance window on the status page: holding now, or when it holds next.
pub struct MaintenanceView {
    pub name: String,
    pub schedule: String,
    pub targets: String,
    pub when: String,
    pub active: bool,
}

impl MaintenanceView {
    pub fn new(m: &crate::silence::Maintenance, now_ms: i64) -> Option<MaintenanceView> {
        let (start, end) = m.schedule.current_or_next(now_ms)?;
        let active = start <= now_ms;
        Some(MaintenanceView {
            name: m.name.clone(),
            schedule: m.schedule.describe(),
            targets: if m.targets.is_empty() {
                "every target".into()
            } else {
                m.targets.join(", ")
            },
            when: if active {
                format!("holding until {}", rfc3339(end))
            } else {
                format!("next from {} to {}", rfc3339(start), rfc3339(end))
            },
            active,
        })
    }
}

impl From<&IncidentRow> for IncidentCard {
    fn from(r: &IncidentRow) -> Self {
        let entry = catalog::entry(&r.last_error_id);
        IncidentCard {
            id: r.id,
            target: r.target.clone(),
            category: r.category,
            error_id: r.last_error_id.clone(),
            title: entry.map_or_else(|| r.last_error_id.clone(), |e| e.title.to_string()),
            http_status: match r.http_status {
                Some(s) => s.to_string(),
                // A leading signal is read from healthy answers, not from an error status.
                None if r.category.is_signal() => "200 (healthy answers)".to_string(),
                None => "no answer".to_string(),
            },
            opened_at: rfc3339(r.opened_at_ms),
            last_seen_at: rfc3339(r.last_seen_at_ms),
            resolved_at: r.resolved_at_ms.map(rfc3339),
            probe_count: r.probe_count,
            message: r.last_message.clone().unwrap_or_default(),
            request_id: r.request_id.clone().unwrap_or_default(),
            probe: r.probe,
            acknowledged: crate::notify::message::acknowledgement(r),
            suppressed: None,
            cause: entry.map_or("", |e| e.cause).to_string(),
            resolution: entry.map_or("", |e| e.resolution).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(hour_ms: i64, category: &str, count: i64) -> RollupRow {
        RollupRow {
            probe: Some(crate::domain::ProbeKind::Models),
            category: Category::parse(category).expect("a category"),
            hour_ms,
            count,
            latency_sum_ms: count * 100,
            latency_max_ms: 100,
            used_max: None,
        }
    }

    #[test]
    fn a_segment_takes_the_colour_of_its_worst_category() {
        let now = 100 * DAY_MS + 5 * HOUR_MS + 1;
        let hour = now - now.rem_euclid(HOUR_MS);
        let rows = [
            r(hour, "ok", 58),
            r(hour, "outage", 2),
            r(hour - HOUR_MS, "ok", 60),
        ];
        let bar = Frame::day(now).bar(&rows);
        assert_eq!(bar.len(), 24);
        assert_eq!(bar[23].class, "c-outage");
        assert!(
            bar[23].title.ends_with("2 outage, 58 ok"),
            "{}",
            bar[23].title
        );
        assert_eq!(bar[22].class, "c-ok");
        assert_eq!(bar[0].class, "c-none");
        let q = Frame::quarter(now).bar(&rows);
        assert_eq!(q.len(), 90);
        assert_eq!(q[89].class, "c-outage");
    }

    #[test]
    fn a_bar_is_one_path_per_colour() {
        let seg = |x, class: &'static str| Segment {
            x,
            class,
            title: format!("slot {x}: detail"),
        };
        let segments = [seg(0, "c-ok"), seg(1, "c-outage"), seg(2, "c-ok")];
        let paths = colour_paths(&segments, 10, "hours");
        assert_eq!(paths.len(), 2);
        let run = [
            seg(0, "c-ok"),
            seg(1, "c-ok"),
            seg(2, "c-ok"),
            seg(4, "c-ok"),
        ];
        assert_eq!(colour_paths(&run, 3, "days")[0].d, "M0 8h9M12 8h3");
        assert_eq!(paths[0].class, "c-ok");
        assert_eq!(paths[0].d, "M0 8h10M20 8h10");
        assert_eq!(paths[0].title, "healthy: 2 of 3 hours");
        assert_eq!(paths[1].title, "outage: 1 of 3 hours");
        let chart = Chart::new(
            &[LatencyBar {
                x: 0,
                y: "30.0".into(),
                height: "10.0".into(),
                title: "13:00 5 ms".into(),
            }],
            "latency",
        );
        assert_eq!(chart.path, "M0 30.0h8v10.0h-8z");
        assert_eq!(chart.title, "latency (UTC): 13:00 5 ms");
    }

    #[test]
    fn latency_bars_scale_to_the_box() {
        let now = 10 * DAY_MS;
        let hour = now - now.rem_euclid(HOUR_MS);
        let mut slow = r(hour - HOUR_MS, "ok", 1);
        slow.latency_sum_ms = 400;
        let (bars, max) = latency_bars(&[r(hour, "ok", 2), slow], now);
        assert_eq!(max, 400);
        assert_eq!(bars.len(), 2);
        assert_eq!(
            (bars[0].x, bars[0].height.as_str(), bars[0].y.as_str()),
            (220, "40.0", "0.0")
        );
        assert_eq!((bars[1].x, bars[1].height.as_str()), (230, "10.0"));
        assert!(bars[1].title.ends_with(" 100 ms"), "{}", bars[1].title);
    }
}
