//! End-to-end: the real binary, a real PostgreSQL client (tokio-postgres, binary formats).

mod common;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use common::{explain, sqlstate, TestNode};
use rust_decimal::Decimal;
use std::str::FromStr;

const ALL_TYPES: &str = "CREATE TABLE all_types (
    id INT PRIMARY KEY, s SMALLINT, b BIGINT, r REAL, d DOUBLE PRECISION, n NUMERIC(10,2), t TEXT,
    v VARCHAR(10), c CHAR(5), ok BOOLEAN, day DATE, ts TIMESTAMP, tz TIMESTAMPTZ, raw BYTEA, u UUID)";

#[tokio::test]
async fn every_type_round_trips_with_parameters_and_literals() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(ALL_TYPES).await.unwrap();

    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    let ts = NaiveDateTime::parse_from_str("2024-02-29 13:14:15.123456", "%Y-%m-%d %H:%M:%S%.f")
        .unwrap();
    let tz: DateTime<Utc> = DateTime::from_naive_utc_and_offset(ts, Utc);
    let u = uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
    let n = Decimal::from_str("12345.67").unwrap();
    c.execute(
        "INSERT INTO all_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[&1i32, &-7i16, &(1i64 << 40), &1.5f32, &-2.25f64, &n, &"héllo", &"short", &"ab", &true, &day, &ts, &tz, &vec![0u8, 1, 255], &u],
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO all_types VALUES (2, 1, 2, 3.5, 4.5, 99.5, 'lit', 'v', 'abcde', false, '2000-01-01',
         '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '\\x0102', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12')",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO all_types (id) VALUES (3)")
        .await
        .unwrap();

    let row = c
        .query_one("SELECT * FROM all_types WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>("s"), -7);
    assert_eq!(row.get::<_, i64>("b"), 1 << 40);
    assert_eq!(row.get::<_, f32>("r"), 1.5);
    assert_eq!(row.get::<_, f64>("d"), -2.25);
    assert_eq!(row.get::<_, Decimal>("n"), n);
    assert_eq!(row.get::<_, String>("t"), "héllo");
    assert_eq!(row.get::<_, String>("v"), "short");
    assert_eq!(
        row.get::<_, String>("c"),
        "ab   ",
        "char(n) pads with blanks"
    );
    assert!(row.get::<_, bool>("ok"));
    assert_eq!(row.get::<_, NaiveDate>("day"), day);
    assert_eq!(row.get::<_, NaiveDateTime>("ts"), ts);
    assert_eq!(row.get::<_, DateTime<Utc>>("tz"), tz);
    assert_eq!(row.get::<_, Vec<u8>>("raw"), vec![0, 1, 255]);
    assert_eq!(row.get::<_, uuid::Uuid>("u"), u);

    let row = c
        .query_one("SELECT n, raw, u, day FROM all_types WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Decimal>(0),
        Decimal::from_str("99.50").unwrap()
    );
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![1, 2]);
    assert_eq!(
        row.get::<_, uuid::Uuid>(2).to_string(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"
    );
    assert_eq!(
        row.get::<_, NaiveDate>(3),
        NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
    );

    let row = c
        .query_one("SELECT s, t, u FROM all_types WHERE id = 3", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i16>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(2), None);

    // The text protocol prints values as PostgreSQL does.
    let msgs = c
        .simple_query("SELECT ok, n, raw, ts, tz, d FROM all_types WHERE id = 1")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("expected a row: {msgs:?}")
    };
    assert_eq!(r.get(0), Some("t"));
    assert_eq!(r.get(1), Some("12345.67"));
    assert_eq!(r.get(2), Some("\\x0001ff"));
    assert_eq!(r.get(3), Some("2024-02-29 13:14:15.123456"));
    assert_eq!(r.get(4), Some("2024-02-29 13:14:15.123456+00"));
    assert_eq!(r.get(5), Some("-2.25"));
}

#[tokio::test]
async fn dml_with_arbitrary_expressions_and_key_queries() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE accounts (owner TEXT, id BIGINT, balance NUMERIC(12,2) NOT NULL DEFAULT 100, PRIMARY KEY (owner, id));
         INSERT INTO accounts VALUES ('alice', 1, 10), ('alice', 2, 20), ('bob', 1, 30), ('amy', 7, 40), ('carl', 3, 50);
         INSERT INTO accounts (owner, id) VALUES ('dora', 1);",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "UPDATE accounts SET balance = balance * 1.01 WHERE owner LIKE 'a%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let total: Decimal = c
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, Decimal::from_str("250.70").unwrap());
    // Key change moves the row.
    assert_eq!(
        c.execute("UPDATE accounts SET id = id + 100 WHERE owner = 'bob'", &[])
            .await
            .unwrap(),
        1
    );
    let ids: Vec<i64> = c
        .query("SELECT id FROM accounts WHERE owner = 'bob'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![101]);
    // Point and range queries on the composite key, visible in EXPLAIN.
    let plan = explain(
        &c,
        "SELECT * FROM accounts WHERE owner = 'alice' AND id = 2",
    )
    .await;
    assert!(plan.contains("point get x1"), "{plan}");
    let plan = explain(
        &c,
        "SELECT * FROM accounts WHERE owner = 'alice' AND id > 1",
    )
    .await;
    assert!(plan.contains("key range"), "{plan}");
    let plan = explain(
        &c,
        "SELECT * FROM accounts WHERE owner = 'alice' AND id IN (1, 2)",
    )
    .await;
    assert!(plan.contains("point get x2"), "{plan}");
    let plan = explain(
        &c,
        "SELECT * FROM accounts WHERE owner = 'alice' AND id IN (1, 2, 3, 4, 5)",
    )
    .await;
    assert!(plan.contains("point get x5"), "{plan}");
    let plan = explain(&c, "SELECT * FROM accounts WHERE balance > 1").await;
    assert!(plan.contains("scan=full"), "{plan}");
    let rows = c
        .query(
            "SELECT id FROM accounts WHERE owner = 'alice' AND id >= 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let rows = c
        .query(
            "SELECT owner FROM accounts WHERE owner BETWEEN 'alice' AND 'bob' ORDER BY owner, id",
            &[],
        )
        .await
        .unwrap();
    let owners: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, vec!["alice", "alice", "amy", "bob"]);
    // DELETE with a subquery.
    let n = c
        .execute(
            "DELETE FROM accounts WHERE balance > (SELECT avg(balance) FROM accounts)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "carl (50) and dora (100) are above the average 41.78");
    let left: i64 = c
        .query_one("SELECT count(*) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 4);
    // INSERT … SELECT from the same table does not see its own rows.
    c.batch_execute("CREATE TABLE nums (n INT PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO nums VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert_eq!(
        c.execute("INSERT INTO nums SELECT n + 3 FROM nums", &[])
            .await
            .unwrap(),
        3
    );
    let cnt: i64 = c
        .query_one("SELECT count(*) FROM nums", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cnt, 6);
    // A table without a key gets a hidden row id: duplicates allowed, hidden from SELECT *.
    c.batch_execute("CREATE TABLE log (msg TEXT); INSERT INTO log VALUES ('x'), ('x'), ('y')")
        .await
        .unwrap();
    let rows = c.query("SELECT * FROM log", &[]).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].columns().len(), 1);
    assert_eq!(
        c.execute("UPDATE log SET msg = 'z' WHERE msg = 'x'", &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        c.execute("DELETE FROM log WHERE msg = 'z'", &[])
            .await
            .unwrap(),
        2
    );
    c.batch_execute("DROP TABLE log").await.unwrap();
    assert_eq!(
        sqlstate(&c.batch_execute("SELECT * FROM log").await.unwrap_err()),
        "42P01"
    );
    c.batch_execute("DROP TABLE IF EXISTS log; CREATE TABLE IF NOT EXISTS nums (n INT)")
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_carry_postgres_sqlstates() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(3) NOT NULL, small SMALLINT)",
    )
    .await
    .unwrap();
    c.batch_execute("INSERT INTO t VALUES (1, 'a', 1)")
        .await
        .unwrap();
    let cases = [
        ("INSERT INTO t VALUES (1, 'b', 1)", "23505"),
        ("INSERT INTO t VALUES (2, 'b', 1), (2, 'c', 1)", "23505"),
        ("INSERT INTO t (id) VALUES (3)", "23502"),
        ("UPDATE t SET name = NULL", "23502"),
        ("SELECT * FROM missing", "42P01"),
        ("SELECT nope FROM t", "42703"),
        ("SELEC 1", "42601"),
        ("CREATE TABLE t (x INT)", "42P07"),
        ("INSERT INTO t VALUES ('abc', 'x', 1)", "22P02"),
        ("INSERT INTO t VALUES (4, 'x', 100000)", "22003"),
        ("INSERT INTO t VALUES (5, 'toolong', 1)", "22001"),
        ("SELECT 1/0", "22012"),
        ("CREATE INDEX ON t ((random() > 0.5))", "42P17"),
        ("CREATE INDEX ON t (name) INCLUDE (id)", "0A000"),
        (
            // PostgreSQL 15 has only STORED generated columns.
            "CREATE TABLE v (a INT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL)",
            "42601",
        ),
        ("CREATE MATERIALIZED VIEW vw AS SELECT 1", "0A000"),
        (
            "CREATE TABLE w (a INT PRIMARY KEY, b INT PRIMARY KEY)",
            "42P16",
        ),
        ("CREATE TABLE w (a INT, a INT)", "42701"),
        ("DROP TABLE missing", "42P01"),
    ];
    for (sql, want) in cases {
        let err = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err), want, "{sql}: {err:?}");
    }
    // The connection is still healthy, and nothing partial was written.
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let err = node
        .client_db("nosuchdb")
        .await
        .expect_err("missing database");
    assert_eq!(sqlstate(&err), "3D000");
    node.client_db("postgres")
        .await
        .expect("the postgres database exists");
}

#[tokio::test]
async fn data_survives_restart_and_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    {
        let c = node.client().await;
        c.batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one'), (2, 'two')").await.unwrap();
    }
    assert!(node.terminate(), "SIGTERM exits cleanly");
    let mut node = TestNode::start(dir.path());
    {
        let c = node.client().await;
        let v: String = c
            .query_one("SELECT v FROM kv WHERE k = 2", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, "two");
        c.batch_execute(
            "UPDATE kv SET v = 'uno' WHERE k = 1; CREATE TABLE more (x INT PRIMARY KEY)",
        )
        .await
        .unwrap();
    }
    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    let v: String = c
        .query_one("SELECT v FROM kv WHERE k = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "uno");
    c.batch_execute("INSERT INTO more VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test]
async fn second_start_on_a_store_in_use_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _node = TestNode::start(dir.path());
    let err = TestNode::try_start(dir.path())
        .err()
        .expect("second start must fail");
    assert!(err.contains("in use by another kestrel process"), "{err}");
}

#[tokio::test]
async fn health_and_metrics_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let (code, body) = node.http_get("/health").await;
    assert_eq!((code, body.trim()), (200, "ok"));
    let c = node.client().await;
    c.batch_execute("CREATE TABLE m (a INT PRIMARY KEY); INSERT INTO m VALUES (1)")
        .await
        .unwrap();
    let (code, body) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    for metric in [
        "kestrel_sql_statements_total",
        "kestrel_sql_statement_latency_seconds_bucket",
        "kestrel_txn_commits_total",
        "kestrel_txn_aborts_total",
        "kestrel_raft_log_appends_total",
        "kestrel_raft_log_fsyncs_total",
    ] {
        assert!(body.contains(metric), "missing {metric} in\n{body}");
    }
    let commits: f64 = body
        .lines()
        .find(|l| l.starts_with("kestrel_txn_commits_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(commits >= 2.0, "{commits}");
}

#[test]
fn version_and_help() {
    let out = std::process::Command::new(common::kestrel_bin())
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kestrel {}", env!("CARGO_PKG_VERSION"))
    );
    let out = std::process::Command::new(common::kestrel_bin())
        .args(["start", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--store",
        "--listen-addr",
        "--http-addr",
        "--insecure",
        "--max-connections",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let out = std::process::Command::new(common::kestrel_bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_53300() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::kestrel_bin())
        .args(["start", "--store"])
        .arg(dir.path())
        .args([
            "--listen-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--max-connections",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let ready = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.starts_with("KESTREL_READY")))
        .unwrap()
        .unwrap();
    let port = ready
        .split("sql=127.0.0.1:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let conn = format!("host=127.0.0.1 port={port} user=root dbname=defaultdb");
    let (first, c1) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(c1);
    first.simple_query("SELECT 1").await.unwrap();
    let err = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .err()
        .expect("second connection refused");
    assert_eq!(sqlstate(&err), "53300");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn early_stopping_queries_and_hostile_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute("CREATE TABLE big (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    let n = c
        .execute(
            "INSERT INTO big SELECT value, value % 7 FROM generate_series(1, 20000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 20000);
    // LIMIT stops the scan after the first batches; the statement still commits cleanly.
    for _ in 0..20 {
        let rows = c
            .query("SELECT * FROM big WHERE v > 0 LIMIT 1", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    }
    let rows = c
        .query("SELECT id FROM big WHERE id BETWEEN 10 AND 5", &[])
        .await
        .unwrap();
    assert!(rows.is_empty());
    let err = c.prepare("SELECT $2000000000").await.unwrap_err();
    assert_eq!(sqlstate(&err), "42601");
    // A text-format bytea parameter with a non-ASCII byte is an error, not a crash.
    let err = c.simple_query("SELECT '\\x0é0'::bytea").await;
    assert!(err.is_err());
    let ok: i64 = c
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ok, 20000);
}

// --- Extended-protocol replies are buffered until Sync or Flush, as PostgreSQL's are. ---

use common::wire::{self, Wire};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn extended_replies_wait_for_sync_or_flush() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let mut w = Wire::connect(&node.sql_addr, "defaultdb");
    let mut batch = wire::parse("s1", "SELECT $1::int + 1");
    batch.extend(wire::bind("", "s1", &[Some("41")]));
    batch.extend(wire::describe_portal(""));
    batch.extend(wire::execute("", 0));
    w.send(&batch);
    let early = w.recv(QUIET);
    assert!(early.is_none(), "a reply before Sync or Flush: {early:?}");
    w.send(&wire::flush());
    // ParseComplete, BindComplete, RowDescription, DataRow, CommandComplete.
    assert_eq!(w.until(b'C', WAIT), b"12TDC");
    w.send(&wire::sync());
    assert_eq!(w.until(b'Z', WAIT), b"Z");

    // The usual pipeline (Bind, Describe, Execute, Sync) answers in full, the value right.
    let mut batch = wire::bind("", "s1", &[Some("1")]);
    batch.extend(wire::describe_portal(""));
    batch.extend(wire::execute("", 0));
    batch.extend(wire::sync());
    w.send(&batch);
    let mut tags = Vec::new();
    let mut value = None;
    while let Some(m) = w.recv(WAIT) {
        if m.tag == b'D' {
            // One column: int16 count, int32 length, text.
            value = Some(String::from_utf8_lossy(&m.body[6..]).to_string());
        }
        tags.push(m.tag);
        if m.tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags, b"2TDCZ");
    assert_eq!(value.as_deref(), Some("2"));

    // An error ends the batch at once, then Sync answers ReadyForQuery.
    w.send(&wire::parse("bad", "SELECT 1 / $1::int"));
    w.send(&wire::bind("", "bad", &[Some("0")]));
    w.send(&wire::execute("", 0));
    w.send(&wire::sync());
    assert_eq!(w.until(b'Z', WAIT), b"12EZ");
}

#[test]
fn extended_results_larger_than_the_buffer_stream_before_sync() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let mut w = Wire::connect(&node.sql_addr, "defaultdb");
    let mut batch = wire::parse(
        "",
        "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
    );
    batch.extend(wire::bind("", "", &[]));
    batch.extend(wire::execute("", 0));
    w.send(&batch);
    // No Sync yet: rows still arrive once they pass the write buffer's bound (the tail of
    // the answer waits for Sync, as in PostgreSQL).
    let mut tags = vec![w.recv(WAIT).expect("rows before Sync").tag];
    while let Some(m) = w.recv(QUIET) {
        tags.push(m.tag);
    }
    assert_eq!(tags[0], b'1');
    let early = tags.iter().filter(|t| **t == b'D').count();
    assert!(early > 1000, "only {early} rows before Sync");
    w.send(&wire::sync());
    tags.extend(w.until(b'Z', WAIT));
    assert_eq!(tags.iter().filter(|t| **t == b'D').count(), 20000);
    assert_eq!(&tags[tags.len() - 2..], b"CZ");
}

#[test]
fn extended_copy_in_response_is_sent_without_waiting_for_sync() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let mut w = Wire::connect(&node.sql_addr, "defaultdb");
    w.send(&wire::query("CREATE TABLE cp (a INT PRIMARY KEY, b TEXT)"));
    w.until(b'Z', WAIT);
    let mut batch = wire::parse("", "COPY cp FROM STDIN");
    batch.extend(wire::bind("", "", &[]));
    batch.extend(wire::execute("", 0));
    w.send(&batch);
    // The client sends its data only after CopyInResponse; it must not wait for a Sync.
    assert_eq!(w.until(b'G', WAIT), b"12G");
    w.send(&wire::copy_data(b"1\tone\n2\ttwo\n"));
    w.send(&wire::copy_done());
    w.send(&wire::sync());
    assert_eq!(w.until(b'Z', WAIT), b"CZ");
    w.send(&wire::query("SELECT count(*) FROM cp"));
    let mut n = None;
    loop {
        let m = w.recv(WAIT).expect("reply");
        if m.tag == b'D' {
            n = Some(String::from_utf8_lossy(&m.body[6..]).to_string());
        }
        if m.tag == b'Z' {
            break;
        }
    }
    assert_eq!(n.as_deref(), Some("2"));
}
