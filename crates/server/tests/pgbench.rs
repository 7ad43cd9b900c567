//! pgbench, unmodified, against the real binary: default initialization, TPC-B with retries
//! (after which the balances must agree with the history), and select-only.
//!
//! Scale and duration come from `KESTREL_PGBENCH_SCALE` / `KESTREL_PGBENCH_SECONDS` (defaults
//! 1 and 10, which keep CI short); the acceptance run is scale 10 for 60 s.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestNode;

fn pgbench_bin() -> PathBuf {
    let p = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    assert!(
        p.exists(),
        "pgbench not found at {} (scripts/deps.sh --test installs postgresql-15)",
        p.display()
    );
    p
}

fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs pgbench with `args`; returns its stdout, failing the test on a non-zero exit.
fn pgbench(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let out = Command::new(pgbench_bin())
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "root"])
        .args(args)
        .arg("defaultdb")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("pgbench {args:?}:\n{stdout}");
    stdout
}

fn failed_transactions(report: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failed-transactions line in:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_init_tpcb_and_select_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path());
    let port = node.port();
    let scale = env_num("KESTREL_PGBENCH_SCALE", 1).to_string();
    let secs = env_num("KESTREL_PGBENCH_SECONDS", 10).to_string();

    let init = tokio::task::spawn_blocking(move || pgbench(port, &["-i", "-s", &scale]));
    init.await.unwrap();

    let secs2 = secs.clone();
    let tpcb = tokio::task::spawn_blocking(move || {
        pgbench(
            port,
            &[
                "-c",
                "8",
                "-j",
                "2",
                "-T",
                &secs2,
                "--max-tries=20",
                "-M",
                "prepared",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(failed_transactions(&tpcb), 0, "{tpcb}");

    let c = node.client().await;
    let sums = c
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::BIGINT,
                    (SELECT sum(tbalance) FROM pgbench_tellers)::BIGINT,
                    (SELECT sum(bbalance) FROM pgbench_branches)::BIGINT,
                    (SELECT sum(delta) FROM pgbench_history)::BIGINT,
                    (SELECT count(*) FROM pgbench_history)",
            &[],
        )
        .await
        .unwrap();
    let (a, t, b, h, n): (i64, i64, i64, i64, i64) = (
        sums.get(0),
        sums.get(1),
        sums.get(2),
        sums.get(3),
        sums.get(4),
    );
    assert!(n > 0, "TPC-B committed nothing");
    assert_eq!((a, t, b), (h, h, h), "balances disagree with the history");

    // Select-only (it truncates the history first, as pgbench always does without -n).
    let select = tokio::task::spawn_blocking(move || {
        pgbench(
            port,
            &["-S", "-c", "8", "-j", "2", "-T", &secs, "-M", "prepared"],
        )
    })
    .await
    .unwrap();
    assert_eq!(failed_transactions(&select), 0, "{select}");
}
