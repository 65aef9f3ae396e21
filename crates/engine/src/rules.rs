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
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::reference::ReferenceTable;
use crate::slot_table::SlotTable;
use crate::tables;
use crate::window::WindowSpec;
use pantau_core::model::Severity;
use pantau_core::text::hex_prefix;

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
    /// `-- mode: shadow`: the rule runs and is counted, but its alerts go to the shadow
    /// topic (`pantau.alerts.shadow`) and notify no one.
    pub shadow: bool,
    /// `-- cooldown: 7d`: after an alert on an entity, that entity's next detections
    /// within this long are suppressed (counted); zero raises every window.
    pub cooldown: Duration,
    /// `-- budget: 5s`: the longest one window's run may take; overrides
    /// `--rule-budget`.
    pub budget: Option<Duration>,
}

const KEYS: [&str; 12] = [
    "id",
    "title",
    "category",
    "severity",
    "window",
    "entity",
    "summary",
    "description",
    "owner",
    "mode",
    "cooldown",
    "budget",
];

/// A shared query in the rules folder's `views/` subfolder, registered under its name so
/// several rules can read one definition (e.g. the robust price comparison that both
/// price markup and short quantity start from).
///
/// ```sql
/// -- view: commodity_prices
/// -- description: per outlet and commodity, its median price against the district's
/// SELECT ...
/// ```
#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub description: String,
    pub sql: String,
    pub path: PathBuf,
}

/// What a rules folder holds: its rules, the views they share and the reference tables
/// (`tables/*.csv`) they read.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub views: Vec<View>,
    pub tables: Vec<ReferenceTable>,
}

/// Splits a `.sql` file into its leading `-- key: value` lines and the SQL after them.
/// Errors name the file and line of an unknown or repeated key.
fn split_header<'k>(
    path: &Path,
    text: &str,
    keys: &[&'k str],
) -> Result<(BTreeMap<&'k str, String>, String)> {
    let mut meta: BTreeMap<&'k str, String> = BTreeMap::new();
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
            let Some(key) = keys.iter().find(|k| **k == key) else {
                return Err(Error::header(
                    path,
                    Some(n + 1),
                    format!(
                        "unknown metadata key {key:?} (expected one of {})",
                        keys.join(", ")
                    ),
                ));
            };
            if meta.insert(key, value.trim().to_string()).is_some() {
                return Err(Error::header(
                    path,
                    Some(n + 1),
                    format!("metadata key {key:?} given twice"),
                ));
            }
            continue;
        }
        if !trimmed.is_empty() {
            in_header = false;
        }
        sql_lines.push(line);
    }
    let sql = sql_lines.join("\n").trim().to_string();
    if sql.is_empty() {
        return Err(Error::header(
            path,
            None,
            "no SQL after the metadata header",
        ));
    }
    Ok((meta, sql))
}

fn check_snake_case(path: &Path, what: &str, id: &str) -> Result<()> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(Error::header(
            path,
            None,
            format!("{what} {id:?} must be lower_snake_case"),
        ));
    }
    Ok(())
}

impl Rule {
    /// Parses a rule file's text; errors name the file, the line and what was expected.
    pub fn parse(path: &Path, text: &str) -> Result<Rule> {
        let bad = |problem: String| Error::header(path, None, problem);
        let (mut meta, sql) = split_header(path, text, &KEYS)?;
        let mut take = |key: &str| -> Result<String> {
            meta.remove(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("missing metadata line `-- {key}: ...`")))
        };
        let id = take("id")?;
        check_snake_case(path, "id", &id)?;
        let severity_text = take("severity")?;
        let severity = Severity::parse(&severity_text).ok_or_else(|| {
            bad(format!(
                "severity {severity_text:?} is not low, medium, high or critical"
            ))
        })?;
        let window_text = take("window")?;
        let window: WindowSpec = window_text.parse().map_err(|source| Error::RuleWindow {
            path: path.to_path_buf(),
            source,
        })?;
        let version = hex_prefix(&Sha256::digest(text.as_bytes()), 12);
        let title = take("title")?;
        let category = take("category")?;
        let entity_type = take("entity")?;
        let summary = take("summary")?;
        let shadow = match meta.remove("mode").as_deref() {
            None | Some("live") => false,
            Some("shadow") => true,
            Some(other) => return Err(bad(format!("mode {other:?} is not live or shadow"))),
        };
        let mut duration = |key: &str| -> Result<Option<Duration>> {
            meta.remove(key)
                .map(|text| {
                    pantau_core::text::parse_duration(&text).map_err(|e| bad(format!("{key}: {e}")))
                })
                .transpose()
        };
        let cooldown = duration("cooldown")?.unwrap_or_default();
        let budget = duration("budget")?;
        if budget.is_some_and(|b| b.is_zero()) {
            return Err(bad("budget must be more than zero".into()));
        }
        Ok(Rule {
            id,
            title,
            category,
            severity,
            window,
            entity_type,
            summary,
            description: meta.remove("description").unwrap_or_default(),
            owner: meta.remove("owner").unwrap_or_default(),
            sql,
            version,
            path: path.to_path_buf(),
            shadow,
            cooldown,
            budget,
        })
    }
}

impl View {
    pub fn parse(path: &Path, text: &str) -> Result<View> {
        let (mut meta, sql) = split_header(path, text, &["view", "description"])?;
        let name = meta.remove("view").unwrap_or_default();
        if name.is_empty() {
            return Err(Error::header(
                path,
                None,
                "missing metadata line `-- view: name`",
            ));
        }
        check_snake_case(path, "view name", &name)?;
        Ok(View {
            name,
            description: meta.remove("description").unwrap_or_default(),
            sql,
            path: path.to_path_buf(),
        })
    }
}

/// Every `*.sql` file of a folder with its text, in file-name order.
pub fn sql_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    files_ending(dir, "sql")
}

fn files_ending(dir: &Path, extension: &str) -> Result<Vec<(PathBuf, String)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::RulesFolder {
            dir: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(source) => return Err(Error::RuleFile { path, source }),
            };
            Ok((path, text))
        })
        .collect()
}

/// The subfolders of a rules folder holding its views and its reference tables.
pub const VIEWS_DIR: &str = "views";
pub const TABLES_DIR: &str = "tables";

/// Loads every `*.sql` file of a folder as a rule, in file-name order, every
/// `views/*.sql` as a view and every `tables/*.csv` as a reference table. Duplicate ids
/// or view names, a view named like a table, or a CSV that is not a known reference
/// table are errors.
pub fn load_dir(dir: &Path) -> Result<RuleSet> {
    let views_dir = dir.join(VIEWS_DIR);
    let views = if views_dir.is_dir() {
        sql_files(&views_dir)?
    } else {
        Vec::new()
    };
    load_files(sql_files(dir)?, views, table_files(dir)?)
}

/// Every `tables/*.csv` of a rules folder with its text; none when it has no `tables/`.
pub fn table_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let tables_dir = dir.join(TABLES_DIR);
    if tables_dir.is_dir() {
        files_ending(&tables_dir, "csv")
    } else {
        Ok(Vec::new())
    }
}

fn load_files(
    rule_files: Vec<(PathBuf, String)>,
    view_files: Vec<(PathBuf, String)>,
    table_files: Vec<(PathBuf, String)>,
) -> Result<RuleSet> {
    let tables = table_files
        .iter()
        .map(|(path, text)| ReferenceTable::parse(path, text))
        .collect::<Result<Vec<_>>>()?;
    let mut rules: Vec<Rule> = Vec::new();
    for (path, text) in rule_files {
        let rule = Rule::parse(&path, &text)?;
        if let Some(other) = rules.iter().find(|r| r.id == rule.id) {
            return Err(Error::DuplicateRule {
                id: rule.id,
                first: other.path.clone(),
                second: path,
            });
        }
        rules.push(rule);
    }
    let mut views: Vec<View> = Vec::new();
    for (path, text) in view_files {
        let view = View::parse(&path, &text)?;
        if tables::schema_of(&view.name).is_some()
            || tables::reference_schema_of(&view.name).is_some()
        {
            return Err(Error::header(
                &path,
                None,
                format!("view name {:?} is already a table", view.name),
            ));
        }
        if let Some(other) = views.iter().find(|v| v.name == view.name) {
            return Err(Error::DuplicateView {
                name: view.name,
                first: other.path.clone(),
                second: path,
            });
        }
        views.push(view);
    }
    Ok(RuleSet {
        rules,
        views,
        tables,
    })
}

mod built_in {
    include!(concat!(env!("OUT_DIR"), "/built_in_rules.rs"));
}

/// The rules folder of this source tree, for tests.
#[cfg(test)]
pub(crate) fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

/// Where the rules a command runs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Folder(PathBuf),
    /// The rules folder of the source tree this binary was built from, as it was then.
    BuiltIn,
}

/// The folder looked for when `--rules` is not given.
pub(crate) const DEFAULT_DIR: &str = "rules";

impl Location {
    /// `--rules` (or `PANTAU_RULES`) when given; else `./rules` when it exists; else
    /// the rules built into the binary.
    pub fn resolve(given: Option<&Path>) -> Location {
        match pantau_core::bundled::folder_to_read(given, DEFAULT_DIR) {
            Some(dir) => Location::Folder(dir),
            None => Location::BuiltIn,
        }
    }

    pub fn folder(&self) -> Option<&Path> {
        match self {
            Location::Folder(dir) => Some(dir),
            Location::BuiltIn => None,
        }
    }

    /// Loads the rule set, saying at info level where it came from.
    pub fn load(&self) -> Result<RuleSet> {
        let set = match self {
            Location::Folder(dir) => load_dir(dir)?,
            Location::BuiltIn => {
                let files = |table: &[(&str, &str)]| {
                    table
                        .iter()
                        .map(|(name, text)| (Path::new("<built-in>").join(name), text.to_string()))
                        .collect()
                };
                load_files(
                    files(built_in::BUILT_IN_RULES),
                    files(built_in::BUILT_IN_VIEWS),
                    files(built_in::BUILT_IN_TABLES),
                )?
            }
        };
        tracing::info!(rules = set.rules.len(), reference_tables = set.tables.len(), from = %self, "rules loaded");
        Ok(set)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Folder(dir) => write!(f, "{}", dir.display()),
            Location::BuiltIn => write!(f, "the rules built into this binary (no ./rules folder)"),
        }
    }
}

/// Built-in queries run when a local day closes; their rows become the daily rollups
/// of `tables::ROLLUP_TABLES`. Reversed purchases still count as activity (the shop was
/// open) and as baskets; a card's `spent` nets them out.
pub(crate) const ROLLUPS: [(&str, &str); 5] = [
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
    (
        tables::CARD_DAILY,
        "WITH spend AS (
             SELECT card_id, regency_code, bank, local_date,
                    first_value(outlet_id ORDER BY amount DESC, outlet_id) AS outlet_id,
                    count(DISTINCT outlet_id) AS outlets,
                    sum(CASE WHEN type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
                    sum(CASE WHEN type = 'purchase' THEN amount ELSE -amount END) AS spent
             FROM transactions
             WHERE payment = 'KKS'
             GROUP BY card_id, regency_code, bank, local_date
         ),
         credit AS (
             SELECT card_id, regency_code, bank, local_date,
                    sum(amount) AS credited, max(period) AS period, max(months) AS months
             FROM disbursements
             GROUP BY card_id, regency_code, bank, local_date
         )
         SELECT coalesce(s.card_id, c.card_id) AS card_id,
                coalesce(s.regency_code, c.regency_code) AS regency_code,
                coalesce(s.bank, c.bank) AS bank,
                coalesce(s.local_date, c.local_date) AS local_date,
                s.outlet_id,
                coalesce(s.outlets, 0) AS outlets,
                coalesce(s.purchases, 0) AS purchases,
                coalesce(s.spent, 0) AS spent,
                coalesce(c.credited, 0) AS credited,
                c.period,
                CAST(c.months AS BIGINT) AS months
         FROM spend s
         FULL OUTER JOIN credit c
           ON c.card_id = s.card_id AND c.local_date = s.local_date
          AND c.regency_code = s.regency_code AND c.bank = s.bank
         ORDER BY card_id, local_date",
    ),
    (
        tables::OUTLET_BUNDLE_DAILY,
        "WITH baskets AS (
             SELECT outlet_id, regency_code, local_date,
                    string_agg(commodity || ' ' || CAST(qty AS VARCHAR), ', '
                               ORDER BY commodity, qty) AS basket,
                    sum(qty * unit_price) AS amount
             FROM transaction_items
             WHERE payment = 'KKS'
             GROUP BY outlet_id, regency_code, local_date, bank, txn_id
         )
         SELECT outlet_id, regency_code, local_date, basket,
                count(*) AS purchases,
                CAST(round(sum(amount)) AS BIGINT) AS amount
         FROM baskets
         GROUP BY outlet_id, regency_code, local_date, basket
         ORDER BY outlet_id, basket",
    ),
    (
        tables::OUTLET_TRANSFER_DAILY,
        "SELECT outlet_id, regency_code, counterparty_id, local_date,
                count(*) AS transfers,
                sum(amount) AS amount
         FROM transfers
         GROUP BY outlet_id, regency_code, counterparty_id, local_date
         ORDER BY outlet_id, counterparty_id",
    ),
];

/// The schema a table has inside a window: its own columns plus the window bounds.
pub(crate) fn windowed_schema(base: &SchemaRef) -> SchemaRef {
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

/// Casts a query's result to a declared table schema, column by column and by name, so a
/// DataFusion change in an aggregate's output type cannot break the table contract.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                Error::Invariant(format!(
                    "result has no column {:?} for the table",
                    field.name()
                ))
            })?;
            Ok(datafusion::arrow::compute::cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Runs SQL over a window's tables in one DataFusion session.
///
/// Tables are registered once as slots whose rows are swapped per window, so a rule is
/// planned (logically and physically) once per rule version; each window only resets
/// the plan's execution state and runs it.
pub struct SqlRunner {
    ctx: SessionContext,
    tables: BTreeMap<&'static str, Arc<SlotTable>>,
    plans: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn ExecutionPlan>>>,
}

impl Default for SqlRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlRunner {
    pub fn new() -> Self {
        // One partition: window tables are small, and a single thread per query keeps
        // the other core free for decoding. Dynamic filters are off because they tie a
        // physical plan to one execution, and plans here are re-run on every window.
        let mut config = SessionConfig::new()
            .with_target_partitions(1)
            .with_information_schema(false);
        // Planning errors then say where in the SQL they are (`pantau rules lint`).
        config.options_mut().sql_parser.collect_spans = true;
        config
            .options_mut()
            .optimizer
            .enable_dynamic_filter_pushdown = false;
        config
            .options_mut()
            .optimizer
            .enable_join_dynamic_filter_pushdown = false;
        config
            .options_mut()
            .optimizer
            .enable_topk_dynamic_filter_pushdown = false;
        config
            .options_mut()
            .optimizer
            .enable_aggregate_dynamic_filter_pushdown = false;
        let ctx = SessionContext::new_with_config(config);
        for udf in crate::udf::all() {
            ctx.register_udf(udf);
        }
        let mut tables = BTreeMap::new();
        for (name, base, _) in tables::catalogue() {
            let table = Arc::new(SlotTable::new(windowed_schema(&base)));
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
    pub fn register(&self, window_tables: &BTreeMap<&'static str, Vec<RecordBatch>>) -> Result<()> {
        for (name, table) in &self.tables {
            let batches: Vec<RecordBatch> = window_tables.get(name).cloned().unwrap_or_default();
            let schema = table.schema();
            if let Some(bad) = batches.iter().find(|b| !schema.contains(&b.schema())) {
                return Err(Error::Invariant(format!(
                    "table {name}: a batch does not match the table's schema ({:?})",
                    bad.schema()
                )));
            }
            table.set(batches);
        }
        Ok(())
    }

    /// Plans rule or view SQL as a query and nothing else: DDL (`CREATE EXTERNAL TABLE`,
    /// `CREATE VIEW`), DML (`INSERT`, `COPY`) and statements (`SET`) are refused before
    /// anything runs, so a rule file can read the window's tables and change nothing.
    pub async fn plan_query(&self, sql: &str) -> datafusion::error::Result<DataFrame> {
        let query_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.ctx.sql_with_options(sql, query_only).await
    }

    /// Registers a view; its plan reads the registered tables, so it sees each window's
    /// contents. The view's SQL must be a query ([`SqlRunner::plan_query`]).
    pub async fn create_view(&self, view: &View) -> datafusion::error::Result<()> {
        self.plan_query(&view.sql).await?;
        self.ctx
            .sql(&format!("CREATE VIEW {} AS {}", view.name, view.sql))
            .await?;
        Ok(())
    }

    pub async fn query(&self, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
        let cached = self.plans.lock().ok().and_then(|p| p.get(sql).cloned());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let plan = self.plan_query(sql).await?.create_physical_plan().await?;
                if let Ok(mut plans) = self.plans.lock() {
                    plans.insert(sql.to_string(), plan.clone());
                }
                plan
            }
        };
        // Joins and sorts keep what they built in the plan: start each run afresh.
        let plan = reset_plan_states(plan)?;
        datafusion::physical_plan::collect(plan, self.ctx.task_ctx()).await
    }

    /// Makes a rule set's reference tables the registered ones: each replaces the table
    /// of its name, and a reference table the set no longer has is dropped (the rules
    /// reading it then fail, and are counted, as rules reading a missing view do).
    /// Called before the set's views are created, which may read them.
    pub fn set_reference_tables(&self, reference: &[ReferenceTable]) -> Result<()> {
        let register = || -> datafusion::error::Result<()> {
            for (name, _, _) in tables::reference_catalogue() {
                self.ctx.deregister_table(name)?;
            }
            for table in reference {
                self.ctx.register_batch(table.name, table.batch.clone())?;
            }
            Ok(())
        };
        // Only a name already taken could refuse this, and a view named like a reference
        // table is refused when its set is loaded.
        register()
            .map_err(|e| Error::Invariant(format!("registering the reference tables: {e}")))?;
        // A cached plan holds the rows of the table it was planned against.
        self.forget_plans();
        Ok(())
    }

    /// Drops every cached plan: after a reload a rule's plan may embed an old view.
    pub(crate) fn forget_plans(&self) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.clear();
        }
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

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
        let text = crate::error::chain(&err);
        assert!(text.contains("not one of"), "{text}");
    }

    #[test]
    fn shipped_rules_parse() {
        let set = load_dir(&shipped_dir()).unwrap();
        assert!(set.rules.len() >= 3, "{} rules", set.rules.len());
        let tables: Vec<&str> = set.tables.iter().map(|t| t.name).collect();
        assert_eq!(
            tables,
            vec![
                tables::PRICE_ZONES,
                tables::PROGRAM_NORMS,
                tables::REFERENCE_PRICES
            ]
        );
    }

    #[test]
    fn a_binary_without_the_folder_has_the_reference_tables_built_in() {
        let built_in = Location::BuiltIn.load().unwrap();
        let shipped = load_dir(&shipped_dir()).unwrap();
        assert_eq!(built_in.tables.len(), shipped.tables.len());
        for (b, s) in built_in.tables.iter().zip(&shipped.tables) {
            assert_eq!((b.name, &b.batch), (s.name, &s.batch));
        }
    }

    /// A rules folder with the shipped reference tables and nothing else.
    fn folder_with_reference_tables() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
        for name in ["reference_prices.csv", "price_zones.csv"] {
            std::fs::copy(
                shipped_dir().join(TABLES_DIR).join(name),
                dir.path().join(TABLES_DIR).join(name),
            )
            .unwrap();
        }
        dir
    }

    fn first_value(batches: &[RecordBatch]) -> String {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1, "{batches:?}");
        let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
        datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
    }

    #[tokio::test]
    async fn a_rules_folders_reference_tables_answer_the_rice_het_through_the_rule_runner() {
        let dir = folder_with_reference_tables();
        let set = load_dir(dir.path()).unwrap();
        assert!(set.rules.is_empty() && set.views.is_empty());
        let runner = SqlRunner::new();
        runner.set_reference_tables(&set.tables).unwrap();
        let het = runner
            .query(
                "SELECT price FROM reference_prices WHERE commodity='BERAS' AND grade='premium' \
                 AND zone='1' AND valid_from <= DATE '2023-06-01' \
                 AND (valid_to IS NULL OR valid_to >= DATE '2023-06-01')",
            )
            .await
            .unwrap();
        assert_eq!(het[0].schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(first_value(&het), "13900");
        // Banten (36) is zone 1; Papua (94) zone 3, where the premium ceiling still in
        // force is 15800.
        let papua = runner
            .query(
                "SELECT r.price FROM price_zones z JOIN reference_prices r ON r.zone = z.zone \
                 WHERE z.province_code = '94' AND r.grade = 'premium' AND r.valid_to IS NULL",
            )
            .await
            .unwrap();
        assert_eq!(first_value(&papua), "15800");
    }

    #[test]
    fn an_unknown_csv_in_a_rules_folders_tables_is_refused_naming_it() {
        let dir = folder_with_reference_tables();
        let stray = dir.path().join(TABLES_DIR).join("harga_telur.csv");
        std::fs::write(&stray, "commodity,price\nTELUR,30000\n").unwrap();
        let e = load_dir(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: no reference table is called \"harga_telur\" (known: reference_prices, price_zones, program_norms)",
                stray.display()
            )
        );
        assert_eq!(
            pantau_core::error::Recoverable::recovery(&e),
            pantau_core::error::Recovery::Stop
        );
    }

    #[test]
    fn a_view_named_like_a_reference_table_is_refused() {
        let dir = folder_with_reference_tables();
        std::fs::create_dir(dir.path().join(VIEWS_DIR)).unwrap();
        std::fs::write(
            dir.path().join(VIEWS_DIR).join("prices.sql"),
            "-- view: reference_prices\nSELECT 1 AS price\n",
        )
        .unwrap();
        let e = load_dir(dir.path()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("prices.sql: view name \"reference_prices\" is already a table"),
            "{e}"
        );
    }
}
