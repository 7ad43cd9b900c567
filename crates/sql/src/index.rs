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
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;

use kestrel_kv::keys::table_prefix;
use kestrel_kv::Txn;
use kestrel_storage::keycode;

use crate::catalog::{IndexDesc, TableDesc};
use crate::datum::{datums_from_array, Datum};
use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::rowcodec::{append_key_datum, encode_key, encode_value, primary_prefix};
use crate::types::SqlType;

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

/// An index with its column positions resolved against the table (and, for an expression
/// or partial index, its keys and predicate compiled).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub desc: IndexDesc,
    /// Positions of `desc.columns`: a plain index's keys; every column any index
    /// expression reads otherwise.
    pub positions: Vec<usize>,
    compiled: Option<Arc<Compiled>>,
}

/// The compiled keys (with their types) and predicate of a non-plain index.
struct Compiled {
    keys: Vec<(Arc<dyn PhysicalExpr>, SqlType)>,
    predicate: Option<Arc<dyn PhysicalExpr>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compiled({} keys)", self.keys.len())
    }
}

impl Resolved {
    pub fn new(table: &TableDesc, ix: &IndexDesc) -> SqlResult<Self> {
        let compiled = if ix.is_plain() {
            None
        } else {
            Some(Arc::new(compile(table, ix)?))
        };
        Ok(Self {
            desc: ix.clone(),
            positions: table.index_positions(ix),
            compiled,
        })
    }

    /// The key values of `row`'s entry, or `None` when a partial index's predicate leaves
    /// the row out.
    pub fn key_values(&self, table: &TableDesc, row: &[Datum]) -> SqlResult<Option<Vec<Datum>>> {
        let Some(c) = &self.compiled else {
            return Ok(Some(
                self.positions.iter().map(|&i| row[i].clone()).collect(),
            ));
        };
        let batch = crate::check::batch_of(table, std::slice::from_ref(&row.to_vec()))?;
        if let Some(p) = &c.predicate {
            let out = crate::check::evaluate(p, &batch)?;
            let included = out
                .as_any()
                .downcast_ref::<BooleanArray>()
                .is_some_and(|b| b.is_valid(0) && b.value(0));
            if !included {
                return Ok(None);
            }
        }
        if c.keys.is_empty() {
            return Ok(Some(
                self.positions.iter().map(|&i| row[i].clone()).collect(),
            ));
        }
        let mut vals = Vec::with_capacity(c.keys.len());
        for (expr, ty) in &c.keys {
            let out = crate::check::evaluate(expr, &batch)?;
            let mut d = datums_from_array(ty, &out)?;
            vals.push(d.pop().unwrap_or(Datum::Null));
        }
        Ok(Some(vals))
    }

    /// The key's column names (or expressions) and their types, for messages.
    fn key_names(&self, table: &TableDesc) -> Vec<(String, SqlType)> {
        match &self.compiled {
            Some(c) if !c.keys.is_empty() => self
                .desc
                .exprs
                .iter()
                .zip(&c.keys)
                .map(|(e, (_, ty))| (e.clone(), ty.clone()))
                .collect(),
            _ => self
                .positions
                .iter()
                .map(|&i| (table.columns[i].name.clone(), table.columns[i].ty.clone()))
                .collect(),
        }
    }
}

/// Compiles a non-plain index's keys and predicate over the table's full row. As in
/// PostgreSQL they may only call immutable functions (42P17).
fn compile(table: &TableDesc, ix: &IndexDesc) -> SqlResult<Compiled> {
    use datafusion::logical_expr::ExprSchemable;
    let state = crate::session::expression_state()?;
    let schema = table.arrow_schema(true);
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(from_datafusion)?;
    let logical = |sql: &str, what: &str| -> SqlResult<datafusion::logical_expr::Expr> {
        let e = state
            .create_logical_expr(sql, &df_schema)
            .map_err(from_datafusion)?;
        if !is_immutable(&e) {
            return Err(SqlError::new(
                code::INVALID_OBJECT_DEFINITION,
                format!("functions in index {what} must be marked IMMUTABLE"),
            ));
        }
        Ok(e)
    };
    let mut keys = Vec::with_capacity(ix.exprs.len());
    for sql in &ix.exprs {
        let e = logical(sql, "expression")?;
        let arrow = e.get_type(&df_schema).map_err(from_datafusion)?;
        let ty = SqlType::from_arrow(&arrow)
            .ok_or_else(|| SqlError::unsupported(format!("an index key of type {arrow}")))?;
        let phys = state
            .create_physical_expr(e, &df_schema)
            .map_err(from_datafusion)?;
        keys.push((phys, ty));
    }
    let predicate = match &ix.predicate {
        None => None,
        Some(sql) => {
            let e = logical(sql, "predicate")?;
            Some(
                state
                    .create_physical_expr(e, &df_schema)
                    .map_err(from_datafusion)?,
            )
        }
    };
    Ok(Compiled { keys, predicate })
}

/// Whether every function `e` calls is immutable (PostgreSQL's rule for index expressions:
/// a stable function such as `now()` could key a row differently at insert and at delete).
fn is_immutable(e: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut immutable = true;
    let _ = e.apply(|x| {
        if let Expr::ScalarFunction(f) = x {
            if f.func.signature().volatility != Volatility::Immutable {
                immutable = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    immutable
}

/// The entry of `ix` for `row` (which holds at least the key and index columns); `None`
/// when a partial index leaves the row out.
pub fn entry(
    table: &TableDesc,
    ix: &Resolved,
    row: &[Datum],
    pk_key: &[u8],
) -> SqlResult<Option<Entry>> {
    let Some(vals) = ix.key_values(table, row)? else {
        return Ok(None);
    };
    let mut key = index_prefix(table.id, ix.desc.id);
    let mut has_null = false;
    for v in &vals {
        has_null |= v.is_null();
        append_index_datum(&mut key, v)?;
    }
    let pk = pk_key
        .get(primary_prefix(table.id).len()..)
        .ok_or_else(|| SqlError::internal("primary key shorter than its prefix"))?
        .to_vec();
    let claim = ix.desc.unique && (!has_null || ix.desc.nulls_not_distinct);
    if !claim {
        key.extend_from_slice(&pk);
    }
    Ok(Some(Entry {
        key,
        value: pk,
        claim,
    }))
}

/// `("a, b", "1, x")`: the key of `ix` in `row`, for messages.
fn index_key_text(table: &TableDesc, ix: &Resolved, row: &[Datum]) -> (String, String) {
    let names = ix.key_names(table);
    let vals = ix.key_values(table, row).ok().flatten().unwrap_or_default();
    let cols: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    let shown: Vec<String> = names
        .iter()
        .zip(vals.iter())
        .map(|((_, ty), v)| v.display(ty))
        .collect();
    (cols.join(", "), shown.join(", "))
}

/// PostgreSQL's error for a value a unique index already holds.
pub fn unique_violation(table: &TableDesc, ix: &Resolved, row: &[Datum]) -> SqlError {
    let (cols, vals) = index_key_text(table, ix, row);
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
    pub fn new(table: &TableDesc) -> SqlResult<Self> {
        let indexes = table
            .indexes
            .iter()
            .map(|ix| Resolved::new(table, ix))
            .collect::<SqlResult<_>>()?;
        Ok(Self { indexes })
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
            if let Some(e) = entry(table, ix, row, pk_key)? {
                self.write_entry(txn, table, ix, row, e).await?;
            }
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
            if let Some(e) = entry(table, ix, row, pk_key)? {
                txn.delete(e.key)?;
            }
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
                match (before, after) {
                    (before, after) if before == after => {}
                    (Some(before), Some(after)) if before.key == after.key => {
                        // Same claimed values, new primary key: the entry moves to the new row.
                        txn.put(after.key, after.value)?;
                    }
                    (before, after) => {
                        if let Some(b) = before {
                            txn.delete(b.key)?;
                        }
                        if let Some(a) = after {
                            writes.push((ix, new, a));
                        }
                    }
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
    let decoder = crate::rowcodec::RowDecoder::full(table);
    while let Some(start) = from.take() {
        let (rows, resume) = txn
            .scan(&start, end.as_deref(), BACKFILL_BATCH_ROWS)
            .await?;
        from = resume;
        for (k, v) in rows {
            let row = decoder.decode(&k, &v)?;
            let Some(e) = entry(table, ix, &row, &k)? else {
                continue;
            };
            if e.claim && txn.get(&e.key).await?.is_some() {
                let (cols, vals) = index_key_text(table, ix, &row);
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
            exprs: Vec::new(),
            predicate: None,
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
        let r = Resolved::new(&t, &ix).unwrap();
        (t, r)
    }

    #[test]
    fn unique_entries_claim_values_unless_null() {
        let (t, ix) = table(true, false);
        let r1 = [Datum::I32(1), Datum::I32(7)];
        let r2 = [Datum::I32(2), Datum::I32(7)];
        let e1 = entry(&t, &ix, &r1, &encode_key(&t, &r1).unwrap())
            .unwrap()
            .unwrap();
        let e2 = entry(&t, &ix, &r2, &encode_key(&t, &r2).unwrap())
            .unwrap()
            .unwrap();
        assert!(e1.claim && e2.claim);
        assert_eq!(e1.key, e2.key, "same value, same claim");
        assert_ne!(e1.value, e2.value, "values point at different rows");
        let n1 = [Datum::I32(1), Datum::Null];
        let n2 = [Datum::I32(2), Datum::Null];
        let m1 = entry(&t, &ix, &n1, &encode_key(&t, &n1).unwrap())
            .unwrap()
            .unwrap();
        let m2 = entry(&t, &ix, &n2, &encode_key(&t, &n2).unwrap())
            .unwrap()
            .unwrap();
        assert!(!m1.claim);
        assert_ne!(m1.key, m2.key, "NULLs are distinct");
        let (t, ix) = table(true, true);
        let m1 = entry(&t, &ix, &n1, &encode_key(&t, &n1).unwrap())
            .unwrap()
            .unwrap();
        let m2 = entry(&t, &ix, &n2, &encode_key(&t, &n2).unwrap())
            .unwrap()
            .unwrap();
        assert!(m1.claim);
        assert_eq!(m1.key, m2.key, "NULLS NOT DISTINCT collide");
    }

    #[test]
    fn partial_and_expression_indexes() {
        let (mut t, _) = table(true, false);
        t.columns[1].ty = SqlType::Text;
        let ix = IndexDesc {
            exprs: vec!["lower(b)".into()],
            predicate: Some("a > 0".into()),
            columns: vec![1, 2],
            ..t.indexes[0].clone()
        };
        let ix = Resolved::new(&t, &ix).unwrap();
        let row = |a: i32, b: &str| [Datum::I32(a), Datum::Text(b.into())];
        let (r1, r2) = (row(1, "Ann"), row(2, "ANN"));
        let e1 = entry(&t, &ix, &r1, &encode_key(&t, &r1).unwrap())
            .unwrap()
            .unwrap();
        let e2 = entry(&t, &ix, &r2, &encode_key(&t, &r2).unwrap())
            .unwrap()
            .unwrap();
        assert!(e1.claim);
        assert_eq!(e1.key, e2.key, "keys are the expression's values");
        let out = row(-1, "Ann");
        assert_eq!(
            entry(&t, &ix, &out, &encode_key(&t, &out).unwrap()).unwrap(),
            None
        );
        let err = unique_violation(&t, &ix, &r2);
        assert_eq!(
            err.detail.as_deref(),
            Some("Key (lower(b))=(ann) already exists.")
        );
        let volatile = IndexDesc {
            exprs: vec!["random()".into()],
            ..t.indexes[0].clone()
        };
        let e = Resolved::new(&t, &volatile).expect_err("volatile key");
        assert_eq!(e.code, code::INVALID_OBJECT_DEFINITION);
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
            .map(|r| {
                entry(&t, &ix, r, &encode_key(&t, r).unwrap())
                    .unwrap()
                    .unwrap()
                    .key
            })
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
