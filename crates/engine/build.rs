//! Embeds the shipped rules folder (`../rules/*.sql`, `../rules/views/*.sql` and the
//! reference tables `../rules/tables/*.csv`) in the binary, so a copied binary or an
//! image without the folder still runs them.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable folder entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    files
}

fn table(name: &str, files: &[PathBuf]) -> String {
    let mut text = format!("pub const {name}: &[(&str, &str)] = &[\n");
    for path in files {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        writeln!(
            text,
            "    ({file_name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    text.push_str("];\n");
    text
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let rules = manifest
        .join("../../rules")
        .canonicalize()
        .expect("the rules folder beside the crate");
    let views = rules.join("views");
    let tables = rules.join("tables");
    println!("cargo:rerun-if-changed={}", rules.display());
    let text = table("BUILT_IN_RULES", &files(&rules, "sql"))
        + &table("BUILT_IN_VIEWS", &files(&views, "sql"))
        + &table("BUILT_IN_TABLES", &files(&tables, "csv"));
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("built_in_rules.rs");
    std::fs::write(&out, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
