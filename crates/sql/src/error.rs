//! SQL errors: every error carries a PostgreSQL SQLSTATE. DataFusion and KV errors are
//! classified here, in one place; the wire layer only copies code and message out.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use kestrel_kv::KvError;

/// SQLSTATE codes Kestrel emits (PostgreSQL Appendix A).
pub mod code {
    pub const SUCCESSFUL_COMPLETION: &str = "00000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const STRING_DATA_RIGHT_TRUNCATION: &str = "22001";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const SUBSTRING_ERROR: &str = "22011";
    pub const INVALID_ARGUMENT_FOR_NTILE: &str = "22014";
    pub const INVALID_ARGUMENT_FOR_POWER_FUNCTION: &str = "2201F";
    pub const WINDOWING_ERROR: &str = "42P20";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const NULL_VALUE_NOT_ALLOWED: &str = "22004";
    pub const SEQUENCE_GENERATOR_LIMIT_EXCEEDED: &str = "2200H";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const CARDINALITY_VIOLATION: &str = "21000";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const INVALID_TRANSACTION_STATE: &str = "25000";
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const INVALID_SAVEPOINT_SPECIFICATION: &str = "3B001";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const INVALID_TABLE_DEFINITION: &str = "42P16";
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const GENERATED_ALWAYS: &str = "428C9";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_FOREIGN_KEY: &str = "42830";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const DUPLICATE_SCHEMA: &str = "42P06";
    pub const DUPLICATE_DATABASE: &str = "42P04";
    pub const OBJECT_IN_USE: &str = "55006";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DUPLICATE_ALIAS: &str = "42712";
    pub const GROUPING_ERROR: &str = "42803";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const QUERY_CANCELED: &str = "57014";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const INVALID_NAME: &str = "42602";
    pub const INVALID_RECURSION: &str = "42P19";
    pub const INVALID_OBJECT_DEFINITION: &str = "42P17";
    pub const IO_ERROR: &str = "58030";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INTERNAL_ERROR: &str = "XX000";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The statement read a row that another transaction changed and has since committed
    /// (it waited for that transaction's row lock): the session may refresh its snapshot and
    /// run the statement again instead of failing (see `Txn::refresh`).
    pub restart_statement: bool,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for SqlError {}

pub type SqlResult<T> = std::result::Result<T, SqlError>;

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            restart_statement: false,
        }
    }
    /// A 40001 that the session may resolve by refreshing and re-running the statement.
    pub fn restart_statement() -> Self {
        let mut e = Self::new(
            code::SERIALIZATION_FAILURE,
            "restart transaction: could not serialize access due to concurrent update",
        )
        .with_detail("a row this statement writes was changed by a concurrent transaction");
        e.restart_statement = true;
        e
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::new(
            code::FEATURE_NOT_SUPPORTED,
            format!("{what} is not supported yet"),
        )
    }
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(code::SYNTAX_ERROR, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(code::INTERNAL_ERROR, message)
    }
    pub fn is_retryable(&self) -> bool {
        self.code == code::SERIALIZATION_FAILURE || self.code == code::DEADLOCK_DETECTED
    }
    /// Wraps this error so it can travel through DataFusion and come out unchanged.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl From<KvError> for SqlError {
    fn from(e: KvError) -> Self {
        match &e {
            KvError::WriteConflict { .. } => SqlError::new(
                code::SERIALIZATION_FAILURE,
                "restart transaction: could not serialize access due to concurrent update",
            )
            .with_detail("a concurrent transaction wrote a row this transaction writes; retry the transaction"),
            KvError::ReadConflict { .. } => SqlError::new(
                code::SERIALIZATION_FAILURE,
                "restart transaction: could not serialize access due to read/write dependencies among transactions",
            )
            .with_detail("a concurrent transaction wrote rows this transaction read; retry the transaction"),
            KvError::Deadlock => SqlError::new(code::DEADLOCK_DETECTED, "deadlock detected"),
            KvError::DuplicateKey { .. } => {
                SqlError::new(code::UNIQUE_VIOLATION, "duplicate key value violates unique constraint")
            }
            KvError::TxnTooLarge { .. } => SqlError::new(code::PROGRAM_LIMIT_EXCEEDED, e.to_string()),
            KvError::Timeout { .. } => SqlError::new(code::SERIALIZATION_FAILURE, format!("restart transaction: {e}")),
            KvError::Unsupported(m) => SqlError::new(code::FEATURE_NOT_SUPPORTED, m.clone()),
            KvError::Storage(_) => SqlError::new(code::IO_ERROR, e.to_string()),
            _ => SqlError::internal(e.to_string()),
        }
    }
}

/// Classifies an error DataFusion raised while planning or executing a statement.
pub fn from_datafusion(e: DataFusionError) -> SqlError {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<SqlError>() {
            Ok(sql) => *sql,
            Err(other) => match other.downcast::<KvError>() {
                Ok(kv) => SqlError::from(*kv),
                // A SqlError raised in a spawned task can arrive wrapped more than once.
                Err(other) => find_sql_error(other.as_ref())
                    .unwrap_or_else(|| SqlError::internal(other.to_string())),
            },
        },
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            from_datafusion(*inner)
        }
        DataFusionError::Collection(mut errs) if !errs.is_empty() => {
            from_datafusion(errs.swap_remove(0))
        }
        DataFusionError::Shared(inner) => match std::sync::Arc::try_unwrap(inner) {
            Ok(e) => from_datafusion(e),
            Err(shared) => find_sql_error(shared.as_ref())
                .unwrap_or_else(|| classify_message(&shared.to_string())),
        },
        DataFusionError::SQL(e, _) => SqlError::syntax(e.to_string()),
        DataFusionError::SchemaError(e, _) => match *e {
            // `x.col` where no relation in scope is called `x`.
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } if !valid_fields.is_empty()
                && field.relation.as_ref().is_some_and(|r| {
                    !valid_fields
                        .iter()
                        .any(|v| v.relation.as_ref().is_some_and(|q| q.table() == r.table()))
                }) =>
            {
                let r = field
                    .relation
                    .as_ref()
                    .map(|r| r.table())
                    .unwrap_or_default();
                SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("missing FROM-clause entry for table \"{r}\""),
                )
            }
            SchemaError::FieldNotFound { field, .. } => SqlError::new(
                code::UNDEFINED_COLUMN,
                format!("column \"{}\" does not exist", field.name),
            ),
            SchemaError::AmbiguousReference { field } => SqlError::new(
                code::AMBIGUOUS_COLUMN,
                format!("column reference \"{}\" is ambiguous", field.name),
            ),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => {
                SqlError::new(code::DUPLICATE_COLUMN, e.to_string())
            }
        },
        DataFusionError::ArrowError(e, _) => from_arrow(&e),
        DataFusionError::NotImplemented(m) => SqlError::new(code::FEATURE_NOT_SUPPORTED, m),
        DataFusionError::Plan(m) => classify_plan(&m),
        DataFusionError::ResourcesExhausted(m) => SqlError::new(code::PROGRAM_LIMIT_EXCEEDED, m),
        DataFusionError::IoError(e) => SqlError::new(code::IO_ERROR, e.to_string()),
        other => classify_message(&other.to_string()),
    }
}

/// The SqlError inside however many DataFusion / Arrow / source wrappers, if there is one.
fn find_sql_error(e: &(dyn std::error::Error + 'static)) -> Option<SqlError> {
    if let Some(sql) = e.downcast_ref::<SqlError>() {
        return Some(sql.clone());
    }
    match e.downcast_ref::<DataFusionError>() {
        Some(DataFusionError::External(inner)) => return find_sql_error(inner.as_ref()),
        Some(DataFusionError::ArrowError(a, _)) => return find_sql_error(a.as_ref()),
        Some(DataFusionError::Context(_, inner)) => return find_sql_error(inner.as_ref()),
        Some(DataFusionError::Shared(inner)) => return find_sql_error(inner.as_ref()),
        _ => {}
    }
    if let Some(ArrowError::ExternalError(inner)) = e.downcast_ref::<ArrowError>() {
        return find_sql_error(inner.as_ref());
    }
    e.source().and_then(find_sql_error)
}

fn from_arrow(e: &ArrowError) -> SqlError {
    match e {
        ArrowError::DivideByZero => SqlError::new(code::DIVISION_BY_ZERO, "division by zero"),
        ArrowError::ArithmeticOverflow(m) => {
            SqlError::new(code::NUMERIC_VALUE_OUT_OF_RANGE, m.clone())
        }
        ArrowError::CastError(m)
        | ArrowError::ParseError(m)
        | ArrowError::InvalidArgumentError(m) => classify_message(m),
        ArrowError::ExternalError(inner) => {
            find_sql_error(inner.as_ref()).unwrap_or_else(|| classify_message(&inner.to_string()))
        }
        other => classify_message(&other.to_string()),
    }
}

fn classify_plan(m: &str) -> SqlError {
    let lower = m.to_ascii_lowercase();
    if lower.contains("table '") && lower.contains("not found") {
        let name = m.split('\'').nth(1).unwrap_or("?");
        let short = name.rsplit('.').next().unwrap_or(name);
        return SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{short}\" does not exist"),
        );
    }
    if lower.contains("inconsistent data length across values list")
        || lower.contains("column count")
    {
        return SqlError::new(
            code::SYNTAX_ERROR,
            format!("INSERT has more target columns than expressions ({m})"),
        );
    }
    if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        return SqlError::new(code::UNDEFINED_FUNCTION, m.to_string());
    }
    if lower.contains("must appear in the group by")
        || lower.contains("aggregate") && lower.contains("group by")
    {
        return SqlError::new(code::GROUPING_ERROR, m.to_string());
    }
    // PostgreSQL: no function/operator of that name takes these argument types (42883).
    if lower.contains("no function matches") || lower.contains("cannot coerce arithmetic") {
        return SqlError::new(code::UNDEFINED_FUNCTION, m.to_string());
    }
    if lower.contains("cannot be cast") || lower.contains("cannot infer common") {
        return SqlError::new(code::DATATYPE_MISMATCH, m.to_string());
    }
    classify_message(m)
}

/// DataFusion errors whose text names a PostgreSQL condition: `(fragment, SQLSTATE,
/// PostgreSQL's message)`.
const KNOWN_MESSAGES: &[(&str, &str, &str)] = &[
    (
        "non-boolean predicate",
        code::DATATYPE_MISMATCH,
        "argument of WHERE must be type boolean",
    ),
    (
        "to common types in case",
        code::DATATYPE_MISMATCH,
        "CASE types cannot be matched",
    ),
    (
        "negative count not allowed",
        code::SUBSTRING_ERROR,
        "negative substring length not allowed",
    ),
    (
        "field position must not be zero",
        code::INVALID_PARAMETER_VALUE,
        "field position must not be zero",
    ),
    (
        "square root of a negative number",
        code::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
        "cannot take square root of a negative number",
    ),
    (
        "ntile requires a positive",
        code::INVALID_ARGUMENT_FOR_NTILE,
        "argument of ntile must be greater than zero",
    ),
    (
        "invalid window frame",
        code::WINDOWING_ERROR,
        "frame starting from current row cannot have preceding rows",
    ),
    (
        "range requires exactly one order by column",
        code::WINDOWING_ERROR,
        "RANGE with offset PRECEDING/FOLLOWING requires exactly one ORDER BY column",
    ),
    (
        "with query name",
        code::DUPLICATE_ALIAS,
        "WITH query name specified more than once",
    ),
    (
        "unary operator '-' only supports",
        code::UNDEFINED_FUNCTION,
        "operator does not exist: - for this type",
    ),
];

/// Last resort: DataFusion and Arrow report many user errors only as text.
fn classify_message(m: &str) -> SqlError {
    let lower = m.to_ascii_lowercase();
    if let Some((_, c, pg)) = KNOWN_MESSAGES.iter().find(|(f, _, _)| lower.contains(f)) {
        return SqlError::new(c, format!("{pg} ({m})"));
    }
    let c = if lower.contains("divide by zero") || lower.contains("division by zero") {
        code::DIVISION_BY_ZERO
    } else if lower.contains("can't cast value")
        || lower.contains("overflow")
        || lower.contains("out of range")
        || lower.contains("too large to store")
    {
        code::NUMERIC_VALUE_OUT_OF_RANGE
    } else if lower.contains("cannot cast")
        || lower.contains("can't cast")
        || lower.contains("cast error")
        || lower.contains("parse")
        || lower.contains("invalid digit")
    {
        code::INVALID_TEXT_REPRESENTATION
    } else if lower.contains("cannot coerce arithmetic") || lower.contains("no function matches") {
        code::UNDEFINED_FUNCTION
    } else if lower.contains("not implemented") || lower.contains("unsupported") {
        code::FEATURE_NOT_SUPPORTED
    } else if lower.contains("sql error") || lower.contains("parsererror") {
        code::SYNTAX_ERROR
    } else {
        code::INTERNAL_ERROR
    };
    SqlError::new(c, m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_errors_survive_a_trip_through_datafusion() {
        let e = SqlError::new(code::NOT_NULL_VIOLATION, "null value");
        let back = from_datafusion(e.clone().into_datafusion());
        assert_eq!(back, e);
        let ctx = DataFusionError::Context("ctx".into(), Box::new(e.clone().into_datafusion()));
        assert_eq!(from_datafusion(ctx), e);
    }

    #[test]
    fn datafusion_messages_map_to_postgres_conditions() {
        let plan = |m: &str| from_datafusion(DataFusionError::Plan(m.into())).code;
        let exec = |m: &str| from_datafusion(DataFusionError::Execution(m.into())).code;
        assert_eq!(
            plan("Cannot create filter with non-boolean predicate 'p.qty' returning Int32"),
            code::DATATYPE_MISMATCH
        );
        assert_eq!(
            exec("negative count not allowed: -1"),
            code::SUBSTRING_ERROR
        );
        assert_eq!(
            exec("NTILE requires a positive integer"),
            code::INVALID_ARGUMENT_FOR_NTILE
        );
        assert_eq!(
            plan("WITH query name \"a\" specified more than once"),
            code::DUPLICATE_ALIAS
        );
        assert_eq!(plan("something unheard of"), code::INTERNAL_ERROR);
    }

    #[test]
    fn kv_errors_map_to_sqlstates() {
        assert_eq!(
            SqlError::from(KvError::WriteConflict { key: vec![] }).code,
            code::SERIALIZATION_FAILURE
        );
        assert_eq!(
            SqlError::from(KvError::DuplicateKey { key: vec![] }).code,
            code::UNIQUE_VIOLATION
        );
        assert_eq!(
            SqlError::from(KvError::TxnTooLarge { bytes: 2, max: 1 }).code,
            code::PROGRAM_LIMIT_EXCEEDED
        );
    }

    #[test]
    fn wrapped_and_shared_errors_keep_their_sqlstate() {
        let sql = || SqlError::new(code::CARDINALITY_VIOLATION, "more than one row");
        // A join's build-side error is shared by every probe partition.
        let shared = std::sync::Arc::new(sql().into_datafusion());
        let _other_probe = shared.clone();
        let e = from_datafusion(DataFusionError::Shared(shared));
        assert_eq!(e.code, code::CARDINALITY_VIOLATION);
        let twice = DataFusionError::External(Box::new(sql().into_datafusion()));
        assert_eq!(from_datafusion(twice).code, code::CARDINALITY_VIOLATION);
        let arrow = DataFusionError::ArrowError(
            Box::new(ArrowError::ExternalError(Box::new(sql().into_datafusion()))),
            None,
        );
        assert_eq!(from_datafusion(arrow).code, code::CARDINALITY_VIOLATION);
    }

    #[test]
    fn plan_errors_are_classified() {
        let missing = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(datafusion::common::Column::from_name("nope")),
                valid_fields: vec![],
            }),
            Box::new(None),
        );
        let wrapped = DataFusionError::Diagnostic(
            Box::new(datafusion::common::Diagnostic::new_error("x", None)),
            Box::new(missing),
        );
        assert_eq!(from_datafusion(wrapped).code, code::UNDEFINED_COLUMN);
        assert_eq!(
            from_datafusion(DataFusionError::Plan(
                "table 'defaultdb.public.nope' not found".into()
            ))
            .code,
            code::UNDEFINED_TABLE
        );
        assert_eq!(
            from_datafusion(DataFusionError::NotImplemented("x".into())).code,
            code::FEATURE_NOT_SUPPORTED
        );
        assert_eq!(
            from_datafusion(DataFusionError::ArrowError(
                Box::new(ArrowError::DivideByZero),
                None
            ))
            .code,
            code::DIVISION_BY_ZERO
        );
    }
}
