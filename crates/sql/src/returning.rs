//! `INSERT/UPDATE/DELETE … RETURNING`.
//!
//! DataFusion's planner rejects RETURNING, so the clause is taken off the statement, the DML
//! runs as usual while its write path keeps the rows it wrote (`StmtCtx::capture`: new rows for
//! INSERT and UPDATE, the deleted rows for DELETE), and the RETURNING list is then evaluated
//! by DataFusion over those rows, as a projection of a one-table relation named like the
//! target (or its alias), so `t.col`, `*` and any expression work.
//!
//! Every DML statement passes through [`split`] before planning, which also works around
//! DataFusion ignoring a DELETE's table alias.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{col, Expr};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Expr as SqlExpr, FromTable, ObjectName, SelectItem,
    Statement as SqlStatement, TableFactor, TableObject,
};

use crate::catalog::TableDesc;
use crate::datum::{array_from_datums, Datum};
use crate::ddl::ident;
use crate::error::{from_datafusion, SqlError, SqlResult};

/// A DML statement's RETURNING list, its target table and the name its columns go by.
pub struct Returning {
    pub items: Vec<SelectItem>,
    pub table: ObjectName,
    pub alias: Option<String>,
    /// The command tag's verb: `INSERT 0`, `UPDATE` or `DELETE`.
    pub verb: &'static str,
}

fn table_factor(f: &TableFactor) -> Option<(ObjectName, Option<String>)> {
    match f {
        TableFactor::Table { name, alias, .. } => {
            Some((name.clone(), alias.as_ref().map(|a| ident(&a.name))))
        }
        _ => None,
    }
}

/// DataFusion's DELETE planner ignores a table alias (`DELETE FROM t AS x WHERE x.id = 1`
/// fails to resolve `x.id`), so the alias is removed and `x.col` rewritten to `t.col`.
fn unalias_delete(s: &mut SqlStatement) {
    let SqlStatement::Delete(d) = s else { return };
    let tables = match &mut d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [only] = tables.as_mut_slice() else {
        return;
    };
    let TableFactor::Table { name, alias, .. } = &mut only.relation else {
        return;
    };
    let Some(a) = alias.take() else { return };
    if !a.columns.is_empty() {
        *alias = Some(a);
        return;
    }
    let Some(table) = name.0.last().and_then(|p| p.as_ident()).cloned() else {
        *alias = Some(a);
        return;
    };
    let alias_name = ident(&a.name);
    if let SqlStatement::Delete(d) = &mut *s {
        for item in d.returning.iter_mut().flatten() {
            if let SelectItem::QualifiedWildcard(
                datafusion::sql::sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                _,
            ) = item
            {
                if n.0.len() == 1 && n.0[0].as_ident().map(ident).as_deref() == Some(&alias_name) {
                    *n = ObjectName::from(vec![table.clone()]);
                }
            }
        }
    }
    let _ = visit_expressions_mut(s, |e| {
        if let SqlExpr::CompoundIdentifier(parts) = e {
            if parts.len() == 2 && ident(&parts[0]) == alias_name {
                parts[0] = table.clone();
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Splits RETURNING off `stmt`: the statement to plan, and the clause (if any).
pub fn split(stmt: &DFStatement) -> SqlResult<(DFStatement, Option<Returning>)> {
    let DFStatement::Statement(s) = stmt else {
        return Ok((stmt.clone(), None));
    };
    let mut s = s.as_ref().clone();
    unalias_delete(&mut s);
    let found = match &mut s {
        SqlStatement::Insert(i) => i.returning.take().map(|items| {
            let table = match &i.table {
                TableObject::TableName(n) => Some(n.clone()),
                _ => None,
            };
            let alias = i.table_alias.as_ref().map(|a| ident(&a.alias));
            (items, table.map(|t| (t, alias)), "INSERT 0")
        }),
        SqlStatement::Update(u) => u
            .returning
            .take()
            .map(|items| (items, table_factor(&u.table.relation), "UPDATE")),
        SqlStatement::Delete(d) => d.returning.take().map(|items| {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let target = tables.first().and_then(|t| table_factor(&t.relation));
            (items, target, "DELETE")
        }),
        _ => None,
    };
    let Some((items, target, verb)) = found else {
        return Ok((stmt.clone(), None));
    };
    let (table, alias) =
        target.ok_or_else(|| SqlError::unsupported("RETURNING on this kind of target"))?;
    Ok((
        DFStatement::Statement(Box::new(s)),
        Some(Returning {
            items,
            table,
            alias,
            verb,
        }),
    ))
}

impl Returning {
    /// Evaluates the RETURNING list over `rows` (full rows of `desc`).
    pub async fn evaluate(
        &self,
        state: &SessionState,
        desc: &TableDesc,
        rows: &[Vec<Datum>],
    ) -> SqlResult<(SchemaRef, Vec<RecordBatch>)> {
        let visible = desc.visible_columns(false);
        let schema = desc.arrow_schema(false);
        let columns: Vec<ArrayRef> = visible
            .iter()
            .map(|&i| {
                let vals: Vec<Datum> = rows.iter().map(|r| r[i].clone()).collect();
                array_from_datums(&desc.columns[i].ty, &vals)
            })
            .collect::<SqlResult<_>>()?;
        let batch = RecordBatch::try_new(schema, columns)
            .map_err(|e| SqlError::internal(format!("RETURNING rows: {e}")))?;
        let name = self.alias.clone().unwrap_or_else(|| desc.name.clone());
        let ctx = SessionContext::new_with_state(state.clone());
        let df = ctx
            .read_batch(batch)
            .and_then(|df| df.alias(&name))
            .map_err(from_datafusion)?;
        let mut exprs: Vec<Expr> = Vec::new();
        for item in &self.items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    exprs.push(df.parse_sql_expr(&e.to_string()).map_err(from_datafusion)?)
                }
                SelectItem::ExprWithAlias { expr, alias } => exprs.push(
                    df.parse_sql_expr(&expr.to_string())
                        .map_err(from_datafusion)?
                        .alias(ident(alias)),
                ),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for &i in &visible {
                        exprs.push(col(format!("{name}.{}", desc.columns[i].name)));
                    }
                }
                other => {
                    return Err(SqlError::unsupported(format!("RETURNING item {other}")));
                }
            }
        }
        let df = df.select(exprs).map_err(from_datafusion)?;
        let out_schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(from_datafusion)?;
        Ok((out_schema, batches))
    }
}
