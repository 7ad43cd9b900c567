//! # kestrel-pgwire: the PostgreSQL wire protocol
//!
//! Each TCP connection gets a [`Connection`]: a [`kestrel_sql::Session`] plus the `pgwire`
//! crate's handler traits implemented on top of it.
//!
//! * Startup: any user name is accepted (authentication is a later issue); the requested
//!   database must exist (else FATAL 3D000). Server parameters announce PostgreSQL 15.
//! * Simple query: every statement of the string runs in order; the first error ends the
//!   string, as in PostgreSQL.
//! * Extended query: Parse plans the statement once to learn parameter and result types
//!   ([`kestrel_sql::Prepared`]); Bind decodes parameters (text or binary) into typed values;
//!   Execute runs it. Results are encoded per column in the format the client asked for.
//!   Replies are buffered until Sync or Flush, as PostgreSQL does (`deferred`): a prepared
//!   statement's round trip is one socket write.
//!
//! Errors: [`to_wire`] is the one place a [`kestrel_sql::SqlError`] becomes a wire
//! `ErrorResponse`, with its SQLSTATE.

mod copy;
mod deferred;
mod encode;
mod handler;
mod params;

pub use handler::{serve_connection, Connection};

use kestrel_sql::SqlError;
use pgwire::error::{ErrorInfo, PgWireError};

/// The one mapping from Kestrel errors to the wire.
pub fn to_wire(e: &SqlError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.code.to_string(), e.message.clone());
    info.detail = e.detail.clone();
    info
}

pub fn to_pgwire_error(e: &SqlError) -> PgWireError {
    PgWireError::UserError(Box::new(to_wire(e)))
}
