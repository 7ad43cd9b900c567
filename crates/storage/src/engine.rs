//! The storage engine seam: one small trait, a RocksDB implementation and an in-memory one.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use parking_lot::RwLock;

/// A column family: a separate ordered keyspace within one engine, sharing its write-ahead log.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Cf {
    Data,
    Locks,
    Txns,
    RaftLog,
    RaftMeta,
    /// Redo records of local multi-range commits not yet fully applied (see
    /// [`crate::mvcc::Redo`]). New variants go last: batches in Raft logs name families by
    /// their index.
    Redo,
}

impl Cf {
    pub const ALL: [Cf; 6] = [
        Cf::Data,
        Cf::Locks,
        Cf::Txns,
        Cf::RaftLog,
        Cf::RaftMeta,
        Cf::Redo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Data => "data",
            Cf::Locks => "locks",
            Cf::Txns => "txns",
            Cf::RaftLog => "raftlog",
            Cf::RaftMeta => "raftmeta",
            Cf::Redo => "redo",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    #[error("store directory {0} is in use by another kestrel process")]
    Locked(String),
}

/// One write operation of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Put {
        cf: Cf,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Cf,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)` of `cf`.
    DeleteRange {
        cf: Cf,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// An ordered list of writes applied atomically by [`Engine::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { cf, key, value });
    }
    pub fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.ops.push(Op::Delete { cf, key });
    }
    pub fn delete_range(&mut self, cf: Cf, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(Op::DeleteRange { cf, start, end });
    }
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Approximate payload size, for limits.
    pub fn size_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len() + 8,
                Op::Delete { key, .. } => key.len() + 8,
                Op::DeleteRange { start, end, .. } => start.len() + end.len() + 8,
            })
            .sum()
    }
}

/// The physical store. Implementations are internally synchronized.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> crate::Result<Option<Vec<u8>>>;

    /// Visits keys of `cf` in `[start, end)` in ascending order (`end = None`: to the end of the
    /// keyspace) until `visit` returns `false`. The visit sees one consistent snapshot.
    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()>;

    /// [`Self::scan`] for a scan too large to be worth caching: RocksDB's does not fill the
    /// block cache with what it reads, so one large scan does not evict the hot blocks of
    /// every other reader (and skips the cache's insert and eviction work).
    fn scan_bulk(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        self.scan(cf, start, end, visit)
    }

    /// Visits keys of `cf` in `(.., end)` in descending order, starting at the greatest key `< end`
    /// (or the last key when `end` is `None`), until `visit` returns `false`.
    fn scan_rev(
        &self,
        cf: Cf,
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()>;

    /// [`Self::scan`] of `Cf::Data` within one user key's versions: `start` is a full version
    /// key (`escape(user_key) ++ timestamp`) and every key in `[start, end)` has its user key
    /// (see [`crate::mvcc::version_prefix`]). The engine may skip whole files whose filters say
    /// they hold no version of it.
    fn scan_versions(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        self.scan(Cf::Data, start, end, visit)
    }

    /// About how many bytes the keys of `cf` in `[start, end)` take in the engine's files
    /// (compressed; keys held only in memory may be left out). A hint for dividing work, never
    /// an answer a result depends on; the default knows nothing (0).
    fn approximate_bytes(&self, _cf: Cf, _start: &[u8], _end: &[u8]) -> u64 {
        0
    }

    /// Applies `batch` atomically; with `sync` it is durable (fsync) before this returns.
    /// Without `sync` any crash may lose it, a crash of the process too: the engine may keep
    /// it in memory until the next synced write or [`Self::sync_wal`].
    fn write(&self, batch: &Batch, sync: bool) -> crate::Result<()>;

    /// Makes every write that returned before this call durable (one fsync of the write-ahead
    /// log). Writes are durable in the order they were made: after a crash the engine holds a
    /// prefix of them, so a synced write (or this call) also makes every earlier write durable.
    fn sync_wal(&self) -> crate::Result<()>;

    /// A cursor over `cf` for many lookups in ascending key order with one iterator.
    /// RocksDB's sees the state as of its creation (later writes are invisible to it); the
    /// default seeks with a fresh scan each time and sees the state as of each move.
    fn cursor<'a>(&'a self, cf: Cf) -> Box<dyn Cursor + 'a> {
        Box::new(ScanCursor {
            engine: self,
            cf,
            current: None,
        })
    }
}

/// A position among one column family's keys (see [`Engine::cursor`]).
pub trait Cursor {
    /// Moves to the first key `>= key`.
    fn seek(&mut self, key: &[u8]) -> crate::Result<()>;
    /// Moves to the next key; only from a valid position.
    fn next(&mut self) -> crate::Result<()>;
    /// The pair at the position; `None` past the last key.
    fn current(&self) -> Option<(&[u8], &[u8])>;
}

/// [`Engine::cursor`]'s default: every move is a scan for one pair.
struct ScanCursor<'a, E: ?Sized> {
    engine: &'a E,
    cf: Cf,
    current: Option<(Vec<u8>, Vec<u8>)>,
}

impl<E: Engine + ?Sized> ScanCursor<'_, E> {
    fn first_from(&mut self, start: &[u8], skip_start: bool) -> crate::Result<()> {
        let mut found = None;
        self.engine.scan(self.cf, start, None, &mut |k, v| {
            if skip_start && k == start {
                return true;
            }
            found = Some((k.to_vec(), v.to_vec()));
            false
        })?;
        self.current = found;
        Ok(())
    }
}

impl<E: Engine + ?Sized> Cursor for ScanCursor<'_, E> {
    fn seek(&mut self, key: &[u8]) -> crate::Result<()> {
        self.first_from(key, false)
    }

    fn next(&mut self) -> crate::Result<()> {
        let (k, _) = self
            .current
            .take()
            .expect("next from a valid cursor position");
        self.first_from(&k, true)
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.current
            .as_ref()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

struct RocksCursor<'a> {
    it: rocksdb::DBRawIteratorWithThreadMode<'a, rocksdb::DB>,
}

impl Cursor for RocksCursor<'_> {
    fn seek(&mut self, key: &[u8]) -> crate::Result<()> {
        self.it.seek(key);
        self.it.status().map_err(rocks_err)
    }

    fn next(&mut self) -> crate::Result<()> {
        assert!(self.it.valid(), "next from a valid cursor position");
        self.it.next();
        self.it.status().map_err(rocks_err)
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.it.item()
    }
}

/// RocksDB, one DB with a column family per [`Cf`].
pub struct RocksEngine {
    db: rocksdb::DB,
}

impl Drop for RocksEngine {
    /// A clean close leaves no write only in the WAL buffer (see `set_manual_wal_flush`).
    fn drop(&mut self) {
        if let Err(e) = self.db.flush_wal(true) {
            tracing::warn!("flushing the WAL at close failed: {e}");
        }
    }
}

fn rocks_err(e: rocksdb::Error) -> StorageError {
    StorageError::Engine(e.into_string())
}

/// Memory and background-work limits of the RocksDB engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The block cache every column family shares (uncompressed data, index and filter blocks).
    pub block_cache_bytes_max: usize,
    /// All column families' memtables together; past it RocksDB flushes the largest one.
    pub memtable_bytes_max: usize,
    /// One column family's memtable before it is switched and flushed.
    pub memtable_cf_bytes_max: usize,
    /// Flush and compaction threads.
    pub background_jobs_max: i32,
    /// Bytes of write-ahead log files kept before RocksDB flushes the memtables holding their
    /// oldest writes: bounds the WAL a restart replays (about 1.3 s per 100 MB on the bench
    /// machine).
    pub wal_bytes_max: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            block_cache_bytes_max: 256 << 20,
            memtable_bytes_max: 256 << 20,
            memtable_cf_bytes_max: 64 << 20,
            background_jobs_max: 2,
            wal_bytes_max: 128 << 20,
        }
    }
}

/// Bits per key of the bloom filters (about 1 % false positives).
const BLOOM_BITS_PER_KEY: f64 = 10.0;
/// A memtable's bloom filter, as a fraction of the memtable's size.
const MEMTABLE_BLOOM_RATIO: f64 = 0.05;

impl RocksEngine {
    /// Opens (or creates) the store in `dir` with the default limits.
    pub fn open(dir: &Path) -> crate::Result<Self> {
        Self::open_with(dir, &EngineConfig::default())
    }

    pub fn open_with(dir: &Path, config: &EngineConfig) -> crate::Result<Self> {
        assert!(config.memtable_cf_bytes_max > 0 && config.memtable_bytes_max > 0);
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(config.background_jobs_max);
        opts.set_max_total_wal_size(config.wal_bytes_max);
        // Recover the longest intact prefix of the WAL: the write-ahead order is the durability
        // order the layers above rely on (see `Engine::sync_wal`).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        // Unsynced writes stay in RocksDB's WAL buffer instead of costing a write(2) each;
        // `sync_wal` (FlushWAL with sync) and synced writes write the buffer out before the
        // fsync, and RocksDB writes it out before switching WAL files, so the WAL on disk is
        // still a prefix of the writes in order. The layers above already treat every
        // unsynced write as lost in a crash.
        opts.set_manual_wal_flush(true);
        // Writers queued behind a write group's leader block instead of spinning and calling
        // sched_yield: on a machine with few cores the spinning steals the leader's CPU.
        opts.set_enable_write_thread_adaptive_yield(false);
        let memtables =
            rocksdb::WriteBufferManager::new_write_buffer_manager(config.memtable_bytes_max, false);
        opts.set_write_buffer_manager(&memtables);
        let cache = rocksdb::Cache::new_lru_cache(config.block_cache_bytes_max);
        // Per column family: the DB-level options above do not reach them.
        let cfs: Vec<_> = Cf::ALL
            .iter()
            .map(|cf| {
                let mut o = rocksdb::Options::default();
                o.set_compression_type(rocksdb::DBCompressionType::Lz4);
                o.set_write_buffer_size(config.memtable_cf_bytes_max);
                let mut table = rocksdb::BlockBasedOptions::default();
                table.set_block_cache(&cache);
                match cf {
                    // Point reads of a row seek to its newest version: a bloom filter of user
                    // keys (the version key without its timestamp) lets them skip the files
                    // and memtables that hold no version of it.
                    Cf::Data => {
                        o.set_prefix_extractor(rocksdb::SliceTransform::create(
                            // RocksDB matches a file's filter to the extractor by name:
                            // a changed key layout needs a new name.
                            "kestrel.user_key.v1",
                            crate::mvcc::version_prefix,
                            Some(crate::mvcc::is_version_key),
                        ));
                        o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
                        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
                        table.set_whole_key_filtering(false);
                    }
                    // Point gets (a key's lock, a transaction's record, Raft state).
                    Cf::Locks | Cf::Txns | Cf::RaftMeta => {
                        o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
                        o.set_memtable_whole_key_filtering(true);
                        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
                    }
                    // Read in key order by scans (recovery reads every redo record).
                    Cf::RaftLog | Cf::Redo => {}
                }
                o.set_block_based_table_factory(&table);
                rocksdb::ColumnFamilyDescriptor::new(cf.name(), o)
            })
            .collect();
        let db = rocksdb::DB::open_cf_descriptors(&opts, dir, cfs).map_err(rocks_err)?;
        Ok(Self { db })
    }

    /// Writes every column family's memtable out to a file (tests use it to read from files).
    pub fn flush(&self) -> crate::Result<()> {
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf)).map_err(rocks_err)?;
        }
        Ok(())
    }

    /// Visits `cf` forward from `start` with read options `ro` (which carry the end).
    fn scan_with(
        &self,
        cf: Cf,
        start: &[u8],
        ro: rocksdb::ReadOptions,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(start);
        visit_from(it, true, visit)
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every column family is created at open, so a missing handle is a programming error.
        self.db
            .cf_handle(cf.name())
            .expect("column family created at open")
    }
}

/// Read options of an iterator over keys of any prefix: `cf data` has a prefix extractor, and
/// without `total_order_seek` RocksDB would treat every seek as a prefix seek (skipping files
/// by the seek key's prefix, and ending at the prefix).
fn total_order(end: Option<&[u8]>) -> rocksdb::ReadOptions {
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_total_order_seek(true);
    if let Some(end) = end {
        ro.set_iterate_upper_bound(end.to_vec());
    }
    ro
}

/// Visits the pairs from the iterator's position on, stepping forward or backward, until
/// `visit` returns `false`.
fn visit_from(
    mut it: rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB>,
    forward: bool,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> crate::Result<()> {
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if !visit(k, v) {
            return Ok(());
        }
        if forward {
            it.next();
        } else {
            it.prev();
        }
    }
    it.status().map_err(rocks_err)
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(rocks_err)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        self.scan_with(cf, start, total_order(end), visit)
    }

    fn scan_bulk(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        let mut ro = total_order(end);
        ro.fill_cache(false);
        self.scan_with(cf, start, ro, visit)
    }

    fn scan_versions(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        // A prefix seek: files (and memtables) whose prefix filter lacks the user key are
        // skipped, and the iterator ends at the last version of that key.
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        if let Some(end) = end {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(Cf::Data), ro);
        it.seek(start);
        visit_from(it, true, visit)
    }

    fn scan_rev(
        &self,
        cf: Cf,
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), total_order(end));
        it.seek_to_last();
        visit_from(it, false, visit)
    }

    fn approximate_bytes(&self, cf: Cf, start: &[u8], end: &[u8]) -> u64 {
        if start >= end {
            return 0;
        }
        // From the files' index blocks (RocksDB's C API leaves memtables out).
        let sizes = self
            .db
            .get_approximate_sizes_cf(self.cf(cf), &[rocksdb::Range::new(start, end)]);
        sizes.first().copied().unwrap_or(0)
    }

    fn write(&self, batch: &Batch, sync: bool) -> crate::Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put { cf, key, value } => wb.put_cf(self.cf(*cf), key, value),
                Op::Delete { cf, key } => wb.delete_cf(self.cf(*cf), key),
                Op::DeleteRange { cf, start, end } => wb.delete_range_cf(self.cf(*cf), start, end),
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo).map_err(rocks_err)
    }

    fn sync_wal(&self) -> crate::Result<()> {
        // Syncs every live WAL file up to the current one, not just the newest.
        self.db.flush_wal(true).map_err(rocks_err)
    }

    fn cursor<'a>(&'a self, cf: Cf) -> Box<dyn Cursor + 'a> {
        Box::new(RocksCursor {
            it: self.db.raw_iterator_cf_opt(self.cf(cf), total_order(None)),
        })
    }
}

/// An in-memory engine with the same semantics, for unit tests of the layers above.
#[derive(Default)]
pub struct MemEngine {
    cfs: RwLock<BTreeMap<(Cf, Vec<u8>), Vec<u8>>>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        Ok(self.cfs.read().get(&(cf, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        let map = self.cfs.read();
        let lo = Bound::Included((cf, start.to_vec()));
        let hi = match end {
            Some(e) => Bound::Excluded((cf, e.to_vec())),
            None => Bound::Unbounded,
        };
        for ((c, k), v) in map.range((lo, hi)) {
            if *c != cf || !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_rev(
        &self,
        cf: Cf,
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> crate::Result<()> {
        let map = self.cfs.read();
        let lo = Bound::Included((cf, Vec::new()));
        let hi = match end {
            Some(e) => Bound::Excluded((cf, e.to_vec())),
            None => Bound::Unbounded,
        };
        for ((c, k), v) in map.range((lo, hi)).rev() {
            if *c != cf {
                continue;
            }
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    /// Exact: the bytes of the keys and values in the span.
    fn approximate_bytes(&self, cf: Cf, start: &[u8], end: &[u8]) -> u64 {
        if start >= end {
            return 0;
        }
        let map = self.cfs.read();
        map.range((cf, start.to_vec())..(cf, end.to_vec()))
            .map(|((_, k), v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn write(&self, batch: &Batch, _sync: bool) -> crate::Result<()> {
        let mut map = self.cfs.write();
        for op in &batch.ops {
            match op {
                Op::Put { cf, key, value } => {
                    map.insert((*cf, key.clone()), value.clone());
                }
                Op::Delete { cf, key } => {
                    map.remove(&(*cf, key.clone()));
                }
                Op::DeleteRange { cf, start, end } => {
                    let keys: Vec<_> = map
                        .range((*cf, start.clone())..(*cf, end.clone()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync_wal(&self) -> crate::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(engine: &dyn Engine) {
        let mut b = Batch::new();
        b.put(Cf::Data, b"b".to_vec(), b"2".to_vec());
        b.put(Cf::Data, b"a".to_vec(), b"1".to_vec());
        b.put(Cf::Data, b"c".to_vec(), b"3".to_vec());
        b.put(Cf::Locks, b"a".to_vec(), b"lock".to_vec());
        engine.write(&b, true).unwrap();
        assert_eq!(engine.get(Cf::Data, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.get(Cf::Data, b"z").unwrap(), None);
        let mut seen = vec![];
        engine
            .scan(Cf::Data, b"a", Some(b"c"), &mut |k, _| {
                seen.push(k.to_vec());
                true
            })
            .unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        let mut rev = vec![];
        engine
            .scan_rev(Cf::Data, Some(b"c"), &mut |k, _| {
                rev.push(k.to_vec());
                true
            })
            .unwrap();
        assert_eq!(rev, vec![b"b".to_vec(), b"a".to_vec()]);
        let mut b = Batch::new();
        b.delete_range(Cf::Data, b"a".to_vec(), b"c".to_vec());
        engine.write(&b, false).unwrap();
        let mut n = 0;
        engine
            .scan(Cf::Data, b"", None, &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(engine.get(Cf::Locks, b"a").unwrap(), Some(b"lock".to_vec()));
    }

    #[test]
    fn mem_engine_semantics() {
        exercise(&MemEngine::new());
    }

    /// A cursor sees what scans see, for seeks and steps in ascending order.
    fn cursor_agrees_with_scan(engine: &dyn Engine) {
        let mut b = Batch::new();
        for k in [b"a1".as_slice(), b"a3", b"b", b"c5"] {
            b.put(Cf::Data, k.to_vec(), k.to_vec());
        }
        b.put(Cf::Locks, b"a2".to_vec(), b"other cf".to_vec());
        engine.write(&b, false).unwrap();
        let mut c = engine.cursor(Cf::Data);
        c.seek(b"a2").unwrap();
        assert_eq!(c.current(), Some((b"a3".as_slice(), b"a3".as_slice())));
        c.next().unwrap();
        assert_eq!(c.current().map(|(k, _)| k), Some(b"b".as_slice()));
        c.seek(b"c").unwrap();
        assert_eq!(c.current().map(|(k, _)| k), Some(b"c5".as_slice()));
        c.next().unwrap();
        assert_eq!(
            c.current(),
            None,
            "past the last key, and not into another cf"
        );
        c.seek(b"").unwrap();
        assert_eq!(c.current().map(|(k, _)| k), Some(b"a1".as_slice()));
        // A bulk scan reads what a scan reads (bounds, cf, early stop).
        for (start, end, stop_after) in [
            (&b""[..], None, 9),
            (b"a2", Some(&b"c"[..]), 9),
            (b"a", None, 2),
        ] {
            let mut plain = Vec::new();
            let mut bulk = Vec::new();
            engine
                .scan(Cf::Data, start, end, &mut |k, _| {
                    plain.push(k.to_vec());
                    plain.len() < stop_after
                })
                .unwrap();
            engine
                .scan_bulk(Cf::Data, start, end, &mut |k, _| {
                    bulk.push(k.to_vec());
                    bulk.len() < stop_after
                })
                .unwrap();
            assert!(!plain.is_empty());
            assert_eq!(bulk, plain);
        }
    }

    #[test]
    fn cursors_agree_with_scans() {
        cursor_agrees_with_scan(&MemEngine::new());
        let dir = tempfile::tempdir().unwrap();
        cursor_agrees_with_scan(&RocksEngine::open(dir.path()).unwrap());
    }

    #[test]
    fn rocks_engine_semantics_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = RocksEngine::open(dir.path()).unwrap();
            exercise(&e);
        }
        let e = RocksEngine::open(dir.path()).unwrap();
        assert_eq!(e.get(Cf::Data, b"c").unwrap(), Some(b"3".to_vec()));
    }
}
