//! How a table row becomes a key-value pair.
//!
//! * key: `keys::table_prefix(table_id) ++ be32(index_id = 1) ++ memcomparable(pk_1) ++ …` —
//!   rows sort by primary key, so a primary-key range is a key range.
//! * value: the non-key columns that are not NULL, each as `le16(column_id) ++ tag ++ payload`.
//!   Column ids never change, so adding or dropping columns needs no rewrite of old rows, and
//!   decoding skips ids it no longer knows.
//!
//! Example: `CREATE TABLE t (id INT PRIMARY KEY, name TEXT, score FLOAT8)` as table 100,
//! row `(7, 'ab', NULL)`:
//! `key = 10 00000064 00000001 80000007`, `value = 0200 07 02000000 6162` (column 2, text, "ab").

use kestrel_kv::keys::table_prefix;
use kestrel_storage::keycode::{self, Reader};

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};

use crate::catalog::TableDesc;
use crate::datum::{array_from_datums, Datum};
use crate::error::{SqlError, SqlResult};
use crate::types::SqlType;

pub const PRIMARY_INDEX_ID: u32 = 1;

/// The prefix of every primary-index key of a table.
pub fn primary_prefix(table_id: u32) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    keycode::put_u32(&mut k, PRIMARY_INDEX_ID);
    k
}

fn put_key_datum(out: &mut Vec<u8>, d: &Datum) -> SqlResult<()> {
    match d {
        Datum::Null => return Err(SqlError::internal("NULL in a primary key")),
        Datum::Bool(b) => out.push(*b as u8),
        Datum::I16(v) => keycode::put_i16(out, *v),
        Datum::I32(v) => keycode::put_i32(out, *v),
        Datum::I64(v) => keycode::put_i64(out, *v),
        Datum::F32(v) => keycode::put_f32(out, *v),
        Datum::F64(v) => keycode::put_f64(out, *v),
        Datum::Decimal(v) => keycode::put_i128(out, *v),
        Datum::Text(s) => keycode::put_bytes(out, s.as_bytes()),
        Datum::Bytes(b) => keycode::put_bytes(out, b),
        Datum::Date(v) => keycode::put_i32(out, *v),
        Datum::Timestamp(v) => keycode::put_i64(out, *v),
        Datum::Uuid(u) => out.extend_from_slice(u),
        Datum::Array(_) => {
            return Err(SqlError::unsupported(
                "array columns in a primary key or an index",
            ))
        }
        // Sorted by the span PostgreSQL compares (30-day months), then by the fields.
        Datum::Interval(m, d, n) => {
            let span = crate::pg_ops::span_nanos(
                datafusion::arrow::datatypes::IntervalMonthDayNano::new(*m, *d, *n),
            );
            keycode::put_i128(out, span);
            keycode::put_i32(out, *m);
            keycode::put_i32(out, *d);
            keycode::put_i64(out, *n);
        }
    }
    Ok(())
}

/// Appends the key encoding of `d` (a value of type `ty`) — used for key bounds too.
pub fn append_key_datum(out: &mut Vec<u8>, d: &Datum) -> SqlResult<()> {
    put_key_datum(out, d)
}

/// The primary key of `row` (a full row, indexed like `desc.columns`).
pub fn encode_key(desc: &TableDesc, row: &[Datum]) -> SqlResult<Vec<u8>> {
    let mut k = primary_prefix(desc.id);
    for &i in &desc.primary_key {
        put_key_datum(&mut k, &row[i])?;
    }
    Ok(k)
}

fn corrupt() -> SqlError {
    SqlError::internal("corrupt row encoding")
}

fn get_key_datum(r: &mut Reader<'_>, ty: &SqlType) -> SqlResult<Datum> {
    let e = |_| corrupt();
    Ok(match ty {
        SqlType::Bool => Datum::Bool(r.u8().map_err(e)? != 0),
        SqlType::Int2 => Datum::I16(r.i16().map_err(e)?),
        SqlType::Int4 => Datum::I32(r.i32().map_err(e)?),
        SqlType::Int8 => Datum::I64(r.i64().map_err(e)?),
        SqlType::Float4 => Datum::F32(r.f32().map_err(e)?),
        SqlType::Float8 => Datum::F64(r.f64().map_err(e)?),
        SqlType::Numeric { .. } => Datum::Decimal(r.i128().map_err(e)?),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb | SqlType::Json => {
            Datum::Text(String::from_utf8(r.bytes().map_err(e)?).map_err(|_| corrupt())?)
        }
        SqlType::Bytea => Datum::Bytes(r.bytes().map_err(e)?),
        SqlType::Date => Datum::Date(r.i32().map_err(e)?),
        SqlType::Timestamp | SqlType::TimestampTz => Datum::Timestamp(r.i64().map_err(e)?),
        SqlType::Uuid => {
            let mut u = [0u8; 16];
            for b in u.iter_mut() {
                *b = r.u8().map_err(e)?;
            }
            Datum::Uuid(u)
        }
        SqlType::Array(_) => return Err(corrupt()),
        SqlType::Interval => {
            let _span = r.i128().map_err(e)?;
            Datum::Interval(
                r.i32().map_err(e)?,
                r.i32().map_err(e)?,
                r.i64().map_err(e)?,
            )
        }
    })
}

const TAG_BOOL: u8 = 0;
const TAG_I16: u8 = 1;
const TAG_I32: u8 = 2;
const TAG_I64: u8 = 3;
const TAG_F32: u8 = 4;
const TAG_F64: u8 = 5;
const TAG_DEC: u8 = 6;
const TAG_TEXT: u8 = 7;
const TAG_BYTES: u8 = 8;
const TAG_DATE: u8 = 9;
const TAG_TS: u8 = 10;
const TAG_UUID: u8 = 11;
const TAG_INTERVAL: u8 = 12;

const TAG_ARRAY: u8 = 13;
/// A NULL element inside an array (columns that are NULL are simply absent).
const TAG_NULL: u8 = 255;
/// The deepest nesting a stored value may have (arrays are one-dimensional: 1 suffices).
const VALUE_DEPTH_MAX: usize = 4;

/// The value part of `row`: every non-key, non-NULL column.
pub fn encode_value(desc: &TableDesc, row: &[Datum]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * row.len());
    for (i, col) in desc.columns.iter().enumerate() {
        if desc.primary_key.contains(&i) || row[i].is_null() {
            continue;
        }
        out.extend_from_slice(&col.id.to_le_bytes());
        put_value(&mut out, &row[i]);
    }
    out
}

/// Appends `tag ++ payload` of one value.
fn put_value(out: &mut Vec<u8>, d: &Datum) {
    let mut tagged = |tag: u8, bytes: &[u8]| {
        out.push(tag);
        out.extend_from_slice(bytes);
    };
    match d {
        Datum::Null => out.push(TAG_NULL),
        Datum::Bool(b) => tagged(TAG_BOOL, &[*b as u8]),
        Datum::I16(v) => tagged(TAG_I16, &v.to_le_bytes()),
        Datum::I32(v) => tagged(TAG_I32, &v.to_le_bytes()),
        Datum::I64(v) => tagged(TAG_I64, &v.to_le_bytes()),
        Datum::F32(v) => tagged(TAG_F32, &v.to_le_bytes()),
        Datum::F64(v) => tagged(TAG_F64, &v.to_le_bytes()),
        Datum::Decimal(v) => tagged(TAG_DEC, &v.to_le_bytes()),
        Datum::Text(s) => {
            tagged(TAG_TEXT, &(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Datum::Bytes(b) => {
            tagged(TAG_BYTES, &(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        Datum::Date(v) => tagged(TAG_DATE, &v.to_le_bytes()),
        Datum::Timestamp(v) => tagged(TAG_TS, &v.to_le_bytes()),
        Datum::Uuid(u) => tagged(TAG_UUID, u),
        Datum::Interval(m, d, n) => {
            tagged(TAG_INTERVAL, &m.to_le_bytes());
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        Datum::Array(items) => {
            tagged(TAG_ARRAY, &(items.len() as u32).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> SqlResult<&'a [u8]> {
    if buf.len() < n {
        return Err(corrupt());
    }
    let (h, t) = buf.split_at(n);
    *buf = t;
    Ok(h)
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    a
}

fn decode_payload(buf: &mut &[u8], tag: u8) -> SqlResult<Datum> {
    decode_nested(buf, tag, 0)
}

fn decode_nested(buf: &mut &[u8], tag: u8, depth: usize) -> SqlResult<Datum> {
    Ok(match tag {
        TAG_NULL if depth > 0 => Datum::Null,
        TAG_ARRAY if depth < VALUE_DEPTH_MAX => {
            let n = u32::from_le_bytes(arr(take(buf, 4)?)) as usize;
            // Every element takes at least its tag byte: a count beyond that is corrupt.
            if n > buf.len() {
                return Err(corrupt());
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let t = take(buf, 1)?[0];
                items.push(decode_nested(buf, t, depth + 1)?);
            }
            Datum::Array(items)
        }
        TAG_BOOL => Datum::Bool(take(buf, 1)?[0] != 0),
        TAG_I16 => Datum::I16(i16::from_le_bytes(arr(take(buf, 2)?))),
        TAG_I32 => Datum::I32(i32::from_le_bytes(arr(take(buf, 4)?))),
        TAG_I64 => Datum::I64(i64::from_le_bytes(arr(take(buf, 8)?))),
        TAG_F32 => Datum::F32(f32::from_le_bytes(arr(take(buf, 4)?))),
        TAG_F64 => Datum::F64(f64::from_le_bytes(arr(take(buf, 8)?))),
        TAG_DEC => Datum::Decimal(i128::from_le_bytes(arr(take(buf, 16)?))),
        TAG_TEXT | TAG_BYTES => {
            let n = u32::from_le_bytes(arr(take(buf, 4)?)) as usize;
            let b = take(buf, n)?.to_vec();
            if tag == TAG_TEXT {
                Datum::Text(String::from_utf8(b).map_err(|_| corrupt())?)
            } else {
                Datum::Bytes(b)
            }
        }
        TAG_DATE => Datum::Date(i32::from_le_bytes(arr(take(buf, 4)?))),
        TAG_TS => Datum::Timestamp(i64::from_le_bytes(arr(take(buf, 8)?))),
        TAG_UUID => Datum::Uuid(arr(take(buf, 16)?)),
        TAG_INTERVAL => Datum::Interval(
            i32::from_le_bytes(arr(take(buf, 4)?)),
            i32::from_le_bytes(arr(take(buf, 4)?)),
            i64::from_le_bytes(arr(take(buf, 8)?)),
        ),
        _ => return Err(corrupt()),
    })
}

/// Decodes a stored row into a full row indexed like `desc.columns`.
/// (A loop over many rows keeps one [`RowDecoder::full`] instead.)
pub fn decode_row(desc: &TableDesc, key: &[u8], value: &[u8]) -> SqlResult<Vec<Datum>> {
    RowDecoder::full(desc).decode(key, value)
}

/// Decodes chosen columns of stored rows (a scan's projection): the others are stepped over
/// without being materialised, and a column is found by its id in a table, not a search.
pub struct RowDecoder<'a> {
    desc: &'a TableDesc,
    prefix_len: usize,
    /// By column id: the column's position in `desc.columns`, if it is wanted.
    slot: Vec<Option<usize>>,
}

impl<'a> RowDecoder<'a> {
    pub fn new(desc: &'a TableDesc, wanted: &[usize]) -> Self {
        let ids = desc.columns.iter().map(|c| c.id as usize);
        let mut slot = vec![None; ids.max().map_or(0, |m| m + 1)];
        for &i in wanted {
            slot[desc.columns[i].id as usize] = Some(i);
        }
        Self {
            desc,
            prefix_len: primary_prefix(desc.id).len(),
            slot,
        }
    }

    /// A decoder of every column.
    pub fn full(desc: &'a TableDesc) -> Self {
        let all: Vec<usize> = (0..desc.columns.len()).collect();
        Self::new(desc, &all)
    }

    /// A full row indexed like `desc.columns` (NULL where the decoder wants no value).
    pub fn decode(&self, key: &[u8], value: &[u8]) -> SqlResult<Vec<Datum>> {
        let mut row = vec![Datum::Null; self.desc.columns.len()];
        self.decode_into(key, value, &mut row)?;
        Ok(row)
    }

    /// Sets the wanted columns of `row` (indexed like `desc.columns`) and every key column;
    /// a wanted column absent from the value (NULL) is left as `row` has it.
    pub fn decode_into(&self, key: &[u8], value: &[u8], row: &mut [Datum]) -> SqlResult<()> {
        if key.len() < self.prefix_len {
            return Err(corrupt());
        }
        let mut r = Reader::new(&key[self.prefix_len..]);
        for &i in &self.desc.primary_key {
            row[i] = get_key_datum(&mut r, &self.desc.columns[i].ty)?;
        }
        let mut buf = value;
        while !buf.is_empty() {
            let id = u16::from_le_bytes(arr(take(&mut buf, 2)?));
            let tag = take(&mut buf, 1)?[0];
            match self.slot.get(id as usize).copied().flatten() {
                Some(i) => row[i] = decode_payload(&mut buf, tag)?,
                None => skip_payload(&mut buf, tag)?,
            }
        }
        Ok(())
    }
}

/// One projected column of a batch being decoded: an Arrow builder for the common scalar
/// types, fed straight from the encoded payload, or [`Datum`]s for the rest.
enum Sink {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Datums(SqlType, Vec<Datum>),
}

impl Sink {
    fn new(ty: &SqlType, rows: usize) -> Self {
        match ty {
            SqlType::Bool => Sink::Bool(BooleanBuilder::with_capacity(rows)),
            SqlType::Int2 => Sink::I16(Int16Builder::with_capacity(rows)),
            SqlType::Int4 => Sink::I32(Int32Builder::with_capacity(rows)),
            SqlType::Int8 => Sink::I64(Int64Builder::with_capacity(rows)),
            SqlType::Float4 => Sink::F32(Float32Builder::with_capacity(rows)),
            SqlType::Float8 => Sink::F64(Float64Builder::with_capacity(rows)),
            SqlType::Numeric {
                precision, scale, ..
            } => Sink::Decimal(Decimal128Builder::with_capacity(rows), *precision, *scale),
            SqlType::Text
            | SqlType::Varchar(_)
            | SqlType::Char(_)
            | SqlType::Jsonb
            | SqlType::Json => Sink::Text(StringBuilder::with_capacity(rows, rows * 16)),
            SqlType::Bytea => Sink::Bytes(BinaryBuilder::with_capacity(rows, rows * 16)),
            SqlType::Date => Sink::Date(Date32Builder::with_capacity(rows)),
            SqlType::Timestamp | SqlType::TimestampTz => Sink::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows),
                matches!(ty, SqlType::TimestampTz),
            ),
            SqlType::Uuid | SqlType::Interval | SqlType::Array(_) => {
                Sink::Datums(ty.clone(), Vec::with_capacity(rows))
            }
        }
    }

    /// Appends one stored payload of type `tag`.
    fn push_payload(&mut self, buf: &mut &[u8], tag: u8) -> SqlResult<()> {
        match (self, tag) {
            (Sink::Bool(b), TAG_BOOL) => b.append_value(take(buf, 1)?[0] != 0),
            (Sink::I16(b), TAG_I16) => b.append_value(i16::from_le_bytes(arr(take(buf, 2)?))),
            (Sink::I32(b), TAG_I32) => b.append_value(i32::from_le_bytes(arr(take(buf, 4)?))),
            (Sink::I64(b), TAG_I64) => b.append_value(i64::from_le_bytes(arr(take(buf, 8)?))),
            (Sink::F32(b), TAG_F32) => b.append_value(f32::from_le_bytes(arr(take(buf, 4)?))),
            (Sink::F64(b), TAG_F64) => b.append_value(f64::from_le_bytes(arr(take(buf, 8)?))),
            (Sink::Decimal(b, ..), TAG_DEC) => {
                b.append_value(i128::from_le_bytes(arr(take(buf, 16)?)))
            }
            (Sink::Text(b), TAG_TEXT) => {
                let n = u32::from_le_bytes(arr(take(buf, 4)?)) as usize;
                b.append_value(std::str::from_utf8(take(buf, n)?).map_err(|_| corrupt())?)
            }
            (Sink::Bytes(b), TAG_BYTES) => {
                let n = u32::from_le_bytes(arr(take(buf, 4)?)) as usize;
                b.append_value(take(buf, n)?)
            }
            (Sink::Date(b), TAG_DATE) => b.append_value(i32::from_le_bytes(arr(take(buf, 4)?))),
            (Sink::Timestamp(b, _), TAG_TS) => {
                b.append_value(i64::from_le_bytes(arr(take(buf, 8)?)))
            }
            (Sink::Datums(_, v), _) => v.push(decode_payload(buf, tag)?),
            _ => return Err(corrupt()),
        }
        Ok(())
    }

    /// Appends a decoded value (a key column's).
    fn push_datum(&mut self, d: Datum) -> SqlResult<()> {
        match (self, d) {
            (Sink::Datums(_, v), d) => v.push(d),
            (s, Datum::Null) => s.push_null(),
            (Sink::Bool(b), Datum::Bool(v)) => b.append_value(v),
            (Sink::I16(b), Datum::I16(v)) => b.append_value(v),
            (Sink::I32(b), Datum::I32(v)) => b.append_value(v),
            (Sink::I64(b), Datum::I64(v)) => b.append_value(v),
            (Sink::F32(b), Datum::F32(v)) => b.append_value(v),
            (Sink::F64(b), Datum::F64(v)) => b.append_value(v),
            (Sink::Decimal(b, ..), Datum::Decimal(v)) => b.append_value(v),
            (Sink::Text(b), Datum::Text(v)) => b.append_value(v),
            (Sink::Bytes(b), Datum::Bytes(v)) => b.append_value(v),
            (Sink::Date(b), Datum::Date(v)) => b.append_value(v),
            (Sink::Timestamp(b, _), Datum::Timestamp(v)) => b.append_value(v),
            _ => return Err(corrupt()),
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Sink::Bool(b) => b.append_null(),
            Sink::I16(b) => b.append_null(),
            Sink::I32(b) => b.append_null(),
            Sink::I64(b) => b.append_null(),
            Sink::F32(b) => b.append_null(),
            Sink::F64(b) => b.append_null(),
            Sink::Decimal(b, ..) => b.append_null(),
            Sink::Text(b) => b.append_null(),
            Sink::Bytes(b) => b.append_null(),
            Sink::Date(b) => b.append_null(),
            Sink::Timestamp(b, _) => b.append_null(),
            Sink::Datums(_, v) => v.push(Datum::Null),
        }
    }

    fn finish(self) -> SqlResult<ArrayRef> {
        Ok(match self {
            Sink::Bool(mut b) => Arc::new(b.finish()),
            Sink::I16(mut b) => Arc::new(b.finish()),
            Sink::I32(mut b) => Arc::new(b.finish()),
            Sink::I64(mut b) => Arc::new(b.finish()),
            Sink::F32(mut b) => Arc::new(b.finish()),
            Sink::F64(mut b) => Arc::new(b.finish()),
            Sink::Decimal(mut b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| SqlError::internal(e.to_string()))?,
            ),
            Sink::Text(mut b) => Arc::new(b.finish()),
            Sink::Bytes(mut b) => Arc::new(b.finish()),
            Sink::Date(mut b) => Arc::new(b.finish()),
            Sink::Timestamp(mut b, false) => Arc::new(b.finish()),
            Sink::Timestamp(mut b, true) => Arc::new(b.finish().with_timezone("+00:00")),
            Sink::Datums(ty, vals) => array_from_datums(&ty, &vals)?,
        })
    }
}

/// Decodes stored rows straight into the Arrow arrays of a scan's projection: fixed-width
/// and string payloads are appended to builders from the encoded bytes, with no [`Datum`]
/// in between; unprojected columns are stepped over. Produces the same arrays as decoding
/// each row with [`RowDecoder`] and building them with [`array_from_datums`].
pub struct BatchDecoder<'a> {
    desc: &'a TableDesc,
    prefix_len: usize,
    /// By column id: the sink of a projected non-key column.
    slot: Vec<Option<usize>>,
    /// For each key column in key order up to the last projected one: its sink, if
    /// projected. Key columns after it are not decoded at all.
    key_sinks: Vec<Option<usize>>,
    sinks: Vec<Sink>,
    /// Which sinks the current row has set (absent columns are NULL).
    filled: Vec<bool>,
    rows: usize,
}

impl<'a> BatchDecoder<'a> {
    /// A decoder of `projected` (positions in `desc.columns`) for about `rows` rows.
    pub fn new(desc: &'a TableDesc, projected: &[usize], rows: usize) -> Self {
        let ids = desc.columns.iter().map(|c| c.id as usize);
        let mut slot = vec![None; ids.max().map_or(0, |m| m + 1)];
        let mut key_sinks = vec![None; desc.primary_key.len()];
        for (s, &i) in projected.iter().enumerate() {
            match desc.primary_key.iter().position(|&k| k == i) {
                Some(k) => key_sinks[k] = Some(s),
                None => slot[desc.columns[i].id as usize] = Some(s),
            }
        }
        let key_needed = key_sinks
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |k| k + 1);
        key_sinks.truncate(key_needed);
        Self {
            desc,
            prefix_len: primary_prefix(desc.id).len(),
            slot,
            key_sinks,
            sinks: projected
                .iter()
                .map(|&i| Sink::new(&desc.columns[i].ty, rows))
                .collect(),
            filled: vec![false; projected.len()],
            rows: 0,
        }
    }

    /// Appends one stored row. After an error the batch is unusable (its arrays may be
    /// misaligned): the caller drops the decoder.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> SqlResult<()> {
        if key.len() < self.prefix_len {
            return Err(corrupt());
        }
        let mut r = Reader::new(&key[self.prefix_len..]);
        for (k, &i) in self
            .desc
            .primary_key
            .iter()
            .enumerate()
            .take(self.key_sinks.len())
        {
            let d = get_key_datum(&mut r, &self.desc.columns[i].ty)?;
            if let Some(s) = self.key_sinks[k] {
                self.sinks[s].push_datum(d)?;
                self.filled[s] = true;
            }
        }
        let mut buf = value;
        while !buf.is_empty() {
            let id = u16::from_le_bytes(arr(take(&mut buf, 2)?));
            let tag = take(&mut buf, 1)?[0];
            match self.slot.get(id as usize).copied().flatten() {
                // A column twice in one value would misalign the arrays.
                Some(s) if self.filled[s] => return Err(corrupt()),
                Some(s) => {
                    self.sinks[s].push_payload(&mut buf, tag)?;
                    self.filled[s] = true;
                }
                None => skip_payload(&mut buf, tag)?,
            }
        }
        for (sink, filled) in self.sinks.iter_mut().zip(self.filled.iter_mut()) {
            if !std::mem::take(filled) {
                sink.push_null();
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The projected columns' arrays, in projection order.
    pub fn finish(self) -> SqlResult<Vec<ArrayRef>> {
        self.sinks.into_iter().map(Sink::finish).collect()
    }
}

/// Steps over one value's payload without materialising it.
fn skip_payload(buf: &mut &[u8], tag: u8) -> SqlResult<()> {
    let n = match tag {
        TAG_BOOL => 1,
        TAG_I16 => 2,
        TAG_I32 | TAG_F32 | TAG_DATE => 4,
        TAG_I64 | TAG_F64 | TAG_TS => 8,
        TAG_DEC | TAG_UUID | TAG_INTERVAL => 16,
        TAG_TEXT | TAG_BYTES => u32::from_le_bytes(arr(take(buf, 4)?)) as usize,
        _ => return decode_payload(buf, tag).map(drop),
    };
    take(buf, n).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnDesc;

    fn col(id: u16, name: &str, ty: SqlType) -> ColumnDesc {
        ColumnDesc {
            id,
            name: name.into(),
            ty,
            nullable: true,
            default: None,
            default_expr: None,
            identity_always: false,
            hidden: false,
            generated: None,
        }
    }

    fn table() -> TableDesc {
        TableDesc {
            id: 100,
            db_id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                col(1, "id", SqlType::Int4),
                col(2, "name", SqlType::Text),
                col(3, "score", SqlType::Float8),
                col(4, "u", SqlType::Uuid),
            ],
            primary_key: vec![0],
            next_column_id: 5,
            checks: vec![],
            indexes: vec![],
            next_index_id: 2,
            foreign_keys: Vec::new(),
        }
    }

    #[test]
    fn worked_example_from_the_module_doc() {
        let t = table();
        let row = vec![
            Datum::I32(7),
            Datum::Text("ab".into()),
            Datum::Null,
            Datum::Null,
        ];
        let key = encode_key(&t, &row).unwrap();
        assert_eq!(key, vec![0x10, 0, 0, 0, 100, 0, 0, 0, 1, 0x80, 0, 0, 7]);
        let value = encode_value(&t, &row);
        assert_eq!(value, vec![2, 0, 7, 2, 0, 0, 0, b'a', b'b']);
        assert_eq!(decode_row(&t, &key, &value).unwrap(), row);
    }

    #[test]
    fn keys_sort_by_primary_key_and_unknown_columns_are_skipped() {
        let t = table();
        let k = |v: i32| {
            encode_key(&t, &[Datum::I32(v), Datum::Null, Datum::Null, Datum::Null]).unwrap()
        };
        assert!(k(-5) < k(3) && k(3) < k(300));
        let row = vec![
            Datum::I32(1),
            Datum::Null,
            Datum::F64(2.5),
            Datum::Uuid([9; 16]),
        ];
        let value = encode_value(&t, &row);
        let mut dropped = t.clone();
        dropped.columns.remove(2);
        let back = decode_row(&dropped, &k(1), &value).unwrap();
        assert_eq!(back, vec![Datum::I32(1), Datum::Null, Datum::Uuid([9; 16])]);
        assert!(decode_row(&t, &k(1), &value[..value.len() - 1]).is_err());
    }

    #[test]
    fn a_projection_decodes_only_its_columns() {
        let mut t = table();
        t.columns
            .push(col(5, "tags", SqlType::Array(Box::new(SqlType::Text))));
        t.columns.push(col(6, "d", SqlType::Date));
        let full = vec![
            Datum::I32(4),
            Datum::Text("skipped".into()),
            Datum::F64(-1.5),
            Datum::Uuid([3; 16]),
            Datum::Array(vec![Datum::Text("x".into()), Datum::Null]),
            Datum::Date(19_000),
        ];
        let key = encode_key(&t, &full).unwrap();
        let value = encode_value(&t, &full);
        assert_eq!(decode_row(&t, &key, &value).unwrap(), full);
        let mut row = vec![Datum::Null; full.len()];
        RowDecoder::new(&t, &[2, 5])
            .decode_into(&key, &value, &mut row)
            .unwrap();
        let want = [
            Datum::I32(4),
            Datum::Null,
            Datum::F64(-1.5),
            Datum::Null,
            Datum::Null,
        ];
        assert_eq!(row[..5], want, "only the key and the wanted columns");
        assert_eq!(row[5], Datum::Date(19_000));
        // A truncated value is still an error when the cut falls in a skipped column.
        let cut = &value[..value.len() - 3];
        let mut row = vec![Datum::Null; full.len()];
        assert!(RowDecoder::new(&t, &[0])
            .decode_into(&key, cut, &mut row)
            .is_err());
    }

    /// The batch decoder builds the same arrays as decoding rows into datums first, for every
    /// column type, NULLs, key columns in any projection position and dropped column ids.
    #[test]
    fn batch_decoder_matches_the_datum_path() {
        let types = [
            SqlType::Bool,
            SqlType::Int2,
            SqlType::Int8,
            SqlType::Float4,
            SqlType::Numeric {
                precision: 15,
                scale: 2,
                constrained: true,
            },
            SqlType::Varchar(Some(10)),
            SqlType::Bytea,
            SqlType::Date,
            SqlType::Timestamp,
            SqlType::TimestampTz,
            SqlType::Interval,
            SqlType::Array(Box::new(SqlType::Int4)),
        ];
        let mut t = table();
        t.primary_key = vec![0, 1];
        for (i, ty) in types.iter().enumerate() {
            t.columns
                .push(col(5 + i as u16, &format!("c{i}"), ty.clone()));
        }
        let value_of = |ty: &SqlType, n: i32| match ty {
            SqlType::Bool => Datum::Bool(n % 2 == 0),
            SqlType::Int2 => Datum::I16(n as i16),
            SqlType::Int8 => Datum::I64(n as i64 * 1_000_000_007),
            SqlType::Float4 => Datum::F32(n as f32 / 4.0),
            SqlType::Numeric { .. } => Datum::Decimal(n as i128 * 12_345),
            SqlType::Varchar(_) => Datum::Text(format!("v{n}é")),
            SqlType::Bytea => Datum::Bytes(vec![n as u8; n as usize % 3]),
            SqlType::Date => Datum::Date(n * 31),
            SqlType::Timestamp | SqlType::TimestampTz => Datum::Timestamp(n as i64 * 86_400),
            SqlType::Interval => Datum::Interval(n, -n, n as i64),
            SqlType::Array(_) => Datum::Array(vec![Datum::I32(n), Datum::Null]),
            _ => unreachable!(),
        };
        let mut stored = Vec::new();
        for n in 0..20 {
            let mut row = vec![Datum::I32(n), Datum::Text(format!("k{n}"))];
            row.push(if n % 3 == 0 {
                Datum::Null
            } else {
                Datum::F64(n as f64)
            });
            row.push(Datum::Uuid([n as u8; 16]));
            for (i, ty) in types.iter().enumerate() {
                // Every column is NULL in some rows.
                row.push(if (n + i as i32) % 4 == 0 {
                    Datum::Null
                } else {
                    value_of(ty, n)
                });
            }
            stored.push((encode_key(&t, &row).unwrap(), encode_value(&t, &row)));
        }
        // Column "score" (id 3) is dropped: its stored values must be stepped over.
        let mut desc = t.clone();
        desc.columns.remove(2);
        let all: Vec<usize> = (0..desc.columns.len()).collect();
        let projections = [
            all.clone(),
            vec![1],
            vec![5, 1, 9, 0],
            // The first key column only, and no key column: later key columns not decoded.
            vec![0, 5],
            vec![9, 5],
            vec![],
            all.iter().rev().copied().collect(),
        ];
        for projected in projections {
            let mut batch = BatchDecoder::new(&desc, &projected, 4);
            let mut rows = Vec::new();
            for (k, v) in &stored {
                batch.push(k, v).unwrap();
                rows.push(decode_row(&desc, k, v).unwrap());
            }
            assert_eq!(batch.rows(), stored.len());
            let got = batch.finish().unwrap();
            for (j, &i) in projected.iter().enumerate() {
                let vals: Vec<Datum> = rows.iter().map(|r| r[i].clone()).collect();
                let want = array_from_datums(&desc.columns[i].ty, &vals).unwrap();
                assert_eq!(
                    got[j].to_data(),
                    want.to_data(),
                    "column {i} of {projected:?}"
                );
            }
        }
        // Corrupt input is an error, never a panic or a misaligned batch.
        let (k, v) = &stored[1];
        let mut batch = BatchDecoder::new(&desc, &all, 1);
        assert!(batch.push(k, &v[..v.len() - 1]).is_err());
        assert!(BatchDecoder::new(&desc, &all, 1).push(&k[..3], v).is_err());
        let mut twice = v.clone();
        twice.extend_from_slice(&v[..]);
        assert!(BatchDecoder::new(&desc, &all, 1).push(k, &twice).is_err());
        // Column c1 (id 6, int2) holding a text payload.
        let wrong_tag = [6, 0, TAG_TEXT, 1, 0, 0, 0, b'x'];
        assert!(BatchDecoder::new(&desc, &all, 1)
            .push(k, &wrong_tag)
            .is_err());
        assert!(BatchDecoder::new(&desc, &[], 1).push(k, &wrong_tag).is_ok());
    }
}
