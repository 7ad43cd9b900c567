//! CHECK constraints: stored as SQL text in the table descriptor, compiled per statement into
//! DataFusion physical expressions over the table's full row, and evaluated on the rows a
//! statement is about to write, batch at a time. As in SQL, a check passes unless it is false
//! (NULL passes). A violation is 23514.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDesc;
use crate::datum::{array_from_datums, Datum};
use crate::error::{code, from_datafusion, SqlError, SqlResult};

/// The checks of one table, ready to evaluate.
#[derive(Clone)]
pub struct Checks {
    exprs: Vec<(String, Arc<dyn PhysicalExpr>)>,
}

impl Checks {
    /// Compiles `desc`'s checks (none: nothing to do at write time).
    pub fn compile(state: &SessionState, desc: &TableDesc) -> SqlResult<Self> {
        if desc.checks.is_empty() {
            return Ok(Self { exprs: Vec::new() });
        }
        let schema = desc.arrow_schema(true);
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(from_datafusion)?;
        let mut exprs = Vec::with_capacity(desc.checks.len());
        for c in &desc.checks {
            let logical = state
                .create_logical_expr(&c.expr, &df_schema)
                .map_err(from_datafusion)?;
            let phys = state
                .create_physical_expr(logical, &df_schema)
                .map_err(from_datafusion)?;
            exprs.push((c.name.clone(), phys));
        }
        Ok(Self { exprs })
    }

    /// No checks at all.
    pub fn compile_none() -> Self {
        Self { exprs: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// Fails with 23514 if any of `rows` (full rows of `desc`) violates a check.
    pub fn verify(&self, desc: &TableDesc, rows: &[Vec<Datum>]) -> SqlResult<()> {
        if self.exprs.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let schema = desc.arrow_schema(true);
        let columns: Vec<ArrayRef> = desc
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let vals: Vec<Datum> = rows.iter().map(|r| r[i].clone()).collect();
                array_from_datums(&c.ty, &vals)
            })
            .collect::<SqlResult<_>>()?;
        let batch = RecordBatch::try_new(schema, columns)
            .map_err(|e| SqlError::internal(format!("check batch: {e}")))?;
        for (name, expr) in &self.exprs {
            let out = expr
                .evaluate(&batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map_err(from_datafusion)?;
            let Some(b) = out.as_any().downcast_ref::<BooleanArray>() else {
                return Err(SqlError::new(
                    code::DATATYPE_MISMATCH,
                    format!("check constraint \"{name}\" is not boolean"),
                ));
            };
            if (0..b.len()).any(|i| b.is_valid(i) && !b.value(i)) {
                return Err(SqlError::new(
                    code::CHECK_VIOLATION,
                    format!(
                        "new row for relation \"{}\" violates check constraint \"{name}\"",
                        desc.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
