//! End-to-end sequences, SERIAL/IDENTITY columns and per-row DEFAULTs through the real binary.

mod common;

use common::{count, sqlstate, TestNode};
use tokio_postgres::Client;

async fn col_i64(c: &Client, sql: &str) -> Vec<i64> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn serial_identity_and_sequence_functions() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE s (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,
                         at TIMESTAMPTZ DEFAULT now(), u UUID DEFAULT gen_random_uuid());
         CREATE TABLE idt (id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v TEXT);",
    )
    .await
    .unwrap();
    let ids = col_i64(&c, "INSERT INTO s (name) VALUES ('a'), ('b') RETURNING id").await;
    assert_eq!(ids, vec![1, 2]);
    // DEFAULT in VALUES, and the per-row defaults really are per row.
    c.batch_execute("INSERT INTO s VALUES (DEFAULT, 'c')")
        .await
        .unwrap();
    assert_eq!(
        count(&c, "SELECT count(DISTINCT u) FROM s WHERE at IS NOT NULL").await,
        3
    );
    assert_eq!(
        col_i64(&c, "SELECT currval('s_id_seq')").await,
        vec![3],
        "currval is this session's last value"
    );
    // A rolled-back insert still consumes its value (sequences are not transactional).
    c.batch_execute("BEGIN; INSERT INTO s (name) VALUES ('gone'); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&c, "INSERT INTO s (name) VALUES ('d') RETURNING id").await,
        vec![5]
    );
    // COPY fills SERIAL and per-row defaults of the columns it does not name.
    let sink = c.copy_in("COPY s (name) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"e\nf\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(
        col_i64(&c, "SELECT id FROM s WHERE name IN ('e', 'f') ORDER BY id").await,
        vec![6, 7]
    );
    assert_eq!(count(&c, "SELECT count(DISTINCT u) FROM s").await, 6);

    // GENERATED ALWAYS rejects explicit values; BY DEFAULT-style DEFAULT works.
    let e = c
        .batch_execute("INSERT INTO idt (id, v) VALUES (10, 'x')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "428C9");
    c.batch_execute("INSERT INTO idt (v) VALUES ('x'); INSERT INTO idt VALUES (DEFAULT, 'y')")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&c, "SELECT id::bigint FROM idt ORDER BY id").await,
        vec![1, 2]
    );
    let e = c
        .batch_execute("UPDATE idt SET id = 7 WHERE v = 'x'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "428C9");
    c.batch_execute("UPDATE idt SET v = 'x2' WHERE v = 'x'")
        .await
        .unwrap();

    // CREATE SEQUENCE with options in any order, bounds, setval, lastval.
    c.batch_execute("CREATE SEQUENCE q START 10 INCREMENT 5 MAXVALUE 20")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&c, "SELECT nextval('q') FROM generate_series(1, 3)").await,
        vec![10, 15, 20]
    );
    let e = c.batch_execute("SELECT nextval('q')").await.unwrap_err();
    assert_eq!(sqlstate(&e), "2200H");
    assert_eq!(col_i64(&c, "SELECT setval('q', 11, false)").await, vec![11]);
    assert_eq!(col_i64(&c, "SELECT nextval('Q')").await, vec![11]);
    assert_eq!(col_i64(&c, "SELECT lastval()").await, vec![11]);
    c.batch_execute("CREATE SEQUENCE cyc MINVALUE 1 MAXVALUE 2 CYCLE")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&c, "SELECT nextval('cyc') FROM generate_series(1, 4)").await,
        vec![1, 2, 1, 2]
    );
    for (sql, state) in [
        ("SELECT nextval('nope')", "42P01"),
        ("CREATE SEQUENCE q", "42P07"),
        ("CREATE SEQUENCE z INCREMENT 0", "22023"),
        ("CREATE SEQUENCE z START 0", "22023"),
        ("DROP SEQUENCE s_id_seq", "2BP01"),
        ("SELECT setval('q', 100)", "22003"),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), state, "{sql}");
    }
    let other = node.client().await;
    let e = other
        .batch_execute("SELECT currval('q')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "currval is per session");
    // A sequence created in an open transaction is usable in it.
    other
        .batch_execute("BEGIN; CREATE SEQUENCE inblock; CREATE TABLE t2 (id SERIAL, v INT)")
        .await
        .unwrap();
    assert_eq!(col_i64(&other, "SELECT nextval('inblock')").await, vec![1]);
    other
        .batch_execute("INSERT INTO t2 (v) VALUES (1); COMMIT")
        .await
        .unwrap();

    // Values survive a crash, never repeating (a gap is allowed, as in PostgreSQL).
    drop((c, other));
    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    let next = col_i64(&c, "INSERT INTO s (name) VALUES ('g') RETURNING id").await;
    assert!(next[0] > 7, "no value handed out twice: {next:?}");
    assert_eq!(col_i64(&c, "SELECT nextval('inblock')").await.len(), 1);
    // DROP TABLE drops the sequences its columns own.
    c.batch_execute("DROP TABLE s").await.unwrap();
    let e = c
        .batch_execute("SELECT nextval('s_id_seq')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    c.batch_execute("DROP SEQUENCE q, cyc; DROP SEQUENCE IF EXISTS q")
        .await
        .unwrap();
}

/// Concurrent sessions drawing from one sequence never get the same value.
#[tokio::test]
async fn concurrent_nextval_is_unique() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("CREATE TABLE log (id SERIAL PRIMARY KEY, who INT)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for who in 0..4i32 {
        let c = node.client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                c.execute("INSERT INTO log (who) VALUES ($1)", &[&who])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count(&c, "SELECT count(DISTINCT id) FROM log").await, 200);
}

/// Descriptor ids come back when a CREATE rolls back; a new sequence must not inherit the
/// rolled-back one's values. Owned sequences follow TRUNCATE and go with DROP COLUMN/TABLE.
#[tokio::test]
async fn sequences_survive_rollbacks_and_table_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("BEGIN; CREATE SEQUENCE gone; SELECT nextval('gone'); ROLLBACK")
        .await
        .unwrap();
    c.batch_execute("CREATE SEQUENCE s2 START 1000 MINVALUE 1000")
        .await
        .unwrap();
    assert_eq!(col_i64(&c, "SELECT nextval('s2')").await, vec![1000]);

    c.batch_execute(
        "CREATE TABLE t (id SERIAL PRIMARY KEY, v INT); INSERT INTO t (v) VALUES (1);
         TRUNCATE t; INSERT INTO t (v) VALUES (2);",
    )
    .await
    .unwrap();
    assert_eq!(col_i64(&c, "SELECT id::bigint FROM t").await, vec![2]);
    c.batch_execute("DROP TABLE t; CREATE TABLE t (id SERIAL PRIMARY KEY, v INT)")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&c, "INSERT INTO t (v) VALUES (1) RETURNING id::bigint").await,
        vec![1],
        "the recreated table owns a fresh t_id_seq"
    );
    c.batch_execute("CREATE TABLE u (a INT PRIMARY KEY, n SERIAL); ALTER TABLE u DROP COLUMN n")
        .await
        .unwrap();
    let e = c
        .batch_execute("SELECT nextval('u_n_seq')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    // PostgreSQL's column names; a cast next to its own column keeps working.
    let rows = c
        .query("SELECT v::text, v, count(*) FROM t GROUP BY v", &[])
        .await
        .unwrap();
    let names: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(names[1..], ["v", "count"], "{names:?}");
}

/// ALTER SEQUENCE while other sessions draw values: no value is handed out twice, and the
/// sequence never goes back (ALTER stores the position the node's block reached).
#[tokio::test]
async fn alter_sequence_under_concurrent_nextval_hands_out_no_value_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let admin = node.client().await;
    admin.batch_execute("CREATE SEQUENCE hot").await.unwrap();
    let mut drawers = Vec::new();
    for _ in 0..3 {
        let c = node.client().await;
        drawers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..150 {
                got.extend(col_i64(&c, "SELECT nextval('hot')").await);
            }
            got
        }));
    }
    for i in 0..20 {
        let sql = match i % 2 {
            0 => "ALTER SEQUENCE hot CACHE 5 INCREMENT 1",
            _ => "ALTER SEQUENCE hot CACHE 1",
        };
        admin.batch_execute(sql).await.unwrap();
    }
    let mut all = Vec::new();
    for d in drawers {
        let got = d.await.unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "one session's values increase"
        );
        all.extend(got);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a value was handed out twice");
    assert_eq!(n, 450);
    // In one transaction, the ALTER's new position is what nextval continues from.
    admin
        .batch_execute("BEGIN; ALTER SEQUENCE hot RESTART WITH 1000000")
        .await
        .unwrap();
    assert_eq!(
        col_i64(&admin, "SELECT nextval('hot')").await,
        vec![1_000_000]
    );
    admin.batch_execute("COMMIT").await.unwrap();
    let e = admin
        .batch_execute("ALTER SEQUENCE hot MAXVALUE 10")
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "22023",
        "the position lies above the new MAXVALUE"
    );
}
