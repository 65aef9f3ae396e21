//! A history folder (DESIGN.md §3: `transactions.jsonl`, `disbursements.jsonl`,
//! `transfers.jsonl`, `outlets.jsonl`, any of them missing) read as four one-partition
//! streams. The line number is the offset, so a dead letter points at its line. A file
//! may be gzipped (`transactions.jsonl.gz`), as rule fixtures are to stay small in the
//! repository.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;

use crate::model::Stream;

struct FileStream {
    stream: Stream,
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
    pub fn open(dir: &Path) -> anyhow::Result<FolderSource> {
        if !dir.is_dir() {
            anyhow::bail!("{} is not a folder", dir.display());
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
            let file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let reader: Box<dyn Read + Send> = if compressed {
                Box::new(flate2::read::GzDecoder::new(file))
            } else {
                total_bytes += file.metadata()?.len();
                Box::new(file)
            };
            files.push(FileStream {
                stream,
                reader: BufReader::with_capacity(1 << 20, reader),
                next_line: 0,
                done: false,
                compressed,
            });
        }
        if files.is_empty() {
            anyhow::bail!(
                "{} holds none of transactions.jsonl, disbursements.jsonl, transfers.jsonl, outlets.jsonl (or their .gz)",
                dir.display()
            );
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
    pub fn read(&mut self, stream: Stream, max_records: usize) -> anyhow::Result<Option<Chunk>> {
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
                .with_context(|| format!("reading {}", stream.file_name()))?;
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
