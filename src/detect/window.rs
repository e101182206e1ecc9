//! The detector's window of recent probes of one target, packed small: at one probe a second
//! it is the largest part of the detector's memory.

use crate::catalog::Category;
use std::collections::VecDeque;

/// The probes of a target within `[detection] window`, oldest first: each one's time and
/// category in 8 bytes (a target probed every second holds 600 of them in a 10-minute window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window(VecDeque<i64>);

impl Window {
    /// The low bits hold the category's place in `Category::ALL`, the rest the time.
    const CATEGORY_BITS: u32 = 8;

    fn pack(at_ms: i64, category: Category) -> i64 {
        let index = Category::ALL
            .iter()
            .position(|c| *c == category)
            .unwrap_or(0);
        (at_ms << Self::CATEGORY_BITS) | index as i64
    }

    fn unpack(packed: i64) -> (i64, Category) {
        let index = (packed & ((1 << Self::CATEGORY_BITS) - 1)) as usize;
        (
            packed >> Self::CATEGORY_BITS,
            Category::ALL.get(index).copied().unwrap_or(Category::Ok),
        )
    }

    /// Adds the latest probe.
    pub fn push(&mut self, at_ms: i64, category: Category) {
        self.0.push_back(Self::pack(at_ms, category));
    }

    /// Forgets the probes made at or before `cutoff_ms`.
    pub(super) fn expire(&mut self, cutoff_ms: i64) {
        while self
            .0
            .front()
            .is_some_and(|p| Self::unpack(*p).0 <= cutoff_ms)
        {
            self.0.pop_front();
        }
    }

    /// Forgets the probes of one category.
    pub(super) fn forget(&mut self, category: Category) {
        self.0.retain(|p| Self::unpack(*p).1 != category);
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, Category)> + '_ {
        self.0.iter().map(|p| Self::unpack(*p))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The time of the latest probe.
    pub fn last_at(&self) -> Option<i64> {
        self.0.back().map(|p| Self::unpack(*p).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    #[test]
    fn the_window_gives_back_every_time_and_category_it_was_given() {
        let mut w = Window::default();
        let times = [0, 1, 1_700_000_000_123, 4_102_444_800_000, -5];
        let given: Vec<(i64, Category)> = times
            .iter()
            .flat_map(|t| Category::ALL.iter().map(move |c| (*t, *c)))
            .collect();
        for (t, c) in &given {
            w.push(*t, *c);
        }
        assert_eq!(w.iter().collect::<Vec<_>>(), given);
        assert_eq!(w.last_at(), Some(-5));
        w.forget(Outage);
        assert!(w.iter().all(|(_, c)| c != Outage));
        assert_eq!(w.len(), given.len() - times.len());
    }
}
