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
        // A record that runs away must not stall the rest of the corpus.
        client
            .batch_execute("SET statement_timeout = 10000")
            .await
            .map_err(|e| SltError(e.to_string()))?;
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

/// Records that do not pass on Kestrel yet: `file:line reason`, one per line. The list may
/// only shrink: a listed record that passes fails the test (remove it), and so does a failing
/// record that is not listed. `KESTREL_SLT_WRITE_KNOWN=1` rewrites the list from this run.
/// `KESTREL_SLT_VERBOSE=1` prints every failure in full (SQL, expected and actual output).
const KNOWN_FAILURES: &str = "known_failures.txt";
/// The longest one record may run before it counts as failed.
const RECORD_TIMEOUT_SECS: u64 = 30;

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt")
}

fn read_known() -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(slt_dir().join(KNOWN_FAILURES)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (id, reason) = l.split_once(' ').unwrap_or((l, ""));
            (id.to_string(), reason.trim().to_string())
        })
        .collect()
}

/// Runs every record of `file` against a fresh node; returns (records, failures by id).
async fn run_file_records(file: &Path) -> (usize, Vec<(String, String)>) {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let records = sqllogictest::parse_file::<DefaultColumnType>(file)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
    let dir = tempfile::tempdir().unwrap();
    // Every range scan goes through the column cache (filled, then answered from it while
    // nothing is written), however small its table: the files check it against PostgreSQL.
    let node = TestNode::start_with(dir.path(), &["--column-cache-scan-bytes-min", "0"]);
    let mut r = runner(format!(
        "host=127.0.0.1 port={} user=root dbname=defaultdb",
        node.port()
    ));
    let (mut total, mut failed) = (0, Vec::new());
    for rec in records {
        let line = match &rec {
            sqllogictest::Record::Statement { loc, .. }
            | sqllogictest::Record::Query { loc, .. } => Some(loc.line()),
            _ => None,
        };
        let limit = std::time::Duration::from_secs(RECORD_TIMEOUT_SECS);
        let started = std::time::Instant::now();
        let res = tokio::time::timeout(limit, r.run_async(rec)).await;
        if started.elapsed().as_secs() >= 2 {
            eprintln!(
                "slow record {name}:{line:?}: {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let Some(line) = line else { continue };
        total += 1;
        let reason = match res {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                if std::env::var("KESTREL_SLT_VERBOSE").is_ok_and(|v| v == "1") {
                    eprintln!("=== {name}:{line}\n{}", e.display(false));
                }
                e.display(false).to_string()
            }
            Err(_) => format!("timed out after {RECORD_TIMEOUT_SECS} s"),
        };
        let reason: String = reason
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("failed")
            .chars()
            .take(160)
            .collect();
        failed.push((format!("{name}:{line}"), reason));
    }
    (total, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_match_postgres_results() {
    if let Ok(base) = std::env::var("KESTREL_SLT_TARGET") {
        let complete = std::env::var("KESTREL_SLT_COMPLETE").is_ok_and(|v| v == "1");
        return run_against_postgres(&base, complete).await;
    }
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let known = read_known();
    let (mut total, mut failures) = (0usize, Vec::new());
    for f in &files {
        let started = std::time::Instant::now();
        let (n, failed) = run_file_records(f).await;
        eprintln!(
            "{}: {n} records, {} failing, {:.1} s",
            f.display(),
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        total += n;
        failures.extend(failed);
    }
    let passed = total - failures.len();
    eprintln!(
        "sqllogictest: {} files, {total} records, {passed} pass ({:.1} %), {} known failures",
        files.len(),
        100.0 * passed as f64 / total.max(1) as f64,
        failures.len()
    );
    if std::env::var("KESTREL_SLT_WRITE_KNOWN").is_ok_and(|v| v == "1") {
        let mut out = String::from(
            "# sqllogictest records that do not pass on Kestrel yet (file:line reason).\n\
             # This list may only shrink; see crates/server/tests/slt.rs.\n",
        );
        for (id, reason) in &failures {
            out.push_str(&format!("{id} {reason}\n"));
        }
        std::fs::write(slt_dir().join(KNOWN_FAILURES), out).unwrap();
        return;
    }
    let failing: std::collections::BTreeSet<&String> = failures.iter().map(|(id, _)| id).collect();
    let new: Vec<String> = failures
        .iter()
        .filter(|(id, _)| !known.contains_key(id))
        .map(|(id, reason)| format!("{id}: {reason}"))
        .collect();
    let fixed: Vec<&String> = known.keys().filter(|id| !failing.contains(id)).collect();
    assert!(
        new.is_empty(),
        "records that fail and are not in tests/slt/{KNOWN_FAILURES}:\n{}",
        new.join("\n")
    );
    assert!(
        fixed.is_empty(),
        "records that pass now: remove them from tests/slt/{KNOWN_FAILURES}:\n{fixed:?}"
    );
}
