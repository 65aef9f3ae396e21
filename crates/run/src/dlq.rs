//! How fast dead letters may go to `pantau.dlq`, and how that speed is kept: by slowing
//! consumption, never by dropping.
//!
//! A poison stream (a bank sending a broken schema, a producer bug, a backlog read again)
//! can turn every input record into a dead letter. Every one of them is produced: a
//! dead letter counted but not kept is a record lost. What this module bounds is the
//! rate. A token bucket holds one second's worth of dead letters at `--dlq-max-per-sec`;
//! a turn that produces more than the bucket holds leaves it in debt, and the caller
//! waits out the debt before it reads on. The wait is back-pressure: the consumer reads
//! no further, its lag grows where the operator can see it, and the broker and the DLQ's
//! readers get the configured rate.
//!
//! Pure: time comes in as the `Instant`s the caller passes; the pacer never reads a
//! clock, so tests drive it with synthetic instants.

use std::time::{Duration, Instant};

/// Tokens are kept in billionths so refills of a few nanoseconds still count: one dead
/// letter costs `UNIT`, and one second at rate `r` refills `r · UNIT`.
const UNIT: i128 = 1_000_000_000;

/// Token bucket over dead letters that may run into debt; the debt is the wait.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterPacer {
    per_second: u32,
    /// Billionths of a token; at most one second's worth, below zero when in debt.
    tokens: i128,
    /// The latest instant seen; the pacer's only clock.
    clock: Option<Instant>,
}

impl DeadLetterPacer {
    /// At most `per_second` dead letters a second on average, in bursts of up to
    /// `per_second`. Zero sets no limit.
    pub fn new(per_second: u32) -> Self {
        DeadLetterPacer {
            per_second,
            // Starts full, so the first second of an incident goes out at once.
            tokens: capacity(per_second),
            clock: None,
        }
    }

    /// `count` dead letters are produced at `now`; returns how long to wait before
    /// reading on (zero while within the rate).
    pub(crate) fn charge(&mut self, count: usize, now: Instant) -> Duration {
        if self.per_second == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= count as i128 * UNIT;
        if self.tokens >= 0 {
            return Duration::ZERO;
        }
        let nanos_per_token = 1_000_000_000 / i128::from(self.per_second);
        let wait_nanos = (-self.tokens / UNIT + 1) * nanos_per_token;
        Duration::from_nanos(u64::try_from(wait_nanos).unwrap_or(u64::MAX))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = match self.clock {
            // An earlier instant than one already seen adds nothing.
            Some(last) => now.saturating_duration_since(last),
            None => Duration::ZERO,
        };
        if self.clock.is_none_or(|last| now > last) {
            self.clock = Some(now);
        }
        let refill = elapsed.as_nanos() as i128 * i128::from(self.per_second);
        self.tokens = (self.tokens + refill).min(capacity(self.per_second));
    }
}

fn capacity(per_second: u32) -> i128 {
    i128::from(per_second) * UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seconds_worth_goes_out_without_a_wait() {
        let t0 = Instant::now();
        let mut p = DeadLetterPacer::new(10);
        assert_eq!(p.charge(10, t0), Duration::ZERO);
    }

    /// Before, dead letters over the rate were counted and dropped; now the caller waits
    /// so that the average stays at the rate, and nothing is dropped.
    #[test]
    fn a_flood_is_paced_to_the_rate_not_dropped() {
        let t0 = Instant::now();
        let mut p = DeadLetterPacer::new(1000);
        // 3000 at once: one second's worth was in the bucket, two seconds are owed.
        let wait = p.charge(3000, t0);
        assert!(
            (Duration::from_millis(2000)..=Duration::from_millis(2002)).contains(&wait),
            "{wait:?}"
        );
        // Having waited, the next dead letters owe only for themselves.
        let after = t0 + wait;
        let next = p.charge(100, after);
        assert!(
            (Duration::from_millis(100)..=Duration::from_millis(102)).contains(&next),
            "{next:?}"
        );
    }

    #[test]
    fn a_quiet_spell_refills_one_seconds_worth_at_most() {
        let t0 = Instant::now();
        let mut p = DeadLetterPacer::new(50);
        assert_eq!(p.charge(50, t0), Duration::ZERO);
        assert_eq!(p.charge(50, t0 + Duration::from_secs(3600)), Duration::ZERO);
        assert!(p.charge(1, t0 + Duration::from_secs(3600)) > Duration::ZERO);
    }

    #[test]
    fn zero_sets_no_limit() {
        let mut p = DeadLetterPacer::new(0);
        assert_eq!(p.charge(1_000_000, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn an_earlier_instant_neither_panics_nor_refills() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut p = DeadLetterPacer::new(2);
        assert_eq!(p.charge(2, t0), Duration::ZERO);
        assert!(p.charge(1, t0 - Duration::from_secs(5)) > Duration::ZERO);
    }
}
