//! End-to-end UPDATE … FROM, DELETE … USING, CREATE/DROP SCHEMA and CREATE/DROP DATABASE
//! through the real binary.

mod common;

use common::{count, sqlstate, TestNode};

#[tokio::test]
async fn update_from_and_delete_using() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE acct (id INT PRIMARY KEY, owner TEXT UNIQUE, bal INT NOT NULL CHECK (bal >= 0));
         CREATE TABLE pay (id INT PRIMARY KEY, acct INT, amount INT);
         CREATE TABLE nokey (a INT, b INT);
         INSERT INTO acct VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30);
         INSERT INTO pay VALUES (1, 1, 5), (2, 3, 7), (3, 9, 1);
         INSERT INTO nokey VALUES (1, 0), (2, 0), (3, 0);",
    )
    .await
    .unwrap();
    // Aliases on both sides, parameters, RETURNING of the updated rows.
    let rows = c
        .query(
            "UPDATE acct AS a SET bal = a.bal + p.amount * $1 FROM pay p
             WHERE p.acct = a.id RETURNING a.id, a.bal",
            &[&2i32],
        )
        .await
        .unwrap();
    let mut got: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort();
    assert_eq!(got, vec![(1, 20), (3, 44)]);
    // The index of a column SET through a join follows, and CHECK still applies.
    c.execute(
        "UPDATE acct SET owner = 'ann2' FROM pay WHERE pay.acct = acct.id AND pay.id = 1",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "SELECT id::bigint FROM acct WHERE owner = 'ann2'").await,
        1
    );
    let e = c
        .execute(
            "UPDATE acct SET bal = -1 FROM pay WHERE pay.acct = acct.id",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    // A table without a primary key (hidden row id) through a join.
    c.execute(
        "UPDATE nokey SET b = acct.bal FROM acct WHERE acct.id = nokey.a",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT sum(b) FROM nokey").await, 20 + 20 + 44);

    let n = c
        .execute(
            "DELETE FROM acct a USING pay p WHERE p.acct = a.id AND p.amount > 6",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&c, "SELECT count(*) FROM acct").await, 2);
    // The deleted row's unique value is free again.
    c.batch_execute("INSERT INTO acct VALUES (4, 'cy', 0)")
        .await
        .unwrap();
    let n = c
        .execute("DELETE FROM nokey USING acct WHERE acct.id = nokey.a", &[])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(count(&c, "SELECT count(*) FROM nokey").await, 1);
}

#[tokio::test]
async fn schemas_and_databases() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE SCHEMA app;
         CREATE TABLE app.t (id SERIAL PRIMARY KEY, v TEXT);
         CREATE TABLE t (id INT PRIMARY KEY);
         INSERT INTO app.t (v) VALUES ('x'), ('y');
         INSERT INTO t VALUES (1);",
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM app.t").await, 2);
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 1);
    for (sql, state) in [
        ("CREATE SCHEMA app", "42P06"),
        ("DROP SCHEMA app", "2BP01"),
        ("CREATE TABLE nope.t (a INT)", "3F000"),
        ("DROP SCHEMA nope", "3F000"),
        ("CREATE DATABASE defaultdb", "42P04"),
        ("DROP DATABASE defaultdb", "55006"),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), state, "{sql}");
    }
    c.batch_execute("CREATE SCHEMA IF NOT EXISTS app; DROP SCHEMA app CASCADE")
        .await
        .unwrap();
    let e = c.batch_execute("SELECT * FROM app.t").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");

    c.batch_execute("CREATE DATABASE shop").await.unwrap();
    let e = c
        .batch_execute("BEGIN; CREATE DATABASE other")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25001");
    c.batch_execute("ROLLBACK").await.unwrap();
    let (shop, conn) = tokio_postgres::connect(&node.url("shop"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    shop.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (7), (8)")
        .await
        .unwrap();
    assert_eq!(count(&shop, "SELECT count(*) FROM t").await, 2);
    assert_eq!(
        count(&c, "SELECT count(*) FROM t").await,
        1,
        "databases are separate"
    );
    drop(shop);
    c.batch_execute("DROP DATABASE shop; DROP DATABASE IF EXISTS shop")
        .await
        .unwrap();
    assert!(
        tokio_postgres::connect(&node.url("shop"), tokio_postgres::NoTls)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn views_expand_into_statements() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t1 (id INT PRIMARY KEY, label TEXT, flag BOOLEAN);
         INSERT INTO t1 VALUES (1, 'a', true), (2, 'b', false), (3, 'c', true), (4, 'd', false);
         CREATE VIEW v1 AS SELECT id, label FROM t1 WHERE id <= 3;
         CREATE VIEW v2 (n) AS SELECT count(*) FROM v1;",
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT n FROM v2").await, 3, "a view over a view");
    // Aliases, joins, parameters; the view sees rows written after it was created.
    c.batch_execute("INSERT INTO t1 VALUES (0, 'z', true)")
        .await
        .unwrap();
    let rows = c
        .query(
            "SELECT x.label FROM v1 x JOIN t1 ON t1.id = x.id WHERE t1.flag = $1 ORDER BY x.id",
            &[&true],
        )
        .await
        .unwrap();
    let labels: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(labels, vec!["z", "a", "c"]);
    // A CTE of the same name shadows the view.
    assert_eq!(
        count(&c, "WITH v1 AS (SELECT 42::bigint AS id) SELECT id FROM v1").await,
        42
    );
    c.batch_execute(
        "CREATE OR REPLACE VIEW v1 AS SELECT id, label, id * 10 AS big FROM t1 WHERE id <= 1",
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT n FROM v2").await, 2);
    for (sql, state) in [
        ("CREATE VIEW v1 AS SELECT 1", "42P07"),
        ("CREATE TABLE v1 (a INT)", "42P07"),
        ("DROP VIEW t1", "42809"),
        ("DROP TABLE v1", "42809"),
        ("DROP VIEW nope", "42P01"),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1", "0A000"),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), state, "{sql}");
    }
    // Views are catalog rows: transactional, and durable.
    c.batch_execute("BEGIN; DROP VIEW v2; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT n FROM v2").await, 2);
    c.batch_execute("DROP VIEW v2, v1; DROP VIEW IF EXISTS v1")
        .await
        .unwrap();
    let e = c.batch_execute("SELECT * FROM v1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
}

#[tokio::test]
async fn create_table_as_copies_types_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t1 (id INT PRIMARY KEY, label TEXT, amt NUMERIC(6,2), at DATE);
         INSERT INTO t1 VALUES (1, 'a', 1.5, '2024-01-01'), (2, 'b', 2, '2024-02-02'), (3, 'c', NULL, NULL);",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "CREATE TABLE c1 AS SELECT id, label, amt, at FROM t1 WHERE id <= 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "the tag is SELECT 2");
    let rows = c
        .query(
            "SELECT id, label, amt::text, at::text FROM c1 ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(got[0], (1, "a".into(), "1.50".into(), "2024-01-01".into()));
    assert_eq!(got.len(), 2);
    // Columns named by the query, an empty result, inside a rolled-back block.
    c.batch_execute("CREATE TABLE c2 AS SELECT g AS n, g * g AS sq FROM generate_series(1, 4) g")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT sum(sq) FROM c2").await, 30);
    c.batch_execute("CREATE TABLE c3 AS SELECT * FROM t1 WHERE false")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM c3").await, 0);
    c.batch_execute("INSERT INTO c3 VALUES (9, 'x', 1.234, '2020-01-01')")
        .await
        .unwrap();
    assert_eq!(
        count(&c, "SELECT (amt * 1000)::bigint FROM c3").await,
        1230,
        "numeric(6,2) kept"
    );
    c.batch_execute("BEGIN; CREATE TABLE c4 AS SELECT * FROM t1; ROLLBACK")
        .await
        .unwrap();
    let e = c.batch_execute("SELECT * FROM c4").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    let e = c
        .batch_execute("CREATE TABLE c1 AS SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P07");
}

#[tokio::test]
async fn alter_column_defaults_and_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY, label TEXT, n INT);
         INSERT INTO t VALUES (1, NULL, 1);
         ALTER TABLE t ALTER COLUMN label SET DEFAULT 'none';
         INSERT INTO t (id, n) VALUES (2, 2);",
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM t WHERE label = 'none'").await,
        1
    );
    let e = c
        .batch_execute("ALTER TABLE t ALTER COLUMN label SET NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502", "row 1 holds a NULL");
    c.batch_execute(
        "UPDATE t SET label = 'x' WHERE id = 1;
         ALTER TABLE t ALTER COLUMN label SET NOT NULL;
         ALTER TABLE t ALTER COLUMN label DROP DEFAULT;",
    )
    .await
    .unwrap();
    let e = c
        .batch_execute("INSERT INTO t (id, n) VALUES (3, 3)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502");
    c.batch_execute(
        "ALTER TABLE t ALTER COLUMN label DROP NOT NULL;
         INSERT INTO t (id, n) VALUES (3, 3);
         CREATE SEQUENCE s START 100;
         ALTER TABLE t ALTER COLUMN n SET DEFAULT nextval('s');
         INSERT INTO t (id) VALUES (4), (5);",
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT sum(n) FROM t WHERE id >= 4").await, 201);
    let e = c
        .batch_execute("ALTER TABLE t ALTER COLUMN id DROP NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P16");
}
