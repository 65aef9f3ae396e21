//! Suppression: what keeps an outlet that stays bad from being alerted every window, and
//! what the monitoring team has snoozed.
//!
//! **Cooldown.** Per rule and entity, an *episode* runs from the first window that
//! detected the entity for as long as each next detection starts within the rule's
//! cooldown of the last one's end. Inside an episode a detection is raised again only
//! once a full cooldown has passed since the last raised one; the detections between are
//! suppressed and counted, and the next raised alert says since when the episode has been
//! going on and how many were held back. Decisions depend only on window bounds, so a
//! replay and a live run (and a restored checkpoint) suppress the same alerts.
//!
//! **Snoozes.** A CSV file the monitoring team edits (`entity_id,rule_id,until,reason,who`;
//! `*` as rule means every rule): detections of a snoozed entity in windows ending before
//! `until` are suppressed and counted. Bad lines are reported by line number; the good
//! ones around them still count.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};

use crate::window::MICROS_PER_DAY;

/// One ongoing run of detections of one rule on one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Episode {
    /// Start of the first window that detected it.
    pub since: i64,
    /// End of the latest window that detected it.
    pub last_seen_end: i64,
    /// End of the latest window whose detection was raised (none yet: snoozed).
    pub last_raised_end: Option<i64>,
    /// Detections suppressed since the last raised one.
    pub suppressed: u32,
    /// The rule's cooldown when the episode was last extended, in µs, so eviction needs
    /// no rule lookup.
    pub cooldown_us: i64,
}

/// What to do with one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Raise it. `ongoing` is set when it continues an earlier episode.
    Raise { ongoing: Option<Ongoing> },
    /// Within the cooldown of the last raised alert on the same entity.
    Cooldown,
    /// On the snooze list.
    Snoozed,
}

/// How long an entity has been detected, for the alert that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ongoing {
    pub since: i64,
    /// Detections not raised since the previous raised alert (or the episode's start).
    pub suppressed: u32,
}

/// Episodes per (rule id, entity id).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cooldowns {
    episodes: HashMap<(String, String), Episode>,
}

impl Cooldowns {
    /// Judges a detection in window `[start, end)` and records it. A snoozed detection
    /// still extends its episode, so the first alert after the snooze says since when.
    pub(crate) fn judge(
        &mut self,
        rule_id: &str,
        entity_id: &str,
        cooldown: Duration,
        window: (i64, i64),
        snoozed: bool,
    ) -> Verdict {
        let (start, end) = window;
        let cooldown_us = cooldown.as_micros() as i64;
        let key = (rule_id.to_string(), entity_id.to_string());
        let continuing = self
            .episodes
            .get(&key)
            .is_some_and(|e| start <= e.last_seen_end + e.cooldown_us.max(cooldown_us));
        let episode = self.episodes.entry(key).or_insert(Episode {
            since: start,
            last_seen_end: end,
            last_raised_end: None,
            suppressed: 0,
            cooldown_us,
        });
        if !continuing {
            *episode = Episode {
                since: start,
                last_seen_end: end,
                last_raised_end: None,
                suppressed: 0,
                cooldown_us,
            };
        }
        episode.last_seen_end = episode.last_seen_end.max(end);
        episode.cooldown_us = cooldown_us;
        if snoozed {
            episode.suppressed += 1;
            return Verdict::Snoozed;
        }
        if episode
            .last_raised_end
            .is_some_and(|raised| end - raised < cooldown_us)
        {
            episode.suppressed += 1;
            return Verdict::Cooldown;
        }
        let ongoing = (episode.since < start).then_some(Ongoing {
            since: episode.since,
            suppressed: episode.suppressed,
        });
        episode.suppressed = 0;
        episode.last_raised_end = Some(end);
        Verdict::Raise { ongoing }
    }

    /// Forgets episodes no window ending after `watermark` could continue.
    pub(crate) fn evict(&mut self, watermark: i64) {
        // A window starting at the watermark or later may still continue an episode whose
        // last detection ended within a cooldown (and a day's zone spread) before it.
        self.episodes
            .retain(|_, e| e.last_seen_end + e.cooldown_us + MICROS_PER_DAY >= watermark);
    }

    pub fn snapshot(&self) -> Vec<(String, String, Episode)> {
        let mut all: Vec<_> = self
            .episodes
            .iter()
            .map(|((rule, entity), e)| (rule.clone(), entity.clone(), *e))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    pub fn restore(entries: Vec<(String, String, Episode)>) -> Cooldowns {
        Cooldowns {
            episodes: entries
                .into_iter()
                .map(|(rule, entity, e)| ((rule, entity), e))
                .collect(),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }
}

/// One line of the snooze file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Snooze {
    pub entity_id: String,
    /// A rule id, or `*` for every rule.
    pub rule_id: String,
    /// A date (`2026-12-31`, through the end of that day in WIB) or an RFC 3339 instant.
    pub until: String,
    pub reason: String,
    pub who: String,
}

/// The snoozes in force, and what was wrong with the lines that could not be read.
#[derive(Debug, Clone, Default)]
pub struct SnoozeList {
    entries: Vec<(Snooze, i64)>,
    pub problems: Vec<String>,
    /// With the key, a card may be named by its reference (`P…`), the only name the
    /// monitoring team sees for it.
    references: Option<pantau_core::pseudonym::Pseudonyms>,
}

fn until_us(text: &str) -> Result<i64, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_micros());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!("until {text:?} is neither a date (2026-12-31) nor an RFC 3339 time")
    })?;
    // Through the whole day, wherever in Indonesia: the day ends last in WIB.
    let wib = FixedOffset::east_opt(7 * 3600).expect("valid offset");
    let end = date
        .succ_opt()
        .ok_or("until is past the calendar")?
        .and_time(NaiveTime::MIN)
        .and_local_timezone(wib)
        .single()
        .ok_or("until has no single instant")?;
    Ok(end.timestamp_micros())
}

impl SnoozeList {
    /// Reads a snooze file. A file that cannot be read is an error; a bad line is a
    /// problem (listed, the line ignored) and the other lines are kept.
    pub fn load(path: &Path) -> crate::error::Result<SnoozeList> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::error::Error::SnoozeFile {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SnoozeList::read(path, &text))
    }

    /// A snooze file's text, with card references resolvable when
    /// `PANTAU_PSEUDONYM_KEY` is set.
    pub fn read(path: &Path, text: &str) -> SnoozeList {
        SnoozeList::parse(&path.display().to_string(), text).with_references(
            pantau_core::pseudonym::Pseudonyms::from_env_if_set(pantau_core::pseudonym::KEY_ENV),
        )
    }

    pub(crate) fn with_references(
        mut self,
        references: Option<pantau_core::pseudonym::Pseudonyms>,
    ) -> Self {
        self.references = references;
        self
    }

    pub fn parse(name: &str, text: &str) -> SnoozeList {
        let mut list = SnoozeList::default();
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader.headers().cloned().unwrap_or_default();
        // Problems name the line, never the entity: a snooze for a card names a card,
        // and these problems are logged at warn.
        for result in reader.records() {
            let checked = result
                .map_err(|e| {
                    let line = e.position().map(|p| p.line()).unwrap_or_default();
                    format!("{name}:{line}: {e}")
                })
                .and_then(|record| {
                    let line = record.position().map(|p| p.line()).unwrap_or_default();
                    let snooze: Snooze = record
                        .deserialize(Some(&headers))
                        .map_err(|e| format!("{name}:{line}: {e}"))?;
                    if snooze.entity_id.is_empty() || snooze.rule_id.is_empty() {
                        return Err(format!("{name}:{line}: empty entity_id or rule_id"));
                    }
                    let until =
                        until_us(&snooze.until).map_err(|e| format!("{name}:{line}: {e}"))?;
                    Ok((snooze, until))
                });
            match checked {
                Ok(entry) => list.entries.push(entry),
                Err(problem) => list.problems.push(problem),
            }
        }
        list
    }

    /// The snooze that covers a detection of `rule_id` on an entity in a window ending
    /// at `window_end`, if any. A card is covered by its id or its reference.
    pub fn covering(
        &self,
        rule_id: &str,
        entity_type: &str,
        entity_id: &str,
        window_end: i64,
    ) -> Option<&Snooze> {
        let reference = self
            .references
            .as_ref()
            .filter(|_| pantau_core::pseudonym::names_a_person(entity_type))
            .map(|p| p.reference(entity_id));
        self.entries
            .iter()
            .find(|(s, until)| {
                (s.entity_id == entity_id || reference.as_deref() == Some(s.entity_id.as_str()))
                    && (s.rule_id == "*" || s.rule_id == rule_id)
                    && window_end <= *until
            })
            .map(|(s, _)| s)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MICROS_PER_DAY;

    fn day(n: i64) -> (i64, i64) {
        (n * DAY, (n + 1) * DAY)
    }

    #[test]
    fn a_daily_detection_is_raised_once_a_week_and_says_since_when() {
        let mut c = Cooldowns::default();
        let week = Duration::from_secs(7 * 86_400);
        let mut raised = Vec::new();
        for n in 0..15 {
            let (s, e) = day(n);
            if let Verdict::Raise { ongoing } = c.judge("r", "o1", week, (s, e), false) {
                raised.push((n, ongoing));
            }
        }
        assert_eq!(
            raised,
            vec![
                (0, None),
                (
                    7,
                    Some(Ongoing {
                        since: 0,
                        suppressed: 6
                    })
                ),
                (
                    14,
                    Some(Ongoing {
                        since: 0,
                        suppressed: 6
                    })
                ),
            ]
        );
    }

    #[test]
    fn a_gap_longer_than_the_cooldown_starts_a_new_episode() {
        let mut c = Cooldowns::default();
        let two_days = Duration::from_secs(2 * 86_400);
        let (s, e) = day(0);
        assert_eq!(
            c.judge("r", "o1", two_days, (s, e), false),
            Verdict::Raise { ongoing: None }
        );
        let (s, e) = day(5);
        assert_eq!(
            c.judge("r", "o1", two_days, (s, e), false),
            Verdict::Raise { ongoing: None }
        );
        // Another entity and another rule have episodes of their own.
        let (s, e) = day(6);
        assert_eq!(
            c.judge("r", "o1", two_days, (s, e), false),
            Verdict::Cooldown
        );
        assert_eq!(
            c.judge("r", "o2", two_days, (s, e), false),
            Verdict::Raise { ongoing: None }
        );
        assert_eq!(
            c.judge("q", "o1", two_days, (s, e), false),
            Verdict::Raise { ongoing: None }
        );
    }

    #[test]
    fn without_a_cooldown_every_window_is_raised_and_adjacent_ones_say_since_when() {
        let mut c = Cooldowns::default();
        let (s, e) = day(3);
        c.judge("r", "o1", Duration::ZERO, (s, e), false);
        let (s, e) = day(4);
        assert_eq!(
            c.judge("r", "o1", Duration::ZERO, (s, e), false),
            Verdict::Raise {
                ongoing: Some(Ongoing {
                    since: 3 * DAY,
                    suppressed: 0
                })
            }
        );
    }

    #[test]
    fn a_snoozed_detection_extends_its_episode_and_the_first_alert_after_says_since_when() {
        let mut c = Cooldowns::default();
        let week = Duration::from_secs(7 * 86_400);
        for n in 0..3 {
            assert_eq!(c.judge("r", "o1", week, day(n), true), Verdict::Snoozed);
        }
        assert_eq!(
            c.judge("r", "o1", week, day(3), false),
            Verdict::Raise {
                ongoing: Some(Ongoing {
                    since: 0,
                    suppressed: 3
                })
            }
        );
    }

    #[test]
    fn snapshots_restore_the_same_decisions_and_eviction_forgets_finished_episodes() {
        let mut c = Cooldowns::default();
        let week = Duration::from_secs(7 * 86_400);
        let (s, e) = day(0);
        c.judge("r", "o1", week, (s, e), false);
        let mut restored = Cooldowns::restore(c.snapshot());
        let (s, e) = day(1);
        assert_eq!(
            restored.judge("r", "o1", week, (s, e), false),
            Verdict::Cooldown
        );
        restored.evict(20 * DAY);
        assert!(restored.is_empty());
    }

    #[test]
    fn snooze_lines_cover_their_entity_rule_and_time_and_bad_lines_are_named() {
        let text = "entity_id,rule_id,until,reason,who\n\
            # the district office is checking this one\n\
            O-1,price_markup,2023-01-31,\"harga diperiksa, tunggu laporan\",Dinsos Serang\n\
            O-2,*,2023-02-01T00:00:00+07:00,renovasi,Tikor\n\
            O-3,price_markup,soon,typo,someone\n\
            O-4,price_markup\n";
        let list = SnoozeList::parse("snooze.csv", text);
        assert_eq!(list.len(), 2, "{:?}", list.problems);
        assert_eq!(list.problems.len(), 2, "{:?}", list.problems);
        assert!(list.problems[0].contains("\"soon\""), "{:?}", list.problems);
        // Named by line, not by entity (which may be a card).
        assert!(
            list.problems[0].contains("snooze.csv:5"),
            "{:?}",
            list.problems
        );
        assert!(
            !list.problems.iter().any(|p| p.contains("O-3")),
            "{:?}",
            list.problems
        );
        assert!(
            list.problems[1].contains("snooze.csv:6"),
            "{:?}",
            list.problems
        );
        let end_of_jan_31_wib = DateTime::parse_from_rfc3339("2023-02-01T00:00:00+07:00")
            .unwrap()
            .timestamp_micros();
        let s = list
            .covering("price_markup", "outlet", "O-1", end_of_jan_31_wib)
            .unwrap();
        assert_eq!(s.reason, "harga diperiksa, tunggu laporan");
        assert!(list
            .covering("price_markup", "outlet", "O-1", end_of_jan_31_wib + 1)
            .is_none());
        assert!(list
            .covering("short_quantity", "outlet", "O-1", end_of_jan_31_wib)
            .is_none());
        assert!(list
            .covering("short_quantity", "outlet", "O-2", end_of_jan_31_wib)
            .is_some());
        assert!(list.covering("price_markup", "outlet", "O-9", 0).is_none());
    }

    #[test]
    fn a_card_is_snoozed_by_the_reference_people_see_when_the_key_is_there() {
        let keyed = pantau_core::pseudonym::Pseudonyms::new(b"kunci");
        let card = "6013011234567890";
        let text = format!(
            "entity_id,rule_id,until,reason,who\n{},*,2023-01-31,diperiksa,Tikor\n",
            keyed.reference(card)
        );
        let without_key = SnoozeList::parse("snooze.csv", &text);
        assert!(without_key
            .covering("card_many_places", "card", card, 0)
            .is_none());
        let with_key = without_key.with_references(Some(keyed));
        assert!(with_key
            .covering("card_many_places", "card", card, 0)
            .is_some());
        // An outlet is never matched through a reference.
        assert!(with_key
            .covering("price_markup", "outlet", card, 0)
            .is_none());
    }
}
