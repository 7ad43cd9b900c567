//! Arrow results → PostgreSQL rows, in text or binary format.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormat};
use kestrel_sql::{SqlError, PG_TYPE_META};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{to_sql_checked, IsNull, ToSql};

/// The PostgreSQL type of a result column.
pub fn pg_type(field: &Field) -> Type {
    // A tag counts only on the Arrow type it annotates: DataFusion keeps field metadata
    // through casts, so `x::numeric::int` arrives as Int32 still tagged `numeric`.
    let text = matches!(
        field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let decimal = matches!(
        field.data_type(),
        DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    );
    match kestrel_sql::types::pg_tag(field) {
        Some("uuid") if text => return Type::UUID,
        Some("varchar") if text => return Type::VARCHAR,
        Some("bpchar") if text => return Type::BPCHAR,
        Some("numeric") if decimal => return Type::NUMERIC,
        Some("jsonb") if text => return Type::JSONB,
        Some("json") if text => return Type::JSON,
        Some("int2vector") => return Type::INT2_VECTOR,
        Some("oidvector") => return Type::OID_VECTOR,
        _ => {}
    }
    match field.data_type() {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::List(f) => array_of(&pg_type(f)),
        _ => Type::TEXT,
    }
}

/// The one-dimensional array type of `elem` (`text[]` for elements without one here).
fn array_of(elem: &Type) -> Type {
    match *elem {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        Type::BPCHAR => Type::BPCHAR_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// The element type of an array type.
fn element_of(ty: &Type) -> Option<Type> {
    match ty.kind() {
        postgres_types::Kind::Array(e) => Some(e.clone()),
        _ => None,
    }
}

/// The canonical Arrow type each PostgreSQL type is encoded from.
fn canonical(ty: &Type, dt: &DataType) -> Option<DataType> {
    Some(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => match dt {
            DataType::Decimal128(..) => return None,
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => DataType::Decimal128(*p, *s),
            _ => return None,
        },
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        Type::INTERVAL => return None,
        _ => DataType::Utf8,
    })
}

pub fn field_infos(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                kestrel_sql::pgcompat::display_name(f.name()).to_string(),
                None,
                None,
                pg_type(f),
                format.format_for(i),
            )
        })
        .collect()
}

/// One value ready for the wire.
#[derive(Debug)]
pub enum PgValue {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// Numeric as its decimal text.
    Numeric(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    /// Microseconds since the epoch; `tz` prints a `+00` offset.
    Timestamp {
        micros: i64,
        tz: bool,
    },
    Uuid([u8; 16]),
    /// PostgreSQL's interval: months, days and microseconds, each with its own sign.
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    /// A one-dimensional array of `elem` values.
    Array {
        elem: Type,
        items: Vec<PgValue>,
    },
}

/// An array element in PostgreSQL's array text format (quoted where needed).
fn array_item_text(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.eq_ignore_ascii_case("null")
        && !text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if plain {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn ts_parts(micros: i64) -> Option<chrono::NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

/// PostgreSQL's float output: shortest round-trip digits, exponent form outside [1e-4, 1e15).
fn pg_float(v: f64, shortest: String) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        // Rust prints e.g. "1.5e-5"; PostgreSQL prints "1.5e-05".
        let s = shortest;
        let (m, e) = match s.split_once('e') {
            Some(x) => x,
            None => return s,
        };
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    shortest
}

impl ToSqlText for PgValue {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _opts: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let s = match self {
            PgValue::Null => return Ok(IsNull::Yes),
            PgValue::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            PgValue::I16(v) => v.to_string(),
            PgValue::I32(v) => v.to_string(),
            PgValue::I64(v) => v.to_string(),
            PgValue::F32(v) => pg_float(
                *v as f64,
                if v.abs() >= 1e15 || (*v != 0.0 && v.abs() < 1e-4) {
                    format!("{v:e}")
                } else {
                    v.to_string()
                },
            ),
            PgValue::F64(v) => pg_float(
                *v,
                if v.abs() >= 1e15 || (*v != 0.0 && v.abs() < 1e-4) {
                    format!("{v:e}")
                } else {
                    v.to_string()
                },
            ),
            PgValue::Numeric(s) | PgValue::Text(s) => s.clone(),
            PgValue::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for x in b {
                    s.push_str(&format!("{x:02x}"));
                }
                s
            }
            PgValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            PgValue::Timestamp { micros, tz } => {
                let dt = ts_parts(*micros).ok_or("timestamp out of range")?;
                let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
                let frac = micros.rem_euclid(1_000_000);
                if frac != 0 {
                    let f = format!("{frac:06}");
                    s.push('.');
                    s.push_str(f.trim_end_matches('0'));
                }
                if *tz {
                    s.push_str("+00");
                }
                s
            }
            PgValue::Uuid(u) => format_uuid(u),
            PgValue::Interval {
                months,
                days,
                micros,
            } => interval_text(*months, *days, *micros),
            PgValue::Array { elem, items }
                if matches!(*_ty, Type::INT2_VECTOR | Type::OID_VECTOR) =>
            {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    let mut buf = BytesMut::new();
                    if let IsNull::No = item.to_sql_text(elem, &mut buf, _opts)? {
                        parts.push(String::from_utf8_lossy(&buf).into_owned());
                    }
                }
                parts.join(" ")
            }
            PgValue::Array { elem, items } => {
                let mut s = String::from("{");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let mut buf = BytesMut::new();
                    match item.to_sql_text(elem, &mut buf, _opts)? {
                        IsNull::Yes => s.push_str("NULL"),
                        IsNull::No => s.push_str(&array_item_text(&String::from_utf8_lossy(&buf))),
                    }
                }
                s.push('}');
                s
            }
        };
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }
}

pub(crate) fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl ToSql for PgValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            PgValue::Null => Ok(IsNull::Yes),
            PgValue::Bool(v) => v.to_sql(ty, out),
            PgValue::I16(v) => v.to_sql(ty, out),
            PgValue::I32(v) => v.to_sql(ty, out),
            PgValue::I64(v) => v.to_sql(ty, out),
            PgValue::F32(v) => v.to_sql(ty, out),
            PgValue::F64(v) => v.to_sql(ty, out),
            PgValue::Numeric(s) => {
                let d: rust_decimal::Decimal = s
                    .parse()
                    .map_err(|e| format!("numeric {s} does not fit binary encoding: {e}"))?;
                d.to_sql(ty, out)
            }
            PgValue::Text(s) => {
                if *ty == Type::JSONB {
                    // jsonb's binary format: a version byte, then the text.
                    out.put_u8(1);
                }
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            PgValue::Bytes(b) => {
                out.put_slice(b);
                Ok(IsNull::No)
            }
            PgValue::Date(d) => d.to_sql(ty, out),
            PgValue::Timestamp { micros, tz } => {
                let dt = ts_parts(*micros).ok_or("timestamp out of range")?;
                if *tz {
                    DateTime::<Utc>::from_naive_utc_and_offset(dt, Utc).to_sql(ty, out)
                } else {
                    dt.to_sql(ty, out)
                }
            }
            PgValue::Uuid(u) => {
                out.put_slice(u);
                Ok(IsNull::No)
            }
            PgValue::Interval {
                months,
                days,
                micros,
            } => {
                out.put_i64(*micros);
                out.put_i32(*days);
                out.put_i32(*months);
                Ok(IsNull::No)
            }
            PgValue::Array { elem, items } => {
                // ndim, has-nulls flag, element oid, then (length, lower bound) per dimension.
                let has_null = items.iter().any(|v| matches!(v, PgValue::Null));
                out.put_i32(1);
                out.put_i32(has_null as i32);
                out.put_u32(elem.oid());
                out.put_i32(i32::try_from(items.len()).map_err(|_| "array too long")?);
                out.put_i32(1);
                for item in items {
                    let mut buf = BytesMut::new();
                    match item.to_sql(elem, &mut buf)? {
                        IsNull::Yes => out.put_i32(-1),
                        IsNull::No => {
                            out.put_i32(i32::try_from(buf.len()).map_err(|_| "element too long")?);
                            out.put_slice(&buf);
                        }
                    }
                }
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Decimal text, without trailing fractional zeros for unconstrained `numeric`.
fn decimal_text(a: &Decimal128Array, i: usize, trim: bool) -> String {
    let s = a.value_as_string(i);
    if trim && s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        return t.to_string();
    }
    s
}

/// One column, converted for encoding.
struct Column {
    ty: Type,
    array: ArrayRef,
    trim_numeric: bool,
    text: Option<Vec<Option<String>>>,
    /// For arrays: the list's offsets and its flattened elements, prepared as a column.
    elements: Option<(Vec<usize>, Box<Column>)>,
}

fn prepare_column(field: &Field, array: &ArrayRef) -> Result<Column, SqlError> {
    let ty = pg_type(field);
    if let (Some(_), DataType::List(f)) = (element_of(&ty), array.data_type()) {
        let list = array
            .as_any()
            .downcast_ref::<datafusion::arrow::array::ListArray>()
            .ok_or_else(|| SqlError::internal("list column is not a ListArray"))?;
        let offsets = list.value_offsets().iter().map(|o| *o as usize).collect();
        let elements = prepare_column(f, list.values())?;
        return Ok(Column {
            ty,
            array: array.clone(),
            trim_numeric: false,
            text: None,
            elements: Some((offsets, Box::new(elements))),
        });
    }
    let trim_numeric = field
        .metadata()
        .get(PG_TYPE_META)
        .is_some_and(|t| t == "numeric");
    match canonical(&ty, array.data_type()) {
        Some(DataType::Utf8)
            if !matches!(
                array.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            // Types without a native encoding here (lists, intervals, times …) go out as text.
            let fmt = ArrayFormatter::try_new(array.as_ref(), &ArrowFormat::default())
                .map_err(|e| SqlError::internal(e.to_string()))?;
            // Logical nulls: a `NullArray` (`SELECT NULL`) has no null buffer.
            let nulls = array.logical_nulls();
            let text = (0..array.len())
                .map(|i| {
                    let null = nulls.as_ref().is_some_and(|n| n.is_null(i));
                    (!null).then(|| fmt.value(i).to_string())
                })
                .collect();
            Ok(Column {
                ty,
                array: array.clone(),
                trim_numeric,
                text: Some(text),
                elements: None,
            })
        }
        Some(dt) if &dt != array.data_type() => {
            let array = cast(array, &dt)
                .map_err(|e| SqlError::internal(format!("encoding a result: {e}")))?;
            Ok(Column {
                ty,
                array,
                trim_numeric,
                text: None,
                elements: None,
            })
        }
        _ => Ok(Column {
            ty,
            array: array.clone(),
            trim_numeric,
            text: None,
            elements: None,
        }),
    }
}

fn value(c: &Column, i: usize) -> PgValue {
    if let Some(t) = &c.text {
        return t[i].clone().map(PgValue::Text).unwrap_or(PgValue::Null);
    }
    let a = &c.array;
    if a.is_null(i) {
        return PgValue::Null;
    }
    if let (Some((offsets, elems)), Some(elem)) = (&c.elements, element_of(&c.ty)) {
        let items = (offsets[i]..offsets[i + 1])
            .map(|j| value(elems, j))
            .collect();
        return PgValue::Array { elem, items };
    }
    macro_rules! get {
        ($t:ty) => {
            a.as_any().downcast_ref::<$t>().map(|x| x.value(i))
        };
    }
    let v = match c.ty {
        Type::BOOL => get!(BooleanArray).map(PgValue::Bool),
        Type::INT2 => get!(Int16Array).map(PgValue::I16),
        Type::INT4 => get!(Int32Array).map(PgValue::I32),
        Type::INT8 => get!(Int64Array).map(PgValue::I64),
        Type::FLOAT4 => get!(Float32Array).map(PgValue::F32),
        Type::FLOAT8 => get!(Float64Array).map(PgValue::F64),
        Type::NUMERIC => a
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .map(|x| PgValue::Numeric(decimal_text(x, i, c.trim_numeric))),
        Type::BYTEA => get!(BinaryArray).map(|b| PgValue::Bytes(b.to_vec())),
        Type::DATE => get!(Date32Array)
            .and_then(|d| NaiveDate::from_num_days_from_ce_opt(d + 719_163))
            .map(PgValue::Date),
        Type::TIMESTAMP => get!(TimestampMicrosecondArray).map(|m| PgValue::Timestamp {
            micros: m,
            tz: false,
        }),
        Type::TIMESTAMPTZ => get!(TimestampMicrosecondArray).map(|m| PgValue::Timestamp {
            micros: m,
            tz: true,
        }),
        Type::UUID => get!(StringArray).and_then(parse_uuid).map(PgValue::Uuid),
        Type::INTERVAL => interval_value(a.as_ref(), i),
        _ => get!(StringArray).map(|s| PgValue::Text(s.to_string())),
    };
    v.unwrap_or(PgValue::Null)
}

/// An Arrow interval or duration as PostgreSQL's interval. A duration (the difference of two
/// timestamps) counts whole 24-hour periods as days, as PostgreSQL's timestamp subtraction does.
fn interval_value(a: &dyn Array, i: usize) -> Option<PgValue> {
    use datafusion::arrow::array::{
        DurationMicrosecondArray, DurationMillisecondArray, DurationNanosecondArray,
        DurationSecondArray, IntervalDayTimeArray, IntervalMonthDayNanoArray,
        IntervalYearMonthArray,
    };
    let any = a.as_any();
    if let Some(x) = any.downcast_ref::<IntervalMonthDayNanoArray>() {
        let v = x.value(i);
        return Some(PgValue::Interval {
            months: v.months,
            days: v.days,
            micros: v.nanoseconds / 1000,
        });
    }
    if let Some(x) = any.downcast_ref::<IntervalYearMonthArray>() {
        return Some(PgValue::Interval {
            months: x.value(i),
            days: 0,
            micros: 0,
        });
    }
    if let Some(x) = any.downcast_ref::<IntervalDayTimeArray>() {
        let v = x.value(i);
        return Some(PgValue::Interval {
            months: 0,
            days: v.days,
            micros: v.milliseconds as i64 * 1000,
        });
    }
    let micros = if let Some(x) = any.downcast_ref::<DurationMicrosecondArray>() {
        x.value(i)
    } else if let Some(x) = any.downcast_ref::<DurationNanosecondArray>() {
        x.value(i) / 1000
    } else if let Some(x) = any.downcast_ref::<DurationMillisecondArray>() {
        x.value(i).saturating_mul(1000)
    } else if let Some(x) = any.downcast_ref::<DurationSecondArray>() {
        x.value(i).saturating_mul(1_000_000)
    } else {
        return None;
    };
    const DAY_MICROS: i64 = 86_400_000_000;
    Some(PgValue::Interval {
        months: 0,
        days: i32::try_from(micros / DAY_MICROS).ok()?,
        micros: micros % DAY_MICROS,
    })
}

/// PostgreSQL's interval output (`IntervalStyle = postgres`): `1 year 2 mons 3 days
/// 04:05:06`, hours never folded into days, `00:00:00` for zero.
fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    // PostgreSQL: only exactly 1 is singular; after a negative field, positive ones get '+'.
    let mut negative_seen = false;
    let mut unit = |n: i64, one: &str, many: &str| {
        let plus = if negative_seen && n > 0 { "+" } else { "" };
        negative_seen |= n < 0;
        format!("{plus}{n} {}", if n == 1 { one } else { many })
    };
    let (years, mons) = (months / 12, months % 12);
    if years != 0 {
        parts.push(unit(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = match micros {
            m if m < 0 => "-",
            m if m > 0 && negative_seen => "+",
            _ => "",
        };
        let m = micros.unsigned_abs();
        let (secs, frac) = (m / 1_000_000, m % 1_000_000);
        let mut t = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (b, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *b = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn prepare_columns(schema: &Schema, b: &RecordBatch) -> Result<Vec<Column>, SqlError> {
    schema
        .fields()
        .iter()
        .zip(b.columns())
        .map(|(f, a)| prepare_column(f, a))
        .collect()
}

/// Encodes every row of `batches` for the wire.
pub fn encode_rows(
    fields: &Arc<Vec<FieldInfo>>,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<Vec<DataRow>, SqlError> {
    let mut rows = Vec::new();
    let mut encoder = DataRowEncoder::new(fields.clone());
    for b in batches {
        let cols = prepare_columns(schema, b)?;
        for i in 0..b.num_rows() {
            for c in &cols {
                encoder
                    .encode_field(&value(c, i))
                    .map_err(|e| SqlError::new("22P03", format!("encoding a result value: {e}")))?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// Every cell of `batches` in PostgreSQL's text format (`None` = NULL), row by row.
pub fn text_cells(
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<Vec<Vec<Option<String>>>, SqlError> {
    let mut rows = Vec::new();
    let opts = FormatOptions::default();
    for b in batches {
        let cols = prepare_columns(schema, b)?;
        for i in 0..b.num_rows() {
            let mut row = Vec::with_capacity(cols.len());
            for c in &cols {
                let mut out = BytesMut::new();
                let null = value(c, i)
                    .to_sql_text(&c.ty, &mut out, &opts)
                    .map_err(|e| SqlError::new("22P03", format!("encoding a value: {e}")))?;
                row.push(match null {
                    IsNull::Yes => None,
                    IsNull::No => Some(String::from_utf8_lossy(&out).into_owned()),
                });
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_tags_count_only_on_their_arrow_type() {
        let tagged = |ty: DataType, tag: &str| {
            Field::new("c", ty, true).with_metadata(kestrel_sql::types::tag_metadata(tag))
        };
        assert_eq!(
            pg_type(&tagged(DataType::Decimal128(38, 10), "numeric")),
            Type::NUMERIC
        );
        assert_eq!(pg_type(&tagged(DataType::Int32, "numeric")), Type::INT4);
        assert_eq!(pg_type(&tagged(DataType::Utf8, "uuid")), Type::UUID);
        assert_eq!(pg_type(&tagged(DataType::Int64, "varchar")), Type::INT8);
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(interval_text(0, 1, 5_400_000_000), "1 day 01:30:00");
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(interval_text(25, 0, 0), "2 years 1 mon");
        assert_eq!(interval_text(0, 1, -3_600_000_000), "1 day -01:00:00");
        assert_eq!(interval_text(0, -2, 0), "-2 days");
        assert_eq!(interval_text(0, -1, 0), "-1 days");
        assert_eq!(interval_text(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(
            interval_text(14, 3, 14_706_500_000),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(interval_text(0, 0, 90_000_000_000), "25:00:00");
    }

    #[test]
    fn floats_print_like_postgres() {
        let t = |v: f64| {
            let mut b = BytesMut::new();
            PgValue::F64(v)
                .to_sql_text(&Type::FLOAT8, &mut b, &FormatOptions::default())
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(t(1.5), "1.5");
        assert_eq!(t(1e20), "1e+20");
        assert_eq!(t(1.5e-5), "1.5e-05");
        assert_eq!(t(100.0), "100");
        assert_eq!(t(f64::NAN), "NaN");
        assert_eq!(t(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn timestamps_trim_fractions() {
        let t = |micros: i64, tz: bool| {
            let mut b = BytesMut::new();
            PgValue::Timestamp { micros, tz }
                .to_sql_text(&Type::TIMESTAMP, &mut b, &FormatOptions::default())
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        assert_eq!(t(0, false), "1970-01-01 00:00:00");
        assert_eq!(t(500_000, true), "1970-01-01 00:00:00.5+00");
        assert_eq!(t(-1, false), "1969-12-31 23:59:59.999999");
    }
}
