//! The pending-commit registry of one range.
//!
//! A commit registers here *before* it picks its commit timestamp and stays registered until
//! its versions are applied. The registration's timestamp is taken from the clock while the
//! registry is locked, so a reader whose snapshot `read_ts` was issued later than that
//! timestamp is sure to find the registration. [`Pending::wait_through`] lets a reader wait
//! until every commit that could become visible at `read_ts` has been applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kestrel_storage::Ts;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::{KvError, Result};

#[derive(Default)]
pub struct Pending {
    inflight: Mutex<BTreeMap<Ts, usize>>,
    done: Notify,
}

pub struct PendingGuard {
    pending: Arc<Pending>,
    ts: Ts,
}

impl PendingGuard {
    pub fn ts(&self) -> Ts {
        self.ts
    }
}

impl Pending {
    /// Registers an in-flight commit at a fresh timestamp `p`; its commit timestamp must be `>= p`.
    pub fn register(self: &Arc<Self>, clock: &Clock) -> PendingGuard {
        let mut inflight = self.inflight.lock();
        let ts = clock.now();
        *inflight.entry(ts).or_default() += 1;
        PendingGuard {
            pending: self.clone(),
            ts,
        }
    }

    /// Waits until no commit registered at or below `ts` is in flight.
    pub async fn wait_through(&self, ts: Ts, timeout_ms: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.inflight.lock().first_key_value() {
                None => return Ok(()),
                Some((first, _)) if *first > ts => return Ok(()),
                Some(_) => {}
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
        self.inflight.lock().values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut inflight = self.pending.inflight.lock();
        if let Some(n) = inflight.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                inflight.remove(&self.ts);
            }
        }
        drop(inflight);
        self.pending.done.notify_waiters();
    }
}
