//! How many dead letters may be produced in full, and the count of those that were not.
//!
//! A poison stream (a bank sending a broken schema, a producer bug) can turn every input
//! record into a dead letter. Producing each in full would double the load on the broker
//! and turn one incident into a flood on `pantau.dlq` and in the logs. This module owns
//! the decision: a token bucket admits up to a configured number of full dead letters per
//! second (burst: one second's worth); the rest are *shed* — not produced in full, only
//! counted — and a summary of what was shed is handed out at most once per second, so the
//! caller writes one warning line per second instead of one per record.
//!
//! Pure: time comes in as the `Instant`s the caller passes to [`DeadLetterLimiter::admit`];
//! the limiter never reads a clock, so tests drive it with synthetic instants.

use std::time::{Duration, Instant};

/// Shortest interval between two shed summaries.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// Tokens are kept in billionths so refills of a few nanoseconds still count and the
/// arithmetic stays exact: one dead letter costs `UNIT`, and one second at rate `r`
/// refills `r · UNIT`.
const UNIT: u128 = 1_000_000_000;

/// What was shed since the previous summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedSummary {
    /// Dead letters shed since the previous summary (at least one).
    pub shed: u64,
    /// Dead letters shed since the limiter was made, this summary included.
    pub shed_total: u64,
    /// From the first to the last dead letter shed in this summary.
    pub span: Duration,
}

/// Token bucket over full dead letters, with the count of those it shed.
#[derive(Debug, Clone)]
pub struct DeadLetterLimiter {
    per_second: u32,
    /// Billionths of a token; at most `per_second · UNIT`.
    tokens: u128,
    /// The latest instant seen; the limiter's only clock.
    clock: Option<Instant>,
    shed_total: u64,
    pending: u64,
    pending_first: Option<Instant>,
    pending_last: Option<Instant>,
    last_summary: Option<Instant>,
}

impl DeadLetterLimiter {
    /// At most `per_second` full dead letters a second, in bursts of up to `per_second`.
    /// Zero sheds every dead letter, which still leaves them counted.
    pub fn new(per_second: u32) -> Self {
        DeadLetterLimiter {
            per_second,
            // Starts full, so the first second of an incident is seen in full.
            tokens: capacity(per_second),
            clock: None,
            shed_total: 0,
            pending: 0,
            pending_first: None,
            pending_last: None,
            last_summary: None,
        }
    }

    /// The configured rate, in full dead letters per second.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// True if the dead letter arriving at `now` may be produced in full; false if it is
    /// shed, in which case it is counted here and the caller counts it in its metric.
    pub fn admit(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            return true;
        }
        self.shed_total += 1;
        self.pending += 1;
        self.pending_first.get_or_insert(now);
        self.pending_last = Some(now);
        false
    }

    /// Dead letters shed since the limiter was made.
    pub fn shed(&self) -> u64 {
        self.shed_total
    }

    /// What was shed since the previous summary, at most once per [`SUMMARY_EVERY`] of the
    /// instants given to [`admit`](Self::admit); `None` when nothing was shed or the
    /// previous summary is less than a second old. The first summary comes as soon as
    /// anything is shed, so an incident shows in the log at once.
    pub fn take_shed_summary(&mut self) -> Option<ShedSummary> {
        let now = self.clock?;
        if self
            .last_summary
            .is_some_and(|at| now.saturating_duration_since(at) < SUMMARY_EVERY)
        {
            return None;
        }
        let summary = self.take_pending()?;
        self.last_summary = Some(now);
        Some(summary)
    }

    /// Whatever was shed since the previous summary, however recent that was: for the
    /// last line before shutdown, or after a quiet spell in which no dead letter moved the
    /// clock past the one-second mark.
    pub fn flush_shed_summary(&mut self) -> Option<ShedSummary> {
        let summary = self.take_pending()?;
        self.last_summary = self.clock;
        Some(summary)
    }

    fn take_pending(&mut self) -> Option<ShedSummary> {
        if self.pending == 0 {
            return None;
        }
        let span = match (self.pending_first.take(), self.pending_last.take()) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let shed = std::mem::take(&mut self.pending);
        Some(ShedSummary {
            shed,
            shed_total: self.shed_total,
            span,
        })
    }

    fn refill(&mut self, now: Instant) {
        let Some(before) = self.clock else {
            self.clock = Some(now);
            return;
        };
        // Instants from several threads or sources may arrive slightly out of order; an
        // earlier one refills nothing and does not move the clock back, so it can never
        // be used to mint tokens twice for the same interval.
        if now <= before {
            return;
        }
        let elapsed = now.duration_since(before).as_nanos();
        let refill = elapsed.saturating_mul(self.per_second as u128);
        self.tokens = self
            .tokens
            .saturating_add(refill)
            .min(capacity(self.per_second));
        self.clock = Some(now);
    }
}

fn capacity(per_second: u32) -> u128 {
    per_second as u128 * UNIT
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Calls `admit` `n` times at `at`; returns how many were admitted.
    fn admit_n(l: &mut DeadLetterLimiter, at: Instant, n: usize) -> usize {
        (0..n).filter(|_| l.admit(at)).count()
    }

    #[test]
    fn admits_one_seconds_worth_at_once_then_sheds() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(10);
        assert_eq!(admit_n(&mut l, t0, 25), 10);
        assert_eq!(l.shed(), 15);
    }

    #[test]
    fn refills_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(10);
        admit_n(&mut l, t0, 10);
        assert!(!l.admit(t0 + ms(99)), "a tenth of a second has not passed");
        assert!(l.admit(t0 + ms(100)));
        assert!(!l.admit(t0 + ms(100)));
        // Half a second refills five, not more.
        assert_eq!(admit_n(&mut l, t0 + ms(600), 20), 5);
    }

    #[test]
    fn burst_never_exceeds_one_seconds_worth_after_a_quiet_spell() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(50);
        admit_n(&mut l, t0, 50);
        let much_later = t0 + Duration::from_secs(3 * 24 * 3600);
        assert_eq!(admit_n(&mut l, much_later, 500), 50);
    }

    #[test]
    fn sub_token_refills_add_up() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(3);
        admit_n(&mut l, t0, 3);
        // 1/3 s is not a whole number of nanoseconds: three steps of 111_111_111 ns
        // leave the bucket just short, one more nanosecond fills it.
        let step = Duration::from_nanos(111_111_111);
        assert!(!l.admit(t0 + step));
        assert!(!l.admit(t0 + step * 2));
        assert!(!l.admit(t0 + step * 3));
        assert!(l.admit(t0 + step * 3 + Duration::from_nanos(1)));
    }

    #[test]
    fn zero_rate_sheds_everything_and_counts_it() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(0);
        assert_eq!(admit_n(&mut l, t0, 7), 0);
        assert_eq!(admit_n(&mut l, t0 + Duration::from_secs(3600), 3), 0);
        assert_eq!(l.shed(), 10);
    }

    #[test]
    fn an_earlier_instant_neither_panics_nor_refills() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = DeadLetterLimiter::new(2);
        admit_n(&mut l, t0, 2);
        assert!(!l.admit(t0 - Duration::from_secs(5)));
        // Going back and forth must not mint the same interval twice.
        assert!(l.admit(t0 + ms(500)));
        assert!(!l.admit(t0 + ms(100)));
        assert!(!l.admit(t0 + ms(500)));
        assert_eq!(l.shed(), 3);
    }

    #[test]
    fn no_summary_when_nothing_was_shed() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(5);
        assert_eq!(l.take_shed_summary(), None);
        admit_n(&mut l, t0, 5);
        assert_eq!(l.take_shed_summary(), None);
        assert_eq!(l.flush_shed_summary(), None);
    }

    #[test]
    fn shed_summary_comes_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(1);
        assert!(l.admit(t0));
        assert!(!l.admit(t0 + ms(10)));
        // The first shed is reported at once.
        assert_eq!(
            l.take_shed_summary(),
            Some(ShedSummary {
                shed: 1,
                shed_total: 1,
                span: Duration::ZERO
            })
        );
        for i in 1..=8 {
            assert!(!l.admit(t0 + ms(10 + 100 * i)));
            assert_eq!(l.take_shed_summary(), None, "only {}ms later", 100 * i);
        }
        assert!(l.admit(t0 + ms(1010)));
        assert!(!l.admit(t0 + ms(1011)));
        assert_eq!(
            l.take_shed_summary(),
            Some(ShedSummary {
                shed: 9,
                shed_total: 10,
                span: ms(1011 - 110),
            })
        );
        assert_eq!(l.take_shed_summary(), None);
        assert_eq!(l.shed(), 10);
    }

    #[test]
    fn flush_hands_out_the_rest_whatever_the_time() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(1);
        admit_n(&mut l, t0, 4);
        assert_eq!(l.take_shed_summary().map(|s| s.shed), Some(3));
        admit_n(&mut l, t0 + ms(1), 2);
        assert_eq!(l.take_shed_summary(), None);
        let rest = l.flush_shed_summary().unwrap();
        assert_eq!((rest.shed, rest.shed_total), (2, 5));
        assert_eq!(l.flush_shed_summary(), None);
    }

    #[test]
    fn extreme_rate_and_elapsed_time_do_not_overflow() {
        let t0 = Instant::now();
        let mut l = DeadLetterLimiter::new(u32::MAX);
        assert!(l.admit(t0));
        let later = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(l.admit(later));
        assert_eq!(l.shed(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Over any run of calls, the bucket admits no more than its burst plus the rate
        /// times the elapsed time, every call is either admitted or shed, and the
        /// summaries add up to the shed count.
        #[test]
        fn admits_within_the_token_bucket_bound_and_counts_every_shed(
            rate in 0u32..200,
            gaps_us in prop::collection::vec(0u64..300_000, 1..400),
        ) {
            let t0 = Instant::now();
            let mut l = DeadLetterLimiter::new(rate);
            let mut at = t0;
            let mut times = Vec::new();
            let mut admitted = Vec::new();
            let mut summarised = 0;
            let mut last_summary: Option<Instant> = None;
            for gap in gaps_us {
                at += Duration::from_micros(gap);
                times.push(at);
                admitted.push(l.admit(at));
                if let Some(s) = l.take_shed_summary() {
                    prop_assert!(s.shed > 0);
                    if let Some(prev) = last_summary {
                        prop_assert!(at.duration_since(prev) >= SUMMARY_EVERY);
                    }
                    last_summary = Some(at);
                    summarised += s.shed;
                    prop_assert_eq!(s.shed_total, summarised);
                }
            }
            summarised += l.flush_shed_summary().map_or(0, |s| s.shed);
            let shed = admitted.iter().filter(|a| !**a).count() as u64;
            prop_assert_eq!(l.shed(), shed);
            prop_assert_eq!(summarised, shed);
            // Every window [times[i], times[j]] admits at most burst + rate · length.
            let mut prefix = vec![0u64];
            for a in &admitted {
                prefix.push(prefix.last().unwrap() + *a as u64);
            }
            for i in 0..times.len() {
                for j in i..times.len() {
                    let got = prefix[j + 1] - prefix[i];
                    let span = times[j].duration_since(times[i]).as_secs_f64();
                    let bound = rate as f64 + rate as f64 * span;
                    prop_assert!(got as f64 <= bound + 1e-6, "{} admitted in {}s at rate {}", got, span, rate);
                }
            }
        }
    }
}
