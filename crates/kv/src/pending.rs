//! The pending-commit registry of one range.
//!
//! A commit registers here *before* it picks its commit timestamp and stays registered until
//! its versions are applied. The registration's timestamp is taken from the clock while the
//! registry is locked, so a reader whose snapshot `read_ts` was issued later than that
//! timestamp is sure to find the registration. [`Pending::wait_through`] lets a reader wait
//! until every commit that could become visible at `read_ts` *in the span it reads* has been
//! applied.
//!
//! A registration carries the smallest and largest key its commit writes in this range (a
//! bounding span: exact for one key, conservative for many), so a reader waits only for
//! commits that may write into its span. Waiting for every commit of the range would make
//! readers of unrelated rows queue behind each other's commits (and their fsyncs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kestrel_storage::Ts;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::{KvError, Result};

/// The inclusive key bounds a registered commit writes within.
#[derive(Clone, Debug)]
struct Bounds {
    first: Vec<u8>,
    last: Vec<u8>,
}

impl Bounds {
    /// Whether these bounds meet the span `[start, end)` (`end = None`: unbounded).
    fn meets(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        self.last.as_slice() >= start && end.is_none_or(|e| self.first.as_slice() < e)
    }
}

#[derive(Default)]
struct Inflight {
    /// (registration ts, sequence number) → key bounds.
    commits: BTreeMap<(Ts, u64), Bounds>,
    next_seq: u64,
}

#[derive(Default)]
pub struct Pending {
    inflight: Mutex<Inflight>,
    done: Notify,
}

pub struct PendingGuard {
    pending: Arc<Pending>,
    id: (Ts, u64),
}

impl PendingGuard {
    pub fn ts(&self) -> Ts {
        self.id.0
    }
}

impl Pending {
    /// Registers an in-flight commit writing `keys` (not empty) at a fresh timestamp `p`; its
    /// commit timestamp must be `>= p`.
    pub fn register<'a>(
        self: &Arc<Self>,
        clock: &Clock,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> PendingGuard {
        let mut keys = keys.into_iter();
        let first = keys.next().expect("a commit writes at least one key");
        let (mut lo, mut hi) = (first, first);
        for k in keys {
            lo = lo.min(k);
            hi = hi.max(k);
        }
        let bounds = Bounds {
            first: lo.to_vec(),
            last: hi.to_vec(),
        };
        let mut inflight = self.inflight.lock();
        let ts = clock.now();
        let seq = inflight.next_seq;
        inflight.next_seq += 1;
        inflight.commits.insert((ts, seq), bounds);
        PendingGuard {
            pending: self.clone(),
            id: (ts, seq),
        }
    }

    /// Whether a commit registered at or below `ts` that may write into `[start, end)` is
    /// still in flight.
    fn blocks(&self, ts: Ts, start: &[u8], end: Option<&[u8]>) -> bool {
        let inflight = self.inflight.lock();
        inflight
            .commits
            .range(..=(ts, u64::MAX))
            .any(|(_, b)| b.meets(start, end))
    }

    /// Waits until no commit registered at or below `ts` that may write into `[start, end)`
    /// is in flight.
    pub async fn wait_through(
        &self,
        ts: Ts,
        start: &[u8],
        end: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.blocks(ts, start, end) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(KvError::Timeout {
                    what: "in-flight commits below the read timestamp",
                    ms: timeout_ms,
                });
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inflight.lock().commits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.inflight.lock().commits.remove(&self.id);
        self.pending.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_wait_only_for_commits_that_may_write_their_span() {
        let clock = Clock::new(Ts::ZERO);
        let p = Arc::new(Pending::default());
        let g = p.register(&clock, [b"k5".as_slice(), b"k3".as_slice()]);
        let now = clock.now();
        assert!(p.blocks(now, b"k3", Some(b"k4")), "first key");
        assert!(p.blocks(now, b"k4", Some(b"k4\0")), "inside the bounds");
        assert!(p.blocks(now, b"k5", None), "last key, unbounded end");
        assert!(p.blocks(now, b"a", None), "whole range");
        assert!(!p.blocks(now, b"k6", None), "after the last key");
        assert!(!p.blocks(now, b"a", Some(b"k3")), "end is exclusive");
        assert!(
            !p.blocks(Ts(g.ts().0 - 1), b"a", None),
            "registered after the snapshot"
        );
        drop(g);
        assert!(p.is_empty() && !p.blocks(now, b"a", None));
    }
}
