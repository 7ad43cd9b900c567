//! CHECK constraints and stored generated columns: stored as SQL text in the table
//! descriptor, compiled per statement into DataFusion physical expressions over the table's
//! full row, and evaluated on the rows a statement is about to write, batch at a time.
//! Generated columns are computed first ([`Checks::generate`], before NOT NULL and the
//! checks see the row); as in SQL, a check passes unless it is false (NULL passes). A
//! violation is 23514.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDesc;
use crate::datum::{array_from_datums, Datum};
use crate::error::{code, from_datafusion, SqlError, SqlResult};

/// The checks and generated columns of one table, ready to evaluate.
#[derive(Clone)]
pub struct Checks {
    exprs: Vec<(String, Arc<dyn PhysicalExpr>)>,
    /// `(column position, expression cast to the column's type)` per generated column.
    generated: Vec<(usize, Arc<dyn PhysicalExpr>)>,
}

/// Whether `desc` has anything for [`Checks`] to do.
pub fn needed(desc: &TableDesc) -> bool {
    !desc.checks.is_empty() || desc.columns.iter().any(|c| c.generated.is_some())
}

impl Checks {
    /// Compiles `desc`'s checks and generation expressions (none: nothing to do at write
    /// time).
    pub fn compile(state: &SessionState, desc: &TableDesc) -> SqlResult<Self> {
        if !needed(desc) {
            return Ok(Self::compile_none());
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
        let mut generated = Vec::new();
        for (i, c) in desc.columns.iter().enumerate() {
            let Some(sql) = &c.generated else { continue };
            let logical = generation_expr(state, desc, &df_schema, i, sql)?;
            let phys = state
                .create_physical_expr(logical, &df_schema)
                .map_err(from_datafusion)?;
            generated.push((i, phys));
        }
        Ok(Self { exprs, generated })
    }

    /// No checks at all.
    pub fn compile_none() -> Self {
        Self {
            exprs: Vec::new(),
            generated: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// Computes the generated columns of `rows` (full rows of `desc`).
    pub fn generate(&self, desc: &TableDesc, rows: &mut [Vec<Datum>]) -> SqlResult<()> {
        if self.generated.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let batch = batch_of(desc, rows)?;
        for (i, expr) in &self.generated {
            let out = evaluate(expr, &batch)?;
            let vals = crate::datum::datums_from_array(&desc.columns[*i].ty, &out)?;
            for (row, v) in rows.iter_mut().zip(vals) {
                row[*i] = v;
            }
        }
        Ok(())
    }

    /// Fails with 23514 if any of `rows` (full rows of `desc`) violates a check.
    pub fn verify(&self, desc: &TableDesc, rows: &[Vec<Datum>]) -> SqlResult<()> {
        if self.exprs.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let batch = batch_of(desc, rows)?;
        for (name, expr) in &self.exprs {
            let out = evaluate(expr, &batch)?;
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

/// An expression stored as SQL in a descriptor (CHECK, generated column, index key or
/// predicate, domain default or check), parsed back.
pub fn stored_expr(sql: &str) -> SqlResult<datafusion::sql::sqlparser::ast::Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::KestrelDialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| SqlError::internal(format!("stored expression {sql:?}: {e}")))
}

/// The column a stored expression names when it is nothing but a column reference.
pub fn stored_column_ref(sql: &str) -> Option<String> {
    match stored_expr(sql).ok()? {
        datafusion::sql::sqlparser::ast::Expr::Identifier(i) => Some(crate::ddl::ident(&i)),
        _ => None,
    }
}

/// `expr` over every row of `batch`, as one array.
pub(crate) fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> SqlResult<ArrayRef> {
    expr.evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(from_datafusion)
}

/// `rows` (full rows of `desc`) as one Arrow batch.
pub(crate) fn batch_of(desc: &TableDesc, rows: &[Vec<Datum>]) -> SqlResult<RecordBatch> {
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
    RecordBatch::try_new(schema, columns)
        .map_err(|e| SqlError::internal(format!("check batch: {e}")))
}

/// The generation expression of column `i`, cast to its type. As in PostgreSQL it may not
/// read another generated column (42P17) nor call volatile functions (42P17).
fn generation_expr(
    state: &SessionState,
    desc: &TableDesc,
    schema: &DFSchema,
    i: usize,
    sql: &str,
) -> SqlResult<datafusion::logical_expr::Expr> {
    use datafusion::logical_expr::ExprSchemable;
    let logical = state
        .create_logical_expr(sql, schema)
        .map_err(from_datafusion)?;
    let invalid = |m: String| SqlError::new(code::INVALID_OBJECT_DEFINITION, m);
    for c in logical.column_refs() {
        let generated = desc
            .columns
            .iter()
            .any(|d| d.name == c.name && d.generated.is_some());
        if generated {
            return Err(invalid(format!(
                "cannot use generated column \"{}\" in column generation expression",
                c.name
            ))
            .with_detail("A generated column cannot reference another generated column."));
        }
    }
    if logical.is_volatile() {
        return Err(invalid("generation expression is not immutable".into()));
    }
    logical
        .cast_to(&desc.columns[i].ty.arrow(), schema)
        .map_err(from_datafusion)
}
