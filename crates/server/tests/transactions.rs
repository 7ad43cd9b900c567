//! End-to-end transactions through the real binary: explicit blocks on both protocol paths,
//! savepoints, failed blocks, isolation levels, and SERIALIZABLE anomalies.

mod common;

use std::sync::Arc;

use common::{commits_and_fsyncs, count, metric, sqlstate, TestNode};
use tokio_postgres::{Client, IsolationLevel};

async fn show(c: &Client, var: &str) -> String {
    let msgs = c.simple_query(&format!("SHOW {var}")).await.unwrap();
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("SHOW {var} returned no row: {msgs:?}"))
}

#[tokio::test]
async fn explicit_blocks_commit_rollback_and_read_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    let other = node.client().await;
    c.batch_execute(
        "CREATE TABLE a (id INT PRIMARY KEY, v TEXT); CREATE TABLE b (id INT PRIMARY KEY)",
    )
    .await
    .unwrap();

    // Simple protocol: BEGIN … ROLLBACK leaves nothing; own writes are visible inside.
    c.batch_execute("BEGIN; INSERT INTO a VALUES (1, 'x'); INSERT INTO b VALUES (1)")
        .await
        .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM a").await, 1);
    assert_eq!(
        count(&other, "SELECT count(*) FROM a").await,
        0,
        "not visible before COMMIT"
    );
    c.batch_execute("UPDATE a SET v = 'y' WHERE id = 1")
        .await
        .unwrap();
    let v: String = c
        .query_one("SELECT v FROM a WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "y");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM a").await, 0);
    assert_eq!(count(&c, "SELECT count(*) FROM b").await, 0);

    // Extended protocol (tokio-postgres' Transaction): both tables commit together.
    let mut c2 = node.client().await;
    let tx = c2.transaction().await.unwrap();
    tx.execute("INSERT INTO a VALUES ($1, $2)", &[&2i32, &"p"])
        .await
        .unwrap();
    tx.execute("INSERT INTO b VALUES ($1)", &[&2i32])
        .await
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM a", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    tx.commit().await.unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM a").await, 1);
    assert_eq!(count(&other, "SELECT count(*) FROM b").await, 1);

    // START TRANSACTION / END, and DDL inside a block is rolled back with it.
    c.batch_execute(
        "START TRANSACTION; CREATE TABLE gone (x INT PRIMARY KEY); INSERT INTO gone VALUES (1)",
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM gone").await, 1);
    c.batch_execute("ROLLBACK").await.unwrap();
    let e = c.query("SELECT * FROM gone", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    c.batch_execute("START TRANSACTION; INSERT INTO a VALUES (3, 'e'); END")
        .await
        .unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM a").await, 2);
}

#[tokio::test]
async fn errors_fail_the_block_until_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let e = c
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505", "duplicate detected at the statement");
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    // COMMIT of a failed block rolls back.
    let msgs = c.simple_query("COMMIT").await.unwrap();
    match &msgs[0] {
        tokio_postgres::SimpleQueryMessage::CommandComplete(_) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 0);

    // Savepoints: ROLLBACK TO revives a failed block and undoes later writes.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (10); SAVEPOINT s1; INSERT INTO t VALUES (11)")
        .await
        .unwrap();
    let e = c.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    c.batch_execute("ROLLBACK TO SAVEPOINT s1").await.unwrap();
    c.batch_execute(
        "INSERT INTO t VALUES (12); SAVEPOINT s2; INSERT INTO t VALUES (13); RELEASE SAVEPOINT s2",
    )
    .await
    .unwrap();
    let e = c.batch_execute("ROLLBACK TO s2").await.unwrap_err();
    assert_eq!(sqlstate(&e), "3B001", "released savepoints are gone");
    c.batch_execute("ROLLBACK TO s1; COMMIT").await.unwrap();
    let ids: Vec<i32> = c
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![10]);

    // Savepoints need a block.
    let e = c.batch_execute("SAVEPOINT x").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P01");

    // A multi-statement query outside a block is one implicit transaction.
    let e = c
        .batch_execute("INSERT INTO t VALUES (20); INSERT INTO t VALUES (10)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23505");
    assert_eq!(count(&c, "SELECT count(*) FROM t WHERE id = 20").await, 0);
}

#[tokio::test]
async fn isolation_levels_are_reported_and_read_only_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let mut c = node.client().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    assert_eq!(show(&c, "transaction_isolation").await, "serializable");
    assert_eq!(
        show(&c, "TRANSACTION ISOLATION LEVEL").await,
        "serializable"
    );
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(show(&c, "transaction_isolation").await, "repeatable read");
    c.batch_execute("COMMIT").await.unwrap();
    c.batch_execute("BEGIN; SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    assert_eq!(show(&c, "transaction_isolation").await, "repeatable read");
    c.batch_execute("SELECT 1").await.unwrap();
    let e = c
        .batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25001");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(show(&c, "transaction_isolation").await, "repeatable read");
    c.batch_execute("SET default_transaction_isolation = 'serializable'")
        .await
        .unwrap();
    assert_eq!(
        show(&c, "default_transaction_isolation").await,
        "serializable"
    );

    let tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .read_only(true)
        .start()
        .await
        .unwrap();
    let e = tx
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
    tx.rollback().await.unwrap();
}

/// Two doctors on call; each takes themself off if the other is still on call. Serializable
/// lets at most one commit.
#[tokio::test]
async fn serializable_prevents_write_skew_and_lost_update() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let setup = node.client().await;
    setup
        .batch_execute(
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN NOT NULL);
             INSERT INTO doctors VALUES ('alice', true), ('bob', true);
             CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL);
             INSERT INTO counter VALUES (1, 0)",
        )
        .await
        .unwrap();
    let a = node.client().await;
    let b = node.client().await;
    for (c, _) in [(&a, "alice"), (&b, "bob")] {
        c.batch_execute("BEGIN").await.unwrap();
        assert_eq!(
            count(c, "SELECT count(*) FROM doctors WHERE on_call").await,
            2
        );
    }
    a.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'alice'")
        .await
        .unwrap();
    b.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'bob'")
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();
    let e = b.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&e), "40001");
    assert_eq!(
        count(&setup, "SELECT count(*) FROM doctors WHERE on_call").await,
        1
    );
    // After the failed COMMIT the session is out of the block and usable.
    assert_eq!(count(&b, "SELECT count(*) FROM doctors").await, 2);

    // Lost update: two read-modify-write increments from values read earlier; the second
    // writer waits for the first's row lock, then fails (its read is stale).
    for c in [&a, &b] {
        c.batch_execute("BEGIN").await.unwrap();
    }
    let na: i32 = a
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let nb: i32 = b
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    a.execute("UPDATE counter SET n = $1 WHERE id = 1", &[&(na + 1)])
        .await
        .unwrap();
    let b = Arc::new(b);
    let b2 = b.clone();
    let blocked = tokio::spawn(async move {
        b2.execute("UPDATE counter SET n = $1 WHERE id = 1", &[&(nb + 1)])
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !blocked.is_finished(),
        "the second writer waits for the row lock"
    );
    a.batch_execute("COMMIT").await.unwrap();
    let e = blocked.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "40001");
    b.batch_execute("ROLLBACK").await.unwrap();
    let n: i32 = setup
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // Blind increments (no earlier read of the row) both commit: the waiter re-runs its
    // UPDATE on a refreshed snapshot instead of failing.
    for c in [&a, &*b] {
        c.batch_execute("BEGIN").await.unwrap();
    }
    a.batch_execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        .await
        .unwrap();
    let b2 = b.clone();
    let blocked = tokio::spawn(async move {
        b2.batch_execute("UPDATE counter SET n = n + 10 WHERE id = 1")
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    a.batch_execute("COMMIT").await.unwrap();
    blocked.await.unwrap().unwrap();
    b.batch_execute("COMMIT").await.unwrap();
    let n: i32 = setup
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 12);
}

/// Concurrent transfers between accounts, retried on 40001: the total never changes, and
/// every committed transfer is in the ledger.
#[tokio::test]
async fn concurrent_bank_transfers_keep_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let setup = node.client().await;
    setup
        .batch_execute(
            "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL);
             CREATE TABLE ledger (id INT PRIMARY KEY, src INT, dst INT, amount BIGINT);
             INSERT INTO acct VALUES (0,1000),(1,1000),(2,1000),(3,1000),(4,1000)",
        )
        .await
        .unwrap();
    let workers = 4;
    let per_worker = 15;
    let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut c = node.client().await;
        let committed = committed.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let id = w * 1000 + i;
                let src = (w + i) % 5;
                let dst = (w + 2 * i + 1) % 5;
                let amount = (i as i64 % 7) + 1;
                loop {
                    let tx = c.transaction().await.unwrap();
                    let res = async {
                        let bal: i64 = tx
                            .query_one("SELECT bal FROM acct WHERE id = $1", &[&src])
                            .await?
                            .get(0);
                        tx.execute(
                            "UPDATE acct SET bal = $1 WHERE id = $2",
                            &[&(bal - amount), &src],
                        )
                        .await?;
                        tx.execute(
                            "UPDATE acct SET bal = bal + $1 WHERE id = $2",
                            &[&amount, &dst],
                        )
                        .await?;
                        tx.execute(
                            "INSERT INTO ledger VALUES ($1, $2, $3, $4)",
                            &[&id, &src, &dst, &amount],
                        )
                        .await?;
                        tx.commit().await
                    }
                    .await;
                    match res {
                        Ok(()) => break,
                        // Serialization failures and deadlocks are both retried, as pgbench does.
                        Err(e) if ["40001", "40P01"].contains(&sqlstate(&e).as_str()) => continue,
                        Err(e) => panic!("transfer failed: {e:?}"),
                    }
                }
                committed.lock().unwrap().push((id, src, dst, amount));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        count(&setup, "SELECT sum(bal)::BIGINT FROM acct").await,
        5000
    );
    let n = committed.lock().unwrap().len() as i64;
    assert_eq!(n, (workers * per_worker) as i64);
    assert_eq!(count(&setup, "SELECT count(*) FROM ledger").await, n);
    // Each account's balance is exactly what the ledger says.
    for a in 0..5i32 {
        let bal: i64 = setup
            .query_one("SELECT bal FROM acct WHERE id = $1", &[&a])
            .await
            .unwrap()
            .get(0);
        let expected: i64 = 1000
            + committed
                .lock()
                .unwrap()
                .iter()
                .map(|(_, s, d, amt)| {
                    (if *d == a { *amt } else { 0 }) - (if *s == a { *amt } else { 0 })
                })
                .sum::<i64>();
        assert_eq!(bal, expected, "account {a}");
    }
}

/// Review findings: a cancelled lock wait leaves no lock behind; BEGIN's modes apply inside a
/// multi-statement query; a snapshot-isolation writer conflicts with a concurrent TRUNCATE.
#[tokio::test]
async fn lock_waits_cancel_cleanly_and_ddl_conflicts_with_snapshot_writers() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let a = node.client().await;
    let b = node.client().await;
    a.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0), (2, 0)",
    )
    .await
    .unwrap();
    a.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    // b waits for row 1 (a holds it) until its statement times out; nothing stays locked.
    b.batch_execute("SET statement_timeout = 300")
        .await
        .unwrap();
    let e = b
        .batch_execute("UPDATE t SET v = 2 WHERE id IN (1, 2)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "57014");
    b.batch_execute("SET statement_timeout = 0").await.unwrap();
    // Row 2 is free: this does not wait.
    let c = node.client().await;
    c.batch_execute("SET statement_timeout = 2000; UPDATE t SET v = 3 WHERE id = 2")
        .await
        .unwrap();
    a.batch_execute("COMMIT").await.unwrap();

    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    assert_eq!(show(&b, "transaction_isolation").await, "repeatable read");
    b.batch_execute("INSERT INTO t VALUES (3, 0)")
        .await
        .unwrap();
    a.batch_execute("TRUNCATE t").await.unwrap();
    let e = b.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&e), "40001");
    assert_eq!(count(&a, "SELECT count(*) FROM t").await, 0);
}

/// A transaction over several tables (several ranges, all on this node: a local multi-range
/// commit) costs at most one WAL fsync: the other ranges' entries are deferred to the commit
/// entry's fsync. And `n` Raft entries for `n` ranges (the two-phase commit takes `2n - 1`),
/// plus a share of the background entries that delete applied redo records.
#[tokio::test]
async fn a_multi_range_commit_costs_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE fa (id INT PRIMARY KEY, n INT);
         CREATE TABLE fb (id INT PRIMARY KEY, n INT);
         CREATE TABLE fc (id INT PRIMARY KEY, n INT);
         INSERT INTO fa VALUES (1, 0); INSERT INTO fb VALUES (1, 0); INSERT INTO fc VALUES (1, 0);",
    )
    .await
    .unwrap();
    let txns = 30;
    let proposals = || async {
        let (_, text) = node.http_get("/metrics").await;
        metric(&text, "kestrel_raft_proposals_total")
    };
    let proposals_before = proposals().await;
    let before = commits_and_fsyncs(&node).await;
    for i in 0..txns {
        c.batch_execute(&format!(
            "BEGIN;
             UPDATE fa SET n = n + 1 WHERE id = 1;
             UPDATE fb SET n = n + 1 WHERE id = 1;
             INSERT INTO fc VALUES ({}, {i});
             COMMIT;",
            i + 2
        ))
        .await
        .unwrap();
    }
    let after = commits_and_fsyncs(&node).await;
    let (commits, fsyncs) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(commits, txns as f64);
    // Three ranges: the commit entry and two deferred ones, and at most one redo deletion per
    // commit (one client: fewer when commits come faster than the cleaner's 5 ms wait). The
    // two-phase commit would take five.
    let entries = proposals().await - proposals_before;
    assert!(
        entries <= 4.0 * commits + 3.0,
        "{entries} Raft proposals for {commits} commits"
    );
    // A few background syncs (Raft metadata) may fall into the window; three ranges' locks,
    // record and resolutions fsynced one by one would be 7 per transaction.
    assert!(
        fsyncs <= commits + 3.0,
        "{fsyncs} fsyncs for {commits} commits"
    );
    let n: i32 = c
        .query_one("SELECT n FROM fb WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, txns);
    assert_eq!(count(&c, "SELECT count(*) FROM fc").await, txns as i64 + 1);
}

/// Group commit: concurrent commits share WAL fsyncs. Eight clients commit multi-range
/// transactions on rows of their own (no row lock serializes them). An fsync here takes about
/// 65 µs, far less than a debug build's time between commits, so the node runs with a commit
/// delay (PostgreSQL's `commit_delay`) that lets commits meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), &["--group-commit-delay-us", "20000"]);
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE ga (id INT PRIMARY KEY, n INT);
         CREATE TABLE gb (id INT, client INT, PRIMARY KEY (id, client));
         INSERT INTO ga SELECT g, 0 FROM generate_series(0, 7) g;",
    )
    .await
    .unwrap();
    let (clients, txns) = (8, 10);
    let before = commits_and_fsyncs(&node).await;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let c = node.client().await;
        tasks.spawn(async move {
            for i in 0..txns {
                c.batch_execute(&format!(
                    "BEGIN;
                     UPDATE ga SET n = n + 1 WHERE id = {k};
                     INSERT INTO gb VALUES ({i}, {k});
                     COMMIT;"
                ))
                .await
                .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let after = commits_and_fsyncs(&node).await;
    let (commits, fsyncs) = (after.0 - before.0, after.1 - before.1);
    eprintln!("{commits} commits, {fsyncs} WAL fsyncs");
    assert_eq!(commits, (clients * txns) as f64);
    assert!(fsyncs < commits, "{fsyncs} fsyncs for {commits} commits");
    assert_eq!(count(&c, "SELECT count(*) FROM gb").await, clients * txns);
    assert_eq!(
        count(&c, "SELECT sum(n)::BIGINT FROM ga").await,
        clients * txns
    );
}

async fn bump(writer: &Client, id: i32, times: usize) {
    for _ in 0..times {
        writer
            .execute("UPDATE h SET v = v + 1 WHERE id = $1", &[&id])
            .await
            .unwrap();
    }
}

async fn rows(c: &Client) -> Vec<(i32, i32)> {
    c.query("SELECT id, v FROM h ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
        .collect()
}

/// A table scan at an old snapshot over rows with long histories: versions newer than the
/// snapshot and older than the visible one are skipped with seeks (more than the 8 the
/// storage layer steps over), and the rows after them are still found.
#[tokio::test]
async fn snapshot_scans_skip_long_histories() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let reader = node.client().await;
    let writer = node.client().await;
    writer
        .batch_execute(
            "CREATE TABLE h (id INT PRIMARY KEY, v INT); INSERT INTO h VALUES (1, 0), (2, 0), (3, 0)",
        )
        .await
        .unwrap();
    bump(&writer, 1, 20).await;
    bump(&writer, 2, 20).await;
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(rows(&reader).await, vec![(1, 20), (2, 20), (3, 0)]);
    bump(&writer, 2, 30).await;
    bump(&writer, 3, 12).await;
    writer
        .batch_execute("DELETE FROM h WHERE id = 1; INSERT INTO h VALUES (4, 7)")
        .await
        .unwrap();
    assert_eq!(
        rows(&reader).await,
        vec![(1, 20), (2, 20), (3, 0)],
        "the snapshot's versions under 30 newer ones"
    );
    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(rows(&reader).await, vec![(2, 50), (3, 12), (4, 7)]);
}
