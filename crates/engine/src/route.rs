//! The repartition step between the input topics and the engines.
//!
//! Input is keyed by outlet (and disbursements by card), but rules compare an outlet
//! with its peers in the regency and follow a card across outlets. So records are
//! forwarded, unchanged, to the internal topic `pantau.by-province`, partitioned by
//! province: one engine then sees every outlet and card of a province, and what it
//! raises does not depend on how many instances share the work (the way Kafka Streams
//! repartitions). Each forwarded record says where it came from (topic, partition,
//! offset), so dead letters keep their provenance and redeliveries are still recognised.
//!
//! An engine must also know how far each *source* partition has got, or it would take a
//! source partition that sends it nothing for an idle one. The router sends every
//! engine a progress marker per source partition and batch (the way Flink and Arroyo
//! forward watermarks across a shuffle): the engine's watermark is then the one it would
//! have computed reading the sources itself.
//!
//! Only the router can tell an idle source from a slow one: it sees the source's
//! backlog in the broker, and its silence is measured where the records arrive. So the
//! router decides idleness (`InputClocks`) and the markers carry the decision. An engine
//! never consults a clock to decide what is late: its watermark depends only on the
//! internal records it has read, so a restart, a rebalance or a slow turn downstream of
//! the router changes no alert.
//!
//! A record that names no valid regency is forwarded to partition 0, where the engine's
//! decoder dead-letters it with the exact reason: validity is decided in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use pantau_core::model::Outgoing;
use pantau_core::model::{
    PartitionId, Stream, Whole, MAX_FORWARDED_BYTES, MAX_KEY_BYTES, TOPIC_BY_PROVINCE,
};

/// What travels on the internal topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope<'a> {
    /// An input record, with where it came from and when the router read it (µs since
    /// the epoch; `None` in records written before receipt times were kept). The engine
    /// judges the record's event time against that receipt time, so whether a record is
    /// from the future is decided once, here, and the same on every replay of this topic.
    Record {
        source: PartitionId,
        offset: i64,
        payload: Option<&'a [u8]>,
        received: Option<i64>,
        /// Set when the input record was too large to forward whole (see
        /// [`MAX_FORWARDED_BYTES`]): `payload` is then its first bytes, and the engine
        /// dead-letters it as `too_large` without decoding it.
        whole: Option<Whole>,
    },
    /// A source partition has delivered event times up to `max_event`, and is `idle`
    /// (silent with nothing waiting) or not.
    Progress {
        source: PartitionId,
        max_event: Option<i64>,
        idle: bool,
    },
}

fn stream_code(stream: Stream) -> &'static str {
    match stream {
        Stream::Transactions => "t",
        Stream::Disbursements => "d",
        Stream::Transfers => "x",
        Stream::Outlets => "o",
    }
}

fn stream_of(code: &str) -> Option<Stream> {
    Stream::ALL.into_iter().find(|s| stream_code(*s) == code)
}

impl Envelope<'_> {
    /// One header line, then the original payload bytes untouched.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Envelope::Record {
                source,
                offset,
                payload,
                received,
                whole,
            } => {
                let mut header = format!(
                    "R {} {} {} {}",
                    stream_code(source.0),
                    source.1,
                    offset,
                    u8::from(payload.is_some())
                );
                if received.is_some() || whole.is_some() {
                    header.push(' ');
                    header.push_str(&received.map_or("-".to_string(), |t| t.to_string()));
                }
                if let Some(w) = whole {
                    header.push_str(&format!(" {}:{}", w.length, w.sha256));
                }
                header.push('\n');
                let mut out = header.into_bytes();
                out.extend_from_slice(payload.unwrap_or_default());
                out
            }
            Envelope::Progress {
                source,
                max_event,
                idle,
            } => format!(
                "P {} {} {} {}\n",
                stream_code(source.0),
                source.1,
                max_event.map_or("-".to_string(), |t| t.to_string()),
                u8::from(*idle)
            )
            .into_bytes(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>> {
        let end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| Error::InternalRecord {
                problem: "internal record without a header line".into(),
                source: None,
            })?;
        let header = std::str::from_utf8(&bytes[..end]).map_err(Error::InternalHeaderNotUtf8)?;
        let body = &bytes[end + 1..];
        let words: Vec<&str> = header.split(' ').collect();
        let bad = |problem: String| Error::InternalRecord {
            problem,
            source: None,
        };
        let source = |code: &str, partition: &str| -> Result<PartitionId> {
            let stream =
                stream_of(code).ok_or_else(|| bad(format!("unknown stream code {code:?}")))?;
            let partition = partition
                .parse()
                .map_err(Error::internal_record("bad source partition"))?;
            Ok((stream, partition))
        };
        match words.as_slice() {
            ["R", code, partition, offset, has_payload, rest @ ..] if rest.len() <= 2 => {
                Ok(Envelope::Record {
                    source: source(code, partition)?,
                    offset: offset
                        .parse()
                        .map_err(Error::internal_record("bad source offset"))?,
                    payload: (*has_payload == "1").then_some(body),
                    received: match rest.first() {
                        None | Some(&"-") => None,
                        Some(at) => Some(
                            at.parse()
                                .map_err(Error::internal_record("bad receipt time"))?,
                        ),
                    },
                    whole: match rest.get(1) {
                        None => None,
                        Some(text) => {
                            let (length, sha256) = text
                                .split_once(':')
                                .ok_or_else(|| bad("bad whole-record note".into()))?;
                            Some(Whole {
                                length: length
                                    .parse()
                                    .map_err(Error::internal_record("bad whole-record length"))?,
                                sha256: sha256.to_string(),
                            })
                        }
                    },
                })
            }
            ["P", code, partition, max_event, idle] => Ok(Envelope::Progress {
                source: source(code, partition)?,
                max_event: match *max_event {
                    "-" => None,
                    t => Some(
                        t.parse()
                            .map_err(Error::internal_record("bad progress time"))?,
                    ),
                },
                idle: match *idle {
                    "0" => false,
                    "1" => true,
                    other => return Err(bad(format!("bad idle flag {other:?}"))),
                },
            }),
            _ => Err(bad(format!("unknown internal header {header:?}"))),
        }
    }
}

#[derive(Deserialize)]
struct Routing {
    regency_code: Option<String>,
}

/// The internal partition of an input payload: by the province (the first two digits of
/// the BPS regency code), so a province never spans two engines.
pub fn partition_of(payload: Option<&[u8]>, partitions: i32) -> i32 {
    let province = payload
        .and_then(|p| serde_json::from_slice::<Routing>(p).ok())
        .and_then(|r| r.regency_code)
        .and_then(|code| code.get(..2).and_then(|p| p.parse::<u32>().ok()));
    match province {
        Some(p) => (p % partitions.max(1) as u32) as i32,
        None => 0,
    }
}

/// One input record to forward.
pub struct InputRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub offset: i64,
}

impl InputRecord<'_> {
    /// Whether it fits [`MAX_FORWARDED_BYTES`]; one that does not is forwarded cut short
    /// and dead-lettered, so its event time must move nothing.
    pub(crate) fn forwarded_whole(&self) -> bool {
        self.key.unwrap_or_default().len() + self.payload.unwrap_or_default().len()
            <= MAX_FORWARDED_BYTES
    }
}

/// Forwards one source partition's records, in order, to the internal topic, stamped
/// with `received`, the router's wall clock when it read them.
pub fn forward(
    source: PartitionId,
    records: &[InputRecord<'_>],
    partitions: i32,
    received: i64,
) -> Vec<Outgoing> {
    records
        .iter()
        .map(|r| {
            let value = r.payload.unwrap_or_default();
            let too_large = !r.forwarded_whole();
            let (payload, whole) = if too_large {
                let kept = &value[..value.len().min(crate::decode::MAX_DEAD_LETTER_ORIGINAL)];
                let whole = Whole {
                    length: value.len() as u64,
                    sha256: pantau_core::text::hex_prefix(&Sha256::digest(value), 64),
                };
                (r.payload.map(|_| kept), Some(whole))
            } else {
                (r.payload, None)
            };
            Outgoing {
                topic: TOPIC_BY_PROVINCE.to_string(),
                // Cut short, it is not routed by its content: the engine of partition 0
                // dead-letters it, as it does every record without a valid regency.
                partition: Some(if too_large {
                    0
                } else {
                    partition_of(r.payload, partitions)
                }),
                key: r.key.map(|k| {
                    String::from_utf8_lossy(&k[..k.len().min(MAX_KEY_BYTES)]).into_owned()
                }),
                payload: Envelope::Record {
                    source,
                    offset: r.offset,
                    payload,
                    received: Some(received),
                    whole,
                }
                .encode(),
            }
        })
        .collect()
}

/// A progress marker for every internal partition; sent after the records it covers, so
/// no engine sees the progress before the records.
pub fn progress(
    source: PartitionId,
    max_event: Option<i64>,
    idle: bool,
    partitions: i32,
) -> Vec<Outgoing> {
    let payload = Envelope::Progress {
        source,
        max_event,
        idle,
    }
    .encode();
    (0..partitions)
        .map(|p| Outgoing {
            topic: TOPIC_BY_PROVINCE.to_string(),
            partition: Some(p),
            key: None,
            payload: payload.clone(),
        })
        .collect()
}

/// The largest event time among the records of a source partition that the engines'
/// decoder will accept, given the latest plausible event time (receipt plus
/// `--max-future`). Records it will reject (unreadable, from the future, from before the
/// program) are skipped: their times must move no watermark.
pub fn max_event_time(stream: Stream, records: &[InputRecord<'_>], latest: i64) -> Option<i64> {
    records
        .iter()
        .filter(|r| r.forwarded_whole())
        .filter_map(|r| crate::decode::accepted_event_time(stream, r.payload, latest))
        .max()
}

/// The router's clocks on its input partitions: when each last delivered, and which it
/// has declared idle. A partition is idle once it and every other partition of its
/// stream have been silent for the idle timeout: a silent partition among busy
/// siblings is far more often starved by the broker's fetch order than empty (outlets
/// are spread over every partition), while a sparse stream (credits come once a month)
/// goes quiet as a whole and must not stop the windows from closing. The caller also
/// holds back a candidate with records waiting in the broker, and every partition while
/// the broker is away.
#[derive(Debug)]
pub struct InputClocks {
    idle_timeout: Duration,
    last_delivery: BTreeMap<PartitionId, Instant>,
    idle: BTreeSet<PartitionId>,
}

impl InputClocks {
    pub fn new(idle_timeout: Duration) -> Self {
        InputClocks {
            idle_timeout,
            last_delivery: BTreeMap::new(),
            idle: BTreeSet::new(),
        }
    }

    /// A partition assigned to this router: active until it proves idle.
    pub fn assign(&mut self, pid: PartitionId, now: Instant) {
        self.last_delivery.insert(pid, now);
        self.idle.remove(&pid);
    }

    pub fn revoke(&mut self, pid: PartitionId) {
        self.last_delivery.remove(&pid);
        self.idle.remove(&pid);
    }

    /// Records arrived (or are known to be waiting): the partition is not idle, and its
    /// silence starts again from `now`.
    pub fn hold(&mut self, pid: PartitionId, now: Instant) {
        if let Some(at) = self.last_delivery.get_mut(&pid) {
            *at = now;
            self.idle.remove(&pid);
        }
    }

    /// Every partition is held: silence while the broker is away says nothing about
    /// the sources.
    pub fn hold_all(&mut self, now: Instant) {
        let all: Vec<PartitionId> = self.last_delivery.keys().copied().collect();
        for pid in all {
            self.hold(pid, now);
        }
    }

    /// Partitions not yet declared idle that have been silent long enough, along with
    /// their whole stream, to be declared idle once no backlog holds them.
    pub fn candidates(&self, now: Instant) -> Vec<PartitionId> {
        let silent = |at: &Instant| now.duration_since(*at) >= self.idle_timeout;
        self.last_delivery
            .iter()
            .filter(|(pid, at)| silent(at) && !self.idle.contains(*pid))
            .filter(|((stream, _), _)| {
                self.last_delivery
                    .iter()
                    .filter(|((s, _), _)| s == stream)
                    .all(|(_, at)| silent(at))
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    pub fn declare_idle(&mut self, pid: PartitionId) {
        if self.last_delivery.contains_key(&pid) {
            self.idle.insert(pid);
        }
    }

    /// True when this router has inputs and has declared every one idle.
    pub fn all_idle(&self) -> bool {
        !self.last_delivery.is_empty() && self.last_delivery.keys().all(|p| self.idle.contains(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_the_payload_untouched() {
        let payload = b"{\"a\":\n1}\xff".as_slice();
        for e in [
            Envelope::Record {
                source: (Stream::Transfers, 7),
                offset: 42,
                payload: Some(payload),
                received: Some(1_700_000_000_000_000),
                whole: None,
            },
            Envelope::Record {
                source: (Stream::Outlets, 0),
                offset: 3,
                payload: None,
                received: None,
                whole: None,
            },
            Envelope::Record {
                source: (Stream::Transactions, 1),
                offset: 9,
                payload: Some(payload),
                received: None,
                whole: Some(Whole {
                    length: 2_000_000,
                    sha256: "ab".repeat(32),
                }),
            },
            Envelope::Progress {
                source: (Stream::Disbursements, 2),
                max_event: Some(-5),
                idle: false,
            },
            Envelope::Progress {
                source: (Stream::Transactions, 1),
                max_event: None,
                idle: true,
            },
        ] {
            assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }
        // Records forwarded before receipt times were kept still read.
        assert_eq!(
            Envelope::decode(b"R t 1 2 1\n{}").unwrap(),
            Envelope::Record {
                source: (Stream::Transactions, 1),
                offset: 2,
                payload: Some(b"{}".as_slice()),
                received: None,
                whole: None,
            }
        );
        assert!(Envelope::decode(b"R t 1 2 1 x\n{}").is_err());
        assert!(Envelope::decode(b"no header").is_err());
        assert!(Envelope::decode(b"R q 1 2 1\n{}").is_err());
        assert!(Envelope::decode(b"P t 1 - 2\n").is_err());
    }

    #[test]
    fn a_province_goes_to_one_partition_and_garbage_to_the_first() {
        let serang = br#"{"regency_code":"3604","x":1}"#.as_slice();
        let cilegon = br#"{"regency_code":"3672"}"#.as_slice();
        assert_eq!(
            partition_of(Some(serang), 4),
            partition_of(Some(cilegon), 4)
        );
        assert_eq!(partition_of(Some(serang), 4), 36 % 4);
        assert_eq!(partition_of(Some(br#"{"regency_code":"7371"}"#), 4), 73 % 4);
        assert_eq!(partition_of(Some(b"not json"), 4), 0);
        assert_eq!(partition_of(None, 4), 0);
        assert_eq!(partition_of(Some(br#"{"regency_code":"x"}"#), 4), 0);
    }

    #[test]
    fn a_record_too_large_to_forward_whole_goes_cut_short_with_its_length_and_hash() {
        let huge = vec![0xffu8; 1_048_000];
        let key = vec![b'k'; 5_000];
        let records = [
            InputRecord {
                key: Some(&key),
                payload: Some(&huge),
                offset: 5,
            },
            InputRecord {
                key: Some(b"OUT-1"),
                payload: Some(br#"{"regency_code":"7371"}"#),
                offset: 6,
            },
        ];
        let out = forward((Stream::Transactions, 2), &records, 4, 77);
        assert!(
            out[0].payload.len() < MAX_FORWARDED_BYTES,
            "{}",
            out[0].payload.len()
        );
        assert_eq!(out[0].key.as_ref().unwrap().len(), MAX_KEY_BYTES);
        assert_eq!(out[0].partition, Some(0));
        let Envelope::Record { payload, whole, .. } = Envelope::decode(&out[0].payload).unwrap()
        else {
            panic!("not a record");
        };
        assert_eq!(
            payload.unwrap().len(),
            crate::decode::MAX_DEAD_LETTER_ORIGINAL
        );
        let whole = whole.unwrap();
        assert_eq!(whole.length, 1_048_000);
        assert_eq!(
            whole.sha256,
            pantau_core::text::hex_prefix(&Sha256::digest(&huge), 64)
        );
        let Envelope::Record {
            whole, received, ..
        } = Envelope::decode(&out[1].payload).unwrap()
        else {
            panic!("not a record");
        };
        assert_eq!((whole, received), (None, Some(77)));
        assert_eq!(out[1].partition, Some(73 % 4));
    }

    fn t(n: i32) -> PartitionId {
        (Stream::Transactions, n)
    }

    #[test]
    fn a_partition_is_idle_only_once_its_whole_stream_has_been_silent() {
        let t0 = Instant::now();
        let mut clocks = InputClocks::new(Duration::from_secs(5));
        let d = (Stream::Disbursements, 0);
        for pid in [t(0), t(1), d] {
            clocks.assign(pid, t0);
        }
        assert!(clocks.candidates(t0 + Duration::from_secs(4)).is_empty());
        let later = t0 + Duration::from_secs(6);
        clocks.hold(t(0), later);
        // t(1) is starved among busy siblings; the disbursements went quiet as a whole.
        assert_eq!(clocks.candidates(later), vec![d]);
        clocks.declare_idle(d);
        assert!(clocks.candidates(later).is_empty());
        assert!(!clocks.all_idle());
        let quiet = later + Duration::from_secs(6);
        assert_eq!(clocks.candidates(quiet), vec![t(0), t(1)]);
        clocks.declare_idle(t(0));
        clocks.declare_idle(t(1));
        assert!(clocks.all_idle());
        // Records again: active, and silent from now on.
        clocks.hold(t(1), quiet);
        assert!(!clocks.all_idle());
        assert!(clocks.candidates(quiet + Duration::from_secs(1)).is_empty());
        clocks.revoke(t(1));
        assert!(clocks.all_idle());
    }
}
