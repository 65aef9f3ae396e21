//! `--config FILE`: one TOML file for a district's deployment, read by `pantau run`,
//! `pantau store run` and `pantau notify`. Its keys are the flags' names, so the one
//! documented struct of each component (its `--help`) documents the file too:
//!
//! ```toml
//! brokers = "kafka-1.bank.example:9093"   # top level: every component with the flag
//!
//! [kafka]                                 # librdkafka properties, as -X
//! "security.protocol" = "SASL_SSL"
//! sasl.mechanism = "SCRAM-SHA-512"        # dotted keys mean the same
//! sasl.password = "env:KAFKA_PASSWORD"
//!
//! [run]                                   # one component's flags
//! group = "pantau-jatim"
//! transactional = true
//!
//! [store]
//! postgres = "postgres://pantau@db/pantau?sslmode=verify-full&sslrootcert=/etc/pantau/db-ca.pem"
//!
//! [notify]
//! routes = "/etc/pantau/routes.toml"
//! ```
//!
//! The file becomes flags placed before the command line's own, and only for the flags
//! neither the command line nor an environment variable set: flags override
//! environment variables, which override the file, which overrides the defaults. A
//! component's table overrides the top level; `-X` overrides `[kafka]`, which overrides
//! `--kafka-config`. Every problem names its line.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::ArgAction;
use toml_edit::{Document, Item, Key, Table, Value};

use pantau_core::error::chain;
use pantau_kafka::Property;

/// A component that reads the file: its table and the subcommands that start it.
pub struct Component {
    pub table: &'static str,
    pub path: &'static [&'static str],
}

pub const COMPONENTS: [Component; 3] = [
    Component {
        table: "run",
        path: &["run"],
    },
    Component {
        table: "store",
        path: &["store", "run"],
    },
    Component {
        table: "notify",
        path: &["notify"],
    },
];

/// The table of librdkafka properties.
const KAFKA: &str = "kafka";
/// The flag that names the file, which the file cannot set.
const CONFIG: &str = "config";

/// One setting of the file and the line it is on.
struct Entry {
    key: String,
    value: Value,
    line: usize,
}

pub struct ConfigFile {
    path: PathBuf,
    /// Flags of the top level, for every component that has them.
    shared: Vec<Entry>,
    /// Flags of one component's table.
    by_component: Vec<(&'static str, Vec<Entry>)>,
    kafka: Vec<Entry>,
    /// What is wrong with the file's layout (unknown tables), found on reading.
    problems: Vec<String>,
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    span.map_or(0, |s| {
        text[..s.start.min(text.len())].matches('\n').count() + 1
    })
}

impl ConfigFile {
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        ConfigFile::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> anyhow::Result<ConfigFile> {
        // toml_edit's message already says "TOML parse error at line L, column C".
        let doc = Document::parse(text.to_string())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            shared: Vec::new(),
            by_component: COMPONENTS.iter().map(|c| (c.table, Vec::new())).collect(),
            kafka: Vec::new(),
            problems: Vec::new(),
        };
        for (key, item) in doc.as_table().iter() {
            let line = line_of(text, doc.as_table().key(key).and_then(Key::span));
            match item {
                Item::Table(table) if key == KAFKA => {
                    flatten(text, table, "", &mut file.kafka);
                }
                Item::Table(table) => match file.by_component.iter_mut().find(|(t, _)| *t == key) {
                    Some((_, entries)) => {
                        for (flag, item) in table.iter() {
                            let line = line_of(text, table.key(flag).and_then(Key::span));
                            match item.as_value() {
                                Some(value) => entries.push(Entry {
                                    key: flag.replace('_', "-"),
                                    value: value.clone(),
                                    line,
                                }),
                                None => file.problems.push(format!(
                                    "line {line}: [{key}] {flag} is a table; a flag takes a value"
                                )),
                            }
                        }
                    }
                    None => file.problems.push(format!(
                        "line {line}: unknown table [{key}]: the tables are [kafka], [run], [store] and [notify]"
                    )),
                },
                Item::Value(value) => file.shared.push(Entry {
                    key: key.replace('_', "-"),
                    value: value.clone(),
                    line,
                }),
                _ => file.problems.push(format!(
                    "line {line}: {key} is an array of tables, which no flag takes"
                )),
            }
        }
        Ok(file)
    }

    fn problem(&self, line: usize, text: impl std::fmt::Display) -> String {
        format!("{} line {line}: {text}", self.path.display())
    }

    /// The flags this file gives `component` (whose clap command is `command`), leaving
    /// out those `given` says the command line or the environment set. Every problem
    /// is returned, each naming its line.
    pub fn args_for(
        &self,
        component: &Component,
        command: &clap::Command,
        given: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<OsString>, Vec<String>> {
        let mut problems: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {p}", self.path.display()))
            .collect();
        let own: &[Entry] = self
            .by_component
            .iter()
            .find(|(t, _)| *t == component.table)
            .map_or(&[], |(_, entries)| entries);
        let mut args = Vec::new();
        for entry in &self.kafka {
            let property = Property {
                key: entry.key.clone(),
                value: scalar(&entry.value).unwrap_or_default(),
            };
            match (scalar(&entry.value), property.refusal()) {
                (None, _) => problems.push(self.problem(
                    entry.line,
                    format!("[kafka] {} must be a string, number or boolean", entry.key),
                )),
                (_, Some(refusal)) => problems.push(self.problem(entry.line, refusal)),
                (Some(value), None) => {
                    args.push(OsString::from("-X"));
                    args.push(format!("{}={value}", entry.key).into());
                }
            }
        }
        let shared = self
            .shared
            .iter()
            .filter(|e| !own.iter().any(|o| o.key == e.key));
        for (entry, from_own_table) in shared
            .map(|e| (e, false))
            .chain(own.iter().map(|e| (e, true)))
        {
            if entry.key == CONFIG {
                problems.push(self.problem(entry.line, "a config file cannot name another"));
                continue;
            }
            let Some(arg) = command
                .get_arguments()
                .find(|a| a.get_long() == Some(entry.key.as_str()))
            else {
                // A top-level key belongs to whichever components have it.
                if from_own_table {
                    problems.push(self.problem(
                        entry.line,
                        format!(
                            "pantau {} has no flag --{}",
                            component.path.join(" "),
                            entry.key
                        ),
                    ));
                }
                continue;
            };
            if given(arg.get_id().as_str()) {
                continue;
            }
            match flag_args(arg, &entry.value) {
                Ok(flag) => match check_value(command, &flag) {
                    Ok(()) => args.extend(flag),
                    Err(e) => problems.push(self.problem(entry.line, e)),
                },
                Err(e) => problems.push(self.problem(entry.line, e)),
            }
        }
        if problems.is_empty() {
            Ok(args)
        } else {
            Err(problems)
        }
    }

    /// Every problem of the file for every component, each naming its line, and the
    /// librdkafka properties checked by librdkafka itself.
    pub fn check(&self, root: &clap::Command) -> Vec<String> {
        let mut problems = Vec::new();
        for component in &COMPONENTS {
            let Some(command) = find_command(root, component.path) else {
                continue;
            };
            if let Err(found) = self.args_for(component, command, &|_| false) {
                problems.extend(found);
            }
        }
        for entry in &self.shared {
            let known = COMPONENTS.iter().any(|c| {
                find_command(root, c.path).is_some_and(|command| {
                    command
                        .get_arguments()
                        .any(|a| a.get_long() == Some(entry.key.as_str()))
                })
            });
            if !known && entry.key != CONFIG {
                problems.push(self.problem(
                    entry.line,
                    format!(
                        "no component (run, store run, notify) has a flag --{}",
                        entry.key
                    ),
                ));
            }
        }
        let mut properties = Vec::new();
        for entry in &self.kafka {
            let Some(value) = scalar(&entry.value) else {
                continue;
            };
            let property = Property {
                key: entry.key.clone(),
                value,
            };
            if property.refusal().is_none() {
                if let Err(e) = property.check_alone() {
                    problems.push(self.problem(entry.line, chain(&e)));
                    continue;
                }
            }
            properties.push(property);
        }
        // Settings that are each fine can still fail together (a CA file with a
        // protocol that uses it).
        let together = pantau_kafka::ClientSettings {
            properties,
            kafka_config: None,
        };
        if problems.is_empty() {
            if let Err(e) = together.validate() {
                problems.push(format!("{}: [kafka]: {}", self.path.display(), chain(&e)));
            }
        }
        problems
    }

    /// How many settings the file gives each component, for `pantau config check`.
    pub fn summary(&self, root: &clap::Command) -> String {
        let counts: Vec<String> = COMPONENTS
            .iter()
            .filter_map(|c| {
                let command = find_command(root, c.path)?;
                let args = self.args_for(c, command, &|_| false).ok()?;
                let flags = args
                    .iter()
                    .filter(|a| a.to_string_lossy().starts_with("--"))
                    .count();
                Some(format!("{}: {flags} flags", c.path.join(" ")))
            })
            .collect();
        format!(
            "{} librdkafka properties; {}",
            self.kafka.len(),
            counts.join(", ")
        )
    }
}

/// The `[kafka]` table's properties; dotted keys and sub-tables join with `.`.
fn flatten(text: &str, table: &Table, prefix: &str, into: &mut Vec<Entry>) {
    for (key, item) in table.iter() {
        let name = format!("{prefix}{key}");
        let line = line_of(text, table.key(key).and_then(Key::span));
        match item {
            Item::Table(inner) => flatten(text, inner, &format!("{name}."), into),
            Item::Value(Value::InlineTable(inner)) => {
                flatten(text, &inner.clone().into_table(), &format!("{name}."), into)
            }
            Item::Value(value) => into.push(Entry {
                key: name,
                value: value.clone(),
                line,
            }),
            _ => {}
        }
    }
}

/// A TOML value as a flag value: strings as they are, numbers and booleans written out.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.value().clone()),
        Value::Integer(i) => Some(i.value().to_string()),
        Value::Float(f) => Some(f.value().to_string()),
        Value::Boolean(b) => Some(b.value().to_string()),
        Value::Datetime(d) => Some(d.value().to_string()),
        Value::Array(_) | Value::InlineTable(_) => None,
    }
}

/// The command-line words that set `arg` to `value`.
fn flag_args(arg: &clap::Arg, value: &Value) -> Result<Vec<OsString>, String> {
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            Value::Boolean(b) if *b.value() => Ok(vec![long.into()]),
            Value::Boolean(_) => Ok(Vec::new()),
            _ => Err(format!("{long} is a switch: write true or false")),
        },
        ArgAction::Append => {
            let values: Vec<String> = match value {
                Value::Array(items) => items.iter().map(scalar).collect::<Option<_>>(),
                other => scalar(other).map(|v| vec![v]),
            }
            .ok_or_else(|| format!("{long} takes strings or numbers"))?;
            Ok(values
                .into_iter()
                .flat_map(|v| [OsString::from(&long), v.into()])
                .collect())
        }
        _ => match scalar(value) {
            Some(v) if arg.get_num_args().is_some_and(|n| n.max_values() > 1) => {
                Ok(vec![long.into(), v.into()])
            }
            Some(v) => Ok(vec![format!("{long}={v}").into()]),
            None => match value {
                Value::Array(items) if arg.get_num_args().is_some_and(|n| n.max_values() > 1) => {
                    let mut words = vec![OsString::from(&long)];
                    for item in items.iter() {
                        words.push(scalar(item).ok_or("an array of strings or numbers")?.into());
                    }
                    Ok(words)
                }
                _ => Err(format!("{long} takes one value")),
            },
        },
    }
}

/// Parses `words` alone against `command` to let the flag's own value parser judge the
/// value; other complaints (a flag the file leaves to the command line that is
/// required) are not the file's.
fn check_value(command: &clap::Command, words: &[OsString]) -> Result<(), String> {
    use clap::error::ErrorKind;
    let mut argv = vec![OsString::from(command.get_name())];
    argv.extend(words.iter().cloned());
    let trial = relaxed(command.clone()).try_get_matches_from(argv);
    match trial {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue
                    | ErrorKind::ValueValidation
                    | ErrorKind::InvalidUtf8
                    | ErrorKind::TooManyValues
                    | ErrorKind::WrongNumberOfValues
                    | ErrorKind::ArgumentConflict
            ) =>
        {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_string())
        }
        _ => Ok(()),
    }
}

/// `command` with no argument required, at every level.
fn relaxed(command: clap::Command) -> clap::Command {
    command
        .mut_args(|a| a.required(false))
        .mut_subcommands(relaxed)
}

fn find_command<'a>(root: &'a clap::Command, path: &[&str]) -> Option<&'a clap::Command> {
    path.iter()
        .try_fold(root, |command, name| command.find_subcommand(name))
}

/// The command line with the `--config` file's flags put in, when the command is one
/// that reads it and names one; otherwise `args` as they are. Parsing problems of the
/// command line itself are left to the real parse.
pub fn expand(root: &clap::Command, args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    // A flag the command requires may be the file's to give.
    let Ok(matches) = relaxed(root.clone()).try_get_matches_from(&args) else {
        return Ok(args);
    };
    for component in &COMPONENTS {
        let Some(found) = component
            .path
            .iter()
            .try_fold(&matches, |m, name| m.subcommand_matches(name))
        else {
            continue;
        };
        let Some(file) = found.get_one::<PathBuf>(CONFIG) else {
            return Ok(args);
        };
        let command = find_command(root, component.path).context("a component's subcommand")?;
        let config = ConfigFile::read(file)?;
        let given = |id: &str| {
            matches!(
                found.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let extra = config
            .args_for(component, command, &given)
            .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;
        let depth = component.path.len();
        anyhow::ensure!(
            args.len() > depth
                && args[1..=depth]
                    .iter()
                    .zip(component.path)
                    .all(|(a, p)| a == OsStr::new(p)),
            "put --config after `pantau {}`",
            component.path.join(" ")
        );
        let mut expanded = args[..=depth].to_vec();
        expanded.extend(extra);
        expanded.extend(args[depth + 1..].iter().cloned());
        return Ok(expanded);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn root() -> Command {
        let component = |name: &'static str| {
            Command::new(name)
                .arg(Arg::new("brokers").long("brokers").required(true))
                .arg(
                    Arg::new("batch_size")
                        .long("batch-size")
                        .value_parser(clap::value_parser!(usize))
                        .default_value("5000"),
                )
                .arg(Arg::new("properties").short('X').action(ArgAction::Append))
                .arg(
                    Arg::new(CONFIG)
                        .long(CONFIG)
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("transactional")
                        .long("transactional")
                        .action(ArgAction::SetTrue),
                )
        };
        Command::new("pantau")
            .subcommand(component("run"))
            .subcommand(component("notify"))
            .subcommand(
                Command::new("store")
                    .subcommand(component("run").arg(Arg::new("postgres").long("postgres"))),
            )
    }

    fn written(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pantau.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn words(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    const FILE: &str = r#"brokers = "from-file:9092"
batch-size = 100
postgres = "postgres://db/pantau"

[kafka]
"security.protocol" = "SASL_SSL"
sasl.mechanism = "SCRAM-SHA-512"

[run]
batch_size = 200
transactional = true
"#;

    #[test]
    fn flags_override_the_file_and_a_components_table_overrides_the_top_level() {
        let (_dir, path) = written(FILE);
        let config = path.to_str().unwrap();
        let expanded = expand(
            &root(),
            words(&[
                "pantau",
                "run",
                "--config",
                config,
                "--brokers",
                "cli:9092",
                "-X",
                "sasl.mechanism=PLAIN",
            ]),
        )
        .unwrap();
        let matches = root().get_matches_from(expanded);
        let run = matches.subcommand_matches("run").unwrap();
        assert_eq!(run.get_one::<String>("brokers").unwrap(), "cli:9092");
        assert_eq!(*run.get_one::<usize>("batch_size").unwrap(), 200);
        assert!(run.get_flag("transactional"));
        let properties: Vec<&String> = run.get_many("properties").unwrap().collect();
        // The command line's -X comes last, so it wins.
        assert_eq!(
            properties,
            [
                "security.protocol=SASL_SSL",
                "sasl.mechanism=SCRAM-SHA-512",
                "sasl.mechanism=PLAIN"
            ]
        );

        // --brokers is required, and only the file gives it.
        let expanded = expand(
            &root(),
            words(&["pantau", "store", "run", "--config", config]),
        )
        .unwrap();
        let matches = root().get_matches_from(expanded);
        let store = matches
            .subcommand_matches("store")
            .and_then(|m| m.subcommand_matches("run"))
            .unwrap();
        assert_eq!(
            store.get_one::<String>("brokers").unwrap(),
            "from-file:9092"
        );
        assert_eq!(*store.get_one::<usize>("batch_size").unwrap(), 100);
        assert_eq!(
            store.get_one::<String>("postgres").unwrap(),
            "postgres://db/pantau"
        );
        assert!(!store.get_flag("transactional"));
    }

    #[test]
    fn a_bad_value_an_unknown_flag_and_a_refused_property_are_named_by_their_lines() {
        let (_dir, path) = written(
            "batch-size = \"many\"\n\n[kafka]\nenable.auto.commit = true\n\n[notify]\nbrokers = \"x\"\nroutez = \"r.toml\"\n\n[sotre]\n",
        );
        let problems = ConfigFile::read(&path).unwrap().check(&root());
        let all = problems.join("\n");
        assert!(
            all.contains("line 1: invalid value 'many' for '--batch-size"),
            "{all}"
        );
        assert!(
            all.contains("line 4: enable.auto.commit may not be set"),
            "{all}"
        );
        assert!(
            all.contains("line 8: pantau notify has no flag --routez"),
            "{all}"
        );
        assert!(all.contains("line 10: unknown table [sotre]"), "{all}");
        assert!(!all.contains("line 7"), "{all}");
    }

    #[test]
    fn a_toml_syntax_error_names_its_line() {
        let (_dir, path) = written("brokers = \"a\"\nbatch-size = = 3\n");
        let error = ConfigFile::read(&path).err().unwrap().to_string();
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn librdkafka_judges_the_kafka_table_in_a_check() {
        let (_dir, path) = written(
            "[kafka]\nsecurity.protocol = \"SASL_SSL\"\nsasl.mechanism = \"SCRAM-SHA-1024\"\nsasl.username = \"pantau\"\nsasl.password = \"hunter2-secret\"\n",
        );
        let problems = ConfigFile::read(&path).unwrap().check(&root());
        let all = problems.join("\n");
        assert!(all.contains("SCRAM-SHA-1024"), "{all}");
        assert!(!all.contains("hunter2"), "{all}");
        // Each line is fine alone; only together do they fail.
        assert!(!all.contains("line 2"), "{all}");
    }
}
