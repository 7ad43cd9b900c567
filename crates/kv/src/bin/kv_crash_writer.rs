//! Test helper (used by `tests/crash_two_range.rs`): commits transactions that each write one
//! key in each of two ranges and prints `ACK <i>` after each commit returns. `WRITERS`
//! concurrent writers (so commits share WAL fsyncs) take the indexes `FIRST_INDEX + k * WRITERS
//! + w`. The test kills it with SIGKILL at a random moment and checks atomicity after recovery.
//! `PROTOCOL` is `local` (the default multi-range commit) or `two-phase` (forced).

use std::io::Write;
use std::sync::{Arc, Mutex};

use kestrel_kv::keys::table_span;
use kestrel_kv::{Kv, KvConfig};
use kestrel_storage::{Engine, RocksEngine};

/// Concurrent writers (the test knows the same number).
pub const WRITERS: u64 = 4;

pub fn key(table: u32, i: u64) -> Vec<u8> {
    let mut k = table_span(table).0;
    k.extend_from_slice(&i.to_be_bytes());
    k
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(start)) = (args.next(), args.next()) else {
        eprintln!("usage: kv_crash_writer STORE_DIR FIRST_INDEX [local|two-phase]");
        std::process::exit(2);
    };
    let two_phase_always = match args.next().as_deref() {
        None | Some("local") => false,
        Some("two-phase") => true,
        Some(other) => {
            eprintln!("unknown protocol {other}");
            std::process::exit(2);
        }
    };
    let Ok(start) = start.parse::<u64>() else {
        eprintln!("FIRST_INDEX must be a number");
        std::process::exit(2);
    };
    let engine: Arc<dyn Engine> = match RocksEngine::open(std::path::Path::new(&dir)) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("open: {e}");
            std::process::exit(1);
        }
    };
    let config = KvConfig {
        two_phase_always,
        ..KvConfig::default()
    };
    let kv = match Kv::open(engine, config).await {
        Ok(kv) => kv,
        Err(e) => {
            eprintln!("open: {e}");
            std::process::exit(1);
        }
    };
    for t in [7, 8] {
        let (s, e) = table_span(t);
        if let Err(e) = kv.split_out(&s, &e).await {
            eprintln!("split: {e}");
            std::process::exit(1);
        }
    }
    println!("READY");
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (kv, out) = (kv.clone(), out.clone());
        tasks.spawn(async move {
            for k in 0.. {
                let i = start + k * WRITERS + w;
                let mut txn = kv.begin();
                let v = i.to_be_bytes().to_vec();
                let ok = txn.put(key(7, i), v.clone()).is_ok() && txn.put(key(8, i), v).is_ok();
                if !ok {
                    std::process::exit(1);
                }
                if let Err(e) = txn.commit().await {
                    eprintln!("commit {i}: {e}");
                    std::process::exit(1);
                }
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(out, "ACK {i}");
                let _ = out.flush();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
