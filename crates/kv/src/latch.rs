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

/// Past this many keys, a commit's write latches are one latch on the span from its first to
/// its last key: a bulk load would otherwise insert (and check) a million keys here. The span
/// also excludes writers of keys between them — only for as long as the commit applies.
const WRITE_KEYS_MAX: usize = 64;

#[derive(Default)]
struct Held {
    writes: BTreeSet<Vec<u8>>,
    /// Write latches on spans (large write sets), by owner id.
    write_spans: Vec<(u64, Span)>,
    /// Read latches by owner id; read spans may overlap each other.
    reads: Vec<(u64, Span)>,
    next_id: u64,
}

/// What one acquisition write-latches.
enum WriteLatch {
    Keys(Vec<Vec<u8>>),
    Span(Span),
}

impl WriteLatch {
    fn new(mut keys: Vec<Vec<u8>>) -> Self {
        if keys.len() <= WRITE_KEYS_MAX {
            return WriteLatch::Keys(keys);
        }
        let (Some(first), Some(last)) = (keys.iter().min(), keys.iter().max()) else {
            unreachable!("more than WRITE_KEYS_MAX keys");
        };
        let span = Span {
            start: first.clone(),
            end: Some(kestrel_storage::keycode::next_key(last)),
        };
        keys.clear();
        WriteLatch::Span(span)
    }
}

fn overlaps(a: &Span, b: &Span) -> bool {
    let a_before_b_ends = b.end.as_ref().is_none_or(|e| a.start < *e);
    let b_before_a_ends = a.end.as_ref().is_none_or(|e| b.start < *e);
    a_before_b_ends && b_before_a_ends
}

impl Held {
    fn writes_in(&self, s: &Span) -> bool {
        let upper = match &s.end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        self.writes
            .range((Bound::Included(s.start.clone()), upper))
            .next()
            .is_some()
    }

    fn conflicts(&self, write: &WriteLatch, reads: &[Span]) -> bool {
        let write_blocked = match write {
            WriteLatch::Keys(keys) => keys.iter().any(|k| {
                self.writes.contains(k)
                    || self.reads.iter().any(|(_, s)| s.contains(k))
                    || self.write_spans.iter().any(|(_, s)| s.contains(k))
            }),
            WriteLatch::Span(span) => {
                self.writes_in(span)
                    || self.reads.iter().any(|(_, s)| overlaps(s, span))
                    || self.write_spans.iter().any(|(_, s)| overlaps(s, span))
            }
        };
        write_blocked
            || reads
                .iter()
                .any(|s| self.writes_in(s) || self.write_spans.iter().any(|(_, w)| overlaps(w, s)))
    }
}

#[derive(Default)]
pub struct Latches {
    held: Mutex<Held>,
    released: Notify,
}

pub struct LatchGuard {
    latches: Arc<Latches>,
    writes: WriteLatch,
    id: u64,
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
        let mut writes = Some(WriteLatch::new(writes));
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.try_acquire(&mut writes, &reads) {
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

    /// Takes the latches if nothing held conflicts; `writes` moves into the guard.
    fn try_acquire(
        self: &Arc<Self>,
        writes: &mut Option<WriteLatch>,
        reads: &[Span],
    ) -> Option<LatchGuard> {
        let mut held = self.held.lock();
        let write = writes.as_ref().expect("write latches not yet taken");
        if held.conflicts(write, reads) {
            return None;
        }
        held.next_id += 1;
        let id = held.next_id;
        match write {
            WriteLatch::Keys(keys) => held.writes.extend(keys.iter().cloned()),
            WriteLatch::Span(span) => held.write_spans.push((id, span.clone())),
        }
        held.reads.extend(reads.iter().map(|s| (id, s.clone())));
        Some(LatchGuard {
            latches: self.clone(),
            writes: writes.take().expect("checked above"),
            id,
        })
    }
}

impl Drop for LatchGuard {
    fn drop(&mut self) {
        let mut held = self.latches.held.lock();
        match &self.writes {
            WriteLatch::Keys(keys) => {
                for k in keys {
                    held.writes.remove(k);
                }
            }
            WriteLatch::Span(_) => held.write_spans.retain(|(owner, _)| *owner != self.id),
        }
        let id = self.id;
        held.reads.retain(|(owner, _)| *owner != id);
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

    /// A large write set latches the span from its first to its last key: keys, spans and
    /// read spans inside it wait, those outside proceed; released, all proceed.
    #[tokio::test]
    async fn a_large_write_set_latches_its_span() {
        let l = Arc::new(Latches::default());
        let keys: Vec<Vec<u8>> = (0..=WRITE_KEYS_MAX as u32)
            .rev()
            .map(|i| format!("k{:04}", i * 2).into_bytes())
            .collect();
        let (first, last) = (b"k0000".to_vec(), format!("k{:04}", WRITE_KEYS_MAX * 2));
        let big = l.acquire(keys, vec![], 10).await.unwrap();
        assert!(matches!(&big.writes, WriteLatch::Span(s) if s.start == first));
        // A key between two of its keys, a read span reaching into it, another large set
        // overlapping it: all wait.
        assert!(l
            .acquire(vec![b"k0001".to_vec()], vec![], 10)
            .await
            .is_err());
        assert!(l
            .acquire(vec![last.clone().into_bytes()], vec![], 10)
            .await
            .is_err());
        assert!(l
            .acquire(vec![], vec![span(b"a", Some(b"k0001"))], 10)
            .await
            .is_err());
        let other: Vec<Vec<u8>> = (0..=WRITE_KEYS_MAX as u32)
            .map(|i| format!("k{:04}", 100 + i).into_bytes())
            .collect();
        assert!(l.acquire(other.clone(), vec![], 10).await.is_err());
        // Outside the span: proceed.
        let past = format!("k{:04}", WRITE_KEYS_MAX * 2 + 1).into_bytes();
        assert!(l.acquire(vec![past], vec![], 10).await.is_ok());
        assert!(l
            .acquire(vec![b"a".to_vec()], vec![span(b"a", Some(b"k0000"))], 10)
            .await
            .is_ok());
        drop(big);
        assert!(l.acquire(other, vec![], 10).await.is_ok());
        assert!(l.acquire(vec![b"k0001".to_vec()], vec![], 10).await.is_ok());
    }
}
