//! CREATE TABLE and DROP TABLE: catalog changes inside the statement's transaction.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateTable, Ident, ObjectName, TableConstraint,
};
use kestrel_kv::keys::table_span;
use kestrel_kv::{Kv, Txn};

use crate::catalog::{self, CatalogSnapshot, CheckDesc, ColumnDesc, TableDesc, DEFAULT_SCHEMA};
use crate::datum::Datum;
use crate::error::{code, SqlError, SqlResult};
use crate::types::SqlType;

/// The most columns a table may have (as in PostgreSQL); column ids are `u16`.
pub const COLUMNS_MAX: usize = 1600;

/// Work that may only run once the statement's transaction has committed.
#[derive(Debug)]
pub enum AfterCommit {
    /// Drop the data of a dropped table.
    ClearSpan(Vec<u8>, Vec<u8>),
}

/// An identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// `(schema, table)` of a possibly qualified name in the session's database.
pub fn table_name(name: &ObjectName, db: &str) -> SqlResult<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(ident)
                .ok_or_else(|| SqlError::syntax(format!("invalid name {name}")))
        })
        .collect::<SqlResult<_>>()?;
    match parts.as_slice() {
        [t] => Ok((DEFAULT_SCHEMA.to_string(), t.clone())),
        [s, t] => Ok((s.clone(), t.clone())),
        [d, s, t] if d == db => Ok((s.clone(), t.clone())),
        [d, _, _] => Err(SqlError::unsupported(format!(
            "cross-database reference to \"{d}\""
        ))),
        _ => Err(SqlError::syntax(format!(
            "improper qualified name (too many dotted names): {name}"
        ))),
    }
}

/// Evaluates a constant expression to a value of `ty` (DEFAULT clauses).
pub type ConstEval<'a> =
    &'a (dyn Fn(&ast::Expr, &SqlType) -> futures::future::BoxFuture<'a, SqlResult<Datum>> + Sync);

pub struct DdlCtx<'a> {
    pub kv: &'a Arc<Kv>,
    /// For compiling expressions (CHECK constraints) against a table.
    pub state: &'a datafusion::execution::SessionState,
    pub db: &'a str,
    pub snapshot: &'a CatalogSnapshot,
    pub eval: ConstEval<'a>,
}

fn reject_volatile(e: &ast::Expr) -> SqlResult<()> {
    let mut bad = None;
    let _ = ast::visit_expressions(e, |x| {
        if matches!(
            x,
            ast::Expr::Function(_)
                | ast::Expr::Subquery(_)
                | ast::Expr::Identifier(_)
                | ast::Expr::CompoundIdentifier(_)
        ) {
            bad = Some(x.to_string());
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    match bad {
        Some(x) => Err(SqlError::unsupported(format!(
            "non-constant DEFAULT expression {x}"
        ))),
        None => Ok(()),
    }
}

/// The descriptor of a column definition, and whether it declares itself the primary key.
/// Column CHECK constraints are appended to `checks` (named `{table}_{column}_check`).
pub async fn column_desc(
    ddl: &DdlCtx<'_>,
    table: &str,
    c: &ast::ColumnDef,
    id: u16,
    checks: &mut Vec<CheckDesc>,
) -> SqlResult<(ColumnDesc, bool)> {
    let ty = SqlType::from_ast(&c.data_type)?;
    let mut col = ColumnDesc {
        id,
        name: ident(&c.name),
        ty,
        nullable: true,
        default: None,
        hidden: false,
    };
    let mut is_pk = false;
    for opt in &c.options {
        match &opt.option {
            ColumnOption::Null => {}
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Default(e) => {
                reject_volatile(e)?;
                let v = (ddl.eval)(e, &col.ty).await?;
                col.default = Some((e.to_string(), v));
            }
            ColumnOption::PrimaryKey(_) => is_pk = true,
            ColumnOption::Check(ck) => {
                let name = match opt.name.as_ref().or(ck.name.as_ref()) {
                    Some(n) => ident(n),
                    None => unique_check_name(checks, &format!("{table}_{}_check", col.name)),
                };
                checks.push(CheckDesc {
                    name,
                    expr: ck.expr.to_string(),
                });
            }
            other => return Err(SqlError::unsupported(format!("column constraint {other}"))),
        }
    }
    Ok((col, is_pk))
}

/// The column positions a PRIMARY KEY constraint names, in key order.
pub fn pk_indexes(p: &ast::PrimaryKeyConstraint, columns: &[ColumnDesc]) -> SqlResult<Vec<usize>> {
    let mut idx = Vec::new();
    for ic in &p.columns {
        let ast::Expr::Identifier(id) = &ic.column.expr else {
            return Err(SqlError::unsupported(format!(
                "primary key expression {}",
                ic.column.expr
            )));
        };
        let n = ident(id);
        let pos = columns
            .iter()
            .position(|c| c.name == n && !c.hidden)
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!("column \"{n}\" named in key does not exist"),
                )
            })?;
        if idx.contains(&pos) {
            return Err(SqlError::new(
                code::DUPLICATE_COLUMN,
                format!("column \"{n}\" appears twice in primary key constraint"),
            ));
        }
        idx.push(pos);
    }
    Ok(idx)
}

/// `base`, or `base1`, `base2` … if taken (PostgreSQL's naming of constraints).
pub fn unique_check_name(checks: &[CheckDesc], base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 0;
    while checks.iter().any(|c| c.name == name) {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

pub async fn create_table(ddl: &DdlCtx<'_>, txn: &mut Txn, ct: &CreateTable) -> SqlResult<String> {
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(SqlError::unsupported("CREATE TABLE … AS / LIKE / CLONE"));
    }
    if ct.temporary {
        return Err(SqlError::unsupported("temporary tables"));
    }
    let (schema, name) = table_name(&ct.name, ddl.db)?;
    if schema != DEFAULT_SCHEMA {
        return Err(SqlError::new(
            code::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        ));
    }
    if ddl.snapshot.table(&schema, &name).is_some() {
        if ct.if_not_exists {
            return Ok("CREATE TABLE".into());
        }
        return Err(SqlError::new(
            code::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ct.columns.len() > COLUMNS_MAX {
        return Err(SqlError::new(
            code::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {COLUMNS_MAX} columns"),
        ));
    }
    let mut columns: Vec<ColumnDesc> = Vec::new();
    let mut pk: Option<Vec<usize>> = None;
    let mut set_pk = |cols: Vec<usize>| -> SqlResult<()> {
        if pk.is_some() {
            return Err(SqlError::new(
                code::INVALID_TABLE_DEFINITION,
                format!("multiple primary keys for table \"{name}\" are not allowed"),
            ));
        }
        pk = Some(cols);
        Ok(())
    };
    let mut checks = Vec::new();
    for (i, c) in ct.columns.iter().enumerate() {
        let (col, is_pk) = column_desc(ddl, &name, c, i as u16 + 1, &mut checks).await?;
        if columns.iter().any(|x| x.name == col.name) {
            return Err(SqlError::new(
                code::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once", col.name),
            ));
        }
        if is_pk {
            set_pk(vec![i])?;
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        match tc {
            TableConstraint::PrimaryKey(p) => set_pk(pk_indexes(p, &columns)?)?,
            TableConstraint::Check(ck) => {
                let cname = match &ck.name {
                    Some(n) => ident(n),
                    None => unique_check_name(&checks, &format!("{name}_check")),
                };
                checks.push(CheckDesc {
                    name: cname,
                    expr: ck.expr.to_string(),
                });
            }
            other => return Err(SqlError::unsupported(format!("table constraint {other}"))),
        }
    }
    if columns.is_empty() {
        return Err(SqlError::unsupported("tables without columns"));
    }
    let primary_key = match pk {
        Some(p) => p,
        None => {
            let mut hidden = "rowid".to_string();
            while columns.iter().any(|c| c.name == hidden) {
                hidden.push('_');
            }
            columns.push(ColumnDesc {
                id: columns.len() as u16 + 1,
                name: hidden,
                ty: SqlType::Int8,
                nullable: false,
                default: None,
                hidden: true,
            });
            vec![columns.len() - 1]
        }
    };
    for &i in &primary_key {
        columns[i].nullable = false;
    }
    let id = catalog::allocate_id(txn).await?;
    let next_column_id = columns.len() as u16 + 1;
    let desc = TableDesc {
        id,
        db_id: ddl.snapshot.db_id(),
        schema,
        name,
        columns,
        primary_key,
        next_column_id,
        checks,
    };
    // Compiling the checks now reports unknown columns or non-boolean expressions at once.
    crate::check::Checks::compile(ddl.state, &desc)?;
    // The table's own range exists before the catalog names it; if this transaction aborts the
    // empty range stays behind unused (table ids are never reused).
    let (start, end) = table_span(id);
    ddl.kv.split_out(&start, &end).await?;
    catalog::put_table(txn, &desc)?;
    Ok("CREATE TABLE".into())
}

pub fn drop_table(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    for n in names {
        let (schema, name) = table_name(n, ddl.db)?;
        match ddl.snapshot.table(&schema, &name) {
            None if if_exists => continue,
            None => {
                return Err(SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("table \"{name}\" does not exist"),
                ))
            }
            Some(desc) => {
                catalog::delete_table(txn, desc)?;
                let (s, e) = table_span(desc.id);
                after.push(AfterCommit::ClearSpan(s, e));
            }
        }
    }
    Ok("DROP TABLE".into())
}
