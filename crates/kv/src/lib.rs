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
//! ## Transactions (SERIALIZABLE by default, snapshot isolation on request)
//! A [`Txn`] reads at a snapshot `read_ts` taken from the node's hybrid logical [`clock`] and
//! buffers its writes. Commit:
//! * **one range → one-phase commit**: under key latches the leaseholder picks
//!   `commit_ts = clock.now()`, checks write-write conflicts (a version newer than `read_ts`, or
//!   another transaction's lock, aborts with a retryable conflict; an insert over a live row is
//!   a duplicate key) and proposes one batch of versions at `commit_ts` through Raft.
//! * **several ranges, each with its only replica on this node → local multi-range commit**:
//!   under the write latches of every key (all ranges, in key order) the writes are evaluated
//!   as above; one synced entry of the primary (first) key's range writes its versions and a
//!   redo record of the other ranges' writes — the commit point — and the other ranges apply
//!   their versions; latches and pending registrations (below) cover the keys until they have.
//!   A crash in between leaves the redo record, which recovery applies. `n` entries for `n`
//!   ranges; applied records are deleted in the background (`redo.rs`).
//! * **several ranges otherwise → two-phase commit**: locks (intents) are written to every
//!   range through Raft; then `commit_ts` is chosen and the transaction record `Committed(commit_ts)` is written
//!   next to the primary (first) key — the commit point; then every lock is resolved into a
//!   version. A crash before the record leaves locks that recovery (at start-up, before the node
//!   serves) aborts; after it, recovery finishes the resolution. So a multi-range transaction is
//!   all-or-nothing under `kill -9` at any point.
//!
//! **Durability costs one fsync per commit, shared.** The one-phase batch, the local commit's
//! primary entry and the two-phase record are synced proposals; the local commit's other
//! entries and the locks and resolutions around a record are *deferred*
//! (`Durability::Deferred`): they are applied at once and become durable with the record's own
//! fsync or a later one, because all ranges share one engine WAL that is recovered in write
//! order. Concurrent commits of all ranges share each fsync (`kestrel_raft::GroupCommit`).
//!
//! Readers never wait on locks. Instead every commit registers its timestamp with the
//! [`pending`] registry of each range it writes *before* it picks `commit_ts`, and a reader at
//! `read_ts` first waits until no registered commit at or below `read_ts` is still in flight
//! in the range it scans. A commit registered later gets a timestamp above `read_ts` (the clock
//! is monotonic), so a snapshot, once read, never changes. First-committer-wins on
//! write-write conflicts gives snapshot isolation ([`Isolation::Snapshot`]).
//!
//! **SERIALIZABLE** ([`Isolation::Serializable`], the default) adds *read refresh*: the `Txn`
//! records every span it reads (merged past `txn_read_spans_max`), and a commit takes read
//! latches on those spans (`latch.rs`: write latches exclude read latches covering their key)
//! while it picks `commit_ts` and checks that no read span holds a version newer than
//! `read_ts` or a foreign lock. A write into a validated span therefore lands either before the
//! check (and aborts us with 40001) or after it, at a larger timestamp: committed read-write
//! transactions are equivalent to running alone at their `commit_ts`. Catalog (system-range)
//! reads are validated at every level, so DDL conflicts with concurrent writers.
//!
//! **Row locks** (`locks.rs`): UPDATE/DELETE lock the rows they write until the transaction
//! ends, so a second writer waits instead of computing from a stale row (waits-for cycles are
//! deadlocks, 40P01). A statement that waited calls [`Txn::refresh`]: if nothing it read before
//! the statement changed, its snapshot moves to now and the statement runs again.
//! [`Txn::savepoint`] copies the write buffer for `ROLLBACK TO`.

pub mod clock;
pub mod error;
pub mod keys;
mod latch;
mod locks;
mod metrics;
pub mod pending;
mod range;
mod read_cache;
mod redo;
pub mod router;
mod store;
mod txn;

pub use clock::Clock;
pub use error::KvError;
pub use kestrel_storage::Ts;
pub use metrics::KvMetrics;
pub use range::RangeDescriptor;
pub use store::{Kv, KvConfig};
pub use txn::{Isolation, Savepoint, ScanStats, SpanStamp, StatementMark, Txn};

pub type Result<T> = std::result::Result<T, KvError>;

#[cfg(test)]
mod tests;
