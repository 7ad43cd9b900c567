//! Explicit transaction blocks: `BEGIN … COMMIT/ROLLBACK`, savepoints, isolation levels.
//!
//! Outside a block every statement runs in its own transaction (autocommit) and is retried on
//! serialization failures. Inside a block the statements share one KV transaction: one snapshot
//! (taken at `BEGIN`), one write buffer that later statements read through, and one commit at
//! `COMMIT`. After any error the block is *failed*: every statement but `ROLLBACK`,
//! `ROLLBACK TO SAVEPOINT` and `COMMIT` (which then rolls back) gets 25P02. A savepoint is a
//! copy of the write buffer; `ROLLBACK TO` restores it and revives a failed block.
//!
//! Isolation levels map as CockroachDB and PostgreSQL users expect: `SERIALIZABLE` (the
//! default) is serializable; `REPEATABLE READ`, `READ COMMITTED` and `READ UNCOMMITTED` run as
//! snapshot isolation (PostgreSQL's REPEATABLE READ). `SHOW transaction_isolation` reports the
//! level that actually runs.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, Statement as SqlStatement, TransactionAccessMode, TransactionIsolationLevel,
    TransactionMode,
};
use kestrel_kv::{Isolation, Savepoint, Txn};
use tokio::sync::RwLock;

use crate::ddl::AfterCommit;
use crate::error::{code, SqlError, SqlResult};

/// A transaction-control statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Begin(Vec<TransactionMode>),
    Commit,
    Rollback,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
    /// `SET TRANSACTION …` (`session = false`) or `SET SESSION CHARACTERISTICS AS TRANSACTION`.
    SetTransaction {
        modes: Vec<TransactionMode>,
        session: bool,
    },
}

impl TxnOp {
    pub fn from_statement(s: &SqlStatement) -> Option<Self> {
        Some(match s {
            SqlStatement::StartTransaction { modes, .. } => TxnOp::Begin(modes.clone()),
            SqlStatement::Commit { .. } => TxnOp::Commit,
            SqlStatement::Rollback {
                savepoint: None, ..
            } => TxnOp::Rollback,
            SqlStatement::Rollback {
                savepoint: Some(n), ..
            } => TxnOp::RollbackTo(crate::ddl::ident(n)),
            SqlStatement::Savepoint { name } => TxnOp::Savepoint(crate::ddl::ident(name)),
            SqlStatement::ReleaseSavepoint { name } => TxnOp::Release(crate::ddl::ident(name)),
            SqlStatement::Set(ast::Set::SetTransaction { modes, session, .. }) => {
                TxnOp::SetTransaction {
                    modes: modes.clone(),
                    session: *session,
                }
            }
            _ => return None,
        })
    }

    /// Whether the statement may run in a failed block.
    pub fn allowed_when_failed(&self) -> bool {
        matches!(self, TxnOp::Commit | TxnOp::Rollback | TxnOp::RollbackTo(_))
    }
}

/// The isolation level `level` runs as.
pub fn isolation_of(level: &TransactionIsolationLevel) -> Isolation {
    match level {
        TransactionIsolationLevel::Serializable => Isolation::Serializable,
        _ => Isolation::Snapshot,
    }
}

/// Parses an isolation level given as text (`SET default_transaction_isolation = '…'`).
pub fn parse_isolation(text: &str) -> SqlResult<Isolation> {
    let norm = text
        .trim()
        .trim_matches('\'')
        .to_lowercase()
        .replace('_', " ");
    match norm
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .as_str()
    {
        "serializable" | "default" => Ok(Isolation::Serializable),
        "repeatable read" | "read committed" | "read uncommitted" | "snapshot" => {
            Ok(Isolation::Snapshot)
        }
        _ => Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            format!("invalid value for parameter \"transaction_isolation\": \"{text}\""),
        )),
    }
}

pub fn isolation_name(i: Isolation) -> &'static str {
    match i {
        Isolation::Serializable => "serializable",
        Isolation::Snapshot => "repeatable read",
    }
}

/// The isolation level and access mode named in `modes`, over the given defaults.
pub fn apply_modes(
    modes: &[TransactionMode],
    isolation: Isolation,
    read_only: bool,
) -> (Isolation, bool) {
    let mut out = (isolation, read_only);
    for m in modes {
        match m {
            TransactionMode::IsolationLevel(l) => out.0 = isolation_of(l),
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => out.1 = true,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => out.1 = false,
        }
    }
    out
}

/// What the wire reports in ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    Idle,
    InBlock,
    Failed,
}

/// An open transaction block.
pub struct TxnBlock {
    pub txn: Arc<RwLock<Txn>>,
    pub read_only: bool,
    pub failed: bool,
    /// Opened for a multi-statement simple query without BEGIN; commits at its end.
    pub implicit: bool,
    /// Statements run so far (SET TRANSACTION must come first).
    pub statements: usize,
    savepoints: Vec<(String, Savepoint, usize)>,
    /// Work to do once the block commits (e.g. clearing a dropped table's data).
    pub after: Vec<AfterCommit>,
    /// What now() returns inside the block.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl TxnBlock {
    pub fn new(txn: Txn, read_only: bool) -> Self {
        Self {
            txn: Arc::new(RwLock::new(txn)),
            read_only,
            failed: false,
            implicit: false,
            statements: 0,
            savepoints: Vec::new(),
            after: Vec::new(),
            started_at: chrono::Utc::now(),
        }
    }

    pub async fn savepoint(&mut self, name: String) {
        let sp = self.txn.read().await.savepoint();
        self.savepoints.push((name, sp, self.after.len()));
    }

    fn position(&self, name: &str) -> SqlResult<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _, _)| n == name)
            .ok_or_else(|| {
                SqlError::new(
                    code::INVALID_SAVEPOINT_SPECIFICATION,
                    format!("savepoint \"{name}\" does not exist"),
                )
            })
    }

    /// `RELEASE name`: forgets the savepoint and every later one; keeps the writes.
    pub fn release(&mut self, name: &str) -> SqlResult<()> {
        let i = self.position(name)?;
        self.savepoints.truncate(i);
        Ok(())
    }

    /// `ROLLBACK TO name`: restores the writes as of the savepoint, which stays defined.
    pub async fn rollback_to(&mut self, name: &str) -> SqlResult<()> {
        let i = self.position(name)?;
        self.savepoints.truncate(i + 1);
        let (_, sp, after_len) = &self.savepoints[i];
        self.txn.write().await.rollback_to(sp);
        self.after.truncate(*after_len);
        self.failed = false;
        Ok(())
    }
}
