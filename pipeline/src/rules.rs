//! Rules are data: a `.sql` file whose leading `-- key: value` comments are its metadata,
//! run by DataFusion over the tables of a closed window.
//!
//! ```sql
//! -- id: price_markup
//! -- title: Harga di atas median kecamatan
//! -- category: price_markup
//! -- severity: medium
//! -- window: local_day
//! -- entity: outlet
//! -- summary: {outlet_id} menjual {commodity} Rp {outlet_price} ...
//! SELECT outlet_id AS entity_id, regency_code, score, ... FROM transaction_items ...
//! ```
//!
//! A rule's result rows must have `entity_id` (text), `regency_code` (text) and `score`
//! (number); every other column becomes evidence. The version is derived from the file's
//! content, so a changed file is a new version. This module also owns the built-in
//! rollup queries that turn a closed local day into the daily summaries long-horizon
//! rules read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use sha2::{Digest, Sha256};

use crate::model::Severity;
use crate::tables;
use crate::window::WindowSpec;

/// A parsed rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    /// Bahasa Indonesia, may use `{column}` placeholders.
    pub title: String,
    pub category: String,
    pub severity: Severity,
    pub window: WindowSpec,
    /// What `entity_id` names: `outlet`, `terminal`, `ring`, `card` ...
    pub entity_type: String,
    /// Bahasa Indonesia, `{column}` placeholders filled from the result row.
    pub summary: String,
    pub description: String,
    pub owner: String,
    pub sql: String,
    /// First 12 hex digits of the SHA-256 of the file.
    pub version: String,
    pub path: PathBuf,
}

const KEYS: [&str; 9] = [
    "id",
    "title",
    "category",
    "severity",
    "window",
    "entity",
    "summary",
    "description",
    "owner",
];

impl Rule {
    /// Parses a rule file's text; errors name the file, the line and what was expected.
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Rule> {
        let name = path.display();
        let mut meta: BTreeMap<&str, String> = BTreeMap::new();
        let mut sql_lines = Vec::new();
        let mut in_header = true;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if in_header && trimmed.starts_with("--") {
                let body = trimmed.trim_start_matches('-').trim();
                let Some((key, value)) = body.split_once(':') else {
                    continue;
                };
                let key = key.trim();
                if !KEYS.contains(&key) {
                    bail!(
                        "{name}:{}: unknown metadata key {key:?} (expected one of {})",
                        n + 1,
                        KEYS.join(", ")
                    );
                }
                let key = KEYS.iter().find(|k| **k == key).expect("checked above");
                if meta.insert(key, value.trim().to_string()).is_some() {
                    bail!("{name}:{}: metadata key {key:?} given twice", n + 1);
                }
                continue;
            }
            if !trimmed.is_empty() {
                in_header = false;
            }
            sql_lines.push(line);
        }
        let mut take = |key: &str| -> anyhow::Result<String> {
            meta.remove(key)
                .filter(|v| !v.is_empty())
                .with_context(|| format!("{name}: missing metadata line `-- {key}: ...`"))
        };
        let id = take("id")?;
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("{name}: id {id:?} must be lower_snake_case");
        }
        let severity_text = take("severity")?;
        let severity = Severity::parse(&severity_text).with_context(|| {
            format!("{name}: severity {severity_text:?} is not low, medium, high or critical")
        })?;
        let window_text = take("window")?;
        let window: WindowSpec = window_text
            .parse()
            .with_context(|| format!("{name}: bad window"))?;
        let sql = sql_lines.join("\n").trim().to_string();
        if sql.is_empty() {
            bail!("{name}: no SQL after the metadata header");
        }
        let version = hex_prefix(&Sha256::digest(text.as_bytes()), 12);
        Ok(Rule {
            id,
            title: take("title")?,
            category: take("category")?,
            severity,
            window,
            entity_type: take("entity")?,
            summary: take("summary")?,
            description: meta.remove("description").unwrap_or_default(),
            owner: meta.remove("owner").unwrap_or_default(),
            sql,
            version,
            path: path.to_path_buf(),
        })
    }
}

pub fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(n)
        .collect()
}

/// Loads every `*.sql` file of a folder, in file-name order. Duplicate ids are an error.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Rule>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read rules folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    let mut rules: Vec<Rule> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let rule = Rule::parse(&path, &text)?;
        if let Some(other) = rules.iter().find(|r| r.id == rule.id) {
            bail!(
                "rule id {:?} is used by both {} and {}",
                rule.id,
                other.path.display(),
                path.display()
            );
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The rules folder shipped with pantau, for when none is given.
pub fn default_dir() -> PathBuf {
    let beside_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    if Path::new("rules").is_dir() {
        PathBuf::from("rules")
    } else {
        beside_crate
    }
}

/// Built-in queries run when a local day closes; their rows become `outlet_daily` and
/// `disbursement_daily`. Reversed purchases still count as activity: the shop was open.
pub const ROLLUPS: [(&str, &str); 2] = [
    (
        tables::OUTLET_DAILY,
        "SELECT outlet_id, regency_code, local_date,
                sum(CASE WHEN payment = 'KKS' AND type = 'purchase' THEN 1 ELSE 0 END) AS kks_payments,
                count(DISTINCT CASE WHEN payment = 'KKS' THEN card_id END) AS kks_cards,
                sum(CASE WHEN payment = 'KKS' AND type = 'purchase' THEN amount ELSE 0 END) AS kks_amount,
                sum(CASE WHEN payment <> 'KKS' AND type = 'purchase' THEN 1 ELSE 0 END) AS ordinary_payments,
                sum(CASE WHEN payment <> 'KKS' AND type = 'purchase' THEN amount ELSE 0 END) AS ordinary_amount,
                min(occurred_at) AS first_at,
                max(occurred_at) AS last_at
         FROM transactions
         GROUP BY outlet_id, regency_code, local_date
         ORDER BY outlet_id, local_date",
    ),
    (
        tables::DISBURSEMENT_DAILY,
        "SELECT regency_code, bank, local_date,
                count(DISTINCT card_id) AS cards_credited,
                sum(amount) AS amount
         FROM disbursements
         GROUP BY regency_code, bank, local_date
         ORDER BY regency_code, bank, local_date",
    ),
];

/// The schema a table has inside a window: its own columns plus the window bounds.
pub fn windowed_schema(base: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(
        tables::WINDOW_START,
        tables::timestamp_type(),
        false,
    ));
    fields.push(Field::new(
        tables::WINDOW_END,
        tables::timestamp_type(),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// Runs SQL over a window's tables in one DataFusion session.
///
/// Tables are registered once and their contents swapped per window, so a rule's
/// optimized logical plan is made once per rule version and reused for every window;
/// only the physical plan is made per window.
pub struct SqlRunner {
    ctx: SessionContext,
    tables: BTreeMap<&'static str, Arc<MemTable>>,
    plans: std::sync::Mutex<std::collections::HashMap<String, LogicalPlan>>,
}

impl Default for SqlRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlRunner {
    pub fn new() -> Self {
        // One partition: window tables are small, and a single thread per query keeps
        // the other core free for decoding.
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        for udf in crate::udf::all() {
            ctx.register_udf(udf);
        }
        let mut tables = BTreeMap::new();
        for (name, base, _) in tables::catalogue() {
            let table = Arc::new(
                MemTable::try_new(windowed_schema(&base), vec![Vec::new()])
                    .expect("an empty table matches its schema"),
            );
            ctx.register_table(name, table.clone())
                .expect("table names are unique");
            tables.insert(name, table);
        }
        SqlRunner {
            ctx,
            tables,
            plans: Default::default(),
        }
    }

    /// Makes a window's tables the contents of the registered tables; a table the window
    /// has no rows for is empty.
    pub async fn register(
        &self,
        window_tables: &BTreeMap<&'static str, Vec<RecordBatch>>,
    ) -> anyhow::Result<()> {
        for (name, table) in &self.tables {
            let batches: Vec<RecordBatch> = window_tables.get(name).cloned().unwrap_or_default();
            let schema = table.schema();
            if let Some(bad) = batches.iter().find(|b| !schema.contains(&b.schema())) {
                bail!(
                    "table {name}: a batch does not match the table's schema ({:?})",
                    bad.schema()
                );
            }
            *table.batches[0].write().await = batches;
        }
        Ok(())
    }

    pub async fn query(&self, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
        let cached = self.plans.lock().ok().and_then(|p| p.get(sql).cloned());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let plan = self.ctx.sql(sql).await?.into_optimized_plan()?;
                if let Ok(mut plans) = self.plans.lock() {
                    plans.insert(sql.to_string(), plan.clone());
                }
                plan
            }
        };
        let state = self.ctx.state();
        // The plan is already optimized: go straight to physical planning.
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await?;
        datafusion::physical_plan::collect(physical, self.ctx.task_ctx()).await
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "-- id: demo_rule\n-- title: Judul\n-- category: price_markup\n\
        -- severity: medium\n-- window: local_day\n-- entity: outlet\n-- summary: {entity_id}\n\
        SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM transactions\n";

    #[test]
    fn parses_metadata_and_derives_the_version_from_the_content() {
        let r = Rule::parse(Path::new("demo.sql"), RULE).unwrap();
        assert_eq!(r.id, "demo_rule");
        assert_eq!(r.window, WindowSpec::LocalDay);
        assert_eq!(r.severity, Severity::Medium);
        assert!(r.sql.starts_with("SELECT"));
        let changed = Rule::parse(Path::new("demo.sql"), &RULE.replace("1.0", "2.0")).unwrap();
        assert_ne!(r.version, changed.version);
    }

    #[test]
    fn names_the_file_and_line_of_a_bad_header() {
        let err = Rule::parse(
            Path::new("x.sql"),
            &RULE.replace("-- entity: outlet", "-- entiti: outlet"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x.sql:6"), "{err}");
        let err =
            Rule::parse(Path::new("x.sql"), &RULE.replace("local_day", "weekly")).unwrap_err();
        assert!(format!("{err:#}").contains("not one of"), "{err:#}");
    }

    #[test]
    fn shipped_rules_parse() {
        let rules = load_dir(&default_dir()).unwrap();
        assert!(rules.len() >= 3, "{} rules", rules.len());
    }
}
