//! A range's state machine: applies replicated batches to the shared engine.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kestrel_storage::{Batch, Engine};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, StorageError, StoredMembership,
};

use crate::log_store::{read_err, write_err, APPLIED};
use crate::metrics::METRICS;
use crate::{NodeId, RangeId, TypeConfig};

/// The user-key span `[start, end)` a range owns (`end = None`: to the end of the keyspace).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl Span {
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_deref().is_none_or(|e| key < e)
    }
}

pub(crate) type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

pub struct StateMachine {
    engine: Arc<dyn Engine>,
    range_id: RangeId,
    /// The span this replica owns; snapshot shipping (cluster issue) streams it.
    #[allow(dead_code)]
    span: Arc<parking_lot::RwLock<Span>>,
    applied: AppliedState,
    generation: Arc<AppliedGeneration>,
}

/// Changes whenever a replica's state machine writes to the engine, both before the write
/// and after it is visible: a reader that saw the same value before and after reading the
/// range's data knows no apply wrote in between, not even one still under way (see
/// `kestrel_kv`'s read cache and `Txn::stamp_span`). Values come from one process-wide
/// sequence, so two replicas (say, before and after a split) never share one.
#[derive(Debug)]
pub struct AppliedGeneration(AtomicU64);

impl Default for AppliedGeneration {
    /// A fresh value, like [`Self::new`] (never 0 or another instance's).
    fn default() -> Self {
        Self::new()
    }
}

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

impl AppliedGeneration {
    pub fn new() -> Self {
        Self(AtomicU64::new(GENERATIONS.fetch_add(1, Ordering::Relaxed)))
    }

    /// The current value: read it before reading the range's data, compare it after.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self) {
        let next = GENERATIONS.fetch_add(1, Ordering::Relaxed);
        self.0.store(next, Ordering::Release);
    }
}

/// A snapshot's payload. The state a snapshot stands for is already in the engine the log
/// lives in, so for log compaction on this node a snapshot names the range and its applied
/// point and copies nothing (building one never stalls applies or doubles memory). Shipping a
/// range's data to another node — a streamed scan of the span — comes with the cluster issue.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotPayload {
    range_id: RangeId,
}

impl StateMachine {
    pub fn open(
        engine: Arc<dyn Engine>,
        range_id: RangeId,
        span: Arc<parking_lot::RwLock<Span>>,
        generation: Arc<AppliedGeneration>,
    ) -> Result<Self, StorageError<NodeId>> {
        let applied = APPLIED
            .get(engine.as_ref(), range_id)?
            .unwrap_or_else(|| (None, StoredMembership::default()));
        Ok(Self {
            engine,
            range_id,
            span,
            applied,
            generation,
        })
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = bincode::serialize(&SnapshotPayload {
            range_id: self.range_id,
        })
        .map_err(write_err)?;
        let (last_log_id, membership) = self.applied.clone();
        let snapshot_id = format!(
            "{}-{}",
            self.range_id,
            last_log_id.map(|l| l.index).unwrap_or(0)
        );
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership: membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// A snapshot built while the state machine was quiescent, handed out by the builder.
pub struct PrebuiltSnapshot(Option<Result<Snapshot<TypeConfig>, StorageError<NodeId>>>);

impl RaftSnapshotBuilder<TypeConfig> for PrebuiltSnapshot {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        self.0
            .take()
            .unwrap_or_else(|| Err(write_err(std::io::Error::other("snapshot already taken"))))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = PrebuiltSnapshot;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<NodeId>> {
        Ok(self.applied.clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Batch::new();
        let mut responses = Vec::new();
        for entry in entries {
            self.applied.0 = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => batch.extend(cmd.batch),
                EntryPayload::Membership(m) => {
                    self.applied.1 = StoredMembership::new(Some(entry.log_id), m)
                }
            }
            responses.push(());
        }
        if responses.is_empty() {
            return Ok(responses);
        }
        APPLIED.put(&mut batch, self.range_id, &self.applied)?;
        self.generation.advance();
        self.engine.write(&batch, false).map_err(write_err)?;
        self.generation.advance();
        METRICS.applied_entries.inc_by(responses.len() as u64);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        PrebuiltSnapshot(Some(self.build()))
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let payload: SnapshotPayload =
            bincode::deserialize(snapshot.get_ref()).map_err(read_err)?;
        // Only a snapshot of this very replica can be installed: its data is already here.
        if payload.range_id != self.range_id || meta.last_log_id < self.applied.0 {
            return Err(write_err(std::io::Error::other(
                "installing another replica's snapshot needs a snapshot transport (cluster issue)",
            )));
        }
        self.applied = (meta.last_log_id, meta.last_membership.clone());
        let mut batch = Batch::new();
        APPLIED.put(&mut batch, self.range_id, &self.applied)?;
        self.generation.advance();
        self.engine.write(&batch, true).map_err(write_err)?;
        self.generation.advance();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        if self.applied.0.is_none() {
            return Ok(None);
        }
        self.build().map(Some)
    }
}
