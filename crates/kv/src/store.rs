//! [`Kv`]: the node's store — opens every range, recovers, routes and runs transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kestrel_raft::{GroupCommit, RaftConfig, RaftGroup, Span};
use kestrel_storage::{keycode, mvcc, Batch, Cf, Engine, Ts};

use crate::clock::Clock;
use crate::keys::{self, META_RANGE_ID, SYSTEM_RANGE_ID};
use crate::range::{RangeDescriptor, Replica};
use crate::router::Router;
use crate::txn::Txn;
use crate::{KvError, Result};

/// Limits and tunables of the KV layer.
#[derive(Clone, Debug)]
pub struct KvConfig {
    pub node_id: u64,
    pub raft: RaftConfig,
    /// The most bytes one transaction may buffer (keys + values).
    pub txn_write_bytes_max: usize,
    /// The most read spans a serializable transaction tracks before merging them.
    pub txn_read_spans_max: usize,
    /// How long an UPDATE/DELETE waits for another transaction's row lock.
    pub lock_wait_timeout_ms: u64,
    /// How long a commit waits for the latches of its keys.
    pub latch_wait_timeout_ms: u64,
    /// How long a read waits for in-flight commits below its snapshot.
    pub read_wait_timeout_ms: u64,
    /// How far ahead of the clock the persisted timestamp floor is kept.
    pub clock_floor_lead_ms: u64,
    /// The most keys the node-wide read cache (`Txn::get_cached`) holds; 0 turns it off.
    pub read_cache_entries_max: usize,
    /// Commit every multi-range transaction with the two-phase protocol (locks, record,
    /// resolution), even when all its ranges live on this node alone, where the local
    /// multi-range commit needs half the Raft entries. For tests of the two-phase path.
    pub two_phase_always: bool,
    /// How many applied redo records may wait for deletion before commits wait for room.
    pub redo_cleanup_queue_max: usize,
    /// The most redo records one deletion round proposes.
    pub redo_cleanup_batch_max: usize,
    /// How long a deletion round waits for more records after its first.
    pub redo_cleanup_delay_ms: u64,
    /// How long a shutdown waits for the queued redo records to be deleted.
    pub redo_flush_timeout_ms: u64,
}

impl Default for KvConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            raft: RaftConfig::default(),
            txn_write_bytes_max: 256 << 20,
            txn_read_spans_max: 4096,
            lock_wait_timeout_ms: 10_000,
            latch_wait_timeout_ms: 10_000,
            read_wait_timeout_ms: 10_000,
            clock_floor_lead_ms: 5_000,
            read_cache_entries_max: 10_000,
            two_phase_always: false,
            redo_cleanup_queue_max: 4096,
            redo_cleanup_batch_max: 1024,
            redo_cleanup_delay_ms: 5,
            redo_flush_timeout_ms: 5_000,
        }
    }
}

const CLOCK_FLOOR_KEY: &[u8] = b"node/clock_floor";

pub struct Kv {
    pub(crate) engine: Arc<dyn Engine>,
    /// The WAL syncer every range's log shares.
    wal: Arc<GroupCommit>,
    pub(crate) clock: Clock,
    pub(crate) router: Router,
    pub(crate) config: KvConfig,
    pub(crate) locks: crate::locks::LockTable,
    pub(crate) read_cache: crate::read_cache::ReadCache,
    split_mutex: tokio::sync::Mutex<()>,
    floor_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Keys of redo records whose versions every range has applied (see `redo.rs`).
    pub(crate) redo_applied: tokio::sync::mpsc::Sender<crate::redo::Msg>,
    redo_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    #[cfg(test)]
    pub(crate) test_hooks: TestHooks,
}

/// Places where a test can stop a commit.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    /// `(reached, resume)`: the next local multi-range commit signals `reached` right after
    /// its commit point and waits for `resume` before the other ranges apply.
    pub(crate) pause_after_commit_point: parking_lot::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

#[cfg(test)]
impl TestHooks {
    pub(crate) async fn after_commit_point(&self) {
        let hook = self.pause_after_commit_point.lock().take();
        if let Some((reached, resume)) = hook {
            let _ = reached.send(());
            let _ = resume.await;
        }
    }
}

fn meta_span() -> Span {
    Span {
        start: keys::META_START.to_vec(),
        end: Some(keys::SYSTEM_START.to_vec()),
    }
}

impl Kv {
    /// Opens the store on `engine`: bootstraps a fresh one, otherwise recovers every range and
    /// resolves the locks of transactions interrupted by a crash. Returns once the node can serve.
    pub async fn open(engine: Arc<dyn Engine>, config: KvConfig) -> Result<Arc<Kv>> {
        let floor = match engine.get(Cf::RaftMeta, CLOCK_FLOOR_KEY)? {
            Some(b) if b.len() == 8 => Ts(u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))),
            Some(_) => return Err(KvError::Corrupt("clock floor".into())),
            None => Ts::ZERO,
        };
        let wal = GroupCommit::start(engine.clone(), &config.raft)?;
        assert!(config.redo_cleanup_queue_max > 0 && config.redo_cleanup_batch_max > 0);
        let (redo_applied, redo_rx) = tokio::sync::mpsc::channel(config.redo_cleanup_queue_max);
        let kv = Arc::new(Kv {
            engine: engine.clone(),
            wal,
            clock: Clock::new(floor),
            router: Router::default(),
            read_cache: crate::read_cache::ReadCache::new(config.read_cache_entries_max),
            config,
            locks: crate::locks::LockTable::default(),
            split_mutex: tokio::sync::Mutex::new(()),
            floor_task: parking_lot::Mutex::new(None),
            redo_applied,
            redo_task: parking_lot::Mutex::new(None),
            #[cfg(test)]
            test_hooks: TestHooks::default(),
        });
        kv.persist_clock_floor()?;

        // The meta range's span never changes; open it first and let it catch up on its log.
        let meta_desc = RangeDescriptor {
            range_id: META_RANGE_ID,
            start: meta_span().start,
            end: meta_span().end,
            replicas: vec![kv.config.node_id],
            generation: 0,
        };
        let meta = kv.open_replica(meta_desc.clone()).await?;
        kv.router.insert(meta.clone());

        let mut descs = kv.load_descriptors()?;
        if descs.is_empty() {
            descs = kv.bootstrap(meta_desc).await?;
        }
        let opening = descs
            .into_iter()
            .filter(|d| d.range_id != META_RANGE_ID)
            .map(|d| {
                let kv = kv.clone();
                async move { kv.open_replica(d).await }
            });
        for replica in futures_join_all(opening).await? {
            kv.router.insert(replica);
        }
        kv.recover_locks().await?;
        kv.recover_redo().await?;
        kv.start_floor_task();
        let cleaner = crate::redo::run_cleaner(
            Arc::downgrade(&kv),
            redo_rx,
            kv.config.redo_cleanup_batch_max,
            kv.config.redo_cleanup_delay_ms,
        );
        *kv.redo_task.lock() = Some(tokio::spawn(cleaner));
        Ok(kv)
    }

    async fn open_replica(&self, desc: RangeDescriptor) -> Result<Arc<Replica>> {
        let group = RaftGroup::open(
            &self.wal,
            desc.range_id,
            self.config.node_id,
            desc.span(),
            &self.config.raft,
        )
        .await?;
        // An empty proposal returns after every earlier entry of the log has been applied.
        group.propose(Batch::new()).await?;
        Ok(Arc::new(Replica::new(desc, group)))
    }

    fn load_descriptors(&self) -> Result<Vec<RangeDescriptor>> {
        let (start, end) = keys::range_desc_prefix();
        let mut out = Vec::new();
        let mut err = None;
        mvcc::scan(
            self.engine.as_ref(),
            &start,
            Some(&end),
            Ts::MAX,
            &mut |_, v| {
                match bincode::deserialize::<RangeDescriptor>(&v) {
                    Ok(d) => out.push(d),
                    Err(e) => err = Some(KvError::Corrupt(format!("range descriptor: {e}"))),
                }
                err.is_none()
            },
        )?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    async fn bootstrap(self: &Arc<Self>, meta: RangeDescriptor) -> Result<Vec<RangeDescriptor>> {
        let node = self.config.node_id;
        let system = RangeDescriptor {
            range_id: SYSTEM_RANGE_ID,
            start: keys::SYSTEM_START.to_vec(),
            end: Some(keys::TABLES_START.to_vec()),
            replicas: vec![node],
            generation: 0,
        };
        let tables = RangeDescriptor {
            range_id: keys::FIRST_USER_RANGE_ID,
            start: keys::TABLES_START.to_vec(),
            end: None,
            replicas: vec![node],
            generation: 0,
        };
        let descs = vec![meta, system, tables];
        let mut txn = self.begin();
        for d in &descs {
            txn.put(keys::range_desc_key(d.range_id), encode_desc(d))?;
        }
        txn.put(
            keys::NEXT_RANGE_ID_KEY.to_vec(),
            (keys::FIRST_USER_RANGE_ID + 1).to_be_bytes().to_vec(),
        )?;
        // All descriptors land in one meta-range batch: a crash leaves all or none.
        txn.commit().await?;
        Ok(descs)
    }

    /// Finishes or rolls back two-phase commits a crash interrupted.
    async fn recover_locks(&self) -> Result<()> {
        let locks = mvcc::scan_locks(self.engine.as_ref(), b"", None)?;
        let mut by_txn: BTreeMap<u128, Vec<(Vec<u8>, mvcc::Lock)>> = BTreeMap::new();
        for (k, l) in locks {
            by_txn.entry(l.txn_id).or_default().push((k, l));
        }
        for (txn_id, locks) in by_txn {
            let primary = locks[0].1.primary.clone();
            let status = mvcc::get_txn_record(self.engine.as_ref(), &primary, txn_id)?;
            let commit_ts = match status {
                Some(mvcc::TxnStatus::Committed(ts)) => {
                    self.clock.observe(ts);
                    Some(ts)
                }
                _ => {
                    let mut b = Batch::new();
                    mvcc::put_txn_record(&mut b, &primary, txn_id, mvcc::TxnStatus::Aborted);
                    self.replica_for(&primary)?.group.propose(b).await?;
                    None
                }
            };
            tracing::info!(
                txn_id,
                committed = commit_ts.is_some(),
                locks = locks.len(),
                "recovering transaction"
            );
            for (replica, keys) in self.group_keys(locks.into_iter().map(|(k, l)| (k, l.value)))? {
                let mut b = Batch::new();
                for (k, v) in keys {
                    if let Some(ts) = commit_ts {
                        mvcc::put_version(&mut b, &k, ts, v.as_deref());
                    }
                    b.delete(Cf::Locks, k);
                }
                replica.group.propose(b).await?;
            }
        }
        Ok(())
    }

    /// Finishes local multi-range commits a crash interrupted: writes the versions of every
    /// redo record left (again, if they were applied: the same version keys and values) and
    /// deletes the record. Deferred entries, one fsync at the end: a deletion follows its
    /// record's versions in the WAL.
    async fn recover_redo(&self) -> Result<()> {
        let records = mvcc::scan_redo(self.engine.as_ref())?;
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len();
        for (key, redo) in records {
            self.clock.observe(redo.commit_ts);
            for (replica, writes) in self.group_keys(redo.writes)? {
                let mut b = Batch::new();
                for (k, v) in writes {
                    mvcc::put_version(&mut b, &k, redo.commit_ts, v.as_deref());
                }
                replica.group.propose_deferred(b).await?;
            }
            let primary = self.replica_for(&mvcc::redo_primary(&key)?)?;
            let mut b = Batch::new();
            b.delete(Cf::Redo, key);
            primary.group.propose_deferred(b).await?;
        }
        self.wal.sync().await?;
        tracing::info!(count, "recovered local multi-range commits");
        Ok(())
    }

    /// Returns once every redo record queued for deletion before the call is deleted (or its
    /// deletion failed); at once if the cleaner has stopped.
    pub(crate) async fn flush_redo(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self
            .redo_applied
            .send(crate::redo::Msg::Flush(done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    pub(crate) fn group_keys<V>(
        &self,
        items: impl IntoIterator<Item = (Vec<u8>, V)>,
    ) -> Result<Vec<(Arc<Replica>, Vec<(Vec<u8>, V)>)>> {
        let mut groups: BTreeMap<u64, (Arc<Replica>, Vec<(Vec<u8>, V)>)> = BTreeMap::new();
        for (k, v) in items {
            let r = self.replica_for(&k)?;
            groups
                .entry(r.range_id())
                .or_insert_with(|| (r.clone(), Vec::new()))
                .1
                .push((k, v));
        }
        let mut out: Vec<_> = groups.into_values().collect();
        out.sort_by(|a, b| a.1[0].0.cmp(&b.1[0].0));
        Ok(out)
    }

    pub(crate) fn replica_for(&self, key: &[u8]) -> Result<Arc<Replica>> {
        self.router
            .lookup(key)
            .ok_or_else(|| KvError::NoRange(key.to_vec()))
    }

    fn persist_clock_floor(&self) -> Result<()> {
        let floor = self.clock.ahead_ms(self.config.clock_floor_lead_ms);
        let mut b = Batch::new();
        b.put(
            Cf::RaftMeta,
            CLOCK_FLOOR_KEY.to_vec(),
            floor.0.to_be_bytes().to_vec(),
        );
        self.engine.write(&b, true)?;
        Ok(())
    }

    fn start_floor_task(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = Duration::from_millis((self.config.clock_floor_lead_ms / 4).max(100));
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(kv) = weak.upgrade() else { return };
                if let Err(e) = kv.persist_clock_floor() {
                    tracing::error!("persisting the clock floor failed: {e}");
                }
            }
        });
        *self.floor_task.lock() = Some(handle);
    }

    /// Starts a transaction reading at a fresh snapshot.
    pub fn begin(self: &Arc<Self>) -> Txn {
        Txn::new(self.clone(), self.clock.now())
    }

    /// A node-unique, increasing 63-bit id (hidden row ids).
    pub fn unique_id(&self) -> i64 {
        (self.clock.now().0 & (i64::MAX as u64)) as i64
    }

    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// The applied generation of every range overlapping `[start, end)` now, without
    /// waiting (see [`crate::Txn::stamp_span`], which waits first).
    pub fn span_stamp(&self, start: &[u8], end: &[u8]) -> crate::txn::SpanStamp {
        crate::txn::SpanStamp(
            self.router
                .overlapping(start, Some(end))
                .iter()
                .map(|r| (r.desc.read().range_id, r.group.applied_generation()))
                .collect(),
        )
    }

    /// About how many bytes the user keys in `[start, end)` take on this node's disk.
    pub fn approximate_bytes(&self, start: &[u8], end: &[u8]) -> u64 {
        kestrel_storage::split::approximate_bytes(self.engine.as_ref(), start, end)
    }

    /// Up to `parts - 1` keys cutting `[start, end)` (of `total` stored bytes, as
    /// [`Self::approximate_bytes`] said) into spans of about equal stored size: a hint for
    /// running one large scan as several (see `kestrel_storage::split`).
    pub fn split_points(
        &self,
        start: &[u8],
        end: &[u8],
        total: u64,
        parts: usize,
    ) -> Result<Vec<Vec<u8>>> {
        Ok(kestrel_storage::split::split_points(
            self.engine.as_ref(),
            start,
            end,
            total,
            parts,
        )?)
    }

    /// Every range this node serves, in key order.
    pub fn ranges(&self) -> Vec<RangeDescriptor> {
        self.router
            .all()
            .iter()
            .map(|r| r.desc.read().clone())
            .collect()
    }

    /// Makes `[start, end)` a range of its own, splitting the range that holds it. Splits are
    /// metadata-only: the new ranges' data already sits in the shared engine.
    pub async fn split_out(self: &Arc<Self>, start: &[u8], end: &[u8]) -> Result<u64> {
        let _one_at_a_time = self.split_mutex.lock().await;
        let replica = self.replica_for(start)?;
        let _quiesced = replica.split_lock.write().await;
        let d = replica.desc.read().clone();
        if d.start == start && d.end.as_deref() == Some(end) {
            return Ok(d.range_id);
        }
        if d.end.as_deref().is_some_and(|e| e < end) {
            return Err(KvError::Unsupported(format!(
                "span crosses range {} boundary",
                d.range_id
            )));
        }
        let mut pieces = Vec::new();
        if d.start.as_slice() < start {
            pieces.push((d.start.clone(), Some(start.to_vec())));
        }
        pieces.push((start.to_vec(), Some(end.to_vec())));
        if d.end.as_deref().is_none_or(|e| end < e) {
            pieces.push((end.to_vec(), d.end.clone()));
        }
        let mut txn = self.begin();
        let next = match txn.get(keys::NEXT_RANGE_ID_KEY).await? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            _ => return Err(KvError::Corrupt("next range id".into())),
        };
        let descs: Vec<RangeDescriptor> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, (s, e))| RangeDescriptor {
                range_id: if i == 0 {
                    d.range_id
                } else {
                    next + i as u64 - 1
                },
                start: s,
                end: e,
                replicas: d.replicas.clone(),
                generation: d.generation + 1,
            })
            .collect();
        for nd in &descs {
            txn.put(keys::range_desc_key(nd.range_id), encode_desc(nd))?;
        }
        txn.put(
            keys::NEXT_RANGE_ID_KEY.to_vec(),
            (next + descs.len() as u64 - 1).to_be_bytes().to_vec(),
        )?;
        txn.commit().await?;
        // Durable; now switch this node's replicas over. A crash from here on reopens the groups
        // from the descriptors just written.
        *replica.desc.write() = descs[0].clone();
        replica.group.set_span(descs[0].span());
        let mut carved = d.range_id;
        for nd in descs.into_iter().skip(1) {
            if nd.start == start {
                carved = nd.range_id;
            }
            let r = self.open_replica(nd).await?;
            self.router.insert(r);
        }
        tracing::info!(range = carved, "split out a range");
        Ok(carved)
    }

    /// Removes every version and lock in `[start, end)` through the owning range's log (used
    /// when a table is dropped; the span must lie inside one range).
    pub async fn clear_span(&self, start: &[u8], end: &[u8]) -> Result<()> {
        // Recovery must not write a deleted redo record's versions back into the span.
        self.flush_redo().await;
        let replica = self.replica_for(start)?;
        let _g = replica.split_lock.read().await;
        let mut b = Batch::new();
        b.delete_range(Cf::Data, keycode::escape(start), keycode::escape(end));
        b.delete_range(Cf::Locks, start.to_vec(), end.to_vec());
        replica.group.propose(b).await?;
        Ok(())
    }

    /// Stops every Raft group. The store must not be used afterwards.
    pub async fn shutdown(&self) {
        if let Some(h) = self.floor_task.lock().take() {
            h.abort();
        }
        // Records not deleted in time are deleted by recovery at the next start.
        let timeout = Duration::from_millis(self.config.redo_flush_timeout_ms);
        if tokio::time::timeout(timeout, self.flush_redo())
            .await
            .is_err()
        {
            tracing::warn!("redo records left for recovery: the cleaner did not finish in time");
        }
        if let Some(h) = self.redo_task.lock().take() {
            h.abort();
        }
        for r in self.router.all() {
            r.group.shutdown().await;
        }
    }
}

fn encode_desc(d: &RangeDescriptor) -> Vec<u8> {
    bincode::serialize(d).expect("descriptor serializes")
}

/// Runs futures concurrently and collects their results in order.
async fn futures_join_all<T, F>(futs: impl IntoIterator<Item = F>) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .map_err(|e| KvError::Corrupt(format!("range open task: {e}")))??,
        );
    }
    Ok(out)
}
