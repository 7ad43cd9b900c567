//! A node-wide cache of the newest version of keys that rarely change (the SQL catalog's
//! descriptors), so a statement can read them without a RocksDB seek.
//!
//! An entry holds a key's newest version — its commit timestamp `newest_ts` and value (`None`:
//! deleted or absent) — and the range's [`applied generation`](kestrel_raft::AppliedGeneration)
//! read *before* the version was. A read at `read_ts` may use the entry when
//! 1. it has already waited for the in-flight commits at or below `read_ts` in the range (as
//!    every read does, see `pending`): each of them is applied;
//! 2. the range's generation still equals the entry's: nothing was applied since the entry's
//!    version was read, so that version is still the newest;
//! 3. `read_ts >= newest_ts`: the newest version is the one the snapshot sees.
//!
//! Then the answer is exactly what `mvcc::get` would return. Anything else reads the engine.
//! This rests on one rule: every write to a range's data goes through its state machine's
//! apply (or snapshot install), which advances the generation before writing and again
//! after. A future snapshot transport, MVCC GC or bulk ingestion that writes the engine
//! directly must advance it too (the column cache, `Txn::stamp_span`, rests on the same).
//! A write to *any* key of the range changes the generation, so the cache helps only keys in
//! ranges that are rarely written — which is what callers use it for.
//!
//! Bounded by `read_cache_entries_max`; when full it is emptied (entries are cheap to
//! rebuild, and a bounded hash map with wholesale eviction has no per-hit bookkeeping).

use std::collections::HashMap;

use kestrel_storage::Ts;

#[derive(Clone)]
struct Entry {
    generation: u64,
    newest_ts: Ts,
    value: Option<Vec<u8>>,
}

pub(crate) struct ReadCache {
    entries: parking_lot::RwLock<HashMap<Vec<u8>, Entry>>,
    entries_max: usize,
}

/// A cache answer: `Hit(value)` when the entry may be used (see the module doc).
pub(crate) enum Lookup {
    Hit(Option<Vec<u8>>),
    Miss,
}

impl ReadCache {
    pub(crate) fn new(entries_max: usize) -> Self {
        Self {
            entries: parking_lot::RwLock::new(HashMap::new()),
            entries_max,
        }
    }

    /// The value of `key` at `read_ts` if the entry is usable with the range at `generation`.
    pub(crate) fn lookup(&self, key: &[u8], generation: u64, read_ts: Ts) -> Lookup {
        match self.entries.read().get(key) {
            Some(e) if e.generation == generation && read_ts >= e.newest_ts => {
                Lookup::Hit(e.value.clone())
            }
            _ => Lookup::Miss,
        }
    }

    /// Records `key`'s newest version, read after the range's generation was `generation`.
    pub(crate) fn fill(&self, key: &[u8], generation: u64, newest_ts: Ts, value: Option<Vec<u8>>) {
        if self.entries_max == 0 {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= self.entries_max && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(
            key.to_vec(),
            Entry {
                generation,
                newest_ts,
                value,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_only_its_generation_and_later_snapshots() {
        let c = ReadCache::new(8);
        c.fill(b"k", 5, Ts(100), Some(b"v".to_vec()));
        assert!(matches!(c.lookup(b"k", 5, Ts(100)), Lookup::Hit(Some(v)) if v == b"v"));
        assert!(matches!(c.lookup(b"k", 5, Ts(1000)), Lookup::Hit(Some(_))));
        assert!(matches!(c.lookup(b"k", 5, Ts(99)), Lookup::Miss));
        assert!(matches!(c.lookup(b"k", 6, Ts(100)), Lookup::Miss));
        assert!(matches!(c.lookup(b"other", 5, Ts(100)), Lookup::Miss));
        c.fill(b"gone", 5, Ts::ZERO, None);
        assert!(matches!(c.lookup(b"gone", 5, Ts(1)), Lookup::Hit(None)));
    }

    #[test]
    fn a_full_cache_starts_over_and_zero_disables_it() {
        let c = ReadCache::new(2);
        c.fill(b"a", 1, Ts(1), None);
        c.fill(b"b", 1, Ts(1), None);
        c.fill(b"a", 1, Ts(2), None);
        assert_eq!(c.len(), 2);
        c.fill(b"c", 1, Ts(1), None);
        assert_eq!(c.len(), 1);
        let off = ReadCache::new(0);
        off.fill(b"a", 1, Ts(1), None);
        assert!(matches!(off.lookup(b"a", 1, Ts(1)), Lookup::Miss));
    }
}
