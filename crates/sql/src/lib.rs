//! # kestrel-sql: SQL on the transactional KV layer
//!
//! DataFusion plans and runs every query; Kestrel plugs in through DataFusion's traits only:
//!
//! * [`stmt::KCatalogList`] / `KCatalog` / `KSchema` — the catalog DataFusion resolves names
//!   against: the session's database as of the statement's transaction snapshot
//!   ([`catalog::CatalogSnapshot`], loaded from the system range).
//! * [`provider::KestrelTable`] — a `TableProvider` bound to the statement's transaction. Its
//!   scan ([`provider::KvScanExec`]) turns primary-key filters into key bounds and decodes KV
//!   pairs straight into Arrow batches; `insert_into` writes through a `DataSink`. Large
//!   scans keep their decoded columns in the [`column_cache`], which answers later scans of
//!   the same span while no range it overlaps has applied a write.
//! * UPDATE/DELETE ([`dml`]) run the input of DataFusion's DML plan as a query and write the
//!   changed rows — so any WHERE / SET expression DataFusion can evaluate works. `UPDATE …
//!   FROM` and `DELETE … USING`, which DataFusion does not plan, become the equivalent join.
//! * Every row write goes through [`index::TableWriter`], which keeps secondary indexes
//!   (plain, expression and partial) and UNIQUE claims in step with the rows; `ON CONFLICT`
//!   ([`upsert`]) infers its arbiters and decides per proposed row. DML on a simple view is
//!   rewritten onto its table first ([`updatable_view`]).
//!   The write paths log rows of tables in a foreign key; [`fk::enforce`] checks parents and
//!   runs referential actions when the statement's own writes are done.
//! * Sequence functions ([`sequence`]) are scalar UDFs rebound per statement to its catalog
//!   snapshot; per-row DEFAULTs are compiled per statement ([`stmt::StmtCtx`]).
//! * Every parse uses one dialect ([`dialect`]); syntax sqlparser cannot read at all is
//!   rewritten at the token level and retried ([`syntax`]). PostgreSQL syntax DataFusion reads
//!   differently is rewritten on the AST first ([`pgcompat`], [`upsert::rewrite_insert`]), and
//!   so are query shapes it answers differently from PostgreSQL ([`query_rewrite`]: ANY/ALL
//!   subqueries, INTERSECT/EXCEPT ALL, FETCH WITH TIES, named windows, lateral set-returning
//!   functions); LIMIT/OFFSET subqueries are evaluated before planning.
//! * PostgreSQL's operator semantics (int4 literals, overflow-checked integer arithmetic,
//!   date/interval arithmetic, rounding casts, PostgreSQL input formats) are analyzer rules
//!   and an `ExprPlanner` around DataFusion's type coercion ([`pg_ops`], [`datetime`]);
//!   date/time and string functions DataFusion lacks are UDFs ([`date_fns`], [`string_fns`]).
//! * DDL ([`ddl`]) is Kestrel's own: catalog rows written in the statement's transaction.
//! * `pg_catalog` / `information_schema` ([`pg_catalog`]) are read-only virtual schemas built
//!   from the same snapshot when a statement names them; catalog functions in
//!   [`pg_functions`].
//! * Three statement shapes skip DataFusion: a prepared `SELECT cols FROM t WHERE pk = $n` is a
//!   single transactional point get ([`point`]); `UPDATE t SET c = c + $1 WHERE pk = $2` and a
//!   one-row `INSERT … VALUES ($1, …)` are a point read, a row lock and a put ([`point_write`]).
//!   Planning them cost a hundred times the KV work.
//! * Subqueries the optimizer cannot decorrelate run once per outer row ([`subquery`]).
//! * `json`/`jsonb` ([`json`]) are text tagged with their type; their operators are planned by
//!   an `ExprPlanner`. `to_char` takes PostgreSQL templates ([`to_char`]).
//!
//! ## Life of a statement
//! `Session::execute` classifies the parsed statement and takes its KV transaction: the open
//! block's ([`txn_block`]: BEGIN … COMMIT, savepoints, failed blocks) or a fresh autocommit
//! one. It loads the catalog snapshot through that transaction, builds a per-statement
//! DataFusion `SessionState` whose catalog is bound to it, plans (binding `$n` parameters;
//! RETURNING is split off first, [`returning`]; data-modifying CTEs run first as statements
//! of their own whose rows the main statement reads by name) and executes. Autocommit statements then
//! commit, and a serialization conflict (40001) retries the whole statement with a fresh
//! snapshot — invisible to the client because nothing was sent yet. An UPDATE/DELETE that
//! waited for another transaction's row lock re-runs on a refreshed snapshot instead. Writes
//! are buffered in the transaction and reach Raft only at commit, so each statement (and
//! each block) is atomic. COPY ([`copy`]) streams rows into the same kind of transaction;
//! CHECK constraints ([`check`]) are evaluated on every write path.
//!
//! Errors are [`error::SqlError`]s that carry their SQLSTATE; DataFusion and KV errors are
//! classified in [`error`], in one place.

pub mod alter;
pub mod alter_sequence;
pub mod catalog;
pub mod check;
pub mod column_cache;
pub mod copy;
pub mod date_fns;
pub mod datetime;
pub mod datum;
pub mod ddl;
pub mod dialect;
pub mod dml;
pub mod error;
pub mod exec;
pub mod fk;
pub mod index;
pub mod json;
mod metrics;
pub mod pg_catalog;
pub mod pg_functions;
pub mod pg_ops;
pub mod pgcompat;
pub mod point;
pub mod point_write;
pub mod provider;
pub mod query_rewrite;
pub mod returning;
pub mod rowcodec;
pub mod sequence;
pub mod session;
pub mod stmt;
pub mod string_fns;
pub mod subquery;
pub mod syntax;
pub mod to_char;
pub mod txn_block;
pub mod types;
pub mod updatable_view;
pub mod upsert;

pub use error::{SqlError, SqlResult};
pub use session::{ExecResult, Prepared, Session, SqlEngine};
pub use stmt::Limits;
pub use txn_block::TxnStatus;
pub use types::{SqlType, PG_TYPE_META};

/// The PostgreSQL version Kestrel reports to clients.
pub const SERVER_VERSION: &str = "15.0 (Kestrel 0.1.0)";
