//! Primary-key point writes without DataFusion: the UPDATE, INSERT and DELETE of an OLTP
//! transaction.
//!
//! `UPDATE t SET c = c + $1 WHERE k = $2` and `INSERT INTO t (a, b, c) VALUES ($1, $2,
//! CURRENT_TIMESTAMP)` cost a few microseconds of KV work but about two milliseconds of
//! DataFusion planning (the UPDATE is planned twice: once as DML, once as the query that finds
//! the rows). Statements of exactly these shapes are recognised on their syntax tree
//! ([`recognize`]) and executed here with the same transactional reads and writes the general
//! path would issue:
//!
//! - **UPDATE**: the row lock of the general path and one point read of the row through the
//!   statement's [`Txn`] (`Txn::get_for_update`: SERIALIZABLE validates the read; a wait for
//!   the lock or a version newer than the snapshot restarts the statement on a refreshed
//!   snapshot), then the new row. Every SET value is computed from the *old* row, as
//!   in PostgreSQL. `c ± $n` follows PostgreSQL's integer arithmetic: the result has the
//!   operands' type and overflow is 22003 (`integer out of range`).
//! - **INSERT** of one row: parameters, string literals into text columns and
//!   `CURRENT_TIMESTAMP`/`now()` (the transaction's start, as on the general path); omitted
//!   columns take their constant default, a value of their sequence when the default is
//!   exactly `nextval('…')` as SERIAL writes it (integer columns; drawn only once the row is
//!   known to take this path, and remembered for `currval`/`lastval`), or NULL; the hidden
//!   `rowid` takes a fresh unique id. The row is validated (NOT NULL, lengths), checked for a
//!   duplicate key, and written with its secondary-index entries ([`TableWriter`]).
//! - **DELETE** `FROM t WHERE k = $n`: the row lock and point read of UPDATE, then the row and
//!   its secondary-index entries are deleted. Only on a table that no foreign key references
//!   (its own included): deleting a parent row runs referential actions, which the general
//!   path owns. Telling that reads every table descriptor of the database, as the general
//!   path's catalog snapshot does (so concurrent DDL conflicts at commit).
//!
//! The path only takes statements whose meaning it fully covers. It returns `None` — and the
//! general path runs the statement and reports any error — for: another shape (RETURNING, ON
//! CONFLICT, FROM, several rows, an expression it does not know), a view or a `pg_*` name, a
//! table with CHECK constraints, generated columns or foreign keys of its own, an UPDATE of
//! the key or of an indexed column, another per-row default (`now()`, an expression around
//! `nextval`) for an omitted column, a DELETE from a table a foreign key references, and any
//! parameter whose type is not exactly the column's (DataFusion's coercions stay
//! DataFusion's). For INSERT and UPDATE a table that is only a foreign key's *parent* is
//! fine: an INSERT never breaks a reference, and an UPDATE here changes only unindexed
//! non-key columns, which no foreign key can reference (they reference a primary key or
//! unique index).

use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, BinaryOperator, Expr, FunctionArguments, SetExpr, TableObject,
};

use kestrel_kv::{Kv, Txn};

use crate::catalog::TableDesc;
use crate::datum::{datum_from_scalar, Datum};
use crate::error::{code, SqlError, SqlResult};
use crate::index::TableWriter;
use crate::point::{column_ident, fold, key_datum, key_equals_param, param_of, public_table};
use crate::point::{lone_table, resolve_table, single_key};
use crate::provider::{duplicate_key_error, validate_row};
use crate::rowcodec::{decode_row, encode_key, encode_value};
use crate::types::SqlType;

/// A recognised single-row write.
#[derive(Debug, PartialEq, Eq)]
pub enum PointWrite {
    Update(PointUpdate),
    Insert(PointInsert),
    Delete(PointDelete),
}

/// `UPDATE t SET c = <value>, … WHERE k = $n`.
#[derive(Debug, PartialEq, Eq)]
pub struct PointUpdate {
    pub table: String,
    pub sets: Vec<(String, SetValue)>,
    pub key_column: String,
    /// 0-based index of the parameter compared with the key.
    pub param: usize,
}

/// `DELETE FROM t WHERE k = $n`.
#[derive(Debug, PartialEq, Eq)]
pub struct PointDelete {
    pub table: String,
    pub key_column: String,
    /// 0-based index of the parameter compared with the key.
    pub param: usize,
}

/// The value of one SET assignment.
#[derive(Debug, PartialEq, Eq)]
pub enum SetValue {
    /// `$n`
    Param(usize),
    /// `col + $n`, `$n + col` or (`negate`) `col - $n`.
    Add {
        column: String,
        param: usize,
        negate: bool,
    },
}

/// `INSERT INTO t [(cols)] VALUES (v, …)`, one row.
#[derive(Debug, PartialEq, Eq)]
pub struct PointInsert {
    pub table: String,
    /// `None`: the table's visible columns in order.
    pub columns: Option<Vec<String>>,
    pub values: Vec<InsertValue>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InsertValue {
    /// `$n`
    Param(usize),
    /// `CURRENT_TIMESTAMP` or `now()`: the transaction's start.
    Now,
    /// A string literal (`'…'`), taken only by text columns.
    Text(String),
}

/// `stmt` if it is one of the point-write shapes.
pub fn recognize(stmt: &DFStatement) -> Option<PointWrite> {
    let DFStatement::Statement(s) = stmt else {
        return None;
    };
    let (write, canonical) = match s.as_ref() {
        ast::Statement::Update(u) => recognize_update(u)?,
        ast::Statement::Insert(i) => recognize_insert(i)?,
        ast::Statement::Delete(d) => recognize_delete(d)?,
        _ => return None,
    };
    // Nothing else may be attached (RETURNING, FROM, ON CONFLICT, a WITH …): the statement
    // must print exactly as the shape it was recognised as.
    (stmt.to_string() == canonical).then_some(write)
}

fn plain_column(id: &ast::Ident) -> Option<String> {
    column_ident(id).then(|| fold(id))
}

fn recognize_update(u: &ast::Update) -> Option<(PointWrite, String)> {
    let (name, table) = lone_table(&u.table)?;
    let mut sets = Vec::with_capacity(u.assignments.len());
    let mut shown = Vec::with_capacity(u.assignments.len());
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(target) = &a.target else {
            return None;
        };
        let [ast::ObjectNamePart::Identifier(target)] = target.0.as_slice() else {
            return None;
        };
        sets.push((plain_column(target)?, set_value(&a.value)?));
        shown.push(a.to_string());
    }
    let selection = u.selection.as_ref()?;
    let (key_column, param) = key_equals_param(selection)?;
    let canonical = format!("UPDATE {name} SET {} WHERE {selection}", shown.join(", "));
    let write = PointWrite::Update(PointUpdate {
        table,
        sets,
        key_column,
        param,
    });
    Some((write, canonical))
}

fn recognize_delete(d: &ast::Delete) -> Option<(PointWrite, String)> {
    let ast::FromTable::WithFromKeyword(from) = &d.from else {
        return None;
    };
    let [from] = from.as_slice() else {
        return None;
    };
    let (name, table) = lone_table(from)?;
    let selection = d.selection.as_ref()?;
    let (key_column, param) = key_equals_param(selection)?;
    let canonical = format!("DELETE FROM {name} WHERE {selection}");
    let write = PointWrite::Delete(PointDelete {
        table,
        key_column,
        param,
    });
    Some((write, canonical))
}

fn set_value(e: &Expr) -> Option<SetValue> {
    if let Some(p) = param_of(e) {
        return Some(SetValue::Param(p));
    }
    let Expr::BinaryOp { left, op, right } = e else {
        return None;
    };
    match (left.as_ref(), op, right.as_ref()) {
        (Expr::Identifier(c), BinaryOperator::Plus | BinaryOperator::Minus, p) => {
            Some(SetValue::Add {
                column: plain_column(c)?,
                param: param_of(p)?,
                negate: *op == BinaryOperator::Minus,
            })
        }
        (p, BinaryOperator::Plus, Expr::Identifier(c)) => Some(SetValue::Add {
            column: plain_column(c)?,
            param: param_of(p)?,
            negate: false,
        }),
        _ => None,
    }
}

fn recognize_insert(i: &ast::Insert) -> Option<(PointWrite, String)> {
    let TableObject::TableName(name) = &i.table else {
        return None;
    };
    let table = public_table(name)?;
    let mut columns = Vec::with_capacity(i.columns.len());
    for c in &i.columns {
        let [ast::ObjectNamePart::Identifier(id)] = c.0.as_slice() else {
            return None;
        };
        columns.push(plain_column(id)?);
    }
    let SetExpr::Values(v) = i.source.as_ref()?.body.as_ref() else {
        return None;
    };
    let [row] = v.rows.as_slice() else {
        return None;
    };
    let values = row.iter().map(insert_value).collect::<Option<Vec<_>>>()?;
    let shown: Vec<String> = row.iter().map(|e| e.to_string()).collect();
    let cols_shown = match i.columns.is_empty() {
        true => String::new(),
        false => {
            let names: Vec<String> = i.columns.iter().map(|c| c.to_string()).collect();
            format!(" ({})", names.join(", "))
        }
    };
    let canonical = format!(
        "INSERT INTO {name}{cols_shown} VALUES ({})",
        shown.join(", ")
    );
    let write = PointWrite::Insert(PointInsert {
        table,
        columns: (!columns.is_empty()).then_some(columns),
        values,
    });
    Some((write, canonical))
}

fn insert_value(e: &Expr) -> Option<InsertValue> {
    if let Some(p) = param_of(e) {
        return Some(InsertValue::Param(p));
    }
    if let Expr::Value(v) = e {
        return match &v.value {
            ast::Value::SingleQuotedString(s) => Some(InsertValue::Text(s.clone())),
            _ => None,
        };
    }
    let Expr::Function(f) = e else {
        return None;
    };
    let [ast::ObjectNamePart::Identifier(id)] = f.name.0.as_slice() else {
        return None;
    };
    let name = fold(id);
    let no_args = match &f.args {
        FunctionArguments::None => name == "current_timestamp",
        FunctionArguments::List(l) => name == "now" && l.args.is_empty() && l.clauses.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    no_args.then_some(InsertValue::Now)
}

/// Whether parameter `v` has exactly the type of a column of type `ty`.
fn param_fits(ty: &SqlType, v: &ScalarValue) -> bool {
    v.data_type() == ty.arrow()
}

/// What a point write needs from its session.
pub struct WriteEnv<'a> {
    pub db_name: &'a str,
    pub params: &'a [ScalarValue],
    pub kv: &'a Kv,
    /// `CURRENT_TIMESTAMP`, in microseconds since the epoch (UTC).
    pub now_us: i64,
    /// The node's sequence values (SERIAL defaults draw from them).
    pub seqs: &'a crate::sequence::Sequences,
    /// The session's `currval`/`lastval` memory.
    pub session_seqs: &'a std::sync::Mutex<crate::sequence::SessionSequences>,
}

/// Runs `w` in `txn`: the number of rows written, or `None` if the general path must run it.
pub async fn execute(w: &PointWrite, txn: &mut Txn, env: &WriteEnv<'_>) -> SqlResult<Option<u64>> {
    let res = match w {
        PointWrite::Update(u) => update(u, txn, env).await?,
        PointWrite::Insert(i) => insert(i, txn, env).await?,
        PointWrite::Delete(d) => delete(d, txn, env).await?,
    };
    if res.is_some() {
        crate::metrics::METRICS.point_writes.inc();
    }
    Ok(res)
}

/// The table `name` if the point paths may write it: no CHECK, generated column or foreign
/// key of its own.
async fn writable_table(txn: &Txn, env: &WriteEnv<'_>, name: &str) -> SqlResult<Option<TableDesc>> {
    let Some(desc) = resolve_table(txn, env.db_name, name).await? else {
        return Ok(None);
    };
    let plain = !crate::check::needed(&desc) && desc.foreign_keys.is_empty();
    Ok(plain.then_some(desc))
}

/// Deletes the row whose key is parameter `d.param`, with its secondary-index entries, after
/// locking it as the general path does. A table that a foreign key references (its own
/// included) takes the general path, which runs the referential actions.
async fn delete(d: &PointDelete, txn: &mut Txn, env: &WriteEnv<'_>) -> SqlResult<Option<u64>> {
    let Some(key_value) = env.params.get(d.param) else {
        return Ok(None);
    };
    let Some(desc) = resolve_table(txn, env.db_name, &d.table).await? else {
        return Ok(None);
    };
    let Some(key_pos) = single_key(&desc, &d.key_column) else {
        return Ok(None);
    };
    let Some(key_datum) = key_datum(&desc.columns[key_pos].ty, key_value) else {
        return Ok(None);
    };
    if crate::catalog::is_referenced(txn, desc.db_id, desc.id).await? {
        return Ok(None);
    }
    let Some((key, value)) = lock_row(txn, &desc, key_pos, key_datum).await? else {
        return Ok(Some(0));
    };
    let writer = TableWriter::new(&desc)?;
    if !writer.is_empty() {
        let old = decode_row(&desc, &key, &value)?;
        writer.delete_entries(txn, &desc, &old, &key)?;
    }
    txn.delete(key)?;
    Ok(Some(1))
}

/// The key and stored value of the row whose single key column (at `key_pos`) is
/// `key_datum`, locked for `txn` as the general path locks the rows it writes: `None` when no
/// row exists at the snapshot; the restart error when the statement must run again on a
/// refreshed snapshot (it waited for the lock, or the row changed since the snapshot).
async fn lock_row(
    txn: &mut Txn,
    desc: &TableDesc,
    key_pos: usize,
    key_datum: Datum,
) -> SqlResult<Option<(Vec<u8>, Vec<u8>)>> {
    let mut key_row = vec![Datum::Null; desc.columns.len()];
    key_row[key_pos] = key_datum;
    let key = encode_key(desc, &key_row)?;
    match txn.get_for_update(&key).await? {
        None => Err(SqlError::restart_statement()),
        Some(None) => Ok(None),
        Some(Some(value)) => Ok(Some((key, value))),
    }
}

/// How one SET assignment computes its value from the old row. Parameters are converted
/// only once a row matched: with no row, UPDATE reports 0 rows, whatever the values.
enum Compute<'a> {
    Set(&'a ScalarValue),
    Add {
        from: usize,
        delta: &'a ScalarValue,
        negate: bool,
    },
}

async fn update(u: &PointUpdate, txn: &mut Txn, env: &WriteEnv<'_>) -> SqlResult<Option<u64>> {
    let Some(key_value) = env.params.get(u.param) else {
        return Ok(None);
    };
    let Some(desc) = writable_table(txn, env, &u.table).await? else {
        return Ok(None);
    };
    let Some(key_pos) = single_key(&desc, &u.key_column) else {
        return Ok(None);
    };
    let Some(key_datum) = key_datum(&desc.columns[key_pos].ty, key_value) else {
        return Ok(None);
    };
    let Some(plan) = update_plan(u, &desc, key_pos, env.params)? else {
        return Ok(None);
    };
    let Some((key, value)) = lock_row(txn, &desc, key_pos, key_datum).await? else {
        return Ok(Some(0));
    };
    let old = decode_row(&desc, &key, &value)?;
    let mut new = old.clone();
    for (pos, compute) in plan {
        let ty = &desc.columns[pos].ty;
        new[pos] = match compute {
            Compute::Set(v) => datum_from_scalar(ty, v)?,
            Compute::Add {
                from,
                delta,
                negate,
            } => arith(ty, &old[from], &datum_from_scalar(ty, delta)?, negate)?,
        };
    }
    validate_row(&desc, &mut new)?;
    txn.put(key, encode_value(&desc, &new))?;
    Ok(Some(1))
}

/// Each assigned column's position and computation, or `None` if an assignment is outside
/// the path (the key, an indexed, hidden or identity column, a column named twice, a
/// parameter of another type).
fn update_plan<'a>(
    u: &PointUpdate,
    desc: &TableDesc,
    key_pos: usize,
    params: &'a [ScalarValue],
) -> SqlResult<Option<Vec<(usize, Compute<'a>)>>> {
    let indexed = TableWriter::new(desc)?.indexed_positions();
    let mut plan: Vec<(usize, Compute<'a>)> = Vec::with_capacity(u.sets.len());
    for (name, value) in &u.sets {
        let Some((pos, col)) = desc.column(name) else {
            return Ok(None);
        };
        let outside = col.hidden || col.identity_always || pos == key_pos;
        if outside || indexed.contains(&pos) || plan.iter().any(|(p, _)| *p == pos) {
            return Ok(None);
        }
        let compute = match value {
            SetValue::Param(n) => params
                .get(*n)
                .filter(|v| param_fits(&col.ty, v))
                .map(Compute::Set),
            SetValue::Add {
                column,
                param,
                negate,
            } => add_plan(desc, &col.ty, column, params.get(*param), *negate),
        };
        let Some(compute) = compute else {
            return Ok(None);
        };
        plan.push((pos, compute));
    }
    Ok(Some(plan))
}

/// `column ± $n` assigned to a column of type `target`: integer columns of one type only.
fn add_plan<'a>(
    desc: &TableDesc,
    target: &SqlType,
    column: &str,
    param: Option<&'a ScalarValue>,
    negate: bool,
) -> Option<Compute<'a>> {
    let (from, src) = desc.column(column)?;
    let delta = param?;
    let int = matches!(src.ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8);
    let fits = !src.hidden && int && &src.ty == target && param_fits(&src.ty, delta);
    fits.then_some(Compute::Add {
        from,
        delta,
        negate,
    })
}

fn out_of_range(ty: &SqlType) -> SqlError {
    let name = match ty {
        SqlType::Int2 => "smallint",
        SqlType::Int4 => "integer",
        _ => "bigint",
    };
    SqlError::new(
        code::NUMERIC_VALUE_OUT_OF_RANGE,
        format!("{name} out of range"),
    )
}

/// `a + b` (or, `negate`, `a - b`) with PostgreSQL's overflow error; NULL if either is NULL.
fn arith(ty: &SqlType, a: &Datum, b: &Datum, negate: bool) -> SqlResult<Datum> {
    let r = match (a, b, negate) {
        (Datum::Null, _, _) | (_, Datum::Null, _) => Some(Datum::Null),
        (Datum::I16(x), Datum::I16(y), false) => x.checked_add(*y).map(Datum::I16),
        (Datum::I16(x), Datum::I16(y), true) => x.checked_sub(*y).map(Datum::I16),
        (Datum::I32(x), Datum::I32(y), false) => x.checked_add(*y).map(Datum::I32),
        (Datum::I32(x), Datum::I32(y), true) => x.checked_sub(*y).map(Datum::I32),
        (Datum::I64(x), Datum::I64(y), false) => x.checked_add(*y).map(Datum::I64),
        (Datum::I64(x), Datum::I64(y), true) => x.checked_sub(*y).map(Datum::I64),
        _ => {
            return Err(SqlError::internal(
                "point UPDATE: arithmetic on non-integers",
            ))
        }
    };
    r.ok_or_else(|| out_of_range(ty))
}

async fn insert(i: &PointInsert, txn: &mut Txn, env: &WriteEnv<'_>) -> SqlResult<Option<u64>> {
    let Some(desc) = writable_table(txn, env, &i.table).await? else {
        return Ok(None);
    };
    let Some((mut row, drawn)) = insert_row(i, &desc, env)? else {
        return Ok(None);
    };
    if !draw_sequences(txn, &desc, env, &drawn, &mut row).await? {
        return Ok(None);
    }
    validate_row(&desc, &mut row)?;
    let user_key = desc.primary_key.iter().all(|&p| !desc.columns[p].hidden);
    if user_key && txn.get(&encode_key(&desc, &row)?).await?.is_some() {
        return Err(duplicate_key_error(&desc, &row));
    }
    TableWriter::new(&desc)?
        .insert_row(txn, &desc, &row)
        .await?;
    Ok(Some(1))
}

/// Fills the columns whose default draws from a sequence (`drawn`: position and sequence).
/// `false` — nothing drawn — if a sequence does not exist (the general path reports it).
async fn draw_sequences(
    txn: &Txn,
    desc: &TableDesc,
    env: &WriteEnv<'_>,
    drawn: &[(usize, (String, String))],
    row: &mut [Datum],
) -> SqlResult<bool> {
    let mut seqs = Vec::with_capacity(drawn.len());
    for (pos, (schema, name)) in drawn {
        match crate::sequence::get_sequence(txn, desc.db_id, schema, name).await? {
            Some(s) => seqs.push((*pos, s)),
            None => return Ok(false),
        }
    }
    for (pos, s) in seqs {
        let v = env.seqs.next(&s).await?;
        if let Ok(mut m) = env.session_seqs.lock() {
            m.record(s.id, v);
        }
        let ty = &desc.columns[pos].ty;
        row[pos] = match ty {
            SqlType::Int8 => Datum::I64(v),
            SqlType::Int4 => Datum::I32(i32::try_from(v).map_err(|_| out_of_range(ty))?),
            SqlType::Int2 => Datum::I16(i16::try_from(v).map_err(|_| out_of_range(ty))?),
            _ => {
                return Err(SqlError::internal(
                    "a sequence default of a non-integer column",
                ))
            }
        };
    }
    Ok(true)
}

/// The sequence `(schema, name)` of a default that is exactly SERIAL's `nextval('…')`.
fn serial_default(default_expr: &str) -> Option<(String, String)> {
    let [(schema, name)] = crate::sequence::default_sequences(default_expr)
        .try_into()
        .ok()?;
    (crate::ddl::nextval_default(&schema, &name) == default_expr).then_some((schema, name))
}

/// The full row `i` inserts into `desc` (columns drawing from a sequence still NULL, listed
/// with their sequence), or `None` if a column is outside the path.
#[allow(clippy::type_complexity)]
fn insert_row(
    i: &PointInsert,
    desc: &TableDesc,
    env: &WriteEnv<'_>,
) -> SqlResult<Option<(Vec<Datum>, Vec<(usize, (String, String))>)>> {
    let targets: Vec<usize> = match &i.columns {
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                match desc.column(n) {
                    Some((pos, c)) if !c.hidden && !out.contains(&pos) => out.push(pos),
                    _ => return Ok(None),
                }
            }
            out
        }
        None => (0..desc.columns.len())
            .filter(|&p| !desc.columns[p].hidden)
            .collect(),
    };
    if targets.len() != i.values.len() {
        return Ok(None);
    }
    let mut given: Vec<Option<&InsertValue>> = vec![None; desc.columns.len()];
    for (&pos, value) in targets.iter().zip(&i.values) {
        let col = &desc.columns[pos];
        let fits = match value {
            InsertValue::Param(n) => env.params.get(*n).is_some_and(|v| param_fits(&col.ty, v)),
            InsertValue::Now => matches!(col.ty, SqlType::Timestamp | SqlType::TimestampTz),
            InsertValue::Text(_) => matches!(col.ty, SqlType::Text | SqlType::Varchar(_)),
        };
        if col.identity_always || !fits {
            return Ok(None);
        }
        given[pos] = Some(value);
    }
    // Converted in the table's column order, so the first bad value reported is the one the
    // general path reports.
    let mut row: Vec<Option<Datum>> = Vec::with_capacity(desc.columns.len());
    for (value, col) in given.into_iter().zip(&desc.columns) {
        row.push(match value {
            None => None,
            Some(InsertValue::Now) => Some(Datum::Timestamp(env.now_us)),
            Some(InsertValue::Text(s)) => Some(Datum::Text(s.clone())),
            Some(InsertValue::Param(n)) => match env.params.get(*n) {
                Some(v) => Some(datum_from_scalar(&col.ty, v)?),
                None => return Ok(None),
            },
        });
    }
    let mut full = Vec::with_capacity(desc.columns.len());
    let mut drawn = Vec::new();
    for (pos, (given, col)) in row.into_iter().zip(&desc.columns).enumerate() {
        let d = match (given, &col.default, &col.default_expr) {
            (Some(d), _, _) => d,
            (None, _, _) if col.hidden => Datum::I64(env.kv.unique_id()),
            (None, _, Some(e)) => match serial_default(e) {
                Some(seq) if matches!(col.ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) => {
                    drawn.push((pos, seq));
                    Datum::Null
                }
                _ => return Ok(None),
            },
            (None, Some((_, d)), None) => d.clone(),
            (None, None, None) => Datum::Null,
        };
        full.push(d);
    }
    Ok(Some((full, drawn)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(sql: &str) -> Option<PointWrite> {
        let mut stmts = crate::session::parse(sql).unwrap();
        recognize(&stmts.pop().unwrap())
    }

    #[test]
    fn recognises_the_pgbench_writes() {
        assert_eq!(
            rec("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"),
            Some(PointWrite::Update(PointUpdate {
                table: "pgbench_accounts".into(),
                sets: vec![(
                    "abalance".into(),
                    SetValue::Add {
                        column: "abalance".into(),
                        param: 0,
                        negate: false
                    }
                )],
                key_column: "aid".into(),
                param: 1,
            }))
        );
        assert_eq!(
            rec("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"),
            Some(PointWrite::Insert(PointInsert {
                table: "pgbench_history".into(),
                columns: Some(
                    ["tid", "bid", "aid", "delta", "mtime"]
                        .map(String::from)
                        .into()
                ),
                values: vec![
                    InsertValue::Param(0),
                    InsertValue::Param(1),
                    InsertValue::Param(2),
                    InsertValue::Param(3),
                    InsertValue::Now
                ],
            }))
        );
    }

    #[test]
    fn recognises_the_variants() {
        let Some(PointWrite::Update(u)) =
            rec(r#"update public.T set "B" = $3 + "B", c = c - $1, d = $2 where $4 = K"#)
        else {
            panic!("not recognised");
        };
        assert_eq!(
            (u.table.as_str(), u.key_column.as_str(), u.param),
            ("t", "k", 3)
        );
        assert_eq!(
            u.sets,
            vec![
                (
                    "B".to_string(),
                    SetValue::Add {
                        column: "B".into(),
                        param: 2,
                        negate: false
                    }
                ),
                (
                    "c".to_string(),
                    SetValue::Add {
                        column: "c".into(),
                        param: 0,
                        negate: true
                    }
                ),
                ("d".to_string(), SetValue::Param(1)),
            ]
        );
        let Some(PointWrite::Insert(i)) = rec("insert into t values ($2, now(), $1)") else {
            panic!("not recognised");
        };
        assert_eq!(i.columns, None);
        assert_eq!(
            i.values,
            vec![
                InsertValue::Param(1),
                InsertValue::Now,
                InsertValue::Param(0)
            ]
        );
        // pgbench's INSERT line: a parameter and a string literal (quotes doubled).
        let Some(PointWrite::Insert(i)) =
            rec("INSERT INTO bench_insert (v, note) VALUES ($1, 'it''s a row')")
        else {
            panic!("not recognised");
        };
        assert_eq!(i.columns, Some(vec!["v".to_string(), "note".to_string()]));
        assert_eq!(
            i.values,
            vec![
                InsertValue::Param(0),
                InsertValue::Text("it's a row".into())
            ]
        );
    }

    #[test]
    fn recognises_deletes_by_key() {
        for (sql, table, key, param) in [
            ("DELETE FROM t WHERE k = $1", "t", "k", 0),
            (r#"delete from public."T" where $2 = "K""#, "T", "K", 1),
        ] {
            assert_eq!(
                rec(sql),
                Some(PointWrite::Delete(PointDelete {
                    table: table.into(),
                    key_column: key.into(),
                    param,
                })),
                "{sql}"
            );
        }
    }

    #[test]
    fn only_serial_defaults_draw_from_sequences() {
        assert_eq!(
            serial_default("nextval('t_id_seq')"),
            Some(("public".into(), "t_id_seq".into()))
        );
        assert_eq!(
            serial_default(r#"nextval('s."Odd"')"#),
            Some(("s".into(), "Odd".into()))
        );
        for other in [
            "nextval('t_id_seq') + 1",
            "nextval('t_id_seq'::regclass)",
            "nextval('a') + nextval('b')",
            "currval('t_id_seq')",
            "now()",
        ] {
            assert_eq!(serial_default(other), None, "{other}");
        }
    }

    #[test]
    fn leaves_every_other_shape_to_the_general_path() {
        for sql in [
            "UPDATE t SET a = a + $1 WHERE k = $2 RETURNING a",
            "UPDATE t SET a = a + 1 WHERE k = $2",
            "UPDATE t SET a = a * $1 WHERE k = $2",
            "UPDATE t SET a = $1 - a WHERE k = $2",
            "UPDATE t SET a = (a + $1) WHERE k = $2",
            "UPDATE t SET a = a + $1 WHERE k = $2 AND b = $3",
            "UPDATE t SET a = a + $1 WHERE k > $2",
            "UPDATE t SET a = a + $1",
            "UPDATE t SET a = a + $1 FROM u WHERE k = $2",
            "UPDATE t x SET a = $1 WHERE k = $2",
            "UPDATE s.t SET a = $1 WHERE k = $2",
            "UPDATE t SET (a, b) = ($1, $2) WHERE k = $3",
            "UPDATE t SET a = DEFAULT WHERE k = $1",
            "UPDATE t SET a = current_role WHERE k = $1",
            "UPDATE t SET a = $1 WHERE current_user = $2",
            "WITH x AS (SELECT 1) UPDATE t SET a = $1 WHERE k = $2",
            "INSERT INTO t VALUES ($1), ($2)",
            "INSERT INTO t VALUES ($1, 1)",
            "INSERT INTO t VALUES ($1, E'x')",
            "INSERT INTO t VALUES ($1, 'a' || 'b')",
            "INSERT INTO t VALUES ($1, 'x'::INT)",
            "INSERT INTO t VALUES ($1, NULL)",
            "INSERT INTO t VALUES ($1, DEFAULT)",
            "INSERT INTO t VALUES ($1, CURRENT_TIMESTAMP(3))",
            "INSERT INTO t VALUES ($1, now(1))",
            "INSERT INTO t VALUES ($1, clock_timestamp())",
            "INSERT INTO t VALUES ($1) RETURNING *",
            "INSERT INTO t VALUES ($1) ON CONFLICT DO NOTHING",
            "INSERT INTO t SELECT $1",
            "INSERT INTO t AS x VALUES ($1)",
            "INSERT INTO s.t VALUES ($1)",
            "INSERT INTO t DEFAULT VALUES",
            "WITH x AS (SELECT 1) INSERT INTO t VALUES ($1)",
            "DELETE FROM t WHERE k = $1 RETURNING *",
            "DELETE FROM t WHERE k = $1 AND a = $2",
            "DELETE FROM t WHERE k = 1",
            "DELETE FROM t WHERE k >= $1",
            "DELETE FROM t",
            "DELETE FROM t x WHERE k = $1",
            "DELETE FROM ONLY t WHERE k = $1",
            "DELETE FROM s.t WHERE k = $1",
            "DELETE FROM t USING u WHERE k = $1",
            "DELETE FROM t WHERE CURRENT_USER = $1",
            "WITH x AS (SELECT 1) DELETE FROM t WHERE k = $1",
        ] {
            assert_eq!(rec(sql), None, "{sql}");
        }
    }

    #[test]
    fn integer_arithmetic_follows_postgresql() {
        let i4 = SqlType::Int4;
        let add = |a, b| arith(&i4, &a, &b, false);
        assert_eq!(add(Datum::I32(2), Datum::I32(3)).unwrap(), Datum::I32(5));
        assert_eq!(add(Datum::Null, Datum::I32(3)).unwrap(), Datum::Null);
        let e = add(Datum::I32(i32::MAX), Datum::I32(1)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            ("22003", "integer out of range")
        );
        // c - MIN is not c + (-MIN): -1 - (-2147483648) fits.
        let sub = |a, b| arith(&i4, &a, &b, true);
        assert_eq!(
            sub(Datum::I32(-1), Datum::I32(i32::MIN)).unwrap(),
            Datum::I32(i32::MAX)
        );
        assert_eq!(sub(Datum::Null, Datum::I32(i32::MIN)).unwrap(), Datum::Null);
        let e = arith(&SqlType::Int2, &Datum::I16(0), &Datum::I16(i16::MIN), true).unwrap_err();
        assert_eq!(e.message, "smallint out of range");
        let e = arith(
            &SqlType::Int8,
            &Datum::I64(i64::MIN),
            &Datum::I64(-1),
            false,
        )
        .unwrap_err();
        assert_eq!(e.message, "bigint out of range");
    }
}
