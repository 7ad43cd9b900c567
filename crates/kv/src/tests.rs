use std::sync::Arc;

use kestrel_storage::{mvcc, Cf, Engine, RocksEngine, Ts};

use crate::keys::table_span;
use crate::{Kv, KvConfig, KvError};

async fn open(dir: &std::path::Path) -> Arc<Kv> {
    open_with(dir, KvConfig::default()).await
}

async fn open_with(dir: &std::path::Path, config: KvConfig) -> Arc<Kv> {
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir).unwrap());
    Kv::open(engine, config).await.unwrap()
}

/// The two multi-range commit protocols: local (one entry per range) and two-phase.
fn protocols() -> [KvConfig; 2] {
    [false, true].map(|two_phase_always| KvConfig {
        two_phase_always,
        ..KvConfig::default()
    })
}

fn key(table: u32, k: &str) -> Vec<u8> {
    let mut v = table_span(table).0;
    v.extend_from_slice(k.as_bytes());
    v
}

#[tokio::test]
async fn bootstrap_creates_meta_system_and_table_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let ids: Vec<u64> = kv.ranges().iter().map(|d| d.range_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    kv.shutdown().await;
}

#[tokio::test]
async fn snapshot_isolation_and_read_your_writes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let mut w = kv.begin();
    w.put(key(1, "a"), b"1".to_vec()).unwrap();
    assert_eq!(w.get(&key(1, "a")).await.unwrap(), Some(b"1".to_vec()));
    let early = kv.begin();
    w.commit().await.unwrap();
    assert_eq!(
        early.get(&key(1, "a")).await.unwrap(),
        None,
        "snapshot taken before the commit"
    );
    assert_eq!(
        kv.begin().get(&key(1, "a")).await.unwrap(),
        Some(b"1".to_vec())
    );
    kv.shutdown().await;
}

#[tokio::test]
async fn write_write_conflict_aborts_second_committer() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let mut a = kv.begin();
    let mut b = kv.begin();
    a.put(key(1, "x"), b"a".to_vec()).unwrap();
    b.put(key(1, "x"), b"b".to_vec()).unwrap();
    a.commit().await.unwrap();
    let err = b.commit().await.unwrap_err();
    assert!(matches!(err, KvError::WriteConflict { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        kv.begin().get(&key(1, "x")).await.unwrap(),
        Some(b"a".to_vec())
    );
    kv.shutdown().await;
}

#[tokio::test]
async fn insert_over_live_row_is_duplicate_key() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let mut a = kv.begin();
    a.insert(key(1, "k"), b"1".to_vec()).unwrap();
    a.commit().await.unwrap();
    let mut b = kv.begin();
    b.insert(key(1, "k"), b"2".to_vec()).unwrap();
    assert!(matches!(
        b.commit().await.unwrap_err(),
        KvError::DuplicateKey { .. }
    ));
    // After a delete the key is free again.
    let mut c = kv.begin();
    c.delete(key(1, "k")).unwrap();
    c.commit().await.unwrap();
    let mut d = kv.begin();
    d.insert(key(1, "k"), b"3".to_vec()).unwrap();
    d.commit().await.unwrap();
    kv.shutdown().await;
}

#[tokio::test]
async fn scan_merges_own_writes_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let mut t = kv.begin();
    for i in 0..10 {
        t.put(key(1, &format!("{i}")), vec![i]).unwrap();
    }
    t.commit().await.unwrap();
    let mut t = kv.begin();
    t.delete(key(1, "3")).unwrap();
    t.put(key(1, "35"), b"new".to_vec()).unwrap();
    let (start, end) = table_span(1);
    let mut all = vec![];
    let mut from = start.clone();
    loop {
        let (rows, resume) = t.scan(&from, Some(&end), 4).await.unwrap();
        all.extend(
            rows.into_iter()
                .map(|(k, _)| String::from_utf8(k[start.len()..].to_vec()).unwrap()),
        );
        match resume {
            Some(r) => from = r,
            None => break,
        }
    }
    assert_eq!(all, vec!["0", "1", "2", "35", "4", "5", "6", "7", "8", "9"]);
    kv.shutdown().await;
}

/// Every pair of `[start, end)` through `scan_visit`, resuming after limits and early stops.
async fn visit_all(
    t: &crate::Txn,
    start: &[u8],
    end: &[u8],
    limit: usize,
    stop_every: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    let mut from = start.to_vec();
    loop {
        let mut taken = 0;
        let resume = t
            .scan_visit(&from, Some(end), limit, limit == 1, &mut |k, v| {
                all.push((k.to_vec(), v.to_vec()));
                taken += 1;
                taken % stop_every != 0
            })
            .await
            .unwrap();
        match resume {
            Some(r) => from = r,
            None => return all,
        }
    }
}

#[tokio::test]
async fn scan_visit_agrees_with_scan_across_ranges_and_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = two_range_store(dir.path()).await;
    let mut t = kv.begin();
    for table in [7, 8] {
        for i in 0..30u8 {
            t.put(key(table, &format!("{i:02}")), vec![table as u8, i])
                .unwrap();
        }
    }
    t.commit().await.unwrap();
    let (start, end) = (table_span(7).0, table_span(8).1);
    let mut writer = kv.begin();
    writer.delete(key(7, "03")).unwrap();
    writer.put(key(8, "035"), b"new".to_vec()).unwrap();
    let reader = kv.begin();
    for t in [&reader, &writer] {
        let (want, resume) = t.scan(&start, Some(&end), 1000).await.unwrap();
        assert!(resume.is_none());
        assert_eq!(want.len(), 60);
        for limit in [1, 4, 29, 1000] {
            for stop_every in [1, 7, usize::MAX] {
                let got = visit_all(t, &start, &end, limit, stop_every).await;
                assert_eq!(got, want, "limit {limit}, stop every {stop_every}");
            }
        }
    }
    assert!(
        reader.read_spans_to_validate() > 0,
        "scan_visit records its reads"
    );
    kv.shutdown().await;
}

/// The rows of `[start, end)` `t` scans with `scan_visit_stats`, and the stats.
async fn scan_stats(t: &crate::Txn, start: &[u8], end: &[u8]) -> (usize, crate::ScanStats) {
    let mut stats = crate::ScanStats::default();
    let mut rows = 0;
    let mut visit = |_: &[u8], _: &[u8]| {
        rows += 1;
        true
    };
    let resume = t
        .scan_visit_stats(start, Some(end), 1000, false, &mut visit, &mut stats)
        .await
        .unwrap();
    assert!(resume.is_none());
    (rows, stats)
}

/// A span's stamp changes with every commit applied to a range it overlaps and with nothing
/// else; `scan_visit_stats` reports the newest version reached and own writes merged in.
#[tokio::test]
async fn span_stamps_and_scan_stats_follow_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = two_range_store(dir.path()).await;
    let (start, end) = (table_span(7).0, table_span(8).1);
    let mut t = kv.begin();
    for table in [7, 8] {
        for i in 0..5u8 {
            t.put(key(table, &format!("{i}")), vec![i]).unwrap();
        }
    }
    t.commit().await.unwrap();
    let reader = kv.begin();
    let stamp = reader.stamp_span(&start, &end).await.unwrap().unwrap();
    assert_eq!(stamp.0.len(), 2, "one generation per overlapped range");
    let (rows, stats) = scan_stats(&reader, &start, &end).await;
    assert_eq!(rows, 10);
    assert!(!stats.own_writes && stats.newest > crate::Ts::ZERO);
    assert!(stats.newest <= reader.read_ts());
    // Reading changes nothing.
    assert_eq!(kv.span_stamp(&start, &end), stamp);
    // A commit to table 8 changes the stamp of the span and of table 8's range alone.
    let stamp7 = kv.span_stamp(&table_span(7).0, &table_span(7).1);
    let mut w = kv.begin();
    w.put(key(8, "9"), b"late".to_vec()).unwrap();
    w.commit().await.unwrap();
    assert_ne!(kv.span_stamp(&start, &end), stamp);
    assert_eq!(kv.span_stamp(&table_span(7).0, &table_span(7).1), stamp7);
    // The older reader does not see the row, but its scan reports a newer version.
    let (rows, stats) = scan_stats(&reader, &start, &end).await;
    assert_eq!(rows, 10);
    assert!(stats.newest > reader.read_ts());
    // Own writes: no stamp, and a scan says it merged them.
    let mut own = kv.begin();
    own.put(key(7, "7"), b"mine".to_vec()).unwrap();
    assert!(own.stamp_span(&start, &end).await.unwrap().is_none());
    assert!(own
        .stamp_span(&table_span(8).0, &table_span(8).1)
        .await
        .unwrap()
        .is_some());
    let (rows, stats) = scan_stats(&own, &start, &end).await;
    assert_eq!(rows, 12);
    assert!(stats.own_writes);
    kv.shutdown().await;
}

#[tokio::test]
async fn split_out_gives_tables_their_own_ranges_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = open(dir.path()).await;
        let (s, e) = table_span(100);
        let id = kv.split_out(&s, &e).await.unwrap();
        assert_eq!(kv.split_out(&s, &e).await.unwrap(), id, "idempotent");
        let (s2, e2) = table_span(101);
        let id2 = kv.split_out(&s2, &e2).await.unwrap();
        assert_ne!(id, id2);
        let mut t = kv.begin();
        t.put(key(100, "a"), b"x".to_vec()).unwrap();
        t.commit().await.unwrap();
        kv.shutdown().await;
    }
    let kv = open(dir.path()).await;
    let ranges = kv.ranges();
    assert!(ranges
        .iter()
        .any(|d| d.start == table_span(100).0 && d.end == Some(table_span(100).1)));
    assert!(ranges
        .iter()
        .any(|d| d.start == table_span(101).0 && d.end == Some(table_span(101).1)));
    assert_eq!(
        kv.begin().get(&key(100, "a")).await.unwrap(),
        Some(b"x".to_vec())
    );
    kv.shutdown().await;
}

async fn two_range_store(dir: &std::path::Path) -> Arc<Kv> {
    two_range_store_with(dir, KvConfig::default()).await
}

async fn two_range_store_with(dir: &std::path::Path, config: KvConfig) -> Arc<Kv> {
    let kv = open_with(dir, config).await;
    for t in [7, 8] {
        let (s, e) = table_span(t);
        kv.split_out(&s, &e).await.unwrap();
    }
    kv
}

#[tokio::test]
async fn two_range_transaction_commits_atomically() {
    for config in protocols() {
        two_range_commit_is_atomic(config).await;
    }
}

async fn two_range_commit_is_atomic(config: KvConfig) {
    let dir = tempfile::tempdir().unwrap();
    let kv = two_range_store_with(dir.path(), config).await;
    let mut t = kv.begin();
    t.put(key(7, "a"), b"1".to_vec()).unwrap();
    t.put(key(8, "b"), b"2".to_vec()).unwrap();
    t.commit().await.unwrap();
    let r = kv.begin();
    assert_eq!(r.get(&key(7, "a")).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(r.get(&key(8, "b")).await.unwrap(), Some(b"2".to_vec()));
    // A conflicting two-range transaction leaves nothing behind.
    let mut x = kv.begin();
    let mut y = kv.begin();
    x.put(key(7, "a"), b"x".to_vec()).unwrap();
    x.put(key(8, "c"), b"x".to_vec()).unwrap();
    y.put(key(7, "z"), b"y".to_vec()).unwrap();
    y.put(key(8, "b"), b"y".to_vec()).unwrap();
    let mut z = kv.begin();
    z.put(key(7, "q"), b"z".to_vec()).unwrap();
    z.put(key(8, "c"), b"z".to_vec()).unwrap();
    x.commit().await.unwrap();
    // z conflicts with x in range 8 (two-phase: after prewriting range 7, which it must roll
    // back).
    assert!(matches!(
        z.commit().await.unwrap_err(),
        KvError::WriteConflict { .. }
    ));
    let r = kv.begin();
    assert_eq!(
        r.get(&key(7, "q")).await.unwrap(),
        None,
        "aborted prewrite rolled back"
    );
    y.commit().await.unwrap();
    assert_eq!(
        kv.begin().get(&key(8, "b")).await.unwrap(),
        Some(b"y".to_vec())
    );
    // No lock of z is left behind: its key is writable.
    let mut w = kv.begin();
    w.put(key(7, "q"), b"w".to_vec()).unwrap();
    w.commit().await.unwrap();
    kv.shutdown().await;
}

#[tokio::test]
async fn recovery_finishes_committed_and_aborts_uncommitted_two_phase() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = two_range_store(dir.path()).await;
        let mut committed = kv.begin();
        committed.put(key(7, "c1"), b"yes".to_vec()).unwrap();
        committed.put(key(8, "c2"), b"yes".to_vec()).unwrap();
        committed.commit_stop_after_record().await.unwrap();
        let mut prepared = kv.begin();
        prepared.put(key(7, "p1"), b"no".to_vec()).unwrap();
        prepared.put(key(8, "p2"), b"no".to_vec()).unwrap();
        prepared.commit_stop_after_prewrite().await.unwrap();
        kv.shutdown().await;
    }
    let kv = open(dir.path()).await;
    let r = kv.begin();
    assert_eq!(r.get(&key(7, "c1")).await.unwrap(), Some(b"yes".to_vec()));
    assert_eq!(r.get(&key(8, "c2")).await.unwrap(), Some(b"yes".to_vec()));
    assert_eq!(r.get(&key(7, "p1")).await.unwrap(), None);
    assert_eq!(r.get(&key(8, "p2")).await.unwrap(), None);
    // The aborted transaction's locks are gone: its keys are writable again.
    let mut w = kv.begin();
    w.put(key(7, "p1"), b"ok".to_vec()).unwrap();
    w.put(key(8, "c2"), b"ok".to_vec()).unwrap();
    w.commit().await.unwrap();
    kv.shutdown().await;
}

/// A crash right after a local multi-range commit's commit point: recovery writes the other
/// range's versions from the redo record and deletes it.
#[tokio::test]
async fn recovery_applies_the_redo_record_of_a_local_commit() {
    let dir = tempfile::tempdir().unwrap();
    let commit_ts = {
        let kv = two_range_store(dir.path()).await;
        let mut t = kv.begin();
        t.put(key(7, "a"), b"primary".to_vec()).unwrap();
        t.put(key(8, "b"), b"other".to_vec()).unwrap();
        t.delete(key(8, "gone")).unwrap();
        let commit_ts = t.commit_local_stop_after_redo().await.unwrap();
        assert_eq!(mvcc::scan_redo(kv.engine.as_ref()).unwrap().len(), 1);
        assert_eq!(
            mvcc::get_version(kv.engine.as_ref(), &key(8, "b"), Ts::MAX).unwrap(),
            None,
            "not applied before the crash"
        );
        kv.shutdown().await;
        commit_ts
    };
    let kv = open(dir.path()).await;
    assert!(mvcc::scan_redo(kv.engine.as_ref()).unwrap().is_empty());
    let r = kv.begin();
    assert!(
        r.read_ts() > commit_ts,
        "the clock is past the recovered commit"
    );
    assert_eq!(
        r.get(&key(7, "a")).await.unwrap(),
        Some(b"primary".to_vec())
    );
    assert_eq!(r.get(&key(8, "b")).await.unwrap(), Some(b"other".to_vec()));
    assert_eq!(
        mvcc::get_version(kv.engine.as_ref(), &key(8, "b"), Ts::MAX).unwrap(),
        Some((commit_ts, Some(b"other".to_vec())))
    );
    assert_eq!(
        mvcc::get_version(kv.engine.as_ref(), &key(8, "gone"), Ts::MAX).unwrap(),
        Some((commit_ts, None)),
        "the delete is a tombstone at the commit timestamp"
    );
    kv.shutdown().await;
}

/// Between a local multi-range commit's commit point and the other range's entry, the keys
/// of that range are covered: a reader at or above the commit timestamp waits for the entry
/// (then sees the commit), and a writer that read before the commit waits for the latch (then
/// conflicts) — there are no locks to stop them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commit_covers_the_other_ranges_until_they_applied() {
    let dir = tempfile::tempdir().unwrap();
    let kv = two_range_store(dir.path()).await;
    let mut setup = kv.begin();
    setup.put(key(8, "b"), b"old".to_vec()).unwrap();
    setup.commit().await.unwrap();
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (resume, resume_rx) = tokio::sync::oneshot::channel();
    *kv.test_hooks.pause_after_commit_point.lock() = Some((reached_tx, resume_rx));
    let mut stale = kv.begin();
    assert_eq!(
        stale.get(&key(8, "b")).await.unwrap(),
        Some(b"old".to_vec())
    );
    let mut t = kv.begin();
    t.put(key(7, "a"), b"new".to_vec()).unwrap();
    t.put(key(8, "b"), b"new".to_vec()).unwrap();
    let commit = tokio::spawn(async move { t.commit().await });
    reached.await.unwrap();

    let engine = kv.engine.as_ref();
    let newest = |k: &[u8]| mvcc::get_version(engine, k, Ts::MAX).unwrap().unwrap().1;
    assert_eq!(
        newest(&key(7, "a")),
        Some(b"new".to_vec()),
        "the commit point"
    );
    assert_eq!(
        newest(&key(8, "b")),
        Some(b"old".to_vec()),
        "not applied yet"
    );
    let reader = {
        let kv = kv.clone();
        tokio::spawn(async move { kv.begin().get(&key(8, "b")).await })
    };
    stale.put(key(8, "b"), b"stale".to_vec()).unwrap();
    let writer = tokio::spawn(async move { stale.commit().await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !reader.is_finished(),
        "a reader saw the commit half applied"
    );
    assert!(
        !writer.is_finished(),
        "a writer got past the commit's latches"
    );

    resume.send(()).unwrap();
    commit.await.unwrap().unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), Some(b"new".to_vec()));
    let err = writer.await.unwrap().unwrap_err();
    assert!(matches!(err, KvError::WriteConflict { .. }), "{err:?}");
    kv.shutdown().await;
}

/// Redo records queued for deletion are deleted before a shutdown returns, and before a span
/// is cleared (so that recovery never writes versions back into a dropped table's span).
#[tokio::test]
async fn shutdown_and_clear_span_flush_the_redo_cleaner() {
    let dir = tempfile::tempdir().unwrap();
    let config = KvConfig {
        redo_cleanup_delay_ms: 60_000,
        ..KvConfig::default()
    };
    let count = |kv: &Kv| mvcc::scan_redo(kv.engine.as_ref()).unwrap().len();
    {
        let kv = two_range_store_with(dir.path(), config.clone()).await;
        let mut t = kv.begin();
        t.put(key(7, "a"), b"1".to_vec()).unwrap();
        t.put(key(8, "b"), b"1".to_vec()).unwrap();
        t.commit().await.unwrap();
        assert_eq!(count(&kv), 1, "waiting in the cleaner's queue");
        let (s, e) = table_span(8);
        kv.clear_span(&s, &e).await.unwrap();
        assert_eq!(count(&kv), 0);
        let mut t = kv.begin();
        t.put(key(7, "c"), b"2".to_vec()).unwrap();
        t.put(key(8, "d"), b"2".to_vec()).unwrap();
        t.commit().await.unwrap();
        assert_eq!(count(&kv), 1);
        kv.shutdown().await;
        assert_eq!(count(&kv), 0);
    }
    let kv = open_with(dir.path(), config).await;
    let r = kv.begin();
    assert_eq!(
        r.get(&key(8, "b")).await.unwrap(),
        None,
        "cleared, not recovered"
    );
    assert_eq!(r.get(&key(8, "d")).await.unwrap(), Some(b"2".to_vec()));
    kv.shutdown().await;
}

/// A local multi-range commit writes no locks and no transaction record, and its redo record
/// is deleted once the other ranges applied their versions.
#[tokio::test]
async fn local_commit_leaves_no_locks_records_or_redo() {
    let dir = tempfile::tempdir().unwrap();
    let kv = two_range_store(dir.path()).await;
    let before = crate::metrics::METRICS.commits_local_multi_range.get();
    for i in 0..20 {
        let mut t = kv.begin();
        t.put(key(7, &format!("a{i}")), b"1".to_vec()).unwrap();
        t.put(key(8, &format!("b{i}")), b"2".to_vec()).unwrap();
        t.commit().await.unwrap();
    }
    assert!(crate::metrics::METRICS.commits_local_multi_range.get() >= before + 20);
    let count = |cf: Cf| {
        let mut n = 0;
        kv.engine
            .scan(cf, b"", None, &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
        n
    };
    assert_eq!((count(Cf::Locks), count(Cf::Txns)), (0, 0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(Cf::Redo) > 0 {
        assert!(std::time::Instant::now() < deadline, "redo records stay");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = kv.begin();
    assert_eq!(r.get(&key(8, "b19")).await.unwrap(), Some(b"2".to_vec()));
    kv.shutdown().await;
}

#[tokio::test]
async fn txn_write_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
    let kv = Kv::open(
        engine,
        KvConfig {
            txn_write_bytes_max: 1000,
            ..KvConfig::default()
        },
    )
    .await
    .unwrap();
    let mut t = kv.begin();
    let err = t.put(key(1, "big"), vec![0; 2000]).unwrap_err();
    assert!(matches!(err, KvError::TxnTooLarge { .. }));
    kv.shutdown().await;
}

/// Two doctors on call; each transaction checks that the other is on call and takes itself
/// off. Under snapshot isolation both commit (write skew); serializable aborts the second.
async fn doctors(kv: &Arc<Kv>, isolation: crate::Isolation) -> (bool, bool) {
    let mut setup = kv.begin();
    setup.put(key(1, "alice"), b"on".to_vec()).unwrap();
    setup.put(key(1, "bob"), b"on".to_vec()).unwrap();
    setup.commit().await.unwrap();
    let mut a = kv.begin();
    let mut b = kv.begin();
    a.set_isolation(isolation);
    b.set_isolation(isolation);
    let (start, end) = table_span(1);
    let on_call = |rows: &Vec<(Vec<u8>, Vec<u8>)>| rows.iter().filter(|(_, v)| v == b"on").count();
    let (ra, _) = a.scan(&start, Some(&end), 100).await.unwrap();
    let (rb, _) = b.scan(&start, Some(&end), 100).await.unwrap();
    assert_eq!((on_call(&ra), on_call(&rb)), (2, 2));
    a.put(key(1, "alice"), b"off".to_vec()).unwrap();
    b.put(key(1, "bob"), b"off".to_vec()).unwrap();
    let ok_a = a.commit().await.is_ok();
    let res_b = b.commit().await;
    if let Err(e) = &res_b {
        assert!(matches!(e, KvError::ReadConflict { .. }), "{e:?}");
        assert!(e.is_retryable());
    }
    (ok_a, res_b.is_ok())
}

#[tokio::test]
async fn serializable_prevents_write_skew() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    assert_eq!(
        doctors(&kv, crate::Isolation::Serializable).await,
        (true, false)
    );
    kv.shutdown().await;
}

#[tokio::test]
async fn snapshot_isolation_allows_write_skew() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    assert_eq!(doctors(&kv, crate::Isolation::Snapshot).await, (true, true));
    kv.shutdown().await;
}

#[tokio::test]
async fn serializable_read_conflict_across_ranges() {
    for config in protocols() {
        read_conflict_across_ranges(config).await;
    }
}

async fn read_conflict_across_ranges(config: KvConfig) {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_with(dir.path(), config).await;
    let (s1, e1) = table_span(1);
    kv.split_out(&s1, &e1).await.unwrap();
    // t reads table 2 and writes tables 1 and 2 (two ranges); w writes the key t read.
    let mut t = kv.begin();
    assert_eq!(t.get(&key(2, "r")).await.unwrap(), None);
    let mut w = kv.begin();
    w.put(key(2, "r"), b"w".to_vec()).unwrap();
    w.commit().await.unwrap();
    t.put(key(1, "x"), b"t".to_vec()).unwrap();
    t.put(key(2, "y"), b"t".to_vec()).unwrap();
    let err = t.commit().await.unwrap_err();
    assert!(matches!(err, KvError::ReadConflict { .. }), "{err:?}");
    // Nothing of t is visible and no lock is left behind: a later writer succeeds.
    let r = kv.begin();
    assert_eq!(r.get(&key(1, "x")).await.unwrap(), None);
    let mut again = kv.begin();
    again.put(key(1, "x"), b"2".to_vec()).unwrap();
    again.commit().await.unwrap();
    kv.shutdown().await;
}

#[tokio::test]
async fn savepoint_rolls_back_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let mut t = kv.begin();
    t.put(key(1, "a"), b"1".to_vec()).unwrap();
    let sp = t.savepoint();
    t.put(key(1, "b"), b"2".to_vec()).unwrap();
    t.delete(key(1, "a")).unwrap();
    assert_eq!(t.get(&key(1, "a")).await.unwrap(), None);
    t.rollback_to(&sp);
    assert_eq!(t.get(&key(1, "a")).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(t.get(&key(1, "b")).await.unwrap(), None);
    t.commit().await.unwrap();
    let r = kv.begin();
    assert_eq!(r.get(&key(1, "a")).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(r.get(&key(1, "b")).await.unwrap(), None);
    kv.shutdown().await;
}

/// `Txn::get_cached` answers exactly what `Txn::get` does, for snapshots older and newer than
/// the cached versions, across one- and two-phase commits, deletes and own writes — and does
/// answer from the cache.
#[tokio::test]
async fn cached_reads_agree_with_plain_reads() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let hits_before = crate::KvMetrics::get().read_cache_hits.get();
    let keys: Vec<Vec<u8>> = ["\x03desc/a", "\x03desc/b", "\x03desc/c"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut snapshots = Vec::new();
    for step in 0..400u32 {
        match next(4) {
            0 => {
                let mut w = kv.begin();
                let k = keys[next(3) as usize].clone();
                if next(4) == 0 {
                    w.delete(k).unwrap();
                } else {
                    w.put(k, step.to_be_bytes().to_vec()).unwrap();
                }
                if next(2) == 0 {
                    // A table row too: a two-phase commit (locks, record, resolution).
                    w.put(key(1, "row"), step.to_be_bytes().to_vec()).unwrap();
                }
                w.commit().await.unwrap();
            }
            1 => {
                snapshots.push(kv.begin());
                if snapshots.len() > 6 {
                    snapshots.remove(0);
                }
            }
            _ => {
                let fresh = kv.begin();
                let t = match snapshots.len() {
                    0 => &fresh,
                    n => match next(n as u64 + 1) as usize {
                        i if i < n => &snapshots[i],
                        _ => &fresh,
                    },
                };
                for k in &keys {
                    let cached = t.get_cached(k).await.unwrap();
                    let plain = t.get(k).await.unwrap();
                    assert_eq!(cached, plain, "step {step}, key {k:?}");
                }
            }
        }
    }
    // Own writes come first.
    let mut w = kv.begin();
    w.put(keys[0].clone(), b"mine".to_vec()).unwrap();
    assert_eq!(
        w.get_cached(&keys[0]).await.unwrap(),
        Some(b"mine".to_vec())
    );
    w.delete(keys[1].clone()).unwrap();
    assert_eq!(w.get_cached(&keys[1]).await.unwrap(), None);
    assert!(
        crate::KvMetrics::get().read_cache_hits.get() > hits_before,
        "some reads were answered by the cache"
    );
    kv.shutdown().await;
}

/// Commit validation skips a key read through the cache while its range is unchanged and a
/// key the transaction writes — and still fails on every stale read: a cached key written
/// since, or locked by a transaction in the middle of its commit.
#[tokio::test]
async fn validation_skips_clean_and_written_keys_but_not_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let (s1, e1) = table_span(1);
    kv.split_out(&s1, &e1).await.unwrap();
    let desc = |n: &str| format!("\x03desc/{n}").into_bytes();
    let mut setup = kv.begin();
    for n in ["a", "b", "c"] {
        setup.put(desc(n), b"v1".to_vec()).unwrap();
    }
    setup.put(key(1, "row"), b"0".to_vec()).unwrap();
    setup.commit().await.unwrap();

    // Clean cached key (a miss that fills, then a hit) and a read-then-written row: nothing
    // to validate.
    let mut t = kv.begin();
    assert_eq!(
        t.get_cached(&desc("a")).await.unwrap(),
        Some(b"v1".to_vec())
    );
    assert_eq!(
        t.get_cached(&desc("a")).await.unwrap(),
        Some(b"v1".to_vec())
    );
    assert_eq!(t.get(&key(1, "row")).await.unwrap(), Some(b"0".to_vec()));
    t.put(key(1, "row"), b"1".to_vec()).unwrap();
    assert_eq!(t.read_spans_to_validate(), 0, "clean and written keys");
    t.commit().await.unwrap();

    // A cached key written after the read: validated, and the commit fails.
    let mut t = kv.begin();
    assert_eq!(
        t.get_cached(&desc("a")).await.unwrap(),
        Some(b"v1".to_vec())
    );
    let mut w = kv.begin();
    w.put(desc("a"), b"v2".to_vec()).unwrap();
    w.commit().await.unwrap();
    t.put(key(1, "x"), b"t".to_vec()).unwrap();
    assert_eq!(t.read_spans_to_validate(), 1);
    let err = t.commit().await.unwrap_err();
    assert!(matches!(err, KvError::ReadConflict { .. }), "{err:?}");

    // A row read and written by t but committed by w in between: still a conflict.
    let mut t = kv.begin();
    assert_eq!(t.get(&key(1, "row")).await.unwrap(), Some(b"1".to_vec()));
    let mut w = kv.begin();
    w.put(key(1, "row"), b"w".to_vec()).unwrap();
    w.commit().await.unwrap();
    t.put(key(1, "row"), b"t".to_vec()).unwrap();
    t.put(desc("c"), b"t".to_vec()).unwrap();
    assert!(t.commit().await.is_err(), "lost update");

    // A cached key (its entry filled before) locked by a commit that stopped after its
    // prewrite: the read sees no newer version, but the lock must fail validation.
    assert_eq!(
        kv.begin().get_cached(&desc("b")).await.unwrap(),
        Some(b"v1".to_vec())
    );
    let mut p = kv.begin();
    p.put(desc("b"), b"p".to_vec()).unwrap();
    p.put(key(1, "p"), b"p".to_vec()).unwrap();
    p.commit_stop_after_prewrite().await.unwrap();
    let mut t = kv.begin();
    assert_eq!(
        t.get_cached(&desc("b")).await.unwrap(),
        Some(b"v1".to_vec())
    );
    t.put(key(1, "y"), b"t".to_vec()).unwrap();
    assert_eq!(t.read_spans_to_validate(), 1);
    let err = t.commit().await.unwrap_err();
    assert!(matches!(err, KvError::ReadConflict { .. }), "{err:?}");
    kv.shutdown().await;
}

/// A large write set (its locks read with one scan, its versions with one cursor) meets the
/// same checks as a small one: duplicate keys, foreign locks, newer versions — wherever in
/// the set they are.
#[tokio::test]
async fn large_write_sets_are_evaluated_like_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let (s1, e1) = table_span(1);
    kv.split_out(&s1, &e1).await.unwrap();
    let k = |i: u32| key(1, &format!("k{i:03}"));
    let mut setup = kv.begin();
    setup.put(k(50), b"old".to_vec()).unwrap();
    setup.put(k(61), b"old".to_vec()).unwrap();
    setup.delete(k(62)).unwrap();
    setup.commit().await.unwrap();

    let mut t = kv.begin();
    for i in 0..100 {
        t.insert(k(i), b"t".to_vec()).unwrap();
    }
    let err = t.commit().await.unwrap_err();
    assert!(
        matches!(&err, KvError::DuplicateKey { key } if *key == k(50)),
        "{err:?}"
    );

    // A lock of a commit stopped after its prewrite.
    let mut p = kv.begin();
    p.put(k(70), b"p".to_vec()).unwrap();
    p.put(key(2, "p"), b"p".to_vec()).unwrap();
    p.commit_stop_after_prewrite().await.unwrap();
    let mut t = kv.begin();
    for i in 51..100 {
        t.put(k(i), b"t".to_vec()).unwrap();
    }
    let err = t.commit().await.unwrap_err();
    assert!(
        matches!(&err, KvError::WriteConflict { key } if *key == k(70)),
        "{err:?}"
    );

    // A version newer than the snapshot.
    let mut t = kv.begin();
    let mut w = kv.begin();
    w.put(k(90), b"w".to_vec()).unwrap();
    w.commit().await.unwrap();
    for i in 80..100 {
        t.put(k(i), b"t".to_vec()).unwrap();
    }
    let err = t.commit().await.unwrap_err();
    assert!(
        matches!(&err, KvError::WriteConflict { key } if *key == k(90)),
        "{err:?}"
    );

    // Inserting over a deleted row and next to live ones is fine.
    let mut t = kv.begin();
    for i in 62..69 {
        t.insert(k(i), b"t".to_vec()).unwrap();
    }
    for i in 100..130 {
        t.insert(k(i), b"t".to_vec()).unwrap();
    }
    t.commit().await.unwrap();
    assert_eq!(kv.begin().get(&k(62)).await.unwrap(), Some(b"t".to_vec()));
    kv.shutdown().await;
}

/// An engine that writes `after_cursor` right after the next data-cf cursor is created: a
/// two-phase commit's resolution landing in the middle of another commit's evaluation.
struct RacingEngine {
    inner: RocksEngine,
    after_cursor: parking_lot::Mutex<Option<kestrel_storage::Batch>>,
}

impl Engine for RacingEngine {
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
    fn write(&self, batch: &kestrel_storage::Batch, sync: bool) -> kestrel_storage::Result<()> {
        self.inner.write(batch, sync)
    }
    fn sync_wal(&self) -> kestrel_storage::Result<()> {
        self.inner.sync_wal()
    }
    fn cursor<'a>(&'a self, cf: Cf) -> Box<dyn kestrel_storage::Cursor + 'a> {
        let cursor = self.inner.cursor(cf);
        if cf == Cf::Data {
            if let Some(b) = self.after_cursor.lock().take() {
                self.inner.write(&b, false).unwrap();
            }
        }
        cursor
    }
}

/// A commit's evaluation reads a key's lock before its versions: a resolution of another
/// transaction's lock on the key, landing between the two reads, must not hide that
/// transaction's write (an INSERT over its row would otherwise commit a duplicate).
#[tokio::test]
async fn evaluation_sees_a_lock_resolved_during_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(RacingEngine {
        inner: RocksEngine::open(dir.path()).unwrap(),
        after_cursor: parking_lot::Mutex::new(None),
    });
    let kv = Kv::open(engine.clone(), KvConfig::default()).await.unwrap();
    let (s1, e1) = table_span(1);
    kv.split_out(&s1, &e1).await.unwrap();
    let mut t = kv.begin();
    // Another transaction commits across both ranges but has not resolved its lock on
    // table 2's key yet.
    let mut other = kv.begin();
    other.put(key(1, "a"), b"other".to_vec()).unwrap();
    other.put(key(2, "k"), b"other".to_vec()).unwrap();
    let commit_ts = other.commit_stop_after_record().await.unwrap();
    let mut resolution = kestrel_storage::Batch::new();
    mvcc::put_version(&mut resolution, &key(2, "k"), commit_ts, Some(b"other"));
    resolution.delete(Cf::Locks, key(2, "k"));
    *engine.after_cursor.lock() = Some(resolution);
    t.insert(key(2, "k"), b"t".to_vec()).unwrap();
    let err = t.commit().await.unwrap_err();
    assert!(matches!(err, KvError::WriteConflict { .. }), "{err:?}");
    // Reading the lock first, the evaluation stopped at it before any cursor existed.
    *engine.after_cursor.lock() = None;
    kv.shutdown().await;
}

#[tokio::test]
async fn get_for_update_reads_locks_and_detects_stale_rows() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open(dir.path()).await;
    let (row, absent) = (key(1, "row"), key(1, "absent"));
    let mut w = kv.begin();
    w.put(row.clone(), b"1".to_vec()).unwrap();
    w.commit().await.unwrap();

    // The snapshot's value, the row locked (a second locker waits), no lock on a missing row.
    let mut a = kv.begin();
    assert_eq!(
        a.get_for_update(&row).await.unwrap(),
        Some(Some(b"1".to_vec()))
    );
    assert_eq!(a.get_for_update(&absent).await.unwrap(), Some(None));
    assert_eq!(a.locked_keys(), 1, "only the existing row is locked");
    let mut b = kv.begin();
    let waiter = tokio::spawn(async move {
        let res = b.get_for_update(&key(1, "row")).await.unwrap();
        (b, res)
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "the second locker waits for the first"
    );
    a.put(row.clone(), b"2".to_vec()).unwrap();
    a.commit().await.unwrap();
    let (mut b, res) = waiter.await.unwrap();
    assert_eq!(res, None, "a statement that waited runs again");
    // Running again at the same snapshot still sees a newer version: stale.
    assert_eq!(b.get_for_update(&row).await.unwrap(), None);
    b.discard();

    // A version committed after the snapshot, with no lock held: stale.
    let mut c = kv.begin();
    let mut d = kv.begin();
    d.put(row.clone(), b"3".to_vec()).unwrap();
    d.commit().await.unwrap();
    assert_eq!(c.get_for_update(&row).await.unwrap(), None);
    c.discard();
    // A fresh snapshot reads the newest value; its own write is read back.
    let mut e = kv.begin();
    assert_eq!(
        e.get_for_update(&row).await.unwrap(),
        Some(Some(b"3".to_vec()))
    );
    e.put(row.clone(), b"4".to_vec()).unwrap();
    assert_eq!(
        e.get_for_update(&row).await.unwrap(),
        Some(Some(b"4".to_vec()))
    );
    e.discard();

    // A row absent at the snapshot is no row — not a restart — even when it was inserted
    // since, and its key is not waited for while another transaction holds it.
    let (born, held) = (key(1, "born"), key(1, "held"));
    let mut f = kv.begin();
    let mut g = kv.begin();
    g.put(born.clone(), b"new".to_vec()).unwrap();
    g.commit().await.unwrap();
    assert_eq!(f.get_for_update(&born).await.unwrap(), Some(None));
    let mut holder = kv.begin();
    assert!(!holder
        .lock_for_write(std::slice::from_ref(&held))
        .await
        .unwrap());
    let quick = tokio::time::timeout(std::time::Duration::from_secs(2), f.get_for_update(&held))
        .await
        .expect("a missing row's lock is not waited for");
    assert_eq!(quick.unwrap(), Some(None));
    assert_eq!(f.locked_keys(), 0, "no lock kept on missing rows");
    // Deleted by the transaction itself: no row.
    let mut h = kv.begin();
    h.delete(row.clone()).unwrap();
    assert_eq!(h.get_for_update(&row).await.unwrap(), Some(None));
    holder.discard();
    kv.shutdown().await;
}
