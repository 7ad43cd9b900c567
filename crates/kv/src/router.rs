//! The routing table: which replica serves which key.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::range::Replica;

#[derive(Default)]
pub struct Router {
    by_start: parking_lot::RwLock<BTreeMap<Vec<u8>, Arc<Replica>>>,
}

impl Router {
    pub(crate) fn insert(&self, replica: Arc<Replica>) {
        let start = replica.desc.read().start.clone();
        self.by_start.write().insert(start, replica);
    }

    /// The replica whose span contains `key`.
    pub(crate) fn lookup(&self, key: &[u8]) -> Option<Arc<Replica>> {
        let map = self.by_start.read();
        let (_, r) = map.range(..=key.to_vec()).next_back()?;
        let contains = r.desc.read().contains(key);
        contains.then(|| r.clone())
    }

    /// The replicas overlapping `[start, end)`, in key order.
    pub(crate) fn overlapping(&self, start: &[u8], end: Option<&[u8]>) -> Vec<Arc<Replica>> {
        let map = self.by_start.read();
        let first = map
            .range(..=start.to_vec())
            .next_back()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        map.range(first..)
            .take_while(|(s, _)| end.is_none_or(|e| s.as_slice() < e))
            .filter(|(_, r)| {
                let d = r.desc.read();
                d.end.as_deref().is_none_or(|de| de > start)
            })
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Replica>> {
        self.by_start.read().values().cloned().collect()
    }
}
