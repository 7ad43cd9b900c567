//! Key latches: a commit holds the latches of the keys it writes from evaluation until its
//! batch is applied, so no two overlapping commits evaluate against the same state.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{KvError, Result};

#[derive(Default)]
pub struct Latches {
    held: Mutex<HashSet<Vec<u8>>>,
    released: Notify,
}

pub struct LatchGuard {
    latches: Arc<Latches>,
    keys: Vec<Vec<u8>>,
}

impl Latches {
    /// Acquires all of `keys` at once (all-or-nothing, so no deadlock between commits).
    pub async fn acquire(
        self: &Arc<Self>,
        keys: Vec<Vec<u8>>,
        timeout_ms: u64,
    ) -> Result<LatchGuard> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut held = self.held.lock();
                if keys.iter().all(|k| !held.contains(k)) {
                    held.extend(keys.iter().cloned());
                    return Ok(LatchGuard {
                        latches: self.clone(),
                        keys,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(KvError::Timeout {
                    what: "key latches",
                    ms: timeout_ms,
                });
            }
        }
    }
}

impl Drop for LatchGuard {
    fn drop(&mut self) {
        let mut held = self.latches.held.lock();
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.latches.released.notify_waiters();
    }
}
