//! Statement counters and latency, in the process-wide Prometheus registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub struct SqlMetrics {
    pub statements: IntCounterVec,
    pub latency: Histogram,
    /// Statements answered by the primary-key point path (`point.rs`), without DataFusion.
    pub point_reads: IntCounter,
    /// UPDATEs and INSERTs by the point-write path (`point_write.rs`), without DataFusion.
    pub point_writes: IntCounter,
}

pub static METRICS: LazyLock<SqlMetrics> = LazyLock::new(|| {
    let statements = IntCounterVec::new(
        Opts::new("kestrel_sql_statements_total", "SQL statements executed"),
        &["result"],
    )
    .expect("valid metric");
    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "kestrel_sql_statement_latency_seconds",
            "SQL statement latency",
        )
        .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("valid buckets")),
    )
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(statements.clone()));
    let _ = prometheus::default_registry().register(Box::new(latency.clone()));
    let point_reads = IntCounter::with_opts(Opts::new(
        "kestrel_sql_point_reads_total",
        "SELECTs by primary key answered without DataFusion planning",
    ))
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(point_reads.clone()));
    let point_writes = IntCounter::with_opts(Opts::new(
        "kestrel_sql_point_writes_total",
        "Single-row UPDATEs by primary key and INSERTs answered without DataFusion planning",
    ))
    .expect("valid metric");
    let _ = prometheus::default_registry().register(Box::new(point_writes.clone()));
    SqlMetrics {
        statements,
        latency,
        point_reads,
        point_writes,
    }
});

impl SqlMetrics {
    pub fn observe(&self, elapsed: Duration, ok: bool) {
        self.statements
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}
