//! # kestrel-raft: every write goes through a range's Raft log
//!
//! Each range (a contiguous span of the keyspace, see kestrel-kv) is one `openraft` group. A
//! write is *evaluated* by the layer above (conflict checks, timestamps) into a plain
//! [`Batch`](kestrel_storage::Batch) of storage operations; this crate *replicates* that batch:
//!
//! 1. [`RaftGroup::propose`] hands a [`Command`] to the range's Raft leader (`client_write`).
//! 2. The leader appends the entry to the range's log ([`LogStore`], column family `raftlog`
//!    of the shared engine) and fsyncs it — the commit is durable from here on. Concurrent
//!    appends of many ranges share one RocksDB WAL and so one group-committed fsync.
//! 3. Once a quorum has the entry (on one node: at once), the [`StateMachine`] applies it: the
//!    batch and the range's new applied log id are written in one atomic engine batch (no fsync
//!    of its own: the log already made the entry durable, and a restart re-applies every entry
//!    after the recorded applied id).
//! 4. `client_write` returns after apply; the proposer then sees its writes in the engine.
//!
//! Because the batch is evaluated before replication (as in CockroachDB's proposer-evaluated
//! KV), applying it is deterministic and replicas stay identical. A snapshot (for log
//! compaction) names the range and its applied point and copies nothing: the state it stands
//! for is already in the engine. Shipping a span to another replica comes with the cluster.
//!
//! On a single node every group has one voter and [`LocalNetwork`] never carries a message;
//! the multi-node issue adds a real transport behind the same `RaftNetworkFactory` seam.

#![allow(clippy::result_large_err)] // openraft's StorageError is large; its traits fix the signatures.

mod log_store;
mod metrics;
mod network;
mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use kestrel_storage::{Batch, Engine};
pub use log_store::LogStore;
pub use metrics::RaftMetrics;
pub use network::LocalNetwork;
pub use state_machine::{Span, StateMachine};

pub type NodeId = u64;
pub type RangeId = u64;

/// What a range's Raft log carries: an evaluated batch of storage operations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub batch: Batch,
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
    pub leader_wait_timeout_ms: u64,
    /// Bytes of each range's newest log entries kept in memory for applying them.
    pub log_cache_bytes_max: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 500,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 3000,
            snapshot_logs_since_last: 20_000,
            leader_wait_timeout_ms: 10_000,
            log_cache_bytes_max: 4 << 20,
        }
    }
}

/// One range's Raft group on this node.
pub struct RaftGroup {
    pub range_id: RangeId,
    pub node_id: NodeId,
    raft: openraft::Raft<TypeConfig>,
    span: Arc<parking_lot::RwLock<Span>>,
}

impl RaftGroup {
    /// Opens (or creates) the group of `range_id`: recovers its log and applied state from
    /// `engine`, initializes a fresh group with this node as its only voter, and waits until
    /// this node leads it.
    pub async fn open(
        engine: Arc<dyn Engine>,
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
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Raft(e.to_string()))?;
        let span = Arc::new(parking_lot::RwLock::new(span));
        let log = LogStore::new(engine.clone(), range_id, config.log_cache_bytes_max);
        let sm = StateMachine::open(engine, range_id, span.clone())
            .map_err(|e| RaftError::Raft(e.to_string()))?;
        let raft = openraft::Raft::new(node_id, Arc::new(raft_config), LocalNetwork, log, sm)
            .await
            .map_err(|e| RaftError::Raft(e.to_string()))?;
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
        Ok(Self {
            range_id,
            node_id,
            raft,
            span,
        })
    }

    /// Replicates `batch` through the log and returns once it is durable and applied.
    pub async fn propose(&self, batch: Batch) -> Result<(), RaftError> {
        metrics::METRICS.proposals.inc();
        self.raft
            .client_write(Command { batch })
            .await
            .map(|_| ())
            .map_err(|e| RaftError::Raft(e.to_string()))
    }

    /// Updates the span this replica's state machine owns (after a split).
    pub fn set_span(&self, span: Span) {
        *self.span.write() = span;
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
