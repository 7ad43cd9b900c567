//! Two-range transactions under `kill -9`: every acknowledged transaction is there whole, and
//! no transaction is visible in one range but not the other. Four writers commit at once, so
//! the crash lands among commits sharing WAL fsyncs and between deferred (unsynced) lock and
//! resolution entries. Rounds alternate the local multi-range commit (a redo record in the
//! primary range's entry, deferred entries in the other) and the two-phase protocol.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kestrel_kv::keys::table_span;
use kestrel_kv::{Kv, KvConfig};
use kestrel_storage::{Engine, RocksEngine};

fn key(table: u32, i: u64) -> Vec<u8> {
    let mut k = table_span(table).0;
    k.extend_from_slice(&i.to_be_bytes());
    k
}

const ROUNDS: usize = 5;
/// The writer's concurrent writers (`kv_crash_writer::WRITERS`).
const WRITERS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_range_commits_are_atomic_under_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut next = 0u64;
    let mut acked_total = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kv_crash_writer"))
            .arg(dir.path())
            .arg(next.to_string())
            .arg(if round % 2 == 0 { "local" } else { "two-phase" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let a = acked.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready_tx.send(());
                } else if let Some(i) = line.strip_prefix("ACK ") {
                    a.lock().unwrap().push(i.parse::<u64>().unwrap());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("writer ready");
        // Let it commit for a while, then kill it at an arbitrary point.
        std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: no commit acknowledged");
        let last_acked = *acked.iter().max().unwrap();

        let engine: Arc<dyn Engine> = Arc::new(RocksEngine::open(dir.path()).unwrap());
        let kv = Kv::open(engine, KvConfig::default()).await.unwrap();
        let r = kv.begin();
        for &i in &acked {
            assert!(
                r.get(&key(7, i)).await.unwrap().is_some(),
                "round {round}: acked {i} lost in range 7"
            );
            assert!(
                r.get(&key(8, i)).await.unwrap().is_some(),
                "round {round}: acked {i} lost in range 8"
            );
        }
        // Each writer has at most one transaction in flight, at most WRITERS indexes past its
        // last acknowledged one: every index up to there is all or nothing.
        let horizon = last_acked + 2 * WRITERS;
        for i in next..=horizon {
            let a = r.get(&key(7, i)).await.unwrap().is_some();
            let b = r.get(&key(8, i)).await.unwrap().is_some();
            assert_eq!(a, b, "round {round}: transaction {i} is half visible");
        }
        // Nothing beyond it.
        for i in horizon + 1..horizon + 1 + WRITERS {
            assert!(r.get(&key(7, i)).await.unwrap().is_none());
        }
        acked_total += acked.len();
        next = horizon + 1;
        kv.shutdown().await;
        drop(kv);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked_total >= ROUNDS);
}
