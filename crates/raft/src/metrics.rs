//! Raft-level counters, registered in the process-wide Prometheus registry.

use std::sync::LazyLock;

use prometheus::{IntCounter, Opts};

pub struct RaftMetrics {
    pub proposals: IntCounter,
    pub log_appends: IntCounter,
    pub log_entries: IntCounter,
    pub log_fsyncs: IntCounter,
    pub group_commit_waiters: IntCounter,
    pub deferred_proposals: IntCounter,
    pub applied_entries: IntCounter,
    pub log_cache_hits: IntCounter,
    pub log_cache_misses: IntCounter,
    pub log_purges: IntCounter,
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
    // A second registration (tests in one process) is harmless: the counter still counts.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

pub static METRICS: LazyLock<RaftMetrics> = LazyLock::new(|| {
    RaftMetrics {
    proposals: counter(
        "kestrel_raft_proposals_total",
        "Commands proposed to range Raft groups",
    ),
    log_appends: counter(
        "kestrel_raft_log_appends_total",
        "Raft log append calls (one engine write each)",
    ),
    log_entries: counter(
        "kestrel_raft_log_entries_total",
        "Raft log entries appended",
    ),
    log_fsyncs: counter(
        "kestrel_raft_log_fsyncs_total",
        "WAL fsyncs made for Raft log appends and log metadata",
    ),
    group_commit_waiters: counter(
        "kestrel_raft_group_commit_waiters_total",
        "Proposals and appends completed by a group-commit WAL fsync (divided by fsyncs: the group size)",
    ),
    deferred_proposals: counter(
        "kestrel_raft_deferred_proposals_total",
        "Proposals that did not wait for an fsync (the non-primary entries of multi-range commits, redo deletions)",
    ),
    applied_entries: counter(
        "kestrel_raft_applied_entries_total",
        "Raft log entries applied to state machines",
    ),
    log_cache_hits: counter(
        "kestrel_raft_log_cache_hits_total",
        "Raft log reads served from the in-memory tail",
    ),
    log_cache_misses: counter(
        "kestrel_raft_log_cache_misses_total",
        "Raft log reads that went to the engine",
    ),
    log_purges: counter(
        "kestrel_raft_log_purges_total",
        "Raft log purges (the entries behind a snapshot dropped)",
    ),
}
});

impl RaftMetrics {
    pub fn get() -> &'static RaftMetrics {
        &METRICS
    }
}
