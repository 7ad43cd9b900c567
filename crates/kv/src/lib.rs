//! # kestrel-kv: ranges, routing and transactions
//!
//! The transactional key-value layer every SQL statement runs on.
//!
//! ## Ranges and routing
//! The keyspace is cut into [`RangeDescriptor`]s — contiguous spans `[start, end)`, each served
//! by one Raft group ([`kestrel_raft::RaftGroup`]). The layout (see [`keys`]):
//!
//! | range | span                    | holds                                        |
//! |-------|-------------------------|----------------------------------------------|
//! | 1     | `[ "" , 0x03 )`         | the meta range: range descriptors, id counters |
//! | 2     | `[ 0x03, 0x10 )`        | the system range: the SQL catalog            |
//! | 3+    | `[ 0x10 ‥ )`            | table data; each table gets its own range    |
//!
//! Descriptors live as MVCC rows in the meta range, and every node caches them in its
//! [`router`]. A split (giving a new table its own range) is a metadata change: one meta-range
//! commit rewrites the descriptors, the left replica's span shrinks and new groups start on the
//! same engine, which already holds their data. The cluster issue adds replicas to the
//! descriptors and a transport to the groups; nothing here assumes one node except that the
//! timestamp oracle and the pending-commit registry below are local.
//!
//! ## Transactions (snapshot isolation today, SERIALIZABLE next)
//! A [`Txn`] reads at a snapshot `read_ts` taken from the node's hybrid logical [`clock`] and
//! buffers its writes. Commit:
//! * **one range → one-phase commit**: under key latches the leaseholder picks
//!   `commit_ts = clock.now()`, checks write-write conflicts (a version newer than `read_ts`, or
//!   another transaction's lock, aborts with a retryable conflict; an insert over a live row is
//!   a duplicate key) and proposes one batch of versions at `commit_ts` through Raft.
//! * **several ranges → two-phase commit**: locks (intents) are written to every range through
//!   Raft; then `commit_ts` is chosen and the transaction record `Committed(commit_ts)` is written
//!   next to the primary (first) key — the commit point; then every lock is resolved into a
//!   version. A crash before the record leaves locks that recovery (at start-up, before the node
//!   serves) aborts; after it, recovery finishes the resolution. So a multi-range transaction is
//!   all-or-nothing under `kill -9` at any point.
//!
//! Readers never wait on locks. Instead every commit registers its timestamp with the
//! [`pending`] registry of each range it writes *before* it picks `commit_ts`, and a reader at
//! `read_ts` first waits until no registered commit at or below `read_ts` is still in flight
//! in the range it scans. A commit registered later gets a timestamp above `read_ts` (the clock
//! is monotonic), so a snapshot, once read, never changes. First-committer-wins on
//! write-write conflicts gives snapshot isolation; the read-set validation that upgrades this
//! to SERIALIZABLE is the compatibility issue's work (the buffer already knows every key read).

pub mod clock;
pub mod error;
pub mod keys;
mod latch;
mod locks;
mod metrics;
pub mod pending;
mod range;
pub mod router;
mod store;
mod txn;

pub use clock::Clock;
pub use error::KvError;
pub use kestrel_storage::Ts;
pub use metrics::KvMetrics;
pub use range::RangeDescriptor;
pub use store::{Kv, KvConfig};
pub use txn::{Isolation, Savepoint, StatementMark, Txn};

pub type Result<T> = std::result::Result<T, KvError>;

#[cfg(test)]
mod tests;
