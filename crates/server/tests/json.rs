//! `json` / `jsonb` through the real binary: columns (canonicalized and validated on every
//! write, surviving a restart), the operators and functions, text and binary wire formats.

mod common;

use common::{sqlstate, TestNode};

#[tokio::test(flavor = "multi_thread")]
async fn jsonb_columns_operators_and_wire() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE docs (id INT PRIMARY KEY, body JSONB, meta JSON);
         INSERT INTO docs VALUES
           (1, '{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\", \"b\"], \"addr\": {\"city\": \"Oslo\"}}', '{\"v\":  1}'),
           (2, '{\"name\": \"bo\", \"name\": \"bob\", \"tags\": [\"b\"]}', NULL),
           (3, NULL, NULL)",
    )
    .await
    .unwrap();
    // Canonical jsonb (last duplicate key wins, keys by length then bytes); json as written.
    let rows = c
        .simple_query("SELECT body, meta FROM docs WHERE id <= 2 ORDER BY id")
        .await
        .unwrap();
    let cells: Vec<(Option<String>, Option<String>)> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).map(str::to_string), r.get(1).map(str::to_string)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        cells,
        vec![
            (
                Some(
                    r#"{"age": 30, "addr": {"city": "Oslo"}, "name": "ann", "tags": ["a", "b"]}"#
                        .into()
                ),
                Some(r#"{"v":  1}"#.into())
            ),
            (Some(r#"{"name": "bob", "tags": ["b"]}"#.into()), None),
        ]
    );
    // Operators, in WHERE and in the select list, with parameters.
    let ids = |rows: Vec<tokio_postgres::Row>| {
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let q = |sql: &'static str| {
        let c = &c;
        async move { ids(c.query(sql, &[]).await.unwrap()) }
    };
    assert_eq!(
        q("SELECT id FROM docs WHERE body @> '{\"addr\": {\"city\": \"Oslo\"}}' ORDER BY id").await,
        vec![1]
    );
    assert_eq!(
        q("SELECT id FROM docs WHERE body -> 'tags' ? 'b' ORDER BY id").await,
        vec![1, 2]
    );
    assert_eq!(
        q("SELECT id FROM docs WHERE body ? 'age' ORDER BY id").await,
        vec![1]
    );
    assert_eq!(
        q("SELECT id FROM docs WHERE (body ->> 'age')::int > 26").await,
        vec![1]
    );
    assert_eq!(
        q("SELECT id FROM docs WHERE body = '{\"tags\": [\"b\"], \"name\": \"bob\"}' ORDER BY id")
            .await,
        vec![2]
    );
    let row = c
        .query_one(
            "SELECT body #>> '{addr,city}', body -> 'tags' ->> 0, jsonb_typeof(body -> 'age'), \
             jsonb_array_length(body -> 'tags'), body ->> $1 FROM docs WHERE id = 1",
            &[&"name"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Oslo");
    assert_eq!(row.get::<_, String>(1), "a");
    assert_eq!(row.get::<_, String>(2), "number");
    assert_eq!(row.get::<_, i32>(3), 2);
    assert_eq!(row.get::<_, String>(4), "ann");
    // Updates through jsonb operators.
    c.execute(
        "UPDATE docs SET body = (body || '{\"age\": 31}') - 'tags' WHERE id = 1",
        &[],
    )
    .await
    .unwrap();
    // Binary results (tokio-postgres asks for binary): jsonb arrives as JSON.
    let row = c
        .query_one("SELECT body::text, body FROM docs WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        r#"{"age": 31, "addr": {"city": "Oslo"}, "name": "ann"}"#
    );
    assert_eq!(
        row.columns()[1].type_(),
        &tokio_postgres::types::Type::JSONB
    );
    // Bad documents are 22P02 on every write path, and nothing is written.
    let e = c
        .execute("INSERT INTO docs VALUES (9, '{bad', NULL)", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let e = c
        .execute("UPDATE docs SET meta = '[1,' WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let e = c.query("SELECT '{\"a\": }'::jsonb", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    // Durable like any column: kill -9 and read back.
    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    let row = c
        .query_one(
            "SELECT body ->> 'age', meta::text FROM docs WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "31");
    assert_eq!(row.get::<_, String>(1), r#"{"v":  1}"#);
}
