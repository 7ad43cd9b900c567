//! Query shapes DataFusion plans with different results than PostgreSQL, rewritten on the
//! AST into equivalent forms it gets right (applied by [`crate::pgcompat::rewrite_statement`]):
//!
//! * `x op ANY (subquery)` / `x op ALL (subquery)`: DataFusion returns wrong rows. They become
//!   `EXISTS (SELECT 1 FROM (subquery) k(v) WHERE x op k.v)` and
//!   `NOT EXISTS (… WHERE NOT (x op k.v) OR k.v IS NULL OR x IS NULL)` — the same rows in a
//!   WHERE clause (in a select list, NULL answers read as false).
//! * `INTERSECT ALL` / `EXCEPT ALL`: DataFusion drops the multiplicities. Each side gets a
//!   `row_number()` per distinct row and the plain set operation runs on (row, number): n
//!   copies on one side and m on the other leave min(n, m) / max(n − m, 0) rows, as in
//!   PostgreSQL. Applies when the left side's column count is known (no `*`).
//! * `OVER (w ROWS …)`: DataFusion ignores the named window's PARTITION BY. Window references
//!   are inlined from the WINDOW clause.
//! * `FETCH FIRST n ROWS ONLY` is `LIMIT n`.
//! * A set-returning `generate_series(…)` select item expands to rows (`unnest`).
//! * `FROM t x, UNNEST(f(x.col)) AS u(c)` — a set-returning function over the preceding
//!   table's columns (`jsonb_array_elements(d.body)`, `unnest(d.tags)`, correlated
//!   `generate_series`), which DataFusion cannot plan as a lateral join — becomes
//!   `FROM (SELECT x.*, unnest(f(x.col)) AS c FROM t x) AS x` with `u.c` read as `x.c`
//!   ([`lateral_unnest`]).
//!
//! * `WITH x AS (INSERT | UPDATE | DELETE …) …`: [`split_modifying_ctes`] takes the
//!   data-modifying CTEs out, for the session to run first.
//!
//! * `LIMIT '2'` is `LIMIT 2`; [`check_limits`] gives LIMIT/OFFSET/ORDER BY position errors
//!   PostgreSQL's codes.

use std::ops::ControlFlow;

use crate::dialect::KestrelDialect;
use datafusion::sql::sqlparser::ast::{
    self, Expr, Query, Select, SelectItem, SetExpr, SetOperator, SetQuantifier, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{code, SqlError};

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&KestrelDialect)
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn parse_query(sql: &str) -> Option<Query> {
    Parser::new(&KestrelDialect)
        .try_with_sql(sql)
        .ok()?
        .parse_query()
        .ok()
        .map(|q| *q)
}

/// Applies every rewrite of this module to `stmt`.
pub fn rewrite(stmt: &mut ast::Statement) {
    struct Rewrites;
    impl VisitorMut for Rewrites {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Some(new) = quantified_subquery(e) {
                *e = new;
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            fetch_with_ties(q);
            fetch_as_limit(q);
            unquote_limits(q);
            set_operations_all(&mut q.body);
            visit_selects(&mut q.body, &mut |s| {
                inline_named_windows(s);
                expand_series_items(s);
                drop_empty_grouping(s);
            });
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Rewrites);
}

/// `GROUP BY ()` — the empty grouping set — groups all rows into one, as no GROUP BY does.
fn drop_empty_grouping(s: &mut Select) {
    if let ast::GroupByExpr::Expressions(exprs, modifiers) = &mut s.group_by {
        if modifiers.is_empty() {
            exprs.retain(|e| !matches!(e, Expr::Tuple(t) if t.is_empty()));
        }
    }
}

fn visit_selects(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(s) => f(s),
        SetExpr::SetOperation { left, right, .. } => {
            visit_selects(left, f);
            visit_selects(right, f);
        }
        _ => {}
    }
}

fn quantified_subquery(e: &Expr) -> Option<Expr> {
    let (left, op, right, all) = match e {
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } => (left, compare_op, right, false),
        Expr::AllOp {
            left,
            compare_op,
            right,
        } => (left, compare_op, right, true),
        _ => return None,
    };
    let Expr::Subquery(q) = right.as_ref() else {
        return None;
    };
    let sql = if all {
        format!(
            "NOT EXISTS (SELECT 1 FROM ({q}) AS _kestrel_all(v) WHERE NOT (({left}) {op} \
             _kestrel_all.v) OR _kestrel_all.v IS NULL OR ({left}) IS NULL)"
        )
    } else {
        format!(
            "EXISTS (SELECT 1 FROM ({q}) AS _kestrel_any(v) WHERE ({left}) {op} _kestrel_any.v)"
        )
    };
    parse_expr(&sql)
}

fn fetch_as_limit(q: &mut Query) {
    let Some(fetch) = &q.fetch else { return };
    if fetch.with_ties || fetch.percent {
        return;
    }
    let n = fetch
        .quantity
        .clone()
        .unwrap_or_else(|| Expr::Value(ast::Value::Number("1".into(), false).into()));
    match &mut q.limit_clause {
        Some(ast::LimitClause::LimitOffset { limit, .. }) if limit.is_none() => {
            *limit = Some(n);
        }
        None => {
            q.limit_clause = Some(ast::LimitClause::LimitOffset {
                limit: Some(n),
                offset: None,
                limit_by: vec![],
            })
        }
        _ => return,
    }
    q.fetch = None;
}

/// `ORDER BY k FETCH FIRST n ROWS WITH TIES`: the rows ranked (`rank() OVER (ORDER BY k)`)
/// at most `n`, which are the first `n` rows and every row that ties with the last of them.
/// Only for a plain SELECT (no DISTINCT, OFFSET or wildcard); other forms stay 0A000.
fn fetch_with_ties(q: &mut Query) {
    let Some(fetch) = q.fetch.as_ref().filter(|f| f.with_ties && !f.percent) else {
        return;
    };
    let Some(order) = q.order_by.as_ref() else {
        return;
    };
    let ast::OrderByKind::Expressions(keys) = &order.kind else {
        return;
    };
    if q.limit_clause.is_some() || q.with.is_some() {
        return;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return;
    };
    if s.distinct.is_some() {
        return;
    }
    let Some(names) = output_names(&q.body) else {
        return;
    };
    let item_expr = |i: usize| match &s.projection[i] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
        _ => None,
    };
    // Window ORDER BY sees the FROM clause, not output names or positions.
    let mut window_keys = Vec::with_capacity(keys.len());
    for k in keys {
        let mut k = k.clone();
        let replaced = match &k.expr {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i >= 1 && i <= s.projection.len())
                    .and_then(|i| item_expr(i - 1)),
                _ => None,
            },
            Expr::Identifier(id) => s.projection.iter().find_map(|item| match item {
                SelectItem::ExprWithAlias { expr, alias }
                    if crate::ddl::ident(alias) == crate::ddl::ident(id) =>
                {
                    Some(expr.clone())
                }
                _ => None,
            }),
            _ => None,
        };
        if let Some(e) = replaced {
            k.expr = e;
        }
        window_keys.push(k.to_string());
    }
    let n = fetch
        .quantity
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "1".into());
    let mut inner = s.as_ref().clone();
    for (i, item) in inner.projection.iter_mut().enumerate() {
        if let Some(e) = item_expr(i) {
            *item = SelectItem::ExprWithAlias {
                expr: e,
                alias: ast::Ident::new(format!("_kestrel_c{i}")),
            };
        }
    }
    let outs: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("_kestrel_c{i} AS \"{}\"", n.replace('"', "\"\"")))
        .collect();
    let Some(rank) = parse_expr(&format!(
        "rank() OVER (ORDER BY {})",
        window_keys.join(", ")
    )) else {
        return;
    };
    inner.projection.push(SelectItem::ExprWithAlias {
        expr: rank,
        alias: ast::Ident::new("_kestrel_rank"),
    });
    let sql = format!(
        "SELECT {} FROM ({inner}) AS _kestrel_ties WHERE _kestrel_rank <= ({n}) \
         ORDER BY _kestrel_rank",
        outs.join(", ")
    );
    if let Some(new) = parse_query(&sql) {
        *q = new;
    }
}

/// The output names of a select list without wildcards (`None` if it has one).
fn output_names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(s) => s
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => {
                    Some(crate::pgcompat::column_name(e).unwrap_or_else(|| "?column?".into()))
                }
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect(),
        SetExpr::SetOperation { left, .. } => output_names(left),
        SetExpr::Query(q) => output_names(&q.body),
        _ => None,
    }
}

fn set_operations_all(body: &mut SetExpr) {
    set_operations_all_named(body, &[]);
}

/// Left operands of INTERSECT/EXCEPT ALL whose column names the statement does not show
/// (`SELECT *`): the session plans them to learn the names ([`name_set_operands`]).
pub fn unnamed_set_operands(stmt: &ast::Statement) -> Vec<SetExpr> {
    use ast::{Visit, Visitor};
    struct Collect(Vec<SetExpr>);
    fn walk(body: &SetExpr, out: &mut Vec<SetExpr>) {
        if let SetExpr::SetOperation {
            op,
            set_quantifier: SetQuantifier::All,
            left,
            ..
        } = body
        {
            if matches!(op, SetOperator::Intersect | SetOperator::Except)
                && output_names(left).is_none()
            {
                out.push(left.as_ref().clone());
            }
            walk(left, out);
        }
    }
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            walk(&q.body, &mut self.0);
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect(Vec::new());
    let _ = stmt.visit(&mut c);
    c.0
}

/// Rewrites INTERSECT/EXCEPT ALL whose left operand's names were learned by planning.
pub fn name_set_operands(stmt: &mut ast::Statement, names: &[(SetExpr, Vec<String>)]) {
    struct Named<'a>(&'a [(SetExpr, Vec<String>)]);
    impl VisitorMut for Named<'_> {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            set_operations_all_named(&mut q.body, self.0);
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Named(names));
}

fn set_operations_all_named(body: &mut SetExpr, known: &[(SetExpr, Vec<String>)]) {
    let SetExpr::SetOperation {
        op,
        set_quantifier: SetQuantifier::All,
        left,
        right,
    } = body
    else {
        return;
    };
    if !matches!(op, SetOperator::Intersect | SetOperator::Except) {
        return;
    }
    set_operations_all_named(left, known);
    let looked_up = || {
        known
            .iter()
            .find(|(k, _)| k == left.as_ref())
            .map(|(_, n)| n.clone())
    };
    let Some(names) = output_names(left).or_else(looked_up) else {
        return;
    };
    let cols: Vec<String> = (1..=names.len()).map(|i| format!("c{i}")).collect();
    let cols = cols.join(", ");
    let side = |q: &SetExpr, alias: &str| {
        format!(
            "SELECT *, row_number() OVER (PARTITION BY {cols}) AS _kestrel_n \
             FROM ({q}) AS {alias}({cols})"
        )
    };
    let outs: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("_kestrel_set.c{} AS \"{}\"", i + 1, n.replace('"', "\"\"")))
        .collect();
    let keyword = if *op == SetOperator::Intersect {
        "INTERSECT"
    } else {
        "EXCEPT"
    };
    let sql = format!(
        "SELECT {} FROM ({} {keyword} {}) AS _kestrel_set",
        outs.join(", "),
        side(left, "_kestrel_l"),
        side(right, "_kestrel_r")
    );
    if let Some(q) = parse_query(&sql) {
        *body = *q.body;
    }
}

fn inline_named_windows(s: &mut Select) {
    if s.named_window.is_empty() {
        return;
    }
    let defs: Vec<(String, ast::WindowSpec)> = s
        .named_window
        .iter()
        .filter_map(|ast::NamedWindowDefinition(name, e)| match e {
            ast::NamedWindowExpr::WindowSpec(spec) => {
                Some((name.value.to_lowercase(), spec.clone()))
            }
            _ => None,
        })
        .collect();
    let find = |name: &ast::Ident| {
        defs.iter()
            .find(|(n, _)| *n == name.value.to_lowercase())
            .map(|(_, spec)| spec.clone())
    };
    struct Windows<'a>(&'a dyn Fn(&ast::Ident) -> Option<ast::WindowSpec>);
    impl VisitorMut for Windows<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let Expr::Function(f) = e else {
                return ControlFlow::Continue(());
            };
            let inlined = match &f.over {
                Some(ast::WindowType::NamedWindow(name)) => (self.0)(name),
                Some(ast::WindowType::WindowSpec(spec)) => spec
                    .window_name
                    .as_ref()
                    .and_then(|n| (self.0)(n))
                    .map(|base| ast::WindowSpec {
                        window_name: None,
                        partition_by: base.partition_by,
                        order_by: if spec.order_by.is_empty() {
                            base.order_by
                        } else {
                            spec.order_by.clone()
                        },
                        window_frame: spec.window_frame.clone().or(base.window_frame),
                    }),
                None => None,
            };
            if let Some(spec) = inlined {
                f.over = Some(ast::WindowType::WindowSpec(spec));
            }
            ControlFlow::Continue(())
        }
    }
    for item in s.projection.iter_mut() {
        let _ = item.visit(&mut Windows(&find));
    }
}

fn expand_series_items(s: &mut Select) {
    for item in s.projection.iter_mut() {
        let e = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let Expr::Function(f) = e else { continue };
        let is_series = f.over.is_none()
            && f.name.0.len() == 1
            && f.name.0[0]
                .as_ident()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"));
        if is_series {
            if let Some(unnest) = parse_expr(&format!("unnest({e})")) {
                *e = unnest;
            }
        }
    }
}

/// See the module documentation: lateral set-returning functions as select-list `unnest`.
pub fn lateral_unnest(stmt: &mut ast::Statement) {
    struct Lateral;
    impl VisitorMut for Lateral {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            let mut renames = Vec::new();
            visit_selects(&mut q.body, &mut |s| renames.extend(lateral_select(s)));
            // `u.c` now lives in the derived table named like the outer one (ORDER BY too).
            for (from, to) in renames {
                let _ = q.visit(&mut Requalify(&from, &to));
            }
            ControlFlow::Continue(())
        }
    }
    struct Requalify<'a>(&'a str, &'a ast::Ident);
    impl VisitorMut for Requalify<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = e {
                if parts.len() == 2 && parts[0].value == self.0 {
                    parts[0] = self.1.clone();
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Lateral);
}

/// Rewrites one select's lateral function; returns (old qualifier, new qualifier).
fn lateral_select(s: &mut Select) -> Option<(String, ast::Ident)> {
    let [outer, func] = s.from.as_slice() else {
        return None;
    };
    let (ast::TableFactor::Table { name, alias, .. }, true, true) = (
        &outer.relation,
        outer.joins.is_empty(),
        func.joins.is_empty(),
    ) else {
        return None;
    };
    // `unnest(x.col)` stays a table function elsewhere (a correlated one inside a scalar
    // subquery runs per outer row); here it is the lateral form.
    let unnest_call = unnest_factor(&func.relation);
    let (u_alias, array_exprs) = match (&func.relation, &unnest_call) {
        (
            ast::TableFactor::UNNEST {
                alias: Some(a),
                array_exprs,
                with_ordinality: false,
                ..
            },
            _,
        ) => (a, array_exprs),
        (_, Some((a, exprs))) => (a, exprs),
        _ => return None,
    };
    if !array_exprs.iter().any(crate::pgcompat::references_column)
        || u_alias.columns.len() != array_exprs.len()
    {
        return None;
    }
    let Some(qual) = alias
        .as_ref()
        .map(|a| a.name.clone())
        .or_else(|| name.0.last().and_then(|p| p.as_ident()).cloned())
    else {
        return None;
    };
    let items: Vec<String> = array_exprs
        .iter()
        .zip(&u_alias.columns)
        .map(|(e, c)| format!("unnest({e}) AS {}", c.name))
        .collect();
    let sql = format!(
        "SELECT * FROM (SELECT {qual}.*, {} FROM {}) AS {qual}",
        items.join(", "),
        outer.relation
    );
    let Some(q) = parse_query(&sql) else {
        return None;
    };
    let SetExpr::Select(parsed) = *q.body else {
        return None;
    };
    let Some(derived) = parsed.from.into_iter().next() else {
        return None;
    };
    let unnest_name = u_alias.name.value.clone();
    s.from = vec![derived];
    Some((unnest_name, qual))
}

/// `unnest(e, …) AS u(c, …)` written as a function in FROM: its alias (columns named after
/// the alias when not given) and arguments.
fn unnest_factor(f: &ast::TableFactor) -> Option<(ast::TableAlias, Vec<Expr>)> {
    let ast::TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        with_ordinality: false,
        ..
    } = f
    else {
        return None;
    };
    let is_unnest = name.0.len() == 1
        && name.0[0]
            .as_ident()
            .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"));
    if !is_unnest {
        return None;
    }
    let exprs = crate::pgcompat::plain_args(&args.args)?;
    let mut alias = alias.clone();
    if alias.columns.is_empty() && exprs.len() == 1 {
        alias.columns = vec![ast::TableAliasColumnDef {
            name: alias.name.clone(),
            data_type: None,
        }];
    }
    Some((alias, exprs))
}

/// PostgreSQL's errors for LIMIT/OFFSET values, ORDER BY positions, aggregates and window
/// functions where they are not allowed, set operations and subqueries of the wrong width —
/// checked before planning (DataFusion reports them as internal errors or not at all).
pub fn check_limits(stmt: &ast::Statement) -> Result<(), SqlError> {
    use ast::{Visit, Visitor};
    struct Limits(Option<SqlError>);
    impl Visitor for Limits {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            match check_query(q) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    self.0 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match check_subquery_width(e) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    self.0 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut v = Limits(None);
    let _ = stmt.visit(&mut v);
    v.0.map_or(Ok(()), Err)
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        found |= matches!(x, Expr::Subquery(_));
        ControlFlow::<()>::Continue(())
    });
    found
}

/// LIMIT and OFFSET expressions that hold a subquery, which DataFusion cannot plan. The
/// session evaluates each once (as PostgreSQL does per execution) and puts the value in its
/// place with [`set_limit_values`].
pub fn limit_subqueries(stmt: &ast::Statement) -> Vec<Expr> {
    use ast::{Visit, Visitor};
    struct Collect(Vec<Expr>);
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
                let offset = offset.as_ref().map(|o| &o.value);
                for e in [limit.as_ref(), offset].into_iter().flatten() {
                    if has_subquery(e) {
                        self.0.push(e.clone());
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Collect(Vec::new());
    let _ = stmt.visit(&mut c);
    c.0
}

/// Replaces each LIMIT/OFFSET expression found by [`limit_subqueries`] with its value
/// (matched by text): NULL means no LIMIT and OFFSET 0, as in PostgreSQL.
pub fn set_limit_values(stmt: &mut ast::Statement, values: &[(Expr, Option<i64>)]) {
    use ast::{VisitMut, VisitorMut};
    struct Set<'a>(&'a [(Expr, Option<i64>)]);
    impl Set<'_> {
        fn value(&self, e: &Expr) -> Option<Option<Expr>> {
            self.0.iter().find(|(k, _)| k == e).map(|(_, v)| {
                v.map(|n| Expr::Value(ast::Value::Number(n.to_string(), false).into()))
            })
        }
    }
    impl VisitorMut for Set<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &mut q.limit_clause {
                if let Some(v) = limit.as_ref().and_then(|l| self.value(l)) {
                    *limit = v;
                }
                if let Some(v) = offset.as_ref().and_then(|o| self.value(&o.value)) {
                    match (v, offset.as_mut()) {
                        (Some(n), Some(o)) => o.value = n,
                        _ => *offset = None,
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Set(values));
}

/// The text of a constant LIMIT/OFFSET (`2`, `'2'`, `-1`), if it is one.
fn count_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => Some(s.trim().to_string()),
            ast::Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => count_text(expr).map(|t| format!("-{t}")),
        _ => None,
    }
}

fn check_count(e: &Expr, what: &str, negative_code: &'static str) -> Result<(), SqlError> {
    let Some(text) = count_text(e) else {
        return Ok(());
    };
    let n: f64 = text.parse().map_err(|_| {
        SqlError::new(
            code::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type bigint: \"{text}\""),
        )
    })?;
    if n < 0.0 {
        return Err(SqlError::new(
            negative_code,
            format!("{what} must not be negative"),
        ));
    }
    Ok(())
}

/// `LIMIT '2'`: PostgreSQL reads the quoted number as bigint.
fn unquote_count(e: &mut Expr) {
    if let Expr::Value(v) = e {
        if let ast::Value::SingleQuotedString(s) = &v.value {
            if let Ok(n) = s.trim().parse::<i64>() {
                *e = Expr::Value(ast::Value::Number(n.to_string(), false).into());
            }
        }
    }
}

fn unquote_limits(q: &mut Query) {
    if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &mut q.limit_clause {
        if let Some(l) = limit {
            unquote_count(l);
        }
        if let Some(o) = offset {
            unquote_count(&mut o.value);
        }
    }
}

/// The aggregate names the rewrites recognise (PostgreSQL's common ones).
pub(crate) const AGGREGATES: [&str; 22] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "jsonb_agg",
    "json_agg",
    "jsonb_object_agg",
    "json_object_agg",
    "median",
    "corr",
];

/// `e` without its subqueries (they are checked as queries of their own).
fn without_subqueries(e: &Expr) -> Expr {
    struct Cut;
    impl VisitorMut for Cut {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if matches!(
                e,
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
            ) {
                *e = Expr::Value(ast::Value::Null.into());
            }
            ControlFlow::Continue(())
        }
    }
    let mut e = e.clone();
    let _ = e.visit(&mut Cut);
    e
}

/// (is an aggregate call, is a window call) of a function expression.
fn call_kind(e: &Expr) -> (bool, bool) {
    let Expr::Function(f) = e else {
        return (false, false);
    };
    let agg = f.name.0.len() == 1
        && f.name.0[0]
            .as_ident()
            .is_some_and(|i| AGGREGATES.contains(&i.value.to_lowercase().as_str()));
    (agg && f.over.is_none(), f.over.is_some())
}

/// Whether `e` (subqueries excluded) contains a call for which `pick` holds.
fn has_call(e: &Expr, pick: fn((bool, bool)) -> bool) -> bool {
    use ast::{Visit, Visitor};
    struct Find(fn((bool, bool)) -> bool, bool);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if (self.0)(call_kind(e)) {
                self.1 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Find(pick, false);
    let _ = without_subqueries(e).visit(&mut f);
    f.1
}

fn grouping_error(m: &str) -> SqlError {
    SqlError::new(code::GROUPING_ERROR, m.to_string())
}

/// Aggregates and window functions where PostgreSQL does not allow them (42803, 42P20), and
/// a JOIN without ON/USING (42601; only CROSS JOIN may omit it).
/// The name a FROM item is known by: its alias, else a table's own name.
fn exposed_name(f: &ast::TableFactor) -> Option<String> {
    match f {
        ast::TableFactor::Table { alias: Some(a), .. }
        | ast::TableFactor::Derived { alias: Some(a), .. }
        | ast::TableFactor::Function { alias: Some(a), .. }
        | ast::TableFactor::UNNEST { alias: Some(a), .. } => Some(crate::ddl::ident(&a.name)),
        ast::TableFactor::Table { name, .. } => Some(name.to_string()),
        _ => None,
    }
}

fn check_select(s: &Select) -> Result<(), SqlError> {
    let mut names = std::collections::HashSet::new();
    let factors = s
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for f in factors {
        if let Some(n) = exposed_name(f) {
            if !names.insert(n.clone()) {
                return Err(SqlError::new(
                    code::DUPLICATE_ALIAS,
                    format!("table name \"{n}\" specified more than once"),
                ));
            }
        }
    }
    for t in &s.from {
        for j in &t.joins {
            use ast::{JoinConstraint as C, JoinOperator as J};
            if let J::Join(C::None)
            | J::Inner(C::None)
            | J::Left(C::None)
            | J::LeftOuter(C::None)
            | J::Right(C::None)
            | J::RightOuter(C::None)
            | J::FullOuter(C::None) = &j.join_operator
            {
                return Err(SqlError::new(
                    code::SYNTAX_ERROR,
                    format!("syntax error: JOIN {} needs ON or USING", j.relation),
                ));
            }
        }
    }
    if let Some(w) = &s.selection {
        if has_call(w, |(agg, _)| agg) {
            return Err(grouping_error(
                "aggregate functions are not allowed in WHERE",
            ));
        }
        if has_call(w, |(_, win)| win) {
            return Err(SqlError::new(
                "42P20",
                "window functions are not allowed in WHERE",
            ));
        }
    }
    for item in &s.projection {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            continue;
        };
        use ast::{Visit, Visitor};
        struct Nested(Option<SqlError>);
        impl Visitor for Nested {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
                let Expr::Function(f) = e else {
                    return ControlFlow::Continue(());
                };
                if !call_kind(e).0 {
                    return ControlFlow::Continue(());
                }
                let ast::FunctionArguments::List(l) = &f.args else {
                    return ControlFlow::Continue(());
                };
                for a in &l.args {
                    let (ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x))
                    | ast::FunctionArg::Named {
                        arg: ast::FunctionArgExpr::Expr(x),
                        ..
                    }) = a
                    else {
                        continue;
                    };
                    if has_call(x, |(agg, _)| agg) {
                        self.0 = Some(grouping_error("aggregate function calls cannot be nested"));
                    } else if has_call(x, |(_, win)| win) {
                        self.0 = Some(grouping_error(
                            "aggregate function calls cannot contain window function calls",
                        ));
                    }
                    if self.0.is_some() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut v = Nested(None);
        let _ = without_subqueries(e).visit(&mut v);
        if let Some(err) = v.0 {
            return Err(err);
        }
    }
    Ok(())
}

/// The number of output columns of a query body, when it has no `*`.
fn width(body: &SetExpr) -> Option<usize> {
    output_names(body).map(|n| n.len())
}

fn check_set_operations(body: &SetExpr) -> Result<(), SqlError> {
    if let SetExpr::SetOperation {
        op,
        left,
        right,
        set_quantifier,
    } = body
    {
        check_set_operations(left)?;
        check_set_operations(right)?;
        // [`set_operations_all`] rewrites these when it can name the columns; DataFusion's
        // own INTERSECT/EXCEPT ALL lose duplicates, so refusing beats a wrong answer.
        if matches!(op, SetOperator::Intersect | SetOperator::Except)
            && matches!(set_quantifier, SetQuantifier::All)
        {
            return Err(SqlError::unsupported(format!(
                "{} ALL over a select list Kestrel cannot name (write the columns instead of *)",
                op.to_string().to_uppercase()
            )));
        }
        if let (Some(l), Some(r)) = (width(left), width(right)) {
            if l != r {
                return Err(SqlError::new(
                    code::SYNTAX_ERROR,
                    format!(
                        "each {} query must have the same number of columns",
                        op.to_string().to_uppercase()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Subqueries used as one value must produce one column (42601).
fn check_subquery_width(e: &Expr) -> Result<(), SqlError> {
    let (q, msg) = match e {
        Expr::Subquery(q) => (q, "subquery must return only one column"),
        Expr::InSubquery { subquery, .. } => (subquery, "subquery has too many columns"),
        _ => return Ok(()),
    };
    match width(&q.body) {
        Some(n) if n > 1 => Err(SqlError::new(code::SYNTAX_ERROR, msg)),
        _ => Ok(()),
    }
}

fn check_query(q: &Query) -> Result<(), SqlError> {
    check_set_operations(&q.body)?;
    let mut select_error = Ok(());
    let mut body = q.body.clone();
    visit_selects(&mut body, &mut |s| {
        if select_error.is_ok() {
            select_error = check_select(s);
        }
    });
    select_error?;
    if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
        if let Some(l) = limit {
            check_count(l, "LIMIT", "2201W")?;
        }
        if let Some(o) = offset {
            check_count(&o.value, "OFFSET", "2201X")?;
        }
    }
    let (Some(order), Some(names)) = (&q.order_by, output_names(&q.body)) else {
        return Ok(());
    };
    let ast::OrderByKind::Expressions(items) = &order.kind else {
        return Ok(());
    };
    if let SetExpr::Select(sel) = q.body.as_ref() {
        if matches!(sel.distinct, Some(ast::Distinct::Distinct)) {
            let listed: Vec<String> = sel
                .projection
                .iter()
                .flat_map(|i| match i {
                    SelectItem::UnnamedExpr(e) => vec![e.to_string()],
                    SelectItem::ExprWithAlias { expr, alias } => {
                        vec![expr.to_string(), alias.to_string()]
                    }
                    _ => vec![],
                })
                .collect();
            let wildcard = sel.projection.iter().any(|i| {
                matches!(
                    i,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            });
            for item in items {
                let numbered = matches!(&item.expr, Expr::Value(v)
                    if matches!(v.value, ast::Value::Number(..)));
                if !wildcard && !numbered && !listed.contains(&item.expr.to_string()) {
                    return Err(SqlError::new(
                        code::INVALID_COLUMN_REFERENCE,
                        "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
                    ));
                }
            }
        }
    }
    for item in items {
        if let Expr::Value(v) = &item.expr {
            if let ast::Value::Number(n, _) = &v.value {
                let pos: i64 = n.parse().unwrap_or(0);
                if pos < 1 || pos as usize > names.len() {
                    return Err(SqlError::new(
                        code::INVALID_COLUMN_REFERENCE,
                        format!("ORDER BY position {n} is not in select list"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&KestrelDialect, sql).unwrap().remove(0);
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn shapes() {
        let any = rewritten("SELECT id FROM o WHERE amount > ANY (SELECT amount FROM o)");
        assert!(
            any.contains("EXISTS (SELECT 1 FROM (SELECT amount FROM o)"),
            "{any}"
        );
        let all = rewritten("SELECT x FROM a INTERSECT ALL SELECT x FROM b ORDER BY x");
        assert!(all.contains("row_number() OVER (PARTITION BY c1)"), "{all}");
        assert!(all.contains("AS \"x\""), "{all}");
        let w = rewritten(
            "SELECT sum(s) OVER (w ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t \
             WINDOW w AS (PARTITION BY g ORDER BY d)",
        );
        assert!(w.contains("OVER (PARTITION BY g ORDER BY d ROWS"), "{w}");
        let mut stmt = Parser::parse_sql(
            &KestrelDialect,
            "SELECT d.id, t.v FROM docs d, unnest(d.tags) AS t(v) ORDER BY t.v",
        )
        .unwrap()
        .remove(0);
        lateral_unnest(&mut stmt);
        assert_eq!(
            stmt.to_string(),
            "SELECT d.id, d.v FROM (SELECT d.*, unnest(d.tags) AS v FROM docs d) AS d \
             ORDER BY d.v"
        );
        let f = rewritten("SELECT id FROM t ORDER BY id FETCH FIRST 2 ROWS ONLY");
        assert!(f.ends_with("LIMIT 2"), "{f}");
    }

    #[test]
    fn limit_errors() {
        let check = |sql: &str| {
            let stmt = Parser::parse_sql(&KestrelDialect, sql).unwrap().remove(0);
            check_limits(&stmt).map_err(|e| e.code)
        };
        assert_eq!(check("SELECT 1 LIMIT -1"), Err("2201W"));
        assert_eq!(check("SELECT 1 OFFSET -1"), Err("2201X"));
        assert_eq!(
            check("SELECT 1 LIMIT 'abc'"),
            Err(code::INVALID_TEXT_REPRESENTATION)
        );
        assert_eq!(check("SELECT 1 LIMIT '2'"), Ok(()));
        assert_eq!(rewritten("SELECT 1 LIMIT '2'"), "SELECT 1 LIMIT 2");
        assert_eq!(
            check("SELECT id FROM t ORDER BY 2"),
            Err(code::INVALID_COLUMN_REFERENCE)
        );
        assert_eq!(
            check("SELECT 1 FROM t WHERE count(*) > 1"),
            Err(code::GROUPING_ERROR)
        );
        assert_eq!(
            check("SELECT sum(count(*)) FROM t"),
            Err(code::GROUPING_ERROR)
        );
        assert_eq!(
            check("SELECT id FROM t WHERE row_number() OVER (ORDER BY id) > 1"),
            Err("42P20")
        );
        assert_eq!(check("SELECT 1, 2 UNION SELECT 3"), Err(code::SYNTAX_ERROR));
        assert_eq!(check("SELECT (SELECT 1, 2)"), Err(code::SYNTAX_ERROR));
        assert_eq!(check("SELECT * FROM a JOIN b"), Err(code::SYNTAX_ERROR));
        assert_eq!(check("SELECT * FROM a CROSS JOIN b"), Ok(()));
        assert_eq!(
            check("SELECT DISTINCT g FROM t ORDER BY s"),
            Err(code::INVALID_COLUMN_REFERENCE)
        );
        assert_eq!(
            check("SELECT DISTINCT g AS x FROM t ORDER BY x, g, 1"),
            Ok(())
        );
        // Aggregates inside a subquery of WHERE are fine.
        assert_eq!(
            check("SELECT id FROM t WHERE id > (SELECT max(id) FROM t)"),
            Ok(())
        );
    }
}

fn is_dml(body: &SetExpr) -> bool {
    matches!(
        body,
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
    )
}

/// Whether a query writes: a data-modifying CTE, or `WITH … INSERT/UPDATE/DELETE`.
pub fn modifies(q: &Query) -> bool {
    is_dml(&q.body)
        || q.with
            .as_ref()
            .is_some_and(|w| w.cte_tables.iter().any(|c| is_dml(&c.query.body)))
}

/// A data-modifying CTE: its name, its column aliases and its statement.
pub type ModifyingCte = (String, Vec<String>, ast::Statement);

/// Splits `WITH a AS (DML …), b AS (SELECT …) <main>` into the data-modifying CTEs (in
/// order) and the main statement with the remaining CTEs; `None` if there is none.
pub fn split_modifying_ctes(
    stmt: &datafusion::sql::parser::Statement,
) -> Result<Option<(Vec<ModifyingCte>, datafusion::sql::parser::Statement)>, SqlError> {
    use datafusion::sql::parser::Statement as DF;
    let DF::Statement(s) = stmt else {
        return Ok(None);
    };
    let ast::Statement::Query(q) = s.as_ref() else {
        return Ok(None);
    };
    if !modifies(q) {
        return Ok(None);
    }
    let mut q = q.as_ref().clone();
    let mut parts = Vec::new();
    if let Some(w) = q.with.as_mut() {
        if w.recursive && w.cte_tables.iter().any(|c| is_dml(&c.query.body)) {
            return Err(SqlError::unsupported(
                "data-modifying statements in WITH RECURSIVE",
            ));
        }
        let mut kept = Vec::new();
        for cte in std::mem::take(&mut w.cte_tables) {
            match *cte.query.body {
                SetExpr::Insert(st) | SetExpr::Update(st) | SetExpr::Delete(st) => {
                    let name = crate::ddl::ident(&cte.alias.name);
                    let cols = cte
                        .alias
                        .columns
                        .iter()
                        .map(|c| crate::ddl::ident(&c.name))
                        .collect();
                    parts.push((name, cols, st));
                }
                _ => kept.push(cte),
            }
        }
        w.cte_tables = kept;
    }
    let kept = q.with.take().filter(|w| !w.cte_tables.is_empty());
    let main = match *q.body {
        SetExpr::Insert(ast::Statement::Insert(mut ins)) => {
            if let (Some(w), Some(src)) = (kept, ins.source.as_mut()) {
                match src.with.as_mut() {
                    Some(inner) => {
                        let mut all = w.cte_tables;
                        all.append(&mut inner.cte_tables);
                        inner.cte_tables = all;
                    }
                    None => src.with = Some(w),
                }
            }
            ast::Statement::Insert(ins)
        }
        SetExpr::Update(st) | SetExpr::Delete(st) => {
            if kept.is_some() {
                return Err(SqlError::unsupported(
                    "WITH queries before UPDATE or DELETE (other than data-modifying ones)",
                ));
            }
            st
        }
        body => {
            q.body = Box::new(body);
            q.with = kept;
            ast::Statement::Query(Box::new(q))
        }
    };
    Ok(Some((parts, DF::Statement(Box::new(main)))))
}
