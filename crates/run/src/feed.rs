//! Feeding a history into Kafka the way banks would, in the order
//! [`pantau_core::history::interleave`] gives (so a consumer reading while it is fed
//! never sees one stream far ahead of the others), optionally paced.

use pantau_core::history::{event_time_until, latest_now};
use pantau_core::model::Outgoing;
use pantau_kafka::sink::KafkaSink;

use crate::error::Result;

/// Produces records in order, `chunk` at a time, calling `before_chunk` first (to pace
/// the feed against a consumer). Returns when every record is acknowledged.
pub async fn produce<F, Fut>(
    sink: &KafkaSink,
    records: &[Outgoing],
    chunk: usize,
    mut before_chunk: F,
) -> Result<()>
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
) -> Result<()> {
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
