//! A KV transaction: snapshot reads, buffered writes, one- or two-phase commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use kestrel_storage::{keycode, mvcc, Batch, Cf, Ts};

use crate::latch::{LatchGuard, Span};
use crate::metrics::METRICS;
use crate::range::Replica;
use crate::read_cache::Lookup;
use crate::store::Kv;
use crate::{KvError, Result};

/// The applied generation of every range a span overlaps, as `(range id, generation)` in key
/// order (see [`Txn::stamp_span`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanStamp(pub Vec<(u64, u64)>);

/// What a scan saw besides its rows (see [`Txn::scan_visit_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// The newest version of any key the scan reached, versions above the snapshot and
    /// deletions included (`Ts::ZERO`: none).
    pub newest: Ts,
    /// Part of the span held this transaction's own buffered writes, which were merged in
    /// (that part's `newest` is not computed: such a scan's rows are not only committed data).
    pub own_writes: bool,
}

/// How a point read continues after [`Txn::start_point_read`].
enum PointRead {
    /// The transaction's own write of the key (`None`: its delete).
    Own(Option<Vec<u8>>),
    /// Read the engine; this is the key's replica.
    Engine(Arc<Replica>),
}

#[derive(Clone, Debug)]
struct Write {
    value: Option<Vec<u8>>,
    /// The key must hold no live row when the transaction commits (INSERT).
    insert: bool,
}

/// A commit's writes in one range, in key order.
type RangeWrites = (Arc<Replica>, Vec<(Vec<u8>, Write)>);

/// How a transaction's reads are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Snapshot isolation: reads at the snapshot, first committer wins on write-write
    /// conflicts. Write skew is possible.
    Snapshot,
    /// Serializable: additionally, at commit every span the transaction read is checked for
    /// writes newer than its snapshot (under read latches); any such write aborts it (40001).
    /// Committed transactions are then equivalent to running one by one in commit-ts order.
    Serializable,
}

/// The write buffer as of a `SAVEPOINT`, to return to on `ROLLBACK TO`.
#[derive(Clone)]
pub struct Savepoint {
    writes: BTreeMap<Vec<u8>, Write>,
    write_bytes: usize,
}

/// The spans a serializable transaction has read, bounded by `txn_read_spans_max`: past
/// the bound, spans are merged (coarser spans only cause more conservative aborts).
#[derive(Default)]
struct ReadSet {
    spans: Vec<Span>,
    /// Keys read through the read cache, each with the generation of its range at which the
    /// key was known *clean*: its newest version at or below this transaction's snapshot and
    /// no lock on it. While the range's generation is unchanged nothing was applied to it
    /// since, so the key is still clean and its point span needs no validation (see
    /// [`Txn::validation_needed`]). Bounded like `spans`: past the bound keys are validated.
    clean: std::collections::HashMap<Vec<u8>, u64>,
}

impl ReadSet {
    fn add(&mut self, span: Span, max: usize) {
        self.spans.push(span);
        if self.spans.len() > max.max(2) {
            self.coalesce();
            if self.spans.len() > max.max(2) / 2 {
                let start = self.spans[0].start.clone();
                let end = self.spans.iter().try_fold(Vec::new(), |acc, s| {
                    s.end.as_ref().map(|e| acc.max(e.clone()))
                });
                self.spans = vec![Span { start, end }];
            }
        }
    }

    /// Sorts and merges overlapping or touching spans.
    fn coalesce(&mut self) {
        self.spans.sort_by(|a, b| a.start.cmp(&b.start));
        let mut out: Vec<Span> = Vec::with_capacity(self.spans.len());
        for s in self.spans.drain(..) {
            if let Some(last) = out.last_mut() {
                let touches = last.end.as_ref().is_none_or(|e| s.start <= *e);
                if touches {
                    last.end = match (&last.end, &s.end) {
                        (Some(a), Some(b)) => Some(a.max(b).clone()),
                        _ => None,
                    };
                    continue;
                }
            }
            out.push(s);
        }
        self.spans = out;
    }
}

pub struct Txn {
    kv: Arc<Kv>,
    id: u128,
    read_ts: Ts,
    isolation: Isolation,
    writes: BTreeMap<Vec<u8>, Write>,
    write_bytes: usize,
    reads: parking_lot::Mutex<ReadSet>,
    /// Row locks held (see [`crate::locks`]); released when the transaction ends.
    locked: std::collections::HashSet<Vec<u8>>,
    /// Bumped by every buffered write.
    write_seq: u64,
    /// Record every read from now on, whatever the isolation (see [`Txn::track_all_reads`]).
    track_all: bool,
}

/// The transaction as a statement began, to return to when the statement is re-run after a
/// refresh. Statements that may ask for a refresh lock before they buffer any write, so only
/// the read spans need remembering.
pub struct StatementMark {
    reads: Vec<Span>,
    write_seq: u64,
}

/// Past this many written keys, evaluation reads the locks of their span with one scan.
const LOCK_LOOKUPS_MAX: usize = 16;

/// How many times a commit re-routes its keys when a split moved them meanwhile.
const ROUTE_RETRIES_MAX: usize = 8;

impl Txn {
    pub(crate) fn new(kv: Arc<Kv>, read_ts: Ts) -> Self {
        let id = ((read_ts.0 as u128) << 64) | kv.config.node_id as u128;
        Self {
            kv,
            id,
            read_ts,
            isolation: Isolation::Serializable,
            writes: BTreeMap::new(),
            write_bytes: 0,
            reads: parking_lot::Mutex::new(ReadSet::default()),
            locked: std::collections::HashSet::new(),
            write_seq: 0,
            track_all: false,
        }
    }

    /// Locks `keys` for writing (waiting for other transactions' locks on them). Returns
    /// `true` if the statement's view of those rows may be stale: it waited, or a row holds a
    /// version newer than this transaction's snapshot.
    pub async fn lock_for_write(&mut self, keys: &[Vec<u8>]) -> Result<bool> {
        let fresh: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !self.locked.contains(*k))
            .cloned()
            .collect();
        let timeout = self.kv.config.lock_wait_timeout_ms;
        let waited = self.kv.locks.lock(self.id, &fresh, timeout).await?;
        self.locked.extend(fresh);
        if waited {
            return Ok(true);
        }
        let engine = self.kv.engine.as_ref();
        for k in keys {
            if let Some((ts, _)) = mvcc::get_version(engine, k, Ts::MAX)? {
                if ts > self.read_ts {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The row an UPDATE is about to rewrite: [`Self::get`] and [`Self::lock_for_write`] of
    /// `key`, usually with one engine lookup instead of two. The read is recorded and the
    /// commits in flight at or below the snapshot are waited for; then the row is locked and
    /// the key's *newest* version read: at or below the snapshot it is the snapshot's row,
    /// above it the statement's view is stale. Returns `None` if the statement must run again
    /// on a refreshed snapshot (it waited for the lock, or the row has a newer version), as
    /// `lock_for_write`'s `true`; `Some(None)` if there is no row at the snapshot — then no
    /// lock is kept or waited for, as PostgreSQL locks only the rows it updates.
    pub async fn get_for_update(&mut self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>> {
        let read = self.start_point_read(key).await?;
        if matches!(read, PointRead::Own(None)) {
            return Ok(Some(None));
        }
        let engine = self.kv.engine.as_ref();
        let fresh = !self.locked.contains(key);
        if fresh && !self.kv.locks.try_lock(self.id, key) {
            // Another transaction holds the row. A row absent at the snapshot is not waited
            // for; a present one is, and the statement then runs again.
            if matches!(read, PointRead::Engine(_))
                && mvcc::get(engine, key, self.read_ts)?.is_none()
            {
                return Ok(Some(None));
            }
            let timeout = self.kv.config.lock_wait_timeout_ms;
            let waited = self
                .kv
                .locks
                .lock(self.id, std::slice::from_ref(&key.to_vec()), timeout)
                .await?;
            self.locked.insert(key.to_vec());
            if waited {
                return Ok(None);
            }
        } else if fresh {
            self.locked.insert(key.to_vec());
        }
        let newest = mvcc::get_version(engine, key, Ts::MAX)?;
        let stale = newest.as_ref().is_some_and(|(ts, _)| *ts > self.read_ts);
        let value = match read {
            PointRead::Own(value) => value,
            // Newer than the snapshot: whether the snapshot has a row decides between
            // "no row" and "run again".
            PointRead::Engine(_) if stale => mvcc::get(engine, key, self.read_ts)?,
            PointRead::Engine(_) => newest.and_then(|(_, value)| value),
        };
        if value.is_none() {
            if fresh {
                self.locked.remove(key);
                self.kv.locks.release(self.id, &[key.to_vec()]);
            }
            return Ok(Some(None));
        }
        Ok((!stale).then_some(value))
    }

    fn release_locks(&mut self) {
        if self.locked.is_empty() {
            return;
        }
        let keys: Vec<Vec<u8>> = std::mem::take(&mut self.locked).into_iter().collect();
        self.kv.locks.release(self.id, &keys);
    }

    /// Where the current statement began.
    pub fn statement_mark(&self) -> StatementMark {
        let mut reads = self.reads.lock();
        reads.coalesce();
        StatementMark {
            reads: reads.spans.clone(),
            write_seq: self.write_seq,
        }
    }

    /// Whether the transaction buffered writes since `mark` (then it cannot refresh).
    pub fn wrote_since(&self, mark: &StatementMark) -> bool {
        self.write_seq != mark.write_seq
    }

    /// Moves the snapshot forward to now, keeping serializability: every span read before
    /// the statement at `mark` must hold no newer write (else [`KvError::ReadConflict`]).
    /// The statement's own reads are forgotten (it wrote nothing yet), so it can run again at
    /// the new snapshot. Snapshot-isolation transactions cannot refresh (their snapshot is
    /// fixed).
    pub async fn refresh(&mut self, mark: &StatementMark) -> Result<()> {
        assert_eq!(
            self.write_seq, mark.write_seq,
            "a statement buffered writes before asking for a refresh"
        );
        if self.isolation != Isolation::Serializable {
            return Err(KvError::WriteConflict { key: Vec::new() });
        }
        let new_ts = self.kv.clock.now();
        let clean = self.reads.lock().clean.clone();
        for s in &mark.reads {
            for r in self.kv.router.overlapping(&s.start, s.end.as_deref()) {
                r.pending
                    .wait_through(
                        new_ts,
                        &s.start,
                        s.end.as_deref(),
                        self.kv.config.read_wait_timeout_ms,
                    )
                    .await?;
            }
            // After the wait: a commit in flight below `new_ts` has applied by now, which
            // changed the generation.
            if self.is_clean(s, &clean) {
                continue;
            }
            self.check_span(s)?;
        }
        METRICS.refreshes.inc();
        self.read_ts = new_ts;
        let mut reads = self.reads.lock();
        reads.spans = mark.reads.clone();
        // A clean key stays clean at a later snapshot: its newest version is still older.
        reads.clean = clean;
        Ok(())
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Sets the isolation level; only before the first read.
    pub fn set_isolation(&mut self, isolation: Isolation) {
        self.isolation = isolation;
    }

    /// From now on every read is validated at commit, also under snapshot isolation: DDL that
    /// derives data from a table (an index backfill, a CHECK over existing rows) must not miss
    /// rows committed after its snapshot.
    pub fn track_all_reads(&mut self) {
        self.track_all = true;
    }

    /// The write buffer as it is now.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            writes: self.writes.clone(),
            write_bytes: self.write_bytes,
        }
    }

    /// Forgets every write buffered since `sp` was taken. Reads stay tracked.
    pub fn rollback_to(&mut self, sp: &Savepoint) {
        self.writes = sp.writes.clone();
        self.write_bytes = sp.write_bytes;
    }

    /// Drops every buffered write and read; the transaction can no longer commit anything.
    pub fn discard(&mut self) {
        self.writes.clear();
        self.write_bytes = 0;
        let mut reads = self.reads.lock();
        reads.spans.clear();
        reads.clean.clear();
        drop(reads);
        self.release_locks();
    }

    /// Records a read span: every span under SERIALIZABLE; under snapshot isolation only
    /// catalog reads (the system range), so DDL that commits after our snapshot (TRUNCATE,
    /// ADD PRIMARY KEY moving a table's rows) conflicts with our writes at every level.
    fn record_read(&self, start: &[u8], end: Option<&[u8]>) {
        if self.isolation == Isolation::Serializable
            || self.track_all
            || start < crate::keys::TABLES_START
        {
            let span = Span {
                start: start.to_vec(),
                end: end.map(|e| e.to_vec()),
            };
            self.reads
                .lock()
                .add(span, self.kv.config.txn_read_spans_max);
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
        match self.start_point_read(key).await? {
            PointRead::Own(value) => Ok(value),
            PointRead::Engine(_) => Ok(mvcc::get(self.kv.engine.as_ref(), key, self.read_ts)?),
        }
    }

    /// The start of a point read of `key`: its own write if there is one; otherwise the read
    /// is recorded (serializable validation) and the commits in flight at or below `read_ts`
    /// that may write it are waited for, and the replica to read is returned.
    async fn start_point_read(&self, key: &[u8]) -> Result<PointRead> {
        if let Some(w) = self.writes.get(key) {
            return Ok(PointRead::Own(w.value.clone()));
        }
        let end = keycode::next_key(key);
        self.record_read(key, Some(&end));
        let replica = self.kv.replica_for(key)?;
        replica
            .pending
            .wait_through(
                self.read_ts,
                key,
                Some(&end),
                self.kv.config.read_wait_timeout_ms,
            )
            .await?;
        Ok(PointRead::Engine(replica))
    }

    /// [`Self::get`] through the node's read cache (`read_cache.rs`): for keys in ranges that
    /// are rarely written, such as the catalog's descriptors. Same answer, same read tracking.
    pub async fn get_cached(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let replica = match self.start_point_read(key).await? {
            PointRead::Own(value) => return Ok(value),
            PointRead::Engine(replica) => replica,
        };
        let generation = replica.group.applied_generation();
        let cache = &self.kv.read_cache;
        if let Lookup::Hit(value) = cache.lookup(key, generation, self.read_ts) {
            METRICS.read_cache_hits.inc();
            self.mark_clean(key, generation);
            return Ok(value);
        }
        METRICS.read_cache_misses.inc();
        let engine = self.kv.engine.as_ref();
        let (newest_ts, value) =
            mvcc::get_version(engine, key, Ts::MAX)?.unwrap_or((Ts::ZERO, None));
        if newest_ts > self.read_ts || mvcc::get_lock(engine, key)?.is_some() {
            // Not clean (a newer version, or a writer in the middle of a commit): the
            // snapshot's version, validated at commit as usual.
            return Ok(mvcc::get(engine, key, self.read_ts)?);
        }
        cache.fill(key, generation, newest_ts, value.clone());
        self.mark_clean(key, generation);
        Ok(value)
    }

    /// Notes that `key` was clean (see [`ReadSet::clean`]) with its range at `generation`.
    fn mark_clean(&self, key: &[u8], generation: u64) {
        let mut reads = self.reads.lock();
        if reads.clean.len() < self.kv.config.txn_read_spans_max || reads.clean.contains_key(key) {
            reads.clean.insert(key.to_vec(), generation);
        }
    }

    /// Whether `span` is the point span of a key known clean at its range's current
    /// generation: then no write was applied to the range since the key was seen clean, so no
    /// version newer than the snapshot and no lock can be in the span. Callers that need the
    /// answer to last (commit validation) hold the span's read latches, which keep writers of
    /// the key from being between evaluation and apply.
    fn is_clean(&self, span: &Span, clean: &std::collections::HashMap<Vec<u8>, u64>) -> bool {
        let Some(generation) = clean.get(&span.start) else {
            return false;
        };
        if span.end.as_deref() != Some(keycode::next_key(&span.start).as_slice()) {
            return false;
        }
        self.kv
            .replica_for(&span.start)
            .is_ok_and(|r| r.group.applied_generation() == *generation)
    }

    /// Up to about `limit` live pairs with `start <= key < end` in key order, own writes
    /// included, and the key to resume from if the span was not exhausted.
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut visit = |k: &[u8], v: &[u8]| {
            out.push((k.to_vec(), v.to_vec()));
            true
        };
        let mut newest = Ts::ZERO;
        let resume = self
            .scan_committed(start, end, limit, false, &mut visit, &mut newest)
            .await?;
        self.record_read(start, resume.as_deref().or(end));
        self.overlay_writes(start, resume.as_deref().or(end), &mut out);
        Ok((out, resume))
    }

    /// [`Self::scan`] that lends each pair to `visit` instead of collecting them: when the
    /// transaction has no buffered writes in the span, nothing is copied per pair (large
    /// scans decode rows straight from the engine's buffers). `visit` returning false takes
    /// that pair and stops; a caller that resumes at the returned key skips nothing. The
    /// span recorded as read covers at least what was visited (with buffered writes in the
    /// span, up to the underlying scan's resume key: more, which is only conservative). A `bulk` scan (a large one) does not
    /// fill the engine's block cache.
    pub async fn scan_visit(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bulk: bool,
        visit: &mut (dyn FnMut(&[u8], &[u8]) -> bool + Send),
    ) -> Result<Option<Vec<u8>>> {
        let mut stats = ScanStats::default();
        self.scan_visit_stats(start, end, limit, bulk, visit, &mut stats)
            .await
    }

    fn has_writes_in(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        if end.is_some_and(|e| e <= start) {
            return false;
        }
        let upper = match end {
            Some(e) => std::ops::Bound::Excluded(e),
            None => std::ops::Bound::Unbounded,
        };
        self.writes
            .range::<[u8], _>((std::ops::Bound::Included(start), upper))
            .next()
            .is_some()
    }

    /// [`Self::scan_visit`] that also reports what the scan saw besides its rows (`stats` is
    /// updated, so a scan resumed over several calls accumulates it).
    pub async fn scan_visit_stats(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bulk: bool,
        visit: &mut (dyn FnMut(&[u8], &[u8]) -> bool + Send),
        stats: &mut ScanStats,
    ) -> Result<Option<Vec<u8>>> {
        if self.has_writes_in(start, end) {
            stats.own_writes = true;
            // Own inserts merged in may make more than `limit` rows: visit `limit` at most.
            let (rows, resume) = self.scan(start, end, limit).await?;
            for (i, (k, v)) in rows.iter().enumerate() {
                if !visit(k, v) || i + 1 == limit {
                    return Ok(rows.get(i + 1).map(|(k, _)| k.clone()).or(resume));
                }
            }
            return Ok(resume);
        }
        let mut newest = Ts::ZERO;
        let resume = self
            .scan_committed(start, end, limit, bulk, visit, &mut newest)
            .await?;
        stats.newest = stats.newest.max(newest);
        self.record_read(start, resume.as_deref().or(end));
        Ok(resume)
    }

    /// Waits, like every read, for the commits pending at or below the snapshot in
    /// `[start, end)`, then stamps the span with the applied generation of every range it
    /// overlaps. `None` when this transaction has buffered writes in the span (what it reads
    /// there is not only committed data).
    ///
    /// A stamp lets a scan's rows be reused (the SQL layer's column cache): rows scanned
    /// between two equal stamps `S` of a span, whose newest version (see [`ScanStats`]) was
    /// at `newest`, are exactly what a scan at any snapshot `>= newest` returns while the
    /// span's stamp, taken by `stamp_span`, still equals `S`. This rests on two rules:
    /// every write to a range's data goes through its state machine's apply (or snapshot
    /// install), which advances the generation before writing and again after, so equal
    /// stamps around a scan mean no write touched the span meanwhile; and every commit
    /// registers in the ranges' pending registries before it picks its timestamp and stays
    /// registered until all its ranges applied, so the commits a snapshot must see are
    /// applied (and the generation advanced) once `stamp_span` has waited for them. A reader
    /// that reuses rows calls [`Self::note_span_read`] as the scan would have.
    pub async fn stamp_span(&self, start: &[u8], end: &[u8]) -> Result<Option<SpanStamp>> {
        if self.has_writes_in(start, Some(end)) {
            return Ok(None);
        }
        for replica in self.kv.router.overlapping(start, Some(end)) {
            replica
                .pending
                .wait_through(
                    self.read_ts,
                    start,
                    Some(end),
                    self.kv.config.read_wait_timeout_ms,
                )
                .await?;
        }
        Ok(Some(self.kv.span_stamp(start, end)))
    }

    /// Records `[start, end)` as read, as a scan of it does (for a scan answered by rows
    /// reused under a [`SpanStamp`]).
    pub fn note_span_read(&self, start: &[u8], end: &[u8]) {
        self.record_read(start, Some(end));
    }

    /// Visits up to `limit` committed live pairs of `[start, end)` at the snapshot, range by
    /// range (waiting for commits pending below the snapshot), until `visit` returns false;
    /// returns the key after the last pair visited unless the span was exhausted. Raises
    /// `newest` to the newest version it reached (see `mvcc::scan_ref`).
    async fn scan_committed(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        bulk: bool,
        visit: &mut (dyn FnMut(&[u8], &[u8]) -> bool + Send),
        newest: &mut Ts,
    ) -> Result<Option<Vec<u8>>> {
        assert!(limit > 0, "scan limit must be positive");
        let mut seen = 0usize;
        for replica in self.kv.router.overlapping(start, end) {
            replica
                .pending
                .wait_through(
                    self.read_ts,
                    start,
                    end,
                    self.kv.config.read_wait_timeout_ms,
                )
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
            let mut resume = None;
            let reached = mvcc::scan_ref(
                self.kv.engine.as_ref(),
                &lo,
                hi.as_deref(),
                self.read_ts,
                bulk,
                &mut |k, v| {
                    seen += 1;
                    let more = visit(k, v) && seen < limit;
                    if !more {
                        resume = Some(keycode::next_key(k));
                    }
                    more
                },
            )?;
            *newest = (*newest).max(reached);
            if resume.is_some() {
                return Ok(resume);
            }
        }
        Ok(None)
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
        self.write_seq += 1;
        self.write_bytes += key.len() + value.as_ref().map_or(0, |v| v.len()) + 16;
        let max = self.kv.config.txn_write_bytes_max;
        if self.write_bytes > max {
            return Err(KvError::TxnTooLarge {
                bytes: self.write_bytes,
                max,
            });
        }
        let prior = self.writes.get(&key);
        if insert && prior.is_some_and(|w| w.value.is_some()) {
            return Err(KvError::DuplicateKey { key });
        }
        // An insert over a key this transaction deleted is a plain write (the row is gone).
        let insert = insert && prior.is_none_or(|w| w.value.is_some());
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
    /// Must run to completion once started: dropping the future while it waits for the WAL
    /// fsync would release the commit's pending registrations before it is durable.
    pub async fn commit(&mut self) -> Result<Option<Ts>> {
        if self.writes.is_empty() {
            self.discard();
            return Ok(None);
        }
        let res = self.commit_inner().await;
        self.discard();
        match &res {
            Ok(_) => METRICS.commits.inc(),
            Err(e) => {
                METRICS.aborts.inc();
                if matches!(
                    e,
                    KvError::WriteConflict { .. } | KvError::ReadConflict { .. }
                ) {
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
            } else if !self.kv.config.two_phase_always && self.all_local(&groups) {
                METRICS.commits_local_multi_range.inc();
                self.local_commit(&groups).await
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

    /// Checks `writes` (in ascending key order) against the committed state and foreign
    /// locks. The locks of every key are read first (a large write set's with one scan of its
    /// span), then one cursor walks the versions: a 2PC resolution turns a lock into a version
    /// in one batch, and no lock can appear under our write latch, so a write seen neither as
    /// a lock nor by the cursor (whose snapshot is taken after the locks were read) was never
    /// there.
    fn evaluate(&self, writes: &[(Vec<u8>, Write)]) -> Result<()> {
        let engine = self.kv.engine.as_ref();
        let foreign = |l: &mvcc::Lock| l.txn_id != self.id;
        match (writes.first(), writes.last()) {
            (Some((first, _)), Some((last, _))) if writes.len() > LOCK_LOOKUPS_MAX => {
                let end = keycode::next_key(last);
                let locked: std::collections::HashSet<Vec<u8>> =
                    mvcc::scan_locks(engine, first, Some(&end))?
                        .into_iter()
                        .filter(|(_, l)| foreign(l))
                        .map(|(k, _)| k)
                        .collect();
                if let Some((k, _)) = writes.iter().find(|(k, _)| locked.contains(k)) {
                    return Err(KvError::WriteConflict { key: k.clone() });
                }
            }
            _ => {
                for (k, _) in writes {
                    if mvcc::get_lock(engine, k)?.is_some_and(|l| foreign(&l)) {
                        return Err(KvError::WriteConflict { key: k.clone() });
                    }
                }
            }
        }
        let mut newest = mvcc::NewestVersions::new(engine);
        for (k, w) in writes {
            if let Some((vts, live)) = newest.get(k)? {
                if w.insert && live {
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
        let keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| k.clone()).collect();
        let _latches = self.latch_reads(vec![(replica, keys)]).await?;
        let pending = replica
            .pending
            .register(&self.kv.clock, writes.iter().map(|(k, _)| k.as_slice()));
        let commit_ts = self.kv.clock.now();
        debug_assert!(commit_ts > pending.ts() && commit_ts > self.read_ts);
        self.evaluate(writes)?;
        self.validate_reads()?;
        let mut b = Batch::new();
        for (k, w) in writes {
            mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
        }
        replica.group.propose(b).await?;
        Ok(commit_ts)
    }

    /// The read spans, clipped to the replicas holding them, in key order.
    fn read_groups(&self) -> Vec<(Arc<Replica>, Vec<Span>)> {
        let mut reads = self.reads.lock();
        reads.coalesce();
        let mut groups: BTreeMap<Vec<u8>, (Arc<Replica>, Vec<Span>)> = BTreeMap::new();
        for s in &reads.spans {
            for r in self.kv.router.overlapping(&s.start, s.end.as_deref()) {
                let d = r.desc.read().clone();
                let start = s.start.clone().max(d.start.clone());
                let end = match (&s.end, &d.end) {
                    (Some(a), Some(b)) => Some(a.min(b).clone()),
                    (Some(a), None) => Some(a.clone()),
                    (None, b) => b.clone(),
                };
                groups
                    .entry(d.start.clone())
                    .or_insert_with(|| (r.clone(), Vec::new()))
                    .1
                    .push(Span { start, end });
            }
        }
        groups.into_values().collect()
    }

    /// Takes read latches on every span read and the write latches of `writes` (the keys a
    /// commit writes, by range), range by range in key order so that commits cannot deadlock.
    async fn latch_reads(
        &self,
        mut writes: Vec<(&Arc<Replica>, Vec<Vec<u8>>)>,
    ) -> Result<Vec<LatchGuard>> {
        let timeout_ms = self.kv.config.latch_wait_timeout_ms;
        let mut groups = self.read_groups();
        let unread: Vec<_> = writes
            .iter()
            .filter(|(w, _)| !groups.iter().any(|(r, _)| Arc::ptr_eq(r, w)))
            .map(|(w, _)| ((*w).clone(), Vec::new()))
            .collect();
        if !unread.is_empty() {
            groups.extend(unread);
            groups.sort_by_cached_key(|(r, _)| r.desc.read().start.clone());
        }
        let mut guards = Vec::with_capacity(groups.len());
        for (r, spans) in groups {
            let keys = writes
                .iter_mut()
                .find(|(w, _)| Arc::ptr_eq(w, &r))
                .map(|(_, keys)| std::mem::take(keys))
                .unwrap_or_default();
            guards.push(r.latches.acquire(keys, spans, timeout_ms).await?);
        }
        Ok(guards)
    }

    /// Fails with [`KvError::ReadConflict`] if any span this transaction read holds a write
    /// newer than its snapshot, or another transaction's provisional write. Callers hold the
    /// read latches, so no such write can appear until they release them.
    fn validate_reads(&self) -> Result<()> {
        let clean = self.reads.lock().clean.clone();
        for (_, spans) in self.read_groups() {
            for s in spans {
                if !self.validation_needed(&s, &clean) {
                    continue;
                }
                METRICS.read_spans_validated.inc();
                self.check_span(&s)?;
            }
        }
        Ok(())
    }

    /// Fails with [`KvError::ReadConflict`] if `span` holds a version newer than the snapshot
    /// or another transaction's lock. A point span (most reads) costs one seek and one point
    /// get instead of two scans, and does not step over the key's older versions.
    fn check_span(&self, span: &Span) -> Result<()> {
        // Locks first: a resolution turns a lock into a version in one batch, and no lock can
        // appear under our read latch, so a lock seen neither here nor as a version below
        // was never there.
        let engine = self.kv.engine.as_ref();
        if span.end.as_deref() == Some(keycode::next_key(&span.start).as_slice()) {
            let key = &span.start;
            let locked = mvcc::get_lock(engine, key)?.is_some_and(|l| l.txn_id != self.id);
            let newer = || -> Result<bool> {
                Ok(mvcc::get_version(engine, key, Ts::MAX)?
                    .is_some_and(|(ts, _)| ts > self.read_ts))
            };
            if locked || newer()? {
                return Err(KvError::ReadConflict { key: key.clone() });
            }
            return Ok(());
        }
        let locks = mvcc::scan_locks(engine, &span.start, span.end.as_deref())?;
        if let Some((key, _)) = locks.into_iter().find(|(_, l)| l.txn_id != self.id) {
            return Err(KvError::ReadConflict { key });
        }
        if let Some(key) =
            mvcc::first_newer(engine, &span.start, span.end.as_deref(), self.read_ts)?
        {
            return Err(KvError::ReadConflict { key });
        }
        Ok(())
    }

    /// Whether commit validation must check `span`. It need not when the span is
    /// - a key this transaction writes: evaluating the write (under the key's write latch, just
    ///   before validation or, in a two-phase commit, before the key's lock was written) already
    ///   failed on any version newer than the snapshot and on any foreign lock, and our write
    ///   latch or lock keeps others from adding one since; or
    /// - a key known clean at its range's current generation (see [`Self::is_clean`]).
    fn validation_needed(
        &self,
        span: &Span,
        clean: &std::collections::HashMap<Vec<u8>, u64>,
    ) -> bool {
        let point = span.end.as_deref() == Some(keycode::next_key(&span.start).as_slice());
        !(point && self.writes.contains_key(&span.start)) && !self.is_clean(span, clean)
    }

    /// Test hook: how many read spans a commit now would validate.
    #[doc(hidden)]
    pub fn read_spans_to_validate(&self) -> usize {
        let clean = self.reads.lock().clean.clone();
        self.read_groups()
            .into_iter()
            .flat_map(|(_, spans)| spans)
            .filter(|s| self.validation_needed(s, &clean))
            .count()
    }

    /// Registers the commit with the pending registry of every range it writes; called before
    /// `commit_ts` is chosen, so readers at or above it wait until the guards drop.
    fn register_pending(&self, groups: &[RangeWrites]) -> Vec<crate::pending::PendingGuard> {
        groups
            .iter()
            .map(|(r, ws)| {
                r.pending
                    .register(&self.kv.clock, ws.iter().map(|(k, _)| k.as_slice()))
            })
            .collect()
    }

    /// Whether every range of a commit has its only replica on this node, so that one node's
    /// latches guard all of its keys and one WAL orders all of its entries: what
    /// [`Self::local_commit`] relies on.
    fn all_local(&self, groups: &[RangeWrites]) -> bool {
        let node = self.kv.config.node_id;
        groups
            .iter()
            .all(|(r, _)| r.desc.read().replicas.as_slice() == [node])
    }

    /// Commits across several ranges that all live on this node alone, with one entry per
    /// range and no locks: under the write latches of every key and the read latches of every
    /// span read (taken in key order), every range's writes are evaluated and the reads
    /// validated, as a one-phase commit does for one range. Then one synced entry of the
    /// primary range (the one holding the first key) writes its versions and a redo record of
    /// the other ranges' writes — the commit point — and the other ranges apply their versions
    /// with deferred entries, made durable by that fsync or a later one (one WAL, recovered in
    /// order). Until they have, the latches keep writers off their keys and the pending
    /// registrations keep readers at or above `commit_ts` waiting; a crash in between leaves
    /// the redo record, and recovery applies it before the node serves. The applied record is
    /// deleted in the background (`redo.rs`). Entries per commit of `n` ranges: `n`, against
    /// the two-phase commit's `2n - 1`.
    async fn local_commit(&self, groups: &[RangeWrites]) -> Result<Ts> {
        let (primary_replica, primary_writes) = &groups[0];
        let primary = primary_writes[0].0.clone();
        let write_keys = groups
            .iter()
            .map(|(r, ws)| (r, ws.iter().map(|(k, _)| k.clone()).collect()))
            .collect();
        let latches = self.latch_reads(write_keys).await?;
        let pendings = self.register_pending(groups);
        let commit_ts = self.kv.clock.now();
        for (_, writes) in groups {
            self.evaluate(writes)?;
        }
        self.validate_reads()?;
        let entry = self.local_commit_entry(groups, commit_ts);
        // The commit point. If it fails, the entry may still have been applied: keep the
        // registrations and latches (readers and writers of these keys time out with 40001)
        // until recovery at the next start decides, as when an application below fails.
        if let Err(e) = primary_replica.group.propose(entry).await {
            std::mem::forget((pendings, latches));
            tracing::error!("the commit entry of transaction {:x} failed: {e}", self.id);
            return Err(e.into());
        }
        #[cfg(test)]
        self.kv.test_hooks.after_commit_point().await;
        let applications = futures::future::join_all(groups[1..].iter().map(|(replica, ws)| {
            let mut b = Batch::new();
            for (k, w) in ws {
                mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
            }
            replica.group.propose_deferred(b)
        }))
        .await;
        if let Some(e) = applications.into_iter().find_map(|r| r.err()) {
            std::mem::forget((pendings, latches));
            tracing::error!("applying committed transaction {:x} failed: {e}", self.id);
            return Err(e.into());
        }
        drop(pendings);
        drop(latches);
        // A record that never reaches the cleaner is deleted by recovery instead.
        let key = mvcc::redo_key(&primary, self.id, commit_ts);
        let _ = self
            .kv
            .redo_applied
            .send(crate::redo::Msg::Applied(key))
            .await;
        Ok(commit_ts)
    }

    /// The commit point of a local multi-range commit: the primary range's versions and the
    /// redo record of the other ranges' writes, in one batch for the primary range.
    fn local_commit_entry(&self, groups: &[RangeWrites], commit_ts: Ts) -> Batch {
        let (_, primary_writes) = &groups[0];
        let redo = mvcc::Redo {
            commit_ts,
            writes: groups[1..]
                .iter()
                .flat_map(|(_, ws)| ws.iter().map(|(k, w)| (k.clone(), w.value.clone())))
                .collect(),
        };
        let mut b = Batch::new();
        mvcc::put_redo(&mut b, &primary_writes[0].0, self.id, &redo);
        for (k, w) in primary_writes {
            mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
        }
        b
    }

    /// Commits across several ranges. The other ranges are prewritten (their keys locked,
    /// values in the locks); then the primary range — the one holding the first key — commits
    /// like a one-phase commit whose batch also carries the transaction record: under its write
    /// latches and the read latches of every span read (taken in key order), its writes are
    /// evaluated, the reads validated, and one synced entry writes the record `Committed` and
    /// the primary range's versions. That entry is the commit point; the other ranges' locks are
    /// then resolved into versions. A crash before it leaves locks without a record (recovery
    /// aborts them), after it a record (recovery resolves them). Entries per commit of `n`
    /// ranges: `2n - 1`.
    async fn two_phase(&self, groups: &[RangeWrites]) -> Result<Ts> {
        let (primary_replica, primary_writes) = &groups[0];
        let primary = primary_writes[0].0.clone();
        // The other ranges are prewritten concurrently: each holds its own latches only until
        // its entry applies, so no prewrite waits on another.
        let prewrites = futures::future::join_all(
            groups[1..]
                .iter()
                .map(|(replica, writes)| self.prewrite(replica, writes, &primary)),
        )
        .await;
        let mut locked: Vec<(&Arc<Replica>, Vec<Vec<u8>>)> = Vec::new();
        let mut failed = None;
        for ((replica, writes), res) in groups[1..].iter().zip(prewrites) {
            match res {
                Ok(()) => locked.push((replica, writes.iter().map(|(k, _)| k.clone()).collect())),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            self.rollback_locks(&locked).await;
            return Err(e);
        }
        // Serializable: hold read latches while choosing the commit timestamp and validating,
        // so every write to a span we read lands either before validation (and aborts us) or
        // after, at a higher timestamp.
        let primary_keys = primary_writes.iter().map(|(k, _)| k.clone()).collect();
        let latches = match self
            .latch_reads(vec![(primary_replica, primary_keys)])
            .await
        {
            Ok(g) => g,
            Err(e) => {
                self.rollback_locks(&locked).await;
                return Err(e);
            }
        };
        // Register with every participant before choosing the commit timestamp, so readers at
        // or above it wait for the commit entry and the resolution below.
        let pendings = self.register_pending(groups);
        let commit_ts = self.kv.clock.now();
        if let Err(e) = self
            .evaluate(primary_writes)
            .and_then(|()| self.validate_reads())
        {
            drop(pendings);
            self.rollback_locks(&locked).await;
            return Err(e);
        }
        // The commit point. If this fails the outcome is unknown until recovery decides it —
        // and the entry, with the primary range's versions, may have been applied: keep every
        // participant's registration (as below), so no reader sees part of the commit.
        let entry = self.commit_entry(&primary, primary_writes, commit_ts);
        if let Err(e) = primary_replica.group.propose(entry).await {
            std::mem::forget(pendings);
            tracing::error!("the commit entry of transaction {:x} failed: {e}", self.id);
            return Err(e.into());
        }
        // Deferred: the synced commit entry already made the commit durable, and a resolution
        // lost in a crash is redone by recovery from the record. The ranges are resolved
        // concurrently.
        let resolutions = futures::future::join_all(groups[1..].iter().map(|(replica, writes)| {
            let mut b = Batch::new();
            for (k, w) in writes {
                mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
                b.delete(Cf::Locks, k.clone());
            }
            replica.group.propose_deferred(b)
        }))
        .await;
        if let Some(e) = resolutions.into_iter().find_map(|r| r.err()) {
            // Committed but not fully resolved: keep every participant's registration, so
            // readers at or above commit_ts wait (and time out with 40001) instead of seeing
            // part of the commit. Recovery at the next start finishes the resolution.
            std::mem::forget(pendings);
            tracing::error!("resolving committed transaction {:x} failed: {e}", self.id);
            return Err(e.into());
        }
        drop(pendings);
        drop(latches);
        Ok(commit_ts)
    }

    /// The commit point of a two-phase commit: the record, committed at `commit_ts`, and the
    /// primary range's versions, in one batch for the primary range.
    fn commit_entry(&self, primary: &[u8], writes: &[(Vec<u8>, Write)], commit_ts: Ts) -> Batch {
        let mut b = Batch::new();
        mvcc::put_txn_record(
            &mut b,
            primary,
            self.id,
            mvcc::TxnStatus::Committed(commit_ts),
        );
        for (k, w) in writes {
            mvcc::put_version(&mut b, k, commit_ts, w.value.as_deref());
        }
        b
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
            .acquire(keys, Vec::new(), self.kv.config.latch_wait_timeout_ms)
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
        // Deferred: the commit record is synced after every lock, which makes the locks durable
        // too (one WAL, recovered in order); locks lost in a crash before it abort the
        // transaction at recovery, which is what happens to them anyway.
        replica.group.propose_deferred(b).await?;
        Ok(())
    }

    async fn rollback_locks(&self, locked: &[(&Arc<Replica>, Vec<Vec<u8>>)]) {
        for (replica, keys) in locked {
            let mut b = Batch::new();
            for k in keys {
                b.delete(Cf::Locks, k.clone());
            }
            // Deferred: locks that outlive a crash without a commit record are aborted anyway.
            if let Err(e) = replica.group.propose_deferred(b).await {
                tracing::warn!("rolling back locks failed (recovery will finish it): {e}");
            }
        }
    }

    #[doc(hidden)]
    pub fn locked_keys(&self) -> usize {
        self.locked.len()
    }

    /// Test hook: runs the two-phase commit up to and including its commit point (the record
    /// and the primary range's versions), then stops without resolving the other ranges' locks
    /// — what a crash right after the commit point leaves behind.
    #[doc(hidden)]
    pub async fn commit_stop_after_record(self) -> Result<Ts> {
        let groups = self
            .kv
            .group_keys(self.writes.iter().map(|(k, w)| (k.clone(), w.clone())))?;
        assert!(groups.len() > 1, "needs a multi-range transaction");
        let primary = groups[0].1[0].0.clone();
        for (replica, writes) in &groups[1..] {
            self.prewrite(replica, writes, &primary).await?;
        }
        let commit_ts = self.kv.clock.now();
        let entry = self.commit_entry(&primary, &groups[0].1, commit_ts);
        groups[0].0.group.propose(entry).await?;
        Ok(commit_ts)
    }

    /// Test hook: runs a local multi-range commit up to and including its commit point (the
    /// primary range's versions and the redo record), then stops without applying the other
    /// ranges' versions — what a crash right after the commit point leaves behind.
    #[doc(hidden)]
    pub async fn commit_local_stop_after_redo(self) -> Result<Ts> {
        let groups = self
            .kv
            .group_keys(self.writes.iter().map(|(k, w)| (k.clone(), w.clone())))?;
        assert!(groups.len() > 1, "needs a multi-range transaction");
        let commit_ts = self.kv.clock.now();
        let entry = self.local_commit_entry(&groups, commit_ts);
        groups[0].0.group.propose(entry).await?;
        Ok(commit_ts)
    }

    /// Test hook: locks every key of a multi-range transaction (the primary range's too, which
    /// a real commit never does: recovery must abort either) and stops before the commit point.
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

impl Drop for Txn {
    fn drop(&mut self) {
        self.release_locks();
    }
}
