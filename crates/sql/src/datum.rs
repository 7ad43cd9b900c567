//! [`Datum`]: one SQL value, and its conversions from and to Arrow arrays.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array,
    Float64Builder, Int16Array, Int16Builder, Int32Array, Int32Builder, Int64Array, Int64Builder,
    IntervalMonthDayNanoArray, IntervalMonthDayNanoBuilder, ListArray, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;

use crate::error::{code, SqlError, SqlResult};
use crate::types::SqlType;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Datum {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// Unscaled value; the scale is the column's.
    Decimal(i128),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 00:00 (UTC for timestamptz).
    Timestamp(i64),
    Uuid([u8; 16]),
    /// An interval: months, days, nanoseconds (each signed, as in PostgreSQL).
    Interval(i32, i32, i64),
    /// An array value: its elements (each of the element type, or NULL).
    Array(Vec<Datum>),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// How PostgreSQL would print this value in a key detail, e.g. `Key (id)=(7)`.
    pub fn display(&self, ty: &SqlType) -> String {
        match self {
            Datum::Null => "null".into(),
            Datum::Bool(b) => if *b { "t" } else { "f" }.into(),
            Datum::I16(v) => v.to_string(),
            Datum::I32(v) => v.to_string(),
            Datum::I64(v) => v.to_string(),
            Datum::F32(v) => v.to_string(),
            Datum::F64(v) => v.to_string(),
            Datum::Decimal(v) => {
                let scale = match ty {
                    SqlType::Numeric { scale, .. } => *scale,
                    _ => 0,
                };
                ScalarValue::Decimal128(Some(*v), 38, scale).to_string()
            }
            Datum::Text(s) => s.clone(),
            Datum::Bytes(b) => format!(
                "\\x{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            ),
            Datum::Date(d) => ScalarValue::Date32(Some(*d)).to_string(),
            Datum::Timestamp(t) => ScalarValue::TimestampMicrosecond(Some(*t), None).to_string(),
            Datum::Uuid(u) => uuid::Uuid::from_bytes(*u).hyphenated().to_string(),
            Datum::Interval(m, d, n) => ScalarValue::new_interval_mdn(*m, *d, *n).to_string(),
            Datum::Array(items) => {
                let elem = match ty {
                    SqlType::Array(e) => e.as_ref().clone(),
                    other => other.clone(),
                };
                let shown: Vec<String> = items
                    .iter()
                    .map(|d| match d {
                        Datum::Null => "NULL".to_string(),
                        d => d.display(&elem),
                    })
                    .collect();
                format!("{{{}}}", shown.join(","))
            }
        }
    }
}

fn bad(ty: &SqlType, what: &str) -> SqlError {
    SqlError::internal(format!(
        "column of type {} received an Arrow {what} array",
        ty.pg_name()
    ))
}

/// Reads row `row` of `array` as a datum of type `ty`, casting the array first if its Arrow
/// type differs (DataFusion may hand over e.g. Utf8View for a text column).
pub fn datums_from_array(ty: &SqlType, array: &ArrayRef) -> SqlResult<Vec<Datum>> {
    let want = ty.arrow();
    let array = if array.data_type() != &want {
        match crate::pg_ops::cast_text(array, &want) {
            Some(parsed) => parsed?,
            None => cast(array, &want).map_err(|e| crate::error::from_datafusion(e.into()))?,
        }
    } else {
        array.clone()
    };
    let n = array.len();
    let mut out = Vec::with_capacity(n);
    macro_rules! collect {
        ($arr:ty, $variant:expr) => {{
            let a = array
                .as_any()
                .downcast_ref::<$arr>()
                .ok_or_else(|| bad(ty, stringify!($arr)))?;
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Datum::Null
                } else {
                    $variant(a.value(i))
                });
            }
        }};
    }
    match ty {
        SqlType::Int2 => collect!(Int16Array, Datum::I16),
        SqlType::Int4 => collect!(Int32Array, Datum::I32),
        SqlType::Int8 => collect!(Int64Array, Datum::I64),
        SqlType::Float4 => collect!(Float32Array, Datum::F32),
        SqlType::Float8 => collect!(Float64Array, Datum::F64),
        SqlType::Numeric { .. } => collect!(Decimal128Array, Datum::Decimal),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb | SqlType::Json => {
            collect!(StringArray, |s: &str| Datum::Text(s.to_string()))
        }
        SqlType::Uuid => {
            let a = array
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad(ty, "string"))?;
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Datum::Null
                } else {
                    Datum::Uuid(parse_uuid(a.value(i))?)
                });
            }
        }
        SqlType::Bool => collect!(BooleanArray, Datum::Bool),
        SqlType::Date => collect!(Date32Array, Datum::Date),
        SqlType::Timestamp | SqlType::TimestampTz => {
            collect!(TimestampMicrosecondArray, Datum::Timestamp)
        }
        SqlType::Bytea => collect!(BinaryArray, |b: &[u8]| Datum::Bytes(b.to_vec())),
        SqlType::Interval => collect!(IntervalMonthDayNanoArray, |v: IntervalMonthDayNano| {
            Datum::Interval(v.months, v.days, v.nanoseconds)
        }),
        SqlType::Array(elem) => {
            let a = array
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| bad(ty, "list"))?;
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Datum::Null
                } else {
                    Datum::Array(datums_from_array(elem, &a.value(i))?)
                });
            }
        }
    }
    Ok(out)
}

pub fn parse_uuid(s: &str) -> SqlResult<[u8; 16]> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| *u.as_bytes())
        .map_err(|_| {
            SqlError::new(
                code::INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for type uuid: \"{s}\""),
            )
        })
}

/// Builds an Arrow array of type `ty` from datums (which must match `ty` or be null).
pub fn array_from_datums(ty: &SqlType, vals: &[Datum]) -> SqlResult<ArrayRef> {
    macro_rules! build {
        ($builder:expr, $pat:pat => $v:expr) => {{
            let mut b = $builder;
            for d in vals {
                match d {
                    Datum::Null => b.append_null(),
                    $pat => b.append_value($v),
                    other => {
                        return Err(SqlError::internal(format!(
                            "datum {other:?} in a {} column",
                            ty.pg_name()
                        )))
                    }
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let n = vals.len();
    Ok(match ty {
        SqlType::Int2 => build!(Int16Builder::with_capacity(n), Datum::I16(v) => *v),
        SqlType::Int4 => build!(Int32Builder::with_capacity(n), Datum::I32(v) => *v),
        SqlType::Int8 => build!(Int64Builder::with_capacity(n), Datum::I64(v) => *v),
        SqlType::Float4 => build!(Float32Builder::with_capacity(n), Datum::F32(v) => *v),
        SqlType::Float8 => build!(Float64Builder::with_capacity(n), Datum::F64(v) => *v),
        SqlType::Numeric {
            precision, scale, ..
        } => {
            let a = build!(Decimal128Builder::with_capacity(n), Datum::Decimal(v) => *v);
            let a = a
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .expect("decimal")
                .clone();
            Arc::new(
                a.with_precision_and_scale(*precision, *scale)
                    .map_err(|e| SqlError::internal(e.to_string()))?,
            )
        }
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb | SqlType::Json => {
            build!(StringBuilder::with_capacity(n, n * 16), Datum::Text(v) => v)
        }
        SqlType::Uuid => build!(StringBuilder::with_capacity(n, n * 36),
            Datum::Uuid(v) => uuid::Uuid::from_bytes(*v).hyphenated().to_string()),
        SqlType::Bool => build!(BooleanBuilder::with_capacity(n), Datum::Bool(v) => *v),
        SqlType::Date => build!(Date32Builder::with_capacity(n), Datum::Date(v) => *v),
        SqlType::Timestamp => {
            build!(TimestampMicrosecondBuilder::with_capacity(n), Datum::Timestamp(v) => *v)
        }
        SqlType::TimestampTz => {
            let a =
                build!(TimestampMicrosecondBuilder::with_capacity(n), Datum::Timestamp(v) => *v);
            let a = a
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("ts")
                .clone();
            Arc::new(a.with_timezone("+00:00"))
        }
        SqlType::Bytea => build!(BinaryBuilder::with_capacity(n, n * 16), Datum::Bytes(v) => v),
        SqlType::Interval => build!(IntervalMonthDayNanoBuilder::with_capacity(n),
            Datum::Interval(m, d, ns) => IntervalMonthDayNano::new(*m, *d, *ns)),
        SqlType::Array(elem) => list_from_datums(ty, elem, vals)?,
    })
}

/// A List array of `elem` values from array datums (or NULLs).
fn list_from_datums(ty: &SqlType, elem: &SqlType, vals: &[Datum]) -> SqlResult<ArrayRef> {
    let mut flat = Vec::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(vals.len());
    for d in vals {
        match d {
            Datum::Null => valid.push(false),
            Datum::Array(items) => {
                flat.extend(items.iter().cloned());
                valid.push(true);
            }
            other => {
                return Err(SqlError::internal(format!(
                    "datum {other:?} in a {} column",
                    ty.pg_name()
                )))
            }
        }
        let end = i32::try_from(flat.len())
            .map_err(|_| SqlError::new(code::PROGRAM_LIMIT_EXCEEDED, "array too large"))?;
        offsets.push(end);
    }
    let child = array_from_datums(elem, &flat)?;
    let field = Arc::new(datafusion::arrow::datatypes::Field::new_list_field(
        elem.arrow(),
        true,
    ));
    let list = ListArray::try_new(
        field,
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        child,
        Some(datafusion::arrow::buffer::NullBuffer::from(valid)),
    )
    .map_err(|e| SqlError::internal(e.to_string()))?;
    Ok(Arc::new(list))
}

/// Converts a constant (e.g. an evaluated DEFAULT) to a datum of type `ty`.
pub fn datum_from_scalar(ty: &SqlType, v: &ScalarValue) -> SqlResult<Datum> {
    let arr = v.to_array().map_err(crate::error::from_datafusion)?;
    Ok(datums_from_array(ty, &arr)?.pop().unwrap_or(Datum::Null))
}

/// The inverse of [`datum_from_scalar`], for handing defaults to DataFusion.
pub fn scalar_from_datum(ty: &SqlType, d: &Datum) -> SqlResult<ScalarValue> {
    let arr = array_from_datums(ty, std::slice::from_ref(d))?;
    ScalarValue::try_from_array(&arr, 0).map_err(crate::error::from_datafusion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_arrow() {
        let cases = vec![
            (SqlType::Int2, Datum::I16(-3)),
            (SqlType::Int4, Datum::I32(7)),
            (SqlType::Int8, Datum::I64(1 << 40)),
            (SqlType::Float4, Datum::F32(1.5)),
            (SqlType::Float8, Datum::F64(-2.25)),
            (
                SqlType::Numeric {
                    precision: 10,
                    scale: 2,
                    constrained: true,
                },
                Datum::Decimal(12345),
            ),
            (SqlType::Text, Datum::Text("héllo".into())),
            (SqlType::Varchar(Some(5)), Datum::Text("abc".into())),
            (SqlType::Bool, Datum::Bool(true)),
            (SqlType::Date, Datum::Date(19000)),
            (SqlType::Timestamp, Datum::Timestamp(1_700_000_000_000_000)),
            (
                SqlType::TimestampTz,
                Datum::Timestamp(1_700_000_000_000_001),
            ),
            (SqlType::Bytea, Datum::Bytes(vec![0, 1, 255])),
            (SqlType::Uuid, Datum::Uuid([7; 16])),
            (SqlType::Interval, Datum::Interval(14, -3, 5_000_000_123)),
            (
                SqlType::Array(Box::new(SqlType::Text)),
                Datum::Array(vec![Datum::Text("a".into()), Datum::Null]),
            ),
            (
                SqlType::Array(Box::new(SqlType::Int4)),
                Datum::Array(vec![]),
            ),
        ];
        for (ty, d) in cases {
            let arr = array_from_datums(&ty, &[d.clone(), Datum::Null]).unwrap();
            assert_eq!(arr.data_type(), &ty.arrow());
            assert_eq!(
                datums_from_array(&ty, &arr).unwrap(),
                vec![d, Datum::Null],
                "{ty:?}"
            );
        }
    }

    #[test]
    fn bad_uuid_is_22p02() {
        assert_eq!(
            parse_uuid("nope").unwrap_err().code,
            code::INVALID_TEXT_REPRESENTATION
        );
    }
}
