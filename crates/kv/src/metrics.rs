//! Transaction-level counters in the process-wide Prometheus registry.

use std::sync::LazyLock;

use prometheus::{IntCounter, Opts};

pub struct KvMetrics {
    pub commits: IntCounter,
    pub commits_two_phase: IntCounter,
    pub commits_local_multi_range: IntCounter,
    pub aborts: IntCounter,
    pub conflicts: IntCounter,
    pub refreshes: IntCounter,
    pub read_cache_hits: IntCounter,
    pub read_cache_misses: IntCounter,
    pub read_spans_validated: IntCounter,
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

pub static METRICS: LazyLock<KvMetrics> = LazyLock::new(|| KvMetrics {
    commits: counter(
        "kestrel_txn_commits_total",
        "Committed transactions that wrote",
    ),
    commits_two_phase: counter(
        "kestrel_txn_commits_two_phase_total",
        "Commits that spanned several ranges and used the two-phase protocol",
    ),
    commits_local_multi_range: counter(
        "kestrel_txn_commits_local_multi_range_total",
        "Commits that spanned several ranges living on this node alone (one entry per range)",
    ),
    aborts: counter(
        "kestrel_txn_aborts_total",
        "Transactions that failed to commit",
    ),
    conflicts: counter(
        "kestrel_txn_conflicts_total",
        "Serialization conflicts at commit (SQLSTATE 40001)",
    ),
    refreshes: counter(
        "kestrel_txn_refreshes_total",
        "Snapshots moved forward so a statement could re-run after a row-lock wait",
    ),
    read_cache_hits: counter(
        "kestrel_kv_read_cache_hits_total",
        "Cached reads (catalog descriptors) answered without reading the engine",
    ),
    read_cache_misses: counter(
        "kestrel_kv_read_cache_misses_total",
        "Cached reads that had to read the engine",
    ),
    read_spans_validated: counter(
        "kestrel_txn_read_spans_validated_total",
        "Read spans checked for newer writes and locks at commit (clean and written keys are not)",
    ),
});

impl KvMetrics {
    pub fn get() -> &'static KvMetrics {
        &METRICS
    }
}
