//! `alerts.jsonl` and `dlq.jsonl`, one JSON object per line, flushed at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

pub struct JsonLines {
    out: BufWriter<File>,
    pub written: u64,
}

impl JsonLines {
    pub fn create(path: &Path) -> anyhow::Result<JsonLines> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(JsonLines {
            out: BufWriter::new(file),
            written: 0,
        })
    }

    pub fn write<T: Serialize>(&mut self, records: &[T]) -> anyhow::Result<()> {
        for r in records {
            serde_json::to_writer(&mut self.out, r)?;
            self.out.write_all(b"\n")?;
        }
        self.written += records.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Reads a JSON-lines file into records (alerts, truth ...), naming the bad line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a valid record", path.display(), i + 1))
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
    pub fn create(path: &Path, with_shadow: bool) -> anyhow::Result<AlertFiles> {
        Ok(AlertFiles {
            live: JsonLines::create(path)?,
            shadow: with_shadow
                .then(|| JsonLines::create(&shadow_path_for(path)))
                .transpose()?,
        })
    }

    pub fn write(&mut self, alerts: &[crate::model::Alert]) -> anyhow::Result<()> {
        let (shadow, live): (Vec<&crate::model::Alert>, Vec<_>) =
            alerts.iter().partition(|a| a.shadow);
        self.live.write(&live)?;
        match &mut self.shadow {
            Some(out) => out.write(&shadow),
            None if shadow.is_empty() => Ok(()),
            None => anyhow::bail!("a shadow alert without a shadow file"),
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        self.live.finish()?;
        self.shadow.map(JsonLines::finish).transpose()?;
        Ok(())
    }
}
