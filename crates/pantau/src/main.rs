//! The `pantau` command line. Each subcommand fills the documented config structs of the
//! modules it runs and hands over; nothing here decides how records are processed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use pantau_core::error::{Recoverable, Recovery};
use pantau_core::model::Stream;
use pantau_core::progress::ReadProgress;
use pantau_engine::engine::EngineConfig;
use pantau_engine::{alert, lint};
use pantau_kafka::health::Served;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::KafkaConfig;
use pantau_notify::metrics::NotifyMetrics;
use pantau_run::metrics::RunMetrics;
use pantau_run::pipeline::{self, ReplayConfig};
use pantau_run::{backtest, feed, fixtures};
use pantau_sim::eval;
use pantau_sim::{self as sim, SimConfig};
use pantau_store as store;
use pantau_store::metrics::StoreMetrics;

use args::{
    BacktestArgs, ClientArgs, EngineArgs, EvalArgs, FollowArgs, KafkaArgs, NotifyArgs,
    ReconcileArgs, ReplayArgs, RunArgs, SimArgs, SourceArgs, StoreArgs,
};

mod args;
mod bench;
mod config_file;
mod demo;
mod serve;

#[derive(Parser)]
#[command(
    name = "pantau",
    version,
    about = "Watches BPNT / Program Sembako transaction streams and raises alerts on misbehaving e-Warong outlets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole path in-process: an embedded Kafka-protocol broker, a simulated
    /// district fed into it, the pipeline, alerts printed as they fire, /metrics served.
    Demo(demo::DemoConfig),
    /// Write a simulated history (a replayable folder plus truth.jsonl), or produce it
    /// to Kafka with --brokers.
    Simulate {
        #[command(flatten)]
        sim: SimArgs,
        /// Folder to write the history into.
        #[arg(long, required_unless_present = "brokers")]
        out: Option<PathBuf>,
        /// Produce to these Kafka brokers instead of (or as well as) writing files.
        #[arg(long)]
        brokers: Option<String>,
        /// Partitions of the topics created on the broker.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[command(flatten)]
        kafka_settings: ClientArgs,
        /// With --brokers: produce at this many seconds of event time per second (1440:
        /// a simulated day per minute) instead of as fast as the broker takes them.
        #[arg(long, requires = "brokers")]
        pace: Option<f64>,
    },
    /// Run the pipeline over a history folder as fast as it can.
    Replay {
        #[command(flatten)]
        replay: ReplayArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// Print each alert as one line on stdout.
        #[arg(long)]
        print: bool,
    },
    /// Run as a member of a Kafka consumer group on the four input topics.
    Run {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        engine: EngineArgs,
        /// Address of the /metrics and /health endpoint.
        #[arg(long, default_value = "127.0.0.1:9464")]
        metrics_addr: SocketAddr,
        /// A TOML file of this command's settings: keys are the flags' names, librdkafka
        /// properties go in a [kafka] table (README: "One configuration file"). Flags
        /// and environment variables override it.
        #[arg(long, value_name = "FILE", env = "PANTAU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Measure throughput and memory: replay, a bare Kafka consumer, and `run`.
    Bench(bench::BenchConfig),
    /// Score alerts against the truth.jsonl of a simulated history: recall, precision
    /// and detection delay per category; exits non-zero below --min-recall/--min-precision.
    Eval(EvalArgs),
    /// The alert store the district drill-down dashboard reads (PostgreSQL).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Deliver each alert of pantau.alerts to its district's Tikor channels (routing file),
    /// in Bahasa Indonesia; runs until interrupted.
    Notify {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        notify: NotifyArgs,
        /// Address of the notifier's /metrics.
        #[arg(long, default_value = "127.0.0.1:9466")]
        metrics_addr: SocketAddr,
        /// A TOML file of this command's settings: keys are the flags' names, librdkafka
        /// properties go in a [kafka] table (README: "One configuration file"). Flags
        /// and environment variables override it.
        #[arg(long, value_name = "FILE", env = "PANTAU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Tools for rule authors: the tables a rule can read, and checks of a rules folder.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Reports a district owes: the monthly reconciliation and realization.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The --config file that `run`, `store run` and `notify` read.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file without starting anything: every key is a flag of the
    /// component reading it, every value parses, the [kafka] table's properties are
    /// accepted by librdkafka (secrets given as env: or file: are read). Exits non-zero
    /// and names each problem's line.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// The month's reconciliation per district and bank (credited, spent, outstanding,
    /// reversals, who spent nothing, cards never used, outlets with alerts), realization
    /// against a target date, differences from the bank's totals: CSV, JSON and a
    /// printable HTML page in Bahasa Indonesia.
    Reconcile(ReconcileArgs),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Follow pantau.alerts and bpnt.outlets into the store, committing offsets after
    /// each write; runs until interrupted.
    Run {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        follow: FollowArgs,
        /// Address of the store's /metrics.
        #[arg(long, default_value = "127.0.0.1:9465")]
        metrics_addr: SocketAddr,
        /// A TOML file of this command's settings: keys are the flags' names, librdkafka
        /// properties go in a [kafka] table (README: "One configuration file"). Flags
        /// and environment variables override it.
        #[arg(long, value_name = "FILE", env = "PANTAU_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write alert files (a replay's alerts.jsonl) and outlet registry files
    /// (outlets.jsonl) into the store. Unreadable lines are listed and make it exit
    /// non-zero; every readable line is written.
    Load {
        #[command(flatten)]
        store: StoreArgs,
        /// Alert files, one alert per line.
        #[arg(long, num_args = 1..)]
        alerts: Vec<PathBuf>,
        /// Outlet registry files, one outlet per line.
        #[arg(long, num_args = 1..)]
        outlets: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Print the tables a rule can read, with their columns and types.
    Schema,
    /// Check a rules folder: every file parses, plans against the tables and views,
    /// returns entity_id, regency_code and score with usable types, and names only
    /// returned columns in its title and summary. Exits non-zero on any problem.
    Lint {
        /// The rules folder (`*.sql`, shared queries in `views/`).
        dir: PathBuf,
    },
    /// Run the fixtures under DIR/tests/ (a small history, fixture.json naming the rules
    /// checked, expected.jsonl the alerts they must raise). Fails when a fixture fails
    /// or a rule of DIR has none.
    Test {
        /// The rules folder.
        dir: PathBuf,
        /// Rewrite each expected.jsonl from what the rules raise now (review the diff).
        #[arg(long)]
        update: bool,
    },
    /// Run one rule over a history folder and report its alerts by district and week,
    /// precision and recall where truth.jsonl is present, and the alerts it adds and
    /// removes against the live version of the same id.
    Backtest(BacktestArgs),
}

/// The progress bar of `pantau replay`, on stderr (drawn only on a terminal).
/// The bar a long read draws on the terminal (indicatif hides it when stderr is not
/// one): bytes of a total for files, a spinner naming the topic for topics.
struct ReadBar(indicatif::ProgressBar);

impl ReadBar {
    fn new() -> ReadBar {
        ReadBar(indicatif::ProgressBar::no_length())
    }
}

impl ReadProgress for ReadBar {
    fn started(&self, total_bytes: Option<u64>) {
        let template = match total_bytes {
            Some(total) => {
                self.0.set_length(total);
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            }
            None => "{spinner} {msg} {bytes} {bytes_per_sec}",
        };
        self.0.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }

    fn reading(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }

    fn read(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finished(&self) {
        self.0.finish_and_clear();
    }
}

/// `pantau report reconcile`: the period's alerts from `--alerts`, else from
/// pantau.alerts, else from a replay of the history; then the report.
async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let (alerts_file, engine) = (args.alerts.clone(), EngineConfig::from(args.engine.clone()));
    let config = pantau_report::ReconcileConfig::try_from(args)?;
    let alerts = match (alerts_file, &config.input) {
        (Some(path), _) => pantau_core::jsonl::read_jsonl(&path)?,
        (None, pantau_report::Input::Kafka(kafka)) => pantau_report::alerts_on_topic(kafka).await?,
        (None, pantau_report::Input::History(dir)) => {
            eprintln!("replaying {} for the period's alerts", dir.display());
            let rules = engine.rules_location().load()?;
            pipeline::replay_alerts(dir, &engine, rules).await?
        }
    };
    let (report, written) =
        pantau_report::run(&config, alerts, std::sync::Arc::new(ReadBar::new())).await?;
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    println!("{}", report.headline());
    for path in written {
        println!("wrote {}", path.display());
    }
    anyhow::ensure!(
        report.problems.is_empty(),
        "{} lines could not be read (listed above); the report covers the rest",
        report.problems.len()
    );
    Ok(())
}

/// Serves a process's metrics and health on `addr` for as long as the returned task is
/// kept.
async fn serve_metrics(
    addr: SocketAddr,
    served: &Served,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (bound, server) = serve::serve(served.registry.clone(), served.health.clone(), addr)
        .await
        .context("starting the metrics endpoint")?;
    tracing::info!(addr = %bound, "serving /metrics");
    Ok(server)
}

/// An error that ends a command is the user's to read: its chain of causes on one line,
/// never the backtrace that anyhow's `Debug` adds under `RUST_BACKTRACE` (that is for
/// panics, which are bugs).
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match crate::config_file::expand(&Cli::command(), std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_status(&e)
        }
    }
}

/// What a failure asks of whoever restarts pantau (systemd, a container runtime, an
/// operator): 75 (EX_TEMPFAIL) when the cause may pass and a restart may succeed (a
/// broker away, a full disk), 1 when someone has to act first (a refused credential, a
/// rule that does not compile, a missing file).
fn exit_status(error: &anyhow::Error) -> std::process::ExitCode {
    match recovery_of(error) {
        Recovery::Retry => std::process::ExitCode::from(EXIT_TEMPORARY),
        Recovery::Stop | Recovery::DeadLetter => std::process::ExitCode::FAILURE,
    }
}

const EXIT_TEMPORARY: u8 = 75;

/// The answer of the outermost pantau error in the chain (it knows its causes); an
/// error no library typed (a flag, the runtime) is the caller's to mend.
fn recovery_of(error: &anyhow::Error) -> Recovery {
    fn typed<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Recoverable> {
        macro_rules! first_of {
            ($($error:ty),*) => {
                $(if let Some(e) = cause.downcast_ref::<$error>() {
                    return Some(e);
                })*
            };
        }
        first_of!(
            pantau_run::error::Error,
            pantau_report::error::Error,
            pantau_notify::error::Error,
            pantau_store::error::Error,
            pantau_engine::error::Error,
            pantau_kafka::error::Error,
            pantau_sim::error::Error,
            pantau_core::error::Error
        );
        None
    }
    error
        .chain()
        .find_map(typed)
        .map_or(Recovery::Stop, Recoverable::recovery)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(config) => demo::run(&config).await,
        Command::Rules {
            command: RulesCommand::Schema,
        } => {
            print!("{}", lint::schema_text());
            Ok(())
        }
        Command::Rules {
            command: RulesCommand::Lint { dir },
        } => {
            let (problems, checked) = lint::lint_dir(&dir).await?;
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("{checked} rules checked, no problems");
                Ok(())
            } else {
                anyhow::bail!("{} problems in {}", problems.len(), dir.display())
            }
        }
        Command::Rules {
            command: RulesCommand::Test { dir, update },
        } => {
            let tested =
                fixtures::run(&dir, update, |outcome| print!("{}", outcome.report())).await?;
            print!("{}", tested.report(&dir));
            anyhow::ensure!(tested.passed(), "rule tests failed");
            Ok(())
        }
        Command::Rules {
            command: RulesCommand::Backtest(args),
        } => {
            let config = backtest::BacktestConfig::from(args);
            let result = backtest::backtest(&config).await?;
            print!("{}", result.report(config.show));
            Ok(())
        }
        Command::Simulate {
            sim,
            out,
            brokers,
            partitions,
            kafka_settings,
            pace,
        } => {
            let sim = SimConfig::from(sim);
            sim.validate()?;
            if pace.is_some_and(|p| p <= 0.0 || !p.is_finite()) {
                anyhow::bail!("--pace must be a positive number of event seconds per second");
            }
            let history = sim::simulate(&sim)?;
            if let Some(dir) = &out {
                sim::write_folder(&history, dir)?;
                println!(
                    "wrote {} transactions, {} disbursements, {} transfers, {} outlets, {} truth lines to {}",
                    history.transactions.len(),
                    history.disbursements.len(),
                    history.transfers.len(),
                    history.outlets.len(),
                    history.truth.len(),
                    dir.display()
                );
            }
            if let Some(brokers) = brokers {
                let kafka = KafkaConfig {
                    brokers,
                    partitions,
                    settings: kafka_settings.into(),
                };
                let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
                kafka.ensure_topics(&topics).await?;
                let records = history.interleaved();
                let sink = KafkaSink::new(&kafka, None)?;
                match pace {
                    Some(pace) => feed::produce_paced(&sink, &records, 500, pace).await?,
                    None => feed::produce(&sink, &records, 50_000, |_| async {}).await?,
                }
                println!("produced {} records to {}", records.len(), kafka.brokers);
            }
            Ok(())
        }
        Command::Replay {
            replay,
            engine,
            print,
        } => {
            let (replay, engine) = (ReplayConfig::from(replay), EngineConfig::from(engine));
            let metrics = RunMetrics::new();
            let bar = ReadBar::new();
            let summary = pipeline::replay(&replay, &engine, metrics, &bar, |a| {
                if print {
                    println!("{}", alert::one_line(a));
                }
            })
            .await?;
            println!("{summary}");
            println!(
                "alerts in {}, dead letters in {}",
                replay.out.display(),
                pipeline::dlq_path_for(&replay.out).display()
            );
            Ok(())
        }
        Command::Report {
            command: ReportCommand::Reconcile(config),
        } => reconcile(config).await,
        Command::Store {
            command:
                StoreCommand::Run {
                    kafka,
                    store,
                    follow,
                    metrics_addr,
                    config: _,
                },
        } => {
            let metrics = StoreMetrics::new();
            let _server = serve_metrics(metrics_addr, &metrics.served).await?;
            Ok(store::follow(&kafka.into(), &store.into(), &follow.into(), metrics).await?)
        }
        Command::Store {
            command:
                StoreCommand::Load {
                    store,
                    alerts,
                    outlets,
                },
        } => {
            let loaded = store::load(&store.into(), &alerts, &outlets).await?;
            for problem in &loaded.problems {
                println!("{problem}");
            }
            println!(
                "stored {} alerts and {} outlets",
                loaded.alerts, loaded.outlets
            );
            if loaded.problems.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} lines could not be read", loaded.problems.len())
            }
        }
        Command::Run {
            kafka,
            source,
            run,
            engine,
            metrics_addr,
            config: _,
        } => {
            let metrics = RunMetrics::new();
            let _server = serve_metrics(metrics_addr, &metrics.served).await?;
            let (kafka, source) = (KafkaConfig::from(kafka), source.into());
            let (run, engine) = (run.into(), engine.into());
            let summary = pipeline::run(&kafka, &source, &run, &engine, metrics, |a| {
                tracing::info!(alert_id = %a.alert_id, rule = %a.rule_id, regency = %a.regency_code, "alert");
            })
            .await?;
            println!("{summary}");
            Ok(())
        }
        Command::Notify {
            kafka,
            notify,
            metrics_addr,
            config: _,
        } => {
            let metrics = NotifyMetrics::new();
            let _server = serve_metrics(metrics_addr, &metrics.served).await?;
            Ok(pantau_notify::deliver::run(&kafka.into(), &notify.into(), metrics).await?)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let config = crate::config_file::ConfigFile::read(&file)?;
            let root = Cli::command();
            let problems = config.check(&root);
            for problem in &problems {
                println!("{problem}");
            }
            anyhow::ensure!(
                problems.is_empty(),
                "{} problems in {}",
                problems.len(),
                file.display()
            );
            println!(
                "{}: no problems ({})",
                file.display(),
                config.summary(&root)
            );
            let (_, version) = rdkafka::util::get_rdkafka_version();
            println!(
                "librdkafka {version} built with: {}",
                pantau_kafka::builtin_features()?.join(",")
            );
            Ok(())
        }
        Command::Bench(config) => bench::run(&config).await,
        Command::Eval(args) => {
            let config = eval::EvalConfig::from(args);
            let evaluation = eval::run(&config)?;
            print!("{evaluation}");
            Ok(evaluation
                .report
                .check(config.min_recall, config.min_precision)?)
        }
    }
}
