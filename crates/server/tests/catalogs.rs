//! psql's describe commands (`\dt`, `\di`, `\dn`, `\d t`, `\ds`, `\dv`) against the real binary
//! print exactly what they print against PostgreSQL 15 for the same schema
//! (tests/clients/catalog_describe.expected was produced by psql 15 against PostgreSQL 15),
//! information_schema / pg_catalog answer the common introspection queries, and arrays travel
//! in PostgreSQL's text and binary array formats.

mod common;

use std::process::Command;

use common::TestNode;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

fn clients(file: &str) -> String {
    format!("{}/../../tests/clients/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn psql(node: &TestNode, args: &[&str]) -> String {
    let out = Command::new(PSQL)
        .args(["-X", "-h", "127.0.0.1", "-U", "root", "-d", "defaultdb"])
        .args(["-p", &node.port().to_string()])
        .args(args)
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "psql {args:?}: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn psql_describe_matches_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    psql(
        &node,
        &[
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            &clients("catalog_ddl.sql"),
        ],
    );
    let mut got = String::new();
    for cmd in [
        "\\dt",
        "\\di",
        "\\dn",
        "\\d items",
        "\\d inventory.bins",
        "\\ds",
        "\\dv",
    ] {
        got.push_str(&format!("=== {cmd}\n"));
        got.push_str(&psql(&node, &["-c", cmd]));
    }
    let want = std::fs::read_to_string(clients("catalog_describe.expected")).unwrap();
    assert_eq!(got, want, "psql describe output differs from PostgreSQL's");
    // The other listings run and show what exists.
    let l = psql(&node, &["-c", "\\l"]);
    assert!(l.contains("defaultdb") && l.contains("postgres"), "{l}");
    let du = psql(&node, &["-c", "\\du"]);
    assert!(du.contains("root") && du.contains("Superuser"), "{du}");
    let plus = psql(&node, &["-c", "\\d+ items"]);
    assert!(plus.contains("Access method: heap"), "{plus}");
    let view = psql(&node, &["-c", "\\d+ cheap"]);
    assert!(view.contains("View definition:"), "{view}");
}

#[tokio::test(flavor = "multi_thread")]
async fn information_schema_and_pg_catalog_queries() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(&std::fs::read_to_string(clients("catalog_ddl.sql")).unwrap())
        .await
        .unwrap();
    let rows = c
        .query(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let t = |s: &str, n: &str, ty: &str| (s.to_string(), n.to_string(), ty.to_string());
    assert_eq!(
        got,
        vec![
            t("inventory", "bins", "BASE TABLE"),
            t("public", "cheap", "VIEW"),
            t("public", "items", "BASE TABLE"),
        ]
    );
    let rows = c
        .query(
            "SELECT column_name, data_type, is_nullable, character_maximum_length, \
             numeric_precision, numeric_scale, column_default \
             FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            &[&"items"],
        )
        .await
        .unwrap();
    let cols: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{:?}|{:?}|{:?}|{:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, Option<i32>>(3),
                r.get::<_, Option<i32>>(4),
                r.get::<_, Option<i32>>(5),
                r.get::<_, Option<String>>(6),
            )
        })
        .collect();
    assert_eq!(
        cols,
        vec![
            "id|integer|NO|None|Some(32)|Some(0)|None",
            "name|character varying|NO|Some(20)|None|None|None",
            "qty|integer|YES|None|Some(32)|Some(0)|Some(\"0\")",
            "code|text|YES|None|None|None|None",
            "price|numeric|YES|None|Some(10)|Some(2)|None",
        ]
    );
    // Constraints and the pg_catalog joins clients use; unqualified names find pg_catalog.
    let rows = c
        .query(
            "SELECT tc.constraint_name, tc.constraint_type, kcu.column_name \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name \
             WHERE tc.table_name = 'items' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect();
    assert_eq!(
        got,
        vec!["items_code_key|UNIQUE|code", "items_pkey|PRIMARY KEY|id"]
    );
    let row = c
        .query_one(
            "SELECT c.relname, c.relkind, n.nspname, pg_get_indexdef(i.indexrelid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = 'items_name'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "i");
    assert_eq!(row.get::<_, String>(2), "public");
    assert_eq!(
        row.get::<_, String>(3),
        "CREATE INDEX items_name ON public.items USING btree (name)"
    );
    let row = c
        .query_one(
            "SELECT 'items'::regclass = (SELECT oid FROM pg_class WHERE relname = 'items'), \
             current_database(), current_schema(), current_user, \
             format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = 'items'::regclass AND a.attname = 'name'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "defaultdb");
    assert_eq!(row.get::<_, String>(2), "public");
    assert_eq!(row.get::<_, String>(3), "root");
    assert_eq!(row.get::<_, String>(4), "character varying(20)");
    let e = c.query("SELECT 'nosuch'::regclass", &[]).await.unwrap_err();
    assert_eq!(common::sqlstate(&e), "42P01");
    // The catalog is transactional: a table created in an open block is visible to it only.
    c.batch_execute("BEGIN; CREATE TABLE fresh (x int)")
        .await
        .unwrap();
    let other = node.client().await;
    assert_eq!(
        common::count(&c, "SELECT count(*) FROM pg_class WHERE relname = 'fresh'").await,
        1
    );
    assert_eq!(
        common::count(
            &other,
            "SELECT count(*) FROM pg_class WHERE relname = 'fresh'"
        )
        .await,
        0
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    // System tables are read-only.
    let e = c.execute("DELETE FROM pg_class", &[]).await.unwrap_err();
    assert!(!common::sqlstate(&e).is_empty());
}

/// Arrays (catalog columns such as `conkey`, `array_agg` results) travel as PostgreSQL arrays:
/// `{…}` text with PostgreSQL's quoting, and the binary array format; intervals as intervals.
#[tokio::test(flavor = "multi_thread")]
async fn array_results_in_text_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    // Binary (tokio-postgres asks for binary results).
    let row = c
        .query_one("SELECT ARRAY[1, 2, NULL], ARRAY['a b', 'c', NULL]", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Vec<Option<i64>>>(0),
        vec![Some(1), Some(2), None]
    );
    assert_eq!(
        row.get::<_, Vec<Option<String>>>(1),
        vec![Some("a b".to_string()), Some("c".to_string()), None]
    );
    // Text (the simple protocol), quoted as PostgreSQL quotes.
    let msgs = c
        .simple_query("SELECT ARRAY['a b', 'c', NULL, 'NULL', '{x}', 'q\"'], ARRAY[true, false]")
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get(0), Some(r#"{"a b",c,NULL,"NULL","{x}","q\""}"#));
    assert_eq!(row.get(1), Some("{t,f}"));
    // Intervals print in PostgreSQL's style; a timestamp difference counts whole days.
    let msgs = c
        .simple_query(
            "SELECT TIMESTAMP '2024-03-15 12:00:00' - TIMESTAMP '2024-03-14 10:30:00', \
             INTERVAL '1 day' - INTERVAL '1 hour', INTERVAL '1 year' + INTERVAL '13 months', \
             INTERVAL '25 hours'",
        )
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let got: Vec<&str> = (0..4).filter_map(|i| row.get(i)).collect();
    assert_eq!(
        got,
        vec![
            "1 day 01:30:00",
            "1 day -01:00:00",
            "2 years 1 mon",
            "25:00:00"
        ]
    );
    // int2vector columns print space-separated, as clients expect.
    c.batch_execute("CREATE TABLE v (a int, b int, PRIMARY KEY (b, a))")
        .await
        .unwrap();
    let msgs = c
        .simple_query("SELECT indkey FROM pg_index WHERE indrelid = 'v'::regclass")
        .await
        .unwrap();
    let keys: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec!["2 1"]);
}
