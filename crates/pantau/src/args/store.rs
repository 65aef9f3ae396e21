//! The flags of `pantau store`.

use std::time::Duration;

use pantau_core::text::parse_duration;
use pantau_store::{FollowConfig, StoreConfig};

use super::PseudonymArgs;

/// Where the store is.
#[derive(Clone, clap::Args)]
pub struct StoreArgs {
    /// PostgreSQL connection string, e.g. `postgres://pantau:pantau@localhost/pantau`
    /// or `host=/run/postgresql user=pantau dbname=pantau`. TLS as libpq: `sslmode`
    /// (disable, prefer, require, verify-ca, verify-full) and `sslrootcert`, e.g.
    /// `...?sslmode=verify-full&sslrootcert=/etc/pantau/db-ca.pem`.
    #[arg(long, env = "PANTAU_POSTGRES", hide_env_values = true)]
    pub postgres: String,
    /// Grafana's readers are people: an alert about a card is stored with the card's
    /// keyed reference (`PANTAU_PSEUDONYM_KEY`), never its id.
    #[command(flatten)]
    pub pseudonyms: PseudonymArgs,
}

impl From<StoreArgs> for StoreConfig {
    fn from(a: StoreArgs) -> Self {
        StoreConfig {
            postgres: a.postgres,
            allow_unkeyed_references: a.pseudonyms.allow_unkeyed_references,
        }
    }
}

/// Settings of `pantau store run`.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowArgs {
    /// Consumer group of the store (its own: it reads every alert whatever pantau does).
    #[arg(long, default_value = "pantau-store")]
    pub group: String,
    /// Most records written in one database transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// How long to wait for a batch to fill before writing what there is.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub linger: Duration,
}

impl From<FollowArgs> for FollowConfig {
    fn from(a: FollowArgs) -> Self {
        FollowConfig {
            group: a.group,
            batch_size: a.batch_size,
            linger: a.linger,
        }
    }
}
