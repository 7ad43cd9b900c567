//! Group commit: one WAL fsync for every commit waiting for one.
//!
//! Every range's log lives in the one shared engine, so every append goes to one write-ahead
//! log, which the engine recovers as its longest intact prefix (`Engine::sync_wal`): a sync
//! makes every earlier write of every range durable. The node's [`GroupCommit`] thread takes
//! every waiter queued so far (at most `group_commit_waiters_max`), syncs the WAL once, and
//! completes them all. Waiters that arrive during an fsync form the next group: a group holds
//! as many commits as were waiting, across all ranges, with no added delay (unless
//! `group_commit_delay_us` asks for one, like PostgreSQL's `commit_delay`).
//!
//! ## Who waits: the proposer, not the Raft log (single-voter groups)
//! openraft 0.9 waits for each append of a range to be reported flushed before it appends the
//! next, so if the log store waited for the fsync, the commits of one range could never share
//! one. With `RaftConfig::deferred_sync` (the single-node default) the log store therefore
//! reports an append flushed once it is *written*, and a proposal that must be durable
//! ([`Durability::Synced`](crate::Durability)) waits here after it is applied, before
//! `propose` returns. Nothing is acknowledged before that wait ends, and nothing can be *seen*
//! before it either: the transaction layer keeps a commit registered in its range's pending
//! registry until `propose` returns, and a reader whose snapshot could include the commit waits
//! for that registration (`kestrel_kv::pending`). A crash before the fsync loses a suffix of the
//! WAL — the entry and its application together — which is a commit that was never
//! acknowledged. A [`Durability::Deferred`](crate::Durability) proposal skips the wait: it
//! becomes durable with the next sync, which the transaction layer allows only for entries
//! that recovery repairs (a two-phase commit's locks, written before its synced record, and
//! their resolution after it).
//!
//! A failed fsync stops the process (`fail_stop`), as PostgreSQL PANICs: the entries it should
//! have covered are already applied. A proposer must not be cancelled while it waits here
//! (nothing in Kestrel cancels a commit): dropping the wait would release its pending-registry
//! entry before the fsync.
//!
//! A follower must never acknowledge an entry it has not synced, so replicated groups need
//! `deferred_sync = false`: then the log store itself waits here before reporting an append
//! flushed (one fsync per append of a range, still shared across ranges).

use std::sync::{mpsc, Arc, Weak};

use kestrel_storage::Engine;
use openraft::storage::LogFlushed;

use crate::metrics::METRICS;
use crate::{RaftConfig, RaftError, TypeConfig};

/// Someone waiting for the next WAL sync.
pub(crate) enum Waiter {
    /// A Raft append (without `deferred_sync`): reported flushed after the sync.
    Append(LogFlushed<TypeConfig>),
    /// A proposer whose entry is written and applied.
    Proposer(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Waiter {
    fn complete(self, res: Result<(), String>) {
        match self {
            Waiter::Append(cb) => cb.log_io_completed(res.map_err(std::io::Error::other)),
            Waiter::Proposer(tx) => {
                // The proposer may have gone (its statement was cancelled): nothing to tell.
                let _ = tx.send(res);
            }
        }
    }
}

/// The node's WAL syncer, shared by every range's log store. Dropping the last handle stops
/// its thread once the queue is empty.
pub struct GroupCommit {
    engine: Arc<dyn Engine>,
    queue: mpsc::Sender<Waiter>,
    deferred_sync: bool,
}

impl GroupCommit {
    /// Starts the syncer thread for `engine`.
    pub fn start(engine: Arc<dyn Engine>, config: &RaftConfig) -> Result<Arc<Self>, RaftError> {
        assert!(config.group_commit_waiters_max > 0);
        let (tx, rx) = mpsc::channel();
        // Weak: the thread must not keep the engine (and its directory lock) open after the
        // node has let go of it.
        let thread_engine = Arc::downgrade(&engine);
        let (waiters_max, delay) = (
            config.group_commit_waiters_max,
            std::time::Duration::from_micros(config.group_commit_delay_us),
        );
        std::thread::Builder::new()
            .name("kestrel-wal-sync".into())
            .spawn(move || run(&thread_engine, &rx, waiters_max, delay))
            .map_err(|e| RaftError::Raft(format!("starting the WAL sync thread: {e}")))?;
        Ok(Arc::new(Self {
            engine,
            queue: tx,
            deferred_sync: config.deferred_sync,
        }))
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub(crate) fn deferred_sync(&self) -> bool {
        self.deferred_sync
    }

    /// Returns after a WAL sync that started after this call: every write made before it is
    /// then durable.
    pub async fn sync(&self) -> Result<(), RaftError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Waiter::Proposer(tx));
        match rx.await {
            Ok(res) => res.map_err(RaftError::Raft),
            Err(_) => Err(RaftError::Raft("the WAL sync thread has stopped".into())),
        }
    }

    /// Queues `w`; it completes after the next WAL sync.
    pub(crate) fn submit(&self, w: Waiter) {
        if self.queue.send(w).is_err() {
            // The thread ends only when every handle is gone (or it panicked): entries already
            // applied could never be made durable.
            fail_stop("the WAL sync thread has stopped");
        }
    }
}

/// Stops the process. After a failed fsync the WAL's durable state is unknown (the kernel may
/// have dropped the dirty pages, so a later fsync can "succeed" over a hole) while the
/// entries it should have covered are already applied and about to become visible. Like
/// PostgreSQL (`data_sync_retry = off`: PANIC), crash and let recovery replay the WAL.
fn fail_stop(why: &str) -> ! {
    tracing::error!("{why}; stopping the process so that recovery replays the WAL");
    eprintln!("kestrel: {why}; stopping the process so that recovery replays the WAL");
    std::process::abort()
}

fn run(
    engine: &Weak<dyn Engine>,
    rx: &mpsc::Receiver<Waiter>,
    waiters_max: usize,
    delay: std::time::Duration,
) {
    while let Ok(first) = rx.recv() {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut group = vec![first];
        while group.len() < waiters_max {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let res = match engine.upgrade() {
            Some(engine) => match engine.sync_wal() {
                Ok(()) => Ok(()),
                Err(e) => fail_stop(&format!("WAL sync failed: {e}")),
            },
            // The node closed its engine (shutdown): nobody may rely on these writes.
            None => Err("the engine is closed".to_string()),
        };
        if res.is_ok() {
            METRICS.log_fsyncs.inc();
            METRICS.group_commit_waiters.inc_by(group.len() as u64);
        }
        for w in group {
            w.complete(res.clone());
        }
    }
}
