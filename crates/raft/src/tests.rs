use std::sync::Arc;

use kestrel_storage::{mvcc, Batch, Engine, RocksEngine, Ts};

use super::*;

fn span_all() -> Span {
    Span {
        start: vec![],
        end: None,
    }
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
        let g = RaftGroup::open(engine.clone(), 7, 1, span_all(), &config())
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
    let g = RaftGroup::open(engine.clone(), 7, 1, span_all(), &config())
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
    let a = RaftGroup::open(
        engine.clone(),
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
        engine.clone(),
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
