//! The point-write path (`kestrel_sql::point_write`): prepared `UPDATE t SET c = c + $1 WHERE
//! pk = $2`, single-row `INSERT … VALUES ($1, …, CURRENT_TIMESTAMP)` and `DELETE FROM t WHERE
//! pk = $1` run without DataFusion, with the same results, errors and transactional behaviour
//! as the general path.
//! `kestrel_sql_point_writes_total` shows which path ran.

mod common;

use common::{metric, sqlstate, TestNode};

async fn point_writes(node: &TestNode) -> f64 {
    let (code, text) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    metric(&text, "kestrel_sql_point_writes_total")
}

/// SQLSTATE and message of a failed statement.
fn failure(e: &tokio_postgres::Error) -> (String, String) {
    let msg = e.as_db_error().map(|d| d.message().to_string());
    (sqlstate(e), msg.unwrap_or_default())
}

async fn one_int(c: &tokio_postgres::Client, sql: &str) -> Option<i32> {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn prepared_updates_and_inserts_take_the_write_path_and_agree_with_the_general_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE acc (id INT PRIMARY KEY, bal INT NOT NULL, big BIGINT, note VARCHAR(3));
         INSERT INTO acc VALUES (1, 10, 100, 'a'), (2, 2147483647, NULL, NULL);
         CREATE TABLE hist (tid INT, delta INT, mtime TIMESTAMP, filler CHAR(4));",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    let add = c
        .prepare("UPDATE acc SET bal = bal + $1 WHERE id = $2")
        .await
        .unwrap();
    assert_eq!(c.execute(&add, &[&5i32, &1i32]).await.unwrap(), 1);
    assert_eq!(c.execute(&add, &[&5i32, &99i32]).await.unwrap(), 0);
    assert_eq!(
        one_int(&c, "SELECT bal FROM acc WHERE id = 1").await,
        Some(15)
    );
    // Several assignments, all computed from the old row; `-`, `$n + col`, plain `$n`.
    let multi = c
        .prepare("UPDATE acc SET big = $1 + big, bal = bal - $2, note = $3 WHERE $4 = id")
        .await
        .unwrap();
    let n = c
        .execute(&multi, &[&1i64, &3i32, &"xy", &1i32])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = c
        .query_one("SELECT bal, big, note FROM acc WHERE id = 1", &[])
        .await
        .unwrap();
    let got: (i32, i64, String) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(got, (12, 101, "xy".to_string()));
    // NULL arithmetic stays NULL (big of row 2 is NULL).
    c.execute(&multi, &[&1i64, &0i32, &None::<&str>, &2i32])
        .await
        .unwrap();
    let r = c
        .query_one("SELECT big, note FROM acc WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, Option<i64>>(0), None);
    // `c - $1` is a subtraction: -1 - i64::MIN fits (negating the parameter would not).
    c.batch_execute("UPDATE acc SET big = -1 WHERE id = 1")
        .await
        .unwrap();
    let sub = c
        .prepare("UPDATE acc SET big = big - $1 WHERE id = $2")
        .await
        .unwrap();
    assert_eq!(c.execute(&sub, &[&i64::MIN, &1i32]).await.unwrap(), 1);
    let big: i64 = c
        .query_one("SELECT big FROM acc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big, i64::MAX);
    c.batch_execute("UPDATE acc SET big = 101 WHERE id = 1")
        .await
        .unwrap();
    let writes = point_writes(&node).await - before;
    assert_eq!(
        writes, 5.0,
        "every prepared UPDATE above took the point path"
    );

    // Errors are PostgreSQL's, and the same as the general path's.
    let cases: [(
        &tokio_postgres::Statement,
        &[&(dyn tokio_postgres::types::ToSql + Sync)],
        &str,
    ); 3] = [
        (
            &add,
            &[&1i32, &2i32],
            "UPDATE acc SET bal = bal + 1 WHERE id = 2",
        ),
        (
            &multi,
            &[&0i64, &0i32, &"long", &1i32],
            "UPDATE acc SET big = 0 + big, bal = bal - 0, note = 'long' WHERE 1 = id",
        ),
        (
            &c.prepare("UPDATE acc SET bal = $1 WHERE id = $2")
                .await
                .unwrap(),
            &[&None::<i32>, &1i32],
            "UPDATE acc SET bal = NULL WHERE id = 1",
        ),
    ];
    for (stmt, params, general) in cases {
        let point = failure(&c.execute(stmt, params).await.unwrap_err());
        let other = failure(&c.batch_execute(general).await.unwrap_err());
        assert_eq!(point, other, "{general}");
    }
    assert_eq!(
        failure(&c.execute(&add, &[&1i32, &2i32]).await.unwrap_err()),
        ("22003".to_string(), "integer out of range".to_string())
    );
    assert_eq!(
        one_int(&c, "SELECT bal FROM acc WHERE id = 1").await,
        Some(12)
    );

    // INSERT: parameters, CURRENT_TIMESTAMP (the block's start, as on the general path),
    // omitted columns NULL, the hidden rowid unique.
    let ins = c
        .prepare("INSERT INTO hist (tid, delta, mtime) VALUES ($1, $2, CURRENT_TIMESTAMP)")
        .await
        .unwrap();
    let before = point_writes(&node).await;
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(c.execute(&ins, &[&1i32, &-5i32]).await.unwrap(), 1);
    assert_eq!(c.execute(&ins, &[&1i32, &-5i32]).await.unwrap(), 1);
    c.batch_execute("INSERT INTO hist (tid, delta, mtime) VALUES (2, 7, CURRENT_TIMESTAMP)")
        .await
        .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(point_writes(&node).await - before, 2.0);
    let r = c
        .query_one(
            "SELECT count(*), count(DISTINCT mtime), count(filler), sum(delta) FROM hist",
            &[],
        )
        .await
        .unwrap();
    let got: (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(
        got,
        (3, 1, 0, -3),
        "one timestamp for the block, filler NULL"
    );

    // A duplicate key is 23505 with PostgreSQL's detail, as on the general path.
    let ins_acc = c
        .prepare("INSERT INTO acc VALUES ($1, $2, $3, $4)")
        .await
        .unwrap();
    let err = c
        .execute(&ins_acc, &[&1i32, &0i32, &None::<i64>, &None::<&str>])
        .await
        .unwrap_err();
    let general = c
        .batch_execute("INSERT INTO acc VALUES (1, 0, NULL, NULL)")
        .await
        .unwrap_err();
    assert_eq!(failure(&err), failure(&general));
    assert_eq!(
        err.as_db_error().and_then(|d| d.detail()),
        Some("Key (id)=(1) already exists.")
    );
    let n = c
        .execute(&ins_acc, &[&3i32, &1i32, &None::<i64>, &"ab"])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let note: String = c
        .query_one("SELECT note FROM acc WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "ab");
}

#[tokio::test]
async fn concurrent_point_updates_lose_nothing_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE ctr (id INT PRIMARY KEY, n INT NOT NULL); INSERT INTO ctr VALUES (1, 0)",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    const CLIENTS: usize = 4;
    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let c = node.client().await;
        tasks.push(tokio::spawn(async move {
            let up = c
                .prepare("UPDATE ctr SET n = n + $1 WHERE id = $2")
                .await
                .unwrap();
            for _ in 0..EACH {
                assert_eq!(c.execute(&up, &[&1i32, &1i32]).await.unwrap(), 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (CLIENTS * EACH) as i32;
    assert_eq!(one_int(&c, "SELECT n FROM ctr").await, Some(total));
    assert!(point_writes(&node).await - before >= (CLIENTS * EACH) as f64);
    // A rolled-back block leaves nothing behind.
    let up = c
        .prepare("UPDATE ctr SET n = n + $1 WHERE id = $2")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(&up, &[&1000i32, &1i32]).await.unwrap();
    assert_eq!(one_int(&c, "SELECT n FROM ctr").await, Some(total + 1000));
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one_int(&c, "SELECT n FROM ctr").await, Some(total));
    // SERIALIZABLE: a block that read the row before another client's point update cannot
    // commit its own write of it.
    let other = node.client().await;
    let up2 = other
        .prepare("UPDATE ctr SET n = n + $1 WHERE id = $2")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        one_int(&c, "SELECT n FROM ctr WHERE id = 1").await,
        Some(total)
    );
    other.execute(&up2, &[&1i32, &1i32]).await.unwrap();
    let res = async {
        c.execute(&up, &[&1i32, &1i32]).await?;
        c.batch_execute("COMMIT").await
    }
    .await;
    let err = res.unwrap_err();
    assert_eq!(sqlstate(&err), "40001", "{err:?}");
    let _ = c.batch_execute("ROLLBACK").await;
    assert_eq!(one_int(&c, "SELECT n FROM ctr").await, Some(total + 1));
}

#[tokio::test]
async fn constrained_tables_take_the_general_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE ix (id INT PRIMARY KEY, v INT, w INT);
         CREATE INDEX ix_v ON ix (v);
         INSERT INTO ix VALUES (1, 1, 1);
         CREATE TABLE chk (id INT PRIMARY KEY, v INT CHECK (v < 10));
         INSERT INTO chk VALUES (1, 1);
         CREATE TABLE par (id INT PRIMARY KEY);
         CREATE TABLE kid (id INT PRIMARY KEY, p INT REFERENCES par (id));
         CREATE TABLE ser (id SERIAL PRIMARY KEY, v INT);",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    // The indexed column: general path, and the index follows the row.
    c.execute("UPDATE ix SET v = v + $1 WHERE id = $2", &[&5i32, &1i32])
        .await
        .unwrap();
    assert_eq!(one_int(&c, "SELECT id FROM ix WHERE v = 6").await, Some(1));
    let err = c
        .execute("UPDATE chk SET v = v + $1 WHERE id = $2", &[&20i32, &1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23514");
    let err = c
        .execute("INSERT INTO kid VALUES ($1, $2)", &[&1i32, &7i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23503");
    assert_eq!(
        point_writes(&node).await,
        before,
        "none took the point path"
    );
    // A SERIAL key's default is drawn on the point path (see
    // `inserts_drawing_serial_keys_take_the_write_path`).
    c.execute("INSERT INTO ser (v) VALUES ($1)", &[&4i32])
        .await
        .unwrap();
    assert_eq!(one_int(&c, "SELECT id FROM ser WHERE v = 4").await, Some(1));
    assert_eq!(
        point_writes(&node).await - before,
        1.0,
        "SERIAL on the point path"
    );
    let before = point_writes(&node).await;
    // The unindexed column of the same table and a foreign key's parent do (the child, with
    // its parent now present, does not).
    c.execute("UPDATE ix SET w = w + $1 WHERE id = $2", &[&5i32, &1i32])
        .await
        .unwrap();
    c.execute("INSERT INTO par VALUES ($1)", &[&7i32])
        .await
        .unwrap();
    c.execute("INSERT INTO kid VALUES ($1, $2)", &[&1i32, &7i32])
        .await
        .unwrap();
    assert_eq!(one_int(&c, "SELECT w FROM ix WHERE id = 1").await, Some(6));
    assert_eq!(point_writes(&node).await - before, 2.0);
    // Unknown names still get PostgreSQL's errors from the general path.
    let err = c
        .execute("UPDATE nope SET v = v + $1 WHERE id = $2", &[&1i32, &1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01");
    let err = c
        .execute("UPDATE ix SET nope = $1 WHERE id = $2", &[&1i32, &1i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42703");
    let err = c
        .execute("UPDATE ix SET id = $1 WHERE id = $2", &[&1i32, &1i32])
        .await;
    assert!(err.is_ok(), "updating the key runs on the general path");
}

/// A row that does not exist at the statement's snapshot is not updated, as in PostgreSQL: a
/// row inserted after a REPEATABLE READ snapshot gives `UPDATE 0`, not a serialization failure.
#[tokio::test]
async fn point_update_of_a_row_inserted_after_the_snapshot_updates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    a.batch_execute("CREATE TABLE acc (id INT PRIMARY KEY, bal INT NOT NULL)")
        .await
        .unwrap();
    let add = a
        .prepare("UPDATE acc SET bal = bal + $1 WHERE id = $2")
        .await
        .unwrap();
    let before = point_writes(&node).await;
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM acc")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO acc VALUES (5, 50)")
        .await
        .unwrap();
    assert_eq!(a.execute(&add, &[&1i32, &5i32]).await.unwrap(), 0);
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        one_int(&a, "SELECT bal FROM acc WHERE id = 5").await,
        Some(50)
    );

    assert!(
        point_writes(&node).await >= before + 1.0,
        "the point path ran"
    );
}

/// pgbench's INSERT line — a parameter, a string literal and a BIGSERIAL key drawn from its
/// sequence — takes the write path, with the general path's keys, `currval`/`lastval` and
/// errors; a default that does more than `nextval` stays on the general path.
#[tokio::test]
async fn inserts_drawing_serial_keys_take_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE ins (id BIGSERIAL PRIMARY KEY, v INT, note TEXT, tag VARCHAR(3));
         CREATE TABLE small (id SERIAL PRIMARY KEY, note TEXT);
         CREATE SEQUENCE s2;
         CREATE TABLE shifted (id BIGINT PRIMARY KEY DEFAULT nextval('s2') + 100, v INT);",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    let ins = c
        .prepare("INSERT INTO ins (v, note) VALUES ($1, 'row of client')")
        .await
        .unwrap();
    for v in 1..=3i32 {
        assert_eq!(c.execute(&ins, &[&v]).await.unwrap(), 1);
    }
    let small = c
        .prepare("INSERT INTO small (note) VALUES ($1)")
        .await
        .unwrap();
    assert_eq!(c.execute(&small, &[&"a"]).await.unwrap(), 1);
    assert_eq!(
        point_writes(&node).await - before,
        4.0,
        "all four took the path"
    );
    let rows: Vec<(i64, i32, String)> = c
        .query("SELECT id, v, note FROM ins ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let note = "row of client".to_string();
    assert_eq!(
        rows,
        vec![(1, 1, note.clone()), (2, 2, note.clone()), (3, 3, note)]
    );
    let r = c
        .query_one("SELECT currval('ins_id_seq'), lastval()", &[])
        .await
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (3, 1));
    let id: i32 = c
        .query_one("SELECT id FROM small", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);

    // A literal too long for its column fails as on the general path.
    let e = c
        .execute("INSERT INTO ins (v, tag) VALUES ($1, 'toolong')", &[&9i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22001");
    // The general path draws from the same sequence; each statement drew exactly one value
    // (the failed one too, as on the general path): no gaps, no repeats.
    c.batch_execute("INSERT INTO ins (v) VALUES (10)")
        .await
        .unwrap();
    c.execute(&ins, &[&11i32]).await.unwrap();
    let ids: Vec<i64> = c
        .query("SELECT id FROM ins ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 5, 6]);

    // `nextval(…) + 100` is not SERIAL's default: the general path computes it.
    let before = point_writes(&node).await;
    let shifted = c
        .prepare("INSERT INTO shifted (v) VALUES ($1)")
        .await
        .unwrap();
    c.execute(&shifted, &[&1i32]).await.unwrap();
    let id: i64 = c
        .query_one("SELECT id FROM shifted", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 101);
    assert_eq!(point_writes(&node).await, before);
}

/// `DELETE FROM t WHERE pk = $1` takes the point path: the row and its secondary-index
/// entries go, inside the transaction, under the row lock; a table a foreign key references
/// takes the general path, which runs the referential action.
#[tokio::test]
async fn prepared_deletes_by_key_take_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE d (id INT PRIMARY KEY, v INT, note TEXT);
         CREATE UNIQUE INDEX d_v ON d (v);
         INSERT INTO d VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c'), (4, 40, 'd');
         CREATE TABLE par (id INT PRIMARY KEY);
         CREATE TABLE kid (id INT PRIMARY KEY, p INT REFERENCES par (id) ON DELETE CASCADE);
         INSERT INTO par VALUES (7), (8);
         INSERT INTO kid VALUES (1, 7), (2, 8);",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    let del = c.prepare("DELETE FROM d WHERE id = $1").await.unwrap();
    assert_eq!(c.execute(&del, &[&1i32]).await.unwrap(), 1);
    assert_eq!(c.execute(&del, &[&1i32]).await.unwrap(), 0, "already gone");
    assert_eq!(c.execute(&del, &[&99i32]).await.unwrap(), 0);
    assert_eq!(
        point_writes(&node).await - before,
        3.0,
        "all on the point path"
    );
    // The unique index entry went with the row: its value can be taken again, and an index
    // lookup finds only the new row.
    c.batch_execute("INSERT INTO d VALUES (5, 10, 'e')")
        .await
        .unwrap();
    assert_eq!(one_int(&c, "SELECT id FROM d WHERE v = 10").await, Some(5));

    // Rolled back, the row and its entry are still there.
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(c.execute(&del, &[&2i32]).await.unwrap(), 1);
    assert_eq!(
        one_int(&c, "SELECT count(*)::INT FROM d WHERE id = 2").await,
        Some(0)
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(one_int(&c, "SELECT id FROM d WHERE v = 20").await, Some(2));

    // A writer of the deleted row waits for the deleting block and then finds no row.
    let other = node.client().await;
    let up = other
        .prepare("UPDATE d SET note = $1 WHERE id = $2")
        .await
        .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(c.execute(&del, &[&3i32]).await.unwrap(), 1);
    let waiting = tokio::spawn(async move { other.execute(&up, &[&"z", &3i32]).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the UPDATE waits for the row lock");
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 0, "no row left to update");

    // The child of a foreign key deletes on the point path; its parent does not, and the
    // general path cascades.
    let before = point_writes(&node).await;
    let del_kid = c.prepare("DELETE FROM kid WHERE id = $1").await.unwrap();
    assert_eq!(c.execute(&del_kid, &[&1i32]).await.unwrap(), 1);
    assert_eq!(point_writes(&node).await - before, 1.0);
    let del_par = c.prepare("DELETE FROM par WHERE id = $1").await.unwrap();
    assert_eq!(c.execute(&del_par, &[&8i32]).await.unwrap(), 1);
    assert_eq!(
        point_writes(&node).await - before,
        1.0,
        "the parent took the general path"
    );
    assert_eq!(
        one_int(&c, "SELECT count(*)::INT FROM kid").await,
        Some(0),
        "cascaded"
    );
    assert_eq!(one_int(&c, "SELECT count(*)::INT FROM d").await, Some(3));

    // A text key, and an expression index and a partial one: their entries go too.
    c.batch_execute(
        "CREATE TABLE tk (k TEXT PRIMARY KEY, v INT);
         CREATE UNIQUE INDEX tk_lower ON tk (lower(k));
         CREATE UNIQUE INDEX tk_pos ON tk (v) WHERE v > 0;
         INSERT INTO tk VALUES ('Ab', 1), ('cd', -1);",
    )
    .await
    .unwrap();
    let before = point_writes(&node).await;
    let del_tk = c.prepare("DELETE FROM tk WHERE k = $1").await.unwrap();
    assert_eq!(c.execute(&del_tk, &[&"Ab"]).await.unwrap(), 1);
    assert_eq!(point_writes(&node).await - before, 1.0);
    c.batch_execute("INSERT INTO tk VALUES ('aB', 1)")
        .await
        .unwrap();
    assert_eq!(one_int(&c, "SELECT count(*)::INT FROM tk").await, Some(2));
}
