//! Secondary indexes: their key encoding and their maintenance with every row write.
//!
//! An index entry lives in its table's span, next to the rows:
//!
//! ```text
//! key   = table_prefix(table) ++ be32(index_id) ++ col_1 ++ … ++ col_n [++ pk]
//! value = pk   (the row's primary-key bytes after the primary-index prefix)
//! col_i = 0x00 for NULL | 0x01 ++ memcomparable(value)
//! ```
//!
//! A UNIQUE index whose entry has no NULL (or that is `NULLS NOT DISTINCT`) leaves the primary
//! key out of the entry key: the entry then *claims* its values, and it is written with
//! [`Txn::insert`], so two transactions that claim the same values conflict in the KV layer
//! (a duplicate at commit, or a write-write conflict) at every isolation level. Every other
//! entry ends with the primary key, so it is unique per row and NULLs never collide.
//!
//! Invariants: every live row has exactly one entry per index, written in the row's
//! transaction; entries only ever point at live rows of the same transaction snapshot.
//! [`TableWriter`] is the one place that writes rows together with their entries.

use std::collections::HashSet;

use kestrel_kv::keys::table_prefix;
use kestrel_kv::Txn;
use kestrel_storage::keycode;

use crate::catalog::{IndexDesc, TableDesc};
use crate::datum::Datum;
use crate::error::{code, SqlError, SqlResult};
use crate::rowcodec::{append_key_datum, encode_key, encode_value, primary_prefix};

/// The most secondary indexes one table may have.
pub const INDEXES_MAX: usize = 64;

/// The prefix of every entry of one index.
pub fn index_prefix(table_id: u32, index_id: u32) -> Vec<u8> {
    let mut k = table_prefix(table_id);
    keycode::put_u32(&mut k, index_id);
    k
}

/// The key span of one index (cleared after DROP INDEX commits).
pub fn index_span(table_id: u32, index_id: u32) -> (Vec<u8>, Vec<u8>) {
    let start = index_prefix(table_id, index_id);
    let end = keycode::prefix_end(&start).unwrap_or_else(|| vec![0xFF; start.len() + 1]);
    (start, end)
}

/// Appends one index column: a NULL marker, or a presence marker and the value.
pub fn append_index_datum(out: &mut Vec<u8>, d: &Datum) -> SqlResult<()> {
    if d.is_null() {
        out.push(0x00);
        return Ok(());
    }
    out.push(0x01);
    append_key_datum(out, d)
}

/// One entry of one index for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The key names the values alone: writing it must not find a live entry.
    pub claim: bool,
}

/// An index with its column positions resolved against the table.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub desc: IndexDesc,
    pub positions: Vec<usize>,
}

/// The entry of `ix` for `row` (which holds at least the key and index columns).
pub fn entry(table: &TableDesc, ix: &Resolved, row: &[Datum], pk_key: &[u8]) -> SqlResult<Entry> {
    let mut key = index_prefix(table.id, ix.desc.id);
    let mut has_null = false;
    for &i in &ix.positions {
        has_null |= row[i].is_null();
        append_index_datum(&mut key, &row[i])?;
    }
    let pk = pk_key
        .get(primary_prefix(table.id).len()..)
        .ok_or_else(|| SqlError::internal("primary key shorter than its prefix"))?
        .to_vec();
    let claim = ix.desc.unique && (!has_null || ix.desc.nulls_not_distinct);
    if !claim {
        key.extend_from_slice(&pk);
    }
    Ok(Entry {
        key,
        value: pk,
        claim,
    })
}

/// PostgreSQL's error for a value a unique index already holds.
pub fn unique_violation(table: &TableDesc, ix: &Resolved, row: &[Datum]) -> SqlError {
    let (cols, vals) = key_text(table, &ix.positions, row);
    SqlError::new(
        code::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}\"",
            ix.desc.name
        ),
    )
    .with_detail(format!("Key ({cols})=({vals}) already exists."))
}

/// `("a, b", "1, x")` for the named columns of `row`.
pub fn key_text(table: &TableDesc, positions: &[usize], row: &[Datum]) -> (String, String) {
    let cols: Vec<&str> = positions
        .iter()
        .map(|&i| table.columns[i].name.as_str())
        .collect();
    let vals: Vec<String> = positions
        .iter()
        .map(|&i| row[i].display(&table.columns[i].ty))
        .collect();
    (cols.join(", "), vals.join(", "))
}

/// Writes rows of one table together with their index entries.
#[derive(Debug, Clone)]
pub struct TableWriter {
    pub indexes: Vec<Resolved>,
}

impl TableWriter {
    pub fn new(table: &TableDesc) -> Self {
        let indexes = table
            .indexes
            .iter()
            .map(|ix| Resolved {
                desc: ix.clone(),
                positions: table.index_positions(ix),
            })
            .collect();
        Self { indexes }
    }

    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The column positions index maintenance reads from an old row.
    pub fn indexed_positions(&self) -> HashSet<usize> {
        self.indexes
            .iter()
            .flat_map(|ix| ix.positions.iter().copied())
            .collect()
    }

    /// Writes the entries of a new row; a claimed value that is already live is 23505.
    pub async fn insert_entries(
        &self,
        txn: &mut Txn,
        table: &TableDesc,
        row: &[Datum],
        pk_key: &[u8],
    ) -> SqlResult<()> {
        for ix in &self.indexes {
            let e = entry(table, ix, row, pk_key)?;
            self.write_entry(txn, table, ix, row, e).await?;
        }
        Ok(())
    }

    async fn write_entry(
        &self,
        txn: &mut Txn,
        table: &TableDesc,
        ix: &Resolved,
        row: &[Datum],
        e: Entry,
    ) -> SqlResult<()> {
        if !e.claim {
            txn.put(e.key, e.value)?;
            return Ok(());
        }
        if txn.get(&e.key).await?.is_some() {
            return Err(unique_violation(table, ix, row));
        }
        txn.insert(e.key, e.value).map_err(|err| match err {
            kestrel_kv::KvError::DuplicateKey { .. } => unique_violation(table, ix, row),
            other => other.into(),
        })
    }

    /// Inserts a full row (primary key must be free) and its entries.
    pub async fn insert_row(
        &self,
        txn: &mut Txn,
        table: &TableDesc,
        row: &[Datum],
    ) -> SqlResult<()> {
        let key = encode_key(table, row)?;
        txn.insert(key.clone(), encode_value(table, row))
            .map_err(|e| match e {
                kestrel_kv::KvError::DuplicateKey { .. } => {
                    crate::provider::duplicate_key_error(table, row)
                }
                other => other.into(),
            })?;
        self.insert_entries(txn, table, row, &key).await
    }

    /// Deletes the entries of a row (`row` holds at least the key and indexed columns).
    pub fn delete_entries(
        &self,
        txn: &mut Txn,
        table: &TableDesc,
        row: &[Datum],
        pk_key: &[u8],
    ) -> SqlResult<()> {
        for ix in &self.indexes {
            let e = entry(table, ix, row, pk_key)?;
            txn.delete(e.key)?;
        }
        Ok(())
    }

    /// Index changes of updated rows, `(old row, old key, new row, new key)` each: every
    /// changed old entry is deleted before any new one is written, so rows may trade values.
    pub async fn update_entries(
        &self,
        txn: &mut Txn,
        table: &TableDesc,
        rows: &[(Vec<Datum>, Vec<u8>, Vec<Datum>, Vec<u8>)],
    ) -> SqlResult<()> {
        let mut writes = Vec::new();
        for ix in &self.indexes {
            for (old, old_key, new, new_key) in rows {
                let before = entry(table, ix, old, old_key)?;
                let after = entry(table, ix, new, new_key)?;
                if before == after {
                    continue;
                }
                if before.key != after.key {
                    txn.delete(before.key)?;
                    writes.push((ix, new, after));
                } else {
                    // Same claimed values, new primary key: the entry moves to the new row.
                    txn.put(after.key, after.value)?;
                }
            }
        }
        for (ix, row, e) in writes {
            self.write_entry(txn, table, ix, row, e).await?;
        }
        Ok(())
    }
}

/// Writes the entries of every existing row for a new index; 23505 if a unique index finds
/// a duplicate (`could not create unique index`).
pub async fn backfill(txn: &mut Txn, table: &TableDesc, ix: &Resolved) -> SqlResult<()> {
    txn.track_all_reads();
    let prefix = primary_prefix(table.id);
    let end = keycode::prefix_end(&prefix);
    let mut from = Some(prefix);
    while let Some(start) = from.take() {
        let (rows, resume) = txn
            .scan(&start, end.as_deref(), BACKFILL_BATCH_ROWS)
            .await?;
        from = resume;
        for (k, v) in rows {
            let row = crate::rowcodec::decode_row(table, &k, &v)?;
            let e = entry(table, ix, &row, &k)?;
            if e.claim && txn.get(&e.key).await?.is_some() {
                let (cols, vals) = key_text(table, &ix.positions, &row);
                return Err(SqlError::new(
                    code::UNIQUE_VIOLATION,
                    format!("could not create unique index \"{}\"", ix.desc.name),
                )
                .with_detail(format!("Key ({cols})=({vals}) is duplicated.")));
            }
            txn.put(e.key, e.value)?;
        }
    }
    Ok(())
}

/// Rows read per scan batch while backfilling an index.
const BACKFILL_BATCH_ROWS: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnDesc;
    use crate::types::SqlType;

    fn table(unique: bool, nnd: bool) -> (TableDesc, Resolved) {
        let col = |id: u16, name: &str| ColumnDesc {
            id,
            name: name.into(),
            ty: SqlType::Int4,
            nullable: true,
            default: None,
            default_expr: None,
            identity_always: false,
            hidden: false,
            generated: None,
        };
        let ix = IndexDesc {
            id: 2,
            name: "t_b_key".into(),
            columns: vec![2],
            unique,
            nulls_not_distinct: nnd,
            constraint: true,
        };
        let t = TableDesc {
            id: 100,
            db_id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![col(1, "a"), col(2, "b")],
            primary_key: vec![0],
            next_column_id: 3,
            checks: vec![],
            indexes: vec![ix.clone()],
            next_index_id: 3,
            foreign_keys: Vec::new(),
        };
        let r = Resolved {
            desc: ix,
            positions: vec![1],
        };
        (t, r)
    }

    #[test]
    fn unique_entries_claim_values_unless_null() {
        let (t, ix) = table(true, false);
        let r1 = [Datum::I32(1), Datum::I32(7)];
        let r2 = [Datum::I32(2), Datum::I32(7)];
        let e1 = entry(&t, &ix, &r1, &encode_key(&t, &r1).unwrap()).unwrap();
        let e2 = entry(&t, &ix, &r2, &encode_key(&t, &r2).unwrap()).unwrap();
        assert!(e1.claim && e2.claim);
        assert_eq!(e1.key, e2.key, "same value, same claim");
        assert_ne!(e1.value, e2.value, "values point at different rows");
        let n1 = [Datum::I32(1), Datum::Null];
        let n2 = [Datum::I32(2), Datum::Null];
        let m1 = entry(&t, &ix, &n1, &encode_key(&t, &n1).unwrap()).unwrap();
        let m2 = entry(&t, &ix, &n2, &encode_key(&t, &n2).unwrap()).unwrap();
        assert!(!m1.claim);
        assert_ne!(m1.key, m2.key, "NULLs are distinct");
        let (t, ix) = table(true, true);
        let m1 = entry(&t, &ix, &n1, &encode_key(&t, &n1).unwrap()).unwrap();
        let m2 = entry(&t, &ix, &n2, &encode_key(&t, &n2).unwrap()).unwrap();
        assert!(m1.claim);
        assert_eq!(m1.key, m2.key, "NULLS NOT DISTINCT collide");
    }

    #[test]
    fn entries_sort_by_value_then_key() {
        let (t, ix) = table(false, false);
        let rows = [
            [Datum::I32(5), Datum::I32(-3)],
            [Datum::I32(1), Datum::I32(10)],
            [Datum::I32(2), Datum::I32(10)],
            [Datum::I32(9), Datum::Null],
        ];
        let mut keys: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| entry(&t, &ix, r, &encode_key(&t, r).unwrap()).unwrap().key)
            .collect();
        let expected = vec![
            keys[3].clone(),
            keys[0].clone(),
            keys[1].clone(),
            keys[2].clone(),
        ];
        keys.sort();
        assert_eq!(
            keys, expected,
            "NULL first, then by value, then by primary key"
        );
    }
}
