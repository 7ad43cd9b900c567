//! Sessions: parse, plan and execute statements, in autocommit transactions or in explicit
//! transaction blocks ([`crate::txn_block`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::dialect::KestrelDialect;
use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{self, ObjectType, Statement as SqlStatement};
use futures::FutureExt;
use kestrel_kv::{Isolation, Kv, Txn};
use tokio::sync::RwLock;

use crate::catalog::{self, CatalogSnapshot, DEFAULT_SCHEMA};
use crate::copy::{CopyIn, CopyOptions};
use crate::datum::{datums_from_array, Datum};
use crate::ddl::{self, AfterCommit, DdlCtx};
use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::metrics::METRICS;
use crate::stmt::{KCatalogList, Limits, StmtCtx};
use crate::txn_block::{self, TxnBlock, TxnOp, TxnStatus};
use crate::types::SqlType;

/// The most `$n` parameters one statement may have (PostgreSQL's protocol limit).
pub const PARAMS_MAX: usize = 65_535;

/// The node's SQL engine, shared by every session.
pub struct SqlEngine {
    pub kv: Arc<Kv>,
    pub limits: Limits,
    /// The node's sequence value allocator (shared by every session).
    pub sequences: Arc<crate::sequence::Sequences>,
    /// Decoded columns of large scans (`column_cache.rs`), shared by every session.
    pub column_cache: Arc<crate::column_cache::ColumnCache>,
}

impl SqlEngine {
    /// Opens the engine, creating the default databases on a fresh store.
    pub async fn open(kv: Arc<Kv>, limits: Limits) -> SqlResult<Arc<Self>> {
        catalog::bootstrap(&kv).await?;
        let sequences = Arc::new(crate::sequence::Sequences::new(kv.clone()));
        let column_cache = Arc::new(crate::column_cache::ColumnCache::new(
            limits.column_cache_bytes_max,
        ));
        Ok(Arc::new(Self {
            kv,
            limits,
            sequences,
            column_cache,
        }))
    }

    /// A session of `user` on `database` (which must exist).
    pub async fn session(self: &Arc<Self>, database: &str, user: &str) -> SqlResult<Session> {
        let txn = self.kv.begin();
        if catalog::get_database(&txn, database).await?.is_none() {
            return Err(SqlError::new(
                code::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            ));
        }
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(database, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            // `timestamptz` is a zoned timestamp (DataFusion's default makes it zone-less).
            .set_str("datafusion.execution.time_zone", "+00:00");
        let seq_session = Arc::new(std::sync::Mutex::new(
            crate::sequence::SessionSequences::default(),
        ));
        let mut base = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(analyzer_rules())
            .build();
        // Planning (DDL defaults, constants) knows the sequence functions; statements rebind
        // them to their own catalog snapshot.
        let unbound = crate::sequence::SeqFunctions {
            seqs: self.sequences.clone(),
            map: Arc::default(),
            session: seq_session.clone(),
        };
        for udf in unbound.udfs() {
            base.register_udf(udf).map_err(from_datafusion)?;
        }
        register_functions(&mut base)?;
        for udf in crate::pg_functions::session_udfs(database, user) {
            base.register_udf(udf).map_err(from_datafusion)?;
        }
        Ok(Session {
            engine: self.clone(),
            database: database.to_string(),
            user: user.to_string(),
            base,
            seq_session,
            vars: default_vars(),
            block: None,
            default_isolation: Isolation::Serializable,
            copy_in: None,
            copy_error: None,
            point_shapes: parking_lot::Mutex::new(HashMap::new()),
        })
    }
}

/// DataFusion's analyzer rules with Kestrel's PostgreSQL rules: array literals before type
/// coercion, bytea input casts after it.
fn analyzer_rules() -> Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> {
    let mut rules = datafusion::optimizer::Analyzer::new().rules;
    rules.insert(0, Arc::new(crate::pgcompat::PgArrayLiteralRule));
    rules.insert(1, Arc::new(crate::pg_ops::PgLiteralRule));
    rules.push(Arc::new(crate::pg_ops::PgOperatorRule));
    rules.push(Arc::new(crate::json::JsonEmbedRule));
    rules.push(Arc::new(crate::pgcompat::PgCastRule));
    rules
}

fn default_vars() -> BTreeMap<String, String> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "serializable"),
        ("default_transaction_read_only", "off"),
        ("extra_float_digits", "1"),
        ("integer_datetimes", "on"),
        ("search_path", "public"),
        ("server_encoding", "UTF8"),
        ("server_version", crate::SERVER_VERSION),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("timezone", "UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The outcome of one statement.
#[derive(Debug)]
pub enum ExecResult {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A command tag such as `INSERT 0 3` or `CREATE TABLE`.
    Command(String),
    /// Rows of `… RETURNING`; the command tag is `verb` and the row count (`INSERT 0 3`).
    Returned {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        verb: &'static str,
    },
    /// COPY FROM STDIN started: the client now sends `columns`-wide data.
    CopyIn { columns: usize },
    /// COPY TO STDOUT: the rows to send, formatted as `options` say.
    CopyOut {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        options: CopyOptions,
    },
}

/// A parsed statement with what the extended protocol's Describe needs.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub stmt: DFStatement,
    /// `$1, $2, …` in order; `None` where the type could not be inferred. Fields carry the
    /// column's PostgreSQL type tag (uuid, varchar …) when a parameter stands for a column.
    pub param_fields: Vec<Option<FieldRef>>,
    /// The result columns; `None` for statements that return no rows.
    pub schema: Option<SchemaRef>,
}

pub struct Session {
    engine: Arc<SqlEngine>,
    database: String,
    user: String,
    base: SessionState,
    /// `currval`/`lastval` memory of this session.
    seq_session: Arc<std::sync::Mutex<crate::sequence::SessionSequences>>,
    vars: BTreeMap<String, String>,
    /// The open transaction block, if any.
    block: Option<TxnBlock>,
    default_isolation: Isolation,
    /// The COPY FROM STDIN in progress, and the first error it hit (reported at its end).
    copy_in: Option<CopyIn>,
    copy_error: Option<SqlError>,
    /// Point statements recognised before (see [`Session::point_shape`]), by the address of
    /// the parsed statement — a prepared statement's stays put between executions — with a
    /// copy of it to tell a reused address from the same statement.
    point_shapes: parking_lot::Mutex<HashMap<usize, (DFStatement, Arc<PointShape>)>>,
}

/// A statement the point paths answer without DataFusion.
enum PointShape {
    Read(crate::point::PointSelect),
    Write(crate::point_write::PointWrite),
}

/// The most recognised point statements a session remembers; past it they are forgotten.
const POINT_SHAPES_MAX: usize = 256;

enum Kind {
    /// Planned and run by DataFusion (SELECT, INSERT, UPDATE, DELETE, EXPLAIN …).
    DataFusion {
        expose_hidden: bool,
        /// The statement writes (not allowed in a READ ONLY transaction).
        writes: bool,
    },
    /// Catalog changes (CREATE/DROP/ALTER TABLE, TRUNCATE), run in the transaction.
    Ddl,
    /// Accepted and ignored (VACUUM, ANALYZE): storage maintenance is automatic.
    NoOp(&'static str),
    Copy,
    Set,
    Show,
    Transaction(TxnOp),
}

impl Kind {
    fn writes(&self) -> bool {
        match self {
            Kind::DataFusion { writes, .. } => *writes,
            Kind::Ddl => true,
            _ => false,
        }
    }
}

const READ: Kind = Kind::DataFusion {
    expose_hidden: false,
    writes: false,
};

fn classify(stmt: &DFStatement) -> SqlResult<Kind> {
    let s = match stmt {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::Explain(_) => return Ok(READ),
        DFStatement::CreateExternalTable(_) => {
            return Err(SqlError::unsupported("CREATE EXTERNAL TABLE"))
        }
        DFStatement::CopyTo(_) => return Err(SqlError::unsupported("COPY")),
        DFStatement::Reset(_) => return Ok(Kind::Set),
    };
    if let Some(op) = TxnOp::from_statement(s) {
        return Ok(Kind::Transaction(op));
    }
    Ok(match s {
        SqlStatement::Query(q) if crate::query_rewrite::modifies(q) => Kind::DataFusion {
            expose_hidden: true,
            writes: true,
        },
        SqlStatement::Query(_) | SqlStatement::Explain { .. } => READ,
        SqlStatement::Insert(_) => Kind::DataFusion {
            expose_hidden: false,
            writes: true,
        },
        SqlStatement::Update(_) | SqlStatement::Delete(_) => Kind::DataFusion {
            expose_hidden: true,
            writes: true,
        },
        SqlStatement::CreateTable(_)
        | SqlStatement::AlterTable(_)
        | SqlStatement::Truncate(_)
        | SqlStatement::CreateIndex(_)
        | SqlStatement::CreateSequence {
            temporary: false, ..
        }
        | SqlStatement::CreateSchema { .. }
        | SqlStatement::CreateView(_)
        | SqlStatement::CreateDomain(_)
        | SqlStatement::DropDomain(_)
        | SqlStatement::Comment { .. }
        | SqlStatement::CreateDatabase { .. }
        | SqlStatement::Drop {
            object_type:
                ObjectType::Table
                | ObjectType::Index
                | ObjectType::Sequence
                | ObjectType::Schema
                | ObjectType::View
                | ObjectType::Database,
            ..
        } => Kind::Ddl,
        SqlStatement::Copy { .. } => Kind::Copy,
        SqlStatement::Vacuum(_) => Kind::NoOp("VACUUM"),
        SqlStatement::Analyze(_) => Kind::NoOp("ANALYZE"),
        SqlStatement::Set(_) => Kind::Set,
        SqlStatement::ShowVariable { .. } => Kind::Show,
        other => {
            let text = other.to_string();
            let head: Vec<&str> = text.split_whitespace().take(2).collect();
            return Err(SqlError::unsupported(format!(
                "statement {}",
                head.join(" ")
            )));
        }
    })
}

/// `stmt` with every LIMIT/OFFSET that holds a subquery replaced by its value, evaluated
/// once in the statement's transaction (DataFusion plans only constant limits).
async fn limits_evaluated(state: &SessionState, stmt: &DFStatement) -> SqlResult<DFStatement> {
    let DFStatement::Statement(s) = stmt else {
        return Ok(stmt.clone());
    };
    let exprs = crate::query_rewrite::limit_subqueries(s);
    if exprs.is_empty() {
        return Ok(stmt.clone());
    }
    let mut values = Vec::with_capacity(exprs.len());
    for e in exprs {
        let plan = state
            .create_logical_plan(&format!("SELECT CAST(({e}) AS BIGINT)"))
            .await
            .map_err(from_datafusion)?;
        let batches = datafusion::dataframe::DataFrame::new(state.clone(), plan)
            .collect()
            .await
            .map_err(from_datafusion)?;
        let value = batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .filter(|a| a.is_valid(0))
                .map(|a| a.value(0))
        });
        values.push((e, value));
    }
    let mut s = s.as_ref().clone();
    // A negative value fails in `check_limits` afterwards, as a negative constant would.
    crate::query_rewrite::set_limit_values(&mut s, &values);
    Ok(DFStatement::Statement(Box::new(s)))
}

/// `stmt` with INTERSECT/EXCEPT ALL over `SELECT *` rewritten once their left operands'
/// column names are known from planning them ([`crate::query_rewrite::name_set_operands`]).
async fn set_operands_named(state: &SessionState, stmt: &DFStatement) -> SqlResult<DFStatement> {
    let DFStatement::Statement(s) = stmt else {
        return Ok(stmt.clone());
    };
    let operands = crate::query_rewrite::unnamed_set_operands(s);
    if operands.is_empty() {
        return Ok(stmt.clone());
    }
    let mut names = Vec::with_capacity(operands.len());
    for body in operands {
        let query = ast::Query {
            with: None,
            body: Box::new(body.clone()),
            order_by: None,
            limit_clause: None,
            fetch: None,
            locks: vec![],
            for_clause: None,
            settings: None,
            format_clause: None,
            pipe_operators: vec![],
        };
        // An operand that cannot be planned alone (it reads a CTE) stays unnamed (0A000).
        let Ok(plan) = state
            .statement_to_plan(DFStatement::Statement(Box::new(SqlStatement::Query(
                Box::new(query),
            ))))
            .await
        else {
            continue;
        };
        let fields: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        names.push((body, fields));
    }
    let mut s = s.as_ref().clone();
    crate::query_rewrite::name_set_operands(&mut s, &names);
    Ok(DFStatement::Statement(Box::new(s)))
}

/// Registers PostgreSQL's functions and operators (everything a session has except the
/// sequence functions and the session-bound ones like `current_user`).
fn register_functions(base: &mut SessionState) -> SqlResult<()> {
    // PostgreSQL's name for a random (v4) uuid.
    let uuid = datafusion::functions::string::uuid()
        .as_ref()
        .clone()
        .with_aliases(["gen_random_uuid"]);
    base.register_udf(Arc::new(uuid)).map_err(from_datafusion)?;
    base.register_udaf(crate::pgcompat::SingleValue::udaf())
        .map_err(from_datafusion)?;
    // Replacing a built-in must drop it with its aliases: a stale alias entry would bring
    // it back when a statement's state is rebuilt from this one.
    base.deregister_udf("to_char").map_err(from_datafusion)?;
    base.register_udf(crate::to_char::ToChar::udf())
        .map_err(from_datafusion)?;
    base.deregister_udf("make_date").map_err(from_datafusion)?;
    base.deregister_udf("encode").map_err(from_datafusion)?;
    base.deregister_udf("decode").map_err(from_datafusion)?;
    for udf in crate::string_fns::udfs() {
        base.register_udf(udf).map_err(from_datafusion)?;
    }
    for udf in crate::date_fns::udfs() {
        base.register_udf(udf).map_err(from_datafusion)?;
    }
    for udf in crate::json::udfs() {
        base.register_udf(udf).map_err(from_datafusion)?;
    }
    for udf in crate::pgcompat::udfs() {
        base.register_udf(udf).map_err(from_datafusion)?;
    }
    base.register_expr_planner(Arc::new(crate::json::JsonPlanner))
        .map_err(from_datafusion)?;
    base.register_expr_planner(Arc::new(crate::pg_ops::TemporalPlanner))
        .map_err(from_datafusion)?;
    Ok(())
}

/// A session-independent state for compiling stored expressions (index keys and
/// predicates), which may only use immutable functions.
pub fn expression_state() -> SqlResult<&'static SessionState> {
    static STATE: std::sync::OnceLock<SessionState> = std::sync::OnceLock::new();
    if let Some(s) = STATE.get() {
        return Ok(s);
    }
    let config = SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        .set_str("datafusion.execution.time_zone", "+00:00");
    let mut base = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_analyzer_rules(analyzer_rules())
        .build();
    register_functions(&mut base)?;
    Ok(STATE.get_or_init(|| base))
}

/// Splits SQL text into statements.
/// Splits SQL text into statements. DataFusion's parser reads only its own `COPY … TO 'file'`
/// and sqlparser's VACUUM is Redshift's; when the text does not parse as a whole it is split
/// at top-level semicolons and PostgreSQL's COPY (by sqlparser) and VACUUM (ignored, any
/// options) are read piece by piece. Other syntax errors are reported as DataFusion saw them.
pub fn parse(sql: &str) -> SqlResult<Vec<DFStatement>> {
    match DFParser::parse_sql_with_dialect(sql, &KestrelDialect) {
        Ok(v) => Ok(v.into_iter().collect()),
        Err(e) => parse_piecewise(sql).ok_or_else(|| from_datafusion(e)),
    }
}

/// COPY options take PostgreSQL booleans (`on`, `off`, `1`, `0`); sqlparser reads only
/// TRUE/FALSE, so those values are rewritten at the token level.
fn copy_booleans(tokens: &[datafusion::sql::sqlparser::tokenizer::Token]) -> String {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut out = String::new();
    let mut prev: Option<Keyword> = None;
    for t in tokens {
        let boolean_option = matches!(prev, Some(Keyword::FREEZE | Keyword::HEADER));
        let replaced = match t {
            Token::Word(w) if boolean_option && w.value.eq_ignore_ascii_case("on") => Some("TRUE"),
            Token::Word(w) if boolean_option && w.value.eq_ignore_ascii_case("off") => {
                Some("FALSE")
            }
            Token::Number(n, _) if boolean_option && n == "1" => Some("TRUE"),
            Token::Number(n, _) if boolean_option && n == "0" => Some("FALSE"),
            _ => None,
        };
        match replaced {
            Some(r) => out.push_str(r),
            None => out.push_str(&t.to_string()),
        }
        match t {
            Token::Whitespace(_) => {}
            Token::Word(w) => prev = Some(w.keyword),
            _ => prev = None,
        }
    }
    out
}

/// `stmt` with every view it names expanded ([`crate::pgcompat::expand_views`]).
fn with_views(
    stmt: DFStatement,
    views: &crate::catalog::ViewMap,
    db: &str,
) -> SqlResult<DFStatement> {
    match stmt {
        DFStatement::Statement(s) if !views.is_empty() => {
            let mut s = *s;
            crate::updatable_view::rewrite(&mut s, views, db)?;
            crate::pgcompat::expand_views(&mut s, views, db)?;
            Ok(DFStatement::Statement(Box::new(s)))
        }
        other => Ok(other),
    }
}

/// `stmt` with [`crate::pgcompat::rewrite_statement`] applied.
fn pg_rewrite(stmt: &DFStatement) -> DFStatement {
    match stmt {
        DFStatement::Statement(s) => {
            let mut s = s.as_ref().clone();
            crate::pgcompat::rewrite_statement(&mut s);
            DFStatement::Statement(Box::new(s))
        }
        other => other.clone(),
    }
}

fn is_create_sequence(tokens: &[datafusion::sql::sqlparser::tokenizer::Token]) -> bool {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let words: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.as_str()),
            _ => None,
        })
        .take(2)
        .collect();
    words.len() == 2 && words[1].eq_ignore_ascii_case("sequence")
}

/// `CREATE TABLE t (a, b) AS query` (names without types) and `… AS query WITH [NO] DATA`,
/// which sqlparser does not read, as `CREATE TABLE t AS SELECT * FROM (query) AS q(a, b)
/// [LIMIT 0]`; `None` for any other statement.
fn ctas_text(tokens: &[datafusion::sql::sqlparser::tokenizer::Token]) -> Option<String> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Token;
    let sig: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let kw = |i: usize, k: Keyword| matches!(sig.get(i), Some(Token::Word(w)) if w.keyword == k);
    if !(kw(0, Keyword::CREATE) && kw(1, Keyword::TABLE)) {
        return None;
    }
    let mut i = 2;
    if kw(2, Keyword::IF) && kw(3, Keyword::NOT) && kw(4, Keyword::EXISTS) {
        i = 5;
    }
    // The table name: word (. word)*.
    let name_start = i;
    while matches!(sig.get(i), Some(Token::Word(_))) {
        i += 1;
        if matches!(sig.get(i), Some(Token::Period)) {
            i += 1;
        } else {
            break;
        }
    }
    let head: String = sig[..i].iter().map(|t| format!("{t} ")).collect();
    if i == name_start {
        return None;
    }
    let mut names = Vec::new();
    if matches!(sig.get(i), Some(Token::LParen)) {
        i += 1;
        loop {
            match (sig.get(i), sig.get(i + 1)) {
                (Some(Token::Word(w)), Some(Token::Comma)) => names.push(w.to_string()),
                (Some(Token::Word(w)), Some(Token::RParen)) => {
                    names.push(w.to_string());
                    i += 2;
                    break;
                }
                _ => return None, // typed columns: sqlparser reads those itself
            }
            i += 2;
        }
    }
    if !kw(i, Keyword::AS) {
        return None;
    }
    let mut query = &sig[i + 1..];
    let mut no_data = false;
    let n = query.len();
    if n >= 3
        && matches!(query[n - 3], Token::Word(w) if w.keyword == Keyword::WITH)
        && matches!(query[n - 2], Token::Word(w) if w.keyword == Keyword::NO)
        && matches!(query[n - 1], Token::Word(w) if w.keyword == Keyword::DATA)
    {
        query = &query[..n - 3];
        no_data = true;
    } else if n >= 2
        && matches!(query[n - 2], Token::Word(w) if w.keyword == Keyword::WITH)
        && matches!(query[n - 1], Token::Word(w) if w.keyword == Keyword::DATA)
    {
        query = &query[..n - 2];
    } else if names.is_empty() {
        return None;
    }
    let query: String = query.iter().map(|t| format!("{t} ")).collect();
    let alias = match names.is_empty() {
        true => String::new(),
        false => format!("({})", names.join(", ")),
    };
    let limit = if no_data { " LIMIT 0" } else { "" };
    Some(format!(
        "{head}AS SELECT * FROM ({query}) AS kestrel_ctas{alias}{limit}"
    ))
}

/// PostgreSQL takes CREATE SEQUENCE options in any order; sqlparser wants them in one order,
/// so the option clauses are sorted into it at the token level.
fn sequence_options_in_order(tokens: &[datafusion::sql::sqlparser::tokenizer::Token]) -> String {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let toks: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let rank = |t: &Token, next: Option<&&Token>| -> Option<u8> {
        let Token::Word(w) = t else { return None };
        let word = |x: &Token| match x {
            Token::Word(w) => w.value.to_ascii_lowercase(),
            _ => String::new(),
        };
        Some(match w.value.to_ascii_lowercase().as_str() {
            "as" => 0,
            "increment" => 1,
            "minvalue" => 2,
            "maxvalue" => 3,
            "start" => 4,
            "cache" => 5,
            "cycle" => 6,
            "owned" => 7,
            "no" => match next.map(|n| word(n)).as_deref() {
                Some("minvalue") => 2,
                Some("maxvalue") => 3,
                Some("cycle") => 6,
                _ => return None,
            },
            _ => return None,
        })
    };
    // The head is everything up to the sequence name (after SEQUENCE [IF NOT EXISTS]).
    let mut i = 2;
    while i < toks.len()
        && matches!(toks[i], Token::Word(w) if ["if", "not", "exists"].contains(&w.value.to_ascii_lowercase().as_str()))
    {
        i += 1;
    }
    i += 1;
    while i + 1 < toks.len() && *toks[i] == Token::Period {
        i += 2;
    }
    let head: Vec<String> = toks[..i.min(toks.len())]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let mut clauses: Vec<(u8, Vec<String>)> = Vec::new();
    let mut prev_no = false;
    for (j, t) in toks.iter().enumerate().skip(i) {
        let r = if prev_no {
            None
        } else {
            rank(t, toks.get(j + 1))
        };
        prev_no = matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("no"));
        match (r, clauses.last_mut()) {
            (Some(r), _) => clauses.push((r, vec![t.to_string()])),
            (None, Some(last)) => last.1.push(t.to_string()),
            (None, None) => clauses.push((0, vec![t.to_string()])),
        }
    }
    clauses.sort_by_key(|(r, _)| *r);
    let mut out = head.join(" ");
    for (_, c) in clauses {
        out.push(' ');
        out.push_str(&c.join(" "));
    }
    out
}

fn parse_piecewise(sql: &str) -> Option<Vec<DFStatement>> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = KestrelDialect;
    // Raw tokens: pieces are printed back to text and parsed again, so quotes inside
    // literals and identifiers must keep their escapes (`'a''b'` stays one literal).
    // E'…' strings are unescaped even then, so they become standard strings holding the
    // same value.
    let tokens: Vec<Token> = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .ok()?
        .into_iter()
        .map(|t| match t {
            Token::EscapedStringLiteral(s) => Token::SingleQuotedString(s.replace('\'', "''")),
            other => other,
        })
        .collect();
    let mut out = Vec::new();
    for piece in tokens.split(|t| *t == Token::SemiColon) {
        let first = piece.iter().find(|t| !matches!(t, Token::Whitespace(_)));
        let Some(first) = first else { continue };
        let text: String = piece.iter().map(|t| t.to_string()).collect();
        let stmt = match first {
            Token::Word(w) if w.keyword == Keyword::VACUUM => {
                SqlStatement::Vacuum(ast::VacuumStatement {
                    full: false,
                    sort_only: false,
                    delete_only: false,
                    reindex: false,
                    recluster: false,
                    table_name: None,
                    threshold: None,
                    boost: false,
                })
            }
            // PostgreSQL's ABORT [WORK | TRANSACTION] is ROLLBACK.
            Token::Word(w) if w.value.eq_ignore_ascii_case("abort") => {
                let rest: Vec<&Token> = piece
                    .iter()
                    .skip_while(|t| !matches!(t, Token::Word(_)))
                    .skip(1)
                    .filter(|t| !matches!(t, Token::Whitespace(_)))
                    .collect();
                let ok = match rest.as_slice() {
                    [] => true,
                    [Token::Word(w)] => {
                        matches!(w.keyword, Keyword::WORK | Keyword::TRANSACTION)
                    }
                    _ => false,
                };
                if !ok {
                    return None;
                }
                SqlStatement::Rollback {
                    chain: false,
                    savepoint: None,
                }
            }
            Token::Word(w) if w.keyword == Keyword::CREATE && ctas_text(piece).is_some() => {
                let text = ctas_text(piece)?;
                let mut v = Parser::parse_sql(&dialect, &text).ok()?;
                if v.len() != 1 {
                    return None;
                }
                v.pop()?
            }
            Token::Word(w) if w.keyword == Keyword::CREATE && is_create_sequence(piece) => {
                let text = sequence_options_in_order(piece);
                let mut v = Parser::parse_sql(&dialect, &text).ok()?;
                if v.len() != 1 {
                    return None;
                }
                v.pop()?
            }
            Token::Word(w)
                if w.keyword == Keyword::ALTER
                    && crate::alter_sequence::is_alter_sequence(piece) =>
            {
                crate::alter_sequence::carrier(piece)?
            }
            Token::Word(w) if w.keyword == Keyword::COPY => {
                let text = copy_booleans(piece);
                let mut v = Parser::parse_sql(&dialect, &text).ok()?;
                if v.len() != 1 {
                    return None;
                }
                v.pop()?
            }
            _ => {
                let mut v = match DFParser::parse_sql_with_dialect(&text, &dialect) {
                    Ok(v) => v,
                    Err(_) => {
                        let fixed = crate::syntax::rewrite(piece)?;
                        DFParser::parse_sql_with_dialect(&fixed, &dialect).ok()?
                    }
                };
                if v.len() != 1 {
                    return None;
                }
                out.push(v.pop_front()?);
                continue;
            }
        };
        out.push(DFStatement::Statement(Box::new(stmt)));
    }
    Some(out)
}

/// A query's result columns: the names (and PostgreSQL type tags) of the planned statement
/// with the types its analyzed plan produces — type coercion may widen a column after
/// planning (`SELECT 1 UNION SELECT 2.5` is numeric, not an integer).
fn output_schema(
    state: &SessionState,
    plan: &LogicalPlan,
    batches: &[RecordBatch],
) -> SqlResult<SchemaRef> {
    let logical = plan.schema().as_arrow();
    let actual: SchemaRef = match batches.first() {
        Some(b) => b.schema(),
        None => match state.optimize(plan) {
            Ok(p) => Arc::new(p.schema().as_arrow().clone()),
            Err(_) => return Ok(Arc::new(logical.clone())),
        },
    };
    if actual.fields().len() != logical.fields().len() {
        return Ok(Arc::new(logical.clone()));
    }
    let fields: Vec<Field> = logical
        .fields()
        .iter()
        .zip(actual.fields())
        .map(|(l, a)| match l.data_type() == a.data_type() {
            true => l.as_ref().clone(),
            false => l.as_ref().clone().with_data_type(a.data_type().clone()),
        })
        .collect();
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        logical.metadata().clone(),
    )))
}

/// The RETURNING rows of a data-modifying CTE as a table (columns renamed by `WITH x(a, b)`).
fn cte_table(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    columns: &[String],
) -> SqlResult<Arc<dyn TableProvider>> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.get(i) {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SqlError::internal(format!("CTE rows: {e}")))?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
        .map_err(from_datafusion)?;
    Ok(Arc::new(table))
}

fn show_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

impl Session {
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs every statement of `sql` (simple query protocol). Stops at the first error.
    /// Several statements outside a block run in one implicit transaction, as in PostgreSQL.
    pub async fn execute_sql(&mut self, sql: &str) -> (Vec<ExecResult>, Option<SqlError>) {
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => {
                self.fail_block();
                return (vec![], Some(e));
            }
        };
        if stmts.len() > 1 && self.block.is_none() {
            let mut txn = self.engine.kv.begin();
            txn.set_isolation(self.default_isolation);
            let mut block = TxnBlock::new(txn, false);
            block.implicit = true;
            self.block = Some(block);
        }
        let mut out = Vec::new();
        for stmt in stmts {
            match self.execute(&stmt, None).await {
                // The client sends the COPY data next; the rest of the string is not run and an
                // implicit block commits when the COPY ends.
                Ok(r @ ExecResult::CopyIn { .. }) => {
                    out.push(r);
                    return (out, None);
                }
                Ok(r) => out.push(r),
                Err(e) => {
                    if self.block.as_ref().is_some_and(|b| b.implicit) {
                        self.block = None;
                    }
                    return (out, Some(e));
                }
            }
        }
        if self.block.as_ref().is_some_and(|b| b.implicit) {
            if let Err(e) = self.transaction(TxnOp::Commit).await {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    /// Marks the open block failed (an error outside statement execution, e.g. in Bind).
    pub fn fail_block(&mut self) {
        if let Some(b) = self.block.as_mut() {
            b.failed = true;
        }
    }

    /// Parses and describes one statement (extended protocol Parse/Describe).
    pub async fn prepare(&mut self, sql: &str) -> SqlResult<Option<Prepared>> {
        let res = self.prepare_inner(sql).await;
        if res.is_err() {
            self.fail_block();
        }
        res
    }

    async fn prepare_inner(&mut self, sql: &str) -> SqlResult<Option<Prepared>> {
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let (param_types, schema) = match classify(&stmt)? {
            Kind::DataFusion { expose_hidden, .. } => {
                let txn = match &self.block {
                    Some(b) => b.txn.clone(),
                    None => Arc::new(RwLock::new(self.engine.kv.begin())),
                };
                let (state, ctx) = self
                    .state_for(txn.clone(), expose_hidden, false, None)
                    .await?;
                let (parts, main) = match crate::query_rewrite::split_modifying_ctes(&stmt)? {
                    Some((parts, main)) => (parts, main),
                    None => (Vec::new(), stmt.clone()),
                };
                // Each data-modifying CTE is described first; the main statement then sees
                // an empty table of its RETURNING shape under the CTE's name.
                let mut ordered = Vec::new();
                for (name, columns, part) in parts {
                    let part = DFStatement::Statement(Box::new(part));
                    let (types, schema) = self.describe(&state, &ctx, &part).await?;
                    ordered.extend(types);
                    if let Some(schema) = schema {
                        let table = cte_table(schema, Vec::new(), &columns)?;
                        if let Ok(mut m) = ctx.cte_results.lock() {
                            m.insert(name, table);
                        }
                    }
                }
                // The main statement alone decides whether hidden rowids are visible.
                let main_hidden = matches!(
                    classify(&main)?,
                    Kind::DataFusion {
                        expose_hidden: true,
                        ..
                    }
                );
                let (types, schema) = if main_hidden == expose_hidden {
                    self.describe(&state, &ctx, &main).await?
                } else {
                    let (state, main_ctx) = self.state_for(txn, main_hidden, false, None).await?;
                    let ctes = ctx
                        .cte_results
                        .lock()
                        .map(|m| m.clone())
                        .unwrap_or_default();
                    if let Ok(mut m) = main_ctx.cte_results.lock() {
                        *m = ctes;
                    }
                    self.describe(&state, &main_ctx, &main).await?
                };
                ordered.extend(types);
                ordered.sort_by_key(|(i, _)| *i);
                let n = ordered.last().map(|(i, _)| *i).unwrap_or(0);
                if n > PARAMS_MAX || ordered.first().is_some_and(|(i, _)| *i == 0) {
                    return Err(SqlError::syntax(format!(
                        "parameter numbers must be between $1 and ${PARAMS_MAX}"
                    )));
                }
                let mut params = vec![None; n];
                for (i, t) in ordered {
                    if params[i - 1].is_none() {
                        params[i - 1] = t;
                    }
                }
                (params, schema)
            }
            Kind::Show => {
                let name = show_name(&stmt);
                (vec![], Some(show_schema(&name)))
            }
            _ => (vec![], None),
        };
        Ok(Some(Prepared {
            stmt,
            param_fields: param_types,
            schema,
        }))
    }

    /// What ReadyForQuery reports after the statements run so far.
    pub fn txn_status(&self) -> TxnStatus {
        match &self.block {
            None => TxnStatus::Idle,
            Some(b) if b.failed => TxnStatus::Failed,
            Some(_) => TxnStatus::InBlock,
        }
    }

    /// Executes one statement: in the open transaction block, or else in its own transaction
    /// (retrying serialization conflicts). An error inside a block fails the block.
    pub async fn execute(
        &mut self,
        stmt: &DFStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let started = Instant::now();
        let res = self.execute_inner(stmt, params).await;
        if res.is_err() {
            if let Some(b) = self.block.as_mut() {
                b.failed = true;
            }
        }
        METRICS.observe(started.elapsed(), res.is_ok());
        res
    }

    async fn execute_inner(
        &mut self,
        stmt: &DFStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let kind = classify(stmt)?;
        if let Some(b) = &self.block {
            let allowed = matches!(&kind, Kind::Transaction(op) if op.allowed_when_failed());
            if b.failed && !allowed {
                return Err(SqlError::new(
                    code::IN_FAILED_SQL_TRANSACTION,
                    "current transaction is aborted, commands ignored until end of transaction block",
                ));
            }
        }
        match kind {
            Kind::Set => self.set(stmt).await,
            Kind::Show => self.show(stmt).await,
            Kind::Transaction(op) => self.transaction(op).await,
            Kind::NoOp(tag) => Ok(ExecResult::Command(tag.to_string())),
            Kind::Copy => self.copy(stmt).await,
            _ if self.block.is_some() => self.execute_in_block(stmt, &kind, params).await,
            _ => self.execute_autocommit(stmt, &kind, params).await,
        }
    }

    /// Runs a statement in the open block's transaction; nothing is committed.
    async fn execute_in_block(
        &mut self,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let Some(block) = self.block.as_mut() else {
            return Err(SqlError::internal("no transaction block"));
        };
        block.statements += 1;
        if block.read_only && kind.writes() {
            return Err(SqlError::new(
                code::READ_ONLY_SQL_TRANSACTION,
                format!(
                    "cannot execute {} in a read-only transaction",
                    statement_verb(stmt)
                ),
            ));
        }
        let txn = block.txn.clone();
        let mut after = Vec::new();
        let res = self
            .run_statement(txn, stmt, kind, params, &mut after)
            .await;
        if let Some(b) = self.block.as_mut() {
            b.after.extend(after);
        }
        res
    }

    async fn transaction(&mut self, op: TxnOp) -> SqlResult<ExecResult> {
        let tag = |t: &str| Ok(ExecResult::Command(t.to_string()));
        match op {
            TxnOp::Begin(modes) => {
                if let Some(b) = self.block.as_mut() {
                    // BEGIN inside an implicit block (a multi-statement query) makes it explicit
                    // and applies its modes; the isolation level only if nothing ran yet.
                    if b.implicit {
                        b.implicit = false;
                        let mut txn = b.txn.write().await;
                        let (iso, ro) =
                            txn_block::apply_modes(&modes, txn.isolation(), b.read_only);
                        if b.statements == 0 {
                            txn.set_isolation(iso);
                        }
                        b.read_only = ro;
                    }
                } else {
                    let (iso, ro) = txn_block::apply_modes(&modes, self.default_isolation, false);
                    let mut txn = self.engine.kv.begin();
                    txn.set_isolation(iso);
                    self.block = Some(TxnBlock::new(txn, ro));
                }
                tag("BEGIN")
            }
            TxnOp::Commit => {
                let Some(block) = self.block.take() else {
                    return tag("COMMIT");
                };
                if block.failed {
                    return tag("ROLLBACK");
                }
                block.txn.write().await.commit().await?;
                self.run_after(block.after).await;
                tag("COMMIT")
            }
            TxnOp::Rollback => {
                if let Some(b) = self.block.take() {
                    b.txn.write().await.discard();
                }
                tag("ROLLBACK")
            }
            TxnOp::Savepoint(name) => {
                let Some(b) = self.block.as_mut() else {
                    return Err(no_block("SAVEPOINT"));
                };
                b.savepoint(name).await;
                tag("SAVEPOINT")
            }
            TxnOp::Release(name) => {
                let Some(b) = self.block.as_mut() else {
                    return Err(no_block("RELEASE SAVEPOINT"));
                };
                b.release(&name)?;
                tag("RELEASE")
            }
            TxnOp::RollbackTo(name) => {
                let Some(b) = self.block.as_mut() else {
                    return Err(no_block("ROLLBACK TO SAVEPOINT"));
                };
                b.rollback_to(&name).await?;
                tag("ROLLBACK")
            }
            TxnOp::SetTransaction { modes, session } => self.set_transaction(&modes, session).await,
        }
    }

    async fn set_transaction(
        &mut self,
        modes: &[ast::TransactionMode],
        session: bool,
    ) -> SqlResult<ExecResult> {
        if session {
            let (iso, _) = txn_block::apply_modes(modes, self.default_isolation, false);
            self.default_isolation = iso;
            self.vars.insert(
                "default_transaction_isolation".into(),
                txn_block::isolation_name(iso).into(),
            );
            return Ok(ExecResult::Command("SET".into()));
        }
        // Outside a block PostgreSQL only warns; the setting has no effect.
        if let Some(b) = self.block.as_mut() {
            let mut txn = b.txn.write().await;
            let (iso, ro) = txn_block::apply_modes(modes, txn.isolation(), b.read_only);
            if iso != txn.isolation() && b.statements > 0 {
                return Err(SqlError::new(
                    code::ACTIVE_SQL_TRANSACTION,
                    "SET TRANSACTION ISOLATION LEVEL must be called before any query",
                ));
            }
            txn.set_isolation(iso);
            b.read_only = ro;
        }
        Ok(ExecResult::Command("SET".into()))
    }

    async fn copy(&mut self, stmt: &DFStatement) -> SqlResult<ExecResult> {
        let DFStatement::Statement(s) = stmt else {
            return Err(SqlError::internal("not a COPY statement"));
        };
        let SqlStatement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            values,
        } = s.as_ref()
        else {
            return Err(SqlError::internal("not a COPY statement"));
        };
        let opts = CopyOptions::parse(options, legacy_options)?;
        match (to, target) {
            (false, ast::CopyTarget::Stdin) if values.is_empty() => {
                self.copy_from(source, opts).await
            }
            (true, ast::CopyTarget::Stdout) => self.copy_to(source, opts).await,
            _ => Err(SqlError::unsupported(
                "COPY to or from a file or program (use STDIN / STDOUT)",
            )),
        }
    }

    async fn copy_from(
        &mut self,
        source: &ast::CopySource,
        opts: CopyOptions,
    ) -> SqlResult<ExecResult> {
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(SqlError::syntax("COPY FROM needs a table"));
        };
        let (txn, autocommit) = match &self.block {
            Some(b) if b.read_only => {
                return Err(SqlError::new(
                    code::READ_ONLY_SQL_TRANSACTION,
                    "cannot execute COPY FROM in a read-only transaction",
                ))
            }
            Some(b) => (b.txn.clone(), false),
            None => {
                let mut t = self.engine.kv.begin();
                t.set_isolation(self.default_isolation);
                (Arc::new(RwLock::new(t)), true)
            }
        };
        let snapshot = Arc::new(CatalogSnapshot::load(&*txn.read().await, &self.database).await?);
        let (schema, name) = ddl::table_name(table_name, &self.database)?;
        let desc = snapshot.table(&schema, &name).cloned().ok_or_else(|| {
            SqlError::new(
                code::UNDEFINED_TABLE,
                format!("relation \"{table_name}\" does not exist"),
            )
        })?;
        let targets = if columns.is_empty() {
            let mut v = desc.visible_columns(false);
            v.retain(|&i| desc.columns[i].generated.is_none());
            v
        } else {
            columns
                .iter()
                .map(|c| {
                    let n = ddl::ident(c);
                    desc.columns
                        .iter()
                        .position(|x| x.name == n && !x.hidden)
                        .ok_or_else(|| {
                            SqlError::new(
                                code::UNDEFINED_COLUMN,
                                format!("column \"{n}\" of relation \"{name}\" does not exist"),
                            )
                        })
                })
                .collect::<SqlResult<Vec<_>>>()?
        };
        if let Some(&i) = targets
            .iter()
            .find(|&&i| desc.columns[i].generated.is_some())
        {
            return Err(SqlError::new(
                code::INVALID_COLUMN_REFERENCE,
                format!("column \"{}\" is a generated column", desc.columns[i].name),
            )
            .with_detail("Generated columns cannot be used in COPY."));
        }
        let kv = self.engine.kv.clone();
        let checks = crate::check::Checks::compile(&self.base, &desc)?;
        let mut per_row = Vec::new();
        let needs: Vec<usize> = (0..desc.columns.len())
            .filter(|i| desc.columns[*i].default_expr.is_some() && !targets.contains(i))
            .collect();
        if !needs.is_empty() {
            // Sequence functions bound to this transaction's catalog.
            let (state, _) = self.state_for(txn.clone(), false, false, None).await?;
            let empty = datafusion::common::DFSchema::empty();
            for i in needs {
                let c = &desc.columns[i];
                let sql = c.default_expr.as_deref().unwrap_or("NULL");
                let e = crate::stmt::compile_default(&state, sql, &c.ty)?;
                // now() and friends are folded to the transaction's start time.
                let simplify = datafusion::logical_expr::simplify::SimplifyContext::builder()
                    .with_query_execution_start_time(
                        state.execution_props().query_execution_start_time,
                    )
                    .build();
                let e = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(simplify)
                    .simplify(e)
                    .map_err(from_datafusion)?;
                let phys = state
                    .create_physical_expr(e, &empty)
                    .map_err(from_datafusion)?;
                per_row.push((i, phys));
            }
        }
        let copy = CopyIn::new(
            desc,
            checks,
            targets,
            opts,
            txn,
            autocommit,
            Box::new(move || kv.unique_id()),
        )?
        .with_per_row_defaults(per_row)
        .with_foreign_keys(snapshot);
        let columns = copy.columns();
        self.copy_in = Some(copy);
        self.copy_error = None;
        Ok(ExecResult::CopyIn { columns })
    }

    async fn copy_to(
        &mut self,
        source: &ast::CopySource,
        options: CopyOptions,
    ) -> SqlResult<ExecResult> {
        let sql = match source {
            ast::CopySource::Query(q) => q.to_string(),
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let cols = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("SELECT {cols} FROM {table_name}")
            }
        };
        let stmt = parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty COPY query"))?;
        let res = if self.block.is_some() {
            self.execute_in_block(&stmt, &READ, None).await?
        } else {
            self.execute_autocommit(&stmt, &READ, None).await?
        };
        match res {
            ExecResult::Rows { schema, batches } => Ok(ExecResult::CopyOut {
                schema,
                batches,
                options,
            }),
            _ => Err(SqlError::internal("COPY query returned no rows")),
        }
    }

    /// COPY FROM STDIN: one chunk of the client's data. Errors are kept and reported when the
    /// client ends the copy (as PostgreSQL does, the rest of the data is then ignored).
    pub async fn copy_data(&mut self, data: &[u8]) {
        if self.copy_error.is_some() {
            return;
        }
        let Some(copy) = self.copy_in.as_mut() else {
            return;
        };
        if let Err(e) = copy.data(data).await {
            self.copy_error = Some(e);
        }
    }

    /// COPY FROM STDIN ended (CopyDone): buffers the rest, commits unless in a block, and
    /// returns the number of rows copied.
    pub async fn copy_done(&mut self) -> SqlResult<u64> {
        let res = self.copy_finish().await;
        if res.is_err() {
            self.abort_statement();
        }
        res
    }

    async fn copy_finish(&mut self) -> SqlResult<u64> {
        let Some(mut copy) = self.copy_in.take() else {
            return Err(SqlError::new(
                code::PROTOCOL_VIOLATION,
                "no COPY in progress",
            ));
        };
        if let Some(e) = self.copy_error.take() {
            // In a block the block fails (the caller marks it); its writes, reads and row
            // locks stay until ROLLBACK, so ROLLBACK TO a savepoint keeps them protected.
            if copy.autocommit {
                copy.txn.write().await.discard();
            }
            return Err(e);
        }
        let n = copy.finish().await?;
        if copy.autocommit {
            copy.txn.write().await.commit().await?;
        } else if self.block.as_ref().is_some_and(|b| b.implicit) {
            self.transaction(TxnOp::Commit).await?;
        }
        Ok(n)
    }

    /// The client aborted the COPY (CopyFail).
    pub async fn copy_fail(&mut self) {
        if let Some(copy) = self.copy_in.take() {
            if copy.autocommit {
                copy.txn.write().await.discard();
            }
        }
        self.copy_error = None;
        self.abort_statement();
    }

    /// After a failed statement: an implicit block is rolled back, an explicit one fails.
    fn abort_statement(&mut self) {
        if self.block.as_ref().is_some_and(|b| b.implicit) {
            self.block = None;
        } else {
            self.fail_block();
        }
    }

    async fn run_after(&self, after: Vec<AfterCommit>) {
        for a in after {
            match a {
                AfterCommit::ClearSpan(s, e) => {
                    if let Err(err) = self.engine.kv.clear_span(&s, &e).await {
                        tracing::warn!("clearing a dropped table's data failed: {err}");
                    }
                }
                AfterCommit::ForgetSequence(uid) => self.engine.sequences.forget(uid),
            }
        }
    }

    async fn execute_autocommit(
        &mut self,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let retries = self.engine.limits.autocommit_retries_max;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut after = Vec::new();
            let res = self
                .execute_once(stmt, kind, params.clone(), &mut after)
                .await;
            match res {
                Err(e) if e.is_retryable() && attempt <= retries => {
                    tokio::time::sleep(std::time::Duration::from_millis(attempt as u64)).await;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(r) => {
                    self.run_after(after).await;
                    return Ok(r);
                }
            }
        }
    }

    async fn execute_once(
        &mut self,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<ExecResult> {
        let mut txn = self.engine.kv.begin();
        txn.set_isolation(self.default_isolation);
        let txn = Arc::new(RwLock::new(txn));
        let r = self
            .run_statement(txn.clone(), stmt, kind, params, after)
            .await?;
        txn.write().await.commit().await?;
        Ok(r)
    }

    /// Runs one statement in `txn` without committing. A statement that waited for another
    /// transaction's row lock is re-run on a refreshed snapshot (if nothing read before it
    /// changed), up to `statement_restarts_max` times.
    async fn run_statement(
        &self,
        txn: Arc<RwLock<Txn>>,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<ExecResult> {
        let mut restarts = 0;
        let timeout_ms = self.statement_timeout_ms();
        // Only UPDATE/DELETE can ask for a restart; reads skip the mark (a copy of the read set).
        let restartable = kind.writes();
        loop {
            let mark = match restartable {
                true => Some(txn.read().await.statement_mark()),
                false => None,
            };
            let run = self.run_statement_once(txn.clone(), stmt, kind, params.clone(), after);
            // Only queries and DML are cancelled: DDL may be splitting ranges, which must not
            // stop half-way.
            let cancellable = matches!(kind, Kind::DataFusion { .. });
            let res = match timeout_ms {
                ms if ms == 0 || !cancellable => run.await,
                ms => tokio::time::timeout(std::time::Duration::from_millis(ms), run)
                    .await
                    .unwrap_or_else(|_| {
                        Err(SqlError::new(
                            code::QUERY_CANCELED,
                            "canceling statement due to statement timeout",
                        ))
                    }),
            };
            match res {
                Err(e)
                    if e.restart_statement
                        && restarts < self.engine.limits.statement_restarts_max =>
                {
                    let Some(mark) = &mark else { return Err(e) };
                    // A statement that already wrote (a data-modifying CTE, a foreign-key
                    // action after the main write) cannot re-run: the transaction retries.
                    if txn.read().await.wrote_since(mark) {
                        return Err(e);
                    }
                    restarts += 1;
                    txn.write().await.refresh(mark).await?;
                }
                other => return other,
            }
        }
    }

    /// The rows of a `… RETURNING` statement, from what its write path captured.
    async fn returned(
        &self,
        state: &SessionState,
        ctx: &StmtCtx,
        txn: &Arc<RwLock<Txn>>,
        r: crate::returning::Returning,
    ) -> SqlResult<ExecResult> {
        let snapshot = CatalogSnapshot::load(&*txn.read().await, &self.database).await?;
        let (schema, name) = ddl::table_name(&r.table, &self.database)?;
        let desc = snapshot
            .table(&schema, &name)
            .cloned()
            .ok_or_else(|| SqlError::internal("RETURNING target vanished"))?;
        let rows = ctx
            .returning
            .as_ref()
            .and_then(|m| m.lock().ok().map(|mut v| std::mem::take(&mut *v)))
            .unwrap_or_default();
        let (schema, batches) = r.evaluate(state, &desc, &rows).await?;
        Ok(ExecResult::Returned {
            schema,
            batches,
            verb: r.verb,
        })
    }

    /// `CREATE TABLE t [(cols)] AS query`: a table with the query's column
    /// names and types, then (with data) `INSERT INTO t query`, in the statement's transaction.
    async fn create_table_as(
        &self,
        txn: Arc<RwLock<Txn>>,
        ct: &ast::CreateTable,
        query: &ast::Query,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<ExecResult> {
        let (state, ctx) = self.state_for(txn.clone(), false, false, None).await?;
        let q = with_views(
            pg_rewrite(&DFStatement::Statement(Box::new(SqlStatement::Query(
                Box::new(query.clone()),
            )))),
            &ctx.views,
            &self.database,
        )?;
        let plan = state
            .statement_to_plan(q.clone())
            .await
            .map_err(from_datafusion)?;
        let fields = plan.schema().fields().clone();
        if !ct.columns.is_empty() && ct.columns.len() > fields.len() {
            return Err(SqlError::syntax(
                "CREATE TABLE AS specifies too many column names",
            ));
        }
        let mut defs = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let name = match ct.columns.get(i) {
                Some(c) => ddl::ident(&c.name),
                None => f.name().clone(),
            };
            let ty = SqlType::from_arrow(f.data_type()).ok_or_else(|| {
                SqlError::unsupported(format!(
                    "CREATE TABLE AS with a column of type {}",
                    f.data_type()
                ))
            })?;
            defs.push(format!(
                "{} {}",
                ast::Ident::with_quote('"', name),
                ty.pg_name()
            ));
        }
        let create = format!(
            "CREATE TABLE {}{} ({})",
            if ct.if_not_exists {
                "IF NOT EXISTS "
            } else {
                ""
            },
            ct.name,
            defs.join(", ")
        );
        let create = parse(&create)?
            .pop()
            .ok_or_else(|| SqlError::internal("CREATE TABLE AS: no statement"))?;
        {
            let mut t = txn.write().await;
            self.run_ddl(&mut t, &create, after).await?;
        }
        let insert = format!("INSERT INTO {} {}", ct.name, query);
        let insert = parse(&insert)?
            .pop()
            .ok_or_else(|| SqlError::internal("CREATE TABLE AS: no insert"))?;
        let kind = Kind::DataFusion {
            expose_hidden: false,
            writes: true,
        };
        match Box::pin(self.run_statement_once(txn, &insert, &kind, None, after)).await? {
            ExecResult::Command(tag) => Ok(ExecResult::Command(tag.replace("INSERT 0", "SELECT"))),
            other => Ok(other),
        }
    }

    async fn run_statement_once(
        &self,
        txn: Arc<RwLock<Txn>>,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<ExecResult> {
        match kind {
            Kind::DataFusion { .. } => {
                if let Some(res) = self.point_statement(&txn, stmt, &params).await? {
                    return Ok(res);
                }
                let (stmt, ctes) = self.modifying_ctes(&txn, stmt, &params, after).await?;
                let Kind::DataFusion { expose_hidden, .. } = classify(&stmt)? else {
                    return Err(SqlError::internal("a CTE's main statement is not a query"));
                };
                let stmt = pg_rewrite(&stmt);
                let (stmt, returning) = crate::returning::split(&stmt)?;
                let (stmt, mut on_conflict) = crate::upsert::split(stmt)?;
                if let Some(c) = on_conflict.as_mut() {
                    c.params = params.clone().unwrap_or_default();
                }
                let (state, ctx) = self
                    .state_for(txn.clone(), expose_hidden, returning.is_some(), on_conflict)
                    .await?;
                if let Ok(mut m) = ctx.cte_results.lock() {
                    *m = ctes;
                }
                let stmt = with_views(stmt, &ctx.views, &self.database)?;
                crate::upsert::check_update_identity(&stmt, &state, &self.database).await?;
                let stmt = crate::upsert::rewrite_update(stmt, &state, &self.database).await?;
                let stmt =
                    crate::upsert::rewrite_insert(stmt, &state, &ctx, &self.database).await?;
                if let Some(r) = &returning {
                    // Plans the RETURNING list first: a bad column fails before any write.
                    returning_schema(&state, r).await?;
                }
                let res = self.run_datafusion(&state, &ctx, &stmt, params).await?;
                ctx.enforce_foreign_keys(&state).await?;
                match returning {
                    None => Ok(res),
                    Some(r) => self.returned(&state, &ctx, &txn, r).await,
                }
            }
            Kind::Ddl => {
                if params.as_ref().is_some_and(|p| !p.is_empty()) {
                    return Err(SqlError::syntax("DDL statements take no parameters"));
                }
                if let DFStatement::Statement(s) = stmt {
                    if let SqlStatement::CreateTable(ct) = s.as_ref() {
                        if let Some(q) = &ct.query {
                            return self.create_table_as(txn, ct, q, after).await;
                        }
                    }
                }
                let mut txn = txn.write().await;
                let tag = self.run_ddl(&mut txn, stmt, after).await?;
                Ok(ExecResult::Command(tag))
            }
            _ => Err(SqlError::internal("statement kind has no execution path")),
        }
    }

    /// A primary-key point read or single-row write answered without DataFusion
    /// (`point.rs`, `point_write.rs`), if `stmt` is one.
    async fn point_statement(
        &self,
        txn: &Arc<RwLock<Txn>>,
        stmt: &DFStatement,
        params: &Option<Vec<ScalarValue>>,
    ) -> SqlResult<Option<ExecResult>> {
        let Some(params) = params else {
            return Ok(None);
        };
        // The general path resolves names in `public` today whatever search_path says; the
        // point path stays off for any other setting so it cannot diverge once that changes.
        if self.var("search_path") != Some("public") {
            return Ok(None);
        }
        let Some(shape) = self.point_shape(stmt) else {
            return Ok(None);
        };
        let w = match shape.as_ref() {
            PointShape::Read(p) => {
                let txn = txn.read().await;
                let res = crate::point::execute(p, &txn, &self.database, params).await?;
                return Ok(res.map(|(schema, batch)| ExecResult::Rows {
                    schema,
                    batches: vec![batch],
                }));
            }
            PointShape::Write(w) => w,
        };
        // CURRENT_TIMESTAMP as `state_for` gives it to DataFusion: the block's start, or now.
        let now = self
            .block
            .as_ref()
            .map(|b| b.started_at)
            .unwrap_or_else(chrono::Utc::now);
        let env = crate::point_write::WriteEnv {
            db_name: &self.database,
            params,
            kv: &self.engine.kv,
            now_us: now.timestamp_micros(),
            seqs: &self.engine.sequences,
            session_seqs: &self.seq_session,
        };
        let mut txn = txn.write().await;
        let n = crate::point_write::execute(w, &mut txn, &env).await?;
        Ok(n.map(|n| match w {
            crate::point_write::PointWrite::Update(_) => ExecResult::Command(format!("UPDATE {n}")),
            crate::point_write::PointWrite::Insert(_) => {
                ExecResult::Command(format!("INSERT 0 {n}"))
            }
            crate::point_write::PointWrite::Delete(_) => ExecResult::Command(format!("DELETE {n}")),
        }))
    }

    /// What the point paths make of `stmt`, recognised once per prepared statement: the
    /// recognisers print the statement to compare it with its canonical shape, which cost
    /// more than executing a point read.
    fn point_shape(&self, stmt: &DFStatement) -> Option<Arc<PointShape>> {
        let addr = stmt as *const DFStatement as usize;
        if let Some((seen, shape)) = self.point_shapes.lock().get(&addr) {
            if seen == stmt {
                return Some(shape.clone());
            }
        }
        let shape = match crate::point::recognize(stmt) {
            Some(p) => PointShape::Read(p),
            None => PointShape::Write(crate::point_write::recognize(stmt)?),
        };
        let shape = Arc::new(shape);
        let mut shapes = self.point_shapes.lock();
        if shapes.len() >= POINT_SHAPES_MAX {
            shapes.clear();
        }
        shapes.insert(addr, (stmt.clone(), shape.clone()));
        Some(shape)
    }

    /// The parameters (`$n` → type) and the result columns of one planned statement.
    async fn describe(
        &self,
        state: &SessionState,
        ctx: &Arc<StmtCtx>,
        stmt: &DFStatement,
    ) -> SqlResult<(Vec<(usize, Option<FieldRef>)>, Option<SchemaRef>)> {
        let (planned, returning) = crate::returning::split(&pg_rewrite(stmt))?;
        let (planned, _) = crate::upsert::split(planned)?;
        let planned = with_views(planned, &ctx.views, &self.database)?;
        let planned = crate::upsert::rewrite_insert(planned, state, ctx, &self.database).await?;
        let join_dml = self.join_dml_plan(state, &planned).await?;
        let writes_only = join_dml.is_some();
        let plan = match join_dml {
            Some(p) => p,
            None => state
                .statement_to_plan(planned)
                .await
                .map_err(from_datafusion)?,
        };
        let types = plan.get_parameter_fields().map_err(from_datafusion)?;
        let ordered: Vec<(usize, Option<FieldRef>)> = types
            .into_iter()
            .filter_map(|(k, v)| {
                k.trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .map(|i| (i, v))
            })
            .collect();
        let schema = match (&plan, returning) {
            (_, Some(r)) => Some(returning_schema(state, &r).await?),
            _ if writes_only => None,
            (LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_), _) => None,
            (p, None) => Some(output_schema(state, p, &[])?),
        };
        Ok((ordered, schema))
    }

    /// `WITH x AS (INSERT | UPDATE | DELETE … RETURNING …) <main statement>`: each
    /// data-modifying CTE runs first, in order, as a statement of its own in the transaction;
    /// its RETURNING rows become a table the main statement reads under the CTE's name.
    /// Unlike PostgreSQL, whose parts all read one snapshot, the main statement sees the
    /// CTEs' changes. Other statements come back unchanged.
    async fn modifying_ctes(
        &self,
        txn: &Arc<RwLock<Txn>>,
        stmt: &DFStatement,
        params: &Option<Vec<ScalarValue>>,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<(DFStatement, HashMap<String, Arc<dyn TableProvider>>)> {
        let mut tables: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
        let Some((parts, main)) = crate::query_rewrite::split_modifying_ctes(stmt)? else {
            return Ok((stmt.clone(), tables));
        };
        for (name, columns, part) in parts {
            let part = DFStatement::Statement(Box::new(part));
            let kind = classify(&part)?;
            let res =
                Box::pin(self.run_statement_once(txn.clone(), &part, &kind, params.clone(), after))
                    .await?;
            if let ExecResult::Returned {
                schema, batches, ..
            } = res
            {
                tables.insert(name, cte_table(schema, batches, &columns)?);
            }
        }
        Ok((main, tables))
    }

    async fn state_for(
        &self,
        txn: Arc<RwLock<Txn>>,
        expose_hidden: bool,
        capture: bool,
        on_conflict: Option<crate::upsert::OnConflictClause>,
    ) -> SqlResult<(SessionState, Arc<StmtCtx>)> {
        let snapshot = Arc::new(CatalogSnapshot::load(&*txn.read().await, &self.database).await?);
        let ctx = Arc::new(StmtCtx {
            kv: self.engine.kv.clone(),
            txn,
            expose_hidden,
            limits: self.engine.limits.clone(),
            column_cache: self.engine.column_cache.clone(),
            returning: capture.then(|| std::sync::Mutex::new(Vec::new())),
            on_conflict,
            defaults: std::sync::OnceLock::new(),
            views: snapshot.views.clone(),
            fk: crate::fk::FkLog::new(&snapshot),
            catalog: snapshot.clone(),
            cte_results: Default::default(),
        });
        let info = Arc::new(crate::pg_catalog::CatalogInfo::new(
            snapshot.clone(),
            &self.database,
            &self.user,
            crate::pg_catalog::settings_of(&self.vars),
        ));
        let list = Arc::new(KCatalogList::new(
            &self.database,
            &snapshot,
            ctx.clone(),
            info.clone(),
        ));
        // A clone of the session's state with this statement's catalogs. (Not
        // `SessionStateBuilder::new_from_existing`: its build re-registers every function,
        // which cost more than planning a point query.)
        let mut state = self.base.clone();
        state.register_catalog_list(list);
        for udf in crate::pg_functions::catalog_udfs(info) {
            state.register_udf(udf).map_err(from_datafusion)?;
        }
        let funcs = crate::sequence::SeqFunctions {
            seqs: self.engine.sequences.clone(),
            map: snapshot.sequences.clone(),
            session: self.seq_session.clone(),
        };
        for udf in funcs.udfs() {
            state.register_udf(udf).map_err(from_datafusion)?;
        }
        // now() / CURRENT_TIMESTAMP: the start of the transaction, as in PostgreSQL.
        state.mark_start_execution();
        if let Some(b) = &self.block {
            state.execution_props_mut().query_execution_start_time = Some(b.started_at);
        }
        Ok((state, ctx))
    }

    async fn run_datafusion(
        &self,
        state: &SessionState,
        ctx: &Arc<StmtCtx>,
        stmt: &DFStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let stmt = &limits_evaluated(state, stmt).await?;
        let stmt = &set_operands_named(state, stmt).await?;
        if let DFStatement::Statement(s) = stmt {
            crate::pgcompat::check_recursive_ctes(s)?;
            crate::query_rewrite::check_limits(s)?;
        }
        if let Some(res) = self.join_dml(state, ctx, stmt, &params).await? {
            return Ok(res);
        }
        let mut plan = state
            .statement_to_plan(stmt.clone())
            .await
            .map_err(from_datafusion)?;
        if let Some(p) = params {
            plan = plan.with_param_values(p).map_err(from_datafusion)?;
        }
        match &plan {
            LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Update | WriteOp::Delete) => {
                let n = crate::dml::execute(state, d, ctx).await?;
                let verb = if d.op == WriteOp::Update {
                    "UPDATE"
                } else {
                    "DELETE"
                };
                Ok(ExecResult::Command(format!("{verb} {n}")))
            }
            LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)) => {
                let batches = self.collect(state, &plan).await?;
                let n = batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<UInt64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0);
                Ok(ExecResult::Command(format!("INSERT 0 {n}")))
            }
            LogicalPlan::Dml(d) => Err(SqlError::unsupported(format!("{} statements", d.op))),
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Copy(_) => Err(
                SqlError::unsupported(format!("statement {}", plan.display())),
            ),
            _ => {
                let batches = self.collect(state, &plan).await?;
                Ok(ExecResult::Rows {
                    schema: output_schema(state, &plan, &batches)?,
                    batches,
                })
            }
        }
    }

    /// The query behind an UPDATE … FROM / DELETE … USING (parameter types at PREPARE).
    async fn join_dml_plan(
        &self,
        state: &SessionState,
        stmt: &DFStatement,
    ) -> SqlResult<Option<LogicalPlan>> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(None);
        };
        let relation = match s.as_ref() {
            SqlStatement::Update(u) if u.from.is_some() => &u.table.relation,
            SqlStatement::Delete(d) if d.using.is_some() => match &d.from {
                ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => {
                    match t.first() {
                        Some(t) => &t.relation,
                        None => return Ok(None),
                    }
                }
            },
            _ => return Ok(None),
        };
        let ast::TableFactor::Table { name, .. } = relation else {
            return Ok(None);
        };
        match crate::upsert::target_table(state, &self.database, name).await? {
            Some(desc) => crate::dml::join_dml_plan(state, &desc, s).await,
            None => Ok(None),
        }
    }

    /// UPDATE … FROM and DELETE … USING, which Kestrel plans itself ([`crate::dml`]).
    async fn join_dml(
        &self,
        state: &SessionState,
        ctx: &Arc<StmtCtx>,
        stmt: &DFStatement,
        params: &Option<Vec<ScalarValue>>,
    ) -> SqlResult<Option<ExecResult>> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(None);
        };
        let (relation, verb) = match s.as_ref() {
            SqlStatement::Update(u) if u.from.is_some() => (&u.table.relation, "UPDATE"),
            SqlStatement::Delete(d) if d.using.is_some() => {
                let tables = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                match tables.first() {
                    Some(t) => (&t.relation, "DELETE"),
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let ast::TableFactor::Table { name, .. } = relation else {
            return Err(SqlError::unsupported(format!("{verb} of this target")));
        };
        let desc = crate::upsert::target_table(state, &self.database, name)
            .await?
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                )
            })?;
        let n = match s.as_ref() {
            SqlStatement::Update(u) => {
                crate::dml::update_from(state, ctx, &desc, u, params.clone()).await?
            }
            SqlStatement::Delete(d) => {
                crate::dml::delete_using(state, ctx, &desc, d, params.clone()).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(ExecResult::Command(format!("{verb} {n}"))))
    }

    async fn collect(
        &self,
        state: &SessionState,
        plan: &LogicalPlan,
    ) -> SqlResult<Vec<RecordBatch>> {
        crate::exec::collect(state, plan, &self.engine.limits, None).await
    }

    async fn run_ddl(
        &self,
        txn: &mut Txn,
        stmt: &DFStatement,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<String> {
        let snapshot = CatalogSnapshot::load(txn, &self.database).await?;
        let eval = |e: &ast::Expr, ty: &SqlType| self.eval_constant(e.clone(), ty.clone()).boxed();
        let ddl = DdlCtx {
            kv: &self.engine.kv,
            state: &self.base,
            db: &self.database,
            snapshot: &snapshot,
            eval: &eval,
            sequences: &self.engine.sequences,
        };
        let DFStatement::Statement(s) = stmt else {
            return Err(SqlError::internal("not a DDL statement"));
        };
        let database_ddl = matches!(
            s.as_ref(),
            SqlStatement::CreateDatabase { .. }
                | SqlStatement::Drop {
                    object_type: ObjectType::Database,
                    ..
                }
        );
        if database_ddl && self.block.as_ref().is_some_and(|b| !b.implicit) {
            let what = if matches!(s.as_ref(), SqlStatement::CreateDatabase { .. }) {
                "CREATE DATABASE"
            } else {
                "DROP DATABASE"
            };
            return Err(SqlError::new(
                code::ACTIVE_SQL_TRANSACTION,
                format!("{what} cannot run inside a transaction block"),
            ));
        }
        match s.as_ref() {
            SqlStatement::CreateTable(ct) => ddl::create_table(&ddl, txn, ct).await,
            SqlStatement::Drop {
                object_type: ObjectType::Index,
                names,
                if_exists,
                ..
            } => ddl::drop_index(&ddl, txn, names, *if_exists, after),
            SqlStatement::Drop {
                object_type: ObjectType::Table,
                names,
                if_exists,
                cascade,
                ..
            } => ddl::drop_table(&ddl, txn, names, *if_exists, *cascade, after).await,
            SqlStatement::CreateIndex(ci) => ddl::create_index(&ddl, txn, ci).await,
            SqlStatement::CreateView(cv) => ddl::create_view(&ddl, txn, cv),
            SqlStatement::CreateDomain(cd) => ddl::create_domain(&ddl, txn, cd),
            SqlStatement::DropDomain(dd) => ddl::drop_domain(&ddl, txn, dd),
            SqlStatement::Comment {
                object_type,
                object_name,
                comment,
                ..
            } => ddl::comment_on(&ddl, txn, object_type, object_name, comment.as_deref()),
            SqlStatement::Drop {
                object_type: ObjectType::View,
                names,
                if_exists,
                cascade,
                ..
            } => ddl::drop_view(&ddl, txn, names, *if_exists, *cascade),
            SqlStatement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => ddl::create_schema(&ddl, txn, schema_name, *if_not_exists),
            SqlStatement::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => ddl::create_database(txn, db_name, *if_not_exists).await,
            SqlStatement::Drop {
                object_type: ObjectType::Schema,
                names,
                if_exists,
                cascade,
                ..
            } => ddl::drop_schema(&ddl, txn, names, *if_exists, *cascade, after).await,
            SqlStatement::Drop {
                object_type: ObjectType::Database,
                names,
                if_exists,
                ..
            } => ddl::drop_database(&ddl, txn, names, *if_exists, after).await,
            SqlStatement::CreateSequence { name, .. }
                if crate::alter_sequence::carried(name).is_some() =>
            {
                match crate::alter_sequence::carried(name) {
                    Some(Ok(alter)) => {
                        crate::alter_sequence::execute(&ddl, txn, &alter, after).await
                    }
                    Some(Err(e)) => Err(e),
                    None => Err(SqlError::internal("ALTER SEQUENCE carrier vanished")),
                }
            }
            SqlStatement::CreateSequence {
                temporary: false,
                if_not_exists,
                name,
                data_type,
                sequence_options,
                owned_by,
            } => {
                ddl::create_sequence(
                    &ddl,
                    txn,
                    name,
                    *if_not_exists,
                    data_type,
                    sequence_options,
                    owned_by,
                )
                .await
            }
            SqlStatement::Drop {
                object_type: ObjectType::Sequence,
                names,
                if_exists,
                ..
            } => ddl::drop_sequence(&ddl, txn, names, *if_exists),
            SqlStatement::Truncate(t) => crate::alter::truncate(&ddl, txn, t, after).await,
            SqlStatement::AlterTable(at) => crate::alter::alter_table(&ddl, txn, at, after).await,
            _ => Err(SqlError::internal("DDL statement mismatch")),
        }
    }

    /// Evaluates a constant expression (no tables) to a value of `ty`.
    async fn eval_constant(&self, e: ast::Expr, ty: SqlType) -> SqlResult<Datum> {
        let sql = format!("SELECT CAST({e} AS {})", cast_name(&ty));
        let stmt = parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty constant"))?;
        let plan = self
            .base
            .statement_to_plan(stmt)
            .await
            .map_err(from_datafusion)?;
        let batches = self.collect(&self.base, &plan).await?;
        let col = batches
            .first()
            .map(|b| b.column(0).clone())
            .ok_or_else(|| SqlError::internal("no constant"))?;
        let mut d = datums_from_array(&ty, &col)?;
        Ok(d.pop().unwrap_or(Datum::Null))
    }

    async fn set(&mut self, stmt: &DFStatement) -> SqlResult<ExecResult> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(ExecResult::Command("RESET".into()));
        };
        match s.as_ref() {
            SqlStatement::Set(ast::Set::SingleAssignment {
                variable, values, ..
            }) => {
                let name = variable.to_string().to_lowercase();
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return self.set_var(name, value).await;
            }
            SqlStatement::Set(ast::Set::SetTimeZone { value, .. }) => {
                self.vars.insert(
                    "timezone".into(),
                    value.to_string().trim_matches('\'').to_string(),
                );
            }
            SqlStatement::Set(_) => {}
            _ => return Err(SqlError::internal("not a SET statement")),
        }
        Ok(ExecResult::Command("SET".into()))
    }

    async fn set_var(&mut self, name: String, value: String) -> SqlResult<ExecResult> {
        match name.as_str() {
            "default_transaction_isolation" => {
                let iso = txn_block::parse_isolation(&value)?;
                self.default_isolation = iso;
                self.vars
                    .insert(name, txn_block::isolation_name(iso).into());
            }
            "transaction_isolation" => {
                let iso = txn_block::parse_isolation(&value)?;
                let level = match iso {
                    Isolation::Serializable => ast::TransactionIsolationLevel::Serializable,
                    Isolation::Snapshot => ast::TransactionIsolationLevel::RepeatableRead,
                };
                let modes = [ast::TransactionMode::IsolationLevel(level)];
                return self.set_transaction(&modes, false).await;
            }
            _ => {
                self.vars.insert(name, value);
            }
        }
        Ok(ExecResult::Command("SET".into()))
    }

    /// The value `SHOW name` reports.
    async fn var_value(&self, name: &str) -> Option<String> {
        match name {
            "transaction_isolation" => {
                let iso = match &self.block {
                    Some(b) => b.txn.read().await.isolation(),
                    None => self.default_isolation,
                };
                Some(txn_block::isolation_name(iso).into())
            }
            "transaction_read_only" => {
                let ro = self.block.as_ref().is_some_and(|b| b.read_only);
                Some(if ro { "on" } else { "off" }.into())
            }
            _ => self.vars.get(name).cloned(),
        }
    }

    async fn show(&self, stmt: &DFStatement) -> SqlResult<ExecResult> {
        let name = show_name(stmt);
        let Some(v) = self.var_value(&name).await else {
            return Err(SqlError::new(
                code::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        };
        let schema = show_schema(&name);
        let arr = Arc::new(datafusion::arrow::array::StringArray::from(vec![v]));
        let batch = RecordBatch::try_new(schema.clone(), vec![arr])
            .map_err(|e| SqlError::internal(e.to_string()))?;
        Ok(ExecResult::Rows {
            schema,
            batches: vec![batch],
        })
    }

    /// `statement_timeout` in milliseconds (0 = none); PostgreSQL's units are accepted.
    fn statement_timeout_ms(&self) -> u64 {
        self.vars
            .get("statement_timeout")
            .and_then(|v| parse_duration_ms(v))
            .unwrap_or(0)
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|s| s.as_str())
    }
}

fn show_name(stmt: &DFStatement) -> String {
    let name = show_words(stmt);
    match name.as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        _ => name,
    }
}

fn show_words(stmt: &DFStatement) -> String {
    match stmt {
        DFStatement::Statement(s) => match s.as_ref() {
            SqlStatement::ShowVariable { variable } => variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// The SQL type name DataFusion's parser understands for a CAST to `ty`.
pub(crate) fn cast_name(ty: &SqlType) -> String {
    match ty {
        SqlType::Varchar(_)
        | SqlType::Char(_)
        | SqlType::Uuid
        | SqlType::Text
        | SqlType::Jsonb
        | SqlType::Json => "TEXT".into(),
        SqlType::Bytea => "BYTEA".into(),
        SqlType::TimestampTz => "TIMESTAMPTZ".into(),
        other => other.pg_name(),
    }
}

/// Parses a PostgreSQL duration setting (`500`, `'10s'`, `'2min'`, `'1h'`) into milliseconds.
fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim().trim_matches('\'').trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The columns `… RETURNING items` produces: those of `SELECT items FROM target`.
async fn returning_schema(
    state: &SessionState,
    r: &crate::returning::Returning,
) -> SqlResult<SchemaRef> {
    let items: Vec<String> = r.items.iter().map(|i| i.to_string()).collect();
    let alias = r
        .alias
        .as_ref()
        .map(|a| format!(" AS \"{a}\""))
        .unwrap_or_default();
    let sql = format!("SELECT {} FROM {}{alias}", items.join(", "), r.table);
    let stmt = parse(&sql)?
        .pop()
        .ok_or_else(|| SqlError::internal("empty RETURNING query"))?;
    let plan = state
        .statement_to_plan(stmt)
        .await
        .map_err(from_datafusion)?;
    Ok(Arc::new(plan.schema().as_arrow().clone()))
}

fn no_block(what: &str) -> SqlError {
    SqlError::new(
        code::NO_ACTIVE_SQL_TRANSACTION,
        format!("{what} can only be used in transaction blocks"),
    )
}

/// The verb PostgreSQL names in "cannot execute … in a read-only transaction".
fn statement_verb(stmt: &DFStatement) -> String {
    let text = stmt.to_string();
    let mut words = text.split_whitespace();
    match words.next().map(|w| w.to_uppercase()) {
        Some(w) if w == "CREATE" || w == "DROP" => {
            format!("{w} {}", words.next().unwrap_or("").to_uppercase())
        }
        Some(w) => w,
        None => String::new(),
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn rewritten_statements_keep_their_quotes() {
        // These only parse after a token-level rewrite; the literal must stay one literal.
        let sql = "INSERT INTO t VALUES ('x''), (''admin', E'a\\'b') \
                   ON CONFLICT (lower(n)) DO NOTHING";
        let stmts = parse(sql).expect("parses");
        assert_eq!(stmts.len(), 1);
        let text = stmts[0].to_string();
        assert!(text.contains("'x''), (''admin'"), "{text}");
        let sql =
            "SELECT \"a\"\"b\" FROM t WHERE x BETWEEN SYMMETRIC 1 AND 2 AND y = 'p'' OR 1=1 --'";
        let text = parse(sql).expect("parses")[0].to_string();
        assert!(text.contains("'p'' OR 1=1 --'"), "{text}");
        assert!(text.contains("\"a\"\"b\""), "{text}");
    }

    #[test]
    fn create_table_as_with_names_or_no_data_parses() {
        use datafusion::sql::sqlparser::tokenizer::Tokenizer;
        let text = |sql: &str| {
            let tokens = Tokenizer::new(&KestrelDialect, sql).tokenize().unwrap();
            ctas_text(&tokens)
        };
        assert_eq!(
            text("CREATE TABLE t (a, b) AS VALUES (1, 'x')").as_deref(),
            Some("CREATE TABLE t AS SELECT * FROM (VALUES ( 1 , 'x' ) ) AS kestrel_ctas(a, b)")
        );
        assert!(text("CREATE TABLE s.t AS SELECT 1 WITH NO DATA")
            .unwrap()
            .ends_with("LIMIT 0"));
        assert_eq!(text("CREATE TABLE t (a INT)"), None);
        assert_eq!(text("CREATE TABLE t AS SELECT 1"), None);
        assert_eq!(parse("CREATE TABLE t (a) AS SELECT 1").unwrap().len(), 1);
    }

    #[test]
    fn postgres_copy_and_vacuum_parse() {
        for sql in [
            "copy pgbench_accounts from stdin with (freeze on)",
            "COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true)",
            "COPY (SELECT 1) TO STDOUT",
            "vacuum analyze pgbench_tellers",
            "VACUUM",
            "BEGIN; COPY t FROM STDIN",
            "ABORT",
            "abort work",
        ] {
            let stmts = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            assert!(!stmts.is_empty(), "{sql}");
        }
        assert!(parse("SELEC 1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("250"), Some(250));
        assert_eq!(parse_duration_ms("'10s'"), Some(10_000));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("soon"), None);
    }
}
