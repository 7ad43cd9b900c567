//! Subqueries DataFusion cannot decorrelate, evaluated row by row.
//!
//! DataFusion turns correlated subqueries into joins when it can (equality correlation in a
//! WHERE clause, an aggregated scalar subquery). What it cannot rewrite — `EXISTS` in a select
//! list, a scalar subquery whose WHERE has a predicate on outer columns only or a
//! non-equality correlation — would fail physical planning. PostgreSQL runs such subqueries
//! once per outer row ("SubPlan"); so does Kestrel: after optimization, every subquery left
//! in the plan becomes a call of a [`SubPlan`] function whose arguments are the outer columns
//! the subquery reads. Per row it substitutes those values into the subquery's plan, plans
//! and runs it, and caches the result by the outer values. Slow for large inputs, so bounded
//! by [`SUBPLAN_RUNS_MAX`] per statement; exact in semantics (NULL for no rows, 21000 for
//! more than one, SQL's three-valued `IN`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult, ScalarValue};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::{Exists, InSubquery, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Subquery, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{code, from_datafusion, SqlError, SqlResult};

/// Subquery executions one statement may run row by row.
pub const SUBPLAN_RUNS_MAX: usize = 100_000;

/// Optimizes `plan`, turns subqueries DataFusion left in it into [`SubPlan`]s, and plans it.
pub async fn physical_plan(
    state: &SessionState,
    plan: &LogicalPlan,
) -> SqlResult<Arc<dyn ExecutionPlan>> {
    let mut optimized = state.optimize(plan).map_err(from_datafusion)?;
    if has_subquery(&optimized) {
        optimized = to_subplans(state, optimized).map_err(from_datafusion)?;
    }
    state
        .query_planner()
        .create_physical_plan(&optimized, state)
        .await
        .map_err(from_datafusion)
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
    )
}

fn has_subquery(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(node
            .expressions()
            .iter()
            .any(|e| e.exists(|e| Ok(is_subquery(e))).unwrap_or(false)))
    })
    .unwrap_or(false)
}

fn to_subplans(state: &SessionState, plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let saved = names.save(&e);
            let t = e.transform_up(|e| subplan_call(state, e))?;
            Ok(t.update_data(|e| saved.restore(e)))
        })
    })
    .map(|t| t.data)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Scalar,
    Exists { negated: bool },
    In { negated: bool },
}

fn subplan_call(state: &SessionState, e: Expr) -> DfResult<Transformed<Expr>> {
    let (kind, sub, probe) = match e {
        Expr::ScalarSubquery(s) => (Kind::Scalar, s, None),
        Expr::Exists(Exists { subquery, negated }) => (Kind::Exists { negated }, subquery, None),
        Expr::InSubquery(InSubquery {
            expr,
            subquery,
            negated,
        }) => (Kind::In { negated }, subquery, Some(*expr)),
        other => return Ok(Transformed::no(other)),
    };
    let Subquery {
        subquery,
        outer_ref_columns,
        ..
    } = sub;
    let outer: Vec<Column> = outer_ref_columns
        .iter()
        .filter_map(|e| match e {
            Expr::OuterReferenceColumn(_, c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let ret = match kind {
        Kind::Scalar => subquery.schema().field(0).data_type().clone(),
        _ => DataType::Boolean,
    };
    let mut args: Vec<Expr> = probe.into_iter().collect();
    args.extend(outer.iter().cloned().map(Expr::Column));
    let signature = match args.len() {
        0 => Signature::nullary(Volatility::Volatile),
        n => Signature::any(n, Volatility::Volatile),
    };
    let udf = SubPlan {
        kind,
        plan: subquery,
        outer,
        state: state.clone(),
        ret,
        signature,
        runs: AtomicUsize::new(0),
        cache: Mutex::new(HashMap::new()),
    };
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(ScalarUDF::from(udf)), args),
    )))
}

/// One subquery, run per distinct outer row.
pub struct SubPlan {
    kind: Kind,
    plan: Arc<LogicalPlan>,
    /// The outer columns the subquery reads, in argument order (after the IN probe).
    outer: Vec<Column>,
    state: SessionState,
    ret: DataType,
    signature: Signature,
    runs: AtomicUsize,
    cache: Mutex<HashMap<Vec<ScalarValue>, Vec<ScalarValue>>>,
}

impl std::fmt::Debug for SubPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubPlan({:?})", self.kind)
    }
}
impl PartialEq for SubPlan {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan) && self.kind == other.kind
    }
}
impl Eq for SubPlan {}
impl std::hash::Hash for SubPlan {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        (Arc::as_ptr(&self.plan) as usize).hash(state);
    }
}

impl ScalarUDFImpl for SubPlan {
    fn name(&self) -> &str {
        "subplan"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.ret.clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = if arrays.is_empty() {
            args.number_rows
        } else {
            arrays[0].len()
        };
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            let vals = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, i))
                .collect::<DfResult<Vec<_>>>()?;
            let v = self.eval_row(&vals).map_err(SqlError::into_datafusion)?;
            out.push(v);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.ret),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

impl SubPlan {
    fn eval_row(&self, vals: &[ScalarValue]) -> SqlResult<ScalarValue> {
        let (probe, outer) = match self.kind {
            Kind::In { .. } => (vals.first().cloned(), vals.get(1..).unwrap_or(&[])),
            _ => (None, vals),
        };
        let rows = self.rows_for(outer)?;
        Ok(match self.kind {
            Kind::Scalar => match rows.as_slice() {
                [] => ScalarValue::try_from(&self.ret).map_err(from_datafusion)?,
                [v] => v.cast_to(&self.ret).map_err(from_datafusion)?,
                _ => {
                    return Err(SqlError::new(
                        code::CARDINALITY_VIOLATION,
                        "more than one row returned by a subquery used as an expression",
                    ))
                }
            },
            Kind::Exists { negated } => ScalarValue::Boolean(Some(rows.is_empty() == negated)),
            Kind::In { negated } => {
                let probe = probe.unwrap_or(ScalarValue::Null);
                let found = in_list(&probe, &rows);
                ScalarValue::Boolean(found.map(|f| f != negated))
            }
        })
    }

    /// The subquery's first column for these outer values (at most one row for EXISTS).
    fn rows_for(&self, outer: &[ScalarValue]) -> SqlResult<Vec<ScalarValue>> {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(outer).cloned()) {
            return Ok(hit);
        }
        if self.runs.fetch_add(1, Ordering::Relaxed) >= SUBPLAN_RUNS_MAX {
            return Err(SqlError::new(
                code::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "a correlated subquery ran more than SUBPLAN_RUNS_MAX = {SUBPLAN_RUNS_MAX} times"
                ),
            ));
        }
        let map: HashMap<&Column, &ScalarValue> = self.outer.iter().zip(outer).collect();
        let bound = self
            .plan
            .as_ref()
            .clone()
            .transform_up_with_subqueries(|node| {
                node.map_expressions(|e| {
                    e.transform_up(|e| match &e {
                        Expr::OuterReferenceColumn(_, c) => match map.get(c) {
                            Some(v) => Ok(Transformed::yes(Expr::Literal((*v).clone(), None))),
                            None => Ok(Transformed::no(e)),
                        },
                        _ => Ok(Transformed::no(e)),
                    })
                })
            })
            .map_err(from_datafusion)?
            .data;
        let bound = match self.kind {
            Kind::Exists { .. } => LogicalPlanBuilder::from(bound)
                .limit(0, Some(1))
                .and_then(|b| b.build())
                .map_err(from_datafusion)?,
            _ => bound,
        };
        let state = self.state.clone();
        let batches = crate::sequence::run_blocking(async move {
            let phys = physical_plan(&state, &bound).await?;
            datafusion::physical_plan::collect(phys, state.task_ctx())
                .await
                .map_err(from_datafusion)
        })?;
        let mut rows = Vec::new();
        for b in &batches {
            if b.num_columns() == 0 {
                rows.extend((0..b.num_rows()).map(|_| ScalarValue::Null));
                continue;
            }
            let col = b.column(0);
            for i in 0..col.len() {
                rows.push(ScalarValue::try_from_array(col, i).map_err(from_datafusion)?);
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(outer.to_vec(), rows.clone());
        }
        Ok(rows)
    }
}

/// SQL `probe IN (rows)`: true on a match, NULL if no match but a NULL was involved.
fn in_list(probe: &ScalarValue, rows: &[ScalarValue]) -> Option<bool> {
    if rows.is_empty() {
        return Some(false);
    }
    if probe.is_null() {
        return None;
    }
    let mut saw_null = false;
    for r in rows {
        if r.is_null() {
            saw_null = true;
            continue;
        }
        let same = match r.cast_to(&probe.data_type()) {
            Ok(r) => &r == probe,
            Err(_) => r == probe,
        };
        if same {
            return Some(true);
        }
    }
    if saw_null {
        None
    } else {
        Some(false)
    }
}
