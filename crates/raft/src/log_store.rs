//! A range's Raft log and vote, kept in the shared engine (cf `raftlog` / `raftmeta`).
//!
//! Every commit appends an entry and then applies it, and applying reads the entry back
//! through [`RaftLogReader`]. The newest entries are therefore also kept in memory (the
//! [`Tail`], at most `log_cache_bytes_max` per range): a read of entries the tail holds
//! never touches RocksDB. That matters beyond saving a lookup: a seek in the log's column
//! family can land in an SST data block of another range's large entries (a bulk load's
//! batches), which RocksDB reads and checksums whole.
//!
//! An append writes its entries without syncing. With `deferred_sync` it is reported flushed
//! at once and the proposer waits for durability; otherwise the node's [`GroupCommit`] reports
//! it after a WAL sync shared with every other waiter at the time (`group_commit.rs`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kestrel_storage::{Batch, Cf, Engine};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use crate::group_commit::{GroupCommit, Waiter};
use crate::metrics::METRICS;
use crate::state_machine::AppliedState;
use crate::{NodeId, RangeId, TypeConfig};

/// A named per-range value in cf `raftmeta`, always encoded and decoded as `T`: one
/// declaration per name, so a writer and a reader cannot disagree on the type (a `purged`
/// written as `Option<LogId>` but read as `LogId` once made every store whose log had been
/// purged unopenable).
pub(crate) struct Meta<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Meta<T> {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    fn key(&self, range_id: RangeId) -> Vec<u8> {
        let mut k = range_id.to_be_bytes().to_vec();
        k.extend_from_slice(self.name.as_bytes());
        k
    }

    pub(crate) fn get(
        &self,
        engine: &dyn Engine,
        range_id: RangeId,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match engine
            .get(Cf::RaftMeta, &self.key(range_id))
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(b) => bincode::deserialize(&b).map(Some).map_err(read_err),
        }
    }

    pub(crate) fn put(
        &self,
        batch: &mut Batch,
        range_id: RangeId,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = bincode::serialize(value).map_err(write_err)?;
        batch.put(Cf::RaftMeta, self.key(range_id), bytes);
        Ok(())
    }
}

pub(crate) const VOTE: Meta<Vote<NodeId>> = Meta::new("vote");
/// Written by earlier versions only (see `save_committed`); still read, as a lower bound.
pub(crate) const COMMITTED: Meta<Option<LogId<NodeId>>> = Meta::new("committed");
/// The last purged entry. `Option` because that is how it has always been written.
pub(crate) const PURGED: Meta<Option<LogId<NodeId>>> = Meta::new("purged");
pub(crate) const APPLIED: Meta<AppliedState> = Meta::new("applied");

fn log_key(range_id: RangeId, index: u64) -> Vec<u8> {
    let mut k = range_id.to_be_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn Engine>,
    wal: Arc<GroupCommit>,
    range_id: RangeId,
    /// Shared with the log readers handed to openraft.
    tail: Arc<parking_lot::Mutex<Tail>>,
    /// Bytes of entries appended since the group last asked for a snapshot (`RaftGroup`
    /// reads and resets it: see `RaftConfig::snapshot_log_bytes_max`).
    appended_bytes: Arc<AtomicU64>,
}

/// The newest appended entries of the log, contiguous and ending at the last appended
/// entry (or empty), within `bytes_max` bytes of encoded entries.
struct Tail {
    entries: BTreeMap<u64, (Entry<TypeConfig>, usize)>,
    bytes: usize,
    bytes_max: usize,
}

impl Tail {
    /// Records entry `e` (encoded in `size` bytes), just appended after the others.
    fn push(&mut self, e: &Entry<TypeConfig>, size: usize) {
        let index = e.log_id.index;
        let follows = self
            .entries
            .last_key_value()
            .is_none_or(|(last, _)| *last + 1 == index);
        if !follows || size > self.bytes_max {
            // Keep the tail contiguous: start again (empty, if this entry is too large).
            self.clear();
            if size > self.bytes_max {
                return;
            }
        }
        self.entries.insert(index, (e.clone(), size));
        self.bytes += size;
        while self.bytes > self.bytes_max {
            match self.entries.pop_first() {
                Some((_, (_, n))) => self.bytes -= n,
                None => break,
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `[start, end)` (`end = None`: to the last), if the tail holds all of them.
    fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        let (first, last) = (
            *self.entries.first_key_value()?.0,
            *self.entries.last_key_value()?.0,
        );
        let end = end.unwrap_or(last + 1);
        if start < first || end > last + 1 {
            return None;
        }
        Some(
            self.entries
                .range(start..end)
                .map(|(_, (e, _))| e.clone())
                .collect(),
        )
    }

    /// Drops entries from `index` on (truncate).
    fn truncate(&mut self, index: u64) {
        let gone = self.entries.split_off(&index);
        self.bytes -= gone.values().map(|(_, n)| n).sum::<usize>();
    }

    /// Drops entries up to and including `index` (purge).
    fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        self.entries = kept;
        self.bytes = self.entries.values().map(|(_, n)| n).sum();
    }
}

impl LogStore {
    /// The log of `range_id`, keeping up to `cache_bytes_max` bytes of its newest entries in
    /// memory.
    pub fn new(wal: Arc<GroupCommit>, range_id: RangeId, cache_bytes_max: usize) -> Self {
        let tail = Tail {
            entries: BTreeMap::new(),
            bytes: 0,
            bytes_max: cache_bytes_max,
        };
        Self {
            engine: wal.engine().clone(),
            wal,
            range_id,
            tail: Arc::new(parking_lot::Mutex::new(tail)),
            appended_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count of entry bytes appended, shared with this store's clones.
    pub(crate) fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended_bytes.clone()
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let end = log_key(self.range_id + 1, 0);
        let mut out = None;
        let mut err = None;
        let own = self.range_id.to_be_bytes();
        self.engine
            .scan_rev(Cf::RaftLog, Some(&end), &mut |k, v| {
                if k.starts_with(&own) {
                    match bincode::deserialize::<Entry<TypeConfig>>(v) {
                        Ok(e) => out = Some(e.log_id),
                        Err(e) => err = Some(e),
                    }
                }
                false
            })
            .map_err(read_err)?;
        match err {
            Some(e) => Err(read_err(e)),
            None => Ok(out),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end_index = match range.end_bound() {
            Bound::Included(i) => Some(i + 1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(hit) = self.tail.lock().get(start, end_index) {
            METRICS.log_cache_hits.inc();
            return Ok(hit);
        }
        METRICS.log_cache_misses.inc();
        let end = match end_index {
            Some(i) => log_key(self.range_id, i),
            None => log_key(self.range_id + 1, 0),
        };
        let mut out = Vec::new();
        let mut err = None;
        self.engine
            .scan(
                Cf::RaftLog,
                &log_key(self.range_id, start),
                Some(&end),
                &mut |_, v| {
                    match bincode::deserialize::<Entry<TypeConfig>>(v) {
                        Ok(e) => out.push(e),
                        Err(e) => err = Some(e),
                    }
                    err.is_none()
                },
            )
            .map_err(read_err)?;
        match err {
            Some(e) => Err(read_err(e)),
            None => Ok(out),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged = PURGED.get(self.engine.as_ref(), self.range_id)?.flatten();
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut b = Batch::new();
        VOTE.put(&mut b, self.range_id, vote)?;
        METRICS.log_fsyncs.inc();
        self.engine.write(&b, true).map_err(write_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        VOTE.get(self.engine.as_ref(), self.range_id)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not stored: openraft calls this on every commit, and an engine write per entry costs
        // more than it saves. A restart re-derives the commit index (a single voter commits
        // its whole log when it wins the election; `RaftGroup::open` waits for that), and
        // openraft treats a stored value — from stores written before this — as a lower
        // bound, raising it to the applied index.
        let _ = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(COMMITTED
            .get(self.engine.as_ref(), self.range_id)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut b = Batch::new();
        let mut written = Vec::new();
        for e in entries {
            let bytes = bincode::serialize(&e).map_err(write_err)?;
            written.push((bytes.len(), e));
            b.put(
                Cf::RaftLog,
                log_key(self.range_id, written[written.len() - 1].1.log_id.index),
                bytes,
            );
        }
        METRICS.log_appends.inc();
        METRICS.log_entries.inc_by(b.len() as u64);
        // Unsynced: the entries count as flushed (and may be applied and reported committed)
        // only when the callback runs.
        if let Err(e) = self.engine.write(&b, false) {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(write_err(e));
        }
        let bytes: usize = written.iter().map(|(size, _)| size).sum();
        self.appended_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let mut tail = self.tail.lock();
        for (size, e) in &written {
            tail.push(e, *size);
        }
        drop(tail);
        if self.wal.deferred_sync() {
            // Single voter: the proposer waits for durability (`RaftGroup::propose`).
            callback.log_io_completed(Ok(()));
        } else {
            self.wal.submit(Waiter::Append(callback));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail.lock().truncate(log_id.index);
        let mut b = Batch::new();
        b.delete_range(
            Cf::RaftLog,
            log_key(self.range_id, log_id.index),
            log_key(self.range_id + 1, 0),
        );
        self.engine.write(&b, true).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.tail.lock().purge(log_id.index);
        // Record the purge point first, then drop the entries; both in one synced batch. The
        // state machine's applied state covers every purged entry: make it durable too (the
        // synced write flushes the shared WAL, which holds the unsynced apply batches).
        let mut b = Batch::new();
        PURGED.put(&mut b, self.range_id, &Some(log_id))?;
        b.delete_range(
            Cf::RaftLog,
            log_key(self.range_id, 0),
            log_key(self.range_id, log_id.index + 1),
        );
        METRICS.log_fsyncs.inc();
        self.engine.write(&b, true).map_err(write_err)?;
        METRICS.log_purges.inc();
        Ok(())
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(v: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    fn tail(bytes_max: usize) -> Tail {
        Tail {
            entries: BTreeMap::new(),
            bytes: 0,
            bytes_max,
        }
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let mut t = tail(100);
        for i in 5..10 {
            t.push(&entry(i), 10);
        }
        assert_eq!(indexes(t.get(6, Some(8))), Some(vec![6, 7]));
        assert_eq!(indexes(t.get(8, None)), Some(vec![8, 9]));
        assert_eq!(indexes(t.get(4, Some(6))), None, "entry 4 is not held");
        assert_eq!(
            indexes(t.get(9, Some(11))),
            None,
            "entry 10 does not exist yet"
        );
    }

    #[test]
    fn evicts_oldest_and_stays_contiguous() {
        let mut t = tail(30);
        for i in 1..=5 {
            t.push(&entry(i), 10);
        }
        assert_eq!(indexes(t.get(3, None)), Some(vec![3, 4, 5]));
        assert_eq!(t.bytes, 30);
        // A gap (after a restart, say) starts the tail again.
        t.push(&entry(9), 10);
        assert_eq!(indexes(t.get(9, None)), Some(vec![9]));
        // An entry larger than the bound empties it.
        t.push(&entry(10), 31);
        assert_eq!(indexes(t.get(10, None)), None);
        assert_eq!(t.bytes, 0);
        t.push(&entry(11), 10);
        assert_eq!(indexes(t.get(11, None)), Some(vec![11]));
    }

    #[test]
    fn truncate_and_purge_drop_their_entries() {
        let mut t = tail(1000);
        for i in 1..=6 {
            t.push(&entry(i), 10);
        }
        t.truncate(5);
        assert_eq!(indexes(t.get(1, None)), Some(vec![1, 2, 3, 4]));
        t.purge(2);
        assert_eq!(indexes(t.get(3, None)), Some(vec![3, 4]));
        assert_eq!(t.bytes, 20);
        // Appending after a truncation continues from the truncation point.
        t.push(&entry(5), 10);
        assert_eq!(indexes(t.get(3, None)), Some(vec![3, 4, 5]));
    }
}
