//! `kill -9` under concurrent SQL load: every acknowledged statement is there whole after
//! restart, and no unacknowledged statement is partly visible. The single-row inserts are
//! transactions over two tables (two ranges: a multi-range commit), so kills also land
//! between a commit point and the other range's entry.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestNode;

const ROUNDS: usize = 5;
const WRITERS: i64 = 4;
const MULTI_ROWS: i64 = 200;
/// Snapshots (and log purges) every few entries, so kills land around them too and every
/// restart recovers a purged log.
const FLAGS: &[&str] = &[
    "--raft-snapshot-interval-entries",
    "10",
    "--raft-log-kept-entries",
    "3",
];

#[derive(Default)]
struct Ledger {
    /// batch id → rows the statement inserts.
    attempted: HashMap<i64, i64>,
    acked: HashMap<i64, i64>,
    /// batch id → (acknowledged, attempted) increments of its rows' `n`.
    updates: HashMap<i64, (i64, i64)>,
}

/// The only error a writer may see is losing its connection to the killed server.
fn expect_disconnect(e: tokio_postgres::Error) {
    assert!(e.code().is_none(), "unexpected SQL error: {e:?}");
}

async fn writer(node_port: u16, w: i64, ids: Arc<AtomicI64>, ledger: Arc<Mutex<Ledger>>) {
    let conn = format!("host=127.0.0.1 port={node_port} user=root dbname=defaultdb");
    let Ok((c, conn)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut step = 0i64;
    loop {
        step += 1;
        let batch = ids.fetch_add(1, Ordering::SeqCst);
        match step % 3 {
            // One row into each of two tables, in one transaction.
            0 => {
                ledger.lock().unwrap().attempted.insert(batch, 1);
                let id = batch * 1000;
                if let Err(e) = c
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO c VALUES ({id}, {batch}, 0, {w});
                         INSERT INTO d VALUES ({id}, {batch}); COMMIT"
                    ))
                    .await
                {
                    return expect_disconnect(e);
                }
                ledger.lock().unwrap().acked.insert(batch, 1);
            }
            // Multi-row INSERT of MULTI_ROWS rows.
            1 => {
                ledger.lock().unwrap().attempted.insert(batch, MULTI_ROWS);
                let values: Vec<String> = (0..MULTI_ROWS)
                    .map(|r| format!("({}, {batch}, 0, {w})", batch * 1000 + r))
                    .collect();
                if let Err(e) = c
                    .batch_execute(&format!("INSERT INTO c VALUES {}", values.join(", ")))
                    .await
                {
                    return expect_disconnect(e);
                }
                ledger.lock().unwrap().acked.insert(batch, MULTI_ROWS);
            }
            // UPDATE every row of an acknowledged multi-row batch.
            _ => {
                let target = {
                    let l = ledger.lock().unwrap();
                    l.acked
                        .iter()
                        .filter(|(_, n)| **n == MULTI_ROWS)
                        .map(|(b, _)| *b)
                        .max()
                };
                let Some(target) = target else { continue };
                ledger.lock().unwrap().updates.entry(target).or_default().1 += 1;
                match c
                    .execute("UPDATE c SET n = n + 1 WHERE batch = $1", &[&target])
                    .await
                {
                    Ok(n) => {
                        assert_eq!(n as i64, MULTI_ROWS);
                        ledger.lock().unwrap().updates.entry(target).or_default().0 += 1;
                    }
                    Err(e) if e.code().map(|c| c.code()) == Some("40001") => {
                        ledger.lock().unwrap().updates.entry(target).or_default().1 -= 1;
                    }
                    Err(e) => return expect_disconnect(e),
                }
            }
        }
    }
}

async fn verify(node: &TestNode, ledger: &Ledger, round: usize) {
    let c = node.client().await;
    let rows = c
        .query(
            "SELECT batch, count(*), min(n), max(n) FROM c GROUP BY batch",
            &[],
        )
        .await
        .unwrap();
    let mut seen = HashMap::new();
    for r in rows {
        let (batch, count, min_n, max_n): (i64, i64, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let want = ledger.attempted.get(&batch).copied();
        assert_eq!(
            Some(count),
            want,
            "round {round}: batch {batch} has {count} rows (partial or never attempted)"
        );
        assert_eq!(
            min_n, max_n,
            "round {round}: an UPDATE of batch {batch} is partly visible"
        );
        if let Some((acked, attempted)) = ledger.updates.get(&batch) {
            assert!(
                *acked <= min_n && min_n <= *attempted,
                "round {round}: batch {batch} n={min_n}, acked {acked}, attempted {attempted}"
            );
        } else {
            assert_eq!(min_n, 0);
        }
        seen.insert(batch, count);
    }
    // The two-table transactions: all or nothing.
    let in_d: std::collections::HashSet<i64> = c
        .query("SELECT batch FROM d", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!in_d.is_empty(), "round {round}: no two-table transaction");
    for batch in &in_d {
        assert_eq!(
            seen.get(batch),
            Some(&1),
            "round {round}: batch {batch} is in d but not (alone) in c"
        );
    }
    for (batch, _) in seen
        .iter()
        .filter(|(b, _)| ledger.attempted.get(b) == Some(&1))
    {
        assert!(
            in_d.contains(batch),
            "round {round}: batch {batch} is in c but not in d"
        );
    }
    let updates: i64 = ledger.updates.values().map(|(a, _)| a).sum();
    eprintln!("round {round}: {} batches attempted, {} acknowledged, {updates} acknowledged updates, {} batches present", ledger.attempted.len(), ledger.acked.len(), seen.len());
    for (batch, n) in &ledger.acked {
        assert_eq!(
            seen.get(batch),
            Some(n),
            "round {round}: acknowledged batch {batch} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Arc::new(AtomicI64::new(1));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut node = TestNode::start_with(dir.path(), FLAGS);
    node.client()
        .await
        .batch_execute(
            "CREATE TABLE c (id BIGINT PRIMARY KEY, batch BIGINT NOT NULL, n BIGINT NOT NULL, w INT);
             CREATE TABLE d (id BIGINT PRIMARY KEY, batch BIGINT NOT NULL)",
        )
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let port = node.port();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(port, w, ids.clone(), ledger.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(1500 + 250 * round as u64)).await;
        // The writers keep going until the kill: wait (a bounded while) for a purge.
        assert!(
            common::metric_becomes_positive(&node, "kestrel_raft_log_purges_total", 20_000).await,
            "round {round}: no Raft log was purged; the restart would not recover one"
        );
        node.kill9();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("writer stops")
                .expect("writer saw only disconnects");
        }
        node = TestNode::start_with(dir.path(), FLAGS);
        let snapshot = {
            let l = ledger.lock().unwrap();
            assert!(
                !l.acked.is_empty(),
                "round {round}: nothing was acknowledged"
            );
            Ledger {
                attempted: l.attempted.clone(),
                acked: l.acked.clone(),
                updates: l.updates.clone(),
            }
        };
        verify(&node, &snapshot, round).await;
    }
}
