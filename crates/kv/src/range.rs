//! A range: its descriptor and this node's replica of it.

use std::sync::Arc;

use kestrel_raft::{RaftGroup, Span};

use crate::latch::Latches;
use crate::pending::Pending;

/// The persistent description of a range (stored in the meta range).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeDescriptor {
    pub range_id: u64,
    pub start: Vec<u8>,
    /// Exclusive end; `None` is the end of the keyspace.
    pub end: Option<Vec<u8>>,
    /// Node ids holding a replica (one voter per node).
    pub replicas: Vec<u64>,
    /// Bumped on every split or merge, so stale routing can be detected.
    pub generation: u64,
}

impl RangeDescriptor {
    pub fn span(&self) -> Span {
        Span {
            start: self.start.clone(),
            end: self.end.clone(),
        }
    }
    pub fn contains(&self, key: &[u8]) -> bool {
        self.span().contains(key)
    }
}

/// This node's replica of a range: the Raft group plus the leaseholder's evaluation state.
pub struct Replica {
    pub desc: parking_lot::RwLock<RangeDescriptor>,
    pub group: RaftGroup,
    pub latches: Arc<Latches>,
    pub pending: Arc<Pending>,
    /// Commits hold it shared from evaluation to apply; a split holds it exclusively.
    pub split_lock: Arc<tokio::sync::RwLock<()>>,
}

impl Replica {
    pub fn new(desc: RangeDescriptor, group: RaftGroup) -> Self {
        Self {
            desc: parking_lot::RwLock::new(desc),
            group,
            latches: Arc::new(Latches::default()),
            pending: Arc::new(Pending::default()),
            split_lock: Arc::new(tokio::sync::RwLock::new(())),
        }
    }
    pub fn range_id(&self) -> u64 {
        self.desc.read().range_id
    }
}
