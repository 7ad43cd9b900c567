//! UPDATE and DELETE.
//!
//! DataFusion plans both statements (any WHERE, any SET expression, subqueries, `FROM`/`USING`
//! joins); Kestrel then executes the plan's *input* — the rows to change — as an ordinary
//! query and writes the result. For UPDATE the input is a projection that computes every
//! column's new value; Kestrel extends that projection with the row's old primary key, so a
//! key change becomes a delete of the old key plus an insert of the new one.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp};

use datafusion::sql::sqlparser::ast;

use crate::catalog::TableDesc;
use crate::datum::{datums_from_array, Datum};
use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::index::TableWriter;
use crate::provider::{duplicate_key_error, validate_row, KestrelTable};
use crate::rowcodec::{encode_key, encode_value};
use crate::stmt::StmtCtx;

pub async fn execute(
    state: &SessionState,
    dml: &DmlStatement,
    ctx: &Arc<StmtCtx>,
) -> SqlResult<u64> {
    let provider = source_as_provider(&dml.target).map_err(from_datafusion)?;
    let table = provider
        .as_ref()
        .downcast_ref::<KestrelTable>()
        .ok_or_else(|| SqlError::unsupported("writing to this relation"))?;
    let desc = table.desc().clone();
    let quals = target_qualifiers(&dml.input, &dml.table_name);
    match dml.op {
        WriteOp::Delete => delete(state, dml, &desc, &quals, ctx).await,
        WriteOp::Update => update(state, dml, &desc, &quals, ctx).await,
        _ => Err(SqlError::unsupported(format!("{} statements", dml.op))),
    }
}

/// The names under which the target table's columns appear in the plan (its name and aliases).
fn target_qualifiers(plan: &LogicalPlan, target: &TableReference) -> Vec<TableReference> {
    let mut out = vec![target.clone()];
    let _ = plan.apply(|node| {
        if let LogicalPlan::SubqueryAlias(a) = node {
            if let LogicalPlan::TableScan(s) = a.input.as_ref() {
                if s.table_name.resolved_eq(target) {
                    out.push(a.alias.clone());
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

fn column_index(schema: &DFSchema, quals: &[TableReference], name: &str) -> Option<usize> {
    schema.iter().position(|(q, f)| {
        f.name() == name && q.is_none_or(|q| quals.iter().any(|a| a.resolved_eq(q)))
    })
}

/// The full rows of `desc` in `batches` (a plan over the table with every column visible).
fn full_rows(
    desc: &TableDesc,
    schema: &DFSchema,
    quals: &[TableReference],
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> SqlResult<Vec<Vec<Datum>>> {
    let mut idx = Vec::with_capacity(desc.columns.len());
    for c in &desc.columns {
        idx.push(
            column_index(schema, quals, &c.name).ok_or_else(|| {
                SqlError::internal(format!("DELETE plan lacks column {}", c.name))
            })?,
        );
    }
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Vec<Datum>> = desc
            .columns
            .iter()
            .zip(&idx)
            .map(|(c, &i)| datums_from_array(&c.ty, b.column(i)))
            .collect::<SqlResult<_>>()?;
        for r in 0..b.num_rows() {
            out.push(cols.iter().map(|c| c[r].clone()).collect());
        }
    }
    Ok(out)
}

async fn delete(
    state: &SessionState,
    dml: &DmlStatement,
    desc: &TableDesc,
    quals: &[TableReference],
    ctx: &Arc<StmtCtx>,
) -> SqlResult<u64> {
    let batches = crate::exec::collect(
        state,
        &dml.input,
        &ctx.limits,
        Some((ctx.limits.statement_rows_max, "statement_rows_max")),
    )
    .await?;
    delete_collected(desc, dml.input.schema(), quals, &batches, ctx).await
}

/// Deletes the rows in `batches` (every column of `desc`, found by name under `quals`).
async fn delete_collected(
    desc: &TableDesc,
    schema: &DFSchema,
    quals: &[TableReference],
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    ctx: &Arc<StmtCtx>,
) -> SqlResult<u64> {
    let mut key_cols = Vec::new();
    for &i in &desc.primary_key {
        let name = &desc.columns[i].name;
        let idx = column_index(schema, quals, name)
            .ok_or_else(|| SqlError::internal(format!("DELETE plan lacks key column {name}")))?;
        key_cols.push((i, idx));
    }
    let writer = TableWriter::new(desc)?;
    let full = if ctx.returning.is_some() || !writer.is_empty() || ctx.fk.involves(desc.id) {
        full_rows(desc, schema, quals, batches)?
    } else {
        Vec::new()
    };
    let mut keys = HashSet::new();
    for b in batches {
        let cols: Vec<(usize, Vec<Datum>)> = key_cols
            .iter()
            .map(|&(i, idx)| Ok((i, datums_from_array(&desc.columns[i].ty, b.column(idx))?)))
            .collect::<SqlResult<_>>()?;
        for r in 0..b.num_rows() {
            let mut row = vec![Datum::Null; desc.columns.len()];
            for (i, vals) in &cols {
                row[*i] = vals[r].clone();
            }
            keys.insert(encode_key(desc, &row)?);
        }
    }
    let n = keys.len() as u64;
    let keys: Vec<Vec<u8>> = keys.into_iter().collect();
    let mut txn = ctx.txn.write().await;
    if txn.lock_for_write(&keys).await? {
        return Err(SqlError::restart_statement());
    }
    for k in keys {
        txn.delete(k)?;
    }
    if !writer.is_empty() {
        let mut done = HashSet::new();
        for row in &full {
            let key = encode_key(desc, row)?;
            if done.insert(key.clone()) {
                writer.delete_entries(&mut txn, desc, row, &key)?;
            }
        }
    }
    ctx.fk.deleted(desc, &full);
    ctx.capture(full);
    Ok(n)
}

async fn update(
    state: &SessionState,
    dml: &DmlStatement,
    desc: &TableDesc,
    quals: &[TableReference],
    ctx: &Arc<StmtCtx>,
) -> SqlResult<u64> {
    let LogicalPlan::Projection(proj) = dml.input.as_ref() else {
        return Err(SqlError::internal("UPDATE plan is not a projection"));
    };
    let k = desc.primary_key.len();
    let mut exprs: Vec<Expr> = Vec::with_capacity(k + proj.expr.len());
    for (j, &i) in desc.primary_key.iter().enumerate() {
        let name = &desc.columns[i].name;
        let schema = proj.input.schema();
        let idx = column_index(schema, quals, name)
            .ok_or_else(|| SqlError::internal(format!("UPDATE plan lacks key column {name}")))?;
        let (q, f) = schema.qualified_field(idx);
        exprs.push(
            Expr::Column(Column::new(q.cloned(), f.name())).alias(format!("__kestrel_old_key_{j}")),
        );
    }
    let writer = TableWriter::new(desc)?;
    let mut indexed: Vec<usize> = writer.indexed_positions().into_iter().collect();
    indexed.sort();
    for (j, &i) in indexed.iter().enumerate() {
        let name = &desc.columns[i].name;
        let schema = proj.input.schema();
        let idx = column_index(schema, quals, name)
            .ok_or_else(|| SqlError::internal(format!("UPDATE plan lacks column {name}")))?;
        let (q, f) = schema.qualified_field(idx);
        exprs.push(
            Expr::Column(Column::new(q.cloned(), f.name())).alias(format!("__kestrel_old_ix_{j}")),
        );
    }
    exprs.extend(proj.expr.iter().cloned());
    let plan = LogicalPlanBuilder::from(proj.input.as_ref().clone())
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(from_datafusion)?;
    if proj.expr.len() != desc.columns.len() {
        return Err(SqlError::internal(
            "UPDATE projection does not cover every column",
        ));
    }
    update_plan(state, desc, ctx, &plan, &indexed).await
}

/// Runs `plan`, whose columns are the old primary key, the old `indexed` columns and then
/// every new column value, and writes the updates.
async fn update_plan(
    state: &SessionState,
    desc: &TableDesc,
    ctx: &Arc<StmtCtx>,
    plan: &LogicalPlan,
    indexed: &[usize],
) -> SqlResult<u64> {
    let writer = TableWriter::new(desc)?;
    let k = desc.primary_key.len();
    let k_old = k + indexed.len();
    let batches = crate::exec::collect(
        state,
        plan,
        &ctx.limits,
        Some((ctx.limits.statement_rows_max, "statement_rows_max")),
    )
    .await?;
    let checks = crate::check::Checks::compile(state, desc)?;
    let mut checked: Vec<Vec<Datum>> = Vec::new();
    let mut writes: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut new_keys = HashSet::new();
    let mut twice: Option<Vec<Datum>> = None;
    let mut old_keys = HashSet::new();
    let mut moved = Vec::new();
    for b in &batches {
        let old: Vec<Vec<Datum>> = desc
            .primary_key
            .iter()
            .enumerate()
            .map(|(j, &i)| datums_from_array(&desc.columns[i].ty, b.column(j)))
            .collect::<SqlResult<_>>()?;
        let new: Vec<Vec<Datum>> = desc
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| datums_from_array(&c.ty, b.column(k_old + i)))
            .collect::<SqlResult<_>>()?;
        let old_ix: Vec<Vec<Datum>> = indexed
            .iter()
            .enumerate()
            .map(|(j, &i)| datums_from_array(&desc.columns[i].ty, b.column(k + j)))
            .collect::<SqlResult<_>>()?;
        for r in 0..b.num_rows() {
            let mut old_row = vec![Datum::Null; desc.columns.len()];
            for (j, &i) in desc.primary_key.iter().enumerate() {
                old_row[i] = old[j][r].clone();
            }
            for (j, &i) in indexed.iter().enumerate() {
                old_row[i] = old_ix[j][r].clone();
            }
            let old_key = encode_key(desc, &old_row)?;
            if !old_keys.insert(old_key.clone()) {
                continue; // a joined UPDATE … FROM may produce a row twice: the first wins
            }
            let mut row: Vec<Datum> = new.iter().map(|col| col[r].clone()).collect();
            checks.generate(desc, std::slice::from_mut(&mut row))?;
            validate_row(desc, &mut row)?;
            if !checks.is_empty() || ctx.returning.is_some() {
                checked.push(row.clone());
            }
            let new_key = encode_key(desc, &row)?;
            if !new_keys.insert(new_key.clone()) && twice.is_none() {
                // Reported after the CHECK constraints, which PostgreSQL tests first.
                twice = Some(row.clone());
            }
            ctx.fk.updated(desc, &old_row, &row);
            if !writer.is_empty() {
                moved.push((old_row, old_key.clone(), row.clone(), new_key.clone()));
            }
            writes.push((old_key, new_key, encode_value(desc, &row)));
        }
    }
    checks.verify(desc, &checked)?;
    if let Some(row) = twice {
        return Err(duplicate_key_error(desc, &row));
    }
    ctx.capture(checked);
    let n = writes.len() as u64;
    let mut txn = ctx.txn.write().await;
    let mut locked: Vec<Vec<u8>> = writes.iter().map(|(old, _, _)| old.clone()).collect();
    locked.extend(
        writes
            .iter()
            .filter(|(o, n, _)| o != n)
            .map(|(_, n, _)| n.clone()),
    );
    if txn.lock_for_write(&locked).await? {
        return Err(SqlError::restart_statement());
    }
    // Moved rows: their old keys go first, so a key taken over from another updated row is free.
    for (old, new, _) in &writes {
        if old != new {
            txn.delete(old.clone())?;
        }
    }
    for (old, new, value) in writes {
        if old == new {
            txn.put(new, value)?;
        } else {
            if txn.get(&new).await?.is_some() {
                return Err(SqlError::new(
                    code::UNIQUE_VIOLATION,
                    format!(
                        "duplicate key value violates unique constraint \"{}\"",
                        desc.pkey_name()
                    ),
                ));
            }
            txn.insert(new, value)?;
        }
    }
    writer.update_entries(&mut txn, desc, &moved).await?;
    Ok(n)
}

/// A quoted identifier as SQL text.
fn q(name: &str) -> String {
    datafusion::sql::sqlparser::ast::Ident::with_quote('"', name).to_string()
}

/// The target of UPDATE … FROM / DELETE … USING: its table and the name its columns go by.
fn target_of(f: &ast::TableFactor) -> SqlResult<(String, String)> {
    let ast::TableFactor::Table { name, alias, .. } = f else {
        return Err(SqlError::unsupported("this UPDATE/DELETE target"));
    };
    let qual = match alias {
        Some(a) => crate::ddl::ident(&a.name),
        None => crate::ddl::last_ident(name),
    };
    Ok((name.to_string(), qual))
}

fn from_list(tables: &[ast::TableWithJoins]) -> String {
    tables
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `UPDATE t [AS x] SET … FROM … WHERE …`: DataFusion cannot plan it, so Kestrel plans the
/// equivalent join as a query producing the update layout (old key, old indexed columns, every
/// new value) and writes it like any UPDATE. A target row that joins several source rows is
/// updated once (by the first), as PostgreSQL leaves unspecified which.
pub async fn update_from(
    state: &SessionState,
    ctx: &Arc<StmtCtx>,
    desc: &TableDesc,
    u: &ast::Update,
    params: Option<Vec<datafusion::common::ScalarValue>>,
) -> SqlResult<u64> {
    let (sql, indexed) = update_from_sql(desc, u)?;
    let plan = plan_query(state, &sql, params).await?;
    update_plan(state, desc, ctx, &plan, &indexed).await
}

/// The query behind an UPDATE … FROM, and the indexed columns it reads the old values of.
fn update_from_sql(desc: &TableDesc, u: &ast::Update) -> SqlResult<(String, Vec<usize>)> {
    let (table, qual) = target_of(&u.table.relation)?;
    let from = match &u.from {
        Some(ast::UpdateTableFromKind::AfterSet(t) | ast::UpdateTableFromKind::BeforeSet(t)) => t,
        None => return Err(SqlError::internal("UPDATE without FROM")),
    };
    let mut sets: std::collections::HashMap<String, String> = Default::default();
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(SqlError::unsupported("UPDATE … SET (a, b) = …"));
        };
        let name = crate::ddl::last_ident(n);
        let (_, col) = desc
            .column(&name)
            .filter(|(_, c)| !c.hidden)
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        desc.name
                    ),
                )
            })?;
        let value = match &a.value {
            e if crate::ddl::is_default_keyword(e) => crate::upsert::default_sql(col)?.to_string(),
            v => v.to_string(),
        };
        sets.insert(
            name,
            format!("CAST(({value}) AS {})", crate::session::cast_name(&col.ty)),
        );
    }
    let writer = TableWriter::new(desc)?;
    let mut indexed: Vec<usize> = writer.indexed_positions().into_iter().collect();
    indexed.sort();
    let old = |i: usize| format!("{}.{}", q(&qual), q(&desc.columns[i].name));
    let mut list: Vec<String> = desc.primary_key.iter().map(|&i| old(i)).collect();
    list.extend(indexed.iter().map(|&i| old(i)));
    for (i, c) in desc.columns.iter().enumerate() {
        list.push(sets.get(&c.name).cloned().unwrap_or_else(|| old(i)));
    }
    let list: Vec<String> = list
        .into_iter()
        .enumerate()
        .map(|(n, e)| format!("{e} AS \"__kestrel_{n}\""))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {table} AS {}, {}",
        list.join(", "),
        q(&qual),
        from_list(from)
    );
    if let Some(w) = &u.selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    Ok((sql, indexed))
}

/// `DELETE FROM t [AS x] USING … WHERE …`, planned as the join that finds the rows.
pub async fn delete_using(
    state: &SessionState,
    ctx: &Arc<StmtCtx>,
    desc: &TableDesc,
    d: &ast::Delete,
    params: Option<Vec<datafusion::common::ScalarValue>>,
) -> SqlResult<u64> {
    let (sql, qual) = delete_using_sql(desc, d)?;
    let plan = plan_query(state, &sql, params).await?;
    let batches = crate::exec::collect(
        state,
        &plan,
        &ctx.limits,
        Some((ctx.limits.statement_rows_max, "statement_rows_max")),
    )
    .await?;
    let quals = [TableReference::bare(qual)];
    delete_collected(desc, plan.schema(), &quals, &batches, ctx).await
}

/// The query behind a DELETE … USING, and the name the target's columns go by.
fn delete_using_sql(desc: &TableDesc, d: &ast::Delete) -> SqlResult<(String, String)> {
    let tables = match &d.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    };
    let [target] = tables.as_slice() else {
        return Err(SqlError::unsupported("DELETE from several tables"));
    };
    let (table, qual) = target_of(&target.relation)?;
    let using = d
        .using
        .as_deref()
        .ok_or_else(|| SqlError::internal("DELETE without USING"))?;
    let list: Vec<String> = desc
        .columns
        .iter()
        .map(|c| format!("{}.{}", q(&qual), q(&c.name)))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {table} AS {}, {}",
        list.join(", "),
        q(&qual),
        from_list(using)
    );
    if let Some(w) = &d.selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    Ok((sql, qual))
}

/// The query an UPDATE … FROM or DELETE … USING runs (for parameter types at PREPARE).
pub async fn join_dml_plan(
    state: &SessionState,
    desc: &TableDesc,
    s: &ast::Statement,
) -> SqlResult<Option<LogicalPlan>> {
    let sql = match s {
        ast::Statement::Update(u) if u.from.is_some() => update_from_sql(desc, u)?.0,
        ast::Statement::Delete(d) if d.using.is_some() => delete_using_sql(desc, d)?.0,
        _ => return Ok(None),
    };
    plan_query(state, &sql, None).await.map(Some)
}

async fn plan_query(
    state: &SessionState,
    sql: &str,
    params: Option<Vec<datafusion::common::ScalarValue>>,
) -> SqlResult<LogicalPlan> {
    let mut plan = state
        .create_logical_plan(sql)
        .await
        .map_err(from_datafusion)?;
    if let Some(p) = params {
        plan = plan.with_param_values(p).map_err(from_datafusion)?;
    }
    Ok(plan)
}
