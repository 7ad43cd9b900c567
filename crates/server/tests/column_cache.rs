//! The column cache through the real binary: repeated scans are answered from cached
//! columns, and every write, snapshot and transaction sees exactly what a scan of the
//! engine would show it (`crates/sql/src/column_cache.rs`).

mod common;

use common::{metric, sqlstate, TestNode};
use tokio_postgres::Client;

const ROWS: i64 = 5_000;

async fn hits(node: &TestNode) -> f64 {
    let (code, text) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    metric(&text, "kestrel_sql_column_cache_hits_total")
}

async fn cached_bytes(node: &TestNode) -> f64 {
    let (_, text) = node.http_get("/metrics").await;
    metric(&text, "kestrel_sql_column_cache_bytes")
}

/// (count, sum of v, sum of the lengths of note) as one statement sees it.
async fn totals(c: &Client) -> (i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT count(*), coalesce(sum(v), 0)::BIGINT, coalesce(sum(length(note)), 0)::BIGINT FROM t",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

async fn load(c: &Client) {
    c.batch_execute(&format!(
        "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT NOT NULL, tag CHAR(3), note TEXT);
         INSERT INTO t SELECT i, i % 10, 'x' || (i % 7)::TEXT, repeat('n', i % 13)
           FROM generate_series(1, {ROWS}) AS s(i);"
    ))
    .await
    .unwrap();
}

fn sums() -> (i64, i64, i64) {
    let v: i64 = (1..=ROWS).map(|i| i % 10).sum();
    let note: i64 = (1..=ROWS).map(|i| i % 13).sum();
    (ROWS, v, note)
}

#[tokio::test]
async fn repeated_scans_hit_and_see_every_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    // Every range scan goes through the cache, however small its table.
    let node = TestNode::start_with(dir.path(), &["--column-cache-scan-bytes-min", "0"]);
    let c = node.client().await;
    load(&c).await;
    let want = sums();
    assert_eq!(totals(&c).await, want);
    let before = hits(&node).await;
    assert_eq!(totals(&c).await, want);
    assert!(hits(&node).await > before, "the second scan is a hit");
    assert!(cached_bytes(&node).await > 0.0);

    // A committed write: the next scan sees it (and fills the cache again).
    c.batch_execute("UPDATE t SET v = v + 100 WHERE id = 7")
        .await
        .unwrap();
    let after_update = (want.0, want.1 + 100, want.2);
    assert_eq!(totals(&c).await, after_update);
    let before = hits(&node).await;
    assert_eq!(totals(&c).await, after_update);
    assert!(hits(&node).await > before);
    c.batch_execute("DELETE FROM t WHERE id = 8; INSERT INTO t VALUES (9000, 1, 'new', 'abc')")
        .await
        .unwrap();
    let after_delete = (want.0, want.1 + 100 - 8 + 1, want.2 - 8 + 3);
    assert_eq!(totals(&c).await, after_delete);

    // Own uncommitted writes are seen by their transaction only and never cached.
    c.batch_execute("BEGIN; UPDATE t SET v = v + 1000 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(totals(&c).await.1, after_delete.1 + 1000);
    assert_eq!(totals(&c).await.1, after_delete.1 + 1000);
    let other = node.client().await;
    assert_eq!(totals(&other).await, after_delete);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(totals(&c).await, after_delete);
    assert_eq!(totals(&other).await, after_delete);

    // An older snapshot is not answered by an entry filled after a newer commit, and does
    // not leave its rows for newer snapshots, whichever scans first after the commit.
    let old = node.client().await;
    old.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(totals(&old).await, after_delete);
    other
        .batch_execute("UPDATE t SET v = v + 5 WHERE id = 2")
        .await
        .unwrap();
    let newer = (after_delete.0, after_delete.1 + 5, after_delete.2);
    assert_eq!(totals(&old).await, after_delete, "the snapshot's rows");
    assert_eq!(totals(&other).await, newer);
    assert_eq!(totals(&other).await, newer);
    other
        .batch_execute("UPDATE t SET v = v + 5 WHERE id = 3")
        .await
        .unwrap();
    let newest = (after_delete.0, after_delete.1 + 10, after_delete.2);
    assert_eq!(totals(&other).await, newest); // fills the cache with the newest rows
    assert_eq!(totals(&old).await, after_delete, "the snapshot's rows");
    assert_eq!(totals(&other).await, newest);
    old.batch_execute("COMMIT").await.unwrap();

    // A column the entry lacks (wide text is cached only once asked for) is added.
    let long: i64 = c
        .query_one(
            "SELECT count(*) FROM t WHERE note LIKE 'nnnnnnnnnnnn%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        long,
        (1..=ROWS).filter(|i| i % 13 == 12 && *i != 8).count() as i64
    );
    let tags: i64 = c
        .query_one("SELECT count(*) FROM t WHERE tag LIKE 'x3%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tags,
        (1..=ROWS).filter(|i| i % 7 == 3 && *i != 8).count() as i64
    );

    // A SERIALIZABLE reader answered from the cache still records its read.
    assert_eq!(totals(&c).await, newest);
    c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let before = hits(&node).await;
    assert_eq!(totals(&c).await, newest);
    assert!(hits(&node).await > before, "answered from the cache");
    other
        .batch_execute("UPDATE t SET v = v + 1 WHERE id = 4000")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (9001, 0, 'w', '')")
        .await
        .unwrap();
    let e = c.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&e), "40001");

    // Schema and data changes that bypass row-by-row writes.
    c.batch_execute("ALTER TABLE t ADD COLUMN w INT DEFAULT 3")
        .await
        .unwrap();
    let w: i64 = c
        .query_one("SELECT sum(w)::BIGINT FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(w, 3 * newest.0);
    c.batch_execute("TRUNCATE t").await.unwrap();
    assert_eq!(totals(&c).await, (0, 0, 0));
    c.batch_execute("INSERT INTO t VALUES (1, 1, 'a', 'b')")
        .await
        .unwrap();
    assert_eq!(totals(&c).await, (1, 1, 1));
    c.batch_execute("DROP TABLE t").await.unwrap();
    load(&c).await;
    assert_eq!(totals(&c).await, want);
}

/// The cache stays within `--column-cache-bytes-max`; a scan larger than it still answers.
#[tokio::test]
async fn the_cache_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(
        dir.path(),
        &[
            "--column-cache-scan-bytes-min",
            "0",
            "--column-cache-bytes-max",
            "65536",
        ],
    );
    let c = node.client().await;
    load(&c).await;
    for _ in 0..3 {
        assert_eq!(totals(&c).await, sums());
        assert!(cached_bytes(&node).await <= 65536.0);
    }
    c.batch_execute("CREATE TABLE small (id INT PRIMARY KEY, v INT); INSERT INTO small SELECT i, i FROM generate_series(1, 100) AS s(i)")
        .await
        .unwrap();
    for _ in 0..2 {
        let n: i64 = c
            .query_one("SELECT sum(v)::BIGINT FROM small", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 5050);
    }
    assert!(cached_bytes(&node).await > 0.0, "a small table fits");
    assert!(cached_bytes(&node).await <= 65536.0);
}
