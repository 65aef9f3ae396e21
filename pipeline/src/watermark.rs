//! Event-time progress: the watermark.
//!
//! Each source partition (a Kafka partition, or a file in a replay) reports the largest
//! event time it has delivered. The watermark is the minimum of those over the
//! partitions that are not idle, minus the allowed lateness, and it never goes back.
//! A partition that has been assigned but has delivered nothing yet holds the watermark
//! (its first records could be old) until it has been idle for `idle_timeout`; when every
//! partition is idle the watermark follows the wall clock, so the last windows close on a
//! quiet stream too. Wall-clock time is passed in by the caller, which keeps this pure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::Stream;

/// A source partition: which stream and which partition of it.
pub type PartitionId = (Stream, i32);

#[derive(Debug, Clone)]
struct PartitionClock {
    max_event: Option<i64>,
    last_activity: Instant,
}

/// The watermark state as plain data, for `checkpoint`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatermarkSnapshot {
    pub current: Option<i64>,
    pub partitions: Vec<(PartitionId, Option<i64>)>,
}

#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness_us: i64,
    idle_timeout: Duration,
    partitions: BTreeMap<PartitionId, PartitionClock>,
    current: Option<i64>,
}

impl Watermarks {
    pub fn new(lateness: Duration, idle_timeout: Duration) -> Self {
        Watermarks {
            lateness_us: lateness.as_micros() as i64,
            idle_timeout,
            partitions: BTreeMap::new(),
            current: None,
        }
    }

    /// A partition that will deliver records; it holds the watermark until it speaks or
    /// goes idle.
    pub fn assign(&mut self, id: PartitionId, now: Instant) {
        self.partitions.entry(id).or_insert(PartitionClock {
            max_event: None,
            last_activity: now,
        });
    }

    /// A partition taken away (rebalance) or exhausted (end of a replay file).
    pub fn release(&mut self, id: PartitionId) {
        self.partitions.remove(&id);
    }

    /// Records arrived on a partition; `max_event` is the largest event time among them.
    pub fn observe(&mut self, id: PartitionId, max_event: Option<i64>, now: Instant) {
        let clock = self.partitions.entry(id).or_insert(PartitionClock {
            max_event: None,
            last_activity: now,
        });
        clock.last_activity = now;
        if let Some(t) = max_event {
            clock.max_event = Some(clock.max_event.map_or(t, |m| m.max(t)));
        }
    }

    /// Recomputes the watermark. `wall_clock_us` is the current time since the epoch, used
    /// only when every partition is idle.
    pub fn advance(&mut self, now: Instant, wall_clock_us: i64) -> Option<i64> {
        let mut active_min: Option<i64> = None;
        let mut any_active = false;
        let idle = self.idle(now);
        for (id, clock) in &self.partitions {
            if idle.contains(id) {
                continue;
            }
            any_active = true;
            match clock.max_event {
                // An active partition that has said nothing yet: wait for it.
                None => return self.current,
                Some(t) => active_min = Some(active_min.map_or(t, |m: i64| m.min(t))),
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

    /// Partitions that no longer hold the watermark back: those of a stream that has been
    /// silent as a whole for the idle timeout. A silent partition among busy siblings,
    /// even one not heard from yet, is far more often starved by the broker's fetch order
    /// than empty (outlets are spread over every partition), and letting it go would make
    /// its backlog late when it arrives; a sparse stream (credits come once a month) goes
    /// quiet as a whole and must not stop the windows from closing.
    pub fn idle(&self, now: Instant) -> Vec<PartitionId> {
        let silent = |c: &PartitionClock| now.duration_since(c.last_activity) >= self.idle_timeout;
        let quiet_streams: Vec<Stream> = Stream::ALL
            .into_iter()
            .filter(|s| {
                self.partitions
                    .iter()
                    .filter(|((stream, _), _)| stream == s)
                    .all(|(_, c)| silent(c))
            })
            .collect();
        self.partitions
            .iter()
            .filter(|((stream, _), c)| silent(c) && quiet_streams.contains(stream))
            .map(|(id, _)| *id)
            .collect()
    }

    /// True when every known partition has been idle for the idle timeout.
    pub fn all_idle(&self, now: Instant) -> bool {
        self.idle(now).len() == self.partitions.len()
    }

    /// The watermark and each partition's largest event time, for a checkpoint.
    pub fn snapshot(&self) -> WatermarkSnapshot {
        WatermarkSnapshot {
            current: self.current,
            partitions: self.partition_maxima().collect(),
        }
    }

    /// Restores a snapshot. Partitions count as heard from `now`: a restarted instance
    /// must not take its own downtime for idleness and let the watermark run to the wall
    /// clock before its sources have had a chance to speak.
    pub fn restore(&mut self, snapshot: &WatermarkSnapshot, now: Instant) {
        self.current = snapshot.current;
        self.partitions = snapshot
            .partitions
            .iter()
            .map(|(id, max_event)| {
                (
                    *id,
                    PartitionClock {
                        max_event: *max_event,
                        last_activity: now,
                    },
                )
            })
            .collect();
    }

    /// The largest event time seen on each partition, for the watermark metrics.
    pub fn partition_maxima(&self) -> impl Iterator<Item = (PartitionId, Option<i64>)> + '_ {
        self.partitions.iter().map(|(id, c)| (*id, c.max_event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn p(n: i32) -> PartitionId {
        (Stream::Transactions, n)
    }

    #[test]
    fn is_the_minimum_over_partitions_minus_lateness() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(600), Duration::from_secs(30));
        w.observe(p(0), Some(100 * MIN), t0);
        w.observe(p(1), Some(40 * MIN), t0);
        assert_eq!(w.advance(t0, 0), Some(30 * MIN));
        w.observe(p(1), Some(200 * MIN), t0);
        assert_eq!(w.advance(t0, 0), Some(90 * MIN));
    }

    #[test]
    fn never_goes_back() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::ZERO, Duration::from_secs(30));
        w.observe(p(0), Some(100 * MIN), t0);
        assert_eq!(w.advance(t0, 0), Some(100 * MIN));
        w.observe(p(1), Some(10 * MIN), t0);
        assert_eq!(w.advance(t0, 0), Some(100 * MIN));
    }

    #[test]
    fn a_silent_assigned_partition_holds_it_while_its_stream_is_busy() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::ZERO, Duration::from_secs(30));
        w.assign(p(1), t0);
        w.observe(p(0), Some(100 * MIN), t0);
        assert_eq!(w.advance(t0, 0), None);
        let later = t0 + Duration::from_secs(31);
        w.observe(p(0), Some(120 * MIN), later);
        assert_eq!(w.advance(later, 0), None);
        let quiet = later + Duration::from_secs(31);
        assert_eq!(w.advance(quiet, 1_000 * MIN), Some(1_000 * MIN));
    }

    #[test]
    fn a_silent_partition_among_busy_siblings_keeps_holding_it() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::ZERO, Duration::from_secs(5));
        w.observe(p(0), Some(100 * MIN), t0);
        w.observe(p(1), Some(10 * MIN), t0);
        w.observe((Stream::Disbursements, 0), Some(5 * MIN), t0);
        let later = t0 + Duration::from_secs(6);
        w.observe(p(0), Some(200 * MIN), later);
        // Partition 1 is starved, not empty; the disbursements have gone quiet as a whole.
        assert_eq!(w.advance(later, 0), Some(10 * MIN));
        assert_eq!(w.idle(later), vec![(Stream::Disbursements, 0)]);
    }

    #[test]
    fn follows_the_wall_clock_when_every_partition_is_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_secs(60), Duration::from_secs(5));
        w.observe(p(0), Some(100 * MIN), t0);
        let later = t0 + Duration::from_secs(6);
        assert!(w.all_idle(later));
        assert_eq!(w.advance(later, 1_000 * MIN), Some(999 * MIN));
    }
}
