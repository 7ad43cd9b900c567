//! A KV transaction: snapshot reads, buffered writes, one- or two-phase commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use kestrel_storage::{keycode, mvcc, Batch, Cf, Ts};

use crate::metrics::METRICS;
use crate::range::Replica;
use crate::store::Kv;
use crate::{KvError, Result};

#[derive(Clone, Debug)]
struct Write {
    value: Option<Vec<u8>>,
    /// The key must hold no live row when the transaction commits (INSERT).
    insert: bool,
}

pub struct Txn {
    kv: Arc<Kv>,
    id: u128,
    read_ts: Ts,
    writes: BTreeMap<Vec<u8>, Write>,
    write_bytes: usize,
}

/// How many times a commit re-routes its keys when a split moved them meanwhile.
const ROUTE_RETRIES_MAX: usize = 8;

impl Txn {
    pub(crate) fn new(kv: Arc<Kv>, read_ts: Ts) -> Self {
        let id = ((read_ts.0 as u128) << 64) | kv.config.node_id as u128;
        Self {
            kv,
            id,
            read_ts,
            writes: BTreeMap::new(),
            write_bytes: 0,
        }
    }

    pub fn read_ts(&self) -> Ts {
        self.read_ts
    }

    pub fn id(&self) -> u128 {
        self.id
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// The value of `key` at this transaction's snapshot, including its own writes.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.value.clone());
        }
        let replica = self.kv.replica_for(key)?;
        replica
            .pending
            .wait_through(self.read_ts, self.kv.config.read_wait_timeout_ms)
            .await?;
        Ok(mvcc::get(self.kv.engine.as_ref(), key, self.read_ts)?)
    }

    /// Up to about `limit` live pairs with `start <= key < end` in key order, own writes
    /// included, and the key to resume from if the span was not exhausted.
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
        assert!(limit > 0, "scan limit must be positive");
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut resume = None;
        for replica in self.kv.router.overlapping(start, end) {
            replica
                .pending
                .wait_through(self.read_ts, self.kv.config.read_wait_timeout_ms)
                .await?;
            let d = replica.desc.read().clone();
            let lo = if d.start.as_slice() > start {
                d.start.clone()
            } else {
                start.to_vec()
            };
            let hi = match (d.end.as_deref(), end) {
                (Some(a), Some(b)) => Some(a.min(b).to_vec()),
                (Some(a), None) => Some(a.to_vec()),
                (None, b) => b.map(|b| b.to_vec()),
            };
            mvcc::scan(
                self.kv.engine.as_ref(),
                &lo,
                hi.as_deref(),
                self.read_ts,
                &mut |k, v| {
                    out.push((k, v));
                    out.len() < limit
                },
            )?;
            if out.len() >= limit {
                resume = out.last().map(|(k, _)| keycode::next_key(k));
                break;
            }
        }
        self.overlay_writes(start, resume.as_deref().or(end), &mut out);
        Ok((out, resume))
    }

    /// Merges this transaction's buffered writes in `[start, end)` into sorted `rows`.
    fn overlay_writes(&self, start: &[u8], end: Option<&[u8]>, rows: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if end.is_some_and(|e| e <= start) {
            return;
        }
        let upper = match end {
            Some(e) => std::ops::Bound::Excluded(e.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let mut own = self
            .writes
            .range((std::ops::Bound::Included(start.to_vec()), upper))
            .peekable();
        if own.peek().is_none() {
            return;
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = std::mem::take(rows).into_iter().collect();
        for (k, w) in own {
            match &w.value {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        *rows = merged.into_iter().collect();
    }

    fn buffer(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, insert: bool) -> Result<()> {
        self.write_bytes += key.len() + value.as_ref().map_or(0, |v| v.len()) + 16;
        let max = self.kv.config.txn_write_bytes_max;
        if self.write_bytes > max {
            return Err(KvError::TxnTooLarge {
                bytes: self.write_bytes,
                max,
            });
        }
        // An insert over a key this transaction deleted is a plain write (the row is gone).
        let insert = insert && !self.writes.get(&key).is_some_and(|w| w.value.is_none());
        self.writes.insert(key, Write { value, insert });
        Ok(())
    }

    /// Writes `key` (upsert).
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.buffer(key, Some(value), false)
    }

    /// Writes `key`, which must not hold a live row at commit ([`KvError::DuplicateKey`]).
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.buffer(key, Some(value), true)
    }

    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        self.buffer(key, None, false)
    }

    /// Commits; returns the commit timestamp (`None` for a read-only transaction).
    /// The buffered writes are consumed: afterwards the transaction is empty.
    pub async fn commit(&mut self) -> Result<Option<Ts>> {
        if self.writes.is_empty() {
            return Ok(None);
        }
        let res = self.commit_inner().await;
        self.writes.clear();
        self.write_bytes = 0;
        match &res {
            Ok(_) => METRICS.commits.inc(),
            Err(e) => {
                METRICS.aborts.inc();
                if matches!(e, KvError::WriteConflict { .. }) {
                    METRICS.conflicts.inc();
                }
            }
        }
        res.map(Some)
    }

    async fn commit_inner(&self) -> Result<Ts> {
        for _ in 0..ROUTE_RETRIES_MAX {
            let groups = self
                .kv
                .group_keys(self.writes.iter().map(|(k, w)| (k.clone(), w.clone())))?;
            let mut guards = Vec::with_capacity(groups.len());
            for (r, _) in &groups {
                guards.push(r.split_lock.clone().read_owned().await);
            }
            // A split may have moved keys while we waited for the guards.
            let still_routed = groups.iter().all(|(r, ws)| {
                let d = r.desc.read();
                ws.iter().all(|(k, _)| d.contains(k))
            });
            if !still_routed {
                continue;
            }
            let res = if groups.len() == 1 {
                let (r, ws) = &groups[0];
                self.one_phase(r, ws).await
            } else {
                METRICS.commits_two_phase.inc();
                self.two_phase(&groups).await
            };
            drop(guards);
            return res;
        }
        Err(KvError::Timeout {
            what: "stable routing during commit",
            ms: 0,
        })
    }

    /// Checks `writes` against the committed state and foreign locks.
    fn evaluate(&self, writes: &[(Vec<u8>, Write)]) -> Result<()> {
        let engine = self.kv.engine.as_ref();
        for (k, w) in writes {
            if let Some(lock) = mvcc::get_lock(engine, k)? {
                if lock.txn_id != self.id {
                    return Err(KvError::WriteConflict { key: k.clone() });
                }
            }
            if let Some((vts, live)) = mvcc::get_version(engine, k, Ts::MAX)? {
                if w.insert && live.is_some() {
                    return Err(KvError::DuplicateKey { key: k.clone() });
                }
                if vts > self.read_ts {
                    return Err(KvError::WriteConflict { key: k.clone() });
                }
            }
        }
        Ok(())
    }

    async fn one_phase(&self, replica: &Arc<Replica>, writes: &[(Vec<u8>, Write)]) -> Result<Ts> {
        let keys = writes.iter().map(|(k, _)| k.clone()).collect();
        let _latches = replica
            .latches
            .acquire(keys, self.kv.config.latch_wait_timeout_ms)
            .await?;
        let pending = replica.pending.register(&self.kv.clock);
        let commit_ts = self.kv.clock.now();
        debug_assert!(commit_ts > pending.ts() && commit_ts > self.read_ts);
        self.evaluate(writes)?;
        let mut b = Batch::new();
        for (k, w) in writes {
            mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
        }
        replica.group.propose(b).await?;
        Ok(commit_ts)
    }

    async fn two_phase(&self, groups: &[(Arc<Replica>, Vec<(Vec<u8>, Write)>)]) -> Result<Ts> {
        let primary = groups[0].1[0].0.clone();
        let mut locked: Vec<(&Arc<Replica>, Vec<Vec<u8>>)> = Vec::new();
        for (replica, writes) in groups {
            if let Err(e) = self.prewrite(replica, writes, &primary).await {
                self.rollback_locks(&locked).await;
                return Err(e);
            }
            locked.push((replica, writes.iter().map(|(k, _)| k.clone()).collect()));
        }
        // Register with every participant before choosing the commit timestamp, so readers at
        // or above it wait for the resolution below.
        let pendings: Vec<_> = groups
            .iter()
            .map(|(r, _)| r.pending.register(&self.kv.clock))
            .collect();
        let commit_ts = self.kv.clock.now();
        let mut record = Batch::new();
        mvcc::put_txn_record(
            &mut record,
            &primary,
            self.id,
            mvcc::TxnStatus::Committed(commit_ts),
        );
        // The commit point. If this fails the outcome is unknown until recovery decides it.
        groups[0].0.group.propose(record).await?;
        for (replica, writes) in groups {
            let mut b = Batch::new();
            for (k, w) in writes {
                mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
                b.delete(Cf::Locks, k.clone());
            }
            if let Err(e) = replica.group.propose(b).await {
                // Committed but not fully resolved: keep every participant's registration, so
                // readers at or above commit_ts wait (and time out with 40001) instead of seeing
                // part of the commit. Recovery at the next start finishes the resolution.
                std::mem::forget(pendings);
                tracing::error!("resolving committed transaction {:x} failed: {e}", self.id);
                return Err(e.into());
            }
        }
        drop(pendings);
        Ok(commit_ts)
    }

    async fn prewrite(
        &self,
        replica: &Arc<Replica>,
        writes: &[(Vec<u8>, Write)],
        primary: &[u8],
    ) -> Result<()> {
        let keys = writes.iter().map(|(k, _)| k.clone()).collect();
        let _latches = replica
            .latches
            .acquire(keys, self.kv.config.latch_wait_timeout_ms)
            .await?;
        self.evaluate(writes)?;
        let mut b = Batch::new();
        for (k, w) in writes {
            let lock = mvcc::Lock {
                txn_id: self.id,
                start_ts: self.read_ts,
                primary: primary.to_vec(),
                value: w.value.clone(),
            };
            b.put(Cf::Locks, k.clone(), lock.encode());
        }
        replica.group.propose(b).await?;
        Ok(())
    }

    async fn rollback_locks(&self, locked: &[(&Arc<Replica>, Vec<Vec<u8>>)]) {
        for (replica, keys) in locked {
            let mut b = Batch::new();
            for k in keys {
                b.delete(Cf::Locks, k.clone());
            }
            if let Err(e) = replica.group.propose(b).await {
                tracing::warn!("rolling back locks failed (recovery will finish it): {e}");
            }
        }
    }

    /// Test hook: runs the two-phase commit up to and including the commit record, then stops
    /// without resolving — what a crash right after the commit point leaves behind.
    #[doc(hidden)]
    pub async fn commit_stop_after_record(self) -> Result<Ts> {
        let groups = self
            .kv
            .group_keys(self.writes.iter().map(|(k, w)| (k.clone(), w.clone())))?;
        assert!(groups.len() > 1, "needs a multi-range transaction");
        let primary = groups[0].1[0].0.clone();
        for (replica, writes) in &groups {
            self.prewrite(replica, writes, &primary).await?;
        }
        let commit_ts = self.kv.clock.now();
        let mut record = Batch::new();
        mvcc::put_txn_record(
            &mut record,
            &primary,
            self.id,
            mvcc::TxnStatus::Committed(commit_ts),
        );
        groups[0].0.group.propose(record).await?;
        Ok(commit_ts)
    }

    /// Test hook: writes the locks of a two-phase commit and stops before the commit point.
    #[doc(hidden)]
    pub async fn commit_stop_after_prewrite(self) -> Result<()> {
        let groups = self
            .kv
            .group_keys(self.writes.iter().map(|(k, w)| (k.clone(), w.clone())))?;
        let primary = groups[0].1[0].0.clone();
        for (replica, writes) in &groups {
            self.prewrite(replica, writes, &primary).await?;
        }
        Ok(())
    }
}
