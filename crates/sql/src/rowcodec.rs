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

use crate::catalog::TableDesc;
use crate::datum::Datum;
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
pub fn decode_row(desc: &TableDesc, key: &[u8], value: &[u8]) -> SqlResult<Vec<Datum>> {
    let all: Vec<usize> = (0..desc.columns.len()).collect();
    let mut row = vec![Datum::Null; desc.columns.len()];
    RowDecoder::new(desc, &all).decode_into(key, value, &mut row)?;
    Ok(row)
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
}
