//! Real client libraries, unmodified, against the real binary: node-postgres (`pg` from npm)
//! psycopg 3 (Debian's python3-psycopg), SQLAlchemy 2 ORM over psycopg 3 (pinned, in a venv) and
//! JDBC (Debian's libpostgresql-jdbc-java). Each program creates a schema, writes, reads back
//! and checks values itself; `scripts/deps.sh --test` installs them.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestNode;

fn clients_dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients")
}

fn run(node: &TestNode, program: &str, args: &[&str], what: &str) {
    let out = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .env("KESTREL_PORT", node.port().to_string())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(&format!("{what} ok")), "{stdout}\n{stderr}");
}

#[test]
fn node_postgres() {
    let modules = Path::new(clients_dir()).join("node/node_modules/pg");
    assert!(
        modules.exists(),
        "node-postgres missing at {} (scripts/deps.sh --test runs npm ci)",
        modules.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    run(&node, "node", &["node/test.js"], "node-pg");
}

#[test]
fn psycopg3() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    // Debian's interpreter, where python3-psycopg is installed.
    run(&node, "/usr/bin/python3", &["psycopg_test.py"], "psycopg");
}

#[test]
fn jdbc() {
    let jar = "/usr/share/java/postgresql.jar";
    assert!(
        Path::new(jar).exists(),
        "{jar} missing (scripts/deps.sh --test installs libpostgresql-jdbc-java)"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    run(
        &node,
        "java",
        &["-cp", jar, "jdbc/KestrelJdbcTest.java"],
        "jdbc",
    );
}

#[test]
fn sqlalchemy_orm() {
    let python = Path::new(clients_dir()).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing (scripts/deps.sh --test makes the venv)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let python = python.to_string_lossy().into_owned();
    run(&node, &python, &["sqlalchemy_test.py"], "sqlalchemy");
}
