//! The flags of every component and their help: the one place the command line is
//! described. Each `…Args` struct becomes the plain config its library takes (`From`),
//! so no library crate knows clap; `config_file` reads the same flags from a TOML file.

use std::path::PathBuf;

mod engine;
mod kafka;
mod notify;
mod report;
mod run;
mod sim;
mod store;

pub use engine::EngineArgs;
pub use kafka::{ClientArgs, KafkaArgs, SourceArgs};
pub use notify::NotifyArgs;
pub use report::ReconcileArgs;
pub use run::{BacktestArgs, ReplayArgs, RunArgs};
pub use sim::{EvalArgs, SimArgs};
pub use store::{FollowArgs, StoreArgs};

/// The flag of the commands that make card references.
#[derive(Debug, Clone, clap::Args)]
pub struct PseudonymArgs {
    /// Make card references without `PANTAU_PSEUDONYM_KEY` (unkeyed hashes of the card
    /// ids, which anyone can recompute): for tests and demos, never for real data.
    #[arg(long)]
    pub allow_unkeyed_references: bool,
}

/// The font flag of the commands that draw charts.
#[derive(Debug, Clone, clap::Args)]
pub struct FontArg {
    /// The TrueType font the charts' text is drawn in.
    #[arg(long, default_value_os_t = pantau_notify::chart::default_font())]
    pub chart_font: PathBuf,
}
