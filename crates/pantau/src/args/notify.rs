//! The flags of `pantau notify`.

use std::path::PathBuf;
use std::time::Duration;

use pantau_core::text::parse_duration;
use pantau_notify::deliver::NotifyConfig;

use super::{FontArg, PseudonymArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct NotifyArgs {
    /// The routing file (see notify/routes.example.toml).
    #[arg(long)]
    pub routes: PathBuf,
    /// Folder of the message templates (alert.txt, alert.html, digest.txt, folded.txt,
    /// categories.toml). Without it: `./notify/templates` when that exists, else the
    /// templates built into this binary.
    #[arg(long, env = "PANTAU_NOTIFY_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Consumer group of the notifier (its own: it reads every alert).
    #[arg(long, default_value = "pantau-notify")]
    pub group: String,
    /// Tries per notification and channel before it is dead-lettered.
    #[arg(long, default_value_t = 8)]
    pub max_tries: u32,
    /// Wait after the first failed try; doubled after each further failure, up to 5 minutes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub retry_after: Duration,
    /// Where the log of delivered notifications and the daily digests' tally are kept.
    #[arg(long, default_value = "pantau-notify-state")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub font: FontArg,
    /// The Tikor are people: an alert about a card names it by its keyed reference
    /// (`PANTAU_PSEUDONYM_KEY`) in every message, webhook body and digest, never its id.
    #[command(flatten)]
    pub pseudonyms: PseudonymArgs,
}

impl From<NotifyArgs> for NotifyConfig {
    fn from(a: NotifyArgs) -> Self {
        NotifyConfig {
            routes: a.routes,
            templates: a.templates,
            group: a.group,
            max_tries: a.max_tries,
            retry_after: a.retry_after,
            state_dir: a.state_dir,
            chart_font: a.font.chart_font,
            allow_unkeyed_references: a.pseudonyms.allow_unkeyed_references,
        }
    }
}
