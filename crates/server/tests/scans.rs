//! Large table scans through the real binary: a scan over enough stored data runs as several
//! partitions in parallel (`partitions=N` in EXPLAIN) and still reads exactly what one scan
//! would, own uncommitted writes included.

mod common;

use std::collections::BTreeSet;

use common::{count, explain, TestNode};
use tokio_postgres::Client;

const ROWS: i64 = 60_000;

/// (count, sum of ids, sum of g) of `t` as one statement sees it.
async fn totals(c: &Client, filter: &str) -> (i64, i64, i64) {
    let r = c
        .query_one(
            &format!("SELECT count(*), sum(id)::BIGINT, sum(g)::BIGINT FROM t {filter}"),
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test]
async fn partitioned_scans_read_exactly_what_one_scan_reads() {
    let dir = tempfile::tempdir().unwrap();
    // Small memtables, so that the rows reach files (whose sizes the cuts are taken from),
    // partitions of 64 KiB, so that a few megabytes are split, and a 4 MiB block cache, so
    // that full scans (over a quarter of it) are bulk scans that bypass the cache.
    let node = TestNode::start_with(
        dir.path(),
        &[
            "--memtable-bytes-max",
            "4194304",
            "--scan-partition-bytes-min",
            "65536",
            "--block-cache-bytes-max",
            "4194304",
        ],
    );
    let c = node.client().await;
    c.batch_execute(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, g INT NOT NULL, pad TEXT);
         INSERT INTO t SELECT i, i % 7,
             (i * 7919 % 1000003)::TEXT || '-' || (i * 104729 % 999983)::TEXT || '-' || (i * 31337 % 65521)::TEXT
           FROM generate_series(1, {ROWS}) AS s(i);"
    ))
    .await
    .unwrap();

    // Sizes come from files: the memtable holding the rows is flushed in the background.
    // One partition per core (DataFusion's target_partitions), at most 16.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = cores.min(16);
    let mut plan = String::new();
    for _ in 0..300 {
        plan = explain(&c, "SELECT count(*) FROM t").await;
        if want < 2 || partitions(&plan) == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(partitions(&plan), want, "{plan}");
    // A scan with a LIMIT keeps one partition (and reads no more than it needs).
    let limited = explain(&c, "SELECT id FROM t LIMIT 5").await;
    assert_eq!(partitions(&limited), 1, "{limited}");

    let sum_ids = ROWS * (ROWS + 1) / 2;
    let sum_g: i64 = (1..=ROWS).map(|i| i % 7).sum();
    assert_eq!(totals(&c, "").await, (ROWS, sum_ids, sum_g));
    // Every row exactly once.
    let ids = ids_in(&c, "SELECT id FROM t").await;
    assert_eq!(ids.len() as i64, ROWS);
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>().len() as i64,
        ROWS
    );
    // Each partition emits its rows in key order: ORDER BY the key merges the partitions
    // instead of sorting them, and the rows come in key order.
    let by_key = explain(&c, "SELECT id FROM t ORDER BY id").await;
    assert!(!by_key.contains("SortExec:"), "{by_key}");
    assert_eq!(
        by_key.contains("SortPreservingMergeExec"),
        want >= 2,
        "{by_key}"
    );
    assert_eq!(ids_in(&c, "SELECT id FROM t ORDER BY id").await, {
        (1..=ROWS).collect::<Vec<_>>()
    });
    // Groups, a key range and a filter on another column agree with arithmetic.
    let groups = c
        .query("SELECT g, count(*) FROM t GROUP BY g ORDER BY g", &[])
        .await
        .unwrap();
    for r in &groups {
        let (g, n): (i32, i64) = (r.get(0), r.get(1));
        let want = (1..=ROWS).filter(|i| i % 7 == i64::from(g)).count() as i64;
        assert_eq!(n, want, "group {g}");
    }
    assert_eq!(
        count(&c, "SELECT count(*) FROM t WHERE id >= 100 AND id < 50000").await,
        49_900
    );
    assert_eq!(count(&c, "SELECT count(*) FROM t WHERE g = 3").await, {
        (1..=ROWS).filter(|i| i % 7 == 3).count() as i64
    });

    // A transaction's own writes, spread over the whole key range, are seen by every
    // partition exactly once; another session sees none of them until commit.
    c.batch_execute(
        "BEGIN;
         DELETE FROM t WHERE id % 1000 = 0;
         UPDATE t SET g = g + 100 WHERE id % 1000 = 1;
         INSERT INTO t SELECT i, 1, 'new' FROM generate_series(100001, 100100) AS s(i);",
    )
    .await
    .unwrap();
    let deleted: Vec<i64> = (1..=ROWS).filter(|i| i % 1000 == 0).collect();
    let updated = (1..=ROWS).filter(|i| i % 1000 == 1).count() as i64;
    let inserted: Vec<i64> = (100_001..=100_100).collect();
    let want = (
        ROWS - deleted.len() as i64 + inserted.len() as i64,
        sum_ids - deleted.iter().sum::<i64>() + inserted.iter().sum::<i64>(),
        sum_g - deleted.iter().map(|i| i % 7).sum::<i64>() + 100 * updated + inserted.len() as i64,
    );
    assert_eq!(totals(&c, "").await, want);
    let mut live: Vec<i64> = (1..=ROWS).filter(|i| i % 1000 != 0).collect();
    live.extend(&inserted);
    assert_eq!(
        ids_in(&c, "SELECT id FROM t ORDER BY id").await,
        live,
        "own writes merged in key order"
    );
    let other = node.client().await;
    assert_eq!(totals(&other, "").await, (ROWS, sum_ids, sum_g));
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(totals(&other, "").await, want);

    // A SERIALIZABLE transaction's partitioned scan records every partition's span: a
    // concurrent write near the end of the table (the last partition) is a conflict.
    c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let seen = count(&c, "SELECT count(*) FROM t WHERE g >= 0").await;
    other
        .batch_execute(&format!("UPDATE t SET g = g + 1 WHERE id = {}", ROWS - 1))
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (200001, 0, 'x')")
        .await
        .unwrap();
    let e = c.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(common::sqlstate(&e), "40001", "after reading {seen} rows");
}

async fn ids_in(c: &Client, sql: &str) -> Vec<i64> {
    let rows = c.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// N of the scan's `partitions=N` in a plan (1 when the scan is not partitioned).
fn partitions(plan: &str) -> usize {
    plan.split(", partitions=")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(1)
}
