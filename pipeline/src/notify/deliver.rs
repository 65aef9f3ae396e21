//! `pantau notify`: follows `pantau.alerts` (and the outlet registry, for names) in its
//! own consumer group and delivers each alert to the channels its district's routes
//! name, at least once.
//!
//! Every channel has its own worker and queue, so a channel that is down retries (with
//! exponential backoff) without holding up the others. After `--max-tries` failed tries
//! a notification goes to `pantau.notify.dlq` with the reason. An alert's offset is
//! committed only once every channel it was routed to has delivered or dead-lettered it.
//! Each delivery is recorded in `--state-dir/delivered.log` as soon as the channel
//! accepts it, so a restart skips what was delivered before the offset moved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::kafka::{read_followed, Followed, KafkaConfig};
use crate::metrics::Metrics;
use crate::model::{Alert, TOPIC_ALERTS, TOPIC_OUTLETS};
use crate::notify::channel::Sender;
use crate::notify::message::{Message, OutletInfo, Templates};
use crate::notify::routes::Routes;
use crate::sink::kafka::{KafkaSink, Outgoing};

/// Notifications that could not be delivered, with why.
pub const TOPIC_NOTIFY_DLQ: &str = "pantau.notify.dlq";

#[derive(Debug, Clone, clap::Args)]
pub struct NotifyConfig {
    /// The routing file (see notify/routes.example.toml).
    #[arg(long)]
    pub routes: PathBuf,
    /// Folder of the message templates (alert.txt, alert.html, categories.toml).
    #[arg(long, default_value_os_t = Templates::default_dir())]
    pub templates: PathBuf,
    /// Consumer group of the notifier (its own: it reads every alert).
    #[arg(long, default_value = "pantau-notify")]
    pub group: String,
    /// Tries per notification and channel before it is dead-lettered.
    #[arg(long, default_value_t = 8)]
    pub max_tries: u32,
    /// Wait after the first failed try; doubled after each further failure, up to 5 minutes.
    #[arg(long, default_value = "2s", value_parser = crate::engine::parse_duration)]
    pub retry_after: Duration,
    /// Where the log of delivered notifications is kept.
    #[arg(long, default_value = "pantau-notify-state")]
    pub state_dir: PathBuf,
}

/// What goes to `pantau.notify.dlq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedNotification {
    pub alert_id: String,
    pub channel: String,
    pub regency_code: String,
    pub tries: u32,
    pub error: String,
    pub failed_at: chrono::DateTime<Utc>,
    pub alert: Alert,
}

/// One alert to deliver on one channel.
pub struct Job {
    pub alert: Arc<Alert>,
    pub message: Arc<Message>,
    origin: (i32, i64),
}

/// (alert id, channel) pairs already delivered, kept across restarts.
struct DeliveredLog {
    seen: HashSet<(String, String)>,
    file: std::fs::File,
}

impl DeliveredLog {
    fn open(dir: &std::path::Path) -> anyhow::Result<DeliveredLog> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("delivered.log");
        let seen = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(a, c)| (a.to_owned(), c.to_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(DeliveredLog { seen, file })
    }

    fn contains(&self, alert_id: &str, channel: &str) -> bool {
        self.seen
            .contains(&(alert_id.to_owned(), channel.to_owned()))
    }

    fn record(&mut self, alert_id: &str, channel: &str) -> anyhow::Result<()> {
        writeln!(self.file, "{alert_id}\t{channel}")?;
        self.file.sync_data()?;
        self.seen.insert((alert_id.to_owned(), channel.to_owned()));
        Ok(())
    }
}

/// Offsets whose notifications are still under way, per partition; what may be committed
/// is the first one still pending, or the one after the last seen.
#[derive(Default)]
struct Progress {
    pending: BTreeMap<(i32, i64), usize>,
    next: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
}

impl Progress {
    fn seen(&mut self, partition: i32, offset: i64, jobs: usize) {
        self.next.insert(partition, offset + 1);
        if jobs > 0 {
            self.pending.insert((partition, offset), jobs);
        }
    }

    fn done(&mut self, origin: (i32, i64)) {
        if let Some(left) = self.pending.get_mut(&origin) {
            *left -= 1;
            if *left == 0 {
                self.pending.remove(&origin);
            }
        }
    }

    /// The offsets to commit that moved since the last commit.
    fn take_committable(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, &next) in &self.next {
            let first_pending = self
                .pending
                .range((partition, i64::MIN)..=(partition, i64::MAX))
                .next()
                .map(|((_, o), _)| *o);
            let offset = first_pending.unwrap_or(next);
            if self.committed.get(&partition) != Some(&offset) {
                out.push((partition, offset));
            }
        }
        for (p, o) in &out {
            self.committed.insert(*p, *o);
        }
        out
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// What a channel's worker delivers with and reports to.
struct Worker {
    name: String,
    sender: Arc<dyn Sender>,
    done: mpsc::UnboundedSender<(i32, i64)>,
    log: Arc<std::sync::Mutex<DeliveredLog>>,
    dlq: Arc<KafkaSink>,
    config: NotifyConfig,
    metrics: Arc<Metrics>,
}

/// Delivers one channel's queue in order, each notification until it is accepted or
/// has used its tries.
async fn channel_worker(worker: Worker, mut queue: mpsc::UnboundedReceiver<Job>) {
    let Worker {
        name,
        sender,
        done,
        log,
        dlq,
        config,
        metrics,
    } = worker;
    while let Some(job) = queue.recv().await {
        let regency = job.alert.regency_code.as_str();
        let count = |outcome: &str| {
            metrics
                .notifications
                .with_label_values(&[&name, regency, outcome])
                .inc();
        };
        let mut wait = config.retry_after;
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 1..=config.max_tries {
            if attempt > 1 {
                count("retried");
            }
            match sender.send(&job.alert, &job.message).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    count("failed");
                    last_error = format!("{e:#}");
                    tracing::warn!(channel = %name, alert_id = %job.alert.alert_id, attempt, error = %last_error, "notification not delivered");
                    if attempt < config.max_tries {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(300));
                    }
                }
            }
        }
        if delivered {
            count("sent");
            let recorded = log
                .lock()
                .map_err(|_| anyhow::anyhow!("delivered log poisoned"))
                .and_then(|mut l| l.record(&job.alert.alert_id, &name));
            if let Err(e) = recorded {
                // Delivered all the same; a restart may send it once more.
                tracing::error!(error = %format!("{e:#}"), "cannot record a delivery");
            }
        } else {
            let failed = FailedNotification {
                alert_id: job.alert.alert_id.clone(),
                channel: name.clone(),
                regency_code: job.alert.regency_code.clone(),
                tries: config.max_tries,
                error: last_error,
                failed_at: Utc::now(),
                alert: (*job.alert).clone(),
            };
            let record = Outgoing {
                topic: TOPIC_NOTIFY_DLQ.to_owned(),
                partition: None,
                key: Some(failed.alert_id.clone()),
                payload: serde_json::to_vec(&failed).unwrap_or_default(),
            };
            // The offset must not move past an alert that is neither delivered nor
            // dead-lettered: keep trying the DLQ.
            let mut backoff = crate::health::Backoff::new();
            while let Err(e) = dlq.send_all(std::slice::from_ref(&record)).await {
                tracing::error!(error = %format!("{e:#}"), "cannot dead-letter a notification");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            count("dead_lettered");
            tracing::error!(channel = %name, alert_id = %failed.alert_id, tries = failed.tries, "notification dead-lettered to pantau.notify.dlq");
        }
        if done.send(job.origin).is_err() {
            return;
        }
    }
}

/// Runs the notifier until interrupted (Ctrl-C or SIGTERM), committing what is done.
pub async fn run(
    kafka: &KafkaConfig,
    config: &NotifyConfig,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let routes = Routes::load(&config.routes)?;
    let templates = Templates::load(&config.templates)?;
    let log = Arc::new(std::sync::Mutex::new(DeliveredLog::open(
        &config.state_dir,
    )?));
    kafka
        .ensure_topics(&[TOPIC_NOTIFY_DLQ])
        .await
        .context("creating pantau.notify.dlq")?;
    let dlq = Arc::new(KafkaSink::new(kafka, None)?);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut queues = HashMap::new();
    for (name, channel) in &routes.channels {
        let sender = crate::notify::channel::sender_for(name, channel)?;
        let (tx, rx) = mpsc::unbounded_channel();
        queues.insert(name.clone(), tx);
        let worker = Worker {
            name: name.clone(),
            sender,
            done: done_tx.clone(),
            log: log.clone(),
            dlq: dlq.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(channel_worker(worker, rx));
    }
    let consumer = kafka
        .follower(&config.group, &[TOPIC_ALERTS, TOPIC_OUTLETS])
        .await?;
    tracing::info!(group = %config.group, channels = queues.len(), routes = routes.routes.len(), "notifier following pantau.alerts");

    let mut registry: HashMap<String, OutletInfo> = HashMap::new();
    // Offsets per topic: the registry's are committed as read, alerts' as delivered.
    let mut progress = Progress::default();
    let mut registry_next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut commit_tick = tokio::time::interval(Duration::from_secs(1));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    const MAX_IN_FLIGHT: usize = 10_000;
    loop {
        tokio::select! {
            message = consumer.recv(), if progress.in_flight() < MAX_IN_FLIGHT => {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka error while following");
                        continue;
                    }
                };
                let origin = (message.partition(), message.offset());
                let alert = match read_followed(&message, &metrics) {
                    Some(Followed::Outlet(outlet)) => {
                        registry.insert(outlet.outlet_id.clone(), OutletInfo {
                            name: outlet.name,
                            district_code: outlet.district_code,
                        });
                        registry_next.insert(origin.0, origin.1 + 1);
                        continue;
                    }
                    Some(Followed::Alert(alert)) => *alert,
                    None if message.topic() == TOPIC_OUTLETS => {
                        registry_next.insert(origin.0, origin.1 + 1);
                        continue;
                    }
                    None => {
                        progress.seen(origin.0, origin.1, 0);
                        continue;
                    }
                };
                let channels: Vec<&str> = if alert.shadow {
                    Vec::new()
                } else {
                    routes.channels_for(&alert)
                };
                if channels.is_empty() && !alert.shadow {
                    metrics.notify_unrouted.with_label_values(&[&alert.regency_code]).inc();
                }
                let pending: Vec<&str> = {
                    let log = log.lock().map_err(|_| anyhow::anyhow!("delivered log poisoned"))?;
                    channels.into_iter().filter(|c| !log.contains(&alert.alert_id, c)).collect()
                };
                progress.seen(origin.0, origin.1, pending.len());
                if pending.is_empty() {
                    continue;
                }
                let outlet = alert.outlet_id().and_then(|id| registry.get(id));
                let rendered = Arc::new(templates.render(&alert, outlet, &routes.dashboard_url));
                let alert = Arc::new(alert);
                for channel in pending {
                    let job = Job { alert: alert.clone(), message: rendered.clone(), origin };
                    if queues[channel].send(job).is_err() {
                        anyhow::bail!("the worker of channel {channel} stopped");
                    }
                }
            }
            Some(origin) = done_rx.recv() => progress.done(origin),
            _ = commit_tick.tick() => {
                commit(&consumer, TOPIC_ALERTS, &progress.take_committable());
                let registry_offsets: Vec<(i32, i64)> = std::mem::take(&mut registry_next).into_iter().collect();
                commit(&consumer, TOPIC_OUTLETS, &registry_offsets);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    // What is delivered is in the log; what is not is read again after a restart.
    commit(&consumer, TOPIC_ALERTS, &progress.take_committable());
    tracing::info!(in_flight = progress.in_flight(), "notifier stopping");
    Ok(())
}

fn commit(consumer: &StreamConsumer, topic: &str, offsets: &[(i32, i64)]) {
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(error = %e, "bad offset to commit");
        }
    }
    if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
        tracing::warn!(error = %e, "offset commit failed; notifications may be read again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_committable_only_once_every_channel_is_done_with_it() {
        let mut p = Progress::default();
        p.seen(0, 10, 2);
        p.seen(0, 11, 0);
        p.seen(0, 12, 1);
        p.seen(1, 5, 0);
        assert_eq!(p.take_committable(), vec![(0, 10), (1, 6)]);
        p.done((0, 12));
        assert!(p.take_committable().is_empty(), "10 still pending");
        p.done((0, 10));
        assert!(
            p.take_committable().is_empty(),
            "one channel of 10 still pending"
        );
        p.done((0, 10));
        assert_eq!(p.take_committable(), vec![(0, 13)]);
    }

    #[test]
    fn the_delivered_log_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeliveredLog::open(dir.path()).unwrap();
        log.record("a1", "webhook").unwrap();
        drop(log);
        let log = DeliveredLog::open(dir.path()).unwrap();
        assert!(log.contains("a1", "webhook"));
        assert!(!log.contains("a1", "telegram"));
    }
}
