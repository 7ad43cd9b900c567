//! FOREIGN KEY constraints: declaration (CREATE TABLE, ALTER TABLE ADD CONSTRAINT) and
//! enforcement.
//!
//! A foreign key lives in its child table's descriptor ([`ForeignKeyDesc`]): the child's
//! column ids, the parent table's id, the parent's column ids — its primary key or the columns
//! of one of its unique indexes, so a parent key is found with one point read — and the ON
//! DELETE / ON UPDATE actions.
//!
//! Enforcement has PostgreSQL's end-of-statement timing. The write paths record every row
//! they insert, update or delete in a table that takes part in a foreign key ([`FkLog`], part
//! of the statement context); when the statement's own writes are done, [`enforce`] runs in
//! the same transaction:
//!
//! 1. **Parent side**, in rounds: every referenced key that went away (a deleted row, or an
//!    update of referenced columns) is looked for in each referencing table (one scan of the
//!    child per foreign key per round). NO ACTION and RESTRICT fail with 23503 (NO ACTION
//!    only if no parent row holds the key again by the end of the statement); CASCADE deletes
//!    or re-keys the child rows; SET NULL / SET DEFAULT rewrite their key columns. Rows an
//!    action changes are logged in turn, so actions chain — at most
//!    [`FK_CASCADE_ROUNDS_MAX`] rounds (54001 beyond).
//! 2. **Child side**: every inserted or updated child row that is still live with the same
//!    key values must find its parent (a point read of the parent's primary key or unique
//!    index entry) unless a key column is NULL (MATCH SIMPLE; MATCH FULL rejects a partly
//!    NULL key) — 23503 otherwise.
//!
//! Both sides read through the transaction and ask it to validate every read at commit (also
//! under snapshot isolation), so a child insert racing a concurrent parent delete aborts one
//! of the two with 40001 instead of leaving an orphan.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast;
use kestrel_kv::Txn;

use crate::catalog::{CatalogSnapshot, FkAction, ForeignKeyDesc, TableDesc};
use crate::datum::Datum;
use crate::error::{code, SqlError, SqlResult};
use crate::index::{entry, Resolved, TableWriter};
use crate::rowcodec::{append_key_datum, encode_key, encode_value, primary_prefix};
use crate::types::SqlType;

/// Rounds of referential actions one statement may trigger (each round follows the rows the
/// previous one changed one level further down, so this bounds the depth of a cascade —
/// and stops cyclic ON UPDATE CASCADE chains).
pub const FK_CASCADE_ROUNDS_MAX: usize = 1024;

/// A row change in a table that takes part in a foreign key.
#[derive(Debug, Clone)]
enum Change {
    Insert(u32, Vec<Datum>),
    /// Old row (at least its key and indexed columns), new full row.
    Update(u32, Vec<Datum>, Vec<Datum>),
    Delete(u32, Vec<Datum>),
}

/// The changes of one statement that [`enforce`] has to look at.
#[derive(Debug, Default)]
pub struct FkLog {
    /// Tables that are a child or a parent of some foreign key (empty: nothing to log).
    involved: HashSet<u32>,
    changes: Mutex<Vec<Change>>,
}

impl FkLog {
    pub fn new(snapshot: &CatalogSnapshot) -> Self {
        let mut involved = HashSet::new();
        for t in snapshot.tables.values() {
            for fk in &t.foreign_keys {
                involved.insert(t.id);
                involved.insert(fk.parent);
            }
        }
        Self {
            involved,
            changes: Mutex::new(Vec::new()),
        }
    }

    pub fn involves(&self, table: u32) -> bool {
        self.involved.contains(&table)
    }

    fn push(&self, c: Change) {
        if let Ok(mut v) = self.changes.lock() {
            v.push(c);
        }
    }

    pub fn inserted<'a>(&self, table: &TableDesc, rows: impl IntoIterator<Item = &'a Vec<Datum>>) {
        if self.involves(table.id) {
            for r in rows {
                self.push(Change::Insert(table.id, r.clone()));
            }
        }
    }

    pub fn updated(&self, table: &TableDesc, old: &[Datum], new: &[Datum]) {
        if self.involves(table.id) {
            self.push(Change::Update(table.id, old.to_vec(), new.to_vec()));
        }
    }

    pub fn deleted<'a>(&self, table: &TableDesc, rows: impl IntoIterator<Item = &'a Vec<Datum>>) {
        if self.involves(table.id) {
            for r in rows {
                self.push(Change::Delete(table.id, r.clone()));
            }
        }
    }

    fn take(&self) -> Vec<Change> {
        self.changes
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Declaration
// ---------------------------------------------------------------------------------------------

/// A FOREIGN KEY as written: the child column names (one for a column constraint) and the
/// clause.
#[derive(Debug, Clone)]
pub struct FkSpec {
    pub columns: Vec<String>,
    pub clause: ast::ForeignKeyConstraint,
}

fn position_of(t: &TableDesc, name: &str) -> SqlResult<usize> {
    t.columns
        .iter()
        .position(|c| c.name == name && !c.hidden)
        .ok_or_else(|| {
            SqlError::new(
                code::UNDEFINED_COLUMN,
                format!("column \"{name}\" referenced in foreign key constraint does not exist"),
            )
        })
}

fn action(a: &Option<ast::ReferentialAction>) -> FkAction {
    match a {
        None | Some(ast::ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

/// Integer widths compare with each other, the text types with each other; anything else
/// only with its own type.
fn comparable(a: &SqlType, b: &SqlType) -> bool {
    use SqlType::*;
    let int = |t: &SqlType| matches!(t, Int2 | Int4 | Int8);
    let text = |t: &SqlType| matches!(t, Text | Varchar(_) | Char(_));
    (int(a) && int(b)) || (text(a) && text(b)) || a == b
}

/// The name PostgreSQL picks: `child_a_b_fkey`, with a number appended if taken.
fn default_name(child: &TableDesc, columns: &[usize]) -> String {
    let cols: Vec<&str> = columns
        .iter()
        .map(|&i| child.columns[i].name.as_str())
        .collect();
    let base = format!("{}_{}_fkey", child.name, cols.join("_"));
    let taken = |n: &str| {
        child.foreign_keys.iter().any(|f| f.name == n)
            || child.checks.iter().any(|c| c.name == n)
            || child.indexes.iter().any(|i| i.name == n)
    };
    let mut name = base.clone();
    let mut k = 1;
    while taken(&name) {
        name = format!("{base}{k}");
        k += 1;
    }
    name
}

/// The parent positions a foreign key references must be exactly the primary key or the
/// columns of a unique index (as sets).
fn backed_by_unique(parent: &TableDesc, positions: &[usize]) -> bool {
    let want: HashSet<usize> = positions.iter().copied().collect();
    if want.len() != positions.len() {
        return false;
    }
    let pk: HashSet<usize> = parent.primary_key.iter().copied().collect();
    if pk == want && !parent.has_hidden_key() {
        return true;
    }
    unique_index_over(parent, &want).is_some()
}

/// A unique index of `t` over exactly the column positions `want`.
fn unique_index_over<'a>(
    t: &'a TableDesc,
    want: &HashSet<usize>,
) -> Option<&'a crate::catalog::IndexDesc> {
    t.indexes.iter().find(|ix| {
        ix.unique
            && ix.is_plain()
            && t.index_positions(ix).into_iter().collect::<HashSet<_>>() == *want
    })
}

/// Removes every other table's foreign keys to `parent` (it is being dropped).
pub async fn forget_parent(
    txn: &mut Txn,
    snapshot: &CatalogSnapshot,
    parent: u32,
) -> SqlResult<()> {
    edit_referencing(txn, snapshot, parent, parent, &move |fks| {
        fks.retain(|fk| fk.parent != parent)
    })
    .await
}

/// Resolves a FOREIGN KEY of `child` (which may be the table being created, and may be its
/// own parent) into its descriptor.
pub fn resolve(
    snapshot: &CatalogSnapshot,
    db: &str,
    child: &TableDesc,
    spec: &FkSpec,
) -> SqlResult<ForeignKeyDesc> {
    let c = &spec.clause;
    if matches!(
        c.match_kind,
        Some(ast::ConstraintReferenceMatchKind::Partial)
    ) {
        return Err(SqlError::unsupported("MATCH PARTIAL"));
    }
    if c.characteristics
        .as_ref()
        .is_some_and(|ch| ch.deferrable == Some(true) || ch.initially.is_some())
    {
        return Err(SqlError::unsupported("deferrable foreign keys"));
    }
    let (schema, name) = crate::ddl::table_name(&c.foreign_table, db)?;
    let parent: &TableDesc = if schema == child.schema && name == child.name {
        child
    } else {
        snapshot
            .table(&schema, &name)
            .map(|t| t.as_ref())
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("relation \"{}\" does not exist", c.foreign_table),
                )
            })?
    };
    let child_pos = spec
        .columns
        .iter()
        .map(|n| position_of(child, n))
        .collect::<SqlResult<Vec<_>>>()?;
    let parent_pos = if c.referred_columns.is_empty() {
        if parent.has_hidden_key() {
            return Err(SqlError::new(
                code::INVALID_FOREIGN_KEY,
                format!(
                    "there is no primary key for referenced table \"{}\"",
                    parent.name
                ),
            ));
        }
        parent.primary_key.clone()
    } else {
        c.referred_columns
            .iter()
            .map(|n| position_of(parent, &crate::ddl::ident(n)))
            .collect::<SqlResult<Vec<_>>>()?
    };
    if child_pos.len() != parent_pos.len() {
        return Err(SqlError::new(
            code::INVALID_FOREIGN_KEY,
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    if !backed_by_unique(parent, &parent_pos) {
        return Err(SqlError::new(
            code::INVALID_FOREIGN_KEY,
            format!(
                "there is no unique constraint matching given keys for referenced table \"{}\"",
                parent.name
            ),
        ));
    }
    let fk_name = match &c.name {
        Some(n) => crate::ddl::ident(n),
        None => default_name(child, &child_pos),
    };
    for (&ci, &pi) in child_pos.iter().zip(&parent_pos) {
        let (ct, pt) = (&child.columns[ci].ty, &parent.columns[pi].ty);
        if !comparable(ct, pt) {
            return Err(SqlError::new(
                code::DATATYPE_MISMATCH,
                format!("foreign key constraint \"{fk_name}\" cannot be implemented"),
            )
            .with_detail(format!(
                "Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.",
                child.columns[ci].name,
                parent.columns[pi].name,
                crate::session::cast_name(ct),
                crate::session::cast_name(pt),
            )));
        }
    }
    Ok(ForeignKeyDesc {
        name: fk_name,
        columns: child_pos.iter().map(|&i| child.columns[i].id).collect(),
        parent: parent.id,
        parent_columns: parent_pos.iter().map(|&i| parent.columns[i].id).collect(),
        on_delete: action(&c.on_delete),
        on_update: action(&c.on_update),
        match_full: matches!(c.match_kind, Some(ast::ConstraintReferenceMatchKind::Full)),
    })
}

/// The positions (into `t.columns`) of column ids.
fn positions(t: &TableDesc, ids: &[u16]) -> SqlResult<Vec<usize>> {
    ids.iter()
        .map(|id| {
            t.columns.iter().position(|c| c.id == *id).ok_or_else(|| {
                SqlError::internal(format!("foreign key of {} names a dropped column", t.name))
            })
        })
        .collect()
}

/// `ALTER TABLE … ADD FOREIGN KEY`: every existing row of `child` must find its parent.
pub async fn validate_existing(
    txn: &mut Txn,
    snapshot: &CatalogSnapshot,
    child: &TableDesc,
    fk: &ForeignKeyDesc,
) -> SqlResult<()> {
    txn.track_all_reads();
    let parent = parent_of(snapshot, child, fk)?;
    let cpos = positions(child, &fk.columns)?;
    let mut cursor = crate::alter::RowCursor::new(child);
    while let Some(rows) = cursor.next(txn, child).await? {
        for row in rows {
            check_parent(txn, child, &parent, fk, &cpos, &row).await?;
        }
    }
    Ok(())
}

/// Every row of `rows` (just inserted into `child`, e.g. by COPY) must find its parents.
pub async fn check_rows(
    txn: &mut Txn,
    snapshot: &CatalogSnapshot,
    child: &TableDesc,
    rows: &[Vec<Datum>],
) -> SqlResult<()> {
    txn.track_all_reads();
    for fk in &child.foreign_keys {
        let parent = parent_of(snapshot, child, fk)?;
        let cpos = positions(child, &fk.columns)?;
        for row in rows {
            check_parent(txn, child, &parent, fk, &cpos, row).await?;
        }
    }
    Ok(())
}

/// Before DROP TABLE / TRUNCATE of `tables`: a foreign key from a table outside the set
/// makes DROP fail with 2BP01 and TRUNCATE with 0A000, as in PostgreSQL.
pub fn referenced_from_outside(
    snapshot: &CatalogSnapshot,
    tables: &[&TableDesc],
    truncate: bool,
) -> SqlResult<()> {
    let ids: HashSet<u32> = tables.iter().map(|t| t.id).collect();
    for t in tables {
        for (child, i) in snapshot.referencing(t.id) {
            if ids.contains(&child.id) {
                continue;
            }
            let fk = &child.foreign_keys[i];
            return Err(if truncate {
                SqlError::new(
                    code::FEATURE_NOT_SUPPORTED,
                    "cannot truncate a table referenced in a foreign key constraint",
                )
                .with_detail(format!(
                    "Table \"{}\" references \"{}\".",
                    child.name, t.name
                ))
            } else {
                SqlError::new(
                    code::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!(
                        "cannot drop table {} because other objects depend on it",
                        t.name
                    ),
                )
                .with_detail(format!(
                    "constraint {} on table {} depends on table {}",
                    fk.name, child.name, t.name
                ))
            });
        }
    }
    Ok(())
}

/// Edits the foreign keys of every other table that references `parent` (their descriptors
/// re-read through `txn`, so earlier changes of the same statement are kept) and writes them
/// back. `edit` may retarget or drop keys.
pub async fn edit_referencing(
    txn: &mut Txn,
    snapshot: &CatalogSnapshot,
    parent: u32,
    except: u32,
    edit: &(dyn Fn(&mut Vec<ForeignKeyDesc>) + Sync),
) -> SqlResult<()> {
    let mut done = HashSet::new();
    for (child, _) in snapshot.referencing(parent) {
        if child.id == except || !done.insert(child.id) {
            continue;
        }
        let current =
            crate::catalog::get_table(txn, child.db_id, &child.schema, &child.name).await?;
        let Some(mut current) = current else {
            continue; // dropped by this statement
        };
        edit(&mut current.foreign_keys);
        crate::catalog::put_table(txn, &current)?;
    }
    Ok(())
}

/// After an index of `t` (snapshot id `snap_id`) was dropped: every foreign key that
/// references `t` must still find a primary key or unique index over its columns, else the
/// drop fails with 2BP01 as in PostgreSQL.
pub fn keys_still_backed(
    snapshot: &CatalogSnapshot,
    t: &TableDesc,
    snap_id: u32,
    index: &str,
) -> SqlResult<()> {
    for (child, i) in snapshot.referencing(snap_id) {
        let fk = &child.foreign_keys[i];
        let Ok(ppos) = positions(t, &fk.parent_columns) else {
            continue; // a dropped column: handled (and refused) by DROP COLUMN
        };
        if !backed_by_unique(t, &ppos) {
            return Err(SqlError::new(
                code::DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop index {index} because constraint {} on table {} requires it",
                    fk.name, child.name
                ),
            ));
        }
    }
    Ok(())
}

/// The tables (other than `t` itself) whose foreign keys reference `t`.
pub fn children_of(snapshot: &CatalogSnapshot, t: u32) -> Vec<Arc<TableDesc>> {
    let mut out: Vec<Arc<TableDesc>> = Vec::new();
    for (child, _) in snapshot.referencing(t) {
        if child.id != t && !out.iter().any(|c| c.id == child.id) {
            out.push(child);
        }
    }
    out
}

/// DROP COLUMN of column id `col` of `t`: keys of `t` that use it go with it; keys of other
/// tables that reference it fail the drop with 2BP01 unless `cascade` (then they go too).
pub async fn drop_column(
    txn: &mut Txn,
    snapshot: &CatalogSnapshot,
    t: &mut TableDesc,
    snap_id: u32,
    col: u16,
    cascade: bool,
) -> SqlResult<()> {
    t.foreign_keys.retain(|fk| {
        !fk.columns.contains(&col) && !(fk.parent == t.id && fk.parent_columns.contains(&col))
    });
    let uses = |fk: &ForeignKeyDesc| fk.parent == snap_id && fk.parent_columns.contains(&col);
    if !cascade {
        let blocker = snapshot
            .referencing(snap_id)
            .into_iter()
            .find(|(child, i)| child.id != snap_id && uses(&child.foreign_keys[*i]));
        if let Some((child, i)) = blocker {
            let column = t
                .columns
                .iter()
                .find(|c| c.id == col)
                .map_or("", |c| c.name.as_str());
            return Err(SqlError::new(
                code::DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop column {column} of table {} because other objects depend on it",
                    t.name
                ),
            )
            .with_detail(format!(
                "constraint {} on table {} depends on column {column} of table {}",
                child.foreign_keys[i].name, child.name, t.name
            )));
        }
    }
    let parent = t.id;
    edit_referencing(txn, snapshot, snap_id, snap_id, &move |fks| {
        fks.retain(|fk| !(fk.parent == parent && fk.parent_columns.contains(&col)))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Enforcement
// ---------------------------------------------------------------------------------------------

/// Key values in a form that compares across integer widths.
fn norm(d: &Datum) -> Datum {
    match d {
        Datum::I16(v) => Datum::I64(*v as i64),
        Datum::I32(v) => Datum::I64(*v as i64),
        other => other.clone(),
    }
}

/// `d` as a value of column type `ty` (`None`: no value of that type equals it).
fn convert(d: &Datum, ty: &SqlType) -> Option<Datum> {
    let wide = match d {
        Datum::I16(v) => *v as i64,
        Datum::I32(v) => *v as i64,
        Datum::I64(v) => *v,
        other => return Some(other.clone()),
    };
    match ty {
        SqlType::Int2 => i16::try_from(wide).ok().map(Datum::I16),
        SqlType::Int4 => i32::try_from(wide).ok().map(Datum::I32),
        _ => Some(Datum::I64(wide)),
    }
}

fn parent_of(
    snapshot: &CatalogSnapshot,
    child: &TableDesc,
    fk: &ForeignKeyDesc,
) -> SqlResult<Arc<TableDesc>> {
    if fk.parent == child.id {
        return Ok(Arc::new(child.clone()));
    }
    snapshot.table_by_id(fk.parent).cloned().ok_or_else(|| {
        SqlError::internal(format!(
            "foreign key {} references a table that does not exist",
            fk.name
        ))
    })
}

/// Whether `parent` holds a live row whose `ppos` columns equal `key`.
async fn parent_has(
    txn: &Txn,
    parent: &TableDesc,
    ppos: &[usize],
    key: &[Datum],
) -> SqlResult<bool> {
    let mut probe = vec![Datum::Null; parent.columns.len()];
    for (&p, d) in ppos.iter().zip(key) {
        match convert(d, &parent.columns[p].ty) {
            Some(v) => probe[p] = v,
            None => return Ok(false),
        }
    }
    let want: HashSet<usize> = ppos.iter().copied().collect();
    let pk: HashSet<usize> = parent.primary_key.iter().copied().collect();
    if want == pk {
        return Ok(txn.get(&encode_key(parent, &probe)?).await?.is_some());
    }
    let Some(ix) = unique_index_over(parent, &want) else {
        return Err(SqlError::internal(format!(
            "no unique index of {} backs a foreign key",
            parent.name
        )));
    };
    let resolved = Resolved::new(parent, ix)?;
    let Some(e) = entry(parent, &resolved, &probe, &primary_prefix(parent.id))? else {
        return Err(SqlError::internal(
            "a foreign key's unique index is partial",
        ));
    };
    Ok(txn.get(&e.key).await?.is_some())
}

/// 23503 unless `row` (of `child`) finds its parent under `fk`.
async fn check_parent(
    txn: &Txn,
    child: &TableDesc,
    parent: &TableDesc,
    fk: &ForeignKeyDesc,
    cpos: &[usize],
    row: &[Datum],
) -> SqlResult<()> {
    let key: Vec<Datum> = cpos.iter().map(|&i| row[i].clone()).collect();
    let nulls = key.iter().filter(|d| d.is_null()).count();
    let violation = || {
        let (cols, vals) = crate::index::key_text(child, cpos, row);
        SqlError::new(
            code::FOREIGN_KEY_VIOLATION,
            format!(
                "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                child.name, fk.name
            ),
        )
        .with_detail(match nulls {
            0 => format!(
                "Key ({cols})=({vals}) is not present in table \"{}\".",
                parent.name
            ),
            _ => "MATCH FULL does not allow mixing of null and nonnull key values.".to_string(),
        })
    };
    if nulls > 0 {
        return match fk.match_full && nulls < key.len() {
            true => Err(violation()),
            false => Ok(()),
        };
    }
    let ppos = positions(parent, &fk.parent_columns)?;
    match parent_has(txn, parent, &ppos, &key).await? {
        true => Ok(()),
        false => Err(violation()),
    }
}

/// A referenced key that went away: its values, and the new values if it was updated.
#[derive(Debug, Clone, PartialEq)]
struct GoneKey {
    old: Vec<Datum>,
    new: Option<Vec<Datum>>,
}

/// Gone keys by their encoded (width-normalized) values.
type Gone = HashMap<Vec<u8>, GoneKey>;

/// Comparable bytes of key values (integers of any width encode alike).
fn key_bytes(vals: &[Datum]) -> SqlResult<Vec<u8>> {
    let mut out = Vec::new();
    for d in vals {
        append_key_datum(&mut out, &norm(d))?;
    }
    Ok(out)
}

/// The referenced keys of `parent` (columns `ppos`) that `changes` removed.
fn gone_keys(changes: &[Change], parent: u32, ppos: &[usize]) -> SqlResult<Gone> {
    let key = |row: &[Datum]| -> Option<Vec<Datum>> {
        let k: Vec<Datum> = ppos.iter().map(|&i| norm(&row[i])).collect();
        (!k.iter().any(Datum::is_null)).then_some(k)
    };
    let mut out = Gone::new();
    for c in changes {
        let (old, new) = match c {
            Change::Delete(t, old) if *t == parent => match key(old) {
                Some(k) => (k, None),
                None => continue,
            },
            Change::Update(t, old, new) if *t == parent => {
                let Some(k_old) = key(old) else { continue };
                let k_new: Vec<Datum> = ppos.iter().map(|&i| norm(&new[i])).collect();
                if k_old == k_new {
                    continue;
                }
                (k_old, Some(k_new))
            }
            _ => continue,
        };
        out.insert(key_bytes(&old)?, GoneKey { old, new });
    }
    Ok(out)
}

/// Runs the foreign-key work of a statement whose writes are done (see the module docs).
pub async fn enforce(
    state: &SessionState,
    txn: &tokio::sync::RwLock<Txn>,
    snapshot: &CatalogSnapshot,
    log: &FkLog,
) -> SqlResult<()> {
    if log.involved.is_empty() {
        return Ok(());
    }
    let mut children: Vec<(u32, Vec<Datum>)> = Vec::new();
    let mut rounds = 0;
    loop {
        let changes = log.take();
        if changes.is_empty() {
            break;
        }
        rounds += 1;
        if rounds > FK_CASCADE_ROUNDS_MAX {
            return Err(SqlError::new(
                code::STATEMENT_TOO_COMPLEX,
                format!("foreign key actions nest deeper than {FK_CASCADE_ROUNDS_MAX} levels"),
            ));
        }
        let mut txn = txn.write().await;
        txn.track_all_reads();
        let parents: HashSet<u32> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Update(t, ..) | Change::Delete(t, _) => Some(*t),
                Change::Insert(..) => None,
            })
            .collect();
        for p in parents {
            for (child, i) in snapshot.referencing(p) {
                let parent = parent_of(snapshot, &child, &child.foreign_keys[i])?;
                referenced_keys(state, &mut txn, log, &changes, &child, i, &parent).await?;
            }
        }
        for c in changes {
            match c {
                Change::Insert(t, new) | Change::Update(t, _, new) => children.push((t, new)),
                Change::Delete(..) => {}
            }
        }
    }
    let txn = txn.read().await;
    for (t, row) in children {
        let Some(child) = snapshot.table_by_id(t) else {
            continue;
        };
        if child.foreign_keys.is_empty() || !still_live(&txn, child, &row).await? {
            continue;
        }
        for fk in &child.foreign_keys {
            let parent = parent_of(snapshot, child, fk)?;
            let cpos = positions(child, &fk.columns)?;
            check_parent(&txn, child, &parent, fk, &cpos, &row).await?;
        }
    }
    Ok(())
}

/// Whether `row` is still the live version of its key (a later change of the same statement
/// logged its own, newer version).
async fn still_live(txn: &Txn, t: &TableDesc, row: &[Datum]) -> SqlResult<bool> {
    let key = encode_key(t, row)?;
    // Compared as stored bytes: `Datum` equality says NaN != NaN.
    Ok(match txn.get(&key).await? {
        Some(v) => v == encode_value(t, row),
        None => false,
    })
}

/// The parent side of foreign key `i` of `child` for the keys `changes` removed from `parent`.
async fn referenced_keys(
    state: &SessionState,
    txn: &mut Txn,
    log: &FkLog,
    changes: &[Change],
    child: &TableDesc,
    i: usize,
    parent: &TableDesc,
) -> SqlResult<()> {
    let fk = &child.foreign_keys[i];
    let ppos = positions(parent, &fk.parent_columns)?;
    let cpos = positions(child, &fk.columns)?;
    let mut gone = gone_keys(changes, parent.id, &ppos)?;
    // NO ACTION is checked at the end of the statement: a key some parent row holds again
    // (re-inserted, or taken over by another updated row) is not gone.
    let mut back = Vec::new();
    for (k, g) in &gone {
        let act = if g.new.is_some() {
            fk.on_update
        } else {
            fk.on_delete
        };
        if act == FkAction::NoAction && parent_has(txn, parent, &ppos, &g.old).await? {
            back.push(k.clone());
        }
    }
    for k in back {
        gone.remove(&k);
    }
    if gone.is_empty() {
        return Ok(());
    }
    let hits = referencing_rows(txn, child, &cpos, &gone).await?;
    let mut writes = Vec::new();
    for row in hits {
        let vals: Vec<Datum> = cpos.iter().map(|&c| row[c].clone()).collect();
        let Some(GoneKey { new: new_key, .. }) = gone.get(&key_bytes(&vals)?) else {
            continue;
        };
        let act = if new_key.is_some() {
            fk.on_update
        } else {
            fk.on_delete
        };
        match act {
            FkAction::NoAction | FkAction::Restrict => {
                let (_, vals) = crate::index::key_text(child, &cpos, &row);
                let pcols: Vec<&str> = ppos
                    .iter()
                    .map(|&p| parent.columns[p].name.as_str())
                    .collect();
                return Err(SqlError::new(
                    code::FOREIGN_KEY_VIOLATION,
                    format!(
                        "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                        parent.name, fk.name, child.name
                    ),
                )
                .with_detail(format!(
                    "Key ({})=({vals}) is still referenced from table \"{}\".",
                    pcols.join(", "),
                    child.name
                )));
            }
            FkAction::Cascade => match new_key {
                None => writes.push((row, None)),
                Some(nk) => {
                    let mut new = row.clone();
                    for (&c, d) in cpos.iter().zip(nk) {
                        new[c] = convert(d, &child.columns[c].ty).ok_or_else(|| {
                            SqlError::new(
                                code::NUMERIC_VALUE_OUT_OF_RANGE,
                                format!(
                                    "value out of range for column \"{}\" of \"{}\"",
                                    child.columns[c].name, child.name
                                ),
                            )
                        })?;
                    }
                    writes.push((row, Some(new)));
                }
            },
            FkAction::SetNull | FkAction::SetDefault => {
                let mut new = row.clone();
                for &c in &cpos {
                    new[c] = match act {
                        FkAction::SetNull => Datum::Null,
                        _ => set_default_value(child, c)?,
                    };
                }
                writes.push((row, Some(new)));
            }
        }
    }
    apply(state, txn, log, child, writes).await
}

/// The value SET DEFAULT writes (constant defaults only).
fn set_default_value(child: &TableDesc, c: usize) -> SqlResult<Datum> {
    let col = &child.columns[c];
    if col.default_expr.is_some() {
        return Err(SqlError::unsupported(format!(
            "ON … SET DEFAULT with a per-row default (column \"{}\")",
            col.name
        )));
    }
    Ok(col
        .default
        .as_ref()
        .map(|(_, d)| d.clone())
        .unwrap_or(Datum::Null))
}

/// The rows of `child` whose `cpos` columns hold one of the `gone` keys (one scan).
async fn referencing_rows(
    txn: &Txn,
    child: &TableDesc,
    cpos: &[usize],
    gone: &Gone,
) -> SqlResult<Vec<Vec<Datum>>> {
    let mut out = Vec::new();
    let mut cursor = crate::alter::RowCursor::new(child);
    while let Some(rows) = cursor.next(txn, child).await? {
        for row in rows {
            let vals: Vec<Datum> = cpos.iter().map(|&c| row[c].clone()).collect();
            if vals.iter().any(Datum::is_null) {
                continue;
            }
            if gone.contains_key(&key_bytes(&vals)?) {
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// Writes the rows a referential action deletes (`None`) or rewrites, with their index
/// entries, and logs them for the next round.
async fn apply(
    state: &SessionState,
    txn: &mut Txn,
    log: &FkLog,
    child: &TableDesc,
    writes: Vec<(Vec<Datum>, Option<Vec<Datum>>)>,
) -> SqlResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut locked = Vec::new();
    for (old, _) in &writes {
        locked.push(encode_key(child, old)?);
    }
    if txn.lock_for_write(&locked).await? {
        return Err(SqlError::restart_statement());
    }
    let writer = TableWriter::new(child)?;
    let checks = crate::check::Checks::compile(state, child)?;
    let mut moved = Vec::new();
    let mut checked = Vec::new();
    for (old, new) in writes {
        let old_key = encode_key(child, &old)?;
        match new {
            None => {
                txn.delete(old_key.clone())?;
                writer.delete_entries(txn, child, &old, &old_key)?;
                log.deleted(child, [&old]);
            }
            Some(mut new) => {
                checks.generate(child, std::slice::from_mut(&mut new))?;
                crate::provider::validate_row(child, &mut new)?;
                let new_key = encode_key(child, &new)?;
                if new_key != old_key {
                    txn.delete(old_key.clone())?;
                    if txn.get(&new_key).await?.is_some() {
                        return Err(crate::provider::duplicate_key_error(child, &new));
                    }
                    txn.insert(new_key.clone(), encode_value(child, &new))?;
                } else {
                    txn.put(new_key.clone(), encode_value(child, &new))?;
                }
                log.updated(child, &old, &new);
                checked.push(new.clone());
                moved.push((old, old_key, new, new_key));
            }
        }
    }
    checks.verify(child, &checked)?;
    writer.update_entries(txn, child, &moved).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_compare_across_widths() {
        assert_eq!(norm(&Datum::I32(7)), norm(&Datum::I64(7)));
        assert_eq!(norm(&Datum::I16(-1)), Datum::I64(-1));
        assert_eq!(convert(&Datum::I64(7), &SqlType::Int4), Some(Datum::I32(7)));
        assert_eq!(convert(&Datum::I64(1 << 40), &SqlType::Int4), None);
        assert_eq!(
            convert(&Datum::Text("a".into()), &SqlType::Text),
            Some(Datum::Text("a".into()))
        );
    }

    #[test]
    fn gone_keys_are_deleted_or_changed_non_null_keys() {
        let changes = vec![
            Change::Delete(1, vec![Datum::I32(1), Datum::Text("x".into())]),
            Change::Delete(1, vec![Datum::Null, Datum::Text("y".into())]),
            Change::Update(
                1,
                vec![Datum::I32(2), Datum::Null],
                vec![Datum::I32(20), Datum::Text("z".into())],
            ),
            Change::Update(
                1,
                vec![Datum::I32(3), Datum::Null],
                vec![Datum::I32(3), Datum::Null],
            ),
            Change::Delete(2, vec![Datum::I32(4), Datum::Null]),
            Change::Insert(1, vec![Datum::I32(5), Datum::Null]),
        ];
        let g = gone_keys(&changes, 1, &[0]).expect("keys encode");
        assert_eq!(g.len(), 2);
        let k1 = key_bytes(&[Datum::I32(1)]).expect("encodes");
        assert_eq!(k1, key_bytes(&[Datum::I64(1)]).expect("encodes"));
        assert_eq!(g[&k1].new, None);
        let k2 = key_bytes(&[Datum::I16(2)]).expect("encodes");
        assert_eq!(g[&k2].new, Some(vec![Datum::I64(20)]));
    }

    #[test]
    fn key_families() {
        assert!(comparable(&SqlType::Int4, &SqlType::Int8));
        assert!(comparable(&SqlType::Varchar(Some(3)), &SqlType::Text));
        assert!(!comparable(&SqlType::Int4, &SqlType::Text));
        assert!(comparable(&SqlType::Uuid, &SqlType::Uuid));
    }
}
