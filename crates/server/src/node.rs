//! A running node: store, KV, SQL engine and listeners.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use kestrel_kv::{Kv, KvConfig};
use kestrel_sql::{Limits, SqlEngine};
use kestrel_storage::{Engine, EngineConfig, RocksEngine};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub store: PathBuf,
    pub listen_addr: String,
    pub http_addr: String,
    /// Concurrent SQL connections; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// See `RaftConfig::group_commit_delay_us`.
    pub group_commit_delay_us: u64,
    /// RocksDB memory limits (`EngineConfig`).
    pub block_cache_bytes_max: usize,
    pub memtable_bytes_max: usize,
    /// See `EngineConfig::wal_bytes_max`.
    pub wal_bytes_max: u64,
    /// See `RaftConfig::snapshot_logs_since_last` and `log_entries_kept_after_snapshot`.
    pub raft_snapshot_interval_entries: u64,
    pub raft_log_kept_entries: u64,
    /// See `RaftConfig::snapshot_log_bytes_max`.
    pub raft_snapshot_interval_bytes: u64,
    /// See `KvConfig::read_cache_entries_max`.
    pub read_cache_entries_max: usize,
    /// See `Limits::scan_partition_bytes_min`.
    pub scan_partition_bytes_min: u64,
    /// See `Limits::column_cache_bytes_max` and `column_cache_scan_bytes_min`.
    pub column_cache_bytes_max: usize,
    pub column_cache_scan_bytes_min: u64,
}

/// An exclusive `flock` on `<store>/kestrel.lock`, held for the life of the process.
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(store: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(store)
            .with_context(|| format!("creating store directory {}", store.display()))?;
        let path = store.join("kestrel.lock");
        let file = File::create(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            bail!(
                "store directory {} is in use by another kestrel process (lock file {})",
                store.display(),
                path.display()
            );
        }
        Ok(Self { _file: file })
    }
}

pub struct Node {
    pub sql_addr: SocketAddr,
    pub http_addr: SocketAddr,
    kv: Arc<Kv>,
    _lock: StoreLock,
}

fn engine_config(config: &NodeConfig) -> EngineConfig {
    let default = EngineConfig::default();
    EngineConfig {
        block_cache_bytes_max: config.block_cache_bytes_max,
        memtable_bytes_max: config.memtable_bytes_max,
        memtable_cf_bytes_max: default
            .memtable_cf_bytes_max
            .min(config.memtable_bytes_max / 2)
            .max(1 << 20),
        wal_bytes_max: config.wal_bytes_max,
        ..default
    }
}

impl Node {
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        let lock = StoreLock::acquire(&config.store)?;
        let engine: Arc<dyn Engine> = Arc::new(
            RocksEngine::open_with(&config.store.join("rocksdb"), &engine_config(&config))
                .with_context(|| format!("opening store {}", config.store.display()))?,
        );
        // Listen for HTTP first so /health can report "starting" during recovery.
        let ready = Arc::new(AtomicBool::new(false));
        let http = TcpListener::bind(&config.http_addr)
            .await
            .with_context(|| format!("binding HTTP address {}", config.http_addr))?;
        let http_addr = http.local_addr()?;
        let router = crate::http::router(ready.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(http, router).await {
                tracing::error!("HTTP server failed: {e}");
            }
        });
        let mut kv_config = KvConfig::default();
        kv_config.raft.group_commit_delay_us = config.group_commit_delay_us;
        kv_config.raft.snapshot_logs_since_last = config.raft_snapshot_interval_entries;
        kv_config.raft.log_entries_kept_after_snapshot = config.raft_log_kept_entries;
        kv_config.raft.snapshot_log_bytes_max = config.raft_snapshot_interval_bytes;
        kv_config.read_cache_entries_max = config.read_cache_entries_max;
        let kv = Kv::open(engine, kv_config)
            .await
            .context("recovering the store")?;
        let sql = SqlEngine::open(
            kv.clone(),
            Limits {
                scan_partition_bytes_min: config.scan_partition_bytes_min,
                scan_bulk_bytes_min: config.block_cache_bytes_max as u64 / 4,
                column_cache_bytes_max: config.column_cache_bytes_max,
                column_cache_scan_bytes_min: config.column_cache_scan_bytes_min,
                ..Limits::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let listener = TcpListener::bind(&config.listen_addr)
            .await
            .with_context(|| format!("binding SQL address {}", config.listen_addr))?;
        let sql_addr = listener.local_addr()?;
        let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
        tokio::spawn(accept_loop(listener, sql, slots));
        ready.store(true, Ordering::Release);
        Ok(Node {
            sql_addr,
            http_addr,
            kv,
            _lock: lock,
        })
    }

    pub async fn shutdown(self) {
        self.kv.shutdown().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    sql: Arc<SqlEngine>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(socket));
            continue;
        };
        let sql = sql.clone();
        tokio::spawn(async move {
            tracing::debug!(%peer, "connection");
            kestrel_pgwire::serve_connection(socket, sql).await;
            drop(permit);
        });
    }
}

/// Answers a connection over the limit with `53300 too_many_connections` and closes it.
async fn refuse(mut socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    // Read the startup packet (or SSL request) so the client is ready for a response.
    if let Ok(n) =
        tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buf)).await
    {
        if matches!(n, Ok(8)) && buf[4..8] == [0x04, 0xd2, 0x16, 0x2f] {
            let _ = socket.write_all(b"N").await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buf))
                .await;
        }
    }
    let mut body = Vec::new();
    for (tag, val) in [
        (b'S', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        body.push(tag);
        body.extend_from_slice(val.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    let _ = socket.write_all(&msg).await;
}
