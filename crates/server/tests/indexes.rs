//! End-to-end secondary indexes, UNIQUE constraints and INSERT … ON CONFLICT through the real
//! binary: entries are maintained by every write path, used by scans, and uniqueness holds
//! under concurrency at every isolation level.

mod common;

use common::{count, explain, sqlstate, TestNode};
use tokio_postgres::Client;

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

async fn ids(c: &Client, sql: &str) -> Vec<i32> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn unique_constraints_and_index_scans_follow_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE u (id INT PRIMARY KEY, email TEXT UNIQUE, city TEXT, score INT);
         INSERT INTO u VALUES (1, 'a@x', 'oslo', 10), (2, 'b@x', 'rome', 20),
                              (3, NULL, 'oslo', 30), (4, NULL, 'lima', 40);",
    )
    .await
    .unwrap();
    // A taken value fails with the constraint's name; NULLs never collide.
    let e = c
        .execute("INSERT INTO u VALUES (5, 'a@x', 'x', 0)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    assert!(message(&e).contains("u_email_key"), "{e}");
    c.execute("INSERT INTO u VALUES (5, NULL, 'x', 0)", &[])
        .await
        .unwrap();
    // Two rows of one statement may not share a value either.
    let e = c
        .execute(
            "INSERT INTO u VALUES (6, 'z@x', 'x', 0), (7, 'z@x', 'x', 0)",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");

    // Equality on the unique column reads through the index.
    let plan = explain(&c, "SELECT id FROM u WHERE email = 'b@x'").await;
    assert!(plan.contains("index u_email_key"), "{plan}");
    assert_eq!(
        ids(&c, "SELECT id FROM u WHERE email = 'b@x'").await,
        vec![2]
    );

    // UPDATE moves entries (the old value is free again), DELETE removes them.
    c.execute("UPDATE u SET email = 'c@x' WHERE id = 2", &[])
        .await
        .unwrap();
    assert!(ids(&c, "SELECT id FROM u WHERE email = 'b@x'")
        .await
        .is_empty());
    assert_eq!(
        ids(&c, "SELECT id FROM u WHERE email = 'c@x'").await,
        vec![2]
    );
    c.execute("INSERT INTO u VALUES (8, 'b@x', 'x', 0)", &[])
        .await
        .unwrap();
    let e = c
        .execute("UPDATE u SET email = 'a@x' WHERE id = 2", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    // Two rows may trade values in one statement.
    c.execute(
        "UPDATE u SET email = CASE id WHEN 1 THEN 'c@x' ELSE 'a@x' END WHERE id IN (1, 2)",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&c, "SELECT id FROM u WHERE email = 'a@x'").await,
        vec![2]
    );
    c.execute("DELETE FROM u WHERE id = 2", &[]).await.unwrap();
    c.execute("INSERT INTO u VALUES (9, 'a@x', 'x', 0)", &[])
        .await
        .unwrap();

    // A secondary index on existing rows: backfilled, then used for ranges.
    c.batch_execute("CREATE INDEX ON u (score)").await.unwrap();
    let plan = explain(&c, "SELECT id FROM u WHERE score >= 20 AND score < 40").await;
    assert!(plan.contains("index u_score_idx key range"), "{plan}");
    assert_eq!(
        ids(
            &c,
            "SELECT id FROM u WHERE score >= 20 AND score < 40 ORDER BY id"
        )
        .await,
        vec![3]
    );
    assert_eq!(
        ids(&c, "SELECT id FROM u WHERE score < 15 ORDER BY id").await,
        vec![1, 5, 8, 9]
    );
    // The index sees writes of the open transaction, and loses them on rollback.
    c.batch_execute("BEGIN; INSERT INTO u VALUES (10, 'q@x', 'x', 15)")
        .await
        .unwrap();
    assert_eq!(ids(&c, "SELECT id FROM u WHERE score = 15").await, vec![10]);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert!(ids(&c, "SELECT id FROM u WHERE score = 15")
        .await
        .is_empty());

    // A unique index over duplicates fails and leaves nothing behind.
    let e = c
        .batch_execute("CREATE UNIQUE INDEX u_city ON u (city)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    assert!(message(&e).contains("could not create unique index"), "{e}");
    c.batch_execute("INSERT INTO u VALUES (11, NULL, 'oslo', 1)")
        .await
        .unwrap();
    // The constraint's index is dropped through the constraint only.
    let e = c.batch_execute("DROP INDEX u_email_key").await.unwrap_err();
    assert_eq!(sqlstate(&e), "2BP01");
    c.batch_execute("ALTER TABLE u DROP CONSTRAINT u_email_key; DROP INDEX u_score_idx")
        .await
        .unwrap();
    c.execute("INSERT INTO u VALUES (12, 'a@x', 'x', 0)", &[])
        .await
        .unwrap();
    let plan = explain(&c, "SELECT id FROM u WHERE score = 1").await;
    assert!(!plan.contains("index"), "{plan}");
    let e = c.batch_execute("DROP INDEX nope").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704");

    // ALTER TABLE ADD UNIQUE checks existing rows; COPY and TRUNCATE keep entries right.
    let e = c
        .batch_execute("ALTER TABLE u ADD CONSTRAINT one_city UNIQUE (city)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    c.batch_execute("TRUNCATE u; ALTER TABLE u ADD CONSTRAINT one_city UNIQUE (city)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO u VALUES (1, NULL, 'oslo', 1)")
        .await
        .unwrap();
    let e = c
        .batch_execute("INSERT INTO u VALUES (2, NULL, 'oslo', 1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    assert!(message(&e).contains("one_city"), "{e}");
    assert_eq!(
        count(&c, "SELECT count(*) FROM u WHERE city = 'oslo'").await,
        1
    );
}

#[tokio::test]
async fn indexes_survive_primary_key_rewrite_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE h (a INT, b TEXT UNIQUE);
         INSERT INTO h VALUES (1, 'x'), (2, 'y'), (3, NULL);
         CREATE INDEX h_a ON h (a);
         ALTER TABLE h ADD PRIMARY KEY (a);",
    )
    .await
    .unwrap();
    assert_eq!(ids(&c, "SELECT a FROM h WHERE b = 'y'").await, vec![2]);
    let e = c
        .execute("INSERT INTO h VALUES (4, 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    drop(c);
    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    assert_eq!(ids(&c, "SELECT a FROM h WHERE b = 'x'").await, vec![1]);
    let e = c
        .execute("INSERT INTO h VALUES (5, 'y')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
}

/// Two transactions claim the same unique value concurrently: exactly one commits, at
/// SERIALIZABLE and at snapshot isolation alike.
#[tokio::test]
async fn concurrent_claims_of_one_value_let_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let setup = node.client().await;
    setup
        .batch_execute("CREATE TABLE acct (id INT PRIMARY KEY, handle TEXT UNIQUE)")
        .await
        .unwrap();
    for (round, level) in ["SERIALIZABLE", "REPEATABLE READ"].iter().enumerate() {
        let a = node.client().await;
        let b = node.client().await;
        let handle = format!("h{round}");
        for (i, c) in [&a, &b].iter().enumerate() {
            c.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}"))
                .await
                .unwrap();
            c.execute(
                "INSERT INTO acct VALUES ($1, $2)",
                &[&((round * 10 + i) as i32), &handle],
            )
            .await
            .unwrap();
        }
        let ra = a.batch_execute("COMMIT").await;
        let rb = b.batch_execute("COMMIT").await;
        assert!(
            ra.is_ok() != rb.is_ok(),
            "{level}: exactly one commit wins: {ra:?} {rb:?}"
        );
        let loser = ra.err().or(rb.err()).unwrap();
        assert!(
            ["23505", "40001"].contains(&sqlstate(&loser).as_str()),
            "{loser}"
        );
        assert_eq!(
            count(
                &setup,
                &format!("SELECT count(*) FROM acct WHERE handle = '{handle}'")
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn insert_on_conflict_do_nothing_and_do_update() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE kv (k TEXT PRIMARY KEY, v INT NOT NULL, hits INT DEFAULT 0 CHECK (hits < 3));
         CREATE TABLE users (id INT PRIMARY KEY, email TEXT UNIQUE, name TEXT);",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "INSERT INTO kv VALUES ('a', 1), ('a', 2), ('b', 3) ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "the second 'a' is skipped");
    // DO UPDATE with EXCLUDED, the target's columns, an alias, WHERE, RETURNING, in order.
    let rows = c
        .query(
            "INSERT INTO kv AS t (k, v) VALUES ('a', 10), ('c', 5) ON CONFLICT (k)
             DO UPDATE SET v = t.v + excluded.v, hits = hits + 1 RETURNING k, v, hits",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![("a".into(), 11, 1), ("c".into(), 5, 0)]);
    let n = c
        .execute(
            "INSERT INTO kv (k, v) VALUES ('a', 1), ('b', 1) ON CONFLICT (k)
             DO UPDATE SET v = 0 WHERE kv.v > 5",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1, "only 'a' passes the WHERE");
    // Parameters in VALUES and in SET (extended protocol).
    c.execute(
        "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v * 2",
        &[&"b", &21i32],
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "SELECT v::bigint FROM kv WHERE k = 'b'").await,
        42
    );
    // Errors PostgreSQL reports.
    for (sql, state) in [
        (
            "INSERT INTO kv (k, v) VALUES ('x', 1), ('x', 2) ON CONFLICT (k) DO UPDATE SET v = 9",
            "21000",
        ),
        (
            "INSERT INTO kv (k, v) VALUES ('x', 1) ON CONFLICT (v) DO NOTHING",
            "42P10",
        ),
        (
            "INSERT INTO kv (k, v) VALUES ('x', 1) ON CONFLICT DO UPDATE SET v = 1",
            "42601",
        ),
        (
            "INSERT INTO kv (k, v) VALUES ('x', 1) ON CONFLICT ON CONSTRAINT nope DO NOTHING",
            "42704",
        ),
        // The update must pass the table's CHECK constraints.
        (
            "INSERT INTO kv (k, v) VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET hits = 7",
            "23514",
        ),
    ] {
        let e = c.execute(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), state, "{sql}: {e}");
    }
    assert_eq!(count(&c, "SELECT count(*) FROM kv").await, 3);

    // A unique index as the arbiter; the primary key still fails when it is not one.
    c.batch_execute("INSERT INTO users VALUES (1, 'a@x', 'A')")
        .await
        .unwrap();
    c.batch_execute(
        "INSERT INTO users VALUES (2, 'a@x', 'B') ON CONFLICT (email) DO UPDATE SET name = excluded.name",
    )
    .await
    .unwrap();
    let e = c
        .batch_execute("INSERT INTO users VALUES (1, 'q@x', 'C') ON CONFLICT (email) DO NOTHING")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    c.batch_execute(
        "INSERT INTO users VALUES (3, 'a@x', 'D') ON CONFLICT ON CONSTRAINT users_email_key DO NOTHING;
         INSERT INTO users VALUES (1, 'n@x', 'E') ON CONFLICT DO NOTHING;",
    )
    .await
    .unwrap();
    let rows = c
        .query("SELECT id, email, name FROM users", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(2), "B");
    // A DO UPDATE that changes the unique column keeps the index right.
    c.batch_execute(
        "INSERT INTO users VALUES (9, 'a@x', 'F') ON CONFLICT (email) DO UPDATE SET email = 'moved@x'",
    )
    .await
    .unwrap();
    assert_eq!(
        ids(&c, "SELECT id FROM users WHERE email = 'moved@x'").await,
        vec![1]
    );
    c.batch_execute("INSERT INTO users VALUES (2, 'a@x', 'G')")
        .await
        .unwrap();
}

/// An ON CONFLICT DO UPDATE that meets a row locked by another transaction, after it already
/// inserted a row of its own, fails its attempt with 40001 and autocommit retries it.
#[tokio::test]
async fn upsert_behind_a_row_lock_retries_whole() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    a.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    let upsert = tokio::spawn(async move {
        b.execute(
            "INSERT INTO t VALUES (2, 0), (1, 0) ON CONFLICT (id) DO UPDATE SET v = t.v + 10",
            &[],
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(upsert.await.unwrap().unwrap(), 2);
    assert_eq!(count(&a, "SELECT v::bigint FROM t WHERE id = 1").await, 11);
    assert_eq!(count(&a, "SELECT count(*) FROM t").await, 2);
}

/// A unique index built under snapshot isolation must not miss a duplicate committed after
/// its snapshot.
#[tokio::test]
async fn unique_index_backfill_conflicts_with_later_rows() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    a.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x')")
        .await
        .unwrap();
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO t VALUES (5, 'x')")
        .await
        .unwrap();
    let built = match a.batch_execute("CREATE UNIQUE INDEX t_v ON t (v)").await {
        Ok(()) => a.batch_execute("COMMIT").await,
        Err(e) => Err(e),
    };
    let e = built.expect_err("the duplicate committed meanwhile must not slip in");
    assert_eq!(sqlstate(&e), "40001", "{e:?}");
    let _ = a.batch_execute("ROLLBACK").await;
    assert!(ids(&a, "SELECT id FROM t WHERE v = 'x' ORDER BY id").await == vec![1, 5]);
}
