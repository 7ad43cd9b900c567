//! Row locks: an UPDATE or DELETE locks the keys it is about to write, for the rest of its
//! transaction, so that a second writer of the same row waits for the first to finish
//! instead of computing from a stale value and aborting at commit.
//!
//! The waiter then *refreshes* (see `Txn::refresh`): if nothing it read before the statement
//! changed, its snapshot moves forward and the statement runs again on the new row value —
//! CockroachDB's answer to hot rows under SERIALIZABLE. Locks live in memory on the node that
//! evaluates the transaction; they guard only against lost work, not correctness, which the
//! commit-time checks keep on their own. Waits are bounded (`lock_wait_timeout_ms`) and a
//! waits-for cycle is reported at once as a deadlock.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{KvError, Result};

#[derive(Default)]
struct State {
    /// key → owning transaction.
    owner: HashMap<Vec<u8>, u128>,
    /// waiting transaction → the transaction it waits for.
    waits_for: HashMap<u128, u128>,
}

#[derive(Default)]
pub struct LockTable {
    state: Mutex<State>,
    released: Notify,
}

impl State {
    /// Whether `holder` (transitively) waits for `me`.
    fn would_deadlock(&self, me: u128, holder: u128) -> bool {
        let mut cur = holder;
        for _ in 0..=self.waits_for.len() {
            if cur == me {
                return true;
            }
            match self.waits_for.get(&cur) {
                Some(&next) => cur = next,
                None => return false,
            }
        }
        false
    }
}

/// Undoes a `lock` call that did not finish (error or cancellation): releases the keys it
/// took and its waits-for edge.
struct Unwind<'a> {
    table: &'a LockTable,
    txn: u128,
    taken: Vec<Vec<u8>>,
    done: bool,
}

impl Drop for Unwind<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.table.release(self.txn, &self.taken);
            self.table.state.lock().waits_for.remove(&self.txn);
        }
    }
}

impl LockTable {
    /// Locks `keys` (which the caller does not hold yet) for transaction `txn`, in key order,
    /// waiting for other owners. Returns whether it had to wait for anyone (the caller's reads
    /// of those keys may then be stale). On error or cancellation nothing stays locked.
    pub async fn lock(&self, txn: u128, keys: &[Vec<u8>], timeout_ms: u64) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let mut waited = false;
        let mut sorted: Vec<&Vec<u8>> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut unwind = Unwind {
            table: self,
            txn,
            taken: Vec::new(),
            done: false,
        };
        for key in sorted {
            loop {
                let notified = self.released.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut st = self.state.lock();
                    match st.owner.get(key).copied() {
                        None => {
                            st.owner.insert(key.clone(), txn);
                            st.waits_for.remove(&txn);
                            unwind.taken.push(key.clone());
                            break;
                        }
                        Some(o) if o == txn => break,
                        Some(o) => {
                            if st.would_deadlock(txn, o) {
                                return Err(KvError::Deadlock);
                            }
                            st.waits_for.insert(txn, o);
                        }
                    }
                }
                waited = true;
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err(KvError::Timeout {
                        what: "row locks",
                        ms: timeout_ms,
                    });
                }
            }
        }
        unwind.done = true;
        Ok(waited)
    }

    /// Takes `key` for `txn` if no other transaction holds it, without waiting. Returns
    /// whether `txn` holds it now.
    pub fn try_lock(&self, txn: u128, key: &[u8]) -> bool {
        let mut st = self.state.lock();
        match st.owner.get(key) {
            Some(&o) => o == txn,
            None => {
                st.owner.insert(key.to_vec(), txn);
                true
            }
        }
    }

    /// Releases every lock `txn` holds among `keys`.
    pub fn release(&self, txn: u128, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        for k in keys {
            if st.owner.get(k) == Some(&txn) {
                st.owner.remove(k);
            }
        }
        st.waits_for.remove(&txn);
        drop(st);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn second_locker_waits_and_cycles_are_deadlocks() {
        let t = Arc::new(LockTable::default());
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        assert!(!t.lock(1, std::slice::from_ref(&a), 100).await.unwrap());
        assert!(!t.lock(2, std::slice::from_ref(&b), 100).await.unwrap());
        // 2 waits for a (held by 1) in the background; 1 then asking for b is a cycle.
        let t2 = t.clone();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { t2.lock(2, &[a2], 5_000).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            t.lock(1, std::slice::from_ref(&b), 100).await,
            Err(KvError::Deadlock)
        ));
        t.release(1, std::slice::from_ref(&a));
        assert!(waiter.await.unwrap().unwrap(), "2 waited for a");
        assert!(matches!(
            t.lock(3, std::slice::from_ref(&a), 20).await,
            Err(KvError::Timeout { .. })
        ));
        // A call that fails part-way keeps nothing: 3 took c before timing out on a.
        let c = b"0".to_vec();
        assert!(t.lock(3, &[a.clone(), c.clone()], 20).await.is_err());
        assert!(
            !t.lock(4, std::slice::from_ref(&c), 20).await.unwrap(),
            "0 was released"
        );
        // So does a cancelled one.
        let t3 = t.clone();
        let (a3, d) = (a.clone(), b"1".to_vec());
        let d2 = d.clone();
        let h = tokio::spawn(async move { t3.lock(5, &[d2, a3], 5_000).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.abort();
        let _ = h.await;
        assert!(!t.lock(6, &[d], 20).await.unwrap(), "1 was released");
    }
}
