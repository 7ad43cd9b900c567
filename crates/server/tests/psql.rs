//! The real `psql` client runs a script (transactions, savepoints, `\copy` in and out)
//! against the real binary; its output must be exactly what psql prints against PostgreSQL 15
//! for the same script (checked by hand), except the last line: Kestrel's default isolation
//! is serializable where PostgreSQL's is read committed.

mod common;

use std::process::Command;

use common::TestNode;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

#[test]
fn psql_script_runs_unmodified() {
    assert!(
        std::path::Path::new(PSQL).exists(),
        "psql not found at {PSQL} (scripts/deps.sh --test installs postgresql-15)"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/psql_script.sql"
    );
    let out = Command::new(PSQL)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-d",
            "defaultdb",
        ])
        .args(["-p", &node.port().to_string(), "-f", script])
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql failed:\n{stdout}\n{stderr}");
    assert!(stderr.trim().is_empty(), "psql reported:\n{stderr}");
    let expected = "---rows
1|apple|1.00
2|pear|1.50
4|plum|1.25
5|fig|
6|kiwi, gold|
---copy
5,fig
6,\"kiwi, gold\"
---status
serializable
";
    assert_eq!(stdout, expected);
}
