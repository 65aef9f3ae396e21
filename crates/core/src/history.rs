//! A history folder (DESIGN.md §3: `transactions.jsonl`, `disbursements.jsonl`,
//! `transfers.jsonl`, `outlets.jsonl`, any of them missing) read as four one-partition
//! streams. The line number is the offset, so a dead letter points at its line. A file
//! may be gzipped (`transactions.jsonl.gz`), as rule fixtures are to stay small in the
//! repository.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::DateTime;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{Outgoing, Stream, PROGRAM_START_US};

struct FileStream {
    stream: Stream,
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    next_line: i64,
    done: bool,
    /// Gzipped: its lines are not counted in the progress, which is in file bytes.
    compressed: bool,
}

/// A chunk of consecutive lines of one file.
pub struct Chunk {
    pub stream: Stream,
    /// Payload and line number (0-based) of each record.
    pub records: Vec<(Vec<u8>, i64)>,
    pub bytes: u64,
}

pub struct FolderSource {
    files: Vec<FileStream>,
    total_bytes: u64,
}

impl FolderSource {
    pub fn open(dir: &Path) -> Result<FolderSource> {
        if !dir.is_dir() {
            return Err(Error::NotAHistory(format!(
                "{} is not a folder",
                dir.display()
            )));
        }
        let mut files = Vec::new();
        let mut total_bytes = 0;
        for stream in Stream::ALL {
            let plain = dir.join(stream.file_name());
            let gzipped = dir.join(format!("{}.gz", stream.file_name()));
            let (path, compressed) = if plain.exists() {
                (plain, false)
            } else if gzipped.exists() {
                (gzipped, true)
            } else {
                continue;
            };
            let file = File::open(&path).map_err(Error::file("open", &path))?;
            let reader: Box<dyn Read + Send> = if compressed {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                total_bytes += file.metadata().map_err(Error::file("read", &path))?.len();
                Box::new(file)
            };
            files.push(FileStream {
                stream,
                path,
                reader: BufReader::with_capacity(1 << 20, reader),
                next_line: 0,
                done: false,
                compressed,
            });
        }
        if files.is_empty() {
            return Err(Error::NotAHistory(format!(
                "{} holds none of transactions.jsonl, disbursements.jsonl, transfers.jsonl, outlets.jsonl (or their .gz)",
                dir.display()
            )));
        }
        Ok(FolderSource { files, total_bytes })
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Streams that still have lines.
    pub fn open_streams(&self) -> Vec<Stream> {
        self.files
            .iter()
            .filter(|f| !f.done)
            .map(|f| f.stream)
            .collect()
    }

    pub fn streams(&self) -> Vec<Stream> {
        self.files.iter().map(|f| f.stream).collect()
    }

    /// Reads up to `max_records` lines of `stream`; `None` once it is exhausted.
    pub fn read(&mut self, stream: Stream, max_records: usize) -> Result<Option<Chunk>> {
        let Some(file) = self
            .files
            .iter_mut()
            .find(|f| f.stream == stream && !f.done)
        else {
            return Ok(None);
        };
        let mut records = Vec::with_capacity(max_records);
        let mut bytes = 0u64;
        while records.len() < max_records {
            let mut line = Vec::new();
            let n = file
                .reader
                .read_until(b'\n', &mut line)
                .map_err(Error::file("read", &file.path))?;
            if n == 0 {
                file.done = true;
                break;
            }
            if !file.compressed {
                bytes += n as u64;
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            records.push((line, file.next_line));
            file.next_line += 1;
        }
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk {
            stream,
            records,
            bytes,
        }))
    }
}

// The order a bank would produce a history in: every stream merged by event time.

#[derive(Deserialize)]
struct Times {
    occurred_at: Option<String>,
    credited_at: Option<String>,
}

/// A record's event time, if readable and plausible: not before the program, not past
/// `latest`. A record with a wrong clock (dated 2099) must not reorder the feed behind
/// it, nor make a paced feed sleep until 2099; pantau dead-letters it anyway.
pub fn event_time_until(payload: &[u8], latest: i64) -> Option<i64> {
    let t: Times = serde_json::from_slice(payload).ok()?;
    let text = t.occurred_at.or(t.credited_at)?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.timestamp_micros())
        .filter(|t| (PROGRAM_START_US..=latest).contains(t))
}

/// A record's event time, if readable and plausible for a record produced now.
pub fn event_time(payload: &[u8]) -> Option<i64> {
    event_time_until(payload, latest_now())
}

/// The latest plausible event time of a record produced now: a day from now.
pub fn latest_now() -> i64 {
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
