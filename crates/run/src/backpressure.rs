//! Memory when the watermark stalls: which input partitions the router stops reading.
//!
//! An engine keeps raw rows until the watermark has passed every window they fall in.
//! One input partition that is slow but not idle holds the watermark back while the
//! others stream on, so without a bound the engines would buffer everything the others
//! deliver. Past `--max-buffered-rows` the router pauses the input partitions that run
//! ahead of the watermark (their records wait in the broker, nothing is dropped) and
//! resumes them once the engines hold less than nine tenths of the cap, or once a paused
//! partition is no longer ahead (it may then be the one the watermark waits for).
//!
//! The internal topic is never paused: the progress that unblocks the watermark travels
//! on it, behind the records already forwarded. What the router forwarded and the
//! engines have not read yet counts toward the cap (at the most rows a record has become
//! so far), and the router never runs more than two batches ahead of its engines, so
//! that estimate cannot be far off. The partition the watermark waits for is never ahead
//! of it, so it is never paused for the cap and the pipeline cannot stall itself. The cap
//! counts this instance's engines; every instance's engines wait for the same partition,
//! so each pauses its own routers in turn.

use std::collections::{BTreeMap, BTreeSet};

use pantau_core::model::PartitionId;

/// Memory one buffered row costs, with its share of the engine around it: measured on a
/// replay of two simulated months of six regencies (189 MiB peak RSS for 155,746 rows).
pub(crate) const BYTES_PER_ROW: u64 = 1024;

/// The default cap: rows filling half the memory this process may use (its cgroup's
/// limit in a container, else the machine's).
pub(crate) fn default_cap() -> usize {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    // Off Linux: as for a 4 GiB machine.
    let memory = cgroup.or(physical).unwrap_or(4 << 30);
    usize::try_from(memory / 2 / BYTES_PER_ROW).unwrap_or(usize::MAX)
}

/// How many buffered rows an internal record becomes (a transaction is a row of
/// `transactions` and one of `transaction_items` per item; a progress marker none), from
/// what was read so far. The highest turn's ratio is taken: underestimating lets the
/// router forward more than the cap allows, overestimating only pauses a little early.
#[derive(Debug, Default)]
pub(crate) struct RowsPerRecord {
    highest: f64,
}

impl RowsPerRecord {
    /// A turn in which the engines read `records` internal records and hold `rows` more.
    pub(crate) fn turn(&mut self, records: usize, rows: usize) {
        // A few records say little: one transaction of five items would say five.
        if records >= 100 {
            self.highest = self.highest.max(rows as f64 / records as f64);
        }
    }

    /// The rows `records` unread records will likely become; one each until measured.
    pub fn of(&self, records: usize) -> usize {
        (records as f64 * self.highest.max(1.0)).ceil() as usize
    }
}

/// What the router should change this turn.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub pause: Vec<PartitionId>,
    pub resume: Vec<PartitionId>,
}

pub struct Backpressure {
    cap: usize,
    max_unread: usize,
    /// The watermark's lateness, µs.
    lateness_us: i64,
    /// The largest event time forwarded from each assigned input partition.
    forwarded: BTreeMap<PartitionId, i64>,
    paused: BTreeSet<PartitionId>,
    /// The engines held the cap at the last decision.
    over: bool,
}

impl Backpressure {
    /// `cap` 0: no limit. `batch_size`: the most records one turn reads; the router may
    /// run two turns ahead of its engines. `lateness`: the watermark's.
    pub fn new(cap: usize, batch_size: usize, lateness: std::time::Duration) -> Backpressure {
        Backpressure {
            cap,
            max_unread: 2 * batch_size.max(1),
            lateness_us: i64::try_from(lateness.as_micros()).unwrap_or(i64::MAX),
            forwarded: BTreeMap::new(),
            paused: BTreeSet::new(),
            over: false,
        }
    }

    pub(crate) fn forwarded(&mut self, pid: PartitionId, max_event: Option<i64>) {
        if let Some(t) = max_event {
            let max = self.forwarded.entry(pid).or_insert(t);
            *max = (*max).max(t);
        }
    }

    /// A partition taken away: a new assignment starts unpaused.
    pub fn revoke(&mut self, pid: PartitionId) {
        self.forwarded.remove(&pid);
        self.paused.remove(&pid);
    }

    #[cfg(test)]
    fn paused(&self) -> usize {
        self.paused.len()
    }

    /// How many partitions wait, by why: `memory` while the engines hold the cap, else
    /// `engines_behind`. Both reasons, so a gauge of each is always current.
    pub(crate) fn paused_by_reason(&self) -> [(&'static str, usize); 2] {
        let (memory, behind) = if self.over {
            (self.paused.len(), 0)
        } else {
            (0, self.paused.len())
        };
        [("memory", memory), ("engines_behind", behind)]
    }

    /// Decides from the records forwarded that the engines have not read yet
    /// (`unread`), the rows the engines hold or will once they read them (`rows`), and
    /// their watermark: the lowest of this instance's engines, `None` while one waits for
    /// a partition that never spoke.
    ///
    /// More than two turns' records unread pauses every input partition until the
    /// engines have read half of them: the rows those records become are only an
    /// estimate, so the router must not run far ahead of it.
    ///
    /// A partition is ahead when its event time is more than twice the lateness past
    /// the input the watermark waits for (the watermark plus its lateness), or when there
    /// is no watermark yet. The partition the watermark waits for is therefore never
    /// paused for the cap; once the engines have read what it forwarded and the
    /// watermark has moved, the partitions it caught up with resume.
    pub(crate) fn decide(
        &mut self,
        unread: usize,
        rows: usize,
        watermark: Option<i64>,
    ) -> Decision {
        let ahead = |t: i64| watermark.is_none_or(|w| t > w.saturating_add(3 * self.lateness_us));
        let over = self.cap > 0 && rows >= self.cap;
        self.over = over;
        let relieved = self.cap == 0 || rows < self.cap - self.cap / 10;
        let far_ahead = unread > self.max_unread;
        let caught_up = unread <= self.max_unread / 2;
        let mut decision = Decision::default();
        for (pid, t) in &self.forwarded {
            let paused = self.paused.contains(pid);
            if paused && caught_up && (relieved || !ahead(*t)) {
                decision.resume.push(*pid);
            } else if !paused && (far_ahead || (over && ahead(*t))) {
                decision.pause.push(*pid);
            }
        }
        for pid in &decision.resume {
            self.paused.remove(pid);
        }
        self.paused.extend(decision.pause.iter().copied());
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_core::model::Stream;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000_000;
    const LATENESS: i64 = HOUR / 6;

    fn with_cap(cap: usize) -> Backpressure {
        Backpressure::new(cap, 5000, Duration::from_micros(LATENESS as u64))
    }

    #[test]
    fn past_the_cap_the_partitions_ahead_pause_and_the_one_holding_the_watermark_never_does() {
        let slow = (Stream::Transactions, 0);
        let fast = (Stream::Transactions, 1);
        let disbursements = (Stream::Disbursements, 0);
        let mut bp = with_cap(1000);
        bp.forwarded(slow, Some(10 * HOUR));
        bp.forwarded(fast, Some(100 * HOUR));
        bp.forwarded(disbursements, Some(90 * HOUR));
        let watermark = Some(10 * HOUR - LATENESS);
        assert_eq!(bp.decide(0, 999, watermark), Decision::default());
        assert_eq!(
            bp.decide(0, 1000, watermark),
            Decision {
                pause: vec![fast, disbursements],
                resume: vec![]
            }
        );
        // The slow partition speaks far ahead: it waits too, until the engines read it.
        bp.forwarded(slow, Some(20 * HOUR));
        assert_eq!(bp.decide(0, 1200, watermark).pause, vec![slow]);
        // They did, windows closed, below nine tenths: everything resumes.
        assert_eq!(
            bp.decide(0, 899, Some(20 * HOUR - LATENESS)),
            Decision {
                pause: vec![],
                resume: vec![slow, fast, disbursements]
            }
        );
        assert_eq!(bp.paused(), 0);
    }

    #[test]
    fn a_paused_partition_the_watermark_catches_up_with_resumes_even_over_the_cap() {
        let slow = (Stream::Transactions, 0);
        let fast = (Stream::Transactions, 1);
        let mut bp = with_cap(1000);
        bp.forwarded(slow, Some(10 * HOUR));
        bp.forwarded(fast, Some(12 * HOUR));
        bp.decide(0, 5000, Some(10 * HOUR - LATENESS));
        assert_eq!(bp.paused(), 1);
        // The slow one overtook it: now the paused one holds the watermark.
        bp.forwarded(slow, Some(13 * HOUR));
        let decision = bp.decide(0, 5000, Some(12 * HOUR - LATENESS));
        assert_eq!(decision.resume, vec![fast]);
        assert_eq!(decision.pause, vec![slow]);
    }

    #[test]
    fn a_router_far_ahead_of_its_engines_waits_for_them_to_read_half() {
        let slow = (Stream::Transactions, 0);
        let fast = (Stream::Transactions, 1);
        let mut bp = with_cap(0);
        bp.forwarded(slow, Some(10 * HOUR));
        bp.forwarded(fast, Some(10 * HOUR));
        assert_eq!(bp.decide(10_000 + 1, 0, None).pause, vec![slow, fast]);
        assert_eq!(bp.decide(10_000, 0, None), Decision::default());
        assert_eq!(bp.decide(10_000 / 2, 0, None).resume, vec![slow, fast]);
    }

    #[test]
    fn no_cap_pauses_nothing() {
        let mut bp = with_cap(0);
        bp.forwarded((Stream::Transactions, 1), Some(100 * HOUR));
        assert_eq!(bp.decide(0, usize::MAX, None), Decision::default());
    }
}
