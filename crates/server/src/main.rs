use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kestrel_server::node::{Node, NodeConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The smallest `--block-cache-bytes-max` / `--memtable-bytes-max` (4 MiB).
const MEMORY_LIMIT_MIN: u64 = 4 << 20;

/// The largest `--group-commit-delay-us` (100 ms): beyond it every commit waits too long.
const GROUP_COMMIT_DELAY_US_MAX: u64 = 100_000;

/// The smallest `--raft-snapshot-interval-entries`: a snapshot per few entries costs more than
/// the log it frees.
const RAFT_SNAPSHOT_INTERVAL_ENTRIES_MIN: u64 = 10;

/// The smallest `--raft-snapshot-interval-bytes` (64 KiB).
const RAFT_SNAPSHOT_INTERVAL_BYTES_MIN: u64 = 64 << 10;

/// Kestrel: a distributed, transactional, PostgreSQL-compatible SQL database.
#[derive(Parser)]
#[command(name = "kestrel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node. With no flags: a durable single-node database on 127.0.0.1.
    Start {
        /// Directory holding this node's data (created if missing).
        #[arg(long, default_value = "./kestrel-data", value_name = "DIR")]
        store: PathBuf,
        /// Address for PostgreSQL clients (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:5433", value_name = "HOST:PORT")]
        listen_addr: String,
        /// Address for HTTP: GET /health and GET /metrics (Prometheus).
        #[arg(long, default_value = "127.0.0.1:8433", value_name = "HOST:PORT")]
        http_addr: String,
        /// Run without TLS or authentication. Today this is the only mode: any user name is
        /// accepted without a password, so bind to loopback only.
        #[arg(long)]
        insecure: bool,
        /// Most concurrent SQL connections; more are refused with SQLSTATE 53300.
        #[arg(long, default_value_t = 500, value_name = "N")]
        max_connections: usize,
        /// Microseconds the WAL syncer waits after the first commit of a group for more to
        /// join before it fsyncs (PostgreSQL's commit_delay). 0: fsync at once; groups then
        /// form only from commits arriving during an fsync.
        #[arg(long, default_value_t = 0, value_name = "US",
              value_parser = clap::value_parser!(u64).range(0..=GROUP_COMMIT_DELAY_US_MAX))]
        group_commit_delay_us: u64,
        /// Bytes of RocksDB block cache (shared by all column families).
        #[arg(long, default_value_t = 256 << 20, value_name = "BYTES",
              value_parser = clap::value_parser!(u64).range(MEMORY_LIMIT_MIN..))]
        block_cache_bytes_max: u64,
        /// Bytes of RocksDB memtables (all column families together).
        #[arg(long, default_value_t = 256 << 20, value_name = "BYTES",
              value_parser = clap::value_parser!(u64).range(MEMORY_LIMIT_MIN..))]
        memtable_bytes_max: u64,
        /// Bytes of RocksDB write-ahead log kept before the memtables holding its oldest
        /// writes are flushed: bounds what a restart replays.
        #[arg(long, default_value_t = 128 << 20, value_name = "BYTES",
              value_parser = clap::value_parser!(u64).range(MEMORY_LIMIT_MIN..))]
        wal_bytes_max: u64,
        /// Raft log entries a range appends between snapshots; each snapshot lets the log
        /// before it be purged.
        #[arg(long, default_value_t = 20_000, value_name = "N",
              value_parser = clap::value_parser!(u64).range(RAFT_SNAPSHOT_INTERVAL_ENTRIES_MIN..))]
        raft_snapshot_interval_entries: u64,
        /// Entries a range keeps in its Raft log behind its last snapshot.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        raft_log_kept_entries: u64,
        /// Bytes of Raft log entries a range appends before it also snapshots and purges its
        /// whole log (bulk loads write few, large entries).
        #[arg(long, default_value_t = 64 << 20, value_name = "BYTES",
              value_parser = clap::value_parser!(u64).range(RAFT_SNAPSHOT_INTERVAL_BYTES_MIN..))]
        raft_snapshot_interval_bytes: u64,
        /// Keys in the node-wide cache of catalog descriptors (table and database
        /// definitions read by every statement); 0 turns the cache off.
        #[arg(long, default_value_t = 10_000, value_name = "N")]
        read_cache_entries_max: usize,
        /// Stored bytes of a table per parallel partition of its scan: a scan covering at
        /// least twice this runs as several scans at once (at most one per core). 0: never.
        #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
        scan_partition_bytes_min: u64,
        /// Bytes of decoded columns kept by the column cache, which answers repeated scans
        /// of large tables that were not written since. 0: no column cache.
        #[arg(long, default_value_t = 2 << 30, value_name = "BYTES")]
        column_cache_bytes_max: u64,
        /// Stored bytes a table scan must cover for its columns to be cached.
        #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
        column_cache_scan_bytes_min: u64,
    },
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("kestrel {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Command::Start {
            store,
            listen_addr,
            http_addr,
            insecure: _,
            max_connections,
            group_commit_delay_us,
            block_cache_bytes_max,
            memtable_bytes_max,
            wal_bytes_max,
            raft_snapshot_interval_entries,
            raft_log_kept_entries,
            raft_snapshot_interval_bytes,
            read_cache_entries_max,
            scan_partition_bytes_min,
            column_cache_bytes_max,
            column_cache_scan_bytes_min,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                        tracing_subscriber::EnvFilter::new("info,openraft=warn")
                    }),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("kestrel: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let config = NodeConfig {
                store,
                listen_addr,
                http_addr,
                max_connections,
                group_commit_delay_us,
                block_cache_bytes_max: usize::try_from(block_cache_bytes_max).unwrap_or(usize::MAX),
                memtable_bytes_max: usize::try_from(memtable_bytes_max).unwrap_or(usize::MAX),
                wal_bytes_max,
                raft_snapshot_interval_entries,
                raft_log_kept_entries,
                raft_snapshot_interval_bytes,
                read_cache_entries_max,
                scan_partition_bytes_min,
                column_cache_bytes_max: usize::try_from(column_cache_bytes_max)
                    .unwrap_or(usize::MAX),
                column_cache_scan_bytes_min,
            };
            match runtime.block_on(run(config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kestrel: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let store = config.store.clone();
    let node = Node::start(config).await?;
    println!("Kestrel {} is ready.", env!("CARGO_PKG_VERSION"));
    println!("  sql:   postgresql://root@{}/defaultdb", node.sql_addr);
    println!("  http:  http://{}/health", node.http_addr);
    println!("  store: {}", store.display());
    // Machine-readable line for scripts and tests.
    println!(
        "KESTREL_READY sql={} http={}",
        node.sql_addr, node.http_addr
    );
    wait_for_signal().await;
    eprintln!("kestrel: shutting down");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
