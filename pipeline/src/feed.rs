//! Feeding a history into Kafka the way banks would: every stream merged in event-time
//! order (so a consumer reading while it is fed never sees one stream far ahead of the
//! others), keyed as the contract says, optionally paced.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::DateTime;
use serde::Deserialize;

use crate::model::Stream;
use crate::sink::kafka::{KafkaSink, Outgoing};

#[derive(Deserialize)]
struct Times {
    occurred_at: Option<String>,
    credited_at: Option<String>,
}

/// A record's event time, if readable and plausible: not before the program, not past
/// `latest`. A record with a wrong clock (dated 2099) must not reorder the feed behind
/// it, nor make a paced feed sleep until 2099; pantau dead-letters it anyway.
fn event_time_until(payload: &[u8], latest: i64) -> Option<i64> {
    let t: Times = serde_json::from_slice(payload).ok()?;
    let text = t.occurred_at.or(t.credited_at)?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.timestamp_micros())
        .filter(|t| (crate::decode::PROGRAM_START_US..=latest).contains(t))
}

/// A record's event time, if readable and plausible for a record produced now.
pub fn event_time(payload: &[u8]) -> Option<i64> {
    event_time_until(payload, latest_now())
}

/// The latest plausible event time of a record produced now: a day from now.
fn latest_now() -> i64 {
    (chrono::Utc::now() + chrono::Duration::days(1)).timestamp_micros()
}

/// Orders records of several streams by event time: the registry first, then a merge of
/// the event streams. A record without a readable time (a malformed one) keeps its place
/// behind the record before it in its own stream.
/// One stream's records as (Kafka key, payload), in order.
pub type KeyedRecords = Vec<(String, Vec<u8>)>;

pub fn interleave(streams: Vec<(Stream, KeyedRecords)>) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut queues = Vec::new();
    for (stream, records) in streams {
        if stream == Stream::Outlets {
            out.extend(records.into_iter().map(|(key, payload)| Outgoing {
                topic: stream.topic().to_string(),
                partition: None,
                key: Some(key),
                payload,
            }));
            continue;
        }
        let mut last = i64::MIN;
        let latest = latest_now();
        let timed: Vec<(i64, String, Vec<u8>)> = records
            .into_iter()
            .map(|(key, payload)| {
                last = event_time_until(&payload, latest).unwrap_or(last);
                (last, key, payload)
            })
            .collect();
        queues.push((stream, timed.into_iter().peekable()));
    }
    let mut heap = BinaryHeap::new();
    for (i, (_, q)) in queues.iter_mut().enumerate() {
        if let Some((t, _, _)) = q.peek() {
            heap.push(Reverse((*t, i)));
        }
    }
    while let Some(Reverse((_, i))) = heap.pop() {
        let (stream, q) = &mut queues[i];
        if let Some((_, key, payload)) = q.next() {
            out.push(Outgoing {
                topic: stream.topic().to_string(),
                partition: None,
                key: Some(key),
                payload,
            });
        }
        if let Some((t, _, _)) = q.peek() {
            heap.push(Reverse((*t, i)));
        }
    }
    out
}

/// Produces records in order, `chunk` at a time, calling `before_chunk` first (to pace
/// the feed against a consumer). Returns when every record is acknowledged.
pub async fn produce<F, Fut>(
    sink: &KafkaSink,
    records: &[Outgoing],
    chunk: usize,
    mut before_chunk: F,
) -> anyhow::Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sent = 0;
    for part in records.chunks(chunk.max(1)) {
        before_chunk(sent).await;
        sink.send_all(part).await?;
        sent += part.len();
    }
    Ok(())
}

/// Produces records at `pace` seconds of event time per second of wall-clock time (a
/// live-looking feed for dashboards), in chunks of up to `chunk` records.
pub async fn produce_paced(
    sink: &KafkaSink,
    records: &[Outgoing],
    chunk: usize,
    pace: f64,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let latest = latest_now();
    let first = records
        .iter()
        .find_map(|r| event_time_until(&r.payload, latest));
    produce(sink, records, chunk, |sent| {
        let due = first
            .zip(
                records
                    .get(sent)
                    .and_then(|r| event_time_until(&r.payload, latest)),
            )
            .map(|(first, t)| {
                let event_secs = (t - first).max(0) as f64 / 1e6;
                started + std::time::Duration::from_secs_f64(event_secs / pace)
            });
        async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(field: &str, t: &str) -> (String, Vec<u8>) {
        ("k".into(), format!(r#"{{"{field}":"{t}"}}"#).into_bytes())
    }

    #[test]
    fn merges_streams_by_event_time_with_the_registry_first() {
        let out = interleave(vec![
            (
                Stream::Transactions,
                vec![
                    rec("occurred_at", "2023-01-01T10:00:00+07:00"),
                    ("k".into(), b"{bad".to_vec()),
                    rec("occurred_at", "2099-01-01T10:00:00+07:00"),
                    rec("occurred_at", "2023-01-03T10:00:00+07:00"),
                ],
            ),
            (
                Stream::Disbursements,
                vec![rec("credited_at", "2023-01-02T10:00:00+07:00")],
            ),
            (Stream::Outlets, vec![("o".into(), b"{}".to_vec())]),
        ]);
        let topics: Vec<&str> = out.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(
            topics,
            vec![
                "bpnt.outlets",
                "bpnt.transactions",
                "bpnt.transactions",
                "bpnt.transactions",
                "bpnt.disbursements",
                "bpnt.transactions"
            ]
        );
        assert_eq!(out[2].payload, b"{bad");
        // A clock reading 2099 keeps its place instead of holding its stream back.
        assert!(String::from_utf8_lossy(&out[3].payload).contains("2099"));
    }
}
