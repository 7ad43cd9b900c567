//! ALTER TABLE and TRUNCATE: catalog changes (and, where the key changes, row rewrites) inside
//! the statement's transaction.
//!
//! A table's rows live under its id. Operations that change the key of every row (`TRUNCATE`,
//! `ADD PRIMARY KEY`) give the table a fresh id and span: TRUNCATE leaves the new span empty,
//! ADD PRIMARY KEY copies every row under its new key. Either way the old span is cleared only
//! after the transaction commits, so a rollback loses nothing. Column changes need no rewrite
//! (rows are tagged by column id), except ADD COLUMN with a non-NULL default, which writes the
//! default into every existing row as PostgreSQL does.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, ObjectName, RenameTableNameKind, TableConstraint,
};
use kestrel_kv::keys::table_span;
use kestrel_kv::Txn;
use kestrel_storage::keycode;

use crate::catalog::{self, TableDesc};
use crate::check::stored_expr;
use crate::datum::Datum;
use crate::ddl::{column_desc, ident, pk_indexes, table_name, AfterCommit, DdlCtx, UniqueSpec};
use crate::error::{code, SqlError, SqlResult};
use crate::rowcodec;
use crate::types::SqlType;

/// Rows read per scan batch while rewriting a table.
const REWRITE_BATCH_ROWS: usize = 4096;

fn lookup<'a>(ddl: &'a DdlCtx<'_>, name: &ObjectName) -> SqlResult<Option<&'a TableDesc>> {
    let (schema, table) = table_name(name, ddl.db)?;
    Ok(ddl.snapshot.table(&schema, &table).map(|t| t.as_ref()))
}

fn undefined_table(name: &ObjectName) -> SqlError {
    SqlError::new(
        code::UNDEFINED_TABLE,
        format!("relation \"{name}\" does not exist"),
    )
}

/// The id `desc` has in the statement's catalog snapshot (other tables' foreign keys are
/// found by it) — `current` unless an earlier operation of this statement renumbered it.
fn snapshot_id(ddl: &DdlCtx<'_>, desc: &TableDesc, current: u32) -> u32 {
    ddl.snapshot
        .table(&desc.schema, &desc.name)
        .map_or(current, |t| t.id)
}

/// Gives `desc` a fresh, empty span; the old one is cleared after commit.
async fn renumber(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<u32> {
    let old = desc.id;
    let id = catalog::allocate_id(txn).await?;
    let (start, end) = table_span(id);
    ddl.kv.split_out(&start, &end).await?;
    desc.id = id;
    // Foreign keys name their parent by id: the table's own and other tables' follow it.
    for fk in desc.foreign_keys.iter_mut().filter(|f| f.parent == old) {
        fk.parent = id;
    }
    let snap = snapshot_id(ddl, desc, old);
    crate::fk::edit_referencing(txn, ddl.snapshot, snap, snap, &move |fks| {
        for fk in fks.iter_mut().filter(|f| f.parent == old) {
            fk.parent = id;
        }
    })
    .await?;
    let (s, e) = table_span(old);
    after.push(AfterCommit::ClearSpan(s, e));
    // The sequences the table's columns own follow it to its new id.
    for seq in ddl.snapshot.sequences.values() {
        if let Some((_, col)) = seq.owner.filter(|(t, _)| *t == old) {
            let mut moved = seq.as_ref().clone();
            moved.owner = Some((id, col));
            crate::sequence::put_sequence(txn, &moved)?;
        }
    }
    // So do its comments and the domains' records of its columns (found under the id the
    // statement's snapshot knows, in case one ALTER renumbers twice).
    let snap = snapshot_id(ddl, desc, old);
    for ((table, column), text) in ddl.snapshot.comments.iter() {
        if *table == snap {
            catalog::set_comment(txn, desc.db_id, snap, *column, None)?;
            catalog::set_comment(txn, desc.db_id, old, *column, None)?;
            catalog::set_comment(txn, desc.db_id, id, *column, Some(text))?;
        }
    }
    for d in ddl.snapshot.domains.values() {
        if d.users.iter().any(|(t, _)| *t == snap) {
            let mut moved = d.as_ref().clone();
            for u in moved.users.iter_mut().filter(|(t, _)| *t == snap) {
                u.0 = id;
            }
            catalog::put_domain(txn, &moved)?;
        }
    }
    Ok(old)
}

pub async fn truncate(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    t: &ast::Truncate,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    let mut targets: Vec<&TableDesc> = Vec::new();
    for target in &t.table_names {
        let Some(desc) = lookup(ddl, &target.name)? else {
            if t.if_exists {
                continue;
            }
            return Err(undefined_table(&target.name));
        };
        targets.push(desc);
    }
    if matches!(t.cascade, Some(ast::CascadeOption::Cascade)) {
        // Every table that references a truncated one is truncated too, transitively.
        let mut i = 0;
        while i < targets.len() {
            for child in crate::fk::children_of(ddl.snapshot, targets[i].id) {
                if let Some(c) = ddl.snapshot.table(&child.schema, &child.name) {
                    if !targets.iter().any(|t| t.id == c.id) {
                        targets.push(c);
                    }
                }
            }
            i += 1;
        }
    }
    crate::fk::referenced_from_outside(ddl.snapshot, &targets, true)?;
    let mut done = HashSet::new();
    for desc in targets {
        if !done.insert(desc.id) {
            continue;
        }
        // Re-read: renumbering an earlier target may have repointed this one's keys.
        let mut desc = catalog::get_table(txn, desc.db_id, &desc.schema, &desc.name)
            .await?
            .unwrap_or_else(|| desc.clone());
        renumber(ddl, txn, &mut desc, after).await?;
        catalog::put_table(txn, &desc)?;
    }
    Ok("TRUNCATE TABLE".into())
}

/// A cursor over every row of a table as of a transaction (own writes included), read in
/// batches so a rewrite can write between reads.
pub(crate) struct RowCursor {
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
}

impl RowCursor {
    pub(crate) fn new(desc: &TableDesc) -> Self {
        let prefix = rowcodec::primary_prefix(desc.id);
        let end = keycode::prefix_end(&prefix);
        Self {
            start: Some(prefix),
            end,
        }
    }

    /// The next batch of decoded rows; `None` when the table is exhausted.
    pub(crate) async fn next(
        &mut self,
        txn: &Txn,
        desc: &TableDesc,
    ) -> SqlResult<Option<Vec<Vec<Datum>>>> {
        let Some(start) = self.start.take() else {
            return Ok(None);
        };
        let (rows, resume) = txn
            .scan(&start, self.end.as_deref(), REWRITE_BATCH_ROWS)
            .await?;
        self.start = resume;
        let decoder = rowcodec::RowDecoder::full(desc);
        rows.iter()
            .map(|(k, v)| decoder.decode(k, v))
            .collect::<SqlResult<Vec<_>>>()
            .map(Some)
    }
}

/// Writes every row of `old` under `new` (new id and key), mapping each row with `map`.
/// Fails with 23505 on a duplicate new key and 23502 on a NULL key column.
async fn rewrite(
    txn: &mut Txn,
    old: &TableDesc,
    new: &TableDesc,
    map: &(dyn Fn(Vec<Datum>) -> Vec<Datum> + Sync),
) -> SqlResult<()> {
    let mut seen = HashSet::new();
    let mut cursor = RowCursor::new(old);
    while let Some(batch) = cursor.next(txn, old).await? {
        for row in batch.into_iter().map(map) {
            for &i in &new.primary_key {
                if row[i].is_null() {
                    return Err(SqlError::new(
                        code::NOT_NULL_VIOLATION,
                        format!(
                            "column \"{}\" of relation \"{}\" contains null values",
                            new.columns[i].name, new.name
                        ),
                    ));
                }
            }
            let key = rowcodec::encode_key(new, &row)?;
            if !seen.insert(key.clone()) {
                return Err(SqlError::new(
                    code::UNIQUE_VIOLATION,
                    format!("could not create unique index \"{}\"", new.pkey_name()),
                ));
            }
            txn.put(key, rowcodec::encode_value(new, &row))?;
        }
    }
    Ok(())
}

async fn has_rows(txn: &Txn, desc: &TableDesc) -> SqlResult<bool> {
    let prefix = rowcodec::primary_prefix(desc.id);
    let end = keycode::prefix_end(&prefix);
    let (rows, _) = txn.scan(&prefix, end.as_deref(), 1).await?;
    Ok(!rows.is_empty())
}

pub async fn alter_table(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    at: &ast::AlterTable,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    let Some(desc) = lookup(ddl, &at.name)? else {
        if at.if_exists {
            return Ok("ALTER TABLE".into());
        }
        return Err(undefined_table(&at.name));
    };
    let mut desc = desc.clone();
    // Rewrites and constraint checks read every row: rows committed meanwhile must conflict.
    txn.track_all_reads();
    for op in &at.operations {
        alter_one(ddl, txn, &mut desc, op, after).await?;
    }
    Ok("ALTER TABLE".into())
}

async fn alter_one(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    op: &AlterTableOperation,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<()> {
    match op {
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::PrimaryKey(p),
            ..
        } => add_primary_key(ddl, txn, desc, p, after).await,
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Check(ck),
            ..
        } => add_check(ddl, txn, desc, ck).await,
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Unique(u),
            ..
        } => {
            let ix =
                crate::ddl::unique_index(ddl.snapshot, desc, &UniqueSpec::from_constraint(u)?)?;
            crate::ddl::add_index(txn, desc, ix, true).await?;
            catalog::put_table(txn, desc)
        }
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::ForeignKey(f),
            ..
        } => {
            let spec = crate::fk::FkSpec {
                columns: f.columns.iter().map(ident).collect(),
                clause: f.clone(),
            };
            add_foreign_key(ddl, txn, desc, &spec).await
        }
        AlterTableOperation::DropConstraint {
            if_exists, name, ..
        } => {
            let n = ident(name);
            let fks_before = desc.foreign_keys.len();
            desc.foreign_keys.retain(|f| f.name != n);
            if desc.foreign_keys.len() != fks_before {
                return catalog::put_table(txn, desc);
            }
            let before = desc.checks.len();
            desc.checks.retain(|c| c.name != n);
            let is_unique = desc.indexes.iter().any(|ix| ix.name == n && ix.constraint);
            if is_unique {
                crate::ddl::remove_index(desc, &n, after);
                let snap = snapshot_id(ddl, desc, desc.id);
                crate::fk::keys_still_backed(ddl.snapshot, desc, snap, &n)?;
            } else if desc.checks.len() == before {
                if n == desc.pkey_name() {
                    return Err(SqlError::unsupported("dropping a primary key"));
                }
                if *if_exists {
                    return Ok(());
                }
                return Err(SqlError::new(
                    code::UNDEFINED_OBJECT,
                    format!(
                        "constraint \"{n}\" of relation \"{}\" does not exist",
                        desc.name
                    ),
                ));
            }
            catalog::put_table(txn, desc)
        }
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            ..
        } => add_column(ddl, txn, desc, column_def, *if_not_exists).await,
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } => {
            let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
            for n in column_names {
                if let Some(i) = visible_column(desc, &ident(n)) {
                    let col = desc.columns[i].id;
                    let snap = snapshot_id(ddl, desc, desc.id);
                    crate::fk::drop_column(txn, ddl.snapshot, desc, snap, col, cascade).await?;
                    generated_depends(desc, i)?;
                }
                drop_column_indexes(desc, &ident(n), after);
                drop_owned_sequences(ddl, txn, desc, &ident(n))?;
                drop_column(desc, &ident(n), *if_exists)?;
            }
            prune_checks(ddl, desc);
            catalog::put_table(txn, desc)
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            let (old, new) = (ident(old_column_name), ident(new_column_name));
            if visible_column(desc, &new).is_some() {
                return Err(SqlError::new(
                    code::DUPLICATE_COLUMN,
                    format!(
                        "column \"{new}\" of relation \"{}\" already exists",
                        desc.name
                    ),
                ));
            }
            let i = visible_column(desc, &old).ok_or_else(|| no_column(desc, &old))?;
            desc.columns[i].name = new.clone();
            for c in desc.checks.iter_mut() {
                c.expr = rename_in_expr(&c.expr, &old, &new)?;
            }
            for c in desc.columns.iter_mut() {
                if let Some(g) = &c.generated {
                    c.generated = Some(rename_in_expr(g, &old, &new)?);
                }
            }
            for ix in desc.indexes.iter_mut() {
                for e in ix.exprs.iter_mut() {
                    *e = rename_in_expr(e, &old, &new)?;
                }
                if let Some(p) = &ix.predicate {
                    ix.predicate = Some(rename_in_expr(p, &old, &new)?);
                }
            }
            catalog::put_table(txn, desc)
        }
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::To(n) | RenameTableNameKind::As(n)) = table_name;
            let (schema, name) = table_name_in(ddl, n)?;
            if schema != desc.schema {
                return Err(SqlError::unsupported("moving a table to another schema"));
            }
            // Tables, views, sequences and indexes share one namespace (the point paths rely
            // on a table never sharing its name with a view).
            if crate::ddl::name_taken(ddl.snapshot, &schema, &name) {
                return Err(SqlError::new(
                    code::DUPLICATE_TABLE,
                    format!("relation \"{name}\" already exists"),
                ));
            }
            catalog::delete_table(txn, desc)?;
            desc.name = name;
            catalog::put_table(txn, desc)
        }
        AlterTableOperation::AlterColumn {
            column_name,
            op:
                ast::AlterColumnOperation::SetDataType {
                    data_type, using, ..
                },
        } => {
            let name = ident(column_name);
            change_type(ddl, txn, desc, &name, data_type, using.as_ref(), after).await
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            alter_column(ddl, txn, desc, &ident(column_name), op).await?;
            catalog::put_table(txn, desc)
        }
        other => Err(SqlError::unsupported(format!("ALTER TABLE … {other}"))),
    }
}

/// `ALTER COLUMN c [SET DATA] TYPE t [USING expr]`: every row is converted (the USING
/// expression, else a cast — which, as in PostgreSQL, text only takes to text types without
/// USING, 42804) and written under a fresh table id, as key encodings may change; indexes
/// are rebuilt and CHECK constraints re-verified. Columns in a foreign key or read by a
/// generated column keep their type (0A000).
async fn change_type(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    name: &str,
    data_type: &ast::DataType,
    using: Option<&ast::Expr>,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<()> {
    let i = visible_column(desc, name).ok_or_else(|| no_column(desc, name))?;
    let ty = SqlType::from_ast(data_type)?;
    let id = desc.columns[i].id;
    let in_fk = desc.foreign_keys.iter().any(|f| f.columns.contains(&id))
        || ddl
            .snapshot
            .referencing(snapshot_id(ddl, desc, desc.id))
            .iter()
            .any(|(c, k)| c.foreign_keys[*k].parent_columns.contains(&id));
    let generated = desc.columns.iter().any(|c| c.generated.is_some());
    if in_fk || generated {
        return Err(SqlError::unsupported(
            "changing the type of a column in a foreign key or of a table with generated columns",
        ));
    }
    let old_ty = desc.columns[i].ty.clone();
    let texty = |t: &SqlType| matches!(t, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_));
    if using.is_none() && texty(&old_ty) && !texty(&ty) {
        return Err(SqlError::new(
            code::DATATYPE_MISMATCH,
            format!(
                "column \"{name}\" cannot be cast automatically to type {}",
                ty.pg_name()
            ),
        )
        .with_detail(format!(
            "You might need to specify \"USING {name}::{}\".",
            ty.pg_name()
        )));
    }
    if matches!(ty, SqlType::Array(_)) && desc.primary_key.contains(&i) {
        return Err(SqlError::unsupported("array primary keys"));
    }
    // Without USING, the column itself, cast to the new type's Arrow type below.
    let convert = match using {
        Some(e) => e.to_string(),
        None => ast::Ident::with_quote('"', name).to_string(),
    };
    let old = desc.clone();
    let schema = old.arrow_schema(true);
    let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
        .map_err(crate::error::from_datafusion)?;
    let expr = {
        use datafusion::logical_expr::ExprSchemable;
        let e = ddl
            .state
            .create_logical_expr(&convert, &df_schema)
            .and_then(|e| e.cast_to(&ty.arrow(), &df_schema))
            .map_err(crate::error::from_datafusion)?;
        ddl.state
            .create_physical_expr(e, &df_schema)
            .map_err(crate::error::from_datafusion)?
    };
    let mut new = old.clone();
    new.columns[i].ty = ty.clone();
    if let Some((text, _)) = &old.columns[i].default {
        let v = (ddl.eval)(&stored_expr(text)?, &ty).await?;
        new.columns[i].default = Some((text.clone(), v));
    }
    renumber(ddl, txn, &mut new, after).await?;
    let checks = crate::check::Checks::compile(ddl.state, &new)?;
    let mut cursor = RowCursor::new(&old);
    while let Some(mut rows) = cursor.next(txn, &old).await? {
        let batch = crate::check::batch_of(&old, &rows)?;
        let out = crate::check::evaluate(&expr, &batch)?;
        let vals = crate::datum::datums_from_array(&ty, &out)?;
        for (row, v) in rows.iter_mut().zip(vals) {
            row[i] = v;
            crate::provider::validate_row(&new, row)?;
            let key = rowcodec::encode_key(&new, row)?;
            if txn.get(&key).await?.is_some() {
                return Err(SqlError::new(
                    code::UNIQUE_VIOLATION,
                    format!("could not create unique index \"{}\"", new.pkey_name()),
                ));
            }
            txn.put(key, rowcodec::encode_value(&new, row))?;
        }
        checks.verify(&new, &rows)?;
    }
    for r in crate::index::TableWriter::new(&new)?.indexes {
        crate::index::backfill(txn, &new, &r).await?;
    }
    catalog::put_table(txn, &new)?;
    *desc = new;
    Ok(())
}

/// `ALTER COLUMN … SET/DROP DEFAULT`, `SET/DROP NOT NULL`.
async fn alter_column(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    name: &str,
    op: &ast::AlterColumnOperation,
) -> SqlResult<()> {
    use ast::AlterColumnOperation as Op;
    let i = visible_column(desc, name).ok_or_else(|| no_column(desc, name))?;
    match op {
        Op::SetNotNull => {
            let mut cursor = RowCursor::new(desc);
            while let Some(batch) = cursor.next(txn, desc).await? {
                if batch.iter().any(|row| row[i].is_null()) {
                    return Err(SqlError::new(
                        code::NOT_NULL_VIOLATION,
                        format!(
                            "column \"{name}\" of relation \"{}\" contains null values",
                            desc.name
                        ),
                    ));
                }
            }
            desc.columns[i].nullable = false;
        }
        Op::DropNotNull => {
            if desc.primary_key.contains(&i) {
                return Err(SqlError::new(
                    code::INVALID_TABLE_DEFINITION,
                    format!("column \"{name}\" is in a primary key"),
                ));
            }
            desc.columns[i].nullable = true;
        }
        Op::DropDefault => {
            desc.columns[i].default = None;
            desc.columns[i].default_expr = None;
        }
        Op::SetDefault { value } => {
            let col = &mut desc.columns[i];
            if crate::ddl::default_is_per_row(value)? {
                let e = crate::ddl::strip_regclass(value).to_string();
                crate::stmt::compile_default(ddl.state, &e, &col.ty)?;
                col.default = None;
                col.default_expr = Some(e);
            } else {
                let v = (ddl.eval)(value, &col.ty).await?;
                col.default = Some((value.to_string(), v));
                col.default_expr = None;
            }
        }
        other => return Err(SqlError::unsupported(format!("ALTER COLUMN … {other}"))),
    }
    Ok(())
}

/// A CHECK or generation expression as stored in a descriptor.
/// `expr` (SQL text) with column `old` renamed to `new`.
fn rename_in_expr(expr: &str, old: &str, new: &str) -> SqlResult<String> {
    let mut e = stored_expr(expr)?;
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Identifier(i) = x {
            if ident(i) == old {
                // Always quoted: a bare name could read as a keyword or special function
                // (`current_user`) and change what the stored expression means.
                *i = ast::Ident::with_quote('"', new);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(e.to_string())
}

fn table_name_in(ddl: &DdlCtx<'_>, n: &ObjectName) -> SqlResult<(String, String)> {
    table_name(n, ddl.db)
}

fn visible_column(desc: &TableDesc, name: &str) -> Option<usize> {
    desc.columns
        .iter()
        .position(|c| c.name == name && !c.hidden)
}

fn no_column(desc: &TableDesc, name: &str) -> SqlError {
    SqlError::new(
        code::UNDEFINED_COLUMN,
        format!(
            "column \"{name}\" of relation \"{}\" does not exist",
            desc.name
        ),
    )
}

async fn add_primary_key(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    p: &ast::PrimaryKeyConstraint,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<()> {
    if !desc.has_hidden_key() {
        return Err(SqlError::new(
            code::INVALID_TABLE_DEFINITION,
            format!(
                "multiple primary keys for table \"{}\" are not allowed",
                desc.name
            ),
        ));
    }
    let old = desc.clone();
    let hidden = old.primary_key[0];
    let mut new = old.clone();
    new.columns.remove(hidden);
    new.primary_key = pk_indexes(p, &new.columns)?;
    for &i in &new.primary_key.clone() {
        new.columns[i].nullable = false;
    }
    renumber(ddl, txn, &mut new, after).await?;
    let drop_hidden = move |mut row: Vec<Datum>| {
        row.remove(hidden);
        row
    };
    rewrite(txn, &old, &new, &drop_hidden).await?;
    // Entries point at primary keys, which all changed: rebuild every index under the new id.
    for r in crate::index::TableWriter::new(&new)?.indexes {
        crate::index::backfill(txn, &new, &r).await?;
    }
    catalog::put_table(txn, &new)?;
    *desc = new;
    Ok(())
}

async fn add_column(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    def: &ast::ColumnDef,
    if_not_exists: bool,
) -> SqlResult<()> {
    let mut extras = crate::ddl::ColumnExtras {
        checks: desc.checks.clone(),
        ..Default::default()
    };
    let (col, is_pk) = column_desc(ddl, &desc.name, def, desc.next_column_id, &mut extras).await?;
    if !extras.serials.is_empty() || col.default_expr.is_some() || col.generated.is_some() {
        return Err(SqlError::unsupported(
            "ADD COLUMN with a SERIAL, IDENTITY, generated column or per-row DEFAULT",
        ));
    }
    let (checks, uniques, fks) = (extras.checks, extras.uniques, extras.fks);
    if visible_column(desc, &col.name).is_some() {
        if if_not_exists {
            return Ok(());
        }
        return Err(SqlError::new(
            code::DUPLICATE_COLUMN,
            format!(
                "column \"{}\" of relation \"{}\" already exists",
                col.name, desc.name
            ),
        ));
    }
    crate::ddl::note_domain_users(txn, desc.id, &extras.domains)?;
    if is_pk {
        return Err(SqlError::unsupported(
            "ADD COLUMN … PRIMARY KEY (add the column, then ADD PRIMARY KEY)",
        ));
    }
    if desc.columns.len() >= crate::ddl::COLUMNS_MAX {
        return Err(SqlError::new(
            code::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "tables can have at most {} columns",
                crate::ddl::COLUMNS_MAX
            ),
        ));
    }
    let fill = col
        .default
        .as_ref()
        .map(|(_, d)| d.clone())
        .unwrap_or(Datum::Null);
    if has_rows(txn, desc).await? && fill.is_null() && !col.nullable {
        return Err(SqlError::new(
            code::NOT_NULL_VIOLATION,
            format!(
                "column \"{}\" of relation \"{}\" contains null values",
                col.name, desc.name
            ),
        ));
    }
    let old = desc.clone();
    desc.columns.push(col);
    desc.next_column_id += 1;
    desc.checks = checks;
    let added_checks = crate::check::Checks::compile(ddl.state, desc)?;
    if !fill.is_null() {
        let add = move |mut row: Vec<Datum>| {
            row.push(fill.clone());
            row
        };
        rewrite_in_place(txn, &old, desc, &add, &added_checks).await?;
    } else if !added_checks.is_empty() {
        verify_all(txn, desc, &added_checks).await?;
    }
    for spec in &uniques {
        let ix = crate::ddl::unique_index(ddl.snapshot, desc, spec)?;
        crate::ddl::add_index(txn, desc, ix, true).await?;
    }
    for spec in &fks {
        add_foreign_key(ddl, txn, desc, spec).await?;
    }
    catalog::put_table(txn, desc)
}

/// `ALTER TABLE … ADD [CONSTRAINT c] FOREIGN KEY …`: existing rows must find their parents.
async fn add_foreign_key(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    spec: &crate::fk::FkSpec,
) -> SqlResult<()> {
    let fk = crate::fk::resolve(ddl.snapshot, ddl.db, desc, spec)?;
    if desc.foreign_keys.iter().any(|f| f.name == fk.name) {
        return Err(SqlError::new(
            code::DUPLICATE_OBJECT,
            format!(
                "constraint \"{}\" for relation \"{}\" already exists",
                fk.name, desc.name
            ),
        ));
    }
    crate::fk::validate_existing(txn, ddl.snapshot, desc, &fk).await?;
    desc.foreign_keys.push(fk);
    catalog::put_table(txn, desc)
}

/// Rewrites every row of a table under the same keys (new column values only).
async fn rewrite_in_place(
    txn: &mut Txn,
    old: &TableDesc,
    new: &TableDesc,
    map: &(dyn Fn(Vec<Datum>) -> Vec<Datum> + Sync),
    checks: &crate::check::Checks,
) -> SqlResult<()> {
    let mut cursor = RowCursor::new(old);
    while let Some(batch) = cursor.next(txn, old).await? {
        let batch: Vec<Vec<Datum>> = batch.into_iter().map(map).collect();
        checks.verify(new, &batch)?;
        for row in batch {
            txn.put(
                rowcodec::encode_key(new, &row)?,
                rowcodec::encode_value(new, &row),
            )?;
        }
    }
    Ok(())
}

/// Checks every row of the table against `checks` (a constraint added to existing rows).
async fn verify_all(txn: &Txn, desc: &TableDesc, checks: &crate::check::Checks) -> SqlResult<()> {
    let mut cursor = RowCursor::new(desc);
    while let Some(batch) = cursor.next(txn, desc).await? {
        checks.verify(desc, &batch).map_err(|mut e| {
            if e.code == code::CHECK_VIOLATION {
                e.message = format!(
                    "check constraint of relation \"{}\" is violated by some row",
                    desc.name
                );
            }
            e
        })?;
    }
    Ok(())
}

async fn add_check(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    ck: &ast::CheckConstraint,
) -> SqlResult<()> {
    let name = match &ck.name {
        Some(n) => ident(n),
        None => crate::ddl::unique_check_name(&desc.checks, &format!("{}_check", desc.name)),
    };
    let mut only = desc.clone();
    only.checks = vec![crate::catalog::CheckDesc {
        name,
        expr: ck.expr.to_string(),
    }];
    let checks = crate::check::Checks::compile(ddl.state, &only)?;
    verify_all(txn, desc, &checks).await?;
    desc.checks.extend(only.checks);
    catalog::put_table(txn, desc)
}

/// Drops the checks that no longer compile once a column is gone (PostgreSQL drops the
/// constraints that depend on a dropped column).
/// 2BP01 if a generated column's expression reads column `i` (about to be dropped).
fn generated_depends(desc: &TableDesc, i: usize) -> SqlResult<()> {
    let name = &desc.columns[i].name;
    for c in desc.columns.iter().filter(|c| c.generated.is_some()) {
        let mut e = stored_expr(c.generated.as_deref().unwrap_or(""))?;
        let mut reads = false;
        let _ = ast::visit_expressions_mut(&mut e, |x| {
            if let ast::Expr::Identifier(id) = x {
                reads |= ident(id) == *name;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if reads && c.name != *name {
            return Err(SqlError::new(
                code::DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop column {name} of table {} because other objects depend on it",
                    desc.name
                ),
            )
            .with_detail(format!(
                "column {} of table {} depends on column {name} of table {}",
                c.name, desc.name, desc.name
            )));
        }
    }
    Ok(())
}

fn prune_checks(ddl: &DdlCtx<'_>, desc: &mut TableDesc) {
    let mut keep = Vec::new();
    for c in std::mem::take(&mut desc.checks) {
        let mut one = desc.clone();
        one.checks = vec![c.clone()];
        one.columns.iter_mut().for_each(|c| c.generated = None);
        if crate::check::Checks::compile(ddl.state, &one).is_ok() {
            keep.push(c);
        }
    }
    desc.checks = keep;
}

/// A dropped SERIAL/IDENTITY column takes its sequence with it.
fn drop_owned_sequences(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &TableDesc,
    name: &str,
) -> SqlResult<()> {
    let Some(i) = visible_column(desc, name) else {
        return Ok(());
    };
    let owner = (desc.id, desc.columns[i].id);
    for seq in ddl.snapshot.sequences.values() {
        if seq.owner == Some(owner) {
            crate::sequence::delete_sequence(txn, seq)?;
        }
    }
    Ok(())
}

/// PostgreSQL drops the indexes (and UNIQUE constraints) that use a dropped column.
fn drop_column_indexes(desc: &mut TableDesc, name: &str, after: &mut Vec<AfterCommit>) {
    let Some(i) = visible_column(desc, name) else {
        return;
    };
    let id = desc.columns[i].id;
    let doomed: Vec<String> = desc
        .indexes
        .iter()
        .filter(|ix| ix.columns.contains(&id))
        .map(|ix| ix.name.clone())
        .collect();
    for n in doomed {
        crate::ddl::remove_index(desc, &n, after);
    }
}

fn drop_column(desc: &mut TableDesc, name: &str, if_exists: bool) -> SqlResult<()> {
    let Some(i) = visible_column(desc, name) else {
        if if_exists {
            return Ok(());
        }
        return Err(no_column(desc, name));
    };
    if desc.primary_key.contains(&i) {
        return Err(SqlError::unsupported("dropping a primary key column"));
    }
    if desc.columns.iter().filter(|c| !c.hidden).count() == 1 {
        return Err(SqlError::unsupported("tables without columns"));
    }
    desc.columns.remove(i);
    for k in desc.primary_key.iter_mut() {
        if *k > i {
            *k -= 1;
        }
    }
    Ok(())
}
