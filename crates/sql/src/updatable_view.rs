//! Simple views as targets of UPDATE, DELETE and INSERT (PostgreSQL's auto-updatable views).
//!
//! A view is updatable when its query is `SELECT <items> FROM <one table> [WHERE cond]` with
//! no WITH, DISTINCT, GROUP BY, HAVING, window, LIMIT/OFFSET or set operation. A statement
//! that targets such a view is rewritten onto the base table before planning: view column
//! names become the base columns they select, the view's WHERE is added to an UPDATE's or
//! DELETE's (rows the view does not show are never touched), and an INSERT names the base
//! columns. A view column computed by an expression is read-only (0A000), as in PostgreSQL.
//! Like a view without `WITH CHECK OPTION`, a row may be changed so that the view no longer
//! shows it. RETURNING through a view is not supported. A view that is not updatable fails
//! with 55000, as in PostgreSQL.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, SetExpr, Statement, TableFactor};
use datafusion::sql::sqlparser::parser::Parser;

use crate::catalog::{ViewDesc, ViewMap};
use crate::ddl::{ident, table_name};
use crate::error::{code, SqlError, SqlResult};

/// A view's query reduced to what the rewrite needs.
struct Simple {
    base: ObjectName,
    /// View column name → the base expression it shows.
    columns: HashMap<String, Expr>,
    filter: Option<Expr>,
}

/// Rewrites `stmt` onto the base table when its target is an updatable view.
pub fn rewrite(stmt: &mut Statement, views: &ViewMap, db: &str) -> SqlResult<()> {
    let target = match stmt {
        Statement::Update(u) => match &u.table.relation {
            TableFactor::Table { name, .. } if u.table.joins.is_empty() => name.clone(),
            _ => return Ok(()),
        },
        Statement::Delete(d) => match &d.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => {
                match t.as_slice() {
                    [only] if only.joins.is_empty() => match &only.relation {
                        TableFactor::Table { name, .. } => name.clone(),
                        _ => return Ok(()),
                    },
                    _ => return Ok(()),
                }
            }
        },
        Statement::Insert(i) => match &i.table {
            ast::TableObject::TableName(n) => n.clone(),
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let Ok(key) = table_name(&target, db) else {
        return Ok(());
    };
    let Some(view) = views.get(&key) else {
        return Ok(());
    };
    let verb = match stmt {
        Statement::Insert(_) => "insert into",
        Statement::Delete(_) => "delete from",
        _ => "update",
    };
    let simple = simple(view, verb)?;
    let returning = match stmt {
        Statement::Update(u) => u.returning.is_some(),
        Statement::Delete(d) => d.returning.is_some(),
        Statement::Insert(i) => i.returning.is_some(),
        _ => false,
    };
    if returning {
        return Err(SqlError::unsupported("RETURNING on a view"));
    }
    match stmt {
        Statement::Update(u) => update(u, view, &simple),
        Statement::Delete(d) => {
            let (ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t)) =
                &mut d.from;
            let mut names = vec![view.name.clone()];
            if let Some(TableFactor::Table { name, alias, .. }) =
                t.first_mut().map(|t| &mut t.relation)
            {
                if let Some(a) = alias.take() {
                    names.push(ident(&a.name));
                }
                *name = simple.base.clone();
            }
            d.selection = restrict(d.selection.take(), &simple, &names)?;
            Ok(())
        }
        Statement::Insert(i) => insert(i, view, &simple),
        _ => Ok(()),
    }
}

fn not_updatable(view: &ViewDesc, verb: &str, why: &str) -> SqlError {
    SqlError::new(
        code::OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("cannot {verb} view \"{}\"", view.name),
    )
    .with_detail(why.to_string())
}

/// The view's query as a [`Simple`], or 0A000 when it is not updatable.
fn simple(view: &ViewDesc, verb: &str) -> SqlResult<Simple> {
    let mut stmts = Parser::parse_sql(&crate::dialect::KestrelDialect, &view.query)
        .map_err(|e| SqlError::internal(format!("stored view {}: {e}", view.name)))?;
    // The statement around it is already rewritten; the view's query gets the same rewrites.
    for s in stmts.iter_mut() {
        crate::query_rewrite::rewrite(s);
        crate::pgcompat::rewrite_pg_syntax(s);
    }
    let Some(Statement::Query(q)) = stmts.first() else {
        return Err(SqlError::internal(format!(
            "view {} is not a query",
            view.name
        )));
    };
    let single =
        "Views that do not select from a single table or view are not automatically updatable.";
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return Err(not_updatable(
            view,
            verb,
            "Views containing WITH, LIMIT or OFFSET are not automatically updatable.",
        ));
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return Err(not_updatable(view, verb, single));
    };
    let grouped = !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if s.distinct.is_some() || grouped || s.having.is_some() || !s.named_window.is_empty() {
        return Err(not_updatable(
            view,
            verb,
            "Views containing DISTINCT, GROUP BY or HAVING are not automatically updatable.",
        ));
    }
    let base = match s.from.as_slice() {
        [only] if only.joins.is_empty() => match &only.relation {
            TableFactor::Table {
                name, alias: None, ..
            } => name.clone(),
            _ => return Err(not_updatable(view, verb, single)),
        },
        _ => return Err(not_updatable(view, verb, single)),
    };
    let computed = s.projection.iter().any(|item| match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            not_row_wise(e)
        }
        _ => false,
    });
    if computed || s.selection.as_ref().is_some_and(not_row_wise) {
        return Err(not_updatable(
            view,
            verb,
            "Views that return aggregate, window or set-returning functions are not automatically updatable.",
        ));
    }
    let mut columns = HashMap::new();
    for (i, item) in s.projection.iter().enumerate() {
        let (expr, own) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e.clone(), crate::pgcompat::column_name(e)),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(ident(alias))),
            _ => {
                return Err(not_updatable(
                    view,
                    verb,
                    "Views with * in their select list are not automatically updatable here.",
                ))
            }
        };
        let name = view.columns.get(i).cloned().or(own);
        if let Some(n) = name {
            columns.insert(n, expr);
        }
    }
    Ok(Simple {
        base,
        columns,
        filter: s.selection.clone(),
    })
}

/// The base column a view column shows, if it is a plain column reference.
fn base_column(simple: &Simple, view_column: &str) -> Option<ast::Ident> {
    match simple.columns.get(view_column)? {
        Expr::Identifier(i) => Some(i.clone()),
        Expr::CompoundIdentifier(p) => p.last().cloned(),
        _ => None,
    }
}

/// `e` (a WHERE or SET expression of a statement on the view) with references to view
/// columns replaced by the expressions they show. `names` are what the statement calls the
/// view (its name and alias). Names that are not view columns fail as in PostgreSQL; a
/// subquery is refused (0A000) rather than risk resolving its names against the view.
fn mapped(mut e: Expr, simple: &Simple, names: &[String]) -> SqlResult<Expr> {
    let mut subquery = false;
    let _ = ast::visit_expressions(&e, |x| {
        subquery |= matches!(
            x,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        );
        ControlFlow::<()>::Continue(())
    });
    if subquery {
        return Err(SqlError::unsupported("a subquery in DML on a view"));
    }
    let mut err = None;
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        let name = match x {
            Expr::Identifier(i) => ident(i),
            Expr::CompoundIdentifier(p) if p.len() == 2 && names.contains(&ident(&p[0])) => {
                ident(&p[1])
            }
            Expr::CompoundIdentifier(p) => {
                err = Some(SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!(
                        "missing FROM-clause entry for table \"{}\"",
                        p.first().map(ident).unwrap_or_default()
                    ),
                ));
                return ControlFlow::Break(());
            }
            _ => return ControlFlow::Continue(()),
        };
        match simple.columns.get(&name) {
            Some(target) => *x = Expr::Nested(Box::new(target.clone())),
            None => {
                err = Some(SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!("column \"{name}\" does not exist"),
                ));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match err {
        Some(e) => Err(e),
        None => Ok(e),
    }
}

/// A DML statement's WHERE, over the base table and limited to the rows the view shows.
fn restrict(selection: Option<Expr>, simple: &Simple, names: &[String]) -> SqlResult<Option<Expr>> {
    let own = selection.map(|w| mapped(w, simple, names)).transpose()?;
    Ok(match (own, simple.filter.clone()) {
        (Some(a), Some(b)) => Some(Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(a))),
            op: ast::BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(b))),
        }),
        (a, b) => a.or(b),
    })
}

/// The names a statement calls its target view by: the view's name and its alias.
fn target_names(view: &ViewDesc, relation: &TableFactor) -> Vec<String> {
    let mut names = vec![view.name.clone()];
    if let TableFactor::Table { alias: Some(a), .. } = relation {
        names.push(ident(&a.name));
    }
    names
}

/// Calls that, besides the aggregates query rewriting knows
/// ([`crate::query_rewrite::AGGREGATES`]), make a select item a computed aggregate, window or
/// set-returning value.
const NOT_ROW_WISE: &[&str] = &[
    "bit_and",
    "bit_or",
    "bit_xor",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "first_value",
    "last_value",
    "nth_value",
    "grouping",
    "generate_series",
    "unnest",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_object_keys",
    "regexp_split_to_table",
    "generate_subscripts",
];

/// Whether `e` holds an aggregate, window or set-returning call (outside subqueries too).
fn not_row_wise(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(ident);
            found |= f.over.is_some()
                || f.filter.is_some()
                || !f.within_group.is_empty()
                || name.is_some_and(|n| {
                    crate::query_rewrite::AGGREGATES.contains(&n.as_str())
                        || NOT_ROW_WISE.contains(&n.as_str())
                });
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn read_only(view: &ViewDesc, column: &str) -> SqlError {
    SqlError::new(
        code::FEATURE_NOT_SUPPORTED,
        format!(
            "cannot update column \"{column}\" of view \"{}\"",
            view.name
        ),
    )
    .with_detail("View columns that are not columns of their base relation are not updatable.")
}

fn update(u: &mut ast::Update, view: &ViewDesc, simple: &Simple) -> SqlResult<()> {
    if u.from.is_some() {
        return Err(SqlError::unsupported("UPDATE … FROM on a view"));
    }
    let names = target_names(view, &u.table.relation);
    for a in u.assignments.iter_mut() {
        let ast::AssignmentTarget::ColumnName(n) = &mut a.target else {
            return Err(SqlError::unsupported("assigning a tuple of view columns"));
        };
        let col = crate::ddl::last_ident(n);
        let base = base_column(simple, &col).ok_or_else(|| read_only(view, &col))?;
        *n = ObjectName::from(vec![base]);
        a.value = mapped(a.value.clone(), simple, &names)?;
    }
    if let TableFactor::Table { name, alias, .. } = &mut u.table.relation {
        *name = simple.base.clone();
        *alias = None;
    }
    u.selection = restrict(u.selection.take(), simple, &names)?;
    Ok(())
}

fn insert(i: &mut ast::Insert, view: &ViewDesc, simple: &Simple) -> SqlResult<()> {
    if i.columns.is_empty() {
        return Err(SqlError::unsupported(
            "INSERT into a view without a column list",
        ));
    }
    for c in i.columns.iter_mut() {
        let name = crate::ddl::last_ident(c);
        let base = base_column(simple, &name).ok_or_else(|| read_only(view, &name))?;
        *c = ObjectName::from(vec![base]);
    }
    i.table = ast::TableObject::TableName(simple.base.clone());
    Ok(())
}
