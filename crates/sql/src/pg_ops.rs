//! PostgreSQL operator semantics DataFusion lacks, as two analyzer rules around its type
//! coercion (both registered in `session::analyzer_rules`).
//!
//! [`PgLiteralRule`], before coercion:
//! * An integer literal that fits int4 is int4 when it is an arithmetic operand, a select-list
//!   item or the argument of `pg_typeof` — DataFusion types every integer literal int8, so
//!   `2147483647 + 1` would not overflow and `SELECT 1` would be a bigint.
//!
//! [`TemporalPlanner`] (an `ExprPlanner`, so while planning): `interval * n`, `n * interval`,
//! `interval / n` become [`INTERVAL_MUL`] calls, `date ± n` adds days, `date - date` counts
//! days and `date ± interval` is a timestamp (DataFusion cannot type these and fails before any analyzer rule runs).
//!
//! [`PgOperatorRule`], after coercion:
//! * Integer `+ - *` detect overflow (22003) — DataFusion's operators wrap silently.
//! * Interval comparisons compare spans normalized with 30-day months and 24-hour days
//!   (`'1 day' = '24 hours'`).
//! * Casts to integer types round instead of truncating: half away from zero for numeric
//!   (a decimal literal is numeric), half to even for float (`x::float8::int`).
//! * Casts of text to date/timestamp parse PostgreSQL's input formats ([`crate::datetime`]).
//!
//! Every rewrite keeps the expression's output name (DataFusion's `NamePreserver`), so plans
//! above the rewritten node still find their columns.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Decimal128Array, IntervalMonthDayNanoArray, StringArray,
};
use datafusion::arrow::compute::{cast, kernels::numeric};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{BinaryExpr, Cast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{code, SqlError};

/// Rewrites every expression of every node of `plan` (subqueries included) bottom-up with
/// `f`, keeping output names; nodes whose expressions changed get their schema recomputed,
/// and so do the nodes above them (their input types may have changed).
///
/// With `types_kept` (the rewrite never changes an expression's type) VALUES lists are
/// rewritten too; otherwise they keep their planned schema and are left alone. LIMIT needs
/// int8 literals and is never touched.
pub(crate) fn rewrite_plan(
    plan: LogicalPlan,
    types_kept: bool,
    f: &dyn Fn(Expr, &DFSchema, bool) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|p| {
        let skip = match p {
            LogicalPlan::Values(_) => !types_kept,
            LogicalPlan::Limit(_) => true,
            _ => false,
        };
        if skip {
            return Ok(Transformed::no(p));
        }
        let mut schema = DFSchema::empty();
        for input in p.inputs() {
            schema.merge(input.schema());
        }
        let select_list = matches!(p, LogicalPlan::Projection(_));
        let names = NamePreserver::new(&p);
        let t = p.map_expressions(|e| {
            let saved = names.save(&e);
            let top = f(e, &schema, select_list)?;
            let t = top.transform_data(|e| e.transform_up(|x| f(x, &schema, false)))?;
            Ok(if t.transformed {
                Transformed::yes(saved.restore(t.data))
            } else {
                t
            })
        })?;
        // Input schemas may have changed below even when this node's expressions did not.
        t.map_data(|p| p.recompute_schema())
    })
    .map(|t| t.data)
}

/// Integer literals as int4, interval/date arithmetic DataFusion cannot type.
#[derive(Debug, Default)]
pub struct PgLiteralRule;

impl AnalyzerRule for PgLiteralRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let needed = plan_has(&plan, needs_literal_rule) || select_list_int_literal(&plan);
        if !needed || has_recursive_query(&plan) {
            return Ok(plan);
        }
        rewrite_plan(plan, false, &literal_rewrite)
    }
    fn name(&self) -> &str {
        "kestrel_pg_literals"
    }
}

/// Whether any expression of `plan` (subqueries included) satisfies `pred`.
pub(crate) fn plan_has(plan: &LogicalPlan, pred: fn(&Expr) -> bool) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        let _ = p.apply_expressions(|e| {
            found |= e.exists(|x| Ok(pred(x))).unwrap_or(false);
            Ok(if found {
                datafusion::common::tree_node::TreeNodeRecursion::Stop
            } else {
                datafusion::common::tree_node::TreeNodeRecursion::Continue
            })
        });
        Ok(if found {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    found
}

/// A recursive CTE's work table keeps the types it was planned with, so literals under it
/// must keep theirs (its arithmetic is still checked by [`PgOperatorRule`]).
fn has_recursive_query(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        found |= matches!(p, LogicalPlan::RecursiveQuery(_));
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

fn needs_literal_rule(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(b) => {
            let text = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
            is_arith(b.op) || (b.op.supports_propagation() && (text(&b.left) || text(&b.right)))
        }
        Expr::ScalarFunction(f) => f.name() == "pg_typeof",
        _ => false,
    }
}

/// Whether a select list of `plan` has a bare integer literal (`SELECT 1`): only there, not
/// in every `WHERE id = 5`, does the literal's own type reach the client.
fn select_list_int_literal(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::Projection(proj) = p {
            found |= proj.expr.iter().any(|e| {
                matches!(
                    e.clone().unalias(),
                    Expr::Literal(ScalarValue::Int64(Some(_)), _)
                )
            });
        }
        Ok(match found {
            true => datafusion::common::tree_node::TreeNodeRecursion::Stop,
            false => datafusion::common::tree_node::TreeNodeRecursion::Continue,
        })
    });
    found
}

fn is_arith(op: Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
    )
}

/// `Some(int4 literal)` for an int8 literal that fits int4.
fn as_int4(e: &Expr) -> Option<Expr> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), meta) => i32::try_from(*v)
            .ok()
            .map(|v| Expr::Literal(ScalarValue::Int32(Some(v)), meta.clone())),
        _ => None,
    }
}

fn literal_rewrite(e: Expr, schema: &DFSchema, select_item: bool) -> DfResult<Transformed<Expr>> {
    if select_item {
        return Ok(match as_int4(&e.clone().unalias()) {
            Some(narrow) => Transformed::yes(narrow),
            None => Transformed::no(e),
        });
    }
    match e {
        Expr::BinaryExpr(b) if is_arith(b.op) => {
            let (l, r) = (as_int4(&b.left), as_int4(&b.right));
            if l.is_none() && r.is_none() {
                return Ok(Transformed::no(Expr::BinaryExpr(b)));
            }
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(l.unwrap_or(*b.left)),
                b.op,
                Box::new(r.unwrap_or(*b.right)),
            ))))
        }
        Expr::BinaryExpr(b) if b.op.supports_propagation() => {
            // `dur = '24 hours'`: DataFusion cannot compare an interval with text.
            let text = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(Some(_)), _));
            let iv = |e: &Expr| is_interval(&type_of(e, schema));
            let to_iv = |e: Expr| {
                Expr::Cast(Cast::new(
                    Box::new(e),
                    DataType::Interval(IntervalUnit::MonthDayNano),
                ))
            };
            if text(&b.right) && iv(&b.left) {
                Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    b.left,
                    b.op,
                    Box::new(to_iv(*b.right)),
                ))))
            } else if text(&b.left) && iv(&b.right) {
                Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(to_iv(*b.left)),
                    b.op,
                    b.right,
                ))))
            } else {
                Ok(Transformed::no(Expr::BinaryExpr(b)))
            }
        }
        Expr::ScalarFunction(mut f) if f.name() == "pg_typeof" => {
            let mut changed = false;
            for a in f.args.iter_mut() {
                if let Some(n) = as_int4(a) {
                    *a = n;
                    changed = true;
                }
            }
            Ok(Transformed::new_transformed(
                Expr::ScalarFunction(f),
                changed,
            ))
        }
        e => Ok(Transformed::no(e)),
    }
}

fn type_of(e: &Expr, schema: &DFSchema) -> Option<DataType> {
    e.get_type(schema).ok()
}

fn is_interval(t: &Option<DataType>) -> bool {
    matches!(t, Some(DataType::Interval(_)))
}

fn is_number(t: &Option<DataType>) -> bool {
    matches!(t, Some(t) if t.is_numeric())
}

/// Plans `interval * n`, `n * interval`, `interval / n`, `date ± integer` and `date - date`,
/// which DataFusion cannot type (it fails while planning, before any analyzer rule).
#[derive(Debug, Default)]
pub struct TemporalPlanner;

impl datafusion::logical_expr::planner::ExprPlanner for TemporalPlanner {
    fn plan_binary_op(
        &self,
        expr: datafusion::logical_expr::planner::RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<
        datafusion::logical_expr::planner::PlannerResult<
            datafusion::logical_expr::planner::RawBinaryExpr,
        >,
    > {
        use datafusion::logical_expr::planner::PlannerResult;
        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
        let op = match expr.op {
            B::Multiply => Operator::Multiply,
            B::Divide => Operator::Divide,
            B::Plus => Operator::Plus,
            B::Minus => Operator::Minus,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let b = BinaryExpr::new(
            Box::new(expr.left.clone()),
            op,
            Box::new(expr.right.clone()),
        );
        let (lt, rt) = (type_of(&b.left, schema), type_of(&b.right, schema));
        let date = Some(DataType::Date32);
        if matches!(op, Operator::Multiply | Operator::Divide) && (lt == date || rt == date) {
            let name = |t: &Option<DataType>| match t {
                Some(t) => crate::types::SqlType::from_arrow(t)
                    .map_or_else(|| t.to_string(), |t| t.pg_name()),
                None => "unknown".into(),
            };
            return Err(SqlError::new(
                code::UNDEFINED_FUNCTION,
                format!("operator does not exist: {} {op} {}", name(&lt), name(&rt)),
            )
            .into_datafusion());
        }
        Ok(match temporal_arith(&b, schema) {
            Some(e) => PlannerResult::Planned(e),
            None => PlannerResult::Original(expr),
        })
    }
}

fn temporal_arith(b: &BinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let (lt, rt) = (type_of(&b.left, schema), type_of(&b.right, schema));
    let float = |e: &Expr| e.clone().cast_to(&DataType::Float64, schema).ok();
    let date = Some(DataType::Date32);
    match b.op {
        Operator::Multiply if is_interval(&lt) && is_number(&rt) => {
            Some(INTERVAL_MUL.call(vec![(*b.left).clone(), float(&b.right)?]))
        }
        Operator::Multiply if is_number(&lt) && is_interval(&rt) => {
            Some(INTERVAL_MUL.call(vec![(*b.right).clone(), float(&b.left)?]))
        }
        Operator::Divide if is_interval(&lt) && is_number(&rt) => {
            Some(INTERVAL_DIV.call(vec![(*b.left).clone(), float(&b.right)?]))
        }
        Operator::Plus | Operator::Minus
            if lt == date && matches!(&rt, Some(t) if t.is_integer()) =>
        {
            let days = (*b.right).clone().cast_to(&DataType::Int64, schema).ok()?;
            let days = match b.op {
                Operator::Minus => Expr::Negative(Box::new(days)),
                _ => days,
            };
            Some(DATE_ADD_DAYS.call(vec![(*b.left).clone(), days]))
        }
        Operator::Plus if matches!(&lt, Some(t) if t.is_integer()) && rt == date => {
            let days = (*b.left).clone().cast_to(&DataType::Int64, schema).ok()?;
            Some(DATE_ADD_DAYS.call(vec![(*b.right).clone(), days]))
        }
        // date ± interval is a timestamp in PostgreSQL (DataFusion keeps the date).
        Operator::Plus | Operator::Minus if lt == date && is_interval(&rt) => {
            let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
            Some(Expr::BinaryExpr(BinaryExpr::new(
                Box::new((*b.left).clone().cast_to(&ts, schema).ok()?),
                b.op,
                b.right.clone(),
            )))
        }
        Operator::Plus if is_interval(&lt) && rt == date => {
            let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
            Some(Expr::BinaryExpr(BinaryExpr::new(
                b.left.clone(),
                b.op,
                Box::new((*b.right).clone().cast_to(&ts, schema).ok()?),
            )))
        }
        Operator::Minus if lt == date && rt == date => {
            Some(DATE_DIFF_DAYS.call(vec![(*b.left).clone(), (*b.right).clone()]))
        }
        _ => None,
    }
}

/// Checked integer arithmetic, date/interval operators, rounding casts, date/time input.
#[derive(Debug, Default)]
pub struct PgOperatorRule;

impl AnalyzerRule for PgOperatorRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        if !plan_has(&plan, |e| matches!(e, Expr::BinaryExpr(_) | Expr::Cast(_))) {
            return Ok(plan);
        }
        rewrite_plan(plan, true, &|e, schema, top| match top {
            true => Ok(Transformed::no(e)),
            false => operator_rewrite(e, schema),
        })
    }
    fn name(&self) -> &str {
        "kestrel_pg_operators"
    }
}

fn operator_rewrite(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let new = match &e {
        Expr::BinaryExpr(b) => binary(b, schema),
        Expr::Cast(c) => cast_rewrite(c, schema),
        _ => None,
    };
    Ok(match new {
        Some(n) => Transformed::yes(n),
        None => Transformed::no(e),
    })
}

fn binary(b: &BinaryExpr, schema: &DFSchema) -> Option<Expr> {
    let (lt, rt) = (type_of(&b.left, schema)?, type_of(&b.right, schema)?);
    let int = |t: &DataType| matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    let interval = |t: &DataType| matches!(t, DataType::Interval(IntervalUnit::MonthDayNano));
    let args = || vec![(*b.left).clone(), (*b.right).clone()];
    match b.op {
        Operator::Plus if lt == rt && int(&lt) => Some(CHECKED_ADD.call(args())),
        Operator::Minus if lt == rt && int(&lt) => Some(CHECKED_SUB.call(args())),
        Operator::Multiply if lt == rt && int(&lt) => Some(CHECKED_MUL.call(args())),
        Operator::Eq
        | Operator::NotEq
        | Operator::Lt
        | Operator::LtEq
        | Operator::Gt
        | Operator::GtEq
            if interval(&lt) && interval(&rt) =>
        {
            Some(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(INTERVAL_SPAN.call(vec![(*b.left).clone()])),
                b.op,
                Box::new(INTERVAL_SPAN.call(vec![(*b.right).clone()])),
            )))
        }
        _ => None,
    }
}

fn cast_rewrite(c: &Cast, schema: &DFSchema) -> Option<Expr> {
    let from = type_of(&c.expr, schema)?;
    let to = c.field.data_type();
    let text = matches!(
        from,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match to {
        DataType::Int16 | DataType::Int32 | DataType::Int64
            if matches!(
                from,
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(..)
            ) =>
        {
            // An explicit `::float8` inside means float semantics (round half to even);
            // anything else stands for numeric (a decimal literal is numeric in PostgreSQL).
            let float_cast = matches!(c.expr.as_ref(), Expr::Cast(inner)
                if matches!(inner.field.data_type(), DataType::Float32 | DataType::Float64));
            let f = if float_cast { &ROUND_EVEN } else { &ROUND_AWAY };
            let mut c = c.clone();
            c.expr = Box::new(f.call(vec![(*c.expr).clone()]));
            Some(Expr::Cast(c))
        }
        DataType::Int16 | DataType::Int32 | DataType::Int64 if text => {
            let mut c = c.clone();
            c.expr = Box::new(INT_IN.call(vec![
                (*c.expr).clone(),
                Expr::Literal(ScalarValue::Utf8(Some(int_name(to).into())), None),
            ]));
            Some(Expr::Cast(c))
        }
        DataType::Date32 if text => Some(DATE_IN.call(vec![(*c.expr).clone()])),
        DataType::List(_) if text => {
            // The target type travels as a typed NULL argument (the result type follows it).
            let target = ScalarValue::try_from(to).ok()?;
            Some(ARRAY_IN.call(vec![(*c.expr).clone(), Expr::Literal(target, None)]))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) if text => {
            Some(INTERVAL_IN.call(vec![(*c.expr).clone()]))
        }
        DataType::Timestamp(_, zone) if text => {
            let f = match zone {
                None => &TIMESTAMP_IN,
                Some(_) => &TIMESTAMPTZ_IN,
            };
            let f = f.call(vec![(*c.expr).clone()]);
            // Keep the exact target type (unit, zone name) the plan above expects.
            let mut c = c.clone();
            c.expr = Box::new(f);
            Some(Expr::Cast(c))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// The functions the rules call.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    CheckedAdd,
    CheckedSub,
    CheckedMul,
    RoundAway,
    RoundEven,
    IntervalMul,
    IntervalDiv,
    IntervalSpan,
    DateAddDays,
    DateDiffDays,
    ArrayIn,
    DateIn,
    IntIn,
    IntervalIn,
    TimestampIn,
    TimestampTzIn,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OpFn {
    op: Op,
    name: &'static str,
    signature: Signature,
}

fn op_udf(op: Op, name: &'static str, arity: usize) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(OpFn {
        op,
        name,
        signature: Signature::any(arity, Volatility::Immutable),
    }))
}

static CHECKED_ADD: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::CheckedAdd, "kestrel_int_add", 2));
static CHECKED_SUB: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::CheckedSub, "kestrel_int_sub", 2));
static CHECKED_MUL: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::CheckedMul, "kestrel_int_mul", 2));
static ROUND_AWAY: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::RoundAway, "kestrel_round_half_away", 1));
static ROUND_EVEN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::RoundEven, "kestrel_round_half_even", 1));
static INTERVAL_MUL: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::IntervalMul, "kestrel_interval_mul", 2));
static INTERVAL_DIV: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::IntervalDiv, "kestrel_interval_div", 2));
static INTERVAL_SPAN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::IntervalSpan, "kestrel_interval_span", 1));
static DATE_ADD_DAYS: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::DateAddDays, "kestrel_date_add_days", 2));
static DATE_DIFF_DAYS: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::DateDiffDays, "kestrel_date_diff_days", 2));
static DATE_IN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::DateIn, "kestrel_date_in", 1));
static ARRAY_IN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::ArrayIn, "kestrel_array_in", 2));
static INT_IN: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| op_udf(Op::IntIn, "kestrel_int_in", 2));
static INTERVAL_IN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::IntervalIn, "kestrel_interval_in", 1));
static TIMESTAMP_IN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::TimestampIn, "kestrel_timestamp_in", 1));
static TIMESTAMPTZ_IN: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| op_udf(Op::TimestampTzIn, "kestrel_timestamptz_in", 1));

impl ScalarUDFImpl for OpFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(match self.op {
            Op::CheckedAdd | Op::CheckedSub | Op::CheckedMul | Op::RoundAway | Op::RoundEven => {
                args[0].clone()
            }
            Op::IntervalMul | Op::IntervalDiv | Op::IntervalIn => {
                DataType::Interval(IntervalUnit::MonthDayNano)
            }
            Op::IntervalSpan => DataType::Decimal128(38, 0),
            Op::DateAddDays | Op::DateIn => DataType::Date32,
            Op::ArrayIn => args[1].clone(),
            Op::DateDiffDays => DataType::Int32,
            Op::IntIn => DataType::Int64,
            Op::TimestampIn => DataType::Timestamp(TimeUnit::Microsecond, None),
            Op::TimestampTzIn => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = self.eval(&arrays).map_err(SqlError::into_datafusion)?;
        Ok(if scalar && out.len() == 1 {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

fn df(e: datafusion::error::DataFusionError) -> SqlError {
    crate::error::from_datafusion(e)
}

/// `a` cast to `ty` (the argument types the functions below work on).
fn cast_as(a: &ArrayRef, ty: &DataType) -> Result<ArrayRef, SqlError> {
    cast(a, ty).map_err(|e| df(e.into()))
}

/// `a` as its concrete array type `T`.
fn typed<'a, T: 'static>(a: &'a ArrayRef, what: &str) -> Result<&'a T, SqlError> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| SqlError::internal(format!("{what} argument")))
}

fn int_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int64 => "bigint",
        _ => "integer",
    }
}

fn overflow(t: &DataType) -> SqlError {
    SqlError::new(
        code::NUMERIC_VALUE_OUT_OF_RANGE,
        format!("{} out of range", int_name(t)),
    )
}

/// PostgreSQL's integer input: surrounding blanks allowed, 22P02 for other text, 22003 for
/// a number outside the target type (`type_name`: smallint, integer, bigint).
fn int_in(a: &ArrayRef, type_name: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let a = cast_as(a, &DataType::Utf8)?;
    let s = typed::<StringArray>(&a, "text input")?;
    let ty = cast_as(type_name, &DataType::Utf8)?;
    let ty = ty
        .as_any()
        .downcast_ref::<StringArray>()
        .filter(|t| !t.is_empty() && !t.is_null(0))
        .map_or("integer", |t| t.value(0));
    let (lo, hi) = match ty {
        "smallint" => (i16::MIN as i128, i16::MAX as i128),
        "bigint" => (i64::MIN as i128, i64::MAX as i128),
        _ => (i32::MIN as i128, i32::MAX as i128),
    };
    let mut out = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        if s.is_null(i) {
            out.push(None);
            continue;
        }
        let text = s.value(i);
        let t = text.trim();
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SqlError::new(
                code::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type {ty}: \"{text}\""),
            ));
        }
        match t.parse::<i128>().ok().filter(|v| (lo..=hi).contains(v)) {
            Some(v) => out.push(Some(v as i64)),
            None => {
                return Err(SqlError::new(
                    code::NUMERIC_VALUE_OUT_OF_RANGE,
                    format!("value \"{text}\" is out of range for type {ty}"),
                ))
            }
        }
    }
    Ok(Arc::new(datafusion::arrow::array::Int64Array::from(out)))
}

fn interval_overflow() -> SqlError {
    SqlError::new(code::DATETIME_FIELD_OVERFLOW, "interval out of range")
}

impl OpFn {
    fn eval(&self, a: &[ArrayRef]) -> Result<ArrayRef, SqlError> {
        let checked = |r: Result<ArrayRef, datafusion::arrow::error::ArrowError>| {
            r.map_err(|e| match e {
                datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => {
                    overflow(a[0].data_type())
                }
                other => df(other.into()),
            })
        };
        match self.op {
            Op::CheckedAdd => checked(numeric::add(&a[0], &a[1])),
            Op::CheckedSub => checked(numeric::sub(&a[0], &a[1])),
            Op::CheckedMul => checked(numeric::mul(&a[0], &a[1])),
            Op::RoundAway | Op::RoundEven => round(&a[0], self.op == Op::RoundEven),
            Op::IntervalMul | Op::IntervalDiv => interval_scale(&a[0], &a[1], self.op),
            Op::IntervalSpan => interval_span(&a[0]),
            Op::DateAddDays => date_add_days(&a[0], &a[1]),
            Op::DateDiffDays => date_diff_days(&a[0], &a[1]),
            Op::DateIn | Op::TimestampIn | Op::TimestampTzIn => text_in(&a[0], self.op),
            Op::IntIn => int_in(&a[0], &a[1]),
            Op::ArrayIn => array_in(&a[0], a[1].data_type()),
            Op::IntervalIn => interval_in(&a[0]),
        }
    }
}

fn round(a: &ArrayRef, even: bool) -> Result<ArrayRef, SqlError> {
    use datafusion::arrow::array::{Float32Array, Float64Array};
    let rf = |v: f64| if even { v.round_ties_even() } else { v.round() };
    if let Some(x) = a.as_any().downcast_ref::<Float64Array>() {
        return Ok(Arc::new(
            x.unary::<_, datafusion::arrow::datatypes::Float64Type>(rf),
        ));
    }
    if let Some(x) = a.as_any().downcast_ref::<Float32Array>() {
        return Ok(Arc::new(
            x.unary::<_, datafusion::arrow::datatypes::Float32Type>(|v| rf(v as f64) as f32),
        ));
    }
    if let Some(x) = a.as_any().downcast_ref::<Decimal128Array>() {
        let unit = 10i128.pow(x.scale().max(0) as u32);
        let half = unit / 2;
        let r: Decimal128Array = x.unary(|v| {
            let rem = v % unit;
            let base = v - rem;
            if rem >= half && half > 0 {
                base + unit
            } else if rem <= -half && half > 0 {
                base - unit
            } else {
                base
            }
        });
        let r = r
            .with_precision_and_scale(x.precision(), x.scale())
            .map_err(|e| df(e.into()))?;
        return Ok(Arc::new(r));
    }
    Ok(a.clone())
}

const MICROS_PER_DAY: f64 = 86_400_000_000.0;
const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// PostgreSQL's `interval_mul`: fractional months spill into days (30 per month), fractional
/// days into time (24 hours per day); time is kept to microseconds.
pub fn interval_times(iv: IntervalMonthDayNano, f: f64) -> Result<IntervalMonthDayNano, SqlError> {
    let months = iv.months as f64 * f;
    let whole_months = months.trunc();
    let month_days = (months - whole_months) * 30.0;
    let days = iv.days as f64 * f;
    let whole_days = days.trunc();
    let spill_us = (days - whole_days + month_days.fract()) * MICROS_PER_DAY;
    let micros = ((iv.nanoseconds / 1000) as f64 * f + spill_us).round();
    let total_days = whole_days + month_days.trunc();
    let fits = |v: f64| v.is_finite() && v.abs() < i32::MAX as f64;
    if !fits(whole_months)
        || !fits(total_days)
        || !micros.is_finite()
        || micros.abs() > 9.2e18 / 1000.0
    {
        return Err(interval_overflow());
    }
    Ok(IntervalMonthDayNano::new(
        whole_months as i32,
        total_days as i32,
        micros as i64 * 1000,
    ))
}

fn interval_scale(iv: &ArrayRef, factor: &ArrayRef, op: Op) -> Result<ArrayRef, SqlError> {
    let iv = cast_as(iv, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let factor = cast_as(factor, &DataType::Float64)?;
    let ivs = typed::<IntervalMonthDayNanoArray>(&iv, "interval operand")?;
    let fs = typed::<datafusion::arrow::array::Float64Array>(&factor, "interval factor")?;
    let mut out = Vec::with_capacity(ivs.len());
    for i in 0..ivs.len() {
        if ivs.is_null(i) || fs.is_null(i) {
            out.push(None);
            continue;
        }
        let f = fs.value(i);
        let f = match op {
            Op::IntervalDiv if f == 0.0 => {
                return Err(SqlError::new(code::DIVISION_BY_ZERO, "division by zero"))
            }
            Op::IntervalDiv => 1.0 / f,
            _ => f,
        };
        out.push(Some(interval_times(ivs.value(i), f)?));
    }
    Ok(Arc::new(IntervalMonthDayNanoArray::from(out)))
}

/// An interval as one number of nanoseconds (30-day months, 24-hour days), for comparing.
pub fn span_nanos(iv: IntervalMonthDayNano) -> i128 {
    (iv.months as i128 * 30 + iv.days as i128) * NANOS_PER_DAY + iv.nanoseconds as i128
}

fn interval_span(a: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let a = cast_as(a, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let ivs = typed::<IntervalMonthDayNanoArray>(&a, "interval operand")?;
    let out: Decimal128Array = ivs.unary(span_nanos);
    Ok(Arc::new(
        out.with_precision_and_scale(38, 0)
            .map_err(|e| df(e.into()))?,
    ))
}

fn date_add_days(d: &ArrayRef, n: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let d = cast_as(d, &DataType::Date32)?;
    let n = cast_as(n, &DataType::Int64)?;
    let ds = typed::<Date32Array>(&d, "date")?;
    let ns = typed::<datafusion::arrow::array::Int64Array>(&n, "days")?;
    let mut out = Vec::with_capacity(ds.len());
    for i in 0..ds.len() {
        if ds.is_null(i) || ns.is_null(i) {
            out.push(None);
            continue;
        }
        let v = (ds.value(i) as i64)
            .checked_add(ns.value(i))
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| SqlError::new(code::DATETIME_FIELD_OVERFLOW, "date out of range"))?;
        out.push(Some(v));
    }
    Ok(Arc::new(Date32Array::from(out)))
}

fn date_diff_days(a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let a = cast_as(a, &DataType::Int32)?;
    let b = cast_as(b, &DataType::Int32)?;
    numeric::sub(&a, &b).map_err(|_| overflow(&DataType::Int32))
}

/// Interval text through Arrow's parser, one value at a time so a failure names its input
/// (22007, as PostgreSQL).
fn interval_in(a: &ArrayRef) -> Result<ArrayRef, SqlError> {
    let a = cast_as(a, &DataType::Utf8)?;
    let s = typed::<StringArray>(&a, "text input")?;
    let mut out = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        if s.is_null(i) {
            out.push(None);
            continue;
        }
        let text = s.value(i);
        let v =
            datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text)
                .map_err(|_| {
                    SqlError::new(
                        code::INVALID_DATETIME_FORMAT,
                        format!("invalid input syntax for type interval: \"{text}\""),
                    )
                })?;
        out.push(Some(v));
    }
    Ok(Arc::new(IntervalMonthDayNanoArray::from(out)))
}

/// Parses PostgreSQL array text (`{a,"b c",NULL}`) into its element texts (one dimension).
pub fn parse_array_text(s: &str) -> Result<Vec<Option<String>>, SqlError> {
    let malformed = |why: &str| {
        SqlError::new(
            code::INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{s}\""),
        )
        .with_detail(why.to_string())
    };
    let t = s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| malformed("Array value must start with \"{\" or dimension information."))?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        match chars.peek() {
            Some('"') => {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => item.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => item.push(c),
                        None => return Err(malformed("Unexpected end of input.")),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('{') => return Err(SqlError::unsupported("multidimensional arrays")),
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    if c == '{' || c == '}' || c == '"' {
                        return Err(malformed("Unexpected array element."));
                    }
                    chars.next();
                    if c == '\\' {
                        item.extend(chars.next());
                    } else {
                        item.push(c);
                    }
                }
                item = item.trim_end().to_string();
                if item.is_empty() {
                    return Err(malformed("Unexpected \",\" character."));
                }
            }
        }
        out.push((quoted || !item.eq_ignore_ascii_case("null")).then_some(item));
        match chars.next() {
            None => return Ok(out),
            Some(',') => continue,
            Some(_) => return Err(malformed("Unexpected array element.")),
        }
    }
}

/// Array text (`'{1,2}'`) to a List array of `to`'s element type, row by row.
fn array_in(a: &ArrayRef, to: &DataType) -> Result<ArrayRef, SqlError> {
    let DataType::List(field) = to else {
        return Err(SqlError::internal("array input for a non-list type"));
    };
    let a = cast_as(a, &DataType::Utf8)?;
    let s = typed::<StringArray>(&a, "text input")?;
    let mut offsets = vec![0i32];
    let mut texts: Vec<Option<String>> = Vec::new();
    let mut valid = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        valid.push(!s.is_null(i));
        if !s.is_null(i) {
            texts.extend(parse_array_text(s.value(i))?);
        }
        offsets.push(
            i32::try_from(texts.len())
                .map_err(|_| SqlError::new(code::PROGRAM_LIMIT_EXCEEDED, "array too large"))?,
        );
    }
    let flat: ArrayRef = Arc::new(StringArray::from(texts));
    let elems = match cast_text(&flat, field.data_type()) {
        Some(parsed) => parsed?,
        None => cast_as(&flat, field.data_type())?,
    };
    let list = datafusion::arrow::array::ListArray::try_new(
        field.clone(),
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        elems,
        Some(datafusion::arrow::buffer::NullBuffer::from(valid)),
    )
    .map_err(|e| df(e.into()))?;
    Ok(Arc::new(list))
}

/// Converts a text array to `to` with PostgreSQL's input rules when Kestrel has its own for
/// that type (date, timestamp, interval, integers); `None` means Arrow's cast is right.
pub fn cast_text(a: &ArrayRef, to: &DataType) -> Option<Result<ArrayRef, SqlError>> {
    if !matches!(
        a.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return None;
    }
    let name = |t: &DataType| -> ArrayRef { Arc::new(StringArray::from(vec![int_name(t)])) };
    let out = match to {
        DataType::Date32 => text_in(a, Op::DateIn),
        DataType::Timestamp(_, None) => text_in(a, Op::TimestampIn),
        DataType::Timestamp(_, Some(_)) => text_in(a, Op::TimestampTzIn),
        DataType::Interval(IntervalUnit::MonthDayNano) => interval_in(a),
        DataType::Int16 | DataType::Int32 | DataType::Int64 => int_in(a, &name(to)),
        DataType::List(_) => return Some(array_in(a, to)),
        _ => return None,
    };
    Some(out.and_then(|arr| cast_as(&arr, to)))
}

fn text_in(a: &ArrayRef, op: Op) -> Result<ArrayRef, SqlError> {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    let a = cast_as(a, &DataType::Utf8)?;
    let s = typed::<StringArray>(&a, "text input")?;
    let texts = (0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i)));
    Ok(match op {
        Op::DateIn => Arc::new(
            texts
                .map(|t| t.map(crate::datetime::date_days).transpose())
                .collect::<Result<Date32Array, _>>()?,
        ),
        Op::TimestampIn => Arc::new(
            texts
                .map(|t| {
                    t.map(|t| crate::datetime::timestamp_micros(t, false))
                        .transpose()
                })
                .collect::<Result<TimestampMicrosecondArray, _>>()?,
        ),
        _ => Arc::new(
            texts
                .map(|t| {
                    t.map(|t| crate::datetime::timestamp_micros(t, true))
                        .transpose()
                })
                .collect::<Result<TimestampMicrosecondArray, _>>()?
                .with_timezone("+00:00"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_multiplication_spills_like_postgres() {
        let day = IntervalMonthDayNano::new(0, 1, 0);
        assert_eq!(
            interval_times(day, 0.5).unwrap(),
            IntervalMonthDayNano::new(0, 0, 12 * 3_600_000_000_000)
        );
        let month = IntervalMonthDayNano::new(1, 0, 0);
        assert_eq!(
            interval_times(month, 1.5).unwrap(),
            IntervalMonthDayNano::new(1, 15, 0)
        );
        let hour = IntervalMonthDayNano::new(0, 0, 3_600_000_000_000);
        assert_eq!(
            interval_times(hour, 3.0).unwrap(),
            IntervalMonthDayNano::new(0, 0, 3 * 3_600_000_000_000)
        );
        assert!(interval_times(month, 1e12).is_err());
    }

    #[test]
    fn spans_compare_months_as_thirty_days() {
        let a = IntervalMonthDayNano::new(1, 0, 0);
        let b = IntervalMonthDayNano::new(0, 30, 0);
        let c = IntervalMonthDayNano::new(0, 0, 24 * 3_600_000_000_000);
        assert_eq!(span_nanos(a), span_nanos(b));
        assert_eq!(
            span_nanos(IntervalMonthDayNano::new(0, 1, 0)),
            span_nanos(c)
        );
    }

    #[test]
    fn rounding_casts() {
        use datafusion::arrow::array::Float64Array;
        let a: ArrayRef = Arc::new(Float64Array::from(vec![2.5, -2.5, 1.4999, 4.5]));
        let away = round(&a, false).unwrap();
        let even = round(&a, true).unwrap();
        let v = |x: &ArrayRef| {
            x.as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(v(&away), vec![3.0, -3.0, 1.0, 5.0]);
        assert_eq!(v(&even), vec![2.0, -2.0, 1.0, 4.0]);
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![150, -150, 149, -250])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let r = round(&d, false).unwrap();
        let r = r.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(r.values().to_vec(), vec![200, -200, 100, -300]);
    }
}
