//! # kestrel-storage: the bottom layer
//!
//! This crate turns a local ordered key-value store (RocksDB) into what the layers above need:
//!
//! * [`Engine`] — the one seam to the physical store: point gets, ordered scans and atomic
//!   write batches, each addressed to a [`Cf`] (column family). [`RocksEngine`] is the real
//!   engine; [`MemEngine`] is an in-memory engine with the same semantics for unit tests.
//! * [`keycode`] — the memcomparable ("order-preserving") encodings of integers, floats, strings
//!   and byte strings used to build keys whose byte order equals their logical order.
//! * [`mvcc`] — multi-version concurrency control on top of an engine: every version of a user
//!   key is stored under `escape(user_key) ++ !commit_ts`, so the newest version sorts first and a
//!   reader at snapshot `ts` seeks to the first version `<= ts`. Versions are never rewritten;
//!   garbage collection (dropping versions older than a GC horizon) is a later layer's job and
//!   only needs a scan over the same layout.
//! * [`split`] — cuts a span of user keys into parts of about equal stored size (from the
//!   engine's size estimates) so that a large scan can run as several scans in parallel.
//!
//! ## Column families
//!
//! | cf        | key                                   | value                                  |
//! |-----------|---------------------------------------|----------------------------------------|
//! | `data`    | `escape(user_key) ++ be64(!ts)`       | tag byte (1 = value, 0 = tombstone) ++ value |
//! | `locks`   | `user_key`                            | an encoded [`mvcc::Lock`] (2PC intent)  |
//! | `txns`    | `escape(primary_key) ++ txn_id`       | an encoded [`mvcc::TxnStatus`]          |
//! | `raftlog` | `be64(range_id) ++ be64(index)`       | a Raft log entry (owned by kestrel-raft) |
//! | `raftmeta`| `be64(range_id) ++ name`              | vote, applied state (owned by kestrel-raft) |
//! | `redo`    | `escape(primary_key) ++ txn_id ++ be64(commit_ts)` | an encoded [`mvcc::Redo`] (local multi-range commit not yet fully applied) |
//!
//! ## Invariants
//!
//! * A write batch is atomic: after a crash either all of it or none of it is visible.
//! * `write(batch, sync = true)` returns only after the batch is durable (WAL fsync). Batches
//!   written with `sync = false` become durable with the next synced write or
//!   [`Engine::sync_wal`] (one WAL, recovered as its longest intact prefix: durability follows
//!   write order). The Raft layer's group commit builds on exactly this.
//! * Timestamps are strictly positive; `Ts::MAX` reads the newest version.

pub mod engine;
pub mod keycode;
pub mod mvcc;
pub mod split;

pub use engine::{Batch, Cf, Cursor, Engine, EngineConfig, MemEngine, RocksEngine, StorageError};
pub use mvcc::Ts;

pub type Result<T> = std::result::Result<T, StorageError>;
