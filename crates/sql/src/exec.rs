//! Running a planned statement to completion under the SQL layer's limits.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;

use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::stmt::Limits;

/// Optimizes, executes and collects `plan`. The limits are checked as batches arrive, so an
/// oversized result fails early instead of after it was held in memory: `result_bytes_max`
/// always, and `rows_max` (with `what` naming it) when given.
pub async fn collect(
    state: &SessionState,
    plan: &LogicalPlan,
    limits: &Limits,
    rows_max: Option<(usize, &str)>,
) -> SqlResult<Vec<RecordBatch>> {
    let phys = crate::subquery::physical_plan(state, plan).await?;
    let mut stream = datafusion::physical_plan::execute_stream(phys, state.task_ctx())
        .map_err(from_datafusion)?;
    let mut out = Vec::new();
    let (mut bytes, mut rows) = (0usize, 0usize);
    let bytes_max = limits.result_bytes_max;
    while let Some(b) = stream.next().await {
        let b = b.map_err(from_datafusion)?;
        bytes += b.get_array_memory_size();
        rows += b.num_rows();
        if bytes > bytes_max {
            return Err(SqlError::new(
                code::PROGRAM_LIMIT_EXCEEDED,
                format!("result exceeds result_bytes_max = {bytes_max} bytes"),
            ));
        }
        if let Some((max, what)) = rows_max {
            if rows > max {
                return Err(SqlError::new(
                    code::PROGRAM_LIMIT_EXCEEDED,
                    format!("statement exceeds {what} = {max} rows"),
                ));
            }
        }
        out.push(b);
    }
    Ok(out)
}
