//! Rule checks before anything runs: `pantau rules schema` prints the tables a rule can
//! read, `pantau rules lint DIR` checks a rules folder. A rule passes when its file
//! parses, its SQL plans against those tables (and the folder's views and reference
//! tables, each of which must read with its declared schema), it returns the
//! columns every alert needs with usable types, and every `{column}` its title and
//! summary name is one it returns. Each problem names the file, and where the SQL is
//! at fault, the line and column in that file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::error::DataFusionError;

use crate::alert::REQUIRED_COLUMNS;
use crate::reference::ReferenceTable;
use crate::rules::{self, Rule, SqlRunner, View};
use crate::tables;

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: PathBuf,
    /// Line and column in the file, where known.
    pub at: Option<(u64, u64)>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((line, column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// The tables a rule can read, with their columns and types, as text.
pub fn schema_text() -> String {
    let mut out = String::new();
    let windowed = tables::catalogue()
        .into_iter()
        .map(|(name, base, description)| {
            let schema = if name == tables::OUTLETS {
                base
            } else {
                rules::windowed_schema(&base)
            };
            (name, schema, description.to_string())
        });
    let reference = tables::reference_catalogue()
        .into_iter()
        .map(|(name, schema, description)| {
            let description = format!(
                "{description}; a reference table, not windowed, read from the rules folder's {}/{name}.csv",
                rules::TABLES_DIR
            );
            (name, schema, description)
        });
    for (name, schema, description) in windowed.chain(reference) {
        let _ = writeln!(out, "{name}: {description}");
        for field in schema.fields() {
            let _ = writeln!(
                out,
                "  {:<28} {}{}",
                field.name(),
                type_name(field.data_type()),
                if field.is_nullable() { "" } else { " not null" }
            );
        }
        out.push('\n');
    }
    out
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Int32 | DataType::Int64 => "integer".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone (µs)".into(),
        DataType::Timestamp(_, None) => "timestamp (µs)".into(),
        other => format!("{other}"),
    }
}

/// The line of `text` where `sql` starts, so positions in the SQL become positions in
/// the file (the metadata header comes first).
fn sql_line_offset(text: &str, sql: &str) -> u64 {
    let first = sql.lines().next().unwrap_or_default().trim();
    text.lines()
        .position(|l| l.trim() == first && !first.is_empty())
        .unwrap_or(0) as u64
}

/// Where in the SQL DataFusion places an error: a span from its diagnostics, or the
/// "Line: L, Column: C" its SQL parser writes.
fn error_position(error: &DataFusionError) -> Option<(u64, u64)> {
    if let Some(span) = error.diagnostic().and_then(|d| d.span) {
        return Some((span.start.line, span.start.column));
    }
    let text = error.to_string();
    let rest = &text[text.find("Line: ")? + "Line: ".len()..];
    let (line, rest) = rest.split_once(',')?;
    let column = rest.trim().strip_prefix("Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

fn sql_problem(path: &Path, text: &str, sql: &str, error: &DataFusionError) -> Problem {
    let offset = sql_line_offset(text, sql);
    // An error about the statement as a whole (a refused `COPY`) has no span of its
    // own: it points at the statement's first line.
    // Line 0 is an empty span: no position either.
    let (line, column) = error_position(error)
        .filter(|(line, _)| *line > 0)
        .unwrap_or((1, 1));
    Problem {
        path: path.to_path_buf(),
        at: Some((line + offset, column)),
        message: error.message().to_string(),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

/// What a rule's result must look like: the required columns with usable types, and
/// every placeholder of its texts among its columns.
fn check_output(rule: &Rule, schema: &Schema) -> Vec<String> {
    let mut problems = Vec::new();
    for column in REQUIRED_COLUMNS {
        match schema.field_with_name(column) {
            Err(_) => problems.push(format!(
                "the query returns no `{column}` column (every rule must return {})",
                REQUIRED_COLUMNS.join(", ")
            )),
            Ok(field) => {
                let ok = if column == "score" {
                    is_number(field.data_type())
                } else {
                    is_text(field.data_type())
                };
                if !ok {
                    problems.push(format!(
                        "`{column}` is {}, expected {}",
                        type_name(field.data_type()),
                        if column == "score" {
                            "a number"
                        } else {
                            "text"
                        }
                    ));
                }
            }
        }
    }
    let about_a_person = pantau_core::pseudonym::names_a_person(&rule.entity_type);
    for (what, template) in [("title", &rule.title), ("summary", &rule.summary)] {
        for key in pantau_core::text::placeholders(template) {
            if key != "regency_name" && schema.field_with_name(key).is_err() {
                problems.push(format!(
                    "the {what} names {{{key}}}, which the query does not return"
                ));
            }
            if about_a_person && key == "entity_id" {
                problems.push(format!(
                    "the {what} names {{entity_id}} of a {} alert: a card id is personal data and the Tikor read this text; leave it out (the store and notifications name the card by its keyed reference)",
                    rule.entity_type
                ));
            }
        }
    }
    // Every column but the required ones is evidence, which people read.
    for field in schema.fields() {
        if PERSONAL_COLUMNS.contains(&field.name().as_str()) {
            problems.push(format!(
                "the query returns `{}` as evidence: card ids and KPM identifiers are personal data and must not reach the alert's readers",
                field.name()
            ));
        }
    }
    problems
}

/// Columns that hold personal data: the input's card ids, and KPM identifiers by the
/// names they would have.
const PERSONAL_COLUMNS: [&str; 4] = ["card_id", "kpm_id", "nik", "kks_number"];

/// Checks every rule and view of a folder; returns the problems (none: the folder is
/// good) and how many rules were checked.
pub async fn lint_dir(dir: &Path) -> crate::error::Result<(Vec<Problem>, usize)> {
    let mut problems = Vec::new();
    let runner = SqlRunner::new();
    // Registered before the views, which may read them.
    let mut reference = Vec::new();
    for (path, text) in rules::table_files(dir)? {
        match ReferenceTable::parse(&path, &text) {
            Ok(table) => reference.push(table),
            Err(e) => problems.push(header_problem(&path, &e)),
        }
    }
    runner.set_reference_tables(&reference)?;
    let views_dir = dir.join(rules::VIEWS_DIR);
    let mut pending: Vec<(PathBuf, String, View)> = Vec::new();
    if views_dir.is_dir() {
        for (path, text) in rules::sql_files(&views_dir)? {
            match View::parse(&path, &text) {
                Ok(view) => pending.push((path, text, view)),
                Err(e) => problems.push(header_problem(&path, &e)),
            }
        }
    }
    // Views may read each other: register in rounds until none is left or a round makes
    // no progress (then what failed last is what is wrong).
    while !pending.is_empty() {
        let attempted = pending.len();
        let mut failed = Vec::new();
        for (path, text, view) in pending {
            if let Err(e) = runner.create_view(&view).await {
                failed.push((path, text, view, e));
            }
        }
        if failed.len() == attempted {
            for (path, text, view, e) in failed {
                problems.push(sql_problem(&path, &text, &view.sql, &e));
            }
            break;
        }
        pending = failed
            .into_iter()
            .map(|(path, text, view, _)| (path, text, view))
            .collect();
    }
    let files = rules::sql_files(dir)?;
    let mut ids: Vec<(String, PathBuf)> = Vec::new();
    for (path, text) in &files {
        let rule = match Rule::parse(path, text) {
            Ok(r) => r,
            Err(e) => {
                problems.push(header_problem(path, &e));
                continue;
            }
        };
        if let Some((_, other)) = ids.iter().find(|(id, _)| *id == rule.id) {
            problems.push(Problem {
                path: path.clone(),
                at: None,
                message: format!("rule id {:?} is also used by {}", rule.id, other.display()),
            });
        }
        ids.push((rule.id.clone(), path.clone()));
        let schema = match runner.plan_query(&rule.sql).await {
            Ok(frame) => frame.schema().as_arrow().clone(),
            Err(e) => {
                problems.push(sql_problem(path, text, &rule.sql, &e));
                continue;
            }
        };
        problems.extend(
            check_output(&rule, &schema)
                .into_iter()
                .map(|message| Problem {
                    path: path.clone(),
                    at: None,
                    message,
                }),
        );
    }
    Ok((problems, files.len()))
}

/// A header error already names the file (and line); keep only the rest.
fn header_problem(path: &Path, error: &crate::error::Error) -> Problem {
    let text = crate::error::chain(error);
    let prefix = format!("{}:", path.display());
    let (at, message) = match text.strip_prefix(&prefix) {
        Some(rest) => match rest.split_once(": ") {
            Some((line, message)) if line.parse::<u64>().is_ok() => {
                (line.parse().ok().map(|l| (l, 1)), message.to_string())
            }
            _ => (None, rest.trim_start().to_string()),
        },
        None => (None, text.clone()),
    };
    Problem {
        path: path.to_path_buf(),
        at,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const HEADER: &str = "-- id: {id}
-- title: Uji {entity_id}
-- category: price_markup
-- severity: medium
-- window: local_day
-- entity: outlet
-- summary: Skor {score} di {regency_name}
";

    fn rule(id: &str, sql: &str) -> String {
        format!("{}\n{sql}\n", HEADER.replace("{id}", id))
    }

    #[tokio::test]
    async fn the_shipped_rules_are_clean() {
        let (problems, checked) = lint_dir(&rules::shipped_dir()).await.unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(checked >= 9, "only {checked} rules checked");
    }

    #[tokio::test]
    async fn names_the_file_line_and_column_of_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "good.sql",
            &rule(
                "good",
                "SELECT outlet_id AS entity_id, regency_code, CAST(COUNT(*) AS DOUBLE) AS score\nFROM transactions GROUP BY outlet_id, regency_code",
            ),
        );
        // The typo is on the file's 10th line (8 header lines, a blank, then SQL).
        write(
            dir.path(),
            "typo.sql",
            &rule(
                "typo",
                "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score\nFROM transactions WHERE amount >> > 5",
            ),
        );
        write(
            dir.path(),
            "unknown_column.sql",
            &rule(
                "unknown_column",
                "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score\nFROM transactions WHERE no_such_column > 5",
            ),
        );
        write(
            dir.path(),
            "no_score.sql",
            &rule(
                "no_score",
                "SELECT outlet_id AS entity_id, regency_code, amount AS points FROM transactions",
            ),
        );
        write(
            dir.path(),
            "text_score.sql",
            &rule(
                "text_score",
                "SELECT outlet_id AS entity_id, regency_code, bank AS score FROM transactions",
            ),
        );
        write(
            dir.path(),
            "bad_header.sql",
            "-- id: x\n-- colour: red\nSELECT 1\n",
        );
        let (problems, checked) = lint_dir(dir.path()).await.unwrap();
        assert_eq!(checked, 6);
        let about = |file: &str| -> Vec<&Problem> {
            problems
                .iter()
                .filter(|p| p.path.file_name().unwrap() == file)
                .collect()
        };
        assert!(about("good.sql").is_empty(), "{problems:#?}");
        let typo = about("typo.sql");
        assert_eq!(typo.len(), 1, "{problems:#?}");
        assert_eq!(typo[0].at.map(|(line, _)| line), Some(10), "{}", typo[0]);
        let unknown = about("unknown_column.sql");
        assert_eq!(unknown.len(), 1, "{problems:#?}");
        assert!(
            unknown[0].message.contains("no_such_column"),
            "{}",
            unknown[0]
        );
        let no_score = about("no_score.sql");
        assert!(
            no_score
                .iter()
                .any(|p| p.message.contains("no `score` column")),
            "{problems:#?}"
        );
        assert!(
            about("text_score.sql")
                .iter()
                .any(|p| p.message.contains("`score` is text, expected a number")),
            "{problems:#?}"
        );
        let header = about("bad_header.sql");
        assert_eq!(header.len(), 1, "{problems:#?}");
        assert_eq!(header[0].at, Some((2, 1)));
        assert!(header[0].message.contains("colour"), "{}", header[0]);
    }

    #[tokio::test]
    async fn a_placeholder_the_query_does_not_return_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = rule(
            "placeholder",
            "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM transactions",
        )
        .replace("Skor {score}", "Skor {score} harga {median_price}");
        write(dir.path(), "placeholder.sql", &text);
        let (problems, _) = lint_dir(dir.path()).await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].message.contains("{median_price}"),
            "{}",
            problems[0]
        );
    }

    #[tokio::test]
    async fn ddl_dml_and_statements_are_refused_with_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("written.csv");
        let refused = [
            (
                "external",
                "CREATE EXTERNAL TABLE stolen (a INT) STORED AS CSV LOCATION '/etc/passwd'"
                    .to_string(),
            ),
            (
                "copy",
                format!(
                    "COPY (SELECT * FROM transactions) TO '{}' STORED AS CSV",
                    written.display()
                ),
            ),
            (
                "insert",
                "INSERT INTO transactions SELECT * FROM transactions".to_string(),
            ),
            ("set", "SET datafusion.execution.batch_size = 1".to_string()),
        ];
        for (id, sql) in &refused {
            write(dir.path(), &format!("{id}.sql"), &rule(id, sql));
        }
        std::fs::create_dir(dir.path().join("views")).unwrap();
        write(
            &dir.path().join("views"),
            "sneaky.sql",
            "-- view: sneaky\nSELECT 1 AS a; DROP VIEW other\n",
        );
        let (problems, checked) = lint_dir(dir.path()).await.unwrap();
        assert_eq!(checked, refused.len());
        for (id, _) in &refused {
            let about: Vec<&Problem> = problems
                .iter()
                .filter(|p| p.path.file_name().unwrap().to_string_lossy() == format!("{id}.sql"))
                .collect();
            assert_eq!(about.len(), 1, "{id}: {problems:#?}");
            // The statement starts on the file's 9th line (7 header lines, a blank).
            assert_eq!(about[0].at, Some((9, 1)), "{}", about[0]);
            assert!(about[0].message.contains("not supported"), "{}", about[0]);
        }
        assert!(
            problems
                .iter()
                .any(|p| p.path.ends_with("views/sneaky.sql") && p.at.is_some()),
            "{problems:#?}"
        );
        assert!(!written.exists(), "lint ran the COPY");
    }

    #[tokio::test]
    async fn metadata_that_cannot_be_represented_is_refused_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let sql = "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM transactions";
        let header_with = |id: &str, key: &str, value: &str| {
            rule(id, sql).replacen("-- entity:", &format!("-- {key}: {value}\n-- entity:"), 1)
        };
        write(
            dir.path(),
            "cooldown.sql",
            &header_with("cooldown", "cooldown", "100000000000000000000d"),
        );
        let huge = format!("{}s", "9".repeat(400));
        write(
            dir.path(),
            "budget.sql",
            &header_with("budget", "budget", &huge),
        );
        for (id, window) in [
            ("tumbling", "tumbling 9223372036854775807d"),
            ("hopping", "hopping 100000000000d every 1d"),
            ("days", "local_days 1000000000000000000 every 1"),
        ] {
            write(
                dir.path(),
                &format!("{id}.sql"),
                &rule(id, sql).replace("-- window: local_day", &format!("-- window: {window}")),
            );
        }
        let (problems, checked) = lint_dir(dir.path()).await.unwrap();
        assert_eq!(checked, 5);
        for file in [
            "cooldown.sql",
            "budget.sql",
            "tumbling.sql",
            "hopping.sql",
            "days.sql",
        ] {
            assert!(
                problems.iter().any(|p| p.path.file_name().unwrap() == file),
                "{file} passed: {problems:#?}"
            );
        }
    }

    #[tokio::test]
    async fn a_card_rule_that_would_show_a_card_id_to_people_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let card_rule = |id: &str, summary: &str, sql: &str| {
            rule(id, sql)
                .replace("-- title: Uji {entity_id}", "-- title: Uji kartu")
                .replace("-- entity: outlet", "-- entity: card")
                .replace("Skor {score} di {regency_name}", summary)
        };
        write(
            dir.path(),
            "named.sql",
            &card_rule(
                "named",
                "Kartu {entity_id} di {regency_name}",
                "SELECT card_id AS entity_id, regency_code, 1.0 AS score FROM transactions",
            ),
        );
        write(
            dir.path(),
            "evidence.sql",
            &card_rule(
                "evidence",
                "Kartu di {regency_name}",
                "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score, card_id FROM transactions",
            ),
        );
        write(
            dir.path(),
            "fine.sql",
            &card_rule(
                "fine",
                "Kartu di {regency_name}",
                "SELECT card_id AS entity_id, regency_code, 1.0 AS score FROM transactions",
            ),
        );
        let (problems, _) = lint_dir(dir.path()).await.unwrap();
        let about = |file: &str| {
            problems
                .iter()
                .filter(|p| p.path.file_name().unwrap() == file)
                .count()
        };
        assert_eq!(about("named.sql"), 1, "{problems:#?}");
        assert_eq!(about("evidence.sql"), 1, "{problems:#?}");
        assert_eq!(about("fine.sql"), 0, "{problems:#?}");
        assert!(problems.iter().all(|p| p.message.contains("personal data")));
    }

    #[tokio::test]
    async fn a_rule_reading_reference_prices_lints_clean_and_a_misspelt_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tables_dir = dir.path().join(rules::TABLES_DIR);
        std::fs::create_dir(&tables_dir).unwrap();
        for name in ["reference_prices.csv", "price_zones.csv"] {
            std::fs::copy(
                rules::shipped_dir().join(rules::TABLES_DIR).join(name),
                tables_dir.join(name),
            )
            .unwrap();
        }
        let over_het = "SELECT i.outlet_id AS entity_id, i.regency_code, \
             CAST(max(i.unit_price) AS DOUBLE) AS score, max(r.price) AS het\n\
             FROM transaction_items i\n\
             JOIN price_zones z ON starts_with(i.regency_code, z.province_code)\n\
             JOIN reference_prices r ON r.zone = z.zone AND r.commodity = i.commodity\n\
             WHERE r.grade = 'premium' AND r.valid_from <= i.local_date \
             AND (r.valid_to IS NULL OR r.valid_to >= i.local_date)\n\
             GROUP BY i.outlet_id, i.regency_code";
        write(dir.path(), "over_het.sql", &rule("over_het", over_het));
        write(
            dir.path(),
            "typo.sql",
            &rule("typo", &over_het.replace("r.grade", "r.grad")),
        );
        let (problems, checked) = lint_dir(dir.path()).await.unwrap();
        assert_eq!(checked, 2);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].path.ends_with("typo.sql"), "{}", problems[0]);
        assert!(problems[0].message.contains("grad"), "{}", problems[0]);
        // The WHERE is the SQL's 5th line, after 7 header lines and a blank.
        assert_eq!(
            problems[0].at.map(|(line, _)| line),
            Some(13),
            "{}",
            problems[0]
        );

        // A bad value in a reference table is a problem at its line.
        let prices = tables_dir.join("reference_prices.csv");
        let text = std::fs::read_to_string(&prices).unwrap();
        std::fs::write(&prices, text.replacen("2017-09-01", "2017-09-31", 1)).unwrap();
        let (problems, _) = lint_dir(dir.path()).await.unwrap();
        let about_prices: Vec<&Problem> = problems.iter().filter(|p| p.path == prices).collect();
        assert_eq!(about_prices.len(), 1, "{problems:#?}");
        assert_eq!(about_prices[0].at, Some((2, 1)));
        assert!(
            about_prices[0]
                .message
                .contains("column valid_from: \"2017-09-31\""),
            "{}",
            about_prices[0]
        );
    }

    #[test]
    fn the_schema_lists_every_table_with_typed_columns() {
        let text = schema_text();
        for (name, _, _) in tables::catalogue()
            .into_iter()
            .chain(tables::reference_catalogue())
        {
            assert!(text.contains(&format!("{name}: ")), "{name} missing");
        }
        assert!(
            text.contains(
                "; a reference table, not windowed, read from the rules folder's tables/reference_prices.csv"
            ),
            "{text}"
        );
        assert!(text.contains("window_start"));
        assert!(text.contains("amount"));
        assert!(text.contains("integer"));
    }
}
