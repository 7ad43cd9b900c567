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
    let schema = dml.input.schema();
    let mut key_cols = Vec::new();
    for &i in &desc.primary_key {
        let name = &desc.columns[i].name;
        let idx = column_index(schema, quals, name)
            .ok_or_else(|| SqlError::internal(format!("DELETE plan lacks key column {name}")))?;
        key_cols.push((i, idx));
    }
    let batches = crate::exec::collect(
        state,
        &dml.input,
        &ctx.limits,
        Some((ctx.limits.statement_rows_max, "statement_rows_max")),
    )
    .await?;
    let writer = TableWriter::new(desc);
    let full = if ctx.returning.is_some() || !writer.is_empty() {
        full_rows(desc, schema, quals, &batches)?
    } else {
        Vec::new()
    };
    let mut keys = HashSet::new();
    for b in &batches {
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
    let writer = TableWriter::new(desc);
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
    let k_old = k + indexed.len();
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
    let batches = crate::exec::collect(
        state,
        &plan,
        &ctx.limits,
        Some((ctx.limits.statement_rows_max, "statement_rows_max")),
    )
    .await?;
    let checks = crate::check::Checks::compile(state, desc)?;
    let mut checked: Vec<Vec<Datum>> = Vec::new();
    let mut writes: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut new_keys = HashSet::new();
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
            validate_row(desc, &mut row)?;
            if !checks.is_empty() || ctx.returning.is_some() {
                checked.push(row.clone());
            }
            let new_key = encode_key(desc, &row)?;
            if !new_keys.insert(new_key.clone()) {
                return Err(duplicate_key_error(desc, &row));
            }
            if !writer.is_empty() {
                moved.push((old_row, old_key.clone(), row.clone(), new_key.clone()));
            }
            writes.push((old_key, new_key, encode_value(desc, &row)));
        }
    }
    checks.verify(desc, &checked)?;
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
