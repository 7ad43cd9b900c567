//! # kestrel-raft: every write goes through a range's Raft log
//!
//! Each range (a contiguous span of the keyspace, see kestrel-kv) is one `openraft` group. A
//! write is *evaluated* by the layer above (conflict checks, timestamps) into a plain
//! [`Batch`](kestrel_storage::Batch) of storage operations; this crate *replicates* that batch:
//!
//! 1. [`RaftGroup::propose`] hands a [`Command`] to the range's Raft leader (`client_write`).
//! 2. The leader appends the entry to the range's log ([`LogStore`], column family `raftlog`
//!    of the shared engine). The node's [`GroupCommit`] fsyncs the WAL for every proposal
//!    waiting at the time: concurrent commits of all ranges share one fsync. On a single node
//!    the proposer waits for it after step 3; a proposal marked [`Durability::Deferred`] does
//!    not wait and becomes durable with the next fsync (see `group_commit.rs` for when both
//!    are sound).
//! 3. Once a quorum has the entry (on one node: at once), the [`StateMachine`] applies it: the
//!    batch and the range's new applied log id are written in one atomic engine batch (no fsync
//!    of its own: the log already made the entry durable, and a restart re-applies every entry
//!    after the recorded applied id).
//! 4. `client_write` returns after apply; the proposer then sees its writes in the engine, and
//!    [`RaftGroup::propose`] returns once they are also durable.
//!
//! Because the batch is evaluated before replication (as in CockroachDB's proposer-evaluated
//! KV), applying it is deterministic and replicas stay identical. A snapshot (for log
//! compaction, every `snapshot_logs_since_last` entries or `snapshot_log_bytes_max` bytes)
//! names the range and its applied point and copies nothing: the state it stands for is
//! already in the engine. Shipping a span to another replica comes with the cluster.
//!
//! On a single node every group has one voter and [`LocalNetwork`] never carries a message;
//! the multi-node issue adds a real transport behind the same `RaftNetworkFactory` seam.

#![allow(clippy::result_large_err)] // openraft's StorageError is large; its traits fix the signatures.

mod group_commit;
mod log_store;
mod metrics;
mod network;
mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use group_commit::GroupCommit;
use kestrel_storage::Batch;
pub use log_store::LogStore;
pub use metrics::RaftMetrics;
pub use network::LocalNetwork;
pub use state_machine::{AppliedGeneration, Span, StateMachine};

pub type NodeId = u64;
pub type RangeId = u64;

/// What a range's Raft log carries: an evaluated batch of storage operations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub batch: Batch,
    /// How the proposer needs the entry made durable. Not part of the log: an entry read back
    /// from it is already durable.
    #[serde(skip)]
    pub durability: Durability,
}

/// When a proposal's log entry must be durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Before the entry is applied and the proposal returns (an fsync, shared by a group).
    #[default]
    Synced,
    /// With the next fsync of any range; the entry is applied at once. Only for entries whose
    /// loss in a crash recovery repairs and that nothing acknowledged depends on until a later
    /// synced entry (see `group_commit.rs`).
    Deferred,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} ops)", self.batch.len())
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft: {0}")]
    Raft(String),
    #[error("raft group of range {0} has no leader within {1:?}")]
    NoLeader(RangeId, Duration),
}

/// Tunables of every range's Raft group.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and so allow purging the log) after this many entries.
    pub snapshot_logs_since_last: u64,
    /// Entries a snapshot leaves in the log (the rest up to the snapshot are purged).
    pub log_entries_kept_after_snapshot: u64,
    /// Also snapshot, and purge the whole log up to the snapshot, once this many bytes of
    /// entries were appended since the last such compaction: a bulk load writes few but
    /// large entries, which an entry count would keep for ever (doubling its disk use and
    /// making every restart read them). Sound while a group's only voter is this node; with
    /// followers it must wait for the snapshot transport (cluster issue).
    pub snapshot_log_bytes_max: u64,
    /// How long a bytes-triggered compaction waits for its snapshot before giving up.
    pub snapshot_wait_timeout_ms: u64,
    pub leader_wait_timeout_ms: u64,
    /// Bytes of each range's newest log entries kept in memory for applying them.
    pub log_cache_bytes_max: usize,
    /// The most appends one WAL fsync completes.
    pub group_commit_waiters_max: usize,
    /// How long the WAL syncer waits, after the first append of a group, for others to join
    /// before it fsyncs (PostgreSQL's `commit_delay`; 0 = at once). Worth it only when an
    /// fsync is cheap next to the time between commits.
    pub group_commit_delay_us: u64,
    /// Whether appends are reported flushed once written, leaving the fsync wait to
    /// [`Durability::Synced`] proposers (so a range's commits can share fsyncs) and letting
    /// [`Durability::Deferred`] ones skip it. Sound only while every group's only voter is this
    /// node (see `group_commit.rs`).
    pub deferred_sync: bool,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 500,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 3000,
            snapshot_logs_since_last: 20_000,
            log_entries_kept_after_snapshot: 1000,
            snapshot_log_bytes_max: 64 << 20,
            snapshot_wait_timeout_ms: 10_000,
            leader_wait_timeout_ms: 10_000,
            log_cache_bytes_max: 4 << 20,
            group_commit_waiters_max: 4096,
            group_commit_delay_us: 0,
            deferred_sync: true,
        }
    }
}

/// One range's Raft group on this node.
pub struct RaftGroup {
    pub range_id: RangeId,
    pub node_id: NodeId,
    raft: openraft::Raft<TypeConfig>,
    span: Arc<parking_lot::RwLock<Span>>,
    wal: Arc<GroupCommit>,
    generation: Arc<AppliedGeneration>,
    compaction: Arc<Compaction>,
}

/// The state of bytes-triggered log compaction (`RaftConfig::snapshot_log_bytes_max`).
struct Compaction {
    appended_bytes: Arc<AtomicU64>,
    bytes_max: u64,
    wait_timeout_ms: u64,
    running: AtomicBool,
}

impl RaftGroup {
    /// Opens (or creates) the group of `range_id`: recovers its log and applied state from
    /// the engine of `wal`, initializes a fresh group with this node as its only voter, and
    /// waits until this node leads it.
    pub async fn open(
        wal: &Arc<GroupCommit>,
        range_id: RangeId,
        node_id: NodeId,
        span: Span,
        config: &RaftConfig,
    ) -> Result<Self, RaftError> {
        let raft_config = openraft::Config {
            cluster_name: format!("range-{range_id}"),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                config.snapshot_logs_since_last,
            ),
            max_in_snapshot_log_to_keep: config.log_entries_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Raft(e.to_string()))?;
        let span = Arc::new(parking_lot::RwLock::new(span));
        let log = LogStore::new(wal.clone(), range_id, config.log_cache_bytes_max);
        let compaction = Arc::new(Compaction {
            appended_bytes: log.appended_bytes(),
            bytes_max: config.snapshot_log_bytes_max,
            wait_timeout_ms: config.snapshot_wait_timeout_ms,
            running: AtomicBool::new(false),
        });
        let generation = Arc::new(AppliedGeneration::new());
        let sm = StateMachine::open(
            wal.engine().clone(),
            range_id,
            span.clone(),
            generation.clone(),
        )
        .map_err(|e| RaftError::Raft(e.to_string()))?;
        let raft = openraft::Raft::new(node_id, Arc::new(raft_config), LocalNetwork, log, sm)
            .await
            .map_err(|e| RaftError::Raft(format!("recovering range {range_id}: {e}")))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        if !initialized {
            let mut members = BTreeMap::new();
            members.insert(node_id, openraft::BasicNode::default());
            raft.initialize(members)
                .await
                .map_err(|e| RaftError::Raft(e.to_string()))?;
        }
        let wait = Duration::from_millis(config.leader_wait_timeout_ms);
        raft.wait(Some(wait))
            .current_leader(node_id, "single-voter group elects itself")
            .await
            .map_err(|_| RaftError::NoLeader(range_id, wait))?;
        if wal.deferred_sync() {
            // Appends are reported flushed before their fsync: sound only for a lone voter.
            let voters: Vec<NodeId> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            assert_eq!(
                voters,
                vec![node_id],
                "deferred_sync needs a single-voter group"
            );
        }
        Ok(Self {
            range_id,
            node_id,
            raft,
            span,
            wal: wal.clone(),
            generation,
            compaction,
        })
    }

    /// Replicates `batch` through the log and returns once it is durable and applied.
    pub async fn propose(&self, batch: Batch) -> Result<(), RaftError> {
        self.propose_with(batch, Durability::Synced).await
    }

    /// Like [`Self::propose`], but returns once the batch is applied; it becomes durable with
    /// the next synced entry of any range on this node (see [`Durability::Deferred`]).
    pub async fn propose_deferred(&self, batch: Batch) -> Result<(), RaftError> {
        self.propose_with(batch, Durability::Deferred).await
    }

    async fn propose_with(&self, batch: Batch, durability: Durability) -> Result<(), RaftError> {
        metrics::METRICS.proposals.inc();
        self.raft
            .client_write(Command { batch, durability })
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        self.maybe_compact();
        match durability {
            // Without deferred_sync the append itself waited for the fsync.
            Durability::Synced if self.wal.deferred_sync() => self.wal.sync().await,
            Durability::Synced => Ok(()),
            Durability::Deferred => {
                metrics::METRICS.deferred_proposals.inc();
                Ok(())
            }
        }
    }

    /// Starts a compaction in the background when enough log bytes were appended since the
    /// last one (and none is running): snapshot, wait for it, purge the log up to it.
    fn maybe_compact(&self) {
        let c = &self.compaction;
        if c.appended_bytes.load(Ordering::Relaxed) < c.bytes_max
            || c.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // Bytes appended from here on count towards the next compaction.
        let counted = c.appended_bytes.swap(0, Ordering::Relaxed);
        let (raft, c) = (self.raft.clone(), c.clone());
        let range_id = self.range_id;
        tokio::spawn(async move {
            if let Err(e) = compact(&raft, c.wait_timeout_ms).await {
                tracing::warn!(range = range_id, "log compaction failed: {e}");
                // Not compacted: the next proposal tries again.
                c.appended_bytes.fetch_add(counted, Ordering::Relaxed);
            }
            c.running.store(false, Ordering::Release);
        });
    }

    /// Changes after every apply of this replica (see [`AppliedGeneration`]).
    pub fn applied_generation(&self) -> u64 {
        self.generation.get()
    }

    /// Updates the span this replica's state machine owns (after a split).
    pub fn set_span(&self, span: Span) {
        *self.span.write() = span;
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Snapshots `raft` at its applied index and purges its log up to there.
async fn compact(raft: &openraft::Raft<TypeConfig>, wait_timeout_ms: u64) -> Result<(), String> {
    let Some(applied) = raft.metrics().borrow().last_applied else {
        return Ok(());
    };
    raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
    raft.wait(Some(Duration::from_millis(wait_timeout_ms)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied.index),
            "snapshot covers the applied index",
        )
        .await
        .map_err(|e| e.to_string())?;
    raft.trigger()
        .purge_log(applied.index)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
