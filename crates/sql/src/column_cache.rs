//! The column cache: decoded Arrow columns of large table scans, reused by later scans of
//! the same key span while nothing was written to it.
//!
//! A table scan decodes every stored row (key and value bytes) into Arrow arrays; for the
//! analytic queries that scan big tables again and again, that decoding is most of their
//! time. A scan partition whose stored size is at least `column_cache_scan_bytes_min`
//! therefore keeps the columns it decoded, and the next scan of the same span at a snapshot
//! that sees the same data slices them instead of reading the engine.
//!
//! **When an entry may be used.** An entry is the rows of one key span `[start, end)` of a
//! table's primary index, as one Arrow array per cached column, plus
//! * the span's [`SpanStamp`] — the applied generation of every range it overlaps — taken
//!   before the rows were scanned and found unchanged after the scan ended, and
//! * `newest`: the timestamp of the newest version of any key in the span when it was
//!   scanned (deletions included), which was at most the scanning snapshot.
//!
//! So the rows are the *newest* state of the span at that stamp. A scan at snapshot `ts`
//! that has waited for the commits pending at or below `ts` (`Txn::stamp_span`) may use the
//! entry when the span's stamp still equals the entry's and `ts >= newest`: no write was
//! applied to those ranges since, and no version the snapshot must not see is among the
//! rows. The reader still records the span as read (serializable validation). A transaction
//! with its own buffered writes in the span never uses or fills the cache. Anything else
//! scans the engine — and may replace the entry. `kestrel_kv::Txn::stamp_span` states the
//! rule the stamp rests on.
//!
//! **What an entry holds.** The columns the scan was asked for, plus the table's narrow
//! columns (fixed width, or text of declared length at most [`NARROW_TEXT_LEN_MAX`]) even
//! when not asked for: adding a column later costs a whole scan, while narrow columns cost
//! little memory. Wide text is cached once a scan asks for it. Columns are keyed by column
//! id (stable across `ALTER TABLE`) and type.
//!
//! **Bounds.** All entries together hold at most `column_cache_bytes_max` bytes (Arrow
//! buffer sizes); past it, the least recently used entries are dropped. Scans keeping
//! columns to fill entries reserve their bytes, together at most `column_cache_bytes_max`
//! too; a scan that is refused, or finds after a batch that its rows can no longer become
//! an entry (the span was written, or it passed a version newer than its snapshot), stops
//! keeping and decoding extra columns, and still answers its query. An entry whose stamp no
//! longer matches is dropped when a scan finds it so; entries of spans no scan asks for
//! again (a dropped table, partition cuts that moved) wait for eviction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;

use datafusion::arrow::array::{Array, ArrayRef};
use kestrel_kv::{SpanStamp, Ts};
use prometheus::{IntCounter, IntGauge, Opts};

use crate::types::SqlType;

/// Text columns declared no longer than this are cached even when a scan does not ask.
pub const NARROW_TEXT_LEN_MAX: u32 = 32;

/// Whether a column of type `ty` is cached by every scan that fills an entry.
pub fn is_narrow(ty: &SqlType) -> bool {
    match ty {
        SqlType::Bool
        | SqlType::Int2
        | SqlType::Int4
        | SqlType::Int8
        | SqlType::Float4
        | SqlType::Float8
        | SqlType::Numeric { .. }
        | SqlType::Date
        | SqlType::Timestamp
        | SqlType::TimestampTz
        | SqlType::Uuid => true,
        SqlType::Char(n) | SqlType::Varchar(Some(n)) => *n <= NARROW_TEXT_LEN_MAX,
        _ => false,
    }
}

/// A cached column: which column (id and type) and its values, one per row of the entry.
pub type Column = (u16, SqlType, ArrayRef);

struct Entry {
    stamp: SpanStamp,
    newest: Ts,
    rows: usize,
    columns: Vec<Column>,
    bytes: usize,
    last_used: u64,
}

impl Entry {
    fn usable(&self, stamp: &SpanStamp, read_ts: Ts) -> bool {
        self.stamp == *stamp && read_ts >= self.newest
    }

    fn column(&self, id: u16, ty: &SqlType) -> Option<&ArrayRef> {
        self.columns
            .iter()
            .find(|(i, t, _)| *i == id && t == ty)
            .map(|(_, _, a)| a)
    }
}

/// The key span of an entry (table id and index are in the key prefix).
type SpanKey = (Vec<u8>, Vec<u8>);

pub struct ColumnCache {
    bytes_max: usize,
    inner: parking_lot::Mutex<Inner>,
    tick: AtomicU64,
    /// Bytes that scans filling entries hold now (see [`Self::reserve`]).
    filling: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<SpanKey, Entry>,
    bytes: usize,
}

/// What a scan finds in the cache for its span.
pub enum Lookup {
    /// Every asked column, in the order asked, with the entry's row count.
    Hit(Vec<ArrayRef>, usize),
    /// The entry is usable but lacks some asked columns; these are the ones it has.
    Partial(Vec<(u16, SqlType)>),
    Miss,
}

impl ColumnCache {
    /// A cache of at most `bytes_max` bytes (0: it keeps nothing).
    pub fn new(bytes_max: usize) -> Self {
        LazyLock::force(&METRICS); // /metrics lists the counters from the start
        Self {
            bytes_max,
            inner: parking_lot::Mutex::new(Inner::default()),
            tick: AtomicU64::new(0),
            filling: AtomicUsize::new(0),
        }
    }

    /// Reserves `bytes` for a scan that keeps its columns to fill an entry; false when the
    /// scans filling entries would hold more than `bytes_max` together (the scan then stops
    /// keeping). So entries and fills in progress hold at most twice `bytes_max`.
    pub fn reserve(&self, bytes: usize) -> bool {
        self.filling
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&n| n <= self.bytes_max)
            })
            .is_ok()
    }

    /// Returns bytes [`Self::reserve`] granted.
    pub fn release(&self, bytes: usize) {
        let before = self.filling.fetch_sub(bytes, Ordering::AcqRel);
        assert!(before >= bytes, "released more than was reserved");
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// The cached bytes now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// The columns `want` (id, type) of `span` for a scan at `read_ts` whose span is now at
    /// `stamp` (see the module doc).
    pub fn lookup(
        &self,
        span: &SpanKey,
        stamp: &SpanStamp,
        read_ts: Ts,
        want: &[(u16, SqlType)],
    ) -> Lookup {
        let mut inner = self.inner.lock();
        let Some(entry) = inner.entries.get_mut(span) else {
            METRICS.misses.inc();
            return Lookup::Miss;
        };
        if entry.stamp != *stamp {
            // Written since: it can never be used again.
            let gone = inner.entries.remove(span).map_or(0, |e| e.bytes);
            inner.bytes -= gone;
            METRICS.bytes.set(inner.bytes as i64);
            METRICS.misses.inc();
            return Lookup::Miss;
        }
        if !entry.usable(stamp, read_ts) {
            // An older snapshot than the entry's newest version: scan the engine.
            METRICS.misses.inc();
            return Lookup::Miss;
        }
        entry.last_used = self.tick.fetch_add(1, Ordering::Relaxed);
        let found: Option<Vec<ArrayRef>> = want
            .iter()
            .map(|(id, ty)| entry.column(*id, ty).cloned())
            .collect();
        match found {
            Some(arrays) => {
                METRICS.hits.inc();
                Lookup::Hit(arrays, entry.rows)
            }
            None => {
                METRICS.misses.inc();
                Lookup::Partial(
                    entry
                        .columns
                        .iter()
                        .map(|(i, t, _)| (*i, t.clone()))
                        .collect(),
                )
            }
        }
    }

    /// Keeps `columns` (`rows` long) of `span`, scanned between two equal stamps `stamp`
    /// with `newest` as the span's newest version. An entry of the same stamp and row count
    /// gains the columns; any other entry of the span is replaced.
    pub fn fill(
        &self,
        span: SpanKey,
        stamp: SpanStamp,
        newest: Ts,
        rows: usize,
        columns: Vec<Column>,
    ) {
        assert!(
            columns.iter().all(|(_, _, a)| a.len() == rows),
            "every cached column has the entry's rows"
        );
        let mut inner = self.inner.lock();
        let last_used = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut entry = match inner.entries.remove(&span) {
            Some(e) if e.stamp == stamp && e.rows == rows => e,
            Some(e) => {
                inner.bytes -= e.bytes;
                new_entry(stamp, newest, rows)
            }
            None => new_entry(stamp, newest, rows),
        };
        inner.bytes -= entry.bytes;
        let (kept_columns, kept_bytes) = (entry.columns.len(), entry.bytes);
        for (id, ty, array) in columns {
            if entry.column(id, &ty).is_none() {
                entry.bytes += array.get_array_memory_size();
                entry.columns.push((id, ty, array));
            }
        }
        entry.newest = entry.newest.max(newest);
        entry.last_used = last_used;
        if entry.bytes > self.bytes_max {
            // Too large with the new columns: the entry stays as it was.
            entry.columns.truncate(kept_columns);
            entry.bytes = kept_bytes;
            if entry.columns.is_empty() {
                METRICS.bytes.set(inner.bytes as i64);
                return;
            }
        }
        while inner.bytes + entry.bytes > self.bytes_max {
            let Some(victim) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let gone = inner.entries.remove(&victim).map_or(0, |e| e.bytes);
            inner.bytes -= gone;
            METRICS.evictions.inc();
        }
        inner.bytes += entry.bytes;
        inner.entries.insert(span, entry);
        METRICS.bytes.set(inner.bytes as i64);
    }
}

fn new_entry(stamp: SpanStamp, newest: Ts, rows: usize) -> Entry {
    Entry {
        stamp,
        newest,
        rows,
        columns: Vec::new(),
        bytes: 0,
        last_used: 0,
    }
}

struct CacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    evictions: IntCounter,
    bytes: IntGauge,
}

static METRICS: LazyLock<CacheMetrics> = LazyLock::new(|| {
    let counter = |name: &str, help: &str| {
        let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
        let _ = prometheus::default_registry().register(Box::new(c.clone()));
        c
    };
    let bytes = IntGauge::with_opts(Opts::new(
        "kestrel_sql_column_cache_bytes",
        "Bytes of decoded columns the column cache holds",
    ))
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(bytes.clone()));
    CacheMetrics {
        hits: counter(
            "kestrel_sql_column_cache_hits_total",
            "Scan partitions answered from the column cache",
        ),
        misses: counter(
            "kestrel_sql_column_cache_misses_total",
            "Cacheable scan partitions that read the engine",
        ),
        evictions: counter(
            "kestrel_sql_column_cache_evictions_total",
            "Column cache entries dropped to stay within column_cache_bytes_max",
        ),
        bytes,
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use std::sync::Arc;

    fn stamp(generation: u64) -> SpanStamp {
        SpanStamp(vec![(7, generation)])
    }

    fn col(id: u16, values: &[i64]) -> Column {
        (
            id,
            SqlType::Int8,
            Arc::new(Int64Array::from(values.to_vec())),
        )
    }

    fn span(s: &str) -> SpanKey {
        (s.as_bytes().to_vec(), format!("{s}~").into_bytes())
    }

    fn ids(want: &[u16]) -> Vec<(u16, SqlType)> {
        want.iter().map(|&i| (i, SqlType::Int8)).collect()
    }

    #[test]
    fn an_entry_answers_only_its_stamp_and_snapshots_from_its_newest_version() {
        let cache = ColumnCache::new(1 << 20);
        cache.fill(span("a"), stamp(3), Ts(100), 2, vec![col(1, &[1, 2])]);
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(3), Ts(100), &ids(&[1])),
            Lookup::Hit(ref a, 2) if a[0].len() == 2
        ));
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(3), Ts(99), &ids(&[1])),
            Lookup::Miss
        ));
        assert!(matches!(
            cache.lookup(&span("b"), &stamp(3), Ts(100), &ids(&[1])),
            Lookup::Miss
        ));
        // Another type under the same id is another column.
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(3), Ts(100), &[(1, SqlType::Int4)]),
            Lookup::Partial(_)
        ));
        // A new generation: the entry is dropped for good.
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(4), Ts(200), &ids(&[1])),
            Lookup::Miss
        ));
        assert_eq!(cache.bytes(), 0);
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(3), Ts(200), &ids(&[1])),
            Lookup::Miss
        ));
    }

    #[test]
    fn columns_are_added_to_an_entry_of_the_same_stamp_and_replace_another() {
        let cache = ColumnCache::new(1 << 20);
        cache.fill(span("a"), stamp(3), Ts(10), 2, vec![col(1, &[1, 2])]);
        match cache.lookup(&span("a"), &stamp(3), Ts(10), &ids(&[1, 2])) {
            Lookup::Partial(have) => assert_eq!(have, ids(&[1])),
            _ => panic!("column 2 is missing"),
        }
        cache.fill(span("a"), stamp(3), Ts(10), 2, vec![col(2, &[5, 6])]);
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(3), Ts(10), &ids(&[2, 1])),
            Lookup::Hit(ref a, 2) if a.len() == 2
        ));
        cache.fill(span("a"), stamp(5), Ts(20), 3, vec![col(2, &[7, 8, 9])]);
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(5), Ts(20), &ids(&[1])),
            Lookup::Partial(_)
        ));
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(5), Ts(20), &ids(&[2])),
            Lookup::Hit(_, 3)
        ));
    }

    #[test]
    fn fills_in_progress_hold_at_most_the_bound_together() {
        let cache = ColumnCache::new(100);
        assert!(cache.reserve(60));
        assert!(!cache.reserve(41), "past the bound");
        assert!(cache.reserve(40));
        cache.release(60);
        assert!(cache.reserve(60));
        cache.release(60);
        cache.release(40);
        assert!(cache.reserve(100));
        cache.release(100);
    }

    #[test]
    fn columns_that_would_pass_the_bound_leave_the_entry_as_it_was() {
        let one = col(1, &vec![0; 1000]).2.get_array_memory_size();
        let cache = ColumnCache::new(one + one / 2);
        cache.fill(span("a"), stamp(1), Ts(1), 1000, vec![col(1, &[0; 1000])]);
        cache.fill(span("a"), stamp(1), Ts(1), 1000, vec![col(2, &[0; 1000])]);
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(1), Ts(1), &ids(&[1])),
            Lookup::Hit(..)
        ));
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(1), Ts(1), &ids(&[2])),
            Lookup::Partial(_)
        ));
        assert_eq!(cache.bytes(), one);
    }

    #[test]
    fn the_least_recently_used_entries_go_past_the_bound() {
        let one = col(1, &vec![0; 1000]).2.get_array_memory_size();
        let cache = ColumnCache::new(2 * one + one / 2);
        for s in ["a", "b"] {
            cache.fill(span(s), stamp(1), Ts(1), 1000, vec![col(1, &[0; 1000])]);
        }
        // "a" is used, so "b" is the least recently used when "c" needs room.
        assert!(matches!(
            cache.lookup(&span("a"), &stamp(1), Ts(1), &ids(&[1])),
            Lookup::Hit(..)
        ));
        cache.fill(span("c"), stamp(1), Ts(1), 1000, vec![col(1, &[0; 1000])]);
        assert!(cache.bytes() <= cache.bytes_max());
        let hit = |s| {
            matches!(
                cache.lookup(&span(s), &stamp(1), Ts(1), &ids(&[1])),
                Lookup::Hit(..)
            )
        };
        assert!(hit("a") && !hit("b") && hit("c"));
        // An entry larger than the whole cache is not kept, and evicts nothing.
        cache.fill(span("d"), stamp(1), Ts(1), 3000, vec![col(1, &[0; 3000])]);
        assert!(hit("a") && hit("c") && !hit("d"));
    }
}
