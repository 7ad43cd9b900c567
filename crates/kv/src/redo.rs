//! Redo records of local multi-range commits, and the task that deletes them.
//!
//! A transaction writing several ranges whose replicas all live on this node alone commits
//! without locks (see `Txn::local_commit`): its primary range's commit entry carries the primary
//! range's versions *and* a [`mvcc::Redo`] record holding the other ranges' writes; the other
//! ranges then apply their versions. Once they have, the record is garbage, and this task
//! deletes it — in batches: it waits `redo_cleanup_delay_ms` after the first record of a round,
//! then proposes one deferred entry per primary range for every record queued, so a busy node
//! pays a small fraction of an entry per commit for it.
//!
//! A record whose deletion is lost (a crash, a failed proposal, the queue dropped at shutdown)
//! is harmless: recovery writes its versions again — a version key names its timestamp, so that
//! rewrites the same versions — and deletes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use kestrel_storage::{mvcc, Batch, Cf};

use crate::range::Replica;
use crate::store::Kv;

/// Deletes the redo records whose keys arrive on `rx`: after the first of a round arrives it
/// waits `delay_ms` for more, then deletes what queued up (at most `batch_max` records).
pub(crate) async fn run_cleaner(
    kv: Weak<Kv>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    batch_max: usize,
    delay_ms: u64,
) {
    assert!(batch_max > 0);
    let mut keys = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut keys, 1).await > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        while keys.len() < batch_max {
            match rx.try_recv() {
                Ok(key) => keys.push(key),
                Err(_) => break,
            }
        }
        let Some(kv) = kv.upgrade() else { return };
        delete(&kv, std::mem::take(&mut keys)).await;
    }
}

/// Deletes the redo records `keys`, one deferred proposal per primary range. Failures are
/// logged: the records stay, and recovery re-applies and deletes them.
async fn delete(kv: &Kv, keys: Vec<Vec<u8>>) {
    let mut by_range: BTreeMap<u64, (Arc<Replica>, Batch)> = BTreeMap::new();
    for key in keys {
        let replica = match mvcc::redo_primary(&key).map_err(crate::KvError::from) {
            Ok(primary) => kv.replica_for(&primary),
            Err(e) => Err(e),
        };
        match replica {
            Ok(r) => by_range
                .entry(r.range_id())
                .or_insert_with(|| (r.clone(), Batch::new()))
                .1
                .delete(Cf::Redo, key),
            Err(e) => tracing::warn!("deleting a redo record: {e}"),
        }
    }
    let proposals = by_range
        .into_values()
        .map(|(r, b)| async move { r.group.propose_deferred(b).await });
    for res in futures::future::join_all(proposals).await {
        if let Err(e) = res {
            tracing::warn!("deleting redo records failed (recovery will): {e}");
        }
    }
}
