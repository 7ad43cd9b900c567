//! The HTTP endpoint: health and Prometheus metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::Encoder;

pub fn router(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn health(State(ready): State<Arc<AtomicBool>>) -> impl IntoResponse {
    if ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Committed writing transactions per WAL fsync since start (the group-commit factor), derived
/// at each scrape from the two counters it divides.
static COMMITS_PER_FSYNC: std::sync::LazyLock<prometheus::Gauge> = std::sync::LazyLock::new(|| {
    let g = prometheus::Gauge::new(
        "kestrel_commits_per_fsync",
        "kestrel_txn_commits_total / kestrel_raft_log_fsyncs_total (above 1: commits share fsyncs)",
    )
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(g.clone()));
    g
});

fn update_derived_metrics() {
    let commits = kestrel_kv::KvMetrics::get().commits.get() as f64;
    let fsyncs = kestrel_raft::RaftMetrics::get().log_fsyncs.get() as f64;
    COMMITS_PER_FSYNC.set(if fsyncs > 0.0 { commits / fsyncs } else { 0.0 });
}

async fn metrics() -> impl IntoResponse {
    update_derived_metrics();
    let encoder = prometheus::TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            buf,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            e.to_string().into_bytes(),
        ),
    }
}
