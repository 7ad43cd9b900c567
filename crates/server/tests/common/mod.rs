//! Starts the real `kestrel` binary on free ports and talks to it over TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod wire;

pub struct TestNode {
    child: Option<Child>,
    pub sql_addr: String,
    pub http_addr: String,
    pub store: PathBuf,
}

pub fn kestrel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kestrel")
}

impl TestNode {
    /// Starts a node on `store` and waits until it serves SQL.
    pub fn start(store: &Path) -> TestNode {
        Self::try_start(store).unwrap_or_else(|e| panic!("kestrel did not start: {e}"))
    }

    /// Starts a node on `store` with extra `kestrel start` flags.
    #[allow(dead_code)] // Not every test binary uses it.
    pub fn start_with(store: &Path, flags: &[&str]) -> TestNode {
        Self::try_start_with(store, flags).unwrap_or_else(|e| panic!("kestrel did not start: {e}"))
    }

    pub fn try_start(store: &Path) -> Result<TestNode, String> {
        Self::try_start_with(store, &[])
    }

    pub fn try_start_with(store: &Path, flags: &[&str]) -> Result<TestNode, String> {
        let mut child = Command::new(kestrel_bin())
            .args(["start", "--store"])
            .arg(store)
            .args(["--listen-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("KESTREL_READY") {
                    let _ = tx.send(line);
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = etx.send(all.clone());
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let field = |k: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .map(str::to_string)
                        .unwrap_or_default()
                };
                Ok(TestNode {
                    sql_addr: field("sql="),
                    http_addr: field("http="),
                    child: Some(child),
                    store: store.to_path_buf(),
                })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let err = erx.try_iter().last().unwrap_or_default();
                Err(format!("no ready line; exit {status:?}; stderr:\n{err}"))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.sql_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgresql://root@{}/{}", self.sql_addr, db)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_db("defaultdb").await.expect("connect")
    }

    pub async fn client_db(
        &self,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=root dbname={db}", self.port()),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.http_addr)
            .await
            .expect("http connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf).to_string();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The SQLSTATE of a failed statement.
/// `COPY … FROM STDIN` of `data`, split at awkward places (every 7 bytes) so lines span
/// CopyData messages.
pub async fn copy_in(
    c: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = c.copy_in(sql).await?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(7) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// The single bigint a query like `SELECT count(*) …` returns.
pub async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// A counter's value in a Prometheus text exposition.
#[allow(dead_code)]
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

/// Waits up to `timeout_ms` for the node's counter `name` to become positive; false if it
/// did not.
#[allow(dead_code)]
pub async fn metric_becomes_positive(node: &TestNode, name: &str, timeout_ms: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let (code, text) = node.http_get("/metrics").await;
        assert_eq!(code, 200);
        if metric(&text, name) > 0.0 {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// (`kestrel_txn_commits_total`, `kestrel_raft_log_fsyncs_total`) from the node's /metrics.
#[allow(dead_code)]
pub async fn commits_and_fsyncs(node: &TestNode) -> (f64, f64) {
    let (code, text) = node.http_get("/metrics").await;
    assert_eq!(code, 200);
    (
        metric(&text, "kestrel_txn_commits_total"),
        metric(&text, "kestrel_raft_log_fsyncs_total"),
    )
}

/// The plan lines (logical and physical) of `EXPLAIN sql`, one per line.
pub async fn explain(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}
