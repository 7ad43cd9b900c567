use std::sync::Arc;

use kestrel_storage::{mvcc, Batch, Cf, Engine, MemEngine, RocksEngine, Ts};

use super::*;

fn span_all() -> Span {
    Span {
        start: vec![],
        end: None,
    }
}

fn wal(engine: &Arc<dyn Engine>) -> Arc<GroupCommit> {
    GroupCommit::start(engine.clone(), &config()).unwrap()
}

fn config() -> RaftConfig {
    RaftConfig {
        snapshot_logs_since_last: 5,
        ..RaftConfig::default()
    }
}

#[tokio::test]
async fn propose_applies_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let g = RaftGroup::open(&wal(&engine), 7, 1, span_all(), &config())
            .await
            .unwrap();
        for i in 0..20u64 {
            let mut b = Batch::new();
            mvcc::put_version(
                &mut b,
                format!("k{i:02}").as_bytes(),
                Ts(100 + i),
                Some(b"v"),
            );
            g.propose(b).await.unwrap();
        }
        // Applied before propose returns.
        assert_eq!(
            mvcc::get(engine.as_ref(), b"k19", Ts::MAX).unwrap(),
            Some(b"v".to_vec())
        );
        g.shutdown().await;
    }
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
    let g = RaftGroup::open(&wal(&engine), 7, 1, span_all(), &config())
        .await
        .unwrap();
    let mut b = Batch::new();
    mvcc::put_version(&mut b, b"after", Ts(500), Some(b"x"));
    g.propose(b).await.unwrap();
    for i in 0..20u64 {
        assert!(
            mvcc::get(engine.as_ref(), format!("k{i:02}").as_bytes(), Ts::MAX)
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        mvcc::get(engine.as_ref(), b"after", Ts::MAX).unwrap(),
        Some(b"x".to_vec())
    );
    g.shutdown().await;
}

#[tokio::test]
async fn two_groups_share_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
    let wal = wal(&engine);
    let a = RaftGroup::open(
        &wal,
        1,
        1,
        Span {
            start: vec![],
            end: Some(b"m".to_vec()),
        },
        &config(),
    )
    .await
    .unwrap();
    let b = RaftGroup::open(
        &wal,
        2,
        1,
        Span {
            start: b"m".to_vec(),
            end: None,
        },
        &config(),
    )
    .await
    .unwrap();
    let mut ba = Batch::new();
    mvcc::put_version(&mut ba, b"a", Ts(1), Some(b"1"));
    let mut bb = Batch::new();
    mvcc::put_version(&mut bb, b"z", Ts(1), Some(b"2"));
    let (ra, rb) = tokio::join!(a.propose(ba), b.propose(bb));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        mvcc::get(engine.as_ref(), b"a", Ts(1)).unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(
        mvcc::get(engine.as_ref(), b"z", Ts(1)).unwrap(),
        Some(b"2".to_vec())
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// An engine that counts (and slows down) WAL syncs.
struct SlowSync {
    inner: MemEngine,
    syncs: std::sync::atomic::AtomicU64,
    sync_ms: u64,
}

impl Engine for SlowSync {
    fn get(&self, cf: Cf, key: &[u8]) -> kestrel_storage::Result<Option<Vec<u8>>> {
        self.inner.get(cf, key)
    }
    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> kestrel_storage::Result<()> {
        self.inner.scan(cf, start, end, visit)
    }
    fn scan_rev(
        &self,
        cf: Cf,
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> kestrel_storage::Result<()> {
        self.inner.scan_rev(cf, end, visit)
    }
    fn write(&self, batch: &Batch, sync: bool) -> kestrel_storage::Result<()> {
        if sync {
            self.sync_wal()?;
        }
        self.inner.write(batch, false)
    }
    fn sync_wal(&self) -> kestrel_storage::Result<()> {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(self.sync_ms));
        Ok(())
    }
}

/// A fresh `SlowSync` whose syncs take `sync_ms`, and the same engine as a trait object.
fn slow_engine(sync_ms: u64) -> (Arc<SlowSync>, Arc<dyn Engine>) {
    let slow = Arc::new(SlowSync {
        inner: MemEngine::new(),
        syncs: Default::default(),
        sync_ms,
    });
    (slow.clone(), slow)
}

impl SlowSync {
    fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn groups_on(wal: &Arc<GroupCommit>, n: u64) -> Vec<Arc<RaftGroup>> {
    let mut out = Vec::new();
    for id in 0..n {
        let span = Span {
            start: vec![id as u8],
            end: Some(vec![id as u8 + 1]),
        };
        let g = RaftGroup::open(wal, id + 1, 1, span, &config())
            .await
            .unwrap();
        out.push(Arc::new(g));
    }
    out
}

/// Proposals to the *same* range share fsyncs too: the log reports an append flushed once
/// written, and the proposers wait for the group's fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_range_concurrent_proposals_share_fsyncs() {
    let (slow, engine) = slow_engine(20);
    let wal = wal(&engine);
    let g = groups_on(&wal, 1).await.pop().unwrap();
    let before = slow.syncs();
    let (writers, rounds) = (8u8, 5u8);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let g = g.clone();
        tasks.spawn(async move {
            for r in 0..rounds {
                let mut b = Batch::new();
                mvcc::put_version(&mut b, &[0, w, r], Ts(1), Some(b"v"));
                g.propose(b).await.unwrap();
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    let syncs = slow.syncs() - before;
    let proposals = u64::from(writers) * u64::from(rounds);
    assert!(
        syncs <= proposals / 2,
        "{syncs} fsyncs for {proposals} proposals"
    );
    g.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_synced_proposals_share_fsyncs() {
    let (slow, engine) = slow_engine(20);
    let wal = wal(&engine);
    let groups = groups_on(&wal, 8).await;
    let before = slow.syncs();
    let rounds = 5u64;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, g) in groups.iter().enumerate() {
        let g = g.clone();
        tasks.spawn(async move {
            for r in 0..rounds {
                let mut b = Batch::new();
                mvcc::put_version(&mut b, &[i as u8, r as u8], Ts(1 + r), Some(b"v"));
                g.propose(b).await.unwrap();
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    let syncs = slow.syncs() - before;
    let appends = groups.len() as u64 * rounds;
    // Eight ranges append at once; each fsync completes every append queued while the previous
    // one ran, so far fewer fsyncs than appends (one per append without group commit).
    assert!(
        syncs >= rounds && syncs <= appends / 2,
        "{syncs} fsyncs for {appends} appends"
    );
    for (i, _) in groups.iter().enumerate() {
        let key = [i as u8, rounds as u8 - 1];
        assert!(mvcc::get(engine.as_ref(), &key, Ts::MAX).unwrap().is_some());
    }
    for g in &groups {
        g.shutdown().await;
    }
}

#[tokio::test]
async fn deferred_proposals_apply_without_an_fsync() {
    let (slow, engine) = slow_engine(0);
    let wal = wal(&engine);
    let g = groups_on(&wal, 1).await.pop().unwrap();
    let before = slow.syncs();
    for i in 0..10u8 {
        let mut b = Batch::new();
        mvcc::put_version(&mut b, &[0, i], Ts(1), Some(b"d"));
        g.propose_deferred(b).await.unwrap();
        // Applied when the proposal returns.
        assert!(mvcc::get(engine.as_ref(), &[0, i], Ts::MAX)
            .unwrap()
            .is_some());
    }
    assert_eq!(slow.syncs(), before, "deferred entries must not fsync");
    let mut b = Batch::new();
    mvcc::put_version(&mut b, &[0, 99], Ts(1), Some(b"s"));
    g.propose(b).await.unwrap();
    assert_eq!(
        slow.syncs(),
        before + 1,
        "a synced entry waits for one fsync"
    );
    g.shutdown().await;
}

#[tokio::test]
async fn without_deferred_sync_every_append_waits_for_an_fsync() {
    let (slow, engine) = slow_engine(0);
    let cfg = RaftConfig {
        deferred_sync: false,
        ..config()
    };
    let wal = GroupCommit::start(engine.clone(), &cfg).unwrap();
    let g = groups_on(&wal, 1).await.pop().unwrap();
    let before = slow.syncs();
    for i in 0..3u8 {
        let mut b = Batch::new();
        mvcc::put_version(&mut b, &[0, i], Ts(1), Some(b"d"));
        g.propose_deferred(b).await.unwrap();
    }
    assert_eq!(slow.syncs(), before + 3);
    g.shutdown().await;
}

/// The first entry index left in `range_id`'s log.
fn first_log_index(engine: &dyn Engine, range_id: RangeId) -> Option<u64> {
    let own = range_id.to_be_bytes();
    let mut first = None;
    engine
        .scan(Cf::RaftLog, &own, None, &mut |k, _| {
            if k.starts_with(&own) {
                first = Some(u64::from_be_bytes(k[8..16].try_into().unwrap()));
            }
            false
        })
        .unwrap();
    first
}

/// A group whose log was purged after a snapshot reopens with its data and keeps going: the
/// purge point is read back as the type it was written as (it once was not, and every such
/// store failed to open).
#[tokio::test]
async fn a_purged_log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RaftConfig {
        snapshot_logs_since_last: 10,
        log_entries_kept_after_snapshot: 3,
        ..RaftConfig::default()
    };
    let put = |i: u64| {
        let mut b = Batch::new();
        mvcc::put_version(
            &mut b,
            format!("k{i:03}").as_bytes(),
            Ts(100 + i),
            Some(b"v"),
        );
        b
    };
    {
        let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let wal = GroupCommit::start(engine.clone(), &cfg).unwrap();
        let g = RaftGroup::open(&wal, 3, 1, span_all(), &cfg).await.unwrap();
        for i in 0..60 {
            g.propose(put(i)).await.unwrap();
        }
        // Snapshots and purges run in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while first_log_index(engine.as_ref(), 3).unwrap_or(0) < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was never purged"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        g.shutdown().await;
    }
    for round in 0..2u64 {
        let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let wal = GroupCommit::start(engine.clone(), &cfg).unwrap();
        let g = RaftGroup::open(&wal, 3, 1, span_all(), &cfg).await.unwrap();
        g.propose(put(100 + round)).await.unwrap();
        for i in (0..60).chain(100..=100 + round) {
            let key = format!("k{i:03}");
            assert!(
                mvcc::get(engine.as_ref(), key.as_bytes(), Ts::MAX)
                    .unwrap()
                    .is_some(),
                "{key} lost after reopen {round}"
            );
        }
        g.shutdown().await;
    }
}

/// Few but large entries (a bulk load's) are compacted by bytes: the whole log up to the
/// snapshot goes, though far fewer entries than `snapshot_logs_since_last` were appended.
#[tokio::test]
async fn a_log_of_large_entries_is_compacted_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RaftConfig {
        snapshot_logs_since_last: 1_000_000,
        snapshot_log_bytes_max: 64 << 10,
        ..RaftConfig::default()
    };
    let big = |i: u64| {
        let mut b = Batch::new();
        let value = vec![b'x'; 16 << 10];
        mvcc::put_version(
            &mut b,
            format!("k{i:03}").as_bytes(),
            Ts(100 + i),
            Some(&value),
        );
        b
    };
    {
        let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let wal = GroupCommit::start(engine.clone(), &cfg).unwrap();
        let g = RaftGroup::open(&wal, 4, 1, span_all(), &cfg).await.unwrap();
        for i in 0..40 {
            g.propose(big(i)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Compacted: the log up to the applied index is gone (all of it, or all but the
        // entries appended since).
        while first_log_index(engine.as_ref(), 4).is_some_and(|i| i < 20) {
            assert!(
                std::time::Instant::now() < deadline,
                "40 entries of 16 KiB were never compacted (first entry {:?})",
                first_log_index(engine.as_ref(), 4)
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        g.shutdown().await;
    }
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
    let wal = GroupCommit::start(engine.clone(), &cfg).unwrap();
    let g = RaftGroup::open(&wal, 4, 1, span_all(), &cfg).await.unwrap();
    g.propose(big(99)).await.unwrap();
    for i in (0..40).chain([99]) {
        let v = mvcc::get(engine.as_ref(), format!("k{i:03}").as_bytes(), Ts::MAX).unwrap();
        assert_eq!(v.map(|v| v.len()), Some(16 << 10), "k{i:03} after reopen");
    }
    g.shutdown().await;
}
