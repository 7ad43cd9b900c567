//! PostgreSQL semantics DataFusion lacks, added through its extension traits.
//!
//! * `text → bytea` casts: PostgreSQL parses bytea input (`'\x0102'` is two bytes, escape
//!   format `'a\\000'` is `a` and a zero byte); Arrow's cast copies the UTF-8 bytes. The
//!   [`PgCastRule`] analyzer rule (run after type coercion) replaces every such cast with the
//!   [`ByteaIn`] function.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{code, SqlError};

/// Decodes PostgreSQL bytea text input (hex or escape format).
pub fn parse_bytea(s: &str) -> Result<Vec<u8>, SqlError> {
    let bad = || {
        SqlError::new(
            code::INVALID_TEXT_REPRESENTATION,
            "invalid input syntax for type bytea",
        )
    };
    if let Some(hex) = s.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(SqlError::new(
                code::INVALID_PARAMETER_VALUE,
                "invalid hexadecimal data: odd number of digits",
            ));
        }
        return digits
            .chunks(2)
            .map(|p| {
                let h = std::str::from_utf8(p).map_err(|_| bad())?;
                u8::from_str_radix(h, 16).map_err(|_| {
                    SqlError::new(
                        code::INVALID_PARAMETER_VALUE,
                        format!("invalid hexadecimal digit: \"{}\"", h),
                    )
                })
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            && b[i + 1] <= b'3'
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByteaIn {
    signature: Signature,
}

impl ScalarUDFImpl for ByteaIn {
    fn name(&self) -> &str {
        "kestrel_bytea_in"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = cast(&arrays[0], &DataType::Utf8)?;
        let strings = input
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .ok_or_else(|| SqlError::internal("bytea input is not text").into_datafusion())?;
        let mut b = BinaryBuilder::with_capacity(strings.len(), 16 * strings.len());
        for i in 0..strings.len() {
            if strings.is_null(i) {
                b.append_null();
            } else {
                b.append_value(parse_bytea(strings.value(i)).map_err(SqlError::into_datafusion)?);
            }
        }
        let out: ArrayRef = Arc::new(b.finish());
        Ok(ColumnarValue::Array(out))
    }
}

static BYTEA_IN: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::from(ByteaIn {
        signature: Signature::any(1, Volatility::Immutable),
    }))
});

#[derive(Debug, Default)]
pub struct PgCastRule;

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn rewrite(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let inner = match &e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if field.data_type() == &DataType::Binary =>
        {
            expr
        }
        _ => return Ok(Transformed::no(e)),
    };
    match inner.get_type(schema) {
        Ok(t) if is_text(&t) => Ok(Transformed::yes(
            BYTEA_IN.call(vec![inner.as_ref().clone()]),
        )),
        _ => Ok(Transformed::no(e)),
    }
}

impl AnalyzerRule for PgCastRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let mut schema = DFSchema::empty();
            for input in p.inputs() {
                schema.merge(input.schema());
            }
            p.map_expressions(|e| e.transform_up(|x| rewrite(x, &schema)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kestrel_pg_casts"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_input_formats() {
        assert_eq!(parse_bytea("\\x0102ff").unwrap(), vec![1, 2, 255]);
        assert_eq!(
            parse_bytea("ab\\000\\\\").unwrap(),
            vec![b'a', b'b', 0, b'\\']
        );
        assert!(parse_bytea("\\x0").is_err());
        assert!(parse_bytea("\\q").is_err());
    }
}

/// Statement rewrites for PostgreSQL syntax DataFusion reads differently, applied to the
/// AST before planning:
/// * `FROM generate_series(1, 3) g` / `FROM unnest(a) u`: PostgreSQL names the single output
///   column after the alias (`g`, `u`); DataFusion would call it `value`. The alias gets that
///   column name written out (`g(g)`).
pub fn rewrite_statement(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{TableAliasColumnDef, TableFactor, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Aliases;
    impl VisitorMut for Aliases {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            let alias = match f {
                TableFactor::Table {
                    name,
                    args: Some(_),
                    alias: Some(alias),
                    ..
                } if name.0.len() == 1
                    && name.0[0].as_ident().is_some_and(|i| {
                        ["generate_series", "unnest"].contains(&i.value.to_lowercase().as_str())
                    }) =>
                {
                    alias
                }
                TableFactor::UNNEST {
                    alias: Some(alias),
                    array_exprs,
                    with_offset: false,
                    with_ordinality: false,
                    ..
                } if array_exprs.len() == 1 => alias,
                _ => return ControlFlow::Continue(()),
            };
            if alias.columns.is_empty() {
                alias.columns = vec![TableAliasColumnDef {
                    name: alias.name.clone(),
                    data_type: None,
                }];
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Aliases);
    if let datafusion::sql::sqlparser::ast::Statement::Query(q) = stmt {
        name_select_items(q);
    }
}

/// The column name PostgreSQL gives an unaliased select-list expression (its
/// `FigureColname`), if it gives one other than `?column?`.
fn figure_colname(e: &datafusion::sql::sqlparser::ast::Expr) -> Option<String> {
    use datafusion::sql::sqlparser::ast::Expr;
    let fold = |i: &datafusion::sql::sqlparser::ast::Ident| match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    };
    match e {
        Expr::Identifier(i) => Some(fold(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(fold),
        Expr::Cast {
            expr, data_type, ..
        } => figure_colname(expr).or_else(|| {
            let t = data_type.to_string().to_lowercase();
            Some(match t.as_str() {
                "int" | "integer" => "int4".to_string(),
                "bigint" => "int8".into(),
                "smallint" => "int2".into(),
                "boolean" | "bool" => "bool".into(),
                "real" => "float4".into(),
                "double precision" | "float" => "float8".into(),
                _ if t.starts_with("varchar") || t.starts_with("character varying") => {
                    "varchar".into()
                }
                _ if t.starts_with("numeric") || t.starts_with("decimal") => "numeric".into(),
                _ if t.contains('(') || t.contains(' ') => return None,
                _ => t,
            })
        }),
        Expr::Nested(inner) => figure_colname(inner),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Subquery(q) => match q.body.as_ref() {
            datafusion::sql::sqlparser::ast::SetExpr::Select(s) => match s.projection.first() {
                Some(datafusion::sql::sqlparser::ast::SelectItem::ExprWithAlias {
                    alias, ..
                }) => Some(fold(alias)),
                Some(datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e)) => {
                    figure_colname(e)
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Gives the unaliased items of a query's select list PostgreSQL's column names (so clients
/// see `count`, `nextval`, `x` for `x::bigint` instead of DataFusion's expression text).
/// A name another output column already has is left alone (DataFusion needs unique names).
pub fn name_select_items(q: &mut datafusion::sql::sqlparser::ast::Query) {
    use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr};
    let mut body = q.body.as_mut();
    let select = loop {
        match body {
            SetExpr::Select(s) => break s,
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return,
        }
    };
    // Names the output already has: plain columns and explicit aliases come first.
    let mut taken: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::UnnamedExpr(e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => {
                figure_colname(e)
            }
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    let mut names: Vec<Option<String>> = Vec::new();
    for item in &select.projection {
        let n = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => None,
            // PostgreSQL says `?column?`; repeated, that is a duplicate DataFusion rejects.
            SelectItem::UnnamedExpr(e) => Some(figure_colname(e).unwrap_or("?column?".into())),
            _ => None,
        };
        names.push(n);
    }
    for (item, name) in select.projection.iter_mut().zip(names) {
        let Some(mut name) = name else { continue };
        // PostgreSQL allows duplicate output names, DataFusion does not: a repeated name
        // becomes the expression's text, then gets a number.
        if taken.contains(&name) {
            if let SelectItem::UnnamedExpr(e) = item {
                name = e.to_string();
            }
            let base = name.clone();
            let mut n = 1;
            while taken.contains(&name) {
                n += 1;
                name = format!("{base}_{n}");
            }
        }
        taken.push(name.clone());
        if let SelectItem::UnnamedExpr(e) = item {
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', name),
            };
        }
    }
}

/// How many view references one statement may expand (nested views included).
pub const VIEW_EXPANSIONS_MAX: usize = 256;

/// Replaces every reference to a view with the view's query as a derived table named like
/// the view (so `v.col` and aliases work), views inside views included. Names a CTE of the
/// statement defines are left alone. A view that expands without end is 54001.
pub fn expand_views(
    stmt: &mut datafusion::sql::sqlparser::ast::Statement,
    views: &crate::catalog::ViewMap,
    db: &str,
) -> Result<(), SqlError> {
    use datafusion::sql::sqlparser::ast::{
        Ident, Query, TableAlias, TableAliasColumnDef, TableFactor, Visit, VisitMut, Visitor,
        VisitorMut,
    };
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;
    if views.is_empty() {
        return Ok(());
    }
    struct Ctes(Vec<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(w) = &q.with {
                self.0.extend(
                    w.cte_tables
                        .iter()
                        .map(|c| crate::ddl::ident(&c.alias.name)),
                );
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(Vec::new());
    let _ = Visit::visit(&*stmt, &mut ctes);
    struct Expand<'a> {
        views: &'a crate::catalog::ViewMap,
        db: &'a str,
        ctes: Vec<String>,
        count: usize,
        error: Option<SqlError>,
    }
    impl VisitorMut for Expand<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } = f
            else {
                return ControlFlow::Continue(());
            };
            let Ok((schema, table)) = crate::ddl::table_name(name, self.db) else {
                return ControlFlow::Continue(());
            };
            if name.0.len() == 1 && self.ctes.contains(&table) {
                return ControlFlow::Continue(());
            }
            let Some(view) = self.views.get(&(schema, table.clone())) else {
                return ControlFlow::Continue(());
            };
            self.count += 1;
            if self.count > VIEW_EXPANSIONS_MAX {
                self.error = Some(SqlError::new(
                    code::STATEMENT_TOO_COMPLEX,
                    format!("view \"{table}\" expands more than {VIEW_EXPANSIONS_MAX} times"),
                ));
                return ControlFlow::Break(());
            }
            let query = match Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&view.query)
                .and_then(|mut p| p.parse_query())
            {
                Ok(q) => q,
                Err(e) => {
                    self.error = Some(SqlError::internal(format!("stored view {table}: {e}")));
                    return ControlFlow::Break(());
                }
            };
            let alias = alias.take().unwrap_or(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', &view.name),
                columns: vec![],
                at: None,
            });
            let mut alias = alias;
            if alias.columns.is_empty() && !view.columns.is_empty() {
                alias.columns = view
                    .columns
                    .iter()
                    .map(|c| TableAliasColumnDef {
                        name: Ident::with_quote('"', c),
                        data_type: None,
                    })
                    .collect();
            }
            *f = TableFactor::Derived {
                lateral: false,
                subquery: query,
                alias: Some(alias),
                sample: None,
            };
            ControlFlow::Continue(())
        }
    }
    let mut ex = Expand {
        views,
        db,
        ctes: ctes.0,
        count: 0,
        error: None,
    };
    let _ = VisitMut::visit(stmt, &mut ex);
    match ex.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
