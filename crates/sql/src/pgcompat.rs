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

use datafusion::sql::sqlparser::ast;

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

/// `kestrel_numeric(x)`: `x` (already cast to numeric) unchanged, its result field tagged as
/// unconstrained `numeric`, so the wire prints it without the storage scale's trailing
/// zeros (`3::numeric` is `3`, as in PostgreSQL). `x::numeric` is rewritten to it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NumericTag {
    signature: Signature,
}

impl ScalarUDFImpl for NumericTag {
    fn name(&self) -> &str {
        "kestrel_numeric"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        let ty = args
            .arg_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(Arc::new(
            datafusion::arrow::datatypes::Field::new("numeric", ty, true)
                .with_metadata(crate::types::tag_metadata("numeric")),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        args.args.into_iter().next().ok_or_else(|| {
            SqlError::internal("kestrel_numeric takes one argument").into_datafusion()
        })
    }
}

/// The functions this module's rewrites call by name.
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::from(NumericTag {
        signature: Signature::any(1, Volatility::Immutable),
    }))]
}

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

/// Rewrites every expression of `plan` (and its subqueries) bottom-up with `f`, which sees
/// the merged schema of the node's inputs.
fn rewrite_exprs(
    plan: LogicalPlan,
    f: fn(Expr, &DFSchema) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|p| {
        let mut schema = DFSchema::empty();
        for input in p.inputs() {
            schema.merge(input.schema());
        }
        p.map_expressions(|e| e.transform_up(|x| f(x, &schema)))
    })
    .map(|t| t.data)
}

impl AnalyzerRule for PgCastRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_exprs(plan, rewrite)
    }

    fn name(&self) -> &str {
        "kestrel_pg_casts"
    }
}

/// PostgreSQL types a quoted literal compared with an array column as that array type
/// (`polroles = '{0}'`); DataFusion cannot compare a list with text. This analyzer rule, run
/// before type coercion, parses such literals (`{a,"b c",NULL}`) into list literals.
#[derive(Debug, Default)]
pub struct PgArrayLiteralRule;

fn array_literal(text: &str, elem: &DataType) -> Option<datafusion::common::ScalarValue> {
    use datafusion::common::ScalarValue;
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if !inner.trim().is_empty() {
        for part in inner.split(',') {
            let part = part.trim();
            let v = if part.eq_ignore_ascii_case("null") {
                ScalarValue::Utf8(None)
            } else {
                let unq = part
                    .strip_prefix('"')
                    .and_then(|p| p.strip_suffix('"'))
                    .unwrap_or(part);
                ScalarValue::Utf8(Some(unq.to_string()))
            };
            items.push(v.cast_to(elem).ok()?);
        }
    }
    Some(ScalarValue::List(ScalarValue::new_list_nullable(
        &items, elem,
    )))
}

fn list_elem(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    match e.get_type(schema).ok()? {
        DataType::List(f) => Some(f.data_type().clone()),
        _ => None,
    }
}

fn text_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(s)), _) => Some(s),
        _ => None,
    }
}

fn rewrite_array_literal(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(b) = &e else {
        return Ok(Transformed::no(e));
    };
    let parsed = |lit: &Expr, other: &Expr| {
        let s = text_literal(lit)?;
        let elem = list_elem(other, schema)?;
        array_literal(s, &elem).map(|v| Expr::Literal(v, None))
    };
    if let Some(l) = parsed(&b.left, &b.right) {
        let mut b = b.clone();
        b.left = Box::new(l);
        return Ok(Transformed::yes(Expr::BinaryExpr(b)));
    }
    if let Some(r) = parsed(&b.right, &b.left) {
        let mut b = b.clone();
        b.right = Box::new(r);
        return Ok(Transformed::yes(Expr::BinaryExpr(b)));
    }
    Ok(Transformed::no(e))
}

impl AnalyzerRule for PgArrayLiteralRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_exprs(plan, rewrite_array_literal)
    }

    fn name(&self) -> &str {
        "kestrel_pg_array_literals"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_parse() {
        use datafusion::common::ScalarValue;
        let v = array_literal("{1, 2,NULL}", &DataType::Int64).unwrap();
        let want = ScalarValue::List(ScalarValue::new_list_nullable(
            &[
                ScalarValue::Int64(Some(1)),
                ScalarValue::Int64(Some(2)),
                ScalarValue::Int64(None),
            ],
            &DataType::Int64,
        ));
        assert_eq!(v, want);
        assert!(array_literal("1,2", &DataType::Int64).is_none());
        assert!(array_literal("{x}", &DataType::Int64).is_none());
    }

    fn rewritten(sql: &str) -> String {
        let mut e =
            datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::KestrelDialect)
                .try_with_sql(sql)
                .unwrap()
                .parse_expr()
                .unwrap();
        pg_expr(&mut e).map(|n| n.to_string()).unwrap_or_default()
    }

    #[test]
    fn row_comparisons_compare_field_by_field() {
        assert_eq!(rewritten("(a, b) = (1, 2)"), "(a = 1 AND b = 2)");
        assert_eq!(rewritten("(a, b) <> (1, 2)"), "(a <> 1 OR b <> 2)");
        assert_eq!(
            rewritten("(a, b) <= (1, 2)"),
            "(a < 1 OR (a = 1 AND (b <= 2)))"
        );
        assert_eq!(
            rewritten("ROW(a, b) IS NOT NULL"),
            "(a IS NOT NULL AND b IS NOT NULL)"
        );
        assert_eq!(rewritten("(a, b, c) = (1, 2)"), "");
    }

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

    #[test]
    fn like_escape_characters_become_backslashes() {
        assert_eq!(backslash_escaped("a!%c", "!").unwrap(), "a\\%c");
        assert_eq!(backslash_escaped("a\\b%", "!").unwrap(), "a\\\\b%");
        assert_eq!(backslash_escaped("a\\", "").unwrap(), "a\\\\");
        assert!(backslash_escaped("a!", "!").is_none());
    }

    #[test]
    fn repeated_output_names_are_marked_and_displayed_plainly() {
        use crate::dialect::KestrelDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        let sql = "INSERT INTO t SELECT g, g, 1 AS x, 2 AS X FROM (SELECT 1, 1) s";
        let mut stmt = Parser::parse_sql(&KestrelDialect, sql).unwrap().remove(0);
        rewrite_statement(&mut stmt);
        let text = stmt.to_string();
        assert!(text.contains("g AS \"g\u{1f}2\""), "{text}");
        assert!(text.contains("2 AS \"x\u{1f}2\""), "{text}");
        assert!(text.contains("1 AS \"1\u{1f}2\""), "{text}");
        assert_eq!(display_name("g\u{1f}2"), "g");
        assert_eq!(display_name("g"), "g");
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
    unique_select_names(stmt);
    crate::query_rewrite::rewrite(stmt);
    rewrite_pg_syntax(stmt);
    untag_recursive_ctes(stmt);
    crate::query_rewrite::lateral_unnest(stmt);
    if let datafusion::sql::sqlparser::ast::Statement::Insert(ins) = stmt {
        if let Some(source) = ins.source.as_mut() {
            if !matches!(source.body.as_ref(), ast::SetExpr::Values(_)) {
                nested_values_as_selects(source);
            }
        }
    }
}

/// A recursive CTE's terms must produce identical fields, metadata included, but usually
/// only the non-recursive term says `::numeric`: where its item carries the numeric display
/// tag, the recursive term's item at the same position gets it too. DataFusion also names
/// the non-recursive term's unnamed items by their text, so `SELECT 1, 1::numeric(30,0)`
/// would collide; they are aliased with the CTE's column names.
fn untag_recursive_ctes(stmt: &mut ast::Statement) {
    use ast::{VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Untag;
    impl VisitorMut for Untag {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
            let Some(with) = q.with.as_mut().filter(|w| w.recursive) else {
                return ControlFlow::Continue(());
            };
            for cte in with.cte_tables.iter_mut() {
                let columns: Vec<ast::Ident> =
                    cte.alias.columns.iter().map(|c| c.name.clone()).collect();
                recursive_cte_terms(cte.query.as_mut(), &columns);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Untag);
}

fn recursive_cte_terms(q: &mut ast::Query, columns: &[ast::Ident]) {
    let ast::SetExpr::SetOperation { left, right, .. } = q.body.as_mut() else {
        return;
    };
    let (ast::SetExpr::Select(l), ast::SetExpr::Select(r)) = (left.as_mut(), right.as_mut()) else {
        return;
    };
    let item_expr = |item: &ast::SelectItem| match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            Some(e.clone())
        }
        _ => None,
    };
    for (i, item) in l.projection.iter_mut().enumerate() {
        let Some(e) = item_expr(item) else { continue };
        let tagged = numeric_tag_arg(&e).is_some();
        if let (ast::SelectItem::UnnamedExpr(_), Some(name)) = (&item, columns.get(i)) {
            *item = ast::SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: name.clone(),
            };
        }
        if !tagged {
            continue;
        }
        let Some(ritem) = r.projection.get_mut(i) else {
            continue;
        };
        let Some(re) = item_expr(ritem) else { continue };
        if numeric_tag_arg(&re).is_some() {
            continue;
        }
        let cast = ast::Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(re),
            data_type: ast::DataType::Numeric(ast::ExactNumberInfo::None),
            array: false,
            format: None,
        };
        let wrapped = call("kestrel_numeric", vec![cast]);
        *ritem = match ritem {
            ast::SelectItem::ExprWithAlias { alias, .. } => ast::SelectItem::ExprWithAlias {
                expr: wrapped,
                alias: alias.clone(),
            },
            _ => ast::SelectItem::UnnamedExpr(wrapped),
        };
    }
}

fn numeric_tag_arg(e: &ast::Expr) -> Option<ast::Expr> {
    let ast::Expr::Function(f) = e else {
        return None;
    };
    if f.name.0.len() != 1
        || !f.name.0[0]
            .as_ident()
            .is_some_and(|i| ident_is(i, "kestrel_numeric"))
    {
        return None;
    }
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    let [a] = plain_args(&l.args)?.try_into().ok()?;
    Some(a)
}

/// DataFusion plans every VALUES list inside an INSERT's source with the target's columns,
/// so `INSERT INTO t (a, b) SELECT p0, p1 FROM (VALUES (…, …, 0)) v(p0, p1, n)` (SQLAlchemy's
/// insertmanyvalues) fails on the extra column. Inside a source that is not itself a VALUES
/// list, each VALUES becomes `SELECT … UNION ALL SELECT …` (a balanced tree, so its depth
/// stays logarithmic in the row count).
fn nested_values_as_selects(source: &mut ast::Query) {
    use ast::{VisitMut, VisitorMut};
    struct Values;
    impl VisitorMut for Values {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
            if let ast::SetExpr::Values(v) = q.body.as_ref() {
                if let Some(body) = values_as_union(&v.rows) {
                    q.body = Box::new(body);
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = source.visit(&mut Values);
}

fn values_as_union(rows: &[ast::Parens<Vec<ast::Expr>>]) -> Option<ast::SetExpr> {
    let dialect = crate::dialect::KestrelDialect;
    let template = match datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql("SELECT 1")
        .ok()?
        .parse_query()
        .ok()?
        .body
        .as_ref()
    {
        ast::SetExpr::Select(s) => s.clone(),
        _ => return None,
    };
    let selects: Vec<ast::SetExpr> = rows
        .iter()
        .map(|row| {
            let mut sel = template.clone();
            sel.projection = row
                .content
                .iter()
                .enumerate()
                .map(|(i, e)| ast::SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: ast::Ident::new(format!("column{}", i + 1)),
                })
                .collect();
            ast::SetExpr::Select(sel)
        })
        .collect();
    fn balanced(mut parts: Vec<ast::SetExpr>) -> Option<ast::SetExpr> {
        if parts.len() <= 1 {
            return parts.pop();
        }
        let right = parts.split_off(parts.len() / 2);
        Some(ast::SetExpr::SetOperation {
            left: Box::new(balanced(parts)?),
            op: ast::SetOperator::Union,
            set_quantifier: ast::SetQuantifier::All,
            right: Box::new(balanced(right)?),
        })
    }
    balanced(selects)
}

/// PostgreSQL spellings catalog queries use, rewritten into ones DataFusion plans (after the
/// output columns got their PostgreSQL names):
/// * `pg_catalog.f(…)` → `f(…)`; `OPERATOR(pg_catalog.~)` → `~`;
/// * `COLLATE "C"` / `pg_catalog.default` / `POSIX` dropped (Kestrel compares bytes, which is
///   what those collations do);
/// * casts to `regclass` / `regtype` / `regnamespace` call the catalog functions that map
///   names and oids; `oid` is `bigint`, `name` and `"char"` are `text`, and `pg_catalog.`
///   type qualifiers are dropped;
/// * `current_user`, `session_user`, `current_role`, `user`, `current_schema`,
///   `current_catalog` written without parentheses are function calls;
/// * `ARRAY(subquery)` → `(SELECT array_agg(…) FROM (subquery))`.
pub fn rewrite_pg_syntax(stmt: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Syntax {
        /// Subqueries of `x op ANY/ALL (subquery)`, which are not scalar subqueries.
        quantified: std::collections::HashSet<*const ast::Query>,
    }
    impl VisitorMut for Syntax {
        type Break = ();
        fn pre_visit_table_factor(&mut self, f: &mut ast::TableFactor) -> ControlFlow<()> {
            if let ast::TableFactor::Table {
                name,
                args: Some(_),
                ..
            } = f
            {
                if name.0.len() == 2
                    && name.0[0]
                        .as_ident()
                        .is_some_and(|i| ident_is(i, "pg_catalog"))
                {
                    name.0.remove(0);
                }
            }
            if let Some(unnest) = correlated_series(f) {
                *f = unnest;
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = e {
                if let Expr::Subquery(q) = right.as_ref() {
                    self.quantified.insert(q.as_ref() as *const ast::Query);
                }
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Subquery(q) = e {
                if !self.quantified.contains(&(q.as_ref() as *const ast::Query)) {
                    single_row_subquery(q);
                }
            }
            if let Some(new) = pg_expr(e) {
                *e = new;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Syntax {
        quantified: Default::default(),
    });
}

/// PostgreSQL's checks of `WITH RECURSIVE` (42P19) that DataFusion does not make — without
/// them an aggregate in the recursive term (`SELECT count(*) FROM t`) recurses forever.
pub fn check_recursive_ctes(stmt: &ast::Statement) -> Result<(), SqlError> {
    use ast::Visit;
    struct Check(Option<SqlError>);
    impl ast::Visitor for Check {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> std::ops::ControlFlow<()> {
            let Some(with) = q.with.as_ref().filter(|w| w.recursive) else {
                return std::ops::ControlFlow::Continue(());
            };
            for cte in &with.cte_tables {
                if let Err(e) = check_recursive_cte(cte) {
                    self.0 = Some(e);
                    return std::ops::ControlFlow::Break(());
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut c = Check(None);
    let _ = stmt.visit(&mut c);
    c.0.map_or(Ok(()), Err)
}

fn names_relation(q: &ast::SetExpr, name: &str) -> bool {
    use ast::Visit;
    struct Find<'a>(&'a str, bool);
    impl ast::Visitor for Find<'_> {
        type Break = ();
        fn pre_visit_relation(&mut self, r: &ast::ObjectName) -> std::ops::ControlFlow<()> {
            if r.0.len() == 1 && r.0[0].as_ident().is_some_and(|i| i.value == self.0) {
                self.1 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Find(name, false);
    let _ = q.visit(&mut f);
    f.1
}

fn check_recursive_cte(cte: &ast::Cte) -> Result<(), SqlError> {
    let name = cte.alias.name.value.as_str();
    let body = cte.query.body.as_ref();
    if !names_relation(body, name) {
        return Ok(());
    }
    let bad_form = || {
        SqlError::new(
            code::INVALID_RECURSION,
            format!(
                "recursive query \"{name}\" does not have the form non-recursive-term UNION [ALL] recursive-term"
            ),
        )
    };
    let ast::SetExpr::SetOperation {
        op: ast::SetOperator::Union,
        left,
        right,
        ..
    } = body
    else {
        return Err(bad_form());
    };
    if names_relation(left, name) {
        return Err(bad_form());
    }
    if let ast::SetExpr::Select(s) = right.as_ref() {
        let aggregated = s.projection.iter().any(|item| match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate_or_window(e)
            }
            _ => false,
        });
        if aggregated {
            return Err(SqlError::new(
                code::INVALID_RECURSION,
                "aggregate functions are not allowed in a recursive query's recursive term",
            ));
        }
    }
    Ok(())
}

/// Aggregate function names (an aggregate inside an aggregate does not plan).
static AGGREGATES: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    datafusion::functions_aggregate::all_default_aggregate_functions()
        .iter()
        .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()))
        .chain(["kestrel_single".to_string()])
        .collect()
});

fn has_aggregate_or_window(e: &ast::Expr) -> bool {
    use ast::Visit;
    struct Find(bool);
    impl ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> std::ops::ControlFlow<()> {
            if let ast::Expr::Function(f) = e {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_lowercase())
                    .unwrap_or_default();
                if f.over.is_some() || AGGREGATES.contains(&name) {
                    self.0 = true;
                    return std::ops::ControlFlow::Break(());
                }
            }
            if let ast::Expr::Subquery(_) = e {
                // Aggregates of a nested query are its own.
                return std::ops::ControlFlow::Continue(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Find(false);
    let _ = e.visit(&mut f);
    f.0
}

/// A scalar subquery yields at most one row (PostgreSQL raises 21000 otherwise). DataFusion
/// plans correlated scalar subqueries only when they aggregate; a plain one
/// (`(SELECT d.x FROM d WHERE d.k = t.k)`) gets its value wrapped in `kestrel_single`, the
/// aggregate that is that one value, NULL for no rows, and 21000 for more.
fn single_row_subquery(q: &mut ast::Query) {
    if q.limit_clause.is_some() || q.fetch.is_some() {
        return;
    }
    let ast::SetExpr::Select(s) = q.body.as_mut() else {
        return;
    };
    let grouped =
        !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if grouped || s.having.is_some() || s.distinct.is_some() || s.projection.len() != 1 {
        return;
    }
    match &mut s.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            if !has_aggregate_or_window(e) {
                *e = call("kestrel_single", vec![e.clone()]);
            }
        }
        _ => {}
    }
}

/// `FROM generate_series(1, t.n) s` — a series over column values, which DataFusion's table
/// function cannot take (it wants constants) — as `FROM unnest(generate_series(1, t.n)) s`.
fn correlated_series(f: &ast::TableFactor) -> Option<ast::TableFactor> {
    let ast::TableFactor::Table {
        name,
        args: Some(args),
        alias,
        with_ordinality,
        ..
    } = f
    else {
        return None;
    };
    let fname = match name.0.as_slice() {
        [p] => p.as_ident()?.value.to_lowercase(),
        _ => return None,
    };
    let exprs = plain_args(&args.args)?;
    let correlated = exprs.iter().any(references_column);
    // (the list-returning functions to unnest, the default column names)
    let (lists, columns): (Vec<ast::Expr>, Vec<&str>) = match (fname.as_str(), exprs.as_slice()) {
        ("generate_series", _) if correlated => {
            (vec![call("generate_series", exprs.clone())], vec![])
        }
        ("jsonb_array_elements" | "json_array_elements", [x]) => (
            vec![call("kestrel_json_elements", vec![x.clone()])],
            vec!["value"],
        ),
        ("jsonb_array_elements_text" | "json_array_elements_text", [x]) => (
            vec![call("kestrel_json_elements_text", vec![x.clone()])],
            vec!["value"],
        ),
        ("regexp_split_to_table", [_, _] | [_, _, _]) => {
            (vec![call("regexp_split_to_array", exprs.clone())], vec![])
        }
        ("jsonb_object_keys" | "json_object_keys", [x]) => (
            vec![call("kestrel_json_object_keys", vec![x.clone()])],
            vec![if fname.starts_with("jsonb") {
                "jsonb_object_keys"
            } else {
                "json_object_keys"
            }],
        ),
        ("jsonb_each" | "json_each", [x]) => (
            vec![
                call("kestrel_json_keys", vec![x.clone()]),
                call("kestrel_json_values", vec![x.clone()]),
            ],
            vec!["key", "value"],
        ),
        ("jsonb_each_text" | "json_each_text", [x]) => (
            vec![
                call("kestrel_json_keys", vec![x.clone()]),
                call("kestrel_json_values_text", vec![x.clone()]),
            ],
            vec!["key", "value"],
        ),
        _ => return None,
    };
    let column = |n: &str| ast::TableAliasColumnDef {
        name: ast::Ident::new(n),
        data_type: None,
    };
    let mut alias = alias.clone().unwrap_or_else(|| ast::TableAlias {
        explicit: true,
        name: ast::Ident::new(fname.clone()),
        columns: vec![],
        at: None,
    });
    if alias.columns.is_empty() {
        // A function returning a base type names its column after the alias, as PostgreSQL
        // does; functions with named result columns keep those.
        let base_type = columns.is_empty() || fname.ends_with("object_keys");
        alias.columns = match columns.as_slice() {
            _ if base_type => vec![column(&alias.name.value)],
            names => names.iter().map(|n| column(n)).collect(),
        };
    }
    Some(ast::TableFactor::UNNEST {
        alias: Some(alias),
        array_exprs: lists,
        with_offset: false,
        with_offset_alias: None,
        with_ordinality: *with_ordinality,
    })
}

/// The arguments of a call when all are plain positional expressions (no names, no `*`).
pub(crate) fn plain_args(args: &[ast::FunctionArg]) -> Option<Vec<ast::Expr>> {
    args.iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn references_column(e: &ast::Expr) -> bool {
    use ast::Visit;
    struct Find(bool);
    impl ast::Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> std::ops::ControlFlow<()> {
            if matches!(
                e,
                ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
            ) {
                self.0 = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Find(false);
    let _ = e.visit(&mut f);
    f.0
}

fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    use ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
        ObjectName,
    };
    ast::Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Functions PostgreSQL calls without parentheses: an unquoted identifier of one of these
/// names is the function, not a column.
pub const NILADIC: [&str; 6] = [
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_schema",
    "current_catalog",
];

fn ident_is(i: &ast::Ident, name: &str) -> bool {
    i.quote_style.is_none() && i.value.eq_ignore_ascii_case(name)
}

fn pg_expr(e: &mut ast::Expr) -> Option<ast::Expr> {
    use ast::{BinaryOperator as Op, Expr};
    match e {
        Expr::Function(f) => {
            if f.name.0.len() == 2
                && f.name.0[0]
                    .as_ident()
                    .is_some_and(|i| ident_is(i, "pg_catalog"))
            {
                f.name.0.remove(0);
            }
            if f.name.0.len() == 1
                && f.name.0[0]
                    .as_ident()
                    .is_some_and(|i| ident_is(i, "make_interval"))
            {
                positional_make_interval(f);
            }
            if let Some(agg) = json_aggregate(f) {
                return Some(agg);
            }
            if f.name.0.len() == 1 && f.name.0[0].as_ident().is_some_and(|i| ident_is(i, "every")) {
                f.name = ast::ObjectName::from(vec![ast::Ident::new("bool_and")]);
            }
            if let ast::FunctionArguments::Subquery(q) = &f.args {
                if f.name.0.len() == 1
                    && f.name.0[0].as_ident().is_some_and(|i| ident_is(i, "array"))
                {
                    return array_of_subquery(q);
                }
            }
            set_returning(f)
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => symmetric_between(expr, *negated, low, high),
        Expr::AnyOp {
            left,
            compare_op: Op::Eq,
            right,
            ..
        } if !matches!(right.as_ref(), Expr::Subquery(_)) => Some(any_eq_with_nulls(left, right)),
        // substring(s FROM 'pattern'): a regular expression, not a position.
        Expr::Substring {
            expr,
            substring_from: Some(from),
            substring_for: None,
            ..
        } if matches!(from.as_ref(), Expr::Value(v)
            if matches!(v.value, ast::Value::SingleQuotedString(_))) =>
        {
            Some(call(
                "kestrel_substring_regex",
                vec![expr.as_ref().clone(), from.as_ref().clone()],
            ))
        }
        // LIKE … ESCAPE 'c' with a constant pattern: re-escaped with backslashes, the only
        // escape DataFusion's LIKE takes.
        Expr::Like {
            pattern,
            escape_char: escape @ Some(_),
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char: escape @ Some(_),
            ..
        } => {
            let esc = match escape.as_ref().map(|v| &v.value) {
                Some(ast::Value::SingleQuotedString(e)) => e.clone(),
                _ => return None,
            };
            let Expr::Value(v) = pattern.as_ref() else {
                return None;
            };
            let ast::Value::SingleQuotedString(p) = &v.value else {
                return None;
            };
            let converted = backslash_escaped(p, &esc)?;
            **pattern = Expr::Value(ast::Value::SingleQuotedString(converted).into());
            *escape = None;
            None
        }
        Expr::Extract { field, expr, .. } => {
            let name = field.to_string().to_lowercase();
            let name = Expr::Value(ast::Value::SingleQuotedString(name).into());
            Some(call("kestrel_extract", vec![name, expr.as_ref().clone()]))
        }
        Expr::BinaryOp {
            op: Op::Overlaps,
            left,
            right,
        } => overlaps(left, right),
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            // `ROW(a, b) IS [NOT] NULL`: every field is [not] NULL.
            let items = row_items(inner)?;
            let not = matches!(e, Expr::IsNotNull(_));
            let each = items.into_iter().map(|i| match not {
                true => Expr::IsNotNull(Box::new(i)),
                false => Expr::IsNull(Box::new(i)),
            });
            each.reduce(|a, b| and_or(a, Op::And, b))
                .map(|e| Expr::Nested(Box::new(e)))
        }
        Expr::BinaryOp { left, op, right }
            if matches!(
                op,
                Op::Eq | Op::NotEq | Op::Lt | Op::LtEq | Op::Gt | Op::GtEq
            ) =>
        {
            let (l, r) = (row_items(left)?, row_items(right)?);
            if l.len() != r.len() {
                return None;
            }
            row_compare(&l, op, &r).map(|e| Expr::Nested(Box::new(e)))
        }
        Expr::BinaryOp { op, .. } => {
            if let Op::PGCustomBinaryOperator(parts) = op {
                let last = parts.last().map(|s| s.as_str());
                let plain = match last {
                    Some("~") => Op::PGRegexMatch,
                    Some("~*") => Op::PGRegexIMatch,
                    Some("!~") => Op::PGRegexNotMatch,
                    Some("!~*") => Op::PGRegexNotIMatch,
                    Some("~~") => Op::PGLikeMatch,
                    Some("!~~") => Op::PGNotLikeMatch,
                    Some("=") => Op::Eq,
                    Some("<>") => Op::NotEq,
                    Some("<") => Op::Lt,
                    Some(">") => Op::Gt,
                    Some("<=") => Op::LtEq,
                    Some(">=") => Op::GtEq,
                    Some("||") => Op::StringConcat,
                    Some("+") => Op::Plus,
                    Some("-") => Op::Minus,
                    _ => return None,
                };
                *op = plain;
            }
            None
        }
        Expr::Collate { expr, collation } => {
            let name = collation
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_lowercase())?;
            matches!(name.as_str(), "c" | "posix" | "default" | "ucs_basic")
                .then(|| expr.as_ref().clone())
        }
        Expr::Cast {
            expr, data_type, ..
        } => match cast_target(data_type)? {
            CastTarget::Call(f) => Some(call(f, vec![expr.as_ref().clone()])),
            CastTarget::Tag(f) => {
                let cast = Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: expr.clone(),
                    data_type: data_type.clone(),
                    array: false,
                    format: None,
                };
                Some(call(f, vec![cast]))
            }
            CastTarget::Truncate(n) => {
                let text = Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: expr.clone(),
                    data_type: ast::DataType::Text,
                    array: false,
                    format: None,
                };
                let n = Expr::Value(ast::Value::Number(n.to_string(), false).into());
                Some(call("left", vec![text, n]))
            }
            CastTarget::Type(t) => {
                *data_type = t;
                None
            }
        },
        // `(f(x)).field` on a composite value → get_field(f(x), 'field').
        Expr::CompoundFieldAccess { root, access_chain }
            if matches!(root.as_ref(), Expr::Nested(_) | Expr::Function(_))
                && access_chain
                    .iter()
                    .all(|a| matches!(a, ast::AccessExpr::Dot(Expr::Identifier(_)))) =>
        {
            let mut out = root.as_ref().clone();
            for a in access_chain.iter() {
                if let ast::AccessExpr::Dot(Expr::Identifier(i)) = a {
                    let name = match i.quote_style {
                        Some(_) => i.value.clone(),
                        None => i.value.to_lowercase(),
                    };
                    let lit = Expr::Value(ast::Value::SingleQuotedString(name).into());
                    out = call("get_field", vec![out, lit]);
                }
            }
            Some(out)
        }
        Expr::Identifier(i) => NILADIC
            .iter()
            .find(|n| ident_is(i, n))
            .map(|n| call(n, vec![])),
        _ => None,
    }
}

/// Set-returning functions of the select list DataFusion lacks, as `unnest` of an array
/// (several `unnest`s in one select list advance in lockstep, as PostgreSQL's SRFs do):
/// * `generate_subscripts(a, d)` → `unnest(generate_series(1, array_length(a, d)))`;
/// * `information_schema._pg_expandarray(a)` → `unnest(kestrel_expandarray(a))`, a struct
///   `(x, n)` per element (its value and 1-based position).
fn set_returning(f: &ast::Function) -> Option<ast::Expr> {
    let parts: Vec<&ast::Ident> = f.name.0.iter().filter_map(|p| p.as_ident()).collect();
    let name = match parts.as_slice() {
        [n] => n.value.to_lowercase(),
        [s, n] if ident_is(s, "information_schema") => n.value.to_lowercase(),
        _ => return None,
    };
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args = plain_args(&list.args)?;
    let one = ast::Expr::Value(ast::Value::Number("1".into(), false).into());
    match (name.as_str(), args.as_slice()) {
        ("generate_subscripts", [a, d]) => Some(call(
            "unnest",
            vec![call(
                "generate_series",
                vec![one, call("array_length", vec![a.clone(), d.clone()])],
            )],
        )),
        ("_pg_expandarray", [a]) => Some(call(
            "unnest",
            vec![call("kestrel_expandarray", vec![a.clone()])],
        )),
        _ => None,
    }
}

enum CastTarget {
    Call(&'static str),
    /// The cast stays; its result goes through this (type-tagging) function.
    Tag(&'static str),
    Type(ast::DataType),
    /// `varchar(n)`: PostgreSQL truncates an explicit cast to n characters.
    Truncate(u64),
}

/// A LIKE pattern using escape character `esc` (one character, or empty for none) rewritten
/// to use backslash.
/// The fields of a row constructor: `(a, b)` or `ROW(a, …)`.
fn row_items(e: &ast::Expr) -> Option<Vec<ast::Expr>> {
    match e {
        ast::Expr::Tuple(items) if items.len() >= 2 => Some(items.clone()),
        ast::Expr::Function(f)
            if f.name.0.len() == 1
                && f.name.0[0].as_ident().is_some_and(|i| ident_is(i, "row")) =>
        {
            match &f.args {
                ast::FunctionArguments::List(l) => plain_args(&l.args),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `x [NOT] BETWEEN SYMMETRIC a AND b` (lower bound marked by [`crate::syntax`]) as PostgreSQL
/// defines it: `x BETWEEN a AND b OR x BETWEEN b AND a`, negated as a whole.
fn symmetric_between(
    x: &ast::Expr,
    negated: bool,
    low: &ast::Expr,
    high: &ast::Expr,
) -> Option<ast::Expr> {
    let ast::Expr::Function(f) = low else {
        return None;
    };
    if f.name.0.len() != 1
        || !f.name.0[0]
            .as_ident()
            .is_some_and(|i| ident_is(i, crate::syntax::SYMMETRIC_MARKER))
    {
        return None;
    }
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    let [a] = plain_args(&l.args)?.try_into().ok()?;
    let between = |lo: &ast::Expr, hi: &ast::Expr| ast::Expr::Between {
        expr: Box::new(x.clone()),
        negated: false,
        low: Box::new(lo.clone()),
        high: Box::new(hi.clone()),
    };
    let either = ast::Expr::Nested(Box::new(and_or(
        between(&a, high),
        ast::BinaryOperator::Or,
        between(high, &a),
    )));
    Some(if negated {
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr: Box::new(either),
        }
    } else {
        either
    })
}

/// `x = ANY(array)` with PostgreSQL's NULL rules: true if some element equals `x`, else
/// NULL if `x`, the array or some element is NULL, else false (an empty array: false).
/// DataFusion answers false where an element is NULL. (The rewrite visits bottom-up, so the
/// `= ANY` inside the result is not rewritten again.)
fn any_eq_with_nulls(x: &ast::Expr, arr: &ast::Expr) -> ast::Expr {
    use ast::{BinaryOperator as Op, Expr};
    let null = || Expr::Value(ast::Value::Null.into());
    let boolean = |b: bool| Expr::Value(ast::Value::Boolean(b).into());
    let is_null = |e: Expr| Expr::IsNull(Box::new(e));
    let any = Expr::AnyOp {
        left: Box::new(x.clone()),
        compare_op: Op::Eq,
        right: Box::new(arr.clone()),
        is_some: false,
    };
    let empty = and_or(
        call("cardinality", vec![arr.clone()]),
        Op::Eq,
        Expr::Value(ast::Value::Number("0".into(), false).into()),
    );
    let has_null = Expr::IsNotNull(Box::new(call("array_position", vec![arr.clone(), null()])));
    let unknown = and_or(
        and_or(is_null(x.clone()), Op::Or, is_null(arr.clone())),
        Op::Or,
        has_null,
    );
    Expr::Nested(Box::new(Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![
            ast::CaseWhen {
                condition: empty,
                result: boolean(false),
            },
            ast::CaseWhen {
                condition: any,
                result: boolean(true),
            },
            ast::CaseWhen {
                condition: unknown,
                result: null(),
            },
        ],
        else_result: Some(Box::new(boolean(false))),
    }))
}

fn and_or(a: ast::Expr, op: ast::BinaryOperator, b: ast::Expr) -> ast::Expr {
    ast::Expr::BinaryOp {
        left: Box::new(a),
        op,
        right: Box::new(b),
    }
}

/// Row comparison as PostgreSQL defines it: `=` all fields equal, `<>` some field differs,
/// ordering by the first field that is not equal (`a < c OR (a = c AND (b < d))`), so a NULL
/// in a deciding field makes the answer NULL.
fn row_compare(l: &[ast::Expr], op: &ast::BinaryOperator, r: &[ast::Expr]) -> Option<ast::Expr> {
    use ast::BinaryOperator as Op;
    let pair = |i: usize, op: Op| and_or(l[i].clone(), op, r[i].clone());
    let n = l.len();
    match op {
        Op::Eq => (0..n)
            .map(|i| pair(i, Op::Eq))
            .reduce(|a, b| and_or(a, Op::And, b)),
        Op::NotEq => (0..n)
            .map(|i| pair(i, Op::NotEq))
            .reduce(|a, b| and_or(a, Op::Or, b)),
        _ => {
            let strict = match op {
                Op::LtEq => Op::Lt,
                Op::GtEq => Op::Gt,
                other => other.clone(),
            };
            let mut acc = pair(n - 1, op.clone());
            for i in (0..n - 1).rev() {
                let tail = and_or(pair(i, Op::Eq), Op::And, ast::Expr::Nested(Box::new(acc)));
                acc = and_or(
                    pair(i, strict.clone()),
                    Op::Or,
                    ast::Expr::Nested(Box::new(tail)),
                );
            }
            Some(acc)
        }
    }
}

fn backslash_escaped(p: &str, esc: &str) -> Option<String> {
    let mut chars = esc.chars();
    let e = match (chars.next(), chars.next()) {
        (None, _) => None,
        (Some(c), None) => Some(c),
        _ => return None,
    };
    let mut out = String::with_capacity(p.len());
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if Some(c) == e {
            out.push('\\');
            out.push(it.next()?);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `jsonb_agg(x ORDER BY …)` → `kestrel_jsonb_from_list(array_agg(to_jsonb(x) ORDER BY …))`
/// (json_agg and jsonb_object_agg alike): DataFusion's array_agg does the ordering and
/// filtering, a scalar function builds the JSON.
fn json_aggregate(f: &ast::Function) -> Option<ast::Expr> {
    let name = match f.name.0.as_slice() {
        [p] => p.as_ident()?.value.to_lowercase(),
        _ => return None,
    };
    let (finish, convert) = match name.as_str() {
        "jsonb_agg" => ("kestrel_jsonb_from_list", "to_jsonb"),
        "json_agg" => ("kestrel_json_from_list", "to_json"),
        "jsonb_object_agg" | "json_object_agg" => ("kestrel_jsonb_object_from_lists", "to_jsonb"),
        _ => return None,
    };
    if f.over.is_some() {
        return None;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let arg = |i: usize| match list.args.get(i) {
        Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))) => Some(e.clone()),
        _ => None,
    };
    let array_agg = |value: ast::Expr| {
        let mut g = f.clone();
        g.name = ast::ObjectName::from(vec![ast::Ident::new("array_agg")]);
        if let ast::FunctionArguments::List(l) = &mut g.args {
            l.args = vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(value))];
        }
        ast::Expr::Function(g)
    };
    let args = if finish == "kestrel_jsonb_object_from_lists" {
        let key = ast::Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(arg(0)?),
            data_type: ast::DataType::Text,
            array: false,
            format: None,
        };
        vec![array_agg(key), array_agg(call(convert, vec![arg(1)?]))]
    } else {
        vec![array_agg(call(convert, vec![arg(0)?]))]
    };
    Some(call(finish, args))
}

/// `make_interval(days => 10)`: named arguments become positional ones (zero where absent).
fn positional_make_interval(f: &mut ast::Function) {
    let ast::FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let named = |a: &ast::FunctionArg| match a {
        ast::FunctionArg::Named {
            name,
            arg: ast::FunctionArgExpr::Expr(e),
            ..
        } => Some((name.value.to_lowercase(), e.clone())),
        _ => None,
    };
    let Some(pairs) = list.args.iter().map(named).collect::<Option<Vec<_>>>() else {
        return;
    };
    if pairs.is_empty() {
        return;
    }
    let zero = || ast::Expr::Value(ast::Value::Number("0".into(), false).into());
    list.args = crate::date_fns::MAKE_INTERVAL_PARAMS
        .iter()
        .map(|p| {
            let e = pairs
                .iter()
                .find(|(n, _)| n == p)
                .map_or_else(zero, |(_, e)| e.clone());
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))
        })
        .collect();
}

/// `(s1, e1) OVERLAPS (s2, e2)` as PostgreSQL evaluates it: each pair ordered, then the
/// later start must come before the other's end (equal starts overlap).
fn overlaps(left: &ast::Expr, right: &ast::Expr) -> Option<ast::Expr> {
    use ast::{BinaryOperator as Op, Expr};
    let pair = |e: &Expr| match e {
        Expr::Tuple(items) if items.len() == 2 => Some((items[0].clone(), items[1].clone())),
        _ => None,
    };
    let ((a, b), (c, d)) = (pair(left)?, pair(right)?);
    let (s1, e1) = (
        call("least", vec![a.clone(), b.clone()]),
        call("greatest", vec![a, b]),
    );
    let (s2, e2) = (
        call("least", vec![c.clone(), d.clone()]),
        call("greatest", vec![c, d]),
    );
    let bin = |l: Expr, op: Op, r: Expr| Expr::BinaryOp {
        left: Box::new(l),
        op,
        right: Box::new(r),
    };
    Some(Expr::Nested(Box::new(Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![
            ast::CaseWhen {
                condition: bin(s1.clone(), Op::Gt, s2.clone()),
                result: bin(s1.clone(), Op::Lt, e2),
            },
            ast::CaseWhen {
                condition: bin(s1.clone(), Op::Lt, s2.clone()),
                result: bin(s2, Op::Lt, e1),
            },
        ],
        else_result: Some(Box::new(Expr::Value(ast::Value::Boolean(true).into()))),
    })))
}

/// What a cast to a PostgreSQL system type becomes.
fn cast_target(t: &ast::DataType) -> Option<CastTarget> {
    use ast::DataType as D;
    let name = match t {
        D::Regclass => return Some(CastTarget::Call("kestrel_regclass")),
        D::JSONB => return Some(CastTarget::Call("kestrel_jsonb_in")),
        D::JSON => return Some(CastTarget::Call("kestrel_json_in")),
        D::Uuid => return Some(CastTarget::Call("kestrel_uuid_in")),
        D::Numeric(ast::ExactNumberInfo::None) | D::Decimal(ast::ExactNumberInfo::None) => {
            return Some(CastTarget::Tag("kestrel_numeric"))
        }
        D::Varchar(Some(ast::CharacterLength::IntegerLength { length, .. }))
        | D::CharacterVarying(Some(ast::CharacterLength::IntegerLength { length, .. })) => {
            return Some(CastTarget::Truncate(*length))
        }
        D::Array(ast::ArrayElemTypeDef::SquareBracket(inner, n)) => {
            return match cast_target(inner)? {
                CastTarget::Type(t) => Some(CastTarget::Type(D::Array(
                    ast::ArrayElemTypeDef::SquareBracket(Box::new(t), *n),
                ))),
                CastTarget::Call(_) | CastTarget::Tag(_) | CastTarget::Truncate(_) => None,
            };
        }
        D::Custom(name, mods) if mods.is_empty() => name,
        _ => return None,
    };
    let parts: Vec<&ast::Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
    let (qualified, last) = match parts.as_slice() {
        [l] => (false, *l),
        [s, l] if ident_is(s, "pg_catalog") => (true, *l),
        _ => return None,
    };
    let lower = last.value.to_lowercase();
    Some(match lower.as_str() {
        "regclass" => CastTarget::Call("kestrel_regclass"),
        "regtype" => CastTarget::Call("kestrel_regtype"),
        "regnamespace" => CastTarget::Call("kestrel_regnamespace"),
        "regproc" | "regprocedure" | "regrole" | "name" => CastTarget::Type(D::Text),
        "char" if last.quote_style.is_some() => CastTarget::Type(D::Text),
        "oid" | "xid" | "regoper" => CastTarget::Type(D::BigInt(None)),
        _ if qualified => {
            let dialect = crate::dialect::KestrelDialect;
            let t = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
                .try_with_sql(&last.to_string())
                .ok()?
                .parse_data_type()
                .ok()?;
            match cast_target(&t) {
                Some(other) => other,
                None => CastTarget::Type(t),
            }
        }
        _ => return None,
    })
}

/// `ARRAY(SELECT x FROM … [ORDER BY o])` as `(SELECT array_agg(x [ORDER BY o]) FROM …)`
/// (NULL rather than `{}` when there are no rows); `ARRAY(SELECT 'p' || x FROM unnest(a) x)`
/// as `kestrel_array_prefix('p', a)`.
fn array_of_subquery(q: &ast::Query) -> Option<ast::Expr> {
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [item] = s.projection.as_slice() else {
        return None;
    };
    let expr = match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    if let Some(e) = prefix_each(s, expr) {
        return Some(e);
    }
    let grouped =
        !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if grouped || s.having.is_some() || s.distinct.is_some() || q.limit_clause.is_some() {
        return None;
    }
    let order = match &q.order_by {
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(list),
            ..
        }) if !list.is_empty() => format!(
            " ORDER BY {}",
            list.iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    let dialect = crate::dialect::KestrelDialect;
    let agg = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&format!("array_agg({expr}{order})"))
        .ok()?
        .parse_expr()
        .ok()?;
    let mut out = q.clone();
    out.order_by = None;
    if let ast::SetExpr::Select(sel) = out.body.as_mut() {
        sel.projection = vec![ast::SelectItem::UnnamedExpr(agg)];
    }
    Some(ast::Expr::Subquery(Box::new(out)))
}

/// `SELECT 'p' || x FROM unnest(a) x` (psql's reloptions display) as an array function.
fn prefix_each(s: &ast::Select, expr: &ast::Expr) -> Option<ast::Expr> {
    let [from] = s.from.as_slice() else {
        return None;
    };
    if s.selection.is_some() || !from.joins.is_empty() {
        return None;
    }
    let ast::TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = &from.relation
    else {
        return None;
    };
    let is_unnest = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| ident_is(i, "unnest"));
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(array))] = args.args.as_slice()
    else {
        return None;
    };
    if !is_unnest || !alias.columns.is_empty() {
        return None;
    }
    let ast::Expr::BinaryOp {
        left,
        op: ast::BinaryOperator::StringConcat,
        right,
    } = expr
    else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (ast::Expr::Value(_), ast::Expr::Identifier(i)) if i.value == alias.name.value => {
            Some(call(
                "kestrel_array_prefix",
                vec![left.as_ref().clone(), array.clone()],
            ))
        }
        _ => None,
    }
}

/// The column name PostgreSQL gives an unaliased select-list expression (its
/// `FigureColname`), if it gives one other than `?column?`.
/// The name PostgreSQL gives an unaliased select item `e`, if it has one (else `?column?`).
pub fn column_name(e: &ast::Expr) -> Option<String> {
    figure_colname(e)
}

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
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i))) => {
                Some(fold(i))
            }
            _ => None,
        },
        Expr::Case { .. } => Some("case".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::BinaryOp {
            op: ast::BinaryOperator::Overlaps,
            ..
        } => Some("overlaps".into()),
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

/// Marks an output name made unique for DataFusion: `g` repeated in `SELECT g, g` becomes
/// `g` and `g\u{1f}2`. [`display_name`] strips the mark when the name goes to the client, so
/// both columns are called `g`, as in PostgreSQL.
pub const DUPLICATE_NAME_MARK: char = '\u{1f}';

/// The name a client sees for output column `name` (see [`DUPLICATE_NAME_MARK`]).
pub fn display_name(name: &str) -> &str {
    name.split_once(DUPLICATE_NAME_MARK)
        .map_or(name, |(n, _)| n)
}

/// Gives the unaliased items of a query's select list PostgreSQL's column names (so clients
/// see `count`, `nextval`, `x` for `x::bigint` instead of DataFusion's expression text), and
/// makes repeated names unique (DataFusion needs unique names; PostgreSQL allows repeats).
pub fn name_select_items(q: &mut datafusion::sql::sqlparser::ast::Query) {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let mut body = q.body.as_mut();
    let select = loop {
        match body {
            SetExpr::Select(s) => break s,
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return,
        }
    };
    name_items(&mut select.projection, true);
}

/// Names the items of one select list: with `pg_names`, every unaliased expression gets
/// PostgreSQL's name; a name an earlier item already has gets a [`DUPLICATE_NAME_MARK`].
fn name_items(items: &mut [ast::SelectItem], pg_names: bool) {
    use ast::{Expr, SelectItem};
    let fold = |i: &ast::Ident| match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    };
    let mut taken: Vec<String> = Vec::new();
    for item in items.iter_mut() {
        let (expr, name, aliased) = match item {
            SelectItem::UnnamedExpr(e) => {
                let plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                let name = match figure_colname(e) {
                    Some(n) => n,
                    None if pg_names => "?column?".to_string(),
                    // DataFusion's own name for the expression: repeats are still caught.
                    None => e.to_string(),
                };
                (e.clone(), name, plain || !pg_names)
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), fold(alias), true),
            _ => continue,
        };
        let mut unique = name.clone();
        let mut n = 1;
        while taken.contains(&unique) {
            n += 1;
            unique = format!("{name}{DUPLICATE_NAME_MARK}{n}");
        }
        if unique != name || !aliased {
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: ast::Ident::with_quote('"', unique.clone()),
            };
        }
        taken.push(unique);
    }
}

/// Makes repeated output names unique in every select list of `stmt` (subqueries, CTEs and
/// INSERT sources included): `INSERT INTO t SELECT g, g FROM …`.
fn unique_select_names(stmt: &mut ast::Statement) {
    use ast::{SetExpr, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
            fn walk(body: &mut SetExpr) {
                match body {
                    SetExpr::Select(s) => name_items(&mut s.projection, false),
                    SetExpr::SetOperation { left, right, .. } => {
                        walk(left);
                        walk(right);
                    }
                    _ => {}
                }
            }
            walk(&mut q.body);
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Names);
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
    use crate::dialect::KestrelDialect;
    use datafusion::sql::sqlparser::ast::{
        Ident, Query, TableAlias, TableAliasColumnDef, TableFactor, Visit, VisitMut, Visitor,
        VisitorMut,
    };
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
            let query = match Parser::new(&KestrelDialect)
                .try_with_sql(&view.query)
                .and_then(|mut p| p.parse_query())
            {
                Ok(q) => q,
                Err(e) => {
                    self.error = Some(SqlError::internal(format!("stored view {table}: {e}")));
                    return ControlFlow::Break(());
                }
            };
            // The view's query gets the expression and query-shape rewrites the statement
            // got before its views were expanded (its select list keeps its own names).
            let mut as_stmt = ast::Statement::Query(query);
            crate::query_rewrite::rewrite(&mut as_stmt);
            rewrite_pg_syntax(&mut as_stmt);
            let ast::Statement::Query(query) = as_stmt else {
                return ControlFlow::Break(());
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

/// `kestrel_single(x)`: the value of a scalar subquery's only row; NULL without rows;
/// 21000 when there is more than one (see [`single_row_subquery`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl SingleValue {
    pub fn udaf() -> Arc<datafusion::logical_expr::AggregateUDF> {
        Arc::new(datafusion::logical_expr::AggregateUDF::from(Self {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    }
}

fn more_than_one_row() -> datafusion::error::DataFusionError {
    SqlError::new(
        code::CARDINALITY_VIOLATION,
        "more than one row returned by a subquery used as an expression",
    )
    .into_datafusion()
}

impl datafusion::logical_expr::AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "kestrel_single"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }
    fn accumulator(
        &self,
        args: datafusion::logical_expr::function::AccumulatorArgs,
    ) -> DfResult<Box<dyn datafusion::logical_expr::Accumulator>> {
        Ok(Box::new(SingleAcc {
            value: datafusion::common::ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }
    fn state_fields(
        &self,
        args: datafusion::logical_expr::function::StateFieldsArgs,
    ) -> DfResult<Vec<datafusion::arrow::datatypes::FieldRef>> {
        use datafusion::arrow::datatypes::Field;
        Ok(vec![
            Arc::new(Field::new("value", args.return_type().clone(), true)),
            Arc::new(Field::new("rows", DataType::Int64, false)),
        ])
    }
}

#[derive(Debug)]
struct SingleAcc {
    value: datafusion::common::ScalarValue,
    rows: i64,
}

impl datafusion::logical_expr::Accumulator for SingleAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(v) = values.first() else {
            return Ok(());
        };
        if v.is_empty() {
            return Ok(());
        }
        self.rows += v.len() as i64;
        if self.rows > 1 {
            return Err(more_than_one_row());
        }
        self.value = datafusion::common::ScalarValue::try_from_array(v, 0)?;
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (Some(values), Some(rows)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        let rows = rows
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| SqlError::internal("kestrel_single state").into_datafusion())?;
        for i in 0..rows.len() {
            let n = rows.value(i);
            if n == 0 {
                continue;
            }
            self.rows += n;
            if self.rows > 1 {
                return Err(more_than_one_row());
            }
            self.value = datafusion::common::ScalarValue::try_from_array(values, i)?;
        }
        Ok(())
    }
    fn state(&mut self) -> DfResult<Vec<datafusion::common::ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            datafusion::common::ScalarValue::Int64(Some(self.rows)),
        ])
    }
    fn evaluate(&mut self) -> DfResult<datafusion::common::ScalarValue> {
        Ok(self.value.clone())
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}
