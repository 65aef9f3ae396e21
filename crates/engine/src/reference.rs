//! Reference tables: small static tables a rules folder ships beside its rules as
//! `tables/NAME.csv` (the official rice price ceilings and the egg and chicken reference
//! prices, the HET zone of each province, the program's norms), which rules and views
//! read by name.
//!
//! Each file is read with the schema [`tables`] declares for its name, never an inferred
//! one: a rule comparing `price` gets an integer whatever the file holds, and a file that
//! does not fit is refused with the line, column and value at fault, as a bad rule file
//! is. The CSV itself is split by arrow's reader into text columns; each column is then
//! cast to its declared type here, so a value that does not convert can be named (the
//! reader's own conversion error gives neither the column's name nor the file's line).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::{cast_with_options, concat_batches, CastOptions};
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::tables;

/// One reference table as read from its file.
#[derive(Debug, Clone)]
pub struct ReferenceTable {
    /// The table's name in SQL: the file's stem.
    pub name: &'static str,
    pub path: PathBuf,
    pub batch: RecordBatch,
}

/// The reference tables pantau declares, for messages.
fn known() -> String {
    tables::reference_catalogue()
        .iter()
        .map(|(name, _, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ReferenceTable {
    /// Reads one `tables/NAME.csv`: a header naming the declared columns in order, then
    /// one row per line. An empty field is null; in a column that may not be null it is
    /// an error, as is a value that is not of the column's type (dates as YYYY-MM-DD).
    pub fn parse(path: &Path, text: &str) -> Result<ReferenceTable> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some((name, schema, _)) = tables::reference_catalogue()
            .into_iter()
            .find(|(name, _, _)| *name == stem)
        else {
            return Err(Error::UnknownReferenceTable {
                path: path.to_path_buf(),
                name: stem.to_string(),
                known: known(),
            });
        };
        // A spreadsheet saving as UTF-8 CSV may start the file with a byte-order mark,
        // which would otherwise be part of the first column's name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim().is_empty() {
            let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::header(
                path,
                Some(1),
                format!("empty file: expected the header {}", header.join(",")),
            ));
        }
        let text_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let csv = |source| Error::ReferenceCsv {
            path: path.to_path_buf(),
            table: name,
            source,
        };
        let reader = ReaderBuilder::new(text_schema.clone())
            .with_header(true)
            .with_header_validation(true)
            .build(text.as_bytes())
            .map_err(csv)?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(csv)?;
        let text_batch = concat_batches(&text_schema, &batches).map_err(csv)?;
        let columns = schema
            .fields()
            .iter()
            .zip(text_batch.columns())
            .map(|(field, column)| typed(path, field, column))
            .collect::<Result<Vec<_>>>()?;
        Ok(ReferenceTable {
            name,
            path: path.to_path_buf(),
            batch: RecordBatch::try_new(schema, columns)?,
        })
    }
}

/// `dddd-dd-dd`: arrow's date parser also takes `20230601` and a date with a time, which
/// in a table of dates in force is more likely a slip than a choice.
fn is_iso_date(text: &str) -> bool {
    text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// One column's text as its declared type; the first value that does not fit is an
/// error naming the file, its line (the header is line 1) and the column.
fn typed(path: &Path, field: &Field, column: &ArrayRef) -> Result<ArrayRef> {
    let text = column
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Invariant(format!("column {} was not read as text", field.name())))?;
    let converted = if field.data_type() == &DataType::Utf8 {
        column.clone()
    } else {
        // Safe: a value that does not convert becomes null, and is found below.
        cast_with_options(column, field.data_type(), &CastOptions::default())?
    };
    let expected = match field.data_type() {
        DataType::Date32 => "is not a date (YYYY-MM-DD)",
        DataType::Int64 => "is not a whole number",
        DataType::Float64 => "is not a number",
        _ => "does not convert",
    };
    for row in 0..text.len() {
        let bad = |value: &str, problem: &str| Error::ReferenceValue {
            path: path.to_path_buf(),
            line: row + 2,
            column: field.name().clone(),
            value: value.to_string(),
            problem: problem.to_string(),
        };
        if text.is_null(row) {
            if !field.is_nullable() {
                return Err(bad("", "is empty, and the column needs a value"));
            }
            continue;
        }
        let value = text.value(row);
        let fits = converted.is_valid(row)
            && (field.data_type() != &DataType::Date32 || is_iso_date(value));
        if !fits {
            return Err(bad(value, expected));
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, Int64Array};

    const HEADER: &str =
        "commodity,grade,unit,zone,valid_from,valid_to,price,kind,confidence,source\n";

    fn parse(text: &str) -> Result<ReferenceTable> {
        ReferenceTable::parse(Path::new("rules/tables/reference_prices.csv"), text)
    }

    #[test]
    fn the_shipped_reference_tables_read_with_their_declared_schemas() {
        let dir = crate::rules::shipped_dir().join("tables");
        for (name, schema, _) in tables::reference_catalogue() {
            let path = dir.join(format!("{name}.csv"));
            let text = std::fs::read_to_string(&path).unwrap();
            let table = ReferenceTable::parse(&path, &text).unwrap();
            assert_eq!(table.name, name);
            assert_eq!(table.batch.schema(), schema);
            assert!(table.batch.num_rows() > 0, "{name} is empty");
        }
    }

    #[test]
    fn empty_fields_are_null_where_the_column_allows_it() {
        let table = parse(&format!(
            "{HEADER}TELUR,,kg,all,2024-01-01,,30000,HAP consumer reference,secondary,press\n"
        ))
        .unwrap();
        let batch = &table.batch;
        assert!(batch.column_by_name("grade").unwrap().is_null(0));
        assert!(batch.column_by_name("valid_to").unwrap().is_null(0));
        let from = batch.column_by_name("valid_from").unwrap();
        let from = from.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(from.value_as_date(0).unwrap().to_string(), "2024-01-01");
        let price = batch.column_by_name("price").unwrap();
        let price = price.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(price.value(0), 30000);
    }

    #[test]
    fn a_reference_csv_with_a_bad_date_names_its_line_and_column() {
        let e = parse(&format!(
            "{HEADER}BERAS,medium,kg,1,2023-03-14,,10900,HET,verified,x\n\
             BERAS,premium,kg,1,2023-13-14,,13900,HET,verified,x\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules/tables/reference_prices.csv:3: column valid_from: \"2023-13-14\" is not a date (YYYY-MM-DD)"
        );
        assert_eq!(
            pantau_core::error::Recoverable::recovery(&e),
            pantau_core::error::Recovery::Stop
        );
        // A date arrow would take but the file's convention does not.
        let e = parse(&format!(
            "{HEADER}BERAS,medium,kg,1,20230314,,10900,HET,verified,x\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(":2: column valid_from: \"20230314\""),
            "{e}"
        );
    }

    #[test]
    fn a_reference_csv_missing_a_required_value_or_with_a_bad_number_names_it() {
        let e = parse(&format!(
            "{HEADER}BERAS,medium,kg,1,2023-03-14,,,HET,verified,x\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules/tables/reference_prices.csv:2: column price: \"\" is empty, and the column needs a value"
        );
        let e = parse(&format!(
            "{HEADER}BERAS,medium,kg,1,2023-03-14,,\"10,900\",HET,verified,x\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with(":2: column price: \"10,900\" is not a whole number"),
            "{e}"
        );
    }

    #[test]
    fn a_reference_csv_with_another_header_is_refused_naming_the_column() {
        let e = parse(&HEADER.replace("zone", "zona")).unwrap_err();
        let text = crate::error::chain(&e);
        assert!(
            text.starts_with("rules/tables/reference_prices.csv: not the CSV of reference table reference_prices: "),
            "{text}"
        );
        assert!(text.contains("zona"), "{text}");
        let e = parse("").unwrap_err();
        assert!(e.to_string().contains(":1: empty file"), "{e}");
    }

    #[test]
    fn an_unknown_csv_in_tables_is_refused_naming_it_and_the_known_tables() {
        let e =
            ReferenceTable::parse(Path::new("rules/tables/harga.csv"), "a,b\n1,2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules/tables/harga.csv: no reference table is called \"harga\" (known: reference_prices, price_zones, program_norms)"
        );
    }
}
