//! The primary-key point path (`kestrel_sql::point`): prepared `SELECT … WHERE pk = $1` is
//! answered without DataFusion, with the same rows, types and transactional behaviour as the
//! general path. `kestrel_sql_point_reads_total` shows which path ran.

mod common;

use common::{metric, sqlstate, TestNode};

async fn point_reads(node: &TestNode) -> f64 {
    let (code, text) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    metric(&text, "kestrel_sql_point_reads_total")
}

#[tokio::test]
async fn prepared_pk_selects_take_the_point_path_and_agree_with_the_general_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE acc (id INT PRIMARY KEY, name TEXT, bal BIGINT, note VARCHAR(5));
         INSERT INTO acc VALUES (1, 'one', 10, 'a'), (2, NULL, -5, NULL), (3, 'three', 0, 'ccc');
         CREATE TABLE tag (k TEXT PRIMARY KEY, n INT);
         INSERT INTO tag VALUES ('x', 1), ('y', 2);",
    )
    .await
    .unwrap();
    let before = point_reads(&node).await;
    let q = c
        .prepare("SELECT name, bal, note FROM acc WHERE id = $1")
        .await
        .unwrap();
    let r = c.query(&q, &[&1i32]).await.unwrap();
    assert_eq!(r.len(), 1);
    let (name, bal, note): (Option<String>, i64, Option<String>) =
        (r[0].get(0), r[0].get(1), r[0].get(2));
    assert_eq!(
        (name.as_deref(), bal, note.as_deref()),
        (Some("one"), 10, Some("a"))
    );
    let r = c.query(&q, &[&2i32]).await.unwrap();
    let (name, bal): (Option<String>, i64) = (r[0].get(0), r[0].get(1));
    assert_eq!((name, bal), (None, -5));
    assert!(c.query(&q, &[&99i32]).await.unwrap().is_empty());
    // Parameter first, quoted names, schema-qualified.
    let q2 = c
        .prepare(r#"SELECT "n" FROM public.tag WHERE $1 = k"#)
        .await
        .unwrap();
    let n: i32 = c.query_one(&q2, &[&"y"]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let after = point_reads(&node).await;
    assert_eq!(
        after - before,
        4.0,
        "every execution above took the point path"
    );

    // The same statements through the general path (simple protocol, no parameters) agree.
    let rows = c
        .simple_query("SELECT name, bal, note FROM acc WHERE id = 3")
        .await
        .unwrap();
    let general: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).map(String::from), r.get(1).map(String::from)))
            }
            _ => None,
        })
        .collect();
    let r = c.query_one(&q, &[&3i32]).await.unwrap();
    let point: (Option<String>, i64) = (r.get(0), r.get(1));
    assert_eq!(
        general,
        vec![(point.0.clone(), Some(point.1.to_string()))],
        "point path and general path disagree"
    );
    assert_eq!(point_reads(&node).await - after, 1.0);
}

#[tokio::test]
async fn point_reads_are_transactional() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    a.batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v INT); INSERT INTO kv VALUES (1, 10)")
        .await
        .unwrap();
    let get = a.prepare("SELECT v FROM kv WHERE k = $1").await.unwrap();
    let before = point_reads(&node).await;
    // Snapshot: a block keeps reading the value it first saw.
    a.batch_execute("BEGIN").await.unwrap();
    let v: i32 = a.query_one(&get, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 10);
    b.batch_execute("UPDATE kv SET v = 20 WHERE k = 1")
        .await
        .unwrap();
    let v: i32 = a.query_one(&get, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 10, "the block's snapshot must not move");
    // Own writes are visible.
    a.batch_execute("INSERT INTO kv VALUES (2, 5)")
        .await
        .unwrap();
    let v: i32 = a.query_one(&get, &[&2i32]).await.unwrap().get(0);
    assert_eq!(v, 5);
    // SERIALIZABLE: the point read of k = 1 is validated at commit; b changed it.
    let err = a.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&err), "40001", "{err:?}");
    assert_eq!(point_reads(&node).await - before, 3.0);
    let v: i32 = a.query_one(&get, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 20);
    assert!(
        a.query(&get, &[&2i32]).await.unwrap().is_empty(),
        "rolled back"
    );
    // DDL is seen: after a column is dropped the prepared statement no longer applies (the
    // general path reports the error).
    b.batch_execute("ALTER TABLE kv DROP COLUMN v")
        .await
        .unwrap();
    let err = a.query(&get, &[&1i32]).await.unwrap_err();
    assert!(!sqlstate(&err).is_empty(), "{err:?}");
}

#[tokio::test]
async fn other_shapes_and_names_take_the_general_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE two (a INT, b INT, v INT, PRIMARY KEY (a, b));
         INSERT INTO two VALUES (1, 1, 7);
         CREATE TABLE base (id INT PRIMARY KEY, v INT);
         INSERT INTO base VALUES (1, 8);
         CREATE VIEW vw AS SELECT id, v * 2 AS v FROM base;
         CREATE TABLE big (id BIGINT PRIMARY KEY, v INT);
         INSERT INTO big VALUES (1, 9);",
    )
    .await
    .unwrap();
    let before = point_reads(&node).await;
    let v: i32 = c
        .query_one("SELECT v FROM two WHERE a = $1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 7, "composite key: general path");
    let v: i32 = c
        .query_one("SELECT v FROM vw WHERE id = $1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 16, "a view: general path");
    let v: i32 = c
        .query_one("SELECT v FROM base WHERE id = $1 LIMIT 1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 8, "LIMIT: general path");
    assert_eq!(
        point_reads(&node).await,
        before,
        "none of these is a point read"
    );
    // A bigint key with its own parameter type is a point read.
    let v: i32 = c
        .query_one("SELECT v FROM big WHERE id = $1", &[&1i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 9);
    assert_eq!(point_reads(&node).await - before, 1.0);
    // A missing table or column still gets PostgreSQL's errors (from the general path).
    let err = c
        .query("SELECT v FROM nope WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    let err = c
        .query("SELECT nope FROM base WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42703");
}

async fn read_cache_counts(node: &TestNode) -> (f64, f64) {
    let (code, text) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    (
        metric(&text, "kestrel_kv_read_cache_hits_total"),
        metric(&text, "kestrel_kv_read_cache_misses_total"),
    )
}

/// Column names of `SELECT * FROM t` as another session sees them, through the general path.
async fn columns_of(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let st = c.prepare(&format!("SELECT * FROM {table}")).await.unwrap();
    st.columns().iter().map(|c| c.name().to_string()).collect()
}

/// Statements read the table and database descriptors through the node's read cache
/// (`kestrel_kv::read_cache`); DDL committed by one session is seen by the next statement of
/// every other session, on the point path (which reads through the cache) as on the general one.
#[tokio::test]
async fn catalog_reads_hit_the_node_cache_and_ddl_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    b.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT);
         INSERT INTO t VALUES (1, 10), (2, 20);",
    )
    .await
    .unwrap();
    let q = a.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    let v: i32 = a.query_one(&q, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, 10);
    let (hits, _) = read_cache_counts(&node).await;
    for _ in 0..20 {
        a.query_one(&q, &[&2i32]).await.unwrap();
    }
    let (hits_after, _) = read_cache_counts(&node).await;
    assert!(
        hits_after - hits >= 20.0,
        "20 point reads of an unchanged table should be answered from the cache \
         ({hits} -> {hits_after})"
    );

    // DDL in session b is seen by a's very next statement.
    b.batch_execute("ALTER TABLE t ADD COLUMN w INT DEFAULT 7")
        .await
        .unwrap();
    assert_eq!(columns_of(&a, "t").await, ["id", "v", "w"]);
    let w: Option<i32> = a
        .query_one("SELECT w FROM t WHERE id = $1", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(w, Some(7));
    b.batch_execute("ALTER TABLE t RENAME COLUMN v TO value")
        .await
        .unwrap();
    assert_eq!(columns_of(&a, "t").await, ["id", "value", "w"]);
    let e = a.query(&q, &[&1i32]).await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "42703",
        "the prepared statement's column is gone: {e}"
    );

    b.batch_execute("DROP TABLE t").await.unwrap();
    let e = a.query("SELECT * FROM t", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01", "{e}");
    b.batch_execute("CREATE TABLE t (k TEXT PRIMARY KEY); INSERT INTO t VALUES ('x')")
        .await
        .unwrap();
    assert_eq!(columns_of(&a, "t").await, ["k"]);
    let k: String = a
        .query_one("SELECT k FROM t WHERE k = $1", &[&"x"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(k, "x");

    // A new database is seen at once too (its descriptor is cached by name).
    b.batch_execute("CREATE DATABASE other").await.unwrap();
    let o = node.client_db("other").await.unwrap();
    o.batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    assert_eq!(columns_of(&o, "t").await, ["id"]);
}

#[tokio::test]
async fn the_read_cache_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), &["--read-cache-entries-max", "0"]);
    let c = node.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 1)")
        .await
        .unwrap();
    let q = c.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    for _ in 0..5 {
        c.query_one(&q, &[&1i32]).await.unwrap();
    }
    let (hits, misses) = read_cache_counts(&node).await;
    assert_eq!(hits, 0.0);
    assert!(
        misses >= 5.0,
        "every descriptor read went to the engine: {misses}"
    );
}
