//! Runs the sqllogictest files in `tests/slt/` against a fresh `kestrel` node each.
//!
//! The expected results in those files come from PostgreSQL 15: `scripts/slt-oracle.sh`
//! regenerates them (`KESTREL_SLT_TARGET` points this runner at PostgreSQL and
//! `KESTREL_SLT_COMPLETE=1` rewrites the files) or checks that they still match (`--check`).
//! Errors are compared by SQLSTATE only (`statement error SQLSTATE 23505`), since messages
//! differ between the two systems.

mod common;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use common::TestNode;
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

struct Pg {
    client: tokio_postgres::Client,
}

impl Pg {
    async fn connect(conn: &str) -> Result<Pg, SltError> {
        let (client, connection) = tokio_postgres::connect(conn, NoTls)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Pg { client })
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Pg {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let msgs = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| match e.code() {
                Some(c) => SltError(format!("SQLSTATE {}", c.code())),
                None => SltError(format!("no SQLSTATE: {e}")),
            })?;
        let mut rows = Vec::new();
        let mut is_query = false;
        let mut width = 0;
        let mut count = 0;
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    is_query = true;
                    width = cols.len();
                }
                SimpleQueryMessage::Row(r) => {
                    is_query = true;
                    width = r.len();
                    rows.push(
                        (0..r.len())
                            .map(|i| match r.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        if is_query {
            Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            })
        } else {
            Ok(DBOutput::StatementComplete(count))
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "postgres-wire"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

fn runner(conn: String) -> sqllogictest::Runner<Pg, impl sqllogictest::MakeConnection<Conn = Pg>> {
    let mut r = sqllogictest::Runner::new(move || {
        let conn = conn.clone();
        async move { Pg::connect(&conn).await }
    });
    r.add_label("kestrel");
    r
}

/// Runs against PostgreSQL: each file in a fresh database.
async fn run_against_postgres(base: &str, complete: bool) {
    let admin = Pg::connect(&format!("{base} dbname=postgres"))
        .await
        .expect("connect to PostgreSQL");
    let mut failed = Vec::new();
    for f in slt_files() {
        let db = format!(
            "slt_{}",
            f.file_stem().unwrap().to_string_lossy().replace('-', "_")
        );
        admin
            .client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        admin
            .client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let mut r = runner(format!("{base} dbname={db}"));
        let res = if complete {
            r.update_test_file(
                &f,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
        } else {
            r.run_file_async(&f)
                .await
                .map_err(|e| e.display(true).to_string())
        };
        if let Err(e) = res {
            failed.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "against PostgreSQL:\n{}",
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_match_postgres_results() {
    if let Ok(base) = std::env::var("KESTREL_SLT_TARGET") {
        let complete = std::env::var("KESTREL_SLT_COMPLETE").is_ok_and(|v| v == "1");
        return run_against_postgres(&base, complete).await;
    }
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failed = Vec::new();
    let mut records = 0usize;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        records += text
            .lines()
            .filter(|l| l.starts_with("statement") || l.starts_with("query"))
            .count();
        let dir = tempfile::tempdir().unwrap();
        let node = TestNode::start(dir.path());
        let mut r = runner(format!(
            "host=127.0.0.1 port={} user=root dbname=defaultdb",
            node.port()
        ));
        if let Err(e) = r.run_file_async(f).await {
            failed.push(format!("{}: {}", f.display(), e.display(true)));
        }
    }
    eprintln!(
        "sqllogictest: {} files, {records} records, {} files failed",
        files.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
