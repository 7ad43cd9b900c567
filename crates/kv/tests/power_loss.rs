//! Power loss, simulated: `kill -9` keeps the kernel's page cache, so it never loses a write
//! that was not fsynced. This test runs the KV layer on an engine that remembers which writes
//! a WAL sync covered and, at a "power cut", keeps only the synced prefix plus an arbitrary part
//! of the unsynced suffix (the WAL is recovered as a prefix). Recovery on that state must show
//! every acknowledged commit, whole, and no transaction in part — with one-phase commits, and
//! two-phase commits whose locks and resolutions are deferred to the record's fsync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kestrel_kv::keys::table_span;
use kestrel_kv::{Kv, KvConfig};
use kestrel_storage::{Batch, Cf, Engine, MemEngine};

/// Every write in order, and how many of them the last WAL sync covered.
#[derive(Default)]
struct Wal {
    writes: Vec<Batch>,
    synced: usize,
}

#[derive(Default)]
struct PowerCutEngine {
    live: MemEngine,
    wal: Mutex<Wal>,
}

impl Engine for PowerCutEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> kestrel_storage::Result<Option<Vec<u8>>> {
        self.live.get(cf, key)
    }
    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> kestrel_storage::Result<()> {
        self.live.scan(cf, start, end, visit)
    }
    fn scan_rev(
        &self,
        cf: Cf,
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> kestrel_storage::Result<()> {
        self.live.scan_rev(cf, end, visit)
    }
    fn write(&self, batch: &Batch, sync: bool) -> kestrel_storage::Result<()> {
        // One lock for the WAL record and the memtable: WAL order is apply order.
        let mut wal = self.wal.lock().unwrap();
        self.live.write(batch, false)?;
        wal.writes.push(batch.clone());
        if sync {
            wal.synced = wal.writes.len();
        }
        Ok(())
    }
    fn sync_wal(&self) -> kestrel_storage::Result<()> {
        let mut wal = self.wal.lock().unwrap();
        wal.synced = wal.writes.len();
        Ok(())
    }
}

impl PowerCutEngine {
    /// The state a power cut now would leave: the synced writes and `extra` of the rest.
    fn after_power_cut(&self, extra: usize) -> MemEngine {
        let wal = self.wal.lock().unwrap();
        let keep = (wal.synced + extra).min(wal.writes.len());
        let disk = MemEngine::new();
        for b in &wal.writes[..keep] {
            disk.write(b, false).unwrap();
        }
        disk
    }
}

fn key(table: u32, i: u64) -> Vec<u8> {
    let mut k = table_span(table).0;
    k.extend_from_slice(&i.to_be_bytes());
    k
}

const WRITERS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_a_power_cut_and_none_is_partial() {
    let engine = Arc::new(PowerCutEngine::default());
    let kv = Kv::open(engine.clone(), KvConfig::default()).await.unwrap();
    for t in [7, 8] {
        let (s, e) = table_span(t);
        kv.split_out(&s, &e).await.unwrap();
    }
    // Writer w commits index i = k * WRITERS + w: even k two ranges (2PC), odd k one (1PC).
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (kv, acked, stop) = (kv.clone(), acked.clone(), stop.clone());
        tasks.spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = k * WRITERS + w;
                let mut txn = kv.begin();
                let v = i.to_be_bytes().to_vec();
                txn.put(key(7, i), v.clone()).unwrap();
                if k.is_multiple_of(2) {
                    txn.put(key(8, i), v).unwrap();
                }
                txn.commit().await.unwrap();
                acked.lock().unwrap().push(i);
                k += 1;
            }
        });
    }
    let mut cuts = Vec::new();
    for round in 0..6u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Acknowledged before the cut, so they must survive it.
        let acked_before: Vec<u64> = acked.lock().unwrap().clone();
        cuts.push((acked_before, engine.after_power_cut(round as usize * 3)));
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    kv.shutdown().await;

    for (round, (acked_before, disk)) in cuts.into_iter().enumerate() {
        assert!(
            !acked_before.is_empty(),
            "cut {round}: nothing committed yet"
        );
        let disk: Arc<dyn Engine> = Arc::new(disk);
        let kv = Kv::open(disk, KvConfig::default()).await.unwrap();
        let r = kv.begin();
        for &i in &acked_before {
            assert!(
                r.get(&key(7, i)).await.unwrap().is_some(),
                "cut {round}: acknowledged {i} lost"
            );
        }
        let max = acked_before.iter().max().copied().unwrap_or(0) + 4 * WRITERS;
        for i in 0..=max {
            let two_range = (i / WRITERS).is_multiple_of(2);
            let a = r.get(&key(7, i)).await.unwrap().is_some();
            let b = r.get(&key(8, i)).await.unwrap().is_some();
            if two_range {
                assert_eq!(a, b, "cut {round}: transaction {i} is partial");
            } else {
                assert!(!b, "cut {round}: one-range transaction {i} wrote range 8");
            }
        }
        kv.shutdown().await;
    }
}
