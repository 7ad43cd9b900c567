//! Latches: a commit holds write latches on the keys it writes and, for a SERIALIZABLE
//! transaction, read latches on the spans it read, from evaluation until its batch is applied.
//! Write latches exclude each other and any read latch covering the key; read latches share.
//! So no two overlapping commits evaluate against the same state, and no write lands inside a
//! span while a serializable commit is validating that span.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

pub use kestrel_raft::Span;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{KvError, Result};

#[derive(Default)]
struct Held {
    writes: BTreeSet<Vec<u8>>,
    /// Read latches by owner id; read spans may overlap each other.
    reads: Vec<(u64, Span)>,
    next_id: u64,
}

impl Held {
    fn conflicts(&self, writes: &[Vec<u8>], reads: &[Span]) -> bool {
        let write_blocked = writes
            .iter()
            .any(|k| self.writes.contains(k) || self.reads.iter().any(|(_, s)| s.contains(k)));
        write_blocked
            || reads.iter().any(|s| {
                let upper = match &s.end {
                    Some(e) => Bound::Excluded(e.clone()),
                    None => Bound::Unbounded,
                };
                self.writes
                    .range((Bound::Included(s.start.clone()), upper))
                    .next()
                    .is_some()
            })
    }
}

#[derive(Default)]
pub struct Latches {
    held: Mutex<Held>,
    released: Notify,
}

pub struct LatchGuard {
    latches: Arc<Latches>,
    writes: Vec<Vec<u8>>,
    read_id: Option<u64>,
}

impl Latches {
    /// Acquires write latches on `writes` and read latches on `reads`, all at once
    /// (all-or-nothing, so no deadlock between commits on one range).
    pub async fn acquire(
        self: &Arc<Self>,
        writes: Vec<Vec<u8>>,
        reads: Vec<Span>,
        timeout_ms: u64,
    ) -> Result<LatchGuard> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_acquire(&writes, &reads) {
                return Ok(g);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(KvError::Timeout {
                    what: "key latches",
                    ms: timeout_ms,
                });
            }
        }
    }

    fn try_acquire(self: &Arc<Self>, writes: &[Vec<u8>], reads: &[Span]) -> Option<LatchGuard> {
        let mut held = self.held.lock();
        if held.conflicts(writes, reads) {
            return None;
        }
        held.writes.extend(writes.iter().cloned());
        let read_id = (!reads.is_empty()).then(|| {
            held.next_id += 1;
            let id = held.next_id;
            held.reads.extend(reads.iter().map(|s| (id, s.clone())));
            id
        });
        Some(LatchGuard {
            latches: self.clone(),
            writes: writes.to_vec(),
            read_id,
        })
    }
}

impl Drop for LatchGuard {
    fn drop(&mut self) {
        let mut held = self.latches.held.lock();
        for k in &self.writes {
            held.writes.remove(k);
        }
        if let Some(id) = self.read_id {
            held.reads.retain(|(owner, _)| *owner != id);
        }
        drop(held);
        self.latches.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(a: &[u8], b: Option<&[u8]>) -> Span {
        Span {
            start: a.to_vec(),
            end: b.map(|b| b.to_vec()),
        }
    }

    #[tokio::test]
    async fn reads_share_writes_exclude() {
        let l = Arc::new(Latches::default());
        let r1 = l
            .acquire(vec![], vec![span(b"a", Some(b"m"))], 10)
            .await
            .unwrap();
        let _r2 = l.acquire(vec![], vec![span(b"c", None)], 10).await.unwrap();
        // A write inside a read span waits (and times out here).
        assert!(l.acquire(vec![b"d".to_vec()], vec![], 10).await.is_err());
        // A write outside every read span proceeds.
        let w = l.acquire(vec![b"0".to_vec()], vec![], 10).await.unwrap();
        // A read span covering a held write waits.
        assert!(l
            .acquire(vec![], vec![span(b"", Some(b"1"))], 10)
            .await
            .is_err());
        drop(w);
        drop(r1);
        assert!(l.acquire(vec![b"b".to_vec()], vec![], 10).await.is_ok());
    }
}
