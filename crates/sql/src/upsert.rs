//! `INSERT … ON CONFLICT DO NOTHING | DO UPDATE SET … [WHERE …]`.
//!
//! DataFusion's planner rejects the clause, so [`split`] takes it (and the target's alias) off
//! the statement before planning; the INSERT then plans as usual and its sink
//! ([`crate::provider`]) hands the proposed rows to [`Upsert`], which decides row by row, in
//! order: a row that collides with no *arbiter* (the primary key or a unique index the clause
//! names; every unique constraint when it names none) is inserted; a colliding row is skipped
//! (DO NOTHING) or turns into an update of the row it collides with. The SET and WHERE
//! expressions are compiled once into DataFusion physical expressions over
//! `(target columns, excluded columns)` and evaluated for all updates in one batch.
//!
//! As in PostgreSQL, DO UPDATE may not touch one row twice in a statement (21000), and the
//! conflict check reads the row it collides with, so under SERIALIZABLE a concurrent insert of
//! the same key makes one of the two transactions retry (40001) or fail with 23505 at commit.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ExprSchema, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, ConflictTarget, OnConflictAction, OnInsert, Statement as SqlStatement,
};
use kestrel_kv::Txn;

use crate::catalog::TableDesc;
use crate::check::stored_expr;
use crate::datum::{array_from_datums, datums_from_array, Datum};
use crate::ddl::ident;
use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::index::{entry, Resolved, TableWriter};
use crate::rowcodec::{encode_key, primary_prefix};

/// The ON CONFLICT clause of one INSERT, as written.
#[derive(Debug, Clone)]
pub struct OnConflictClause {
    pub target: Option<ConflictTarget>,
    pub action: OnConflictAction,
    /// The name the target's columns go by in SET/WHERE (its alias or its name).
    pub target_name: Option<String>,
    /// Bound parameter values (`$1` …) the SET/WHERE expressions may use.
    pub params: Vec<ScalarValue>,
}

/// Takes ON CONFLICT and the target alias off an INSERT (DataFusion plans neither).
pub fn split(stmt: DFStatement) -> SqlResult<(DFStatement, Option<OnConflictClause>)> {
    let DFStatement::Statement(s) = &stmt else {
        return Ok((stmt, None));
    };
    let SqlStatement::Insert(i) = s.as_ref() else {
        return Ok((stmt, None));
    };
    let mut i = i.clone();
    let alias = i.table_alias.take().map(|a| ident(&a.alias));
    let clause = match i.on.take() {
        None => None,
        Some(OnInsert::OnConflict(c)) => Some(OnConflictClause {
            target: c.conflict_target,
            action: c.action,
            target_name: alias,
            params: Vec::new(),
        }),
        Some(other) => return Err(SqlError::unsupported(format!("INSERT … {other}"))),
    };
    Ok((
        DFStatement::Statement(Box::new(SqlStatement::Insert(i))),
        clause,
    ))
}

/// A unique constraint a proposed row may collide with.
#[derive(Debug, Clone)]
enum Arbiter {
    Primary,
    Index(Resolved),
}

/// The compiled DO UPDATE part.
struct Update {
    /// `(column position, new value)`.
    sets: Vec<(usize, Arc<dyn PhysicalExpr>)>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    schema: Arc<datafusion::arrow::datatypes::Schema>,
}

/// An ON CONFLICT clause ready to run against one table.
pub struct Upsert {
    arbiters: Vec<Arbiter>,
    update: Option<Update>,
}

impl std::fmt::Debug for Upsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upsert({:?})", self.arbiters)
    }
}

fn no_matching_constraint() -> SqlError {
    SqlError::new(
        code::INVALID_COLUMN_REFERENCE,
        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
    )
}

fn indexes_of(desc: &TableDesc) -> SqlResult<Vec<Resolved>> {
    Ok(TableWriter::new(desc)?
        .indexes
        .into_iter()
        .filter(|ix| ix.desc.unique)
        .collect())
}

/// An inference element or index key in comparable form: a column's name, or the
/// expression's text with unquoted names lower-cased and column references unqualified.
fn normalized(e: &ast::Expr) -> String {
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::CompoundIdentifier(parts) = x {
            if let Some(last) = parts.last() {
                *x = ast::Expr::Identifier(last.clone());
            }
        }
        match x {
            ast::Expr::Identifier(i) => *x = ast::Expr::Identifier(ast::Ident::new(ident(i))),
            ast::Expr::Function(f) => {
                for p in f.name.0.iter_mut() {
                    if let ast::ObjectNamePart::Identifier(i) = p {
                        *i = ast::Ident::new(ident(i));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    match &e {
        ast::Expr::Nested(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// The unique indexes (and primary key) an inference specification names: PostgreSQL's
/// rule — the same set of key columns or expressions, and a partial index only when the
/// specification's WHERE matches its predicate. 42P10 when none does.
fn infer(
    desc: &TableDesc,
    unique: Vec<Resolved>,
    keys: &[ast::Expr],
    predicate: Option<&ast::Expr>,
) -> SqlResult<Vec<Arbiter>> {
    let mut want: Vec<String> = Vec::with_capacity(keys.len());
    for k in keys {
        if let ast::Expr::Identifier(i) = k {
            let n = ident(i);
            if desc.column(&n).filter(|(_, c)| !c.hidden).is_none() {
                return Err(SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!("column \"{n}\" does not exist"),
                ));
            }
        }
        want.push(normalized(k));
    }
    want.sort();
    want.dedup();
    let same = |mut got: Vec<String>| {
        got.sort();
        got.dedup();
        got == want
    };
    let column_keys = |positions: &[usize]| {
        positions
            .iter()
            .map(|&i| desc.columns[i].name.clone())
            .collect()
    };
    if !desc.has_hidden_key() && same(column_keys(&desc.primary_key)) {
        return Ok(vec![Arbiter::Primary]);
    }
    let want_predicate = predicate.map(normalized);
    let mut found = Vec::new();
    for ix in unique {
        let predicate_ok = match &ix.desc.predicate {
            None => true,
            Some(p) => Some(normalized(&stored_expr(p)?)) == want_predicate,
        };
        let keys: Vec<String> = if ix.desc.exprs.is_empty() {
            column_keys(&ix.positions)
        } else {
            ix.desc
                .exprs
                .iter()
                .map(|e| stored_expr(e).map(|e| normalized(&e)))
                .collect::<SqlResult<_>>()?
        };
        if predicate_ok && same(keys) {
            found.push(Arbiter::Index(ix));
        }
    }
    if found.is_empty() {
        return Err(no_matching_constraint());
    }
    Ok(found)
}

fn arbiters(desc: &TableDesc, target: &Option<ConflictTarget>) -> SqlResult<Vec<Arbiter>> {
    let unique = indexes_of(desc)?.into_iter();
    match target {
        None => {
            let mut all = Vec::new();
            if !desc.has_hidden_key() {
                all.push(Arbiter::Primary);
            }
            all.extend(unique.map(Arbiter::Index));
            Ok(all)
        }
        Some(ConflictTarget::Columns(cols)) => {
            let keys: Vec<ast::Expr> = cols.iter().cloned().map(ast::Expr::Identifier).collect();
            infer(desc, indexes_of(desc)?, &keys, None)
        }
        Some(ConflictTarget::OnConstraint(name))
            if crate::syntax::inference_spec(&crate::ddl::last_ident(name)).is_some() =>
        {
            let spec = crate::syntax::inference_spec(&crate::ddl::last_ident(name));
            let (keys, predicate) = spec.unwrap_or_else(|| Ok((Vec::new(), None)))?;
            infer(desc, indexes_of(desc)?, &keys, predicate.as_ref())
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let n = crate::ddl::last_ident(name);
            if !desc.has_hidden_key() && n == desc.pkey_name() {
                return Ok(vec![Arbiter::Primary]);
            }
            unique
                .filter(|ix| ix.desc.name == n)
                .map(Arbiter::Index)
                .next()
                .map(|a| vec![a])
                .ok_or_else(|| {
                    SqlError::new(
                        code::UNDEFINED_OBJECT,
                        format!(
                            "constraint \"{n}\" for table \"{}\" does not exist",
                            desc.name
                        ),
                    )
                })
        }
    }
}

/// Qualifies bare column names with the target's name (PostgreSQL resolves them to the
/// target row, never to `excluded`).
fn qualify(e: &ast::Expr, target: &str) -> ast::Expr {
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Identifier(i) = x {
            *x =
                ast::Expr::CompoundIdentifier(vec![ast::Ident::with_quote('"', target), i.clone()]);
        }
        ControlFlow::<()>::Continue(())
    });
    e
}

impl Upsert {
    pub fn compile(
        state: &SessionState,
        desc: &TableDesc,
        clause: &OnConflictClause,
    ) -> SqlResult<Self> {
        let arbiters = arbiters(desc, &clause.target)?;
        let update = match &clause.action {
            OnConflictAction::DoNothing => None,
            OnConflictAction::DoUpdate(u) => {
                if clause.target.is_none() {
                    return Err(SqlError::syntax(
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    ));
                }
                let name = clause
                    .target_name
                    .clone()
                    .unwrap_or_else(|| desc.name.clone());
                Some(compile_update(state, desc, &name, u, &clause.params)?)
            }
        };
        Ok(Self { arbiters, update })
    }

    /// The live row `row` collides with through an arbiter: its key and its values.
    async fn conflict(
        &self,
        txn: &Txn,
        desc: &TableDesc,
        row: &[Datum],
    ) -> SqlResult<Option<(Vec<u8>, Vec<Datum>)>> {
        let key = encode_key(desc, row)?;
        for a in &self.arbiters {
            let other = match a {
                Arbiter::Primary => key.clone(),
                Arbiter::Index(ix) => {
                    let Some(e) = entry(desc, ix, row, &key)? else {
                        continue;
                    };
                    if !e.claim {
                        continue;
                    }
                    match txn.get(&e.key).await? {
                        None => continue,
                        Some(pk) => {
                            let mut k = primary_prefix(desc.id);
                            k.extend_from_slice(&pk);
                            k
                        }
                    }
                }
            };
            if let Some(v) = txn.get(&other).await? {
                let existing = crate::rowcodec::decode_row(desc, &other, &v)?;
                return Ok(Some((other, existing)));
            }
        }
        Ok(None)
    }

    /// Inserts, skips or updates each proposed row in order; returns the rows written.
    pub async fn run(
        &self,
        txn: &mut Txn,
        desc: &TableDesc,
        checks: &crate::check::Checks,
        rows: Vec<Vec<Datum>>,
        fk: &crate::fk::FkLog,
    ) -> SqlResult<Vec<Vec<Datum>>> {
        let writer = TableWriter::new(desc)?;
        let mut written = Vec::new();
        let mut touched = std::collections::HashSet::new();
        let mut updates: Vec<(Vec<u8>, Vec<Datum>, Vec<Datum>)> = Vec::new();
        // Rows come back in proposal order (RETURNING shows them so).
        let mut order: Vec<bool> = Vec::new();
        for row in rows {
            match self.conflict(txn, desc, &row).await? {
                None => {
                    checks.verify(desc, std::slice::from_ref(&row))?;
                    let key = encode_key(desc, &row)?;
                    if txn.get(&key).await?.is_some() {
                        // Collides with the primary key, which is not an arbiter.
                        return Err(crate::provider::duplicate_key_error(desc, &row));
                    }
                    writer.insert_row(txn, desc, &row).await?;
                    fk.inserted(desc, [&row]);
                    touched.insert(key);
                    written.push(row);
                    order.push(true);
                }
                Some(_) if self.update.is_none() => {}
                Some((key, existing)) => {
                    if !touched.insert(key.clone()) {
                        return Err(SqlError::new(
                            code::CARDINALITY_VIOLATION,
                            "ON CONFLICT DO UPDATE command cannot affect row a second time",
                        ));
                    }
                    updates.push((key, existing, row));
                    order.push(false);
                }
            }
        }
        let Some(u) = &self.update else {
            return Ok(written);
        };
        let updated = self
            .update_rows(txn, desc, checks, &writer, u, updates, fk)
            .await?;
        let (mut ins, mut upd) = (written.into_iter(), updated.into_iter());
        Ok(order
            .into_iter()
            .filter_map(|inserted| {
                if inserted {
                    ins.next()
                } else {
                    upd.next().flatten()
                }
            })
            .collect())
    }

    async fn update_rows(
        &self,
        txn: &mut Txn,
        desc: &TableDesc,
        checks: &crate::check::Checks,
        writer: &TableWriter,
        u: &Update,
        updates: Vec<(Vec<u8>, Vec<Datum>, Vec<Datum>)>,
        fk: &crate::fk::FkLog,
    ) -> SqlResult<Vec<Option<Vec<Datum>>>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = updates.iter().map(|(k, _, _)| k.clone()).collect();
        if txn.lock_for_write(&keys).await? {
            // Rows of this statement are already buffered, so the statement cannot re-run on
            // a refreshed snapshot; the transaction retries as a whole (autocommit does).
            return Err(SqlError::new(
                code::SERIALIZATION_FAILURE,
                "restart transaction: could not serialize access due to concurrent update",
            ));
        }
        let new_rows = u.apply(desc, &updates)?;
        let mut out = Vec::new();
        let mut moved = Vec::new();
        for ((old_key, old, _), new) in updates.into_iter().zip(new_rows) {
            let Some(mut row) = new else {
                out.push(None);
                continue;
            };
            checks.generate(desc, std::slice::from_mut(&mut row))?;
            crate::provider::validate_row(desc, &mut row)?;
            checks.verify(desc, std::slice::from_ref(&row))?;
            let new_key = encode_key(desc, &row)?;
            let value = crate::rowcodec::encode_value(desc, &row);
            if new_key == old_key {
                txn.put(new_key.clone(), value)?;
            } else {
                txn.delete(old_key.clone())?;
                if txn.get(&new_key).await?.is_some() {
                    return Err(crate::provider::duplicate_key_error(desc, &row));
                }
                txn.insert(new_key.clone(), value)?;
            }
            fk.updated(desc, &old, &row);
            moved.push((old, old_key, row.clone(), new_key));
            out.push(Some(row));
        }
        writer.update_entries(txn, desc, &moved).await?;
        Ok(out)
    }
}

fn compile_update(
    state: &SessionState,
    desc: &TableDesc,
    name: &str,
    u: &ast::DoUpdate,
    params: &[ScalarValue],
) -> SqlResult<Update> {
    let table_schema = desc.arrow_schema(true);
    let target =
        DFSchema::try_from_qualified_schema(name, &table_schema).map_err(from_datafusion)?;
    let excluded =
        DFSchema::try_from_qualified_schema("excluded", &table_schema).map_err(from_datafusion)?;
    let df_schema = target.join(&excluded).map_err(from_datafusion)?;
    let compile = |e: &ast::Expr| -> SqlResult<datafusion::logical_expr::Expr> {
        let e = state
            .create_logical_expr(&qualify(e, name).to_string(), &df_schema)
            .map_err(from_datafusion)?;
        bind(e, params)
    };
    let mut sets = Vec::new();
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            return Err(SqlError::unsupported(
                "ON CONFLICT DO UPDATE SET (a, b) = …",
            ));
        };
        let n = crate::ddl::last_ident(col);
        let (pos, c) = desc.column(&n).filter(|(_, c)| !c.hidden).ok_or_else(|| {
            SqlError::new(
                code::UNDEFINED_COLUMN,
                format!(
                    "column \"{n}\" of relation \"{}\" does not exist",
                    desc.name
                ),
            )
        })?;
        let logical = match &a.value {
            e if crate::ddl::is_default_keyword(e) => {
                let d = default_sql(c)?.to_string();
                state
                    .create_logical_expr(&d, &df_schema)
                    .map_err(from_datafusion)?
            }
            v => compile(v)?,
        };
        let logical = logical
            .cast_to(&c.ty.arrow(), &df_schema)
            .map_err(from_datafusion)?;
        sets.push((pos, physical(state, logical, &df_schema)?));
    }
    let filter = match &u.selection {
        None => None,
        Some(w) => {
            let logical = compile(w)?;
            let ty = logical
                .get_type(&df_schema as &dyn ExprSchema)
                .map_err(from_datafusion)?;
            if ty != datafusion::arrow::datatypes::DataType::Boolean {
                return Err(SqlError::new(
                    code::DATATYPE_MISMATCH,
                    format!("argument of WHERE must be type boolean, not type {ty}"),
                ));
            }
            Some(physical(state, logical, &df_schema)?)
        }
    };
    Ok(Update {
        sets,
        filter,
        schema: Arc::new(df_schema.as_arrow().clone()),
    })
}

/// Replaces `$n` placeholders with their bound values.
fn bind(
    e: datafusion::logical_expr::Expr,
    params: &[ScalarValue],
) -> SqlResult<datafusion::logical_expr::Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::Expr;
    e.transform(|x| match &x {
        Expr::Placeholder(p) => {
            let v =
                p.id.trim_start_matches('$')
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| params.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        datafusion::common::DataFusionError::Plan(format!(
                            "no value bound for parameter {}",
                            p.id
                        ))
                    })?;
            Ok(Transformed::yes(Expr::Literal(v, None)))
        }
        _ => Ok(Transformed::no(x)),
    })
    .map(|t| t.data)
    .map_err(from_datafusion)
}

impl Update {
    /// The new rows of the updates (`None` where the WHERE clause says no).
    fn apply(
        &self,
        desc: &TableDesc,
        updates: &[(Vec<u8>, Vec<Datum>, Vec<Datum>)],
    ) -> SqlResult<Vec<Option<Vec<Datum>>>> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(2 * desc.columns.len());
        for side in 0..2 {
            for (i, c) in desc.columns.iter().enumerate() {
                let vals: Vec<Datum> = updates
                    .iter()
                    .map(|(_, old, new)| if side == 0 { &old[i] } else { &new[i] }.clone())
                    .collect();
                columns.push(array_from_datums(&c.ty, &vals)?);
            }
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| SqlError::internal(format!("ON CONFLICT batch: {e}")))?;
        let n = updates.len();
        let eval = |e: &Arc<dyn PhysicalExpr>| {
            e.evaluate(&batch)
                .and_then(|v| v.into_array(n))
                .map_err(from_datafusion)
        };
        let keep: Vec<bool> = match &self.filter {
            None => vec![true; n],
            Some(f) => {
                let out = eval(f)?;
                let b = out
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| SqlError::internal("ON CONFLICT WHERE is not boolean"))?;
                (0..n).map(|i| b.is_valid(i) && b.value(i)).collect()
            }
        };
        let mut rows: Vec<Vec<Datum>> = updates.iter().map(|(_, old, _)| old.clone()).collect();
        for (pos, e) in &self.sets {
            let vals = datums_from_array(&desc.columns[*pos].ty, &eval(e)?)?;
            for (row, v) in rows.iter_mut().zip(vals) {
                row[*pos] = v;
            }
        }
        Ok(rows
            .into_iter()
            .zip(keep)
            .map(|(r, k)| k.then_some(r))
            .collect())
    }
}

/// PostgreSQL INSERT forms DataFusion lacks, rewritten before planning:
/// * fewer VALUES than the table has columns: the leading column names are written in;
/// * `DEFAULT` among VALUES: replaced by the column's default expression (or NULL);
/// * an explicit value for a `GENERATED ALWAYS AS IDENTITY` column is 428C9.
///
/// It also compiles the target's per-row defaults into `ctx` for the planner.
pub async fn rewrite_insert(
    stmt: DFStatement,
    state: &SessionState,
    ctx: &crate::stmt::StmtCtx,
    db: &str,
) -> SqlResult<DFStatement> {
    let DFStatement::Statement(s) = &stmt else {
        return Ok(stmt);
    };
    let SqlStatement::Insert(i) = s.as_ref() else {
        return Ok(stmt);
    };
    let ast::TableObject::TableName(name) = &i.table else {
        return Ok(stmt);
    };
    let Some(desc) = target_table(state, db, name).await? else {
        return Ok(stmt);
    };
    ctx.compile_defaults(state, &desc)?;
    let visible = desc.visible_columns(false);
    let mut i = i.clone();
    if i.source.is_none() && i.columns.is_empty() {
        // `INSERT INTO t DEFAULT VALUES`: one row of DEFAULTs.
        let row = vec!["DEFAULT"; visible.len()].join(", ");
        let q = datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::KestrelDialect)
            .try_with_sql(&format!("VALUES ({row})"))
            .and_then(|mut p| p.parse_query())
            .map_err(|e| SqlError::internal(format!("DEFAULT VALUES: {e}")))?;
        i.source = Some(q);
    }
    let values_width = match i.source.as_deref().map(|q| q.body.as_ref()) {
        Some(ast::SetExpr::Values(v)) => v.rows.first().map(|r| r.len()),
        _ => None,
    };
    if let (Some(w), true) = (values_width, i.columns.is_empty()) {
        if w < visible.len() {
            i.columns = visible
                .iter()
                .take(w)
                .map(|&c| {
                    ast::ObjectName::from(vec![ast::Ident::with_quote('"', &desc.columns[c].name)])
                })
                .collect();
        }
    }
    // The target columns, as positions into `desc.columns`.
    let targets: Vec<Option<usize>> = if i.columns.is_empty() {
        visible.iter().map(|&c| Some(c)).collect()
    } else {
        i.columns
            .iter()
            .map(|n| {
                let n = Some(crate::ddl::last_ident(n)).filter(|n| !n.is_empty());
                n.and_then(|n| desc.column(&n).map(|(pos, _)| pos))
            })
            .collect()
    };
    // Per target column: did every VALUES row say DEFAULT?
    let mut defaults_used = vec![true; targets.len()];
    if let Some(ast::SetExpr::Values(v)) = i.source.as_deref_mut().map(|q| q.body.as_mut()) {
        for row in v.rows.iter_mut() {
            for (j, e) in row.iter().enumerate() {
                let is_default = crate::ddl::is_default_keyword(e);
                if !is_default {
                    if let Some(d) = defaults_used.get_mut(j) {
                        *d = false;
                    }
                }
            }
            for (j, e) in row.iter_mut().enumerate() {
                let is_default = crate::ddl::is_default_keyword(e);
                if !is_default {
                    if let Some(c) = targets.get(j).copied().flatten().map(|p| &desc.columns[p]) {
                        literal_fits(e, c)?;
                    }
                    continue;
                }
                let col = targets.get(j).copied().flatten().map(|p| &desc.columns[p]);
                *e = match col {
                    Some(c) => default_sql(c)?,
                    None => ast::Expr::value(ast::Value::Null),
                };
            }
        }
    } else {
        defaults_used.iter_mut().for_each(|d| *d = false);
    }
    for (j, t) in targets.iter().enumerate() {
        let Some(p) = t else { continue };
        let c = &desc.columns[*p];
        let all_default = values_width.is_some() && defaults_used[j];
        if (c.identity_always || c.generated.is_some()) && !all_default {
            return Err(SqlError::new(
                code::GENERATED_ALWAYS,
                format!(
                    "cannot insert a non-DEFAULT value into column \"{}\"",
                    c.name
                ),
            )
            .with_detail(generated_detail(c)));
        }
    }
    Ok(DFStatement::Statement(Box::new(SqlStatement::Insert(i))))
}

/// A DO UPDATE expression ready to evaluate: coerced and simplified as the optimizer would
/// (some functions, e.g. `coalesce`, only run after simplification rewrote them).
fn physical(
    state: &SessionState,
    e: datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> SqlResult<Arc<dyn PhysicalExpr>> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let ctx = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_current_time()
        .build();
    let simplifier = ExprSimplifier::new(ctx);
    let e = simplifier.coerce(e, schema).map_err(from_datafusion)?;
    let e = simplifier.simplify(e).map_err(from_datafusion)?;
    state
        .create_physical_expr(e, schema)
        .map_err(from_datafusion)
}

/// PostgreSQL has no assignment cast from a number to a boolean, date/time, uuid, bytea,
/// json or array column, nor from a boolean to anything but boolean and text: such a
/// literal in VALUES is 42804.
fn literal_fits(e: &ast::Expr, c: &crate::catalog::ColumnDesc) -> SqlResult<()> {
    use crate::types::SqlType as T;
    let number = |e: &ast::Expr| matches!(e, ast::Expr::Value(v) if matches!(v.value, ast::Value::Number(..)));
    let kind = match e {
        e if number(e) => "integer",
        ast::Expr::UnaryOp { expr, .. } if number(expr) => "integer",
        ast::Expr::Value(v) if matches!(v.value, ast::Value::Boolean(_)) => "boolean",
        _ => return Ok(()),
    };
    let numeric = matches!(
        c.ty,
        T::Int2 | T::Int4 | T::Int8 | T::Float4 | T::Float8 | T::Numeric { .. }
    );
    let text = matches!(c.ty, T::Text | T::Varchar(_) | T::Char(_));
    let fits = match kind {
        "integer" => numeric || text,
        _ => matches!(c.ty, T::Bool) || text,
    };
    if fits {
        return Ok(());
    }
    let kind = match (kind, e.to_string().contains('.')) {
        ("integer", true) => "numeric",
        (k, _) => k,
    };
    Err(SqlError::new(
        code::DATATYPE_MISMATCH,
        format!(
            "column \"{}\" is of type {} but expression is of type {kind}",
            c.name,
            c.ty.pg_name()
        ),
    )
    .with_detail("You will need to rewrite or cast the expression."))
}

fn generated_detail(c: &crate::catalog::ColumnDesc) -> String {
    match c.generated {
        Some(_) => format!("Column \"{}\" is a generated column.", c.name),
        None => format!(
            "Column \"{}\" is an identity column defined as GENERATED ALWAYS.",
            c.name
        ),
    }
}

/// `UPDATE … SET id = …` of a `GENERATED ALWAYS` (identity or generated) column is 428C9, as in
/// PostgreSQL.
pub async fn check_update_identity(
    stmt: &DFStatement,
    state: &SessionState,
    db: &str,
) -> SqlResult<()> {
    let DFStatement::Statement(s) = stmt else {
        return Ok(());
    };
    let SqlStatement::Update(u) = s.as_ref() else {
        return Ok(());
    };
    let ast::TableFactor::Table { name, .. } = &u.table.relation else {
        return Ok(());
    };
    let Some(desc) = target_table(state, db, name).await? else {
        return Ok(());
    };
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            continue;
        };
        let col = Some(crate::ddl::last_ident(n)).filter(|n| !n.is_empty());
        let Some((_, c)) = col.and_then(|n| desc.column(&n)) else {
            continue;
        };
        let is_default = crate::ddl::is_default_keyword(&a.value);
        if (c.identity_always || c.generated.is_some()) && !is_default {
            return Err(SqlError::new(
                code::GENERATED_ALWAYS,
                format!("column \"{}\" can only be updated to DEFAULT", c.name),
            )
            .with_detail(generated_detail(c)));
        }
    }
    Ok(())
}

/// `UPDATE … SET (a, b) = (x, y)` / `= (SELECT x, y …)` become one assignment per column, and
/// `SET c = DEFAULT` takes the column's default expression.
pub async fn rewrite_update(
    stmt: DFStatement,
    state: &SessionState,
    db: &str,
) -> SqlResult<DFStatement> {
    let DFStatement::Statement(s) = &stmt else {
        return Ok(stmt);
    };
    let SqlStatement::Update(u) = s.as_ref() else {
        return Ok(stmt);
    };
    let needed = u.assignments.iter().any(|a| {
        matches!(a.target, AssignmentTarget::Tuple(_)) || crate::ddl::is_default_keyword(&a.value)
    });
    if !needed {
        return Ok(stmt);
    }
    let desc = match &u.table.relation {
        ast::TableFactor::Table { name, .. } => target_table(state, db, name).await?,
        _ => None,
    };
    let mut u = u.clone();
    let mut out = Vec::with_capacity(u.assignments.len());
    for a in std::mem::take(&mut u.assignments) {
        let pairs: Vec<(ast::ObjectName, ast::Expr)> = match a.target {
            AssignmentTarget::ColumnName(n) => vec![(n, a.value)],
            AssignmentTarget::Tuple(names) => {
                let values = split_row_value(a.value, names.len())?;
                names.into_iter().zip(values).collect()
            }
        };
        for (name, value) in pairs {
            let value = match (&desc, crate::ddl::is_default_keyword(&value)) {
                (Some(d), true) => match d.column(&crate::ddl::last_ident(&name)) {
                    Some((_, col)) => default_sql(col)?,
                    None => value,
                },
                _ => value,
            };
            out.push(ast::Assignment {
                target: AssignmentTarget::ColumnName(name),
                value,
            });
        }
    }
    u.assignments = out;
    Ok(DFStatement::Statement(Box::new(SqlStatement::Update(u))))
}

/// The values of a multiple-column SET item: a row `(x, y)` or a sub-SELECT of as many
/// columns (one scalar subquery per column).
fn split_row_value(value: ast::Expr, n: usize) -> SqlResult<Vec<ast::Expr>> {
    let mismatch = || {
        SqlError::new(
            code::SYNTAX_ERROR,
            "number of columns does not match number of values",
        )
    };
    let values =
        match value {
            ast::Expr::Tuple(items) => items,
            ast::Expr::Nested(e) => vec![*e],
            ast::Expr::Subquery(q) => {
                let ast::SetExpr::Select(sel) = q.body.as_ref() else {
                    return Err(SqlError::unsupported("UPDATE … SET (…) = (set operation)"));
                };
                (0..sel.projection.len())
                    .map(|i| {
                        let mut one = sel.as_ref().clone();
                        one.projection = vec![sel.projection[i].clone()];
                        let mut q1 = q.as_ref().clone();
                        q1.body = Box::new(ast::SetExpr::Select(Box::new(one)));
                        ast::Expr::Subquery(Box::new(q1))
                    })
                    .collect()
            }
            _ => return Err(SqlError::new(
                code::SYNTAX_ERROR,
                "source for a multiple-column UPDATE item must be a sub-SELECT or ROW() expression",
            )),
        };
    if values.len() != n {
        return Err(mismatch());
    }
    Ok(values)
}

/// The descriptor of a Kestrel table named in a statement, as the statement's catalog sees it.
pub async fn target_table(
    state: &SessionState,
    db: &str,
    name: &ast::ObjectName,
) -> SqlResult<Option<Arc<TableDesc>>> {
    let (schema, table) = crate::ddl::table_name(name, db)?;
    let provider = match state.schema_for_ref(datafusion::common::TableReference::partial(
        schema.as_str(),
        table.as_str(),
    )) {
        Ok(s) => s.table(&table).await.map_err(from_datafusion)?,
        Err(_) => None,
    };
    Ok(provider.and_then(|p| {
        p.as_ref()
            .downcast_ref::<crate::provider::KestrelTable>()
            .map(|kt| kt.desc().clone())
    }))
}

/// A column's default as an expression (NULL without one).
pub fn default_sql(c: &crate::catalog::ColumnDesc) -> SqlResult<ast::Expr> {
    use crate::dialect::KestrelDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let text = match (&c.default_expr, &c.default) {
        (Some(e), _) => e.clone(),
        (None, Some((src, _))) => format!("({src})"),
        (None, None) => return Ok(ast::Expr::value(ast::Value::Null)),
    };
    Parser::new(&KestrelDialect)
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| SqlError::internal(format!("stored default {text}: {e}")))
}
