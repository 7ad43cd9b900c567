//! A range's Raft log and vote, kept in the shared engine (cf `raftlog` / `raftmeta`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use kestrel_storage::{Batch, Cf, Engine};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use crate::metrics::METRICS;
use crate::{NodeId, RangeId, TypeConfig};

pub(crate) fn meta_key(range_id: RangeId, name: &str) -> Vec<u8> {
    let mut k = range_id.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

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
    range_id: RangeId,
}

impl LogStore {
    pub fn new(engine: Arc<dyn Engine>, range_id: RangeId) -> Self {
        Self { engine, range_id }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self
            .engine
            .get(Cf::RaftMeta, &meta_key(self.range_id, name))
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(b) => bincode::deserialize(&b).map(Some).map_err(read_err),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, name: &str, v: &T) -> Result<(), StorageError<NodeId>> {
        let mut b = Batch::new();
        b.put(
            Cf::RaftMeta,
            meta_key(self.range_id, name),
            bincode::serialize(v).map_err(write_err)?,
        );
        METRICS.log_fsyncs.inc();
        self.engine.write(&b, true).map_err(write_err)
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
        let end = match range.end_bound() {
            Bound::Included(i) => log_key(self.range_id, i + 1),
            Bound::Excluded(i) => log_key(self.range_id, *i),
            Bound::Unbounded => log_key(self.range_id + 1, 0),
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
        let last_purged: Option<LogId<NodeId>> = self.get_meta("purged")?;
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
        self.put_meta("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: losing it only means re-deriving the commit index after a restart.
        let mut b = Batch::new();
        b.put(
            Cf::RaftMeta,
            meta_key(self.range_id, "committed"),
            bincode::serialize(&committed).map_err(write_err)?,
        );
        self.engine.write(&b, false).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>("committed")?
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
        for e in entries {
            b.put(
                Cf::RaftLog,
                log_key(self.range_id, e.log_id.index),
                bincode::serialize(&e).map_err(write_err)?,
            );
        }
        METRICS.log_appends.inc();
        METRICS.log_entries.inc_by(b.len() as u64);
        METRICS.log_fsyncs.inc();
        // The entry is acknowledged (and so may be applied and reported committed) only after
        // this synced write returns.
        let res = self.engine.write(&b, true);
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut b = Batch::new();
        b.delete_range(
            Cf::RaftLog,
            log_key(self.range_id, log_id.index),
            log_key(self.range_id + 1, 0),
        );
        self.engine.write(&b, true).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first, then drop the entries; both in one synced batch. The
        // state machine's applied state covers every purged entry: make it durable too (the
        // synced write flushes the shared WAL, which holds the unsynced apply batches).
        let mut b = Batch::new();
        b.put(
            Cf::RaftMeta,
            meta_key(self.range_id, "purged"),
            bincode::serialize(&Some(log_id)).map_err(write_err)?,
        );
        b.delete_range(
            Cf::RaftLog,
            log_key(self.range_id, 0),
            log_key(self.range_id, log_id.index + 1),
        );
        METRICS.log_fsyncs.inc();
        self.engine.write(&b, true).map_err(write_err)
    }
}
