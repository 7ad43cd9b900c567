//! # kestrel-server: the `kestrel` binary
//!
//! Wires the layers together — `server → pgwire → sql → kv → raft → storage` — and runs them:
//!
//! * [`node::Node::start`] takes the store directory's lock file, opens RocksDB, opens every
//!   range (recovering Raft logs and interrupted two-phase commits), bootstraps the SQL catalog
//!   on a fresh store, then listens for PostgreSQL clients and for HTTP (`/health`,
//!   `/metrics`). `/health` answers 200 only once SQL is being served.
//! * Ctrl-C / SIGTERM stop accepting, stop the Raft groups and exit. Durability never depends
//!   on a clean shutdown: every acknowledged commit is in an fsynced Raft log.

pub mod http;
pub mod node;
