//! Rebalances in the middle of a run: librdkafka calls them back while the loop waits
//! for records, so the loop parks its [`Worker`] in [`Shared`] between turns. On an
//! assignment the internal partitions are restored from their checkpoints; on a
//! revocation they are checkpointed and committed before they go (or released without
//! a commit when the group session was lost).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::detect::Detector;
use crate::error::{Error, Result};
use crate::metrics::RunMetrics;
use pantau_core::error::chain;
use pantau_core::model::PartitionId;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::source::{CommitOffset, Group, Origin, RebalanceHook, Start};

/// What the rebalance callback and the pipeline loop share: the loop parks its worker
/// here while it waits for records (when rebalances happen), and takes it back to work.
pub(super) struct Shared {
    worker: Mutex<Option<Worker>>,
    /// An error met inside a rebalance callback, for the loop to stop on.
    failure: Mutex<Option<Error>>,
    metrics: Arc<RunMetrics>,
}

/// What a turn of the loop works with, and a rebalance callback too.
pub(super) struct Worker {
    pub(super) detector: Detector,
    /// Alerts and dead letters (in transactions when asked for).
    pub(super) alerts: KafkaSink,
    /// Next offsets of input partitions whose forwarded copies are acknowledged.
    pub(super) routed: BTreeMap<PartitionId, i64>,
}

impl Shared {
    pub(super) fn new(worker: Worker, metrics: Arc<RunMetrics>) -> Shared {
        Shared {
            worker: Mutex::new(Some(worker)),
            failure: Mutex::new(None),
            metrics,
        }
    }

    /// The error a rebalance callback met since the last turn, taken.
    pub(super) fn failure(&self) -> Option<Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }

    fn fail(&self, error: Error) {
        tracing::error!(error = %chain(&error), "rebalance failed");
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(error);
        }
    }

    pub(super) fn park(&self, worker: Worker) {
        if let Ok(mut slot) = self.worker.lock() {
            *slot = Some(worker);
        }
    }

    pub(super) fn take(&self) -> Result<Worker> {
        self.worker
            .lock()
            .ok()
            .and_then(|mut w| w.take())
            .ok_or(Error::WorkerLost(
                "the pipeline worker was lost in a rebalance",
            ))
    }

    /// Restores the assigned internal partitions from their checkpoints and says where
    /// each starts; input partitions start from their committed offsets.
    fn assign(
        worker: &mut Worker,
        group: &Group<'_>,
        assigned: &[Origin],
    ) -> Result<Vec<(Origin, Start)>> {
        let internal: Vec<Origin> = assigned
            .iter()
            .copied()
            .filter(|o| matches!(o, Origin::ByProvince(_)))
            .collect();
        if internal.is_empty() {
            return Ok(Vec::new());
        }
        let mut starts = Vec::new();
        for (origin, commit) in group.committed(&internal)? {
            starts.push((origin, worker.detector.assign(origin.partition(), commit)?));
        }
        Ok(starts)
    }

    fn revoke(
        worker: &mut Worker,
        group: &Group<'_>,
        revoked: &[Origin],
        metrics: &RunMetrics,
    ) -> Result<()> {
        let internal: Vec<i32> = revoked
            .iter()
            .filter_map(|o| match o {
                Origin::ByProvince(p) => Some(*p),
                Origin::Input(_) => None,
            })
            .collect();
        if group.assignment_lost() {
            // The session expired (a busy broker, a stalled host): the partitions are
            // already someone else's and no commit of this member is accepted. Release
            // them; librdkafka rejoins, and whoever takes them resumes from the last
            // commit (alerts since then come again under the same ids).
            metrics.group_sessions_lost.inc();
            tracing::warn!(
                partitions = revoked.len(),
                "the consumer group session was lost; releasing the partitions without a commit and rejoining"
            );
            release(worker, &internal, revoked);
            return Ok(());
        }
        let mut offsets = worker.detector.checkpoint(&internal)?;
        if worker.alerts.is_transactional() {
            // Input offsets went with their forwarded copies, in the router's transactions.
            group.commit_in(&worker.alerts, &offsets)?;
        } else {
            offsets.extend(revoked.iter().filter_map(|o| match o {
                Origin::Input(pid) => worker.routed.get(pid).map(|offset| CommitOffset {
                    origin: *o,
                    offset: *offset,
                    metadata: None,
                }),
                Origin::ByProvince(_) => None,
            }));
            if !offsets.is_empty() {
                if let Err(e) = group.commit(&offsets) {
                    // The new owner resumes from the last commit that went through.
                    tracing::warn!(error = %chain(&e), "cannot commit the revoked partitions; their new owner re-reads from the last commit");
                }
            }
        }
        release(worker, &internal, revoked);
        Ok(())
    }
}

/// Forgets revoked partitions: their engines and what was routed from them.
fn release(worker: &mut Worker, internal: &[i32], revoked: &[Origin]) {
    for p in internal {
        worker.detector.release(*p);
    }
    for o in revoked {
        if let Origin::Input(pid) = o {
            worker.routed.remove(pid);
        }
    }
}

impl Shared {
    /// Runs a rebalance step on the parked worker; a failure is kept for the loop.
    fn with_parked(&self, step: impl FnOnce(&mut Worker) -> Result<()>) {
        let Ok(mut slot) = self.worker.lock() else {
            return self.fail(Error::WorkerLost("worker lock poisoned"));
        };
        let Some(worker) = slot.as_mut() else {
            return self.fail(Error::WorkerLost("rebalance while the worker was busy"));
        };
        if let Err(e) = step(worker) {
            drop(slot);
            self.fail(e);
        }
    }
}

impl RebalanceHook for Shared {
    fn assigning(&self, group: &Group<'_>, assigned: &[Origin]) -> Vec<(Origin, Start)> {
        let mut starts = Vec::new();
        self.with_parked(|worker| {
            starts = Shared::assign(worker, group, assigned)?;
            Ok(())
        });
        starts
    }

    fn revoking(&self, group: &Group<'_>, revoked: &[Origin]) {
        self.with_parked(|worker| Shared::revoke(worker, group, revoked, &self.metrics));
    }
}
