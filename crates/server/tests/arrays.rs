//! Array and interval columns, json aggregates and set-returning functions through the real
//! binary: text and binary wire formats, operators, durability across kill -9.

mod common;

use common::{sqlstate, TestNode};

fn texts(rows: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn row(cells: &[&str]) -> Vec<Option<String>> {
    cells
        .iter()
        .map(|c| (*c != "NULL").then(|| c.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn array_and_interval_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE posts (id INT PRIMARY KEY, tags TEXT[], scores INT[], wait INTERVAL);
         INSERT INTO posts VALUES
           (1, ARRAY['db', 'rust'], ARRAY[3, 1], '90 minutes'),
           (2, '{sql,\"two words\",NULL}', '{7}', '2 days'),
           (3, NULL, '{}', NULL)",
    )
    .await
    .unwrap();
    let q = |sql: &'static str| {
        let c = &c;
        async move { texts(&c.simple_query(sql).await.unwrap()) }
    };
    assert_eq!(
        q("SELECT id, tags, scores, wait FROM posts ORDER BY id").await,
        vec![
            row(&["1", "{db,rust}", "{3,1}", "01:30:00"]),
            row(&["2", "{sql,\"two words\",NULL}", "{7}", "2 days"]),
            row(&["3", "NULL", "{}", "NULL"]),
        ]
    );
    assert_eq!(
        q("SELECT id FROM posts WHERE tags @> ARRAY['rust'] OR 'sql' = ANY (tags) ORDER BY id")
            .await,
        vec![row(&["1"]), row(&["2"])]
    );
    assert_eq!(
        q("SELECT array_length(tags, 1), tags[2], cardinality(scores) FROM posts WHERE id = 2")
            .await,
        vec![row(&["3", "two words", "1"])]
    );
    assert_eq!(
        q(
            "UPDATE posts SET tags = array_append(tags, 'new'), wait = wait * 2 WHERE id = 1 \
           RETURNING tags, wait"
        )
        .await,
        vec![row(&["{db,rust,new}", "03:00:00"])]
    );
    assert_eq!(
        q("SELECT id FROM posts WHERE wait > INTERVAL '1 day' ORDER BY id").await,
        vec![row(&["2"])]
    );
    // Binary format through tokio-postgres.
    let r = c
        .query_one("SELECT tags FROM posts WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, Vec<String>>(0),
        vec!["db".to_string(), "rust".into(), "new".into()]
    );
    // Bad input and unsupported keys are clear errors.
    let e = c
        .batch_execute("INSERT INTO posts (id, scores) VALUES (9, '{1,x}')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let e = c
        .batch_execute("INSERT INTO posts (id, tags) VALUES (9, 'not an array')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
    let e = c
        .batch_execute("INSERT INTO posts (id, wait) VALUES (9, 'forever')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22007");
    let e = c
        .batch_execute("CREATE INDEX ON posts (tags)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    // Durable like any column.
    node.kill9();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    assert_eq!(
        texts(
            &c.simple_query("SELECT tags, wait FROM posts WHERE id = 1")
                .await
                .unwrap()
        ),
        vec![row(&["{db,rust,new}", "03:00:00"])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_aggregates_and_set_returning_functions() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let c = node.client().await;
    c.batch_execute(
        "CREATE TABLE docs (id INT PRIMARY KEY, body JSONB);
         INSERT INTO docs VALUES (1, '{\"tags\": [\"a\", \"b\"]}'), (2, '{\"tags\": []}'),
                                 (3, NULL)",
    )
    .await
    .unwrap();
    let q = |sql: &'static str| {
        let c = &c;
        async move { texts(&c.simple_query(sql).await.unwrap()) }
    };
    assert_eq!(
        q("SELECT jsonb_agg(id ORDER BY id DESC), jsonb_object_agg(id, body -> 'tags' ORDER BY id) \
           FROM docs WHERE id < 3")
        .await,
        vec![row(&["[2, 1]", r#"{"1": ["a", "b"], "2": []}"#])]
    );
    assert_eq!(
        q("SELECT jsonb_agg(jsonb_build_object('n', id, 'doc', body)) FROM docs WHERE id = 1")
            .await,
        vec![row(&[r#"[{"n": 1, "doc": {"tags": ["a", "b"]}}]"#])]
    );
    assert_eq!(
        q("SELECT key, value FROM jsonb_each('{\"b\": [1], \"a\": 2}') ORDER BY key").await,
        vec![row(&["a", "2"]), row(&["b", "[1]"])]
    );
    assert_eq!(
        q("SELECT value FROM jsonb_array_elements_text('[\"x\", null, 3]') AS e ORDER BY value")
            .await,
        vec![row(&["3"]), row(&["x"]), row(&["NULL"])]
    );
    let e = c
        .simple_query("SELECT * FROM jsonb_array_elements('{\"a\": 1}')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
}
