//! `alerts.jsonl` and `dlq.jsonl`, one JSON object per line, flushed at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

pub struct JsonLines {
    path: std::path::PathBuf,
    out: BufWriter<File>,
    pub written: u64,
}

impl JsonLines {
    pub fn create(path: &Path) -> Result<JsonLines> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(Error::file("create", parent))?;
        }
        let file = File::create(path).map_err(Error::file("create", path))?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            written: 0,
        })
    }

    pub fn write<T: Serialize>(&mut self, records: &[T]) -> Result<()> {
        for r in records {
            serde_json::to_writer(&mut self.out, r).map_err(|e| match e.io_error_kind() {
                // The writer's own error, with the system's message.
                Some(_) => Error::file("write", &self.path)(e.into()),
                None => Error::Encode {
                    what: "a record",
                    source: e,
                },
            })?;
            self.out
                .write_all(b"\n")
                .map_err(Error::file("write", &self.path))?;
        }
        self.written += records.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(Error::file("write", &self.path))?;
        Ok(())
    }
}

/// Reads a JSON-lines file into records (alerts, truth ...), naming the bad line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(Error::file("read", path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::Record {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// The alert files of a replay: live alerts in the file asked for, alerts of shadow
/// rules in `<name>.shadow.jsonl` beside it (only when the rule set has shadow rules).
pub struct AlertFiles {
    live: JsonLines,
    shadow: Option<JsonLines>,
}

/// `alerts.jsonl` → `alerts.shadow.jsonl`.
pub(crate) fn shadow_path_for(alerts: &Path) -> std::path::PathBuf {
    let stem = alerts
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "alerts".into());
    alerts.with_file_name(format!("{stem}.shadow.jsonl"))
}

impl AlertFiles {
    pub fn create(path: &Path, with_shadow: bool) -> Result<AlertFiles> {
        Ok(AlertFiles {
            live: JsonLines::create(path)?,
            shadow: with_shadow
                .then(|| JsonLines::create(&shadow_path_for(path)))
                .transpose()?,
        })
    }

    pub fn write(&mut self, alerts: &[crate::model::Alert]) -> Result<()> {
        let (shadow, live): (Vec<&crate::model::Alert>, Vec<_>) =
            alerts.iter().partition(|a| a.shadow);
        self.live.write(&live)?;
        match &mut self.shadow {
            Some(out) => out.write(&shadow),
            None if shadow.is_empty() => Ok(()),
            None => Err(Error::ShadowWithoutFile),
        }
    }

    pub fn finish(self) -> Result<()> {
        self.live.finish()?;
        self.shadow.map(JsonLines::finish).transpose()?;
        Ok(())
    }
}
