//! Live changes while `pantau run` runs: the rules folder and the snooze file are looked
//! at every `--reload-interval`; what changed is linted and handed to the engines,
//! which keep their window state.
//!
//! A rule file that fails `rules lint` is refused with its problems in the log, and the
//! version of that file that was running keeps running (a new file that fails is simply
//! not started). A problem in a view or a reference table (`tables/*.csv`) refuses the
//! whole change, since every rule may read it. Each file taken up or refused is counted
//! in `pantau_rule_reloads_total`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::RunMetrics;
use pantau_core::error::chain;
use pantau_engine::lint;
use pantau_engine::reference::ReferenceTable;
use pantau_engine::rules::{self, Rule, RuleSet, View};
use pantau_engine::suppress::SnoozeList;

/// What the engines are to take up.
#[derive(Debug, Clone)]
pub enum Change {
    Rules(RuleSet),
    Snoozes(Arc<SnoozeList>),
}

/// Path → text of every rule, view and reference table file of a folder.
type Files = BTreeMap<PathBuf, String>;

fn read_files(dir: &Path) -> crate::error::Result<Files> {
    let mut files: Files = rules::sql_files(dir)?.into_iter().collect();
    let views = dir.join(rules::VIEWS_DIR);
    if views.is_dir() {
        files.extend(rules::sql_files(&views)?);
    }
    files.extend(rules::table_files(dir)?);
    Ok(files)
}

pub struct Watcher {
    dir: Option<PathBuf>,
    snooze: Option<PathBuf>,
    interval: Duration,
    last_look: Instant,
    files: Files,
    snooze_text: Option<String>,
    current: RuleSet,
}

/// Sets the gauges that say what runs.
pub(crate) fn report_loaded(set: &RuleSet, metrics: &RunMetrics) {
    let shadow = set.rules.iter().filter(|r| r.shadow).count();
    metrics
        .rules_loaded
        .with_label_values(&["live"])
        .set((set.rules.len() - shadow) as i64);
    metrics
        .rules_loaded
        .with_label_values(&["shadow"])
        .set(shadow as i64);
}

impl Watcher {
    /// Starts watching from the rule set already running (read from `dir`).
    pub fn new(
        dir: Option<&Path>,
        snooze: Option<&Path>,
        interval: Duration,
        current: RuleSet,
    ) -> crate::error::Result<Watcher> {
        Ok(Watcher {
            dir: dir.map(Path::to_path_buf),
            snooze: snooze.map(Path::to_path_buf),
            interval,
            last_look: Instant::now(),
            files: match dir {
                Some(dir) => read_files(dir)?,
                None => Files::default(),
            },
            snooze_text: snooze.and_then(|p| std::fs::read_to_string(p).ok()),
            current,
        })
    }

    /// Looks for changes when the interval has passed; returns what the engines must
    /// take up (nothing when nothing changed or every change was refused).
    pub async fn poll(&mut self, now: Instant, metrics: &RunMetrics) -> Vec<Change> {
        if now.duration_since(self.last_look) < self.interval {
            return Vec::new();
        }
        self.last_look = now;
        let mut changes = Vec::new();
        // The built-in rules never change while running.
        if let Some(dir) = self.dir.clone() {
            match read_files(&dir) {
                Ok(files) if files != self.files => {
                    if let Some(set) = self.take_up(&dir, &files, metrics).await {
                        changes.push(Change::Rules(set));
                    }
                    self.files = files;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot read the rules folder; the running rules stay")
                }
            }
        }
        if let Some(path) = &self.snooze {
            match std::fs::read_to_string(path) {
                Ok(text) if Some(&text) != self.snooze_text.as_ref() => {
                    let list = SnoozeList::read(path, &text);
                    for problem in &list.problems {
                        tracing::warn!(%problem, "snooze line ignored");
                    }
                    tracing::info!(entries = list.len(), "snooze list reloaded");
                    metrics.engine.snoozes.set(list.len() as i64);
                    changes.push(Change::Snoozes(Arc::new(list)));
                    self.snooze_text = Some(text);
                }
                Ok(_) => {}
                // Mid-save or moved: keep what is in force rather than lift every snooze.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the snooze file; the snoozes in force stay")
                }
            }
        }
        changes
    }

    /// Lints the folder and builds the rule set to run: changed files that pass, the
    /// previous version of those that do not.
    async fn take_up(
        &mut self,
        dir: &Path,
        files: &Files,
        metrics: &RunMetrics,
    ) -> Option<RuleSet> {
        let (problems, _) = match lint::lint_dir(dir).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "cannot lint the rules folder; the running rules stay");
                return None;
            }
        };
        for p in &problems {
            tracing::error!(problem = %p, "rule change refused");
        }
        let changed: Vec<&PathBuf> = files
            .iter()
            .filter(|(path, text)| self.files.get(*path) != Some(*text))
            .map(|(path, _)| path)
            .chain(self.files.keys().filter(|path| !files.contains_key(*path)))
            .collect();
        let faulty = |path: &Path| problems.iter().any(|p| p.path == path);
        let views_dir = dir.join(rules::VIEWS_DIR);
        let tables_dir = dir.join(rules::TABLES_DIR);
        if problems
            .iter()
            .any(|p| p.path.starts_with(&views_dir) || p.path.starts_with(&tables_dir))
        {
            tracing::error!("a view or reference table failed lint: the whole change is refused, every running rule, view and table stays");
            metrics
                .rule_reloads
                .with_label_values(&["refused"])
                .inc_by(changed.len() as u64);
            return None;
        }
        let mut set = RuleSet::default();
        for (path, text) in files {
            if path.starts_with(&views_dir) {
                match View::parse(path, text) {
                    Ok(view) => set.views.push(view),
                    Err(e) => tracing::error!(error = %chain(&e), "view refused"),
                }
                continue;
            }
            if path.starts_with(&tables_dir) {
                match ReferenceTable::parse(path, text) {
                    Ok(table) => set.tables.push(table),
                    Err(e) => tracing::error!(error = %chain(&e), "reference table refused"),
                }
                continue;
            }
            let previous = self.current.rules.iter().find(|r| &r.path == path);
            if faulty(path) {
                if let Some(old) = previous {
                    tracing::warn!(rule = %old.id, version = %old.version, "keeping the running version");
                    set.rules.push(old.clone());
                }
                continue;
            }
            match Rule::parse(path, text) {
                Ok(rule) => set.rules.push(rule),
                Err(e) => tracing::error!(error = %chain(&e), "rule refused"),
            }
        }
        let mut applied = 0;
        for path in &changed {
            if faulty(path) {
                metrics.rule_reloads.with_label_values(&["refused"]).inc();
                continue;
            }
            applied += 1;
            metrics.rule_reloads.with_label_values(&["applied"]).inc();
            match set.rules.iter().find(|r| &&r.path == path) {
                Some(rule) => {
                    tracing::info!(rule = %rule.id, version = %rule.version, shadow = rule.shadow, path = %path.display(), "rule taken up")
                }
                None if path.starts_with(&tables_dir) && files.contains_key(*path) => {
                    tracing::info!(path = %path.display(), "reference table taken up")
                }
                None if files.contains_key(*path) => {
                    tracing::info!(path = %path.display(), "view taken up")
                }
                None => tracing::info!(path = %path.display(), "rule file removed; its rule stops"),
            }
        }
        if applied == 0 {
            return None;
        }
        report_loaded(&set, metrics);
        self.current = set.clone();
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "-- id: demo_rule\n-- title: Judul {entity_id}\n-- category: price_markup\n\
        -- severity: medium\n-- window: local_day\n-- entity: outlet\n-- summary: {entity_id}\n\
        SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM transactions\n";

    fn watcher(dir: &Path) -> Watcher {
        let set = rules::load_dir(dir).unwrap();
        Watcher::new(Some(dir), None, Duration::ZERO, set).unwrap()
    }

    fn rules_of(changes: &[Change]) -> Option<&RuleSet> {
        changes.iter().find_map(|c| match c {
            Change::Rules(set) => Some(set),
            Change::Snoozes(_) => None,
        })
    }

    #[tokio::test]
    async fn a_changed_rule_is_taken_up_and_a_broken_one_keeps_its_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.sql");
        std::fs::write(&path, RULE).unwrap();
        let metrics = RunMetrics::new();
        let mut w = watcher(dir.path());
        let first = w.current.rules[0].version.clone();
        assert!(w.poll(Instant::now(), &metrics).await.is_empty());

        std::fs::write(&path, RULE.replace("1.0 AS score", "2.0 AS score")).unwrap();
        let changes = w.poll(Instant::now(), &metrics).await;
        let set = rules_of(&changes).expect("the change is taken up");
        let second = set.rules[0].version.clone();
        assert_ne!(second, first);

        std::fs::write(
            &path,
            RULE.replace("FROM transactions", "FROM no_such_table"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("new.sql"),
            RULE.replace("demo_rule", "new_rule"),
        )
        .unwrap();
        let changes = w.poll(Instant::now(), &metrics).await;
        let set = rules_of(&changes).expect("the new file is taken up");
        let versions: Vec<(&str, &str)> = set
            .rules
            .iter()
            .map(|r| (r.id.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(
            versions,
            vec![
                ("demo_rule", second.as_str()),
                ("new_rule", set.rules[1].version.as_str())
            ]
        );
        let count = |outcome: &str| metrics.rule_reloads.with_label_values(&[outcome]).get();
        assert_eq!((count("applied"), count("refused")), (2, 1));

        std::fs::remove_file(dir.path().join("new.sql")).unwrap();
        let changes = w.poll(Instant::now(), &metrics).await;
        let set = rules_of(&changes).expect("the removal is taken up");
        assert_eq!(set.rules.len(), 1);
        assert_eq!(metrics.rules_loaded.with_label_values(&["live"]).get(), 1);
    }

    #[tokio::test]
    async fn a_broken_view_refuses_the_whole_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.sql"), RULE).unwrap();
        let metrics = RunMetrics::new();
        let mut w = watcher(dir.path());
        std::fs::create_dir(dir.path().join("views")).unwrap();
        std::fs::write(
            dir.path().join("views/broken.sql"),
            "-- view: broken\nSELECT nope FROM transactions\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("demo.sql"),
            RULE.replace("1.0 AS score", "3.0 AS score"),
        )
        .unwrap();
        assert!(rules_of(&w.poll(Instant::now(), &metrics).await).is_none());
        assert_eq!(
            metrics.rule_reloads.with_label_values(&["refused"]).get(),
            2
        );
    }

    #[tokio::test]
    async fn an_edited_reference_table_is_taken_up_and_a_broken_one_refuses_the_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.sql"), RULE).unwrap();
        std::fs::create_dir(dir.path().join("tables")).unwrap();
        let zones = dir.path().join("tables/price_zones.csv");
        std::fs::write(&zones, "province_code,zone\n36,1\n").unwrap();
        let metrics = RunMetrics::new();
        let mut w = watcher(dir.path());
        assert_eq!(w.current.tables.len(), 1);

        std::fs::write(&zones, "province_code,zone\n36,1\n94,3\n").unwrap();
        let changes = w.poll(Instant::now(), &metrics).await;
        let set = rules_of(&changes).expect("the edited table is taken up");
        assert_eq!(set.rules.len(), 1);
        assert_eq!(set.tables.len(), 1);
        assert_eq!(set.tables[0].batch.num_rows(), 2);

        std::fs::write(&zones, "province_code,zona\n36,1\n").unwrap();
        assert!(rules_of(&w.poll(Instant::now(), &metrics).await).is_none());
        let count = |outcome: &str| metrics.rule_reloads.with_label_values(&[outcome]).get();
        assert_eq!((count("applied"), count("refused")), (1, 1));
    }

    #[tokio::test]
    async fn an_edited_snooze_file_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.sql"), RULE).unwrap();
        let snooze = dir.path().join("snooze.csv");
        std::fs::write(&snooze, "entity_id,rule_id,until,reason,who\n").unwrap();
        let set = rules::load_dir(dir.path()).unwrap();
        let mut w = Watcher::new(Some(dir.path()), Some(&snooze), Duration::ZERO, set).unwrap();
        let metrics = RunMetrics::new();
        assert!(w.poll(Instant::now(), &metrics).await.is_empty());
        std::fs::write(
            &snooze,
            "entity_id,rule_id,until,reason,who\nO-1,*,2030-01-01,cek,Tikor\n",
        )
        .unwrap();
        let changes = w.poll(Instant::now(), &metrics).await;
        let Some(Change::Snoozes(list)) = changes.first() else {
            panic!("no snooze change: {changes:?}");
        };
        assert!(list.covering("demo_rule", "outlet", "O-1", 0).is_some());
        assert_eq!(metrics.engine.snoozes.get(), 1);
    }
}
