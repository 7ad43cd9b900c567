//! Foreign keys through the real binary: COPY into a child table, the race between a child
//! insert and a parent delete in concurrent transactions (at both isolation levels),
//! durability of the constraint across kill -9, and data-modifying CTEs cascading into them.

mod common;

use common::{copy_in, count, sqlstate, TestNode};

const ORPHANS: &str =
    "SELECT count(*) FROM child WHERE pid IS NOT NULL AND pid NOT IN (SELECT id FROM parent)";

#[tokio::test(flavor = "multi_thread")]
async fn copy_checks_parents_and_the_constraint_survives_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE parent (id INT PRIMARY KEY, name TEXT);
         CREATE TABLE child (id INT PRIMARY KEY, pid INT REFERENCES parent ON DELETE CASCADE);
         INSERT INTO parent VALUES (1, 'a'), (2, 'b')",
    )
    .await
    .unwrap();
    assert_eq!(
        copy_in(&c, "COPY child FROM STDIN", "1\t1\n2\t2\n3\t\\N\n")
            .await
            .unwrap(),
        3
    );
    // One bad row fails the whole COPY.
    let e = copy_in(&c, "COPY child FROM STDIN", "4\t1\n5\t9\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23503");
    assert_eq!(count(&c, "SELECT count(*) FROM child").await, 3);

    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    let e = c
        .batch_execute("INSERT INTO child VALUES (6, 7)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23503");
    c.batch_execute("DELETE FROM parent WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM child").await, 2);
    assert_eq!(count(&c, ORPHANS).await, 0);
}

/// T1 inserts a child of parent 1 while T2 deletes parent 1; neither sees the other's write.
/// Whatever the commit order, at most one of them commits and no orphan remains.
async fn race(node: &TestNode, isolation: &str, child_commits_first: bool) {
    let (a, b) = (node.client().await, node.client().await);
    a.batch_execute(
        "DROP TABLE IF EXISTS child; DROP TABLE IF EXISTS parent;
         CREATE TABLE parent (id INT PRIMARY KEY);
         CREATE TABLE child (id INT PRIMARY KEY, pid INT REFERENCES parent);
         INSERT INTO parent VALUES (1)",
    )
    .await
    .unwrap();
    a.batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}"))
        .await
        .unwrap();
    b.batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}"))
        .await
        .unwrap();
    a.batch_execute("INSERT INTO child VALUES (1, 1)")
        .await
        .unwrap();
    b.batch_execute("DELETE FROM parent WHERE id = 1")
        .await
        .unwrap();
    let (first, second) = if child_commits_first {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let r1 = first.batch_execute("COMMIT").await;
    let r2 = second.batch_execute("COMMIT").await;
    let failed = [&r1, &r2].iter().filter(|r| r.is_err()).count();
    assert!(
        failed >= 1,
        "{isolation}: both the child insert and the parent delete committed"
    );
    for r in [r1, r2].iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            ["40001", "23503"].contains(&sqlstate(r).as_str()),
            "{isolation}: unexpected error {r:?}"
        );
    }
    assert_eq!(
        count(&a, ORPHANS).await,
        0,
        "{isolation}: an orphan row remains"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_child_insert_and_parent_delete_leave_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    for isolation in ["SERIALIZABLE", "READ COMMITTED"] {
        for child_first in [true, false] {
            race(&node, isolation, child_first).await;
        }
    }
}

/// Data-modifying CTEs through the extended protocol (with a parameter), cascading into a
/// child table: the CTE's RETURNING rows feed the main statement.
#[tokio::test(flavor = "multi_thread")]
async fn data_modifying_ctes_over_the_extended_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE parent (id INT PRIMARY KEY, name TEXT);
         CREATE TABLE child (id INT PRIMARY KEY, pid INT REFERENCES parent ON DELETE CASCADE);
         CREATE TABLE archive (id INT PRIMARY KEY, name TEXT);
         INSERT INTO parent VALUES (1, 'a'), (2, 'b'), (3, 'c');
         INSERT INTO child VALUES (10, 1), (20, 2)",
    )
    .await
    .unwrap();
    let rows = c
        .query(
            "WITH gone AS (DELETE FROM parent WHERE id <= $1 RETURNING id, name) \
             INSERT INTO archive SELECT id, name FROM gone RETURNING id",
            &[&2i32],
        )
        .await
        .unwrap();
    let mut ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(count(&c, "SELECT count(*) FROM child").await, 0);
    assert_eq!(count(&c, "SELECT count(*) FROM archive").await, 2);
    let n: i64 = c
        .query_one(
            "WITH up AS (UPDATE parent SET name = upper(name) RETURNING id) SELECT count(*) FROM up",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A failing main statement rolls the CTE's writes back with it.
    let e = c
        .batch_execute(
            "WITH d AS (DELETE FROM parent RETURNING id) INSERT INTO child SELECT 99, 42 FROM d",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23503");
    assert_eq!(count(&c, "SELECT count(*) FROM parent").await, 1);
}
