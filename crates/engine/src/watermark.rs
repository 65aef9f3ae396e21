//! Event-time progress: the watermark.
//!
//! Each source partition (a Kafka partition, or a file in a replay) reports the largest
//! event time it has delivered. The watermark is the minimum of those over the
//! partitions that are not idle, minus the allowed lateness, and it never goes back.
//! A partition that has been assigned but has delivered nothing yet holds the watermark
//! (its first records could be old) until it is declared idle; so does a partition of
//! the outlet registry, which has no event time, until it has been read up to date. When
//! every partition is idle the watermark follows the wall clock, so the last windows
//! close on a quiet stream too.
//!
//! Idleness is declared from outside, never guessed here from this process's wall
//! clock: the router reading the source partition decides it (`route::InputClocks`) and
//! says so in its progress markers. The watermark is then a function of what the engine
//! has read, the same after a restart, a rebalance or a slow turn as without one.

use std::collections::{BTreeMap, BTreeSet};

use pantau_core::model::PartitionId;

/// The watermark state as plain data, for `checkpoint`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatermarkSnapshot {
    pub current: Option<i64>,
    pub partitions: Vec<(PartitionId, Option<i64>)>,
    /// Partitions declared idle, which no longer hold the watermark.
    pub idle: Vec<PartitionId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Watermarks {
    lateness_us: i64,
    /// Each partition's largest event time (`None`: nothing heard yet).
    partitions: BTreeMap<PartitionId, Option<i64>>,
    idle: BTreeSet<PartitionId>,
    current: Option<i64>,
}

impl Watermarks {
    pub fn new(lateness: std::time::Duration) -> Self {
        Watermarks {
            lateness_us: lateness.as_micros() as i64,
            partitions: BTreeMap::new(),
            idle: BTreeSet::new(),
            current: None,
        }
    }

    /// A partition that will deliver records; it holds the watermark until it speaks or
    /// is declared idle.
    pub fn assign(&mut self, id: PartitionId) {
        self.partitions.entry(id).or_insert(None);
    }

    /// A partition taken away (rebalance) or exhausted (end of a replay file).
    pub fn release(&mut self, id: PartitionId) {
        self.partitions.remove(&id);
        self.idle.remove(&id);
    }

    /// Records arrived on a partition; `max_event` is the largest event time among them.
    /// A partition that delivers is not idle.
    pub fn observe(&mut self, id: PartitionId, max_event: Option<i64>) {
        self.declare(id, max_event, false);
    }

    /// What the reader of a partition says of it: how far it has got, and whether it
    /// has gone idle.
    pub(crate) fn declare(&mut self, id: PartitionId, max_event: Option<i64>, idle: bool) {
        let max = self.partitions.entry(id).or_insert(None);
        if let Some(t) = max_event {
            *max = Some(max.map_or(t, |m| m.max(t)));
        }
        if idle {
            self.idle.insert(id);
        } else {
            self.idle.remove(&id);
        }
    }

    /// Recomputes the watermark. `wall_clock_us` is the current time since the epoch, used
    /// only when every partition is idle.
    pub fn advance(&mut self, wall_clock_us: i64) -> Option<i64> {
        let mut active_min: Option<i64> = None;
        let mut any_active = false;
        for (id, max_event) in &self.partitions {
            if self.idle.contains(id) {
                continue;
            }
            any_active = true;
            match max_event {
                // An active partition that has said nothing yet: wait for it.
                None => return self.current,
                Some(t) => active_min = Some(active_min.map_or(*t, |m: i64| m.min(*t))),
            }
        }
        let candidate = if any_active {
            active_min.map(|t| t - self.lateness_us)
        } else if self.partitions.is_empty() {
            None
        } else {
            Some(wall_clock_us - self.lateness_us)
        };
        if let Some(c) = candidate {
            self.current = Some(self.current.map_or(c, |w| w.max(c)));
        }
        self.current
    }

    /// The watermark as last computed.
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Moves the watermark to at least `t` (end of a replay: everything has been seen).
    pub fn force(&mut self, t: i64) {
        self.current = Some(self.current.map_or(t, |w| w.max(t)));
    }

    pub fn lateness_us(&self) -> i64 {
        self.lateness_us
    }

    /// True when there are partitions and every one is declared idle.
    pub fn all_idle(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.keys().all(|p| self.idle.contains(p))
    }

    /// The watermark, each partition's largest event time and which are idle.
    pub fn snapshot(&self) -> WatermarkSnapshot {
        WatermarkSnapshot {
            current: self.current,
            partitions: self.partition_maxima().collect(),
            idle: self.idle.iter().copied().collect(),
        }
    }

    pub fn restore(&mut self, snapshot: &WatermarkSnapshot) {
        self.current = snapshot.current;
        self.partitions = snapshot.partitions.iter().copied().collect();
        self.idle = snapshot
            .idle
            .iter()
            .filter(|p| self.partitions.contains_key(p))
            .copied()
            .collect();
    }

    /// The largest event time seen on each partition, for the watermark metrics.
    pub fn partition_maxima(&self) -> impl Iterator<Item = (PartitionId, Option<i64>)> + '_ {
        self.partitions.iter().map(|(id, max)| (*id, *max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_core::model::Stream;
    use std::time::Duration;

    const MIN: i64 = 60_000_000;

    fn p(n: i32) -> PartitionId {
        (Stream::Transactions, n)
    }

    #[test]
    fn is_the_minimum_over_partitions_minus_lateness() {
        let mut w = Watermarks::new(Duration::from_secs(600));
        w.observe(p(0), Some(100 * MIN));
        w.observe(p(1), Some(40 * MIN));
        assert_eq!(w.advance(0), Some(30 * MIN));
        w.observe(p(1), Some(200 * MIN));
        assert_eq!(w.advance(0), Some(90 * MIN));
    }

    #[test]
    fn never_goes_back() {
        let mut w = Watermarks::new(Duration::ZERO);
        w.observe(p(0), Some(100 * MIN));
        assert_eq!(w.advance(0), Some(100 * MIN));
        w.observe(p(1), Some(10 * MIN));
        assert_eq!(w.advance(0), Some(100 * MIN));
    }

    #[test]
    fn a_silent_assigned_partition_holds_it_until_declared_idle() {
        let mut w = Watermarks::new(Duration::ZERO);
        w.assign(p(1));
        w.observe(p(0), Some(100 * MIN));
        assert_eq!(w.advance(0), None);
        w.declare(p(1), None, true);
        assert_eq!(w.advance(0), Some(100 * MIN));
    }

    #[test]
    fn an_idle_partition_that_delivers_holds_it_again() {
        let mut w = Watermarks::new(Duration::ZERO);
        w.observe(p(0), Some(100 * MIN));
        w.observe(p(1), Some(10 * MIN));
        w.declare(p(1), None, true);
        assert_eq!(w.advance(0), Some(100 * MIN));
        w.observe(p(1), Some(20 * MIN));
        w.observe(p(0), Some(300 * MIN));
        // p(1) speaks again, so it bounds the watermark again (which never goes back).
        assert_eq!(w.advance(0), Some(100 * MIN));
        w.observe(p(1), Some(200 * MIN));
        assert_eq!(w.advance(0), Some(200 * MIN));
    }

    #[test]
    fn follows_the_wall_clock_when_every_partition_is_idle() {
        let mut w = Watermarks::new(Duration::from_secs(60));
        w.observe(p(0), Some(100 * MIN));
        assert!(!w.all_idle());
        w.declare(p(0), None, true);
        assert!(w.all_idle());
        assert_eq!(w.advance(1_000 * MIN), Some(999 * MIN));
    }

    #[test]
    fn idleness_survives_a_snapshot() {
        let mut w = Watermarks::new(Duration::ZERO);
        w.observe(p(0), Some(100 * MIN));
        w.observe(p(1), Some(10 * MIN));
        w.declare(p(1), None, true);
        w.advance(0);
        let mut restored = Watermarks::new(Duration::ZERO);
        restored.restore(&w.snapshot());
        assert_eq!(restored.snapshot(), w.snapshot());
        restored.observe(p(0), Some(150 * MIN));
        assert_eq!(restored.advance(0), Some(150 * MIN));
    }
}
