//! Multi-version storage of user keys on an [`Engine`].
//!
//! Layout (cf `data`): `escape(user_key) ++ be64(u64::MAX - ts)` → `tag ++ value`, where tag `1`
//! is a value and tag `0` a tombstone (a delete at `ts`). Because the timestamp is inverted the
//! newest version of a key sorts first, and a read at snapshot `ts` is one seek to
//! `escape(key) ++ be64(!ts)`.
//!
//! Two-phase commit keeps its provisional writes apart from committed versions: a [`Lock`] in
//! cf `locks` under the plain user key, and the transaction's outcome as a [`TxnStatus`] in cf
//! `txns` next to its primary key. Readers never see locks; the transaction layer guarantees
//! that every commit with a timestamp at or below a reader's snapshot is resolved into `data`
//! before that reader scans (see kestrel-kv). A local multi-range commit (all its ranges on one
//! node) writes no locks: its commit point carries a [`Redo`] record in cf `redo` of the other
//! ranges' writes, deleted once they are applied.

use crate::engine::{Batch, Cf, Engine};
use crate::keycode::{self, Reader};
use crate::StorageError;

/// A hybrid-logical-clock timestamp: milliseconds since the Unix epoch in the high 48 bits and a
/// logical counter in the low 16.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Ts(pub u64);

impl Ts {
    pub const MAX: Ts = Ts(u64::MAX);
    pub const ZERO: Ts = Ts(0);
    pub fn physical_ms(self) -> u64 {
        self.0 >> 16
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 >> 16, self.0 & 0xFFFF)
    }
}

const TAG_TOMBSTONE: u8 = 0;
const TAG_VALUE: u8 = 1;

/// The data-cf key of `user_key` at `ts`.
pub fn version_key(user_key: &[u8], ts: Ts) -> Vec<u8> {
    let mut k = keycode::escape(user_key);
    keycode::put_u64(&mut k, u64::MAX - ts.0);
    k
}

/// The escaped user key of a data-cf key (the key without its timestamp): the prefix
/// RocksDB's filters are built on. Keys sharing it are one user key's versions, and they are
/// contiguous, since escaped keys are prefix-free.
/// RocksDB also applies it to seek keys and to keys an iterator returns without asking
/// [`is_version_key`] first, from C, where a panic would abort the process: a key shorter
/// than a timestamp is its own prefix. A bare escaped key is *not* its own prefix, so a
/// prefix seek must start at a full version key.
pub fn version_prefix(k: &[u8]) -> &[u8] {
    &k[..k.len().saturating_sub(8)]
}

/// Whether `k` is long enough to be a data-cf key (an escaped key is at least its two
/// terminator bytes).
pub fn is_version_key(k: &[u8]) -> bool {
    k.len() >= 10
}

/// Splits a data-cf key into user key and timestamp.
pub fn decode_version_key(k: &[u8]) -> crate::Result<(Vec<u8>, Ts)> {
    let mut r = Reader::new(k);
    let user = r
        .bytes()
        .map_err(|_| StorageError::Corrupt("mvcc key".into()))?;
    let inv = r
        .u64()
        .map_err(|_| StorageError::Corrupt("mvcc key ts".into()))?;
    Ok((user, Ts(u64::MAX - inv)))
}

/// Adds the version `(key, ts)` to `batch`: `Some(value)` writes, `None` deletes.
pub fn put_version(batch: &mut Batch, key: &[u8], ts: Ts, value: Option<&[u8]>) {
    let v = match value {
        Some(v) => {
            let mut out = Vec::with_capacity(v.len() + 1);
            out.push(TAG_VALUE);
            out.extend_from_slice(v);
            out
        }
        None => vec![TAG_TOMBSTONE],
    };
    batch.put(Cf::Data, version_key(key, ts), v);
}

fn decode_value(v: &[u8]) -> crate::Result<Option<Vec<u8>>> {
    match v.first() {
        Some(&TAG_VALUE) => Ok(Some(v[1..].to_vec())),
        Some(&TAG_TOMBSTONE) => Ok(None),
        _ => Err(StorageError::Corrupt("mvcc value tag".into())),
    }
}

/// The newest version of `key` at or below `ts`: `(commit_ts, value)`, value `None` = deleted.
pub fn get_version(
    engine: &dyn Engine,
    key: &[u8],
    ts: Ts,
) -> crate::Result<Option<(Ts, Option<Vec<u8>>)>> {
    let start = version_key(key, ts);
    let prefix = keycode::escape(key);
    let end = keycode::prefix_end(&prefix);
    let mut found = None;
    let mut err = None;
    engine.scan_versions(&start, end.as_deref(), &mut |k, v| {
        if k.len() == prefix.len() + 8 && k.starts_with(&prefix) {
            let inv = u64::from_be_bytes(k[prefix.len()..].try_into().expect("8 bytes"));
            match decode_value(v) {
                Ok(val) => found = Some((Ts(u64::MAX - inv), val)),
                Err(e) => err = Some(e),
            }
        }
        false
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// The newest version of each of many keys asked for in ascending order, with one cursor:
/// a key after the previous one is usually reached by a few steps — or, past the last stored
/// key (a bulk load into a new table), by none — instead of a fresh iterator and seek.
pub struct NewestVersions<'a> {
    cursor: Box<dyn crate::Cursor + 'a>,
    positioned: bool,
    /// The previous lookup's escaped key: lookups out of order would miss versions.
    last: Option<Vec<u8>>,
}

/// Steps forward before a lookup seeks instead.
const NEWEST_STEPS_MAX: usize = 8;

impl<'a> NewestVersions<'a> {
    pub fn new(engine: &'a dyn Engine) -> Self {
        Self {
            cursor: engine.cursor(Cf::Data),
            positioned: false,
            last: None,
        }
    }

    /// `(commit_ts, live)` of `key`'s newest version (`live`: not a delete). Keys must be
    /// asked for in strictly ascending order.
    pub fn get(&mut self, key: &[u8]) -> crate::Result<Option<(Ts, bool)>> {
        let prefix = keycode::escape(key);
        assert!(
            self.last.as_ref().is_none_or(|l| prefix > *l),
            "NewestVersions lookups must ascend"
        );
        // The cursor stands on the first stored key at or after the previous lookup's prefix
        // (or past the end): every key it passed is below that prefix, so below this one.
        let mut steps = 0;
        loop {
            match self.cursor.current() {
                _ if !self.positioned => break self.seek(&prefix)?,
                None => break,
                Some((k, _)) if k >= prefix.as_slice() => break,
                Some(_) if steps < NEWEST_STEPS_MAX => {
                    self.cursor.next()?;
                    steps += 1;
                }
                Some(_) => break self.seek(&prefix)?,
            }
        }
        let found = match self.cursor.current() {
            Some((k, v)) if k.len() == prefix.len() + 8 && k.starts_with(&prefix) => Some((
                u64::from_be_bytes(k[prefix.len()..].try_into().expect("8 bytes")),
                v,
            )),
            _ => None,
        };
        let result = match found {
            None => None,
            Some((inv, v)) => Some((Ts(u64::MAX - inv), value_is_live(v)?)),
        };
        self.last = Some(prefix);
        Ok(result)
    }

    fn seek(&mut self, prefix: &[u8]) -> crate::Result<()> {
        self.positioned = true;
        self.cursor.seek(prefix)
    }
}

/// Whether a stored version value is a row (not a delete).
fn value_is_live(v: &[u8]) -> crate::Result<bool> {
    match v.first() {
        Some(&TAG_VALUE) => Ok(true),
        Some(&TAG_TOMBSTONE) => Ok(false),
        _ => Err(StorageError::Corrupt("mvcc value tag".into())),
    }
}

/// The value of `key` visible at snapshot `ts`.
pub fn get(engine: &dyn Engine, key: &[u8], ts: Ts) -> crate::Result<Option<Vec<u8>>> {
    Ok(get_version(engine, key, ts)?.and_then(|(_, v)| v))
}

/// Visits the live `(key, value)` pairs visible at `ts` with `start <= key < end` in key order,
/// until `visit` returns false. `end = None` scans to the end of the keyspace.
///
/// Each key is decided by its newest version at or below `ts`; the versions around it are
/// compared as raw bytes and stepped over, and past [`VERSIONS_STEPPED_MAX`] of them the scan
/// seeks instead (to the snapshot's version, or past the key). Only an emitted key is
/// unescaped, so a scan of single-version rows costs one copy of each key and value.
pub fn scan(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    ts: Ts,
    visit: &mut dyn FnMut(Vec<u8>, Vec<u8>) -> bool,
) -> crate::Result<()> {
    scan_ref(engine, start, end, ts, false, &mut |k, v| {
        visit(k.to_vec(), v.to_vec())
    })
    .map(drop)
}

/// [`scan`] lending each pair instead of giving it: the key is unescaped into one reused
/// buffer and the value is the engine's own bytes, so a visitor that decodes rows in place
/// copies nothing per row. A `bulk` scan does not fill the block cache
/// ([`Engine::scan_bulk`]).
///
/// Returns the timestamp of the newest version of any key the scan reached (versions newer
/// than `ts` and tombstones included; `Ts::ZERO` if none): when it is at most `ts`, what
/// the scan visited is also the newest state of the keys it passed.
pub fn scan_ref(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    ts: Ts,
    bulk: bool,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> crate::Result<Ts> {
    let mut newest_inv = u64::MAX;
    let mut user_key = Vec::new();
    let hi = end.map(keycode::escape);
    let mut lo = keycode::escape(start);
    let inv_ts = u64::MAX - ts.0;
    loop {
        let mut err = None;
        let mut resume = None;
        // The escaped user key under the cursor, whether it was decided, and versions stepped.
        let mut current: Vec<u8> = Vec::new();
        let mut decided = false;
        let mut stepped = 0usize;
        let mut on_version = |k: &[u8], v: &[u8]| {
            let Some(split) = k.len().checked_sub(8) else {
                err = Some(StorageError::Corrupt("mvcc key".into()));
                return false;
            };
            let (user, inv) = k.split_at(split);
            if user == current.as_slice() {
                stepped += 1;
            } else {
                current.clear();
                current.extend_from_slice(user);
                decided = false;
                stepped = 0;
            }
            if decided {
                if stepped >= VERSIONS_STEPPED_MAX {
                    resume = Some(past_versions(user));
                    return false;
                }
                return true;
            }
            let inv = u64::from_be_bytes(inv.try_into().expect("split leaves 8 bytes"));
            newest_inv = newest_inv.min(inv);
            if inv < inv_ts {
                // Newer than the snapshot; past a few of them, seek to the snapshot's version.
                if stepped >= VERSIONS_STEPPED_MAX {
                    let mut at = user.to_vec();
                    keycode::put_u64(&mut at, inv_ts);
                    resume = Some(at);
                    return false;
                }
                return true;
            }
            decided = true;
            match v.split_first() {
                Some((&TAG_VALUE, val)) => match Reader::new(user).bytes_into(&mut user_key) {
                    Ok(()) => visit(&user_key, val),
                    Err(_) => {
                        err = Some(StorageError::Corrupt("mvcc key".into()));
                        false
                    }
                },
                Some((&TAG_TOMBSTONE, _)) => true,
                _ => {
                    err = Some(StorageError::Corrupt("mvcc value tag".into()));
                    false
                }
            }
        };
        if bulk {
            engine.scan_bulk(Cf::Data, &lo, hi.as_deref(), &mut on_version)?;
        } else {
            engine.scan(Cf::Data, &lo, hi.as_deref(), &mut on_version)?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        match resume {
            Some(next) => lo = next,
            None => return Ok(Ts(u64::MAX - newest_inv)),
        }
    }
}

/// The first data-cf key after every version of the escaped user key `user`.
fn past_versions(user: &[u8]) -> Vec<u8> {
    let mut next = user.to_vec();
    keycode::put_u64(&mut next, u64::MAX);
    next.push(0);
    next
}

/// Versions of one key [`scan`] and [`first_newer`] step over before it seeks past them instead.
const VERSIONS_STEPPED_MAX: usize = 8;

/// The first user key in `[start, end)` holding any version newer than `ts` (a write a
/// snapshot at `ts` did not see), or `None`.
///
/// Versions sort newest first, so each key is decided by its first version; the older ones
/// are stepped over, and past [`VERSIONS_STEPPED_MAX`] of them skipped with a new seek. A hot
/// row with thousands of versions (a TPC-B branch) then costs one seek, not a walk through
/// its whole history, at every commit that read it.
pub fn first_newer(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
    ts: Ts,
) -> crate::Result<Option<Vec<u8>>> {
    let hi = end.map(keycode::escape);
    let mut lo = keycode::escape(start);
    loop {
        let mut found = None;
        let mut err = None;
        let mut resume = None;
        // The escaped user key of the versions being stepped over, and how many so far.
        let mut current: Vec<u8> = Vec::new();
        let mut stepped = 0usize;
        engine.scan(Cf::Data, &lo, hi.as_deref(), &mut |k, _| {
            let Some(split) = k.len().checked_sub(8) else {
                err = Some(StorageError::Corrupt("mvcc key".into()));
                return false;
            };
            let (user, _) = k.split_at(split);
            if !current.is_empty() && user == current.as_slice() {
                stepped += 1;
                if stepped < VERSIONS_STEPPED_MAX {
                    return true;
                }
                resume = Some(past_versions(user));
                return false;
            }
            match decode_version_key(k) {
                Ok((user_key, vts)) if vts > ts => {
                    found = Some(user_key);
                    false
                }
                Ok(_) => {
                    current.clear();
                    current.extend_from_slice(user);
                    stepped = 0;
                    true
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        match (found, resume) {
            (Some(key), _) => return Ok(Some(key)),
            (None, Some(next)) => lo = next,
            (None, None) => return Ok(None),
        }
    }
}

/// A provisional write of a two-phase commit, stored in cf `locks` under the user key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    pub txn_id: u128,
    pub start_ts: Ts,
    /// The key next to which the transaction's status record lives.
    pub primary: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Lock {
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("lock serializes")
    }
    pub fn decode(b: &[u8]) -> crate::Result<Self> {
        bincode::deserialize(b).map_err(|e| StorageError::Corrupt(format!("lock: {e}")))
    }
}

pub fn get_lock(engine: &dyn Engine, key: &[u8]) -> crate::Result<Option<Lock>> {
    engine
        .get(Cf::Locks, key)?
        .map(|b| Lock::decode(&b))
        .transpose()
}

/// Every lock with `start <= key < end`.
pub fn scan_locks(
    engine: &dyn Engine,
    start: &[u8],
    end: Option<&[u8]>,
) -> crate::Result<Vec<(Vec<u8>, Lock)>> {
    let mut out = Vec::new();
    let mut err = None;
    engine.scan(Cf::Locks, start, end, &mut |k, v| match Lock::decode(v) {
        Ok(l) => {
            out.push((k.to_vec(), l));
            true
        }
        Err(e) => {
            err = Some(e);
            false
        }
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The final outcome of a two-phase transaction, written at its primary key's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnStatus {
    Committed(Ts),
    Aborted,
}

pub fn txn_record_key(primary: &[u8], txn_id: u128) -> Vec<u8> {
    let mut k = keycode::escape(primary);
    k.extend_from_slice(&txn_id.to_be_bytes());
    k
}

pub fn get_txn_record(
    engine: &dyn Engine,
    primary: &[u8],
    txn_id: u128,
) -> crate::Result<Option<TxnStatus>> {
    engine
        .get(Cf::Txns, &txn_record_key(primary, txn_id))?
        .map(|b| {
            bincode::deserialize(&b).map_err(|e| StorageError::Corrupt(format!("txn record: {e}")))
        })
        .transpose()
}

pub fn put_txn_record(batch: &mut Batch, primary: &[u8], txn_id: u128, status: TxnStatus) {
    batch.put(
        Cf::Txns,
        txn_record_key(primary, txn_id),
        bincode::serialize(&status).expect("status serializes"),
    );
}

/// The redo record of a local multi-range commit: the writes of every range but the primary,
/// written in the primary range's commit entry (with the primary range's versions) and deleted
/// once the other ranges have applied them. A crash in between leaves the record; recovery
/// writes its versions (idempotently: a version key names its timestamp) and deletes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redo {
    pub commit_ts: Ts,
    /// `(user key, value)`; `None` is a delete.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The cf `redo` key of a transaction's redo record: next to its primary key, as the record of
/// a two-phase commit is, and naming the commit (a key per commit even if one transaction
/// object committed twice).
pub fn redo_key(primary: &[u8], txn_id: u128, commit_ts: Ts) -> Vec<u8> {
    let mut k = txn_record_key(primary, txn_id);
    keycode::put_u64(&mut k, commit_ts.0);
    k
}

pub fn put_redo(batch: &mut Batch, primary: &[u8], txn_id: u128, redo: &Redo) {
    batch.put(
        Cf::Redo,
        redo_key(primary, txn_id, redo.commit_ts),
        bincode::serialize(redo).expect("redo serializes"),
    );
}

/// Every redo record: `(cf redo key, record)`.
pub fn scan_redo(engine: &dyn Engine) -> crate::Result<Vec<(Vec<u8>, Redo)>> {
    let mut out = Vec::new();
    let mut err = None;
    engine.scan(Cf::Redo, b"", None, &mut |k, v| {
        match bincode::deserialize::<Redo>(v) {
            Ok(r) => out.push((k.to_vec(), r)),
            Err(e) => err = Some(StorageError::Corrupt(format!("redo record: {e}"))),
        }
        err.is_none()
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The primary key a cf `redo` key (or txn record key) was made from.
pub fn redo_primary(redo_key: &[u8]) -> crate::Result<Vec<u8>> {
    let mut r = Reader::new(redo_key);
    let mut primary = Vec::new();
    r.bytes_into(&mut primary)
        .map_err(|_| StorageError::Corrupt("redo record key".into()))?;
    Ok(primary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemEngine;
    use std::collections::BTreeMap;

    fn write(e: &MemEngine, key: &[u8], ts: u64, v: Option<&[u8]>) {
        let mut b = Batch::new();
        put_version(&mut b, key, Ts(ts), v);
        e.write(&b, false).unwrap();
    }

    /// `NewestVersions` answers what `get_version(.., Ts::MAX)` does, for ascending lookups
    /// that step, seek, skip long histories and run past the last key — on both engines.
    #[test]
    fn newest_versions_agree_with_get_version() {
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::RocksEngine::open(dir.path()).unwrap();
        let mem = MemEngine::new();
        for e in [&rocks as &dyn Engine, &mem] {
            let mut b = Batch::new();
            for i in 0..200u32 {
                let key = format!("k{:04}", i * 3);
                // Up to 20 versions per key; every fifth key's newest is a delete.
                for ts in 1..=(i % 20 + 1) {
                    let deleted = i % 5 == 0 && ts == i % 20 + 1;
                    let value = (!deleted).then_some(key.as_bytes());
                    put_version(&mut b, key.as_bytes(), Ts(u64::from(ts) * 10), value);
                }
            }
            e.write(&b, false).unwrap();
            for stride in [1usize, 2, 7, 50] {
                let mut newest = NewestVersions::new(e);
                for i in (0..700u32).step_by(stride) {
                    let key = format!("k{i:04}");
                    let want = get_version(e, key.as_bytes(), Ts::MAX)
                        .unwrap()
                        .map(|(ts, v)| (ts, v.is_some()));
                    assert_eq!(newest.get(key.as_bytes()).unwrap(), want, "{key}");
                }
                // Past the last stored key.
                assert_eq!(newest.get(b"z").unwrap(), None);
            }
        }
    }

    /// `scan_ref` reports the newest version it reached: versions above the snapshot, many
    /// stepped versions and tombstones count; keys it never reached do not.
    #[test]
    fn scan_ref_reports_the_newest_version_reached() {
        let e = MemEngine::new();
        write(&e, b"a", 10, Some(b"a1"));
        write(&e, b"b", 20, Some(b"b1"));
        for ts in 30..60 {
            write(&e, b"b", ts, Some(b"b2")); // many versions above a snapshot at 25
        }
        write(&e, b"c", 70, None);
        write(&e, b"d", 90, Some(b"d1"));
        let newest = |start: &[u8], end: &[u8], ts: u64| {
            let mut seen = Vec::new();
            let n = scan_ref(&e, start, Some(end), Ts(ts), false, &mut |k, _| {
                seen.push(k.to_vec());
                true
            })
            .unwrap();
            (n, seen)
        };
        assert_eq!(newest(b"a", b"b", 100), (Ts(10), vec![b"a".to_vec()]));
        assert_eq!(
            newest(b"a", b"c", 25).0,
            Ts(59),
            "versions above the snapshot count"
        );
        assert_eq!(newest(b"a", b"c", 25).1, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(newest(b"a", b"d", 100).0, Ts(70), "a tombstone counts");
        assert_eq!(newest(b"a", b"e", 100).0, Ts(90));
        assert_eq!(newest(b"x", b"z", 100).0, Ts::ZERO);
        // A visitor that stops early: keys after it were not reached.
        let n = scan_ref(&e, b"a", Some(b"e"), Ts(100), false, &mut |_, _| false).unwrap();
        assert_eq!(n, Ts(10));
    }

    #[test]
    #[should_panic(expected = "must ascend")]
    fn newest_versions_refuse_lookups_out_of_order() {
        let e = MemEngine::new();
        let mut newest = NewestVersions::new(&e);
        newest.get(b"b").unwrap();
        let _ = newest.get(b"a");
    }

    #[test]
    fn snapshot_visibility() {
        let e = MemEngine::new();
        write(&e, b"k", 10, Some(b"v10"));
        write(&e, b"k", 20, Some(b"v20"));
        write(&e, b"k", 30, None);
        assert_eq!(get(&e, b"k", Ts(5)).unwrap(), None);
        assert_eq!(get(&e, b"k", Ts(10)).unwrap(), Some(b"v10".to_vec()));
        assert_eq!(get(&e, b"k", Ts(25)).unwrap(), Some(b"v20".to_vec()));
        assert_eq!(get(&e, b"k", Ts(30)).unwrap(), None);
        assert_eq!(
            get_version(&e, b"k", Ts::MAX).unwrap(),
            Some((Ts(30), None))
        );
        // A key that is a prefix of another does not see the other's versions.
        write(&e, b"k\x00", 5, Some(b"other"));
        assert_eq!(get(&e, b"k", Ts(6)).unwrap(), None);
        assert_eq!(get(&e, b"k\x00", Ts(6)).unwrap(), Some(b"other".to_vec()));
    }

    #[test]
    fn first_newer_finds_writes_after_a_snapshot() {
        let e = MemEngine::new();
        write(&e, b"a", 10, Some(b"a10"));
        write(&e, b"b", 15, Some(b"b15"));
        write(&e, b"b", 25, None);
        write(&e, b"c", 30, Some(b"c30"));
        assert_eq!(first_newer(&e, b"a", None, Ts(30)).unwrap(), None);
        assert_eq!(
            first_newer(&e, b"a", None, Ts(20)).unwrap(),
            Some(b"b".to_vec())
        );
        assert_eq!(
            first_newer(&e, b"a", Some(b"b"), Ts(5)).unwrap(),
            Some(b"a".to_vec())
        );
        assert_eq!(first_newer(&e, b"a", Some(b"b"), Ts(10)).unwrap(), None);
        assert_eq!(
            first_newer(&e, b"c", None, Ts(29)).unwrap(),
            Some(b"c".to_vec())
        );
    }

    #[test]
    fn first_newer_skips_long_histories() {
        let e = MemEngine::new();
        let n = 3 * VERSIONS_STEPPED_MAX as u64 + 1;
        for ts in 1..=n {
            write(&e, b"hot", ts, Some(b"v"));
            write(&e, b"hot2", ts, Some(b"v"));
        }
        write(&e, b"later", 5, Some(b"v"));
        write(&e, b"z", n + 10, Some(b"v"));
        assert_eq!(
            first_newer(&e, b"hot", None, Ts(n)).unwrap(),
            Some(b"z".to_vec())
        );
        assert_eq!(first_newer(&e, b"hot", Some(b"z"), Ts(n)).unwrap(), None);
        assert_eq!(
            first_newer(&e, b"hot", Some(b"z"), Ts(4)).unwrap(),
            Some(b"hot".to_vec())
        );
        assert_eq!(
            first_newer(&e, b"hot\x00", Some(b"z"), Ts(n - 1)).unwrap(),
            Some(b"hot2".to_vec())
        );
        assert_eq!(
            first_newer(&e, b"hot\x00", Some(b"z"), Ts(n)).unwrap(),
            None
        );
        assert_eq!(
            first_newer(&e, b"hot\x00", None, Ts(n)).unwrap(),
            Some(b"z".to_vec())
        );
        assert_eq!(
            first_newer(&e, b"hot\x00", Some(b"later\x00"), Ts(4)).unwrap(),
            Some(b"hot2".to_vec())
        );
        assert_eq!(
            first_newer(&e, b"hot3", Some(b"z"), Ts(4)).unwrap(),
            Some(b"later".to_vec())
        );
        // The seek past a long history lands on the very next key.
        let e = MemEngine::new();
        for ts in 1..=30 {
            write(&e, b"a", ts, Some(b"v"));
        }
        write(&e, b"a\x00", 40, Some(b"v"));
        assert_eq!(
            first_newer(&e, b"a", None, Ts(30)).unwrap(),
            Some(b"a\x00".to_vec())
        );
    }

    #[test]
    fn scan_sees_one_version_per_key() {
        let e = MemEngine::new();
        write(&e, b"a", 10, Some(b"a10"));
        write(&e, b"a", 20, Some(b"a20"));
        write(&e, b"b", 15, Some(b"b15"));
        write(&e, b"b", 25, None);
        write(&e, b"c", 30, Some(b"c30"));
        let collect = |ts: u64, end: Option<&[u8]>| {
            let mut out = vec![];
            scan(&e, b"a", end, Ts(ts), &mut |k, v| {
                out.push((k, v));
                true
            })
            .unwrap();
            out
        };
        assert_eq!(collect(12, None), vec![(b"a".to_vec(), b"a10".to_vec())]);
        assert_eq!(
            collect(22, None),
            vec![
                (b"a".to_vec(), b"a20".to_vec()),
                (b"b".to_vec(), b"b15".to_vec())
            ]
        );
        assert_eq!(
            collect(40, None),
            vec![
                (b"a".to_vec(), b"a20".to_vec()),
                (b"c".to_vec(), b"c30".to_vec())
            ]
        );
        assert_eq!(
            collect(40, Some(b"c")),
            vec![(b"a".to_vec(), b"a20".to_vec())]
        );
    }

    /// `scan` against a model over keys with long histories on both sides of the snapshot,
    /// tombstones, keys that are prefixes of each other, and a visitor that stops early.
    #[test]
    fn scan_matches_a_model_over_long_histories() {
        let keys: [&[u8]; 5] = [b"a", b"a\x00", b"a\x00\x01", b"b", b"c\xff"];
        let e = MemEngine::new();
        let mut model: BTreeMap<(Vec<u8>, u64), Option<Vec<u8>>> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for ts in 1..=120u64 {
            let key = keys[(next() % keys.len() as u64) as usize];
            // Key "a" gets a version at every timestamp: a history longer than the step limit.
            for k in [key, b"a".as_slice()] {
                let v = (next() % 5 != 0).then(|| format!("{}@{ts}", k.len()).into_bytes());
                write(&e, k, ts, v.as_deref());
                model.insert((k.to_vec(), ts), v);
            }
        }
        let visible = |ts: u64| -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut out = Vec::new();
            for k in keys {
                let newest = model
                    .range((k.to_vec(), 0)..=(k.to_vec(), ts))
                    .next_back()
                    .and_then(|(_, v)| v.clone());
                if let Some(v) = newest {
                    out.push((k.to_vec(), v));
                }
            }
            out
        };
        for ts in [0, 1, 2, 9, 10, 50, 119, 120, 500] {
            let mut got = Vec::new();
            scan(&e, b"", None, Ts(ts), &mut |k, v| {
                got.push((k, v));
                true
            })
            .unwrap();
            assert_eq!(got, visible(ts), "snapshot {ts}");
            let mut first = Vec::new();
            scan(&e, b"a\x00", Some(b"c"), Ts(ts), &mut |k, v| {
                first.push((k, v));
                false
            })
            .unwrap();
            let want: Vec<_> = visible(ts)
                .into_iter()
                .filter(|(k, _)| {
                    k.as_slice() >= b"a\x00".as_slice() && k.as_slice() < b"c".as_slice()
                })
                .take(1)
                .collect();
            assert_eq!(first, want, "first row at snapshot {ts}");
        }
    }

    /// Version reads agree between RocksDB — versions of one key spread over several files and
    /// the memtable, read through the user-key prefix filters — and the in-memory engine, for
    /// keys that are prefixes of each other and keys never written.
    #[test]
    fn reads_agree_across_files_with_prefix_filters() {
        // Keys as long as a table's (a seek key is then long enough for the prefix filter).
        let long = |k: &[u8]| [b"table0001:".as_slice(), k].concat();
        let keys: Vec<Vec<u8>> = [
            b"a".as_slice(),
            b"a\x00",
            b"a\x00\x01",
            b"ab",
            b"b",
            b"c\xff",
        ]
        .into_iter()
        .map(long)
        .collect();
        let absent: Vec<Vec<u8>> = [b"".as_slice(), b"a\x01", b"aa", b"zz"]
            .into_iter()
            .map(long)
            .chain([Vec::new(), b"zz".to_vec()])
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::RocksEngine::open(dir.path()).unwrap();
        let mem = MemEngine::new();
        for round in 0..4u64 {
            for (i, k) in keys.iter().enumerate() {
                // Key i gets versions in rounds where i % (round + 1) == 0; every third a delete.
                if i as u64 % (round + 1) != 0 {
                    continue;
                }
                let ts = 10 * round + i as u64 + 1;
                let v = (ts % 3 != 0).then(|| format!("{i}@{ts}").into_bytes());
                let mut b = Batch::new();
                put_version(&mut b, k, Ts(ts), v.as_deref());
                if ts % 2 == 0 {
                    b.put(Cf::Locks, k.to_vec(), b"lock".to_vec());
                } else {
                    b.delete(Cf::Locks, k.to_vec());
                }
                rocks.write(&b, false).unwrap();
                mem.write(&b, false).unwrap();
            }
            if round < 3 {
                rocks.flush().unwrap();
            }
        }
        for k in keys.iter().chain(absent.iter()) {
            for ts in [0, 1, 5, 11, 12, 25, 31, 40, u64::MAX] {
                assert_eq!(
                    get_version(&rocks, k, Ts(ts)).unwrap(),
                    get_version(&mem, k, Ts(ts)).unwrap(),
                    "{k:?} at {ts}"
                );
                assert_eq!(
                    first_newer(&rocks, k, None, Ts(ts)).unwrap(),
                    first_newer(&mem, k, None, Ts(ts)).unwrap()
                );
            }
            assert_eq!(
                get_lock_raw(&rocks, k),
                get_lock_raw(&mem, k),
                "lock of {k:?}"
            );
        }
        for ts in [0, 12, 40] {
            let all = |e: &dyn Engine| {
                let mut out = Vec::new();
                scan(e, b"", None, Ts(ts), &mut |k, v| {
                    out.push((k, v));
                    true
                })
                .unwrap();
                out
            };
            assert_eq!(all(&rocks), all(&mem), "scan at {ts}");
        }
        let (mut r, mut m) = (NewestVersions::new(&rocks), NewestVersions::new(&mem));
        let mut sorted: Vec<&Vec<u8>> = keys.iter().chain(absent.iter()).collect();
        sorted.sort_by_key(|k| keycode::escape(k));
        for k in sorted {
            assert_eq!(r.get(k).unwrap(), m.get(k).unwrap(), "newest of {k:?}");
        }
    }

    fn get_lock_raw(e: &dyn Engine, k: &[u8]) -> Option<Vec<u8>> {
        e.get(Cf::Locks, k).unwrap()
    }

    #[test]
    fn locks_and_txn_records_round_trip() {
        let e = MemEngine::new();
        let lock = Lock {
            txn_id: 7,
            start_ts: Ts(3),
            primary: b"p".to_vec(),
            value: Some(b"x".to_vec()),
        };
        let mut b = Batch::new();
        b.put(Cf::Locks, b"k".to_vec(), lock.encode());
        put_txn_record(&mut b, b"p", 7, TxnStatus::Committed(Ts(9)));
        e.write(&b, false).unwrap();
        assert_eq!(get_lock(&e, b"k").unwrap(), Some(lock.clone()));
        assert_eq!(
            scan_locks(&e, b"", None).unwrap(),
            vec![(b"k".to_vec(), lock)]
        );
        assert_eq!(
            get_txn_record(&e, b"p", 7).unwrap(),
            Some(TxnStatus::Committed(Ts(9)))
        );
        assert_eq!(get_txn_record(&e, b"p", 8).unwrap(), None);
    }
}
