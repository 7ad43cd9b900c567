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
//! A record whose deletion is lost (a crash, a failed proposal) is harmless: recovery writes
//! its versions again — a version key names its timestamp, so that rewrites the same versions —
//! and deletes it. Two things flush the queue first: a shutdown (nothing left for recovery),
//! and clearing a dropped table's span (`Kv::clear_span`, whose synced entry then follows the
//! deletions in the WAL, so recovery does not write the table's rows back). A commit still
//! applying while its table's span is cleared can leave rows in the cleared span — as a
//! one-phase or two-phase commit racing the clear can — unreachable, since table ids are never
//! reused.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use kestrel_storage::{mvcc, Batch, Cf};

use crate::range::Replica;
use crate::store::Kv;

/// What the cleaner is told.
pub(crate) enum Msg {
    /// Every range has applied the record with this cf `redo` key.
    Applied(Vec<u8>),
    /// Answer once every record named before this message is deleted (or failed to be).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Deletes the redo records named on `rx`: after the first record of a round arrives it waits
/// `delay_ms` for more, then deletes what queued up (at most `batch_max` records); a flush
/// request ends the wait. Records whose deletion failed are tried again with the next round
/// (at most `batch_max` of them; the rest are left to recovery).
pub(crate) async fn run_cleaner(
    kv: Weak<Kv>,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    batch_max: usize,
    delay_ms: u64,
) {
    assert!(batch_max > 0);
    let mut msgs = Vec::with_capacity(batch_max);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    while rx.recv_many(&mut msgs, 1).await > 0 {
        if matches!(msgs[0], Msg::Applied(_)) {
            gather(&mut rx, &mut msgs, batch_max, delay_ms).await;
        }
        while msgs.len() < batch_max {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                Msg::Applied(key) => keys.push(key),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        let Some(kv) = kv.upgrade() else { return };
        keys = delete(&kv, std::mem::take(&mut keys)).await;
        keys.truncate(batch_max);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Adds to `msgs` what arrives within `delay_ms`, until a flush request arrives, `batch_max`
/// messages are gathered or the channel closes.
async fn gather(
    rx: &mut tokio::sync::mpsc::Receiver<Msg>,
    msgs: &mut Vec<Msg>,
    batch_max: usize,
    delay_ms: u64,
) {
    let deadline = tokio::time::sleep(std::time::Duration::from_millis(delay_ms));
    tokio::pin!(deadline);
    while msgs.len() < batch_max {
        tokio::select! {
            _ = &mut deadline => return,
            m = rx.recv() => match m {
                Some(m) => {
                    let flush = matches!(m, Msg::Flush(_));
                    msgs.push(m);
                    if flush {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

/// Deletes the redo records `keys`, one deferred proposal per primary range; returns the keys
/// whose deletion failed (logged; recovery deletes them if no later round does).
async fn delete(kv: &Kv, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut by_range: BTreeMap<u64, (Arc<Replica>, Vec<Vec<u8>>)> = BTreeMap::new();
    for key in keys {
        let replica = match mvcc::redo_primary(&key).map_err(crate::KvError::from) {
            Ok(primary) => kv.replica_for(&primary),
            Err(e) => Err(e),
        };
        match replica {
            Ok(r) => by_range
                .entry(r.range_id())
                .or_insert_with(|| (r.clone(), Vec::new()))
                .1
                .push(key),
            Err(e) => tracing::warn!("deleting a redo record: {e}"),
        }
    }
    let proposals = by_range.into_values().map(|(r, keys)| async move {
        let mut b = Batch::new();
        for k in &keys {
            b.delete(Cf::Redo, k.clone());
        }
        match r.group.propose_deferred(b).await {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::warn!("deleting redo records failed (retried later): {e}");
                keys
            }
        }
    });
    futures::future::join_all(proposals)
        .await
        .into_iter()
        .flatten()
        .collect()
}
