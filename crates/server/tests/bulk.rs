//! End-to-end COPY, TRUNCATE and ALTER TABLE through the real binary.

mod common;

use common::{copy_in, count, sqlstate, TestNode};
use futures::StreamExt;
use tokio_postgres::Client;

async fn copy_out(c: &Client, sql: &str) -> String {
    let stream = c.copy_out(sql).await.unwrap();
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn copy_text_and_csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY, name TEXT, amount NUMERIC(8,2), day DATE, raw BYTEA)",
    )
    .await
    .unwrap();
    let n = copy_in(
        &c,
        "COPY t FROM STDIN",
        "1\tann\t1.50\t2024-01-02\t\\\\x0102\n2\t\\N\t\\N\t\\N\t\\N\n3\ttab\\there\t-3\t2000-02-29\t\\\\x\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    let n = copy_in(
        &c,
        "COPY t (id, name) FROM STDIN WITH (FORMAT csv, HEADER true)",
        "id,name\n4,\"quoted, \"\"comma\"\"\"\n5,\n6,\"\"\n7,\"multi\nline\"\n",
    )
    .await
    .unwrap();
    assert_eq!(n, 4);
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 7);
    assert_eq!(
        count(&c, "SELECT count(*) FROM t WHERE name IS NULL").await,
        2
    );
    let name: String = c
        .query_one("SELECT name FROM t WHERE id = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "quoted, \"comma\"");
    let name: String = c
        .query_one("SELECT name FROM t WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "multi\nline");

    let text = copy_out(&c, "COPY t TO STDOUT").await;
    let first: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(
        first,
        vec![
            "1\tann\t1.50\t2024-01-02\t\\\\x0102",
            "2\t\\N\t\\N\t\\N\t\\N",
            "3\ttab\\there\t-3.00\t2000-02-29\t\\\\x"
        ]
    );
    let csv = copy_out(
        &c,
        "COPY (SELECT id, name FROM t WHERE id >= 4 ORDER BY id) TO STDOUT WITH (FORMAT csv)",
    )
    .await;
    assert_eq!(
        csv,
        "4,\"quoted, \"\"comma\"\"\"\n5,\n6,\"\"\n7,\"multi\nline\"\n"
    );
}

#[tokio::test]
async fn copy_errors_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO t VALUES (100, 1)")
        .await
        .unwrap();
    let e = copy_in(&c, "COPY t FROM STDIN", "1\t1\n2\tnot-a-number\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let e = copy_in(&c, "COPY t FROM STDIN", "1\t1\n2\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P04");
    let e = copy_in(&c, "COPY t FROM STDIN", "1\t1\n2\t\\N\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502");
    let e = copy_in(&c, "COPY t FROM STDIN", "1\t1\n1\t2\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    let e = copy_in(&c, "COPY t FROM STDIN", "5\t1\n100\t2\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505", "a committed row under the same key");
    assert_eq!(
        count(&c, "SELECT count(*) FROM t").await,
        1,
        "nothing of a failed COPY stays"
    );
    let e = c
        .batch_execute("COPY t FROM '/etc/passwd'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");

    // Inside a block, COPY is part of the transaction.
    c.batch_execute("BEGIN").await.unwrap();
    copy_in(&c, "COPY t FROM STDIN", "7\t7\n8\t8\n")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 3);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn truncate_and_alter_table() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE acc (aid INT NOT NULL, bid INT, bal INT, filler CHAR(20)) WITH (fillfactor=100);
         INSERT INTO acc (aid, bid, bal) VALUES (3, 1, 30), (1, 1, 10), (2, 2, 20)",
    )
    .await
    .unwrap();
    // pgbench's step: a primary key on a table created without one, after loading it.
    c.batch_execute("ALTER TABLE acc ADD PRIMARY KEY (aid)")
        .await
        .unwrap();
    let rows = c
        .query("SELECT aid, bal FROM acc WHERE aid >= 2 ORDER BY aid", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let e = c
        .batch_execute("INSERT INTO acc (aid) VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    let e = c
        .batch_execute("ALTER TABLE acc ADD PRIMARY KEY (bid)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P16");

    c.batch_execute("CREATE TABLE dup (a INT, b INT); INSERT INTO dup VALUES (1, 1), (1, 2)")
        .await
        .unwrap();
    let e = c
        .batch_execute("ALTER TABLE dup ADD PRIMARY KEY (a)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    c.batch_execute("ALTER TABLE dup ADD PRIMARY KEY (a, b)")
        .await
        .unwrap();

    // Columns: add (with a default filled into old rows), rename, drop; rename the table.
    c.batch_execute("ALTER TABLE acc ADD COLUMN note TEXT DEFAULT 'n/a'")
        .await
        .unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM acc WHERE note = 'n/a'").await,
        3
    );
    let e = c
        .batch_execute("ALTER TABLE acc ADD COLUMN must INT NOT NULL")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23502");
    c.batch_execute("ALTER TABLE acc RENAME COLUMN bal TO balance")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT sum(balance)::BIGINT FROM acc").await, 60);
    c.batch_execute("ALTER TABLE acc DROP COLUMN filler")
        .await
        .unwrap();
    let e = c.batch_execute("SELECT filler FROM acc").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42703");
    c.batch_execute("ALTER TABLE acc RENAME TO accounts")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM accounts").await, 3);
    let e = c.batch_execute("SELECT * FROM acc").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");

    // TRUNCATE empties several tables at once, atomically, and rolls back cleanly.
    c.batch_execute("BEGIN; TRUNCATE accounts, dup; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM accounts").await, 3);
    c.batch_execute("TRUNCATE TABLE accounts, dup")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM accounts").await, 0);
    assert_eq!(count(&c, "SELECT count(*) FROM dup").await, 0);
    c.batch_execute("INSERT INTO accounts (aid) VALUES (1)")
        .await
        .unwrap();
    for s in ["VACUUM ANALYZE accounts", "VACUUM", "ANALYZE accounts"] {
        c.batch_execute(s).await.unwrap();
    }
}

#[tokio::test]
async fn check_constraints_guard_every_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE acct (id INT PRIMARY KEY, bal INT CHECK (bal >= 0), lim INT,
                            CONSTRAINT within CHECK (bal <= lim))",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO acct VALUES (1, 5, 10), (2, NULL, 1)")
        .await
        .unwrap();
    for (sql, state) in [
        ("INSERT INTO acct VALUES (3, -1, 10)", "23514"),
        ("INSERT INTO acct VALUES (3, 11, 10)", "23514"),
        ("UPDATE acct SET bal = bal - 6 WHERE id = 1", "23514"),
        ("CREATE TABLE bad (a INT CHECK (nope > 0))", "42703"),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), state, "{sql}");
    }
    let e = copy_in(&c, "COPY acct FROM STDIN", "4\t1\t2\n5\t3\t2\n")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    c.batch_execute("UPDATE acct SET bal = bal - 5 WHERE id = 1")
        .await
        .unwrap();
    // Added to existing rows: checked against them; renames follow the column.
    let e = c
        .batch_execute("ALTER TABLE acct ADD CONSTRAINT pos CHECK (lim > 5)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    c.batch_execute("ALTER TABLE acct ADD CHECK (lim > 0)")
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE acct RENAME COLUMN lim TO credit")
        .await
        .unwrap();
    let e = c
        .batch_execute("INSERT INTO acct VALUES (6, 1, 0)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514");
    assert_eq!(count(&c, "SELECT count(*) FROM acct").await, 2);
}

#[tokio::test]
async fn returning_on_insert_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("CREATE TABLE r (id INT PRIMARY KEY, name TEXT, n INT DEFAULT 7)")
        .await
        .unwrap();
    // Extended protocol: typed result columns, defaults filled in.
    let rows = c
        .query(
            "INSERT INTO r (id, name) VALUES ($1, $2), (2, 'b') RETURNING id, n + n AS twice, upper(name)",
            &[&1i32, &"a"],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(1, 14, "A".into()), (2, 14, "B".into())]);
    assert_eq!(rows[0].columns()[1].name(), "twice");
    let rows = c
        .query("UPDATE r SET n = n + id WHERE id = 2 RETURNING *", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].get::<_, i32>(0), rows[0].get::<_, i32>(2)), (2, 9));
    // Simple protocol: the command tag counts the rows.
    let msgs = c
        .simple_query("DELETE FROM r WHERE r.id = 1 RETURNING r.name")
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut tag = None;
    for m in msgs {
        match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => names.push(r.get(0).unwrap().to_string()),
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => tag = Some(n),
            _ => {}
        }
    }
    assert_eq!((names, tag), (vec!["a".to_string()], Some(1)));
    assert_eq!(count(&c, "SELECT count(*) FROM r").await, 1);
    // A failing RETURNING writes nothing.
    let e = c
        .batch_execute("INSERT INTO r VALUES (5, 'e') RETURNING nope")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42703");
    assert_eq!(count(&c, "SELECT count(*) FROM r").await, 1);
}

/// A bulk load appends few, large Raft log entries; the log is compacted by bytes
/// (`--raft-snapshot-interval-bytes`), and the node restarts (after `kill -9`) with every row.
#[tokio::test]
async fn a_bulk_load_compacts_the_raft_log_by_bytes_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--raft-snapshot-interval-bytes", "65536"];
    let mut node = TestNode::start_with(dir.path(), &flags);
    let c = node.client().await;
    c.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, pad TEXT)")
        .await
        .unwrap();
    let pad = "p".repeat(200);
    for round in 0..4 {
        let data: String = (0..2000)
            .map(|i| format!("{}\t{pad}\n", round * 2000 + i))
            .collect();
        copy_in(&c, "COPY big FROM STDIN", &data).await.unwrap();
    }
    assert!(
        common::metric_becomes_positive(&node, "kestrel_raft_log_purges_total", 20_000).await,
        "1.6 MB of COPY never compacted the log"
    );
    node.kill9();
    let node = TestNode::start_with(dir.path(), &flags);
    let c = node.client().await;
    assert_eq!(count(&c, "SELECT count(*) FROM big").await, 8000);
    assert_eq!(
        count(&c, "SELECT count(*) FROM big WHERE length(pad) = 200").await,
        8000
    );
}

/// Bytes of RocksDB write-ahead log files in the node's store.
fn wal_bytes(store: &std::path::Path) -> u64 {
    std::fs::read_dir(store.join("rocksdb"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// `--wal-bytes-max` bounds the write-ahead log a restart would replay: loading several
/// times the limit leaves a WAL of about the limit.
#[tokio::test]
async fn the_wal_a_restart_replays_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4u64 << 20;
    let node = TestNode::start_with(dir.path(), &["--wal-bytes-max", &limit.to_string()]);
    let c = node.client().await;
    c.batch_execute("CREATE TABLE w (id INT PRIMARY KEY, pad TEXT)")
        .await
        .unwrap();
    let pad = "w".repeat(500);
    for round in 0..4 {
        let data: String = (0..6000)
            .map(|i| format!("{}\t{pad}\n", round * 6000 + i))
            .collect();
        copy_in(&c, "COPY w FROM STDIN", &data).await.unwrap();
    }
    // About 12 MB of rows (and as much again of Raft log) went through the WAL. RocksDB
    // deletes a WAL file once the flush it triggered is done: give that a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let wal = wal_bytes(dir.path());
        if wal <= 3 * limit {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL holds {wal} bytes with --wal-bytes-max {limit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(&c, "SELECT count(*) FROM w").await, 24_000);
}
