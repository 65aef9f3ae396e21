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
//!
//! A channel past its limit (`[limits]`) holds the rest and sends them as one folded
//! message when the period ends; their offsets wait for it. Once a second the notifier
//! looks for districts whose daily digest fell due ([`crate::digest`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::channel::{Kind, Outbound, Sender};
use crate::digest::{
    daily_message, fetch_realization, folded_message, realization_text, Due, Schedule, Tally,
    TallyEntry,
};
use crate::error::{Error, Result};
use crate::message::{kecamatan, Message, Templates};
use crate::metrics::NotifyMetrics;
use crate::routes::Routes;
use pantau_core::error::chain;
use pantau_core::model::Outgoing;
use pantau_core::model::{Alert, OutletInfo, TOPIC_ALERTS, TOPIC_OUTLETS};
use pantau_kafka::follow::{read_followed, Followed, Follower};
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::KafkaConfig;

/// Notifications that could not be delivered, with why.
pub const TOPIC_NOTIFY_DLQ: &str = "pantau.notify.dlq";

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The routing file.
    pub routes: PathBuf,
    /// The message templates' folder; `None`: `./notify/templates` when that exists,
    /// else the built-in templates.
    pub templates: Option<PathBuf>,
    /// The notifier's own consumer group (it reads every alert).
    pub group: String,
    /// Tries per notification and channel before it is dead-lettered.
    pub max_tries: u32,
    /// Wait after the first failed try, doubled after each further one up to 5 minutes.
    pub retry_after: Duration,
    /// Where the delivered log and the digests' tally are kept.
    pub state_dir: PathBuf,
    /// The TrueType font of the charts.
    pub chart_font: PathBuf,
    /// Allow card references without a key (test data only).
    pub allow_unkeyed_references: bool,
}

/// What goes to `pantau.notify.dlq`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedNotification {
    /// The alert's id, or the daily digest's key (`digest-<regency>-<time>`).
    pub alert_id: String,
    pub channel: String,
    pub regency_code: String,
    pub tries: u32,
    pub error: String,
    pub failed_at: chrono::DateTime<Utc>,
    /// None for a daily digest.
    pub alert: Option<Alert>,
    /// The text that was not delivered.
    pub subject: String,
    pub text: String,
}

/// One message to deliver on one channel, and the alert offsets waiting on it.
pub(crate) struct Job {
    pub outbound: Outbound,
    origins: Vec<(i32, i64)>,
    /// The daily digest this is (alerts name their own regency).
    digest: Option<DigestId>,
}

/// A district's digest, by the time it fell due.
type DigestId = (String, chrono::DateTime<Utc>);

/// What a channel's worker is done with: delivered, or dead-lettered.
enum Finished {
    Alert((i32, i64)),
    Digest(DigestId),
}

impl Job {
    fn regencies(&self) -> Vec<String> {
        let mut regencies: Vec<String> = match &self.digest {
            Some((r, _)) => vec![r.clone()],
            None => self
                .outbound
                .alerts
                .iter()
                .map(|a| a.regency_code.clone())
                .collect(),
        };
        regencies.sort();
        regencies.dedup();
        regencies
    }
}

/// (alert id, channel) pairs already delivered, kept across restarts.
struct DeliveredLog {
    seen: HashSet<(String, String)>,
    path: PathBuf,
    file: std::fs::File,
}

impl DeliveredLog {
    fn open(dir: &std::path::Path) -> Result<DeliveredLog> {
        std::fs::create_dir_all(dir).map_err(Error::state("creating", dir))?;
        let path = dir.join("delivered.log");
        let seen = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(a, c)| (a.to_owned(), c.to_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(Error::state("reading", path)(e)),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::state("opening", &path))?;
        Ok(DeliveredLog { seen, path, file })
    }

    fn contains(&self, alert_id: &str, channel: &str) -> bool {
        self.seen
            .contains(&(alert_id.to_owned(), channel.to_owned()))
    }

    fn record(&mut self, alert_id: &str, channel: &str) -> Result<()> {
        writeln!(self.file, "{alert_id}\t{channel}")
            .and_then(|()| self.file.sync_data())
            .map_err(Error::state("writing", &self.path))?;
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
    done: mpsc::UnboundedSender<Finished>,
    log: Arc<std::sync::Mutex<DeliveredLog>>,
    dlq: Arc<KafkaSink>,
    config: NotifyConfig,
    metrics: Arc<NotifyMetrics>,
    templates: Arc<Templates>,
    /// At most this many messages per `limits.per`.
    limit: Option<(u32, Duration)>,
    /// Set when the notifier stops: a send under way finishes and is recorded, nothing
    /// new starts.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    fn count(&self, regency: &str, outcome: &str) {
        self.metrics
            .notifications
            .with_label_values(&[&self.name, regency, outcome])
            .inc();
    }

    fn count_each(&self, regencies: &[String], outcome: &str) {
        for r in regencies {
            self.count(r, outcome);
        }
    }

    /// Tries one message until it is accepted or has used its tries, then reports it
    /// delivered or dead-lettered.
    async fn deliver(&self, job: Job) {
        let regencies = job.regencies();
        let mut wait = self.config.retry_after;
        let mut last_error = String::new();
        let mut delivered = false;
        for attempt in 1..=self.config.max_tries {
            if attempt > 1 {
                self.count_each(&regencies, "retried");
            }
            match self.sender.send(&job.outbound).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    self.count_each(&regencies, "failed");
                    last_error = chain(&e);
                    tracing::warn!(channel = %self.name, key = %job.outbound.key, attempt, error = %last_error, "notification not delivered");
                    if attempt < self.config.max_tries {
                        let mut stop = self.stop.clone();
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            // Neither delivered nor dead-lettered: read again after a restart.
                            _ = stop.wait_for(|stopping| *stopping) => return,
                        }
                        wait = (wait * 2).min(Duration::from_secs(300));
                    }
                }
            }
        }
        if delivered {
            self.delivered(&job);
        } else {
            self.dead_letter(&job, last_error).await;
        }
        let finished = job
            .origins
            .into_iter()
            .map(Finished::Alert)
            .chain(job.digest.map(Finished::Digest));
        for f in finished {
            if self.done.send(f).is_err() {
                return;
            }
        }
    }

    fn delivered(&self, job: &Job) {
        let keys: Vec<&str> = match job.outbound.kind {
            Kind::Daily => vec![job.outbound.key.as_str()],
            _ => job
                .outbound
                .alerts
                .iter()
                .map(|a| a.alert_id.as_str())
                .collect(),
        };
        let recorded = self
            .log
            .lock()
            .map_err(|_| Error::LogPoisoned)
            .and_then(|mut log| keys.iter().try_for_each(|key| log.record(key, &self.name)));
        if let Err(e) = recorded {
            // Delivered all the same; a restart may send it once more.
            tracing::error!(error = %chain(&e), "cannot record a delivery");
        }
        match job.outbound.kind {
            Kind::Daily => self.count_each(&job.regencies(), "digest_sent"),
            kind => {
                let outcome = if kind == Kind::Folded {
                    "folded"
                } else {
                    "sent"
                };
                for alert in &job.outbound.alerts {
                    self.count(&alert.regency_code, outcome);
                }
            }
        }
    }

    async fn dead_letter(&self, job: &Job, error: String) {
        let message = &job.outbound.message;
        let failed = |alert: Option<&Alert>, regency_code: String| FailedNotification {
            alert_id: alert.map_or_else(|| job.outbound.key.clone(), |a| a.alert_id.clone()),
            channel: self.name.clone(),
            regency_code,
            tries: self.config.max_tries,
            error: error.clone(),
            failed_at: Utc::now(),
            alert: alert.cloned(),
            subject: message.subject.clone(),
            text: message.text.clone(),
        };
        let failures: Vec<FailedNotification> = match &job.digest {
            Some((regency, _)) => vec![failed(None, regency.clone())],
            None => job
                .outbound
                .alerts
                .iter()
                .map(|a| failed(Some(a), a.regency_code.clone()))
                .collect(),
        };
        let records: Vec<Outgoing> = failures
            .iter()
            .map(|f| Outgoing {
                topic: TOPIC_NOTIFY_DLQ.to_owned(),
                partition: None,
                key: Some(f.alert_id.clone()),
                payload: serde_json::to_vec(f).unwrap_or_default(),
            })
            .collect();
        // The offset must not move past an alert that is neither delivered nor
        // dead-lettered: keep trying the DLQ.
        let mut backoff = pantau_kafka::health::Backoff::new();
        while let Err(e) = self.dlq.send_all(&records).await {
            tracing::error!(error = %chain(&e), "cannot dead-letter a notification");
            tokio::time::sleep(backoff.next_delay()).await;
        }
        for f in &failures {
            self.count(&f.regency_code, "dead_lettered");
            tracing::error!(channel = %self.name, key = %f.alert_id, tries = f.tries, "notification dead-lettered to pantau.notify.dlq");
        }
    }

    /// The alerts held back by the limit, as one message.
    fn fold(&self, held: Vec<Job>, limit: u32, per: Duration) -> Job {
        let messages: Vec<&Message> = held.iter().map(|j| j.outbound.message.as_ref()).collect();
        let message = folded_message(&self.templates, &messages, limit, per);
        let alerts: Vec<Arc<Alert>> = held
            .iter()
            .flat_map(|j| j.outbound.alerts.iter().cloned())
            .collect();
        let mut ids = Sha256::new();
        for a in &alerts {
            ids.update(a.alert_id.as_bytes());
        }
        Job {
            outbound: Outbound {
                key: format!(
                    "folded-{}",
                    pantau_core::text::hex_prefix(&ids.finalize(), 32)
                ),
                kind: Kind::Folded,
                alerts,
                message: Arc::new(message),
            },
            origins: held.into_iter().flat_map(|j| j.origins).collect(),
            digest: None,
        }
    }
}

/// Delivers one channel's queue in order. Past the channel's limit, alerts are held and
/// go out together as one message when the period ends; daily digests are never held.
async fn channel_worker(worker: Worker, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut period_start = tokio::time::Instant::now();
    let mut sent_in_period = 0u32;
    let mut held: Vec<Job> = Vec::new();
    let mut stop = worker.stop.clone();
    loop {
        let period_end = period_start + worker.limit.map_or(Duration::MAX / 4, |(_, per)| per);
        let job = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => return,
            job = queue.recv() => match job {
                Some(job) => Some(job),
                None => return,
            },
            _ = tokio::time::sleep_until(period_end), if !held.is_empty() => None,
        };
        if let Some((limit, per)) = worker.limit {
            if tokio::time::Instant::now() >= period_end {
                period_start = tokio::time::Instant::now();
                sent_in_period = 0;
                if !held.is_empty() {
                    let folded = worker.fold(std::mem::take(&mut held), limit, per);
                    worker.deliver(folded).await;
                    sent_in_period += 1;
                }
            }
        }
        let Some(job) = job else { continue };
        if job.outbound.kind == Kind::Alert {
            if let Some((limit, _)) = worker.limit {
                if sent_in_period >= limit {
                    held.push(job);
                    continue;
                }
            }
            sent_in_period += 1;
        }
        worker.deliver(job).await;
    }
}

/// Runs the notifier until interrupted (Ctrl-C or SIGTERM), committing what is done.
pub async fn run(
    kafka: &KafkaConfig,
    config: &NotifyConfig,
    metrics: Arc<NotifyMetrics>,
) -> Result<()> {
    let pseudonyms = pantau_core::pseudonym::Pseudonyms::from_env(
        pantau_core::pseudonym::KEY_ENV,
        config.allow_unkeyed_references,
    )?;
    let routes = Arc::new(Routes::load(&config.routes)?);
    let templates = Arc::new(Templates::locate(config.templates.as_deref())?);
    crate::chart::load_font(&config.chart_font)?;
    let log = Arc::new(std::sync::Mutex::new(DeliveredLog::open(
        &config.state_dir,
    )?));
    let mut tally = Tally::open(&config.state_dir)?;
    kafka
        .ensure_topics(&[TOPIC_NOTIFY_DLQ])
        .await
        .map_err(|source| Error::DlqTopic { source })?;
    let dlq = Arc::new(KafkaSink::new(kafka, None)?);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    let mut queues = HashMap::new();
    for (name, channel) in &routes.channels {
        let sender = crate::channel::sender_for(name, channel, routes.smtp.as_ref())?;
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
            templates: templates.clone(),
            limit: routes
                .max_messages(name)
                .map(|max| (max, routes.limits.per)),
            stop: stop_rx.clone(),
        };
        workers.spawn(channel_worker(worker, rx));
    }
    let queues = Arc::new(queues);
    let mut schedule = routes
        .digest
        .clone()
        .map(|digest| Schedule::new(&routes, digest, Utc::now(), |r| tally.last_end(r)));
    // Digests that fell due before a stop and did not reach every channel go first.
    let mut digests_waiting = HashMap::new();
    let unsent = tally.unsent();
    queue_digests(
        unsent,
        &mut tally,
        &log,
        &mut digests_waiting,
        &routes,
        &templates,
        &queues,
    )?;
    let follower = kafka
        .follower(
            &config.group,
            &[TOPIC_ALERTS, TOPIC_OUTLETS],
            metrics.unreadable.clone(),
        )
        .await?;
    // The registry first, so that even the first alerts name their outlet and kecamatan.
    let mut registry = {
        let (kafka, metrics) = (kafka.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || -> Result<HashMap<String, OutletInfo>> {
            let mut registry = HashMap::new();
            kafka.read_to_end(TOPIC_OUTLETS, |read| {
                if let Some(Followed::Outlet(outlet)) = read_followed(&read, &metrics.unreadable) {
                    registry.insert(outlet.outlet_id.clone(), outlet_info(*outlet));
                }
            })?;
            Ok(registry)
        })
        .await
        .map_err(Error::task("the registry reader"))??
    };
    tracing::info!(
        group = %config.group,
        channels = queues.len(),
        routes = routes.routes.len(),
        digest_districts = schedule.as_ref().map_or(0, Schedule::districts),
        outlets = registry.len(),
        "notifier following pantau.alerts"
    );

    // Offsets per topic: the registry's are committed as read, alerts' as delivered.
    let mut progress = Progress::default();
    let mut registry_next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| Error::Signal { source })?;
    const MAX_IN_FLIGHT: usize = 10_000;
    loop {
        tokio::select! {
            read = follower.next(), if progress.in_flight() < MAX_IN_FLIGHT => {
                let origin = (read.partition, read.offset);
                let alert = match read.record {
                    Some(Followed::Outlet(outlet)) => {
                        registry.insert(outlet.outlet_id.clone(), outlet_info(*outlet));
                        registry_next.insert(origin.0, origin.1 + 1);
                        continue;
                    }
                    // From here on the alert is what a person reads.
                    Some(Followed::Alert(alert)) => pseudonyms.for_people(*alert),
                    None if read.topic == TOPIC_OUTLETS => {
                        registry_next.insert(origin.0, origin.1 + 1);
                        continue;
                    }
                    None => {
                        progress.seen(origin.0, origin.1, 0);
                        continue;
                    }
                };
                if alert.shadow {
                    progress.seen(origin.0, origin.1, 0);
                    continue;
                }
                let outlet = alert.outlet_id().and_then(|id| registry.get(id));
                if schedule.is_some() && !routes.digest_channels(&alert.regency_code).0.is_empty() {
                    tally.add(TallyEntry {
                        alert_id: alert.alert_id.clone(),
                        regency_code: alert.regency_code.clone(),
                        category: alert.category.clone(),
                        outlet_id: alert.outlet_id().map(str::to_owned),
                        outlet_name: outlet.map(|o| o.name.clone()),
                        kecamatan: outlet.and_then(|o| kecamatan(&alert.regency_code, &o.district_code)),
                        received_at: Utc::now(),
                        counted_in: None,
                        digested: false,
                    })?;
                }
                let channels = routes.channels_for(&alert);
                if channels.is_empty() {
                    metrics.notify_unrouted.with_label_values(&[&alert.regency_code]).inc();
                }
                let pending: Vec<&str> = {
                    let log = log.lock().map_err(|_| Error::LogPoisoned)?;
                    channels.into_iter().filter(|c| !log.contains(&alert.alert_id, c)).collect()
                };
                progress.seen(origin.0, origin.1, pending.len());
                if pending.is_empty() {
                    continue;
                }
                let rendered = Arc::new(templates.render(&alert, outlet, &routes.dashboard_url));
                let alert = Arc::new(alert);
                for channel in pending {
                    let job = Job {
                        outbound: Outbound {
                            key: alert.alert_id.clone(),
                            kind: Kind::Alert,
                            alerts: vec![alert.clone()],
                            message: rendered.clone(),
                        },
                        origins: vec![origin],
                        digest: None,
                    };
                    if queues[channel].send(job).is_err() {
                        return Err(Error::WorkerStopped { channel: channel.to_owned() });
                    }
                }
            }
            Some(finished) = done_rx.recv() => {
                finish(finished, &mut progress, &mut digests_waiting, &mut tally)?;
            }
            _ = tick.tick() => {
                commit(&follower, TOPIC_ALERTS, &progress.take_committable());
                let registry_offsets: Vec<(i32, i64)> = std::mem::take(&mut registry_next).into_iter().collect();
                commit(&follower, TOPIC_OUTLETS, &registry_offsets);
                if let Some(schedule) = schedule.as_mut() {
                    let due = schedule.due(&routes, Utc::now());
                    if !due.is_empty() {
                        let digests = tally.fall_due(due)?;
                        queue_digests(digests, &mut tally, &log, &mut digests_waiting, &routes, &templates, &queues)?;
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    // Sends under way finish (each try is bounded), so what went out is in the log;
    // what did not is read again after a restart.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("channel workers still sending after 30 s; stopping without them");
    }
    while let Ok(finished) = done_rx.try_recv() {
        finish(finished, &mut progress, &mut digests_waiting, &mut tally)?;
    }
    commit(&follower, TOPIC_ALERTS, &progress.take_committable());
    tracing::info!(in_flight = progress.in_flight(), "notifier stopping");
    Ok(())
}

/// A channel is done with an alert or a digest; a digest done on every channel is sent.
fn finish(
    finished: Finished,
    progress: &mut Progress,
    digests_waiting: &mut HashMap<DigestId, usize>,
    tally: &mut Tally,
) -> Result<()> {
    match finished {
        Finished::Alert(origin) => progress.done(origin),
        Finished::Digest(id) => {
            if let Some(left) = digests_waiting.get_mut(&id) {
                *left -= 1;
                if *left == 0 {
                    digests_waiting.remove(&id);
                    tally.sent(&id.0, id.1)?;
                }
            }
        }
    }
    Ok(())
}

/// Hands each digest to every channel of its district's routes that does not have it
/// yet. Realization is read from Prometheus off the loop, so a slow Prometheus holds
/// nothing up.
fn queue_digests(
    digests: Vec<Due>,
    tally: &mut Tally,
    log: &std::sync::Mutex<DeliveredLog>,
    digests_waiting: &mut HashMap<DigestId, usize>,
    routes: &Arc<Routes>,
    templates: &Arc<Templates>,
    queues: &Arc<HashMap<String, mpsc::UnboundedSender<Job>>>,
) -> Result<()> {
    let every = routes
        .digest
        .as_ref()
        .map_or(Duration::from_secs(86_400), |d| d.every);
    let mut work = Vec::new();
    for digest in digests {
        let channels: Vec<String> = {
            let log = log.lock().map_err(|_| Error::LogPoisoned)?;
            digest
                .channels
                .iter()
                // A channel since removed from the routing file is not waited for.
                .filter(|c| queues.contains_key(*c) && !log.contains(&digest.key(), c))
                .cloned()
                .collect()
        };
        if channels.is_empty() {
            tally.sent(&digest.regency_code, digest.end)?;
            continue;
        }
        digests_waiting.insert((digest.regency_code.clone(), digest.end), channels.len());
        let entries: Vec<TallyEntry> = tally
            .counted(&digest.regency_code, digest.end)
            .into_iter()
            .cloned()
            .collect();
        work.push((digest, channels, entries));
    }
    if work.is_empty() {
        return Ok(());
    }
    let prometheus = routes
        .digest
        .as_ref()
        .and_then(|d| d.prometheus_url.clone());
    let (routes, templates, queues) = (routes.clone(), templates.clone(), queues.clone());
    tokio::spawn(async move {
        let realization = match prometheus {
            None => Err("prometheus_url belum diatur di berkas rute".to_owned()),
            Some(url) => tokio::task::spawn_blocking(move || fetch_realization(&url))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| {
                    tracing::warn!(error = %chain(&e), "realization for the daily digest not read from Prometheus");
                    "Prometheus tidak dapat dibaca".to_owned()
                })),
        };
        for (digest, channels, entries) in work {
            let entries: Vec<&TallyEntry> = entries.iter().collect();
            let text = realization_text(
                realization
                    .as_ref()
                    .map(|r| r.get(&digest.regency_code))
                    .map_err(String::as_str),
            );
            let start = digest.end - chrono::Duration::from_std(every).unwrap_or_default();
            let start = entries
                .iter()
                .map(|e| e.received_at)
                .min()
                .map_or(start, |first| first.min(start));
            let message = Arc::new(daily_message(
                &templates,
                &routes.dashboard_url,
                &digest.regency_code,
                start,
                digest.end,
                &entries,
                text,
            ));
            for channel in &channels {
                let job = Job {
                    outbound: Outbound {
                        key: digest.key(),
                        kind: Kind::Daily,
                        alerts: Vec::new(),
                        message: message.clone(),
                    },
                    origins: Vec::new(),
                    digest: Some((digest.regency_code.clone(), digest.end)),
                };
                if queues.get(channel).is_none_or(|q| q.send(job).is_err()) {
                    tracing::error!(channel = %channel, regency = %digest.regency_code, "daily digest not queued: the channel's worker stopped");
                }
            }
        }
    });
    Ok(())
}

fn outlet_info(outlet: pantau_core::model::Outlet) -> OutletInfo {
    OutletInfo {
        name: outlet.name,
        district_code: outlet.district_code,
    }
}

/// Commits the next offsets to read of one topic's partitions; the delivered log keeps a
/// notification read again after a failed commit from going out twice.
fn commit(follower: &Follower, topic: &str, offsets: &[(i32, i64)]) {
    let next = offsets
        .iter()
        .map(|(partition, offset)| ((topic.to_owned(), *partition), *offset))
        .collect();
    follower.commit(&next);
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
