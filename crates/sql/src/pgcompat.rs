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
