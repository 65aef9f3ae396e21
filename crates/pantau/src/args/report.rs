//! The flags of `pantau report reconcile`.

use std::path::PathBuf;

use chrono::NaiveDate;

use pantau_report::{parse_period, Input, ReconcileConfig};

use super::{ClientArgs, EngineArgs, FontArg, PseudonymArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The benefit period, `YYYY-MM`: the first month a credit covers, as disbursements
    /// name it.
    #[arg(long, value_parser = parse_period)]
    pub period: String,
    /// History folder (disbursements.jsonl, transactions.jsonl, outlets.jsonl).
    #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
    pub history: Option<PathBuf>,
    /// Or read what the running pipeline reads: bpnt.outlets, bpnt.disbursements and
    /// bpnt.transactions from their beginning to their current end, and, without
    /// --alerts, the alerts on pantau.alerts.
    #[arg(long, env = "PANTAU_BROKERS")]
    pub brokers: Option<String>,
    /// With --brokers: librdkafka properties (TLS, SASL) for the clients that read.
    #[command(flatten)]
    pub kafka_settings: ClientArgs,
    /// Where the report goes: one CSV per table, reconcile.json and reconcile.html.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// The alerts to count per outlet (a replay's alerts.jsonl). Without it the history
    /// is replayed with --rules first, or pantau.alerts is read with --brokers.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// The realization target: by this local date, --target-share of the credited KPM
    /// have spent. Districts behind it are listed first.
    #[arg(long)]
    pub target_date: Option<NaiveDate>,
    /// Share of credited KPM the target asks for (1 = every KPM).
    #[arg(long, default_value_t = 1.0)]
    pub target_share: f64,
    /// The bank's totals to compare with: CSV with the header
    /// `period,regency_code,bank,kpm_credited,rupiah_credited,rupiah_spent`.
    #[arg(long)]
    pub bank_totals: Option<PathBuf>,
    /// Environment variable holding the key card references are made with
    /// (HMAC-SHA256); the bank, holding the same key, can find the cards again.
    #[arg(long, default_value = pantau_core::pseudonym::KEY_ENV)]
    pub pseudonym_key_env: String,
    #[command(flatten)]
    pub pseudonyms: PseudonymArgs,
    #[command(flatten)]
    pub font: FontArg,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl TryFrom<ReconcileArgs> for ReconcileConfig {
    type Error = anyhow::Error;

    /// All but the alerts and how to replay for them, which the command decides.
    fn try_from(a: ReconcileArgs) -> anyhow::Result<Self> {
        let input = match (a.history, a.brokers) {
            (Some(dir), _) => Input::History(dir),
            (None, Some(brokers)) => Input::Kafka(pantau_kafka::KafkaConfig {
                brokers,
                partitions: 4,
                settings: a.kafka_settings.into(),
            }),
            (None, None) => anyhow::bail!("name a --history folder or --brokers"),
        };
        Ok(ReconcileConfig {
            period: a.period,
            input,
            out: a.out,
            target_date: a.target_date,
            target_share: a.target_share,
            bank_totals: a.bank_totals,
            pseudonym_key_env: a.pseudonym_key_env,
            allow_unkeyed_references: a.pseudonyms.allow_unkeyed_references,
            chart_font: a.font.chart_font,
        })
    }
}
