use kestrel_raft::RaftError;
use kestrel_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Another transaction wrote one of our keys after our snapshot; retrying succeeds.
    #[error("could not serialize access due to concurrent update")]
    WriteConflict { key: Vec<u8> },
    /// A span this serializable transaction read was written after its snapshot.
    #[error("could not serialize access due to read/write dependencies among transactions")]
    ReadConflict { key: Vec<u8> },
    /// An insert found a live row under its key.
    /// Waiting for a row lock would close a cycle of waiting transactions.
    #[error("deadlock detected")]
    Deadlock,
    #[error("duplicate key")]
    DuplicateKey { key: Vec<u8> },
    #[error("transaction writes {bytes} bytes, more than the limit txn_write_bytes_max = {max}")]
    TxnTooLarge { bytes: usize, max: usize },
    #[error("timed out after {ms} ms waiting for {what}")]
    Timeout { what: &'static str, ms: u64 },
    #[error("no range holds key {0:?}")]
    NoRange(Vec<u8>),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

impl KvError {
    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::WriteConflict { .. }
                | KvError::ReadConflict { .. }
                | KvError::Deadlock
                | KvError::Timeout { .. }
        )
    }
}
