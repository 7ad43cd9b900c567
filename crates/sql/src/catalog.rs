//! The SQL catalog — databases and tables — stored as rows of the system range and changed
//! only inside transactions, so DDL is atomic and every statement sees one consistent
//! catalog snapshot (its transaction's).
//!
//! ```text
//! 0x03 "db" escape(db_name)                               → DbDesc
//! 0x03 "tb" be32(db_id) escape(schema) escape(table_name)  → TableDesc
//! 0x03 "id"                                               → next descriptor id (be32)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use kestrel_kv::keys::SYSTEM_START;
use kestrel_kv::{Kv, Txn};
use kestrel_storage::keycode;

use crate::datum::Datum;
use crate::error::{code, SqlError, SqlResult};
use crate::types::SqlType;

pub const DEFAULT_DATABASES: [&str; 2] = ["defaultdb", "postgres"];
pub const DEFAULT_SCHEMA: &str = "public";
const FIRST_TABLE_ID: u32 = 100;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DbDesc {
    pub id: u32,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDesc {
    /// Stable id used in the row encoding (names may change, ids never do).
    pub id: u16,
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// A constant default, evaluated at CREATE TABLE time, with its source text.
    pub default: Option<(String, Datum)>,
    /// A default evaluated for every row (`now()`, `gen_random_uuid()`, `nextval(…)`), as SQL.
    pub default_expr: Option<String>,
    /// `GENERATED ALWAYS AS IDENTITY`: INSERT may not name a value for it.
    pub identity_always: bool,
    /// The generated `rowid` of a table declared without a primary key.
    pub hidden: bool,
    /// `GENERATED ALWAYS AS (expr) STORED`: the expression, as SQL over the table's columns,
    /// computed for every row written; INSERT and UPDATE may not name a value for it.
    pub generated: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableDesc {
    pub id: u32,
    pub db_id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDesc>,
    /// Indexes into `columns`, in key order.
    pub primary_key: Vec<usize>,
    pub next_column_id: u16,
    /// CHECK constraints, evaluated on every row written ([`crate::check`]).
    pub checks: Vec<CheckDesc>,
    /// Secondary indexes, maintained with every row write ([`crate::index`]).
    pub indexes: Vec<IndexDesc>,
    /// The id the next index gets (the primary index is 1; ids are never reused).
    pub next_index_id: u32,
    /// FOREIGN KEY constraints of this (child) table ([`crate::fk`]).
    pub foreign_keys: Vec<ForeignKeyDesc>,
}

/// A FOREIGN KEY constraint: `columns` of the owning (child) table reference `parent_columns`
/// of table `parent`, which are its primary key or the columns of one of its unique indexes.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ForeignKeyDesc {
    pub name: String,
    /// Child column ids, paired with `parent_columns`.
    pub columns: Vec<u16>,
    /// The referenced table's id (names may change, ids never do).
    pub parent: u32,
    pub parent_columns: Vec<u16>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    /// `MATCH FULL`: a key is all NULL or all non-NULL (default `MATCH SIMPLE`: any NULL
    /// exempts the row).
    pub match_full: bool,
}

/// What happens to referencing rows when their referenced key goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FkAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl FkAction {
    /// pg_constraint's `confupdtype`/`confdeltype` letter.
    pub fn letter(self) -> &'static str {
        match self {
            FkAction::NoAction => "a",
            FkAction::Restrict => "r",
            FkAction::Cascade => "c",
            FkAction::SetNull => "n",
            FkAction::SetDefault => "d",
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexDesc {
    /// Unique within the table; part of every entry's key.
    pub id: u32,
    pub name: String,
    /// The indexed columns by column id, in key order.
    pub columns: Vec<u16>,
    pub unique: bool,
    /// `UNIQUE NULLS NOT DISTINCT`: NULLs collide like values.
    pub nulls_not_distinct: bool,
    /// Created by a UNIQUE constraint (dropped with ALTER TABLE … DROP CONSTRAINT).
    pub constraint: bool,
    /// An expression index's keys, as SQL over the table's column names (a plain column key
    /// is written as its quoted name); empty for a column index. When set, `columns` holds
    /// the ids of every column the keys and the predicate read.
    pub exprs: Vec<String>,
    /// A partial index's `WHERE`, as SQL over the table's column names: only rows for which
    /// it is true have an entry.
    pub predicate: Option<String>,
}

impl IndexDesc {
    /// A plain index: its keys are `columns` and every row has an entry. Only such indexes
    /// serve scans and back foreign keys.
    pub fn is_plain(&self) -> bool {
        self.exprs.is_empty() && self.predicate.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckDesc {
    pub name: String,
    /// The boolean expression, as SQL over the table's column names.
    pub expr: String,
}

impl TableDesc {
    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDesc)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }

    /// Indexes of the columns a query sees (`expose_hidden` adds the generated rowid).
    pub fn visible_columns(&self, expose_hidden: bool) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| expose_hidden || !self.columns[i].hidden)
            .collect()
    }

    pub fn arrow_schema(&self, expose_hidden: bool) -> SchemaRef {
        let fields: Vec<_> = self
            .visible_columns(expose_hidden)
            .into_iter()
            .map(|i| self.columns[i].ty.field(&self.columns[i].name))
            .collect();
        Arc::new(Schema::new(fields))
    }

    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// The positions (into `columns`) of an index's columns.
    pub fn index_positions(&self, ix: &IndexDesc) -> Vec<usize> {
        ix.columns
            .iter()
            .map(|id| {
                let pos = self.columns.iter().position(|c| c.id == *id);
                assert!(pos.is_some(), "index {} names a dropped column", ix.name);
                pos.unwrap_or(0)
            })
            .collect()
    }

    pub fn has_hidden_key(&self) -> bool {
        self.primary_key.iter().any(|&i| self.columns[i].hidden)
    }
}

fn db_key(name: &str) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"db");
    keycode::put_bytes(&mut k, name.as_bytes());
    k
}

fn db_prefix() -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"db");
    k
}

fn tables_prefix(db_id: u32) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"tb");
    keycode::put_u32(&mut k, db_id);
    k
}

fn table_key(db_id: u32, schema: &str, name: &str) -> Vec<u8> {
    let mut k = tables_prefix(db_id);
    keycode::put_bytes(&mut k, schema.as_bytes());
    keycode::put_bytes(&mut k, name.as_bytes());
    k
}

fn schemas_prefix(db_id: u32) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"sc");
    keycode::put_u32(&mut k, db_id);
    k
}

fn schema_key(db_id: u32, name: &str) -> Vec<u8> {
    let mut k = schemas_prefix(db_id);
    keycode::put_bytes(&mut k, name.as_bytes());
    k
}

/// A schema created with CREATE SCHEMA (`public` always exists and has no row).
pub fn put_schema(txn: &mut Txn, db_id: u32, name: &str) -> SqlResult<()> {
    txn.put(schema_key(db_id, name), name.as_bytes().to_vec())?;
    Ok(())
}

pub fn delete_schema(txn: &mut Txn, db_id: u32, name: &str) -> SqlResult<()> {
    txn.delete(schema_key(db_id, name))?;
    Ok(())
}

pub fn put_database(txn: &mut Txn, db: &DbDesc) -> SqlResult<()> {
    txn.put(db_key(&db.name), encode(db))?;
    Ok(())
}

pub fn delete_database(txn: &mut Txn, db: &DbDesc) -> SqlResult<()> {
    txn.delete(db_key(&db.name))?;
    Ok(())
}

/// Every table of a database.
pub async fn tables_of(txn: &Txn, db_id: u32) -> SqlResult<Vec<TableDesc>> {
    let prefix = tables_prefix(db_id);
    let end = keycode::prefix_end(&prefix);
    let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
    rows.iter().map(|(_, v)| decode_table(v)).collect()
}

/// A view: its query, kept as SQL text and expanded into every statement that names it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewDesc {
    pub db_id: u32,
    pub schema: String,
    pub name: String,
    pub query: String,
    /// Column names given in `CREATE VIEW v (a, b)`; empty: the query's own names.
    pub columns: Vec<String>,
}

/// `COMMENT ON TABLE | COLUMN`: comments by `(table id, column id)` (0 for the table).
pub type CommentMap = Arc<BTreeMap<(u32, u16), String>>;

fn comments_prefix(db_id: u32) -> Vec<u8> {
    kind_prefix(b"cm", db_id)
}

fn comment_key(db_id: u32, table: u32, column: u16) -> Vec<u8> {
    let mut k = comments_prefix(db_id);
    keycode::put_u32(&mut k, table);
    keycode::put_u32(&mut k, column as u32);
    k
}

/// Sets (or with `None` removes) the comment on a table (`column` 0) or one of its columns.
pub fn set_comment(
    txn: &mut Txn,
    db_id: u32,
    table: u32,
    column: u16,
    text: Option<&str>,
) -> SqlResult<()> {
    let key = comment_key(db_id, table, column);
    match text {
        Some(t) => txn.put(key, t.as_bytes().to_vec())?,
        None => txn.delete(key)?,
    }
    Ok(())
}

/// `CREATE DOMAIN`: a base type with constraints. A column declared with the domain gets
/// the base type, the domain's NOT NULL and DEFAULT, and its CHECKs (`VALUE` replaced by the
/// column) when the table is created; `users` records those columns so DROP DOMAIN can
/// refuse while one still exists (entries of dropped tables or columns are ignored).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DomainDesc {
    pub db_id: u32,
    pub schema: String,
    pub name: String,
    pub base: SqlType,
    /// The DEFAULT expression, as SQL.
    pub default: Option<String>,
    /// CHECK constraints as SQL over `VALUE`.
    pub checks: Vec<CheckDesc>,
    /// `(table id, column id)` of the columns declared with this domain.
    pub users: Vec<(u32, u16)>,
}

/// Domains by `(schema, name)`.
pub type DomainMap = Arc<BTreeMap<(String, String), Arc<DomainDesc>>>;

/// The prefix of one kind of per-database descriptor (`tag` is its two-byte kind).
fn kind_prefix(tag: &[u8; 2], db_id: u32) -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(tag);
    keycode::put_u32(&mut k, db_id);
    k
}

/// The key of a named object of one kind: `kind_prefix ++ escape(schema) ++ escape(name)`.
fn named_key(tag: &[u8; 2], db_id: u32, schema: &str, name: &str) -> Vec<u8> {
    let mut k = kind_prefix(tag, db_id);
    keycode::put_bytes(&mut k, schema.as_bytes());
    keycode::put_bytes(&mut k, name.as_bytes());
    k
}

fn domains_prefix(db_id: u32) -> Vec<u8> {
    kind_prefix(b"dm", db_id)
}

fn domain_key(db_id: u32, schema: &str, name: &str) -> Vec<u8> {
    named_key(b"dm", db_id, schema, name)
}

pub fn put_domain(txn: &mut Txn, d: &DomainDesc) -> SqlResult<()> {
    txn.put(domain_key(d.db_id, &d.schema, &d.name), encode(d))?;
    Ok(())
}

pub fn delete_domain(txn: &mut Txn, d: &DomainDesc) -> SqlResult<()> {
    txn.delete(domain_key(d.db_id, &d.schema, &d.name))?;
    Ok(())
}

fn views_prefix(db_id: u32) -> Vec<u8> {
    kind_prefix(b"vw", db_id)
}

fn view_key(db_id: u32, schema: &str, name: &str) -> Vec<u8> {
    named_key(b"vw", db_id, schema, name)
}

pub fn put_view(txn: &mut Txn, v: &ViewDesc) -> SqlResult<()> {
    txn.put(view_key(v.db_id, &v.schema, &v.name), encode(v))?;
    Ok(())
}

pub fn delete_view(txn: &mut Txn, v: &ViewDesc) -> SqlResult<()> {
    txn.delete(view_key(v.db_id, &v.schema, &v.name))?;
    Ok(())
}

/// Views by `(schema, name)`.
pub type ViewMap = Arc<BTreeMap<(String, String), Arc<ViewDesc>>>;

fn id_key() -> Vec<u8> {
    let mut k = SYSTEM_START.to_vec();
    k.extend_from_slice(b"id");
    k
}

/// Descriptors are bincode behind a header: [`DESC_MAGIC`] and a format version. Stores
/// written before the header existed hold bare bincode of the version-1 layouts
/// ([`legacy`]); such a value cannot start with the magic (its first field is a small id).
const DESC_MAGIC: [u8; 3] = [0xFF, b'K', b'D'];
/// Version 2 added `ColumnDesc::generated` and `TableDesc::foreign_keys`; version 3 added
/// `IndexDesc::exprs` and `IndexDesc::predicate` (only table descriptors changed); version 4
/// put sequence descriptors behind the header and added `SeqDesc::type_max` (only
/// sequences changed: they were headerless before).
pub(crate) const DESC_VERSION: u8 = 4;

fn decode<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> SqlResult<T> {
    let body = match split_header(b, what)? {
        Some((_, body)) => body,
        None => b,
    };
    bincode::deserialize(body)
        .map_err(|e| SqlError::internal(format!("corrupt {what} descriptor: {e}")))
}

/// The version and body after a descriptor header; `None` for a headerless (version 1)
/// value.
pub(crate) fn split_header<'a>(b: &'a [u8], what: &str) -> SqlResult<Option<(u8, &'a [u8])>> {
    if b.len() < 4 || b[..3] != DESC_MAGIC {
        return Ok(None);
    }
    if !(2..=DESC_VERSION).contains(&b[3]) {
        return Err(SqlError::internal(format!(
            "{what} descriptor has format version {} (this build reads up to {DESC_VERSION})",
            b[3]
        )));
    }
    Ok(Some((b[3], &b[4..])))
}

fn decode_table(b: &[u8]) -> SqlResult<TableDesc> {
    let corrupt = |e: bincode::Error| SqlError::internal(format!("corrupt table descriptor: {e}"));
    match split_header(b, "table")? {
        Some((3.., body)) => bincode::deserialize(body).map_err(corrupt),
        Some((_, body)) => bincode::deserialize::<legacy::TableDescV2>(body)
            .map(TableDesc::from)
            .map_err(corrupt),
        None => bincode::deserialize::<legacy::TableDescV1>(b)
            .map(TableDesc::from)
            .map_err(corrupt),
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = DESC_MAGIC.to_vec();
    out.push(DESC_VERSION);
    out.extend(bincode::serialize(v).expect("descriptor serializes"));
    out
}

/// Older descriptor layouts: version 1 (headerless, before version 2) and version 2's
/// index layout, read and converted to the current one.
mod legacy {
    use super::{CheckDesc, ColumnDesc, ForeignKeyDesc, IndexDesc, TableDesc};
    use crate::datum::Datum;
    use crate::types::SqlType;

    /// Indexes of versions 1 and 2 (no expressions, no predicate).
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct IndexDescV2 {
        pub id: u32,
        pub name: String,
        pub columns: Vec<u16>,
        pub unique: bool,
        pub nulls_not_distinct: bool,
        pub constraint: bool,
    }

    impl From<IndexDescV2> for IndexDesc {
        fn from(i: IndexDescV2) -> Self {
            IndexDesc {
                id: i.id,
                name: i.name,
                columns: i.columns,
                unique: i.unique,
                nulls_not_distinct: i.nulls_not_distinct,
                constraint: i.constraint,
                exprs: Vec::new(),
                predicate: None,
            }
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct TableDescV2 {
        pub id: u32,
        pub db_id: u32,
        pub schema: String,
        pub name: String,
        pub columns: Vec<ColumnDesc>,
        pub primary_key: Vec<usize>,
        pub next_column_id: u16,
        pub checks: Vec<CheckDesc>,
        pub indexes: Vec<IndexDescV2>,
        pub next_index_id: u32,
        pub foreign_keys: Vec<ForeignKeyDesc>,
    }

    impl From<TableDescV2> for TableDesc {
        fn from(t: TableDescV2) -> Self {
            TableDesc {
                id: t.id,
                db_id: t.db_id,
                schema: t.schema,
                name: t.name,
                columns: t.columns,
                primary_key: t.primary_key,
                next_column_id: t.next_column_id,
                checks: t.checks,
                indexes: t.indexes.into_iter().map(IndexDesc::from).collect(),
                next_index_id: t.next_index_id,
                foreign_keys: t.foreign_keys,
            }
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct ColumnDescV1 {
        pub id: u16,
        pub name: String,
        pub ty: SqlType,
        pub nullable: bool,
        pub default: Option<(String, Datum)>,
        pub default_expr: Option<String>,
        pub identity_always: bool,
        pub hidden: bool,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct TableDescV1 {
        pub id: u32,
        pub db_id: u32,
        pub schema: String,
        pub name: String,
        pub columns: Vec<ColumnDescV1>,
        pub primary_key: Vec<usize>,
        pub next_column_id: u16,
        pub checks: Vec<CheckDesc>,
        pub indexes: Vec<IndexDescV2>,
        pub next_index_id: u32,
    }

    impl From<TableDescV1> for TableDesc {
        fn from(t: TableDescV1) -> Self {
            let columns = t
                .columns
                .into_iter()
                .map(|c| ColumnDesc {
                    id: c.id,
                    name: c.name,
                    ty: c.ty,
                    nullable: c.nullable,
                    default: c.default,
                    default_expr: c.default_expr,
                    identity_always: c.identity_always,
                    hidden: c.hidden,
                    generated: None,
                })
                .collect();
            TableDesc {
                id: t.id,
                db_id: t.db_id,
                schema: t.schema,
                name: t.name,
                columns,
                primary_key: t.primary_key,
                next_column_id: t.next_column_id,
                checks: t.checks,
                indexes: t.indexes.into_iter().map(IndexDesc::from).collect(),
                next_index_id: t.next_index_id,
                foreign_keys: Vec::new(),
            }
        }
    }
}

/// Creates the default databases on a fresh store (idempotent).
pub async fn bootstrap(kv: &Arc<Kv>) -> SqlResult<()> {
    let mut txn = kv.begin();
    if txn.get(&db_key(DEFAULT_DATABASES[0])).await?.is_some() {
        return Ok(());
    }
    for (i, name) in DEFAULT_DATABASES.iter().enumerate() {
        txn.put(
            db_key(name),
            encode(&DbDesc {
                id: i as u32 + 1,
                name: name.to_string(),
            }),
        )?;
    }
    txn.put(id_key(), FIRST_TABLE_ID.to_be_bytes().to_vec())?;
    txn.commit().await?;
    Ok(())
}

/// Descriptor reads go through the node's read cache: the catalog range is rarely written.
pub async fn get_database(txn: &Txn, name: &str) -> SqlResult<Option<DbDesc>> {
    txn.get_cached(&db_key(name))
        .await?
        .map(|b| decode(&b, "database"))
        .transpose()
}

pub async fn list_databases(txn: &Txn) -> SqlResult<Vec<DbDesc>> {
    let prefix = db_prefix();
    let end = keycode::prefix_end(&prefix);
    let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
    rows.iter().map(|(_, v)| decode(v, "database")).collect()
}

/// Allocates a fresh descriptor id inside `txn`.
pub async fn allocate_id(txn: &mut Txn) -> SqlResult<u32> {
    let cur = match txn.get(&id_key()).await? {
        Some(b) if b.len() == 4 => u32::from_be_bytes(b[..4].try_into().expect("4 bytes")),
        _ => return Err(SqlError::internal("descriptor id counter missing")),
    };
    txn.put(id_key(), (cur + 1).to_be_bytes().to_vec())?;
    Ok(cur)
}

/// The tables of one database as of a transaction's snapshot.
#[derive(Clone, Debug, Default)]
pub struct CatalogSnapshot {
    pub db: Option<DbDesc>,
    /// Schemas made with CREATE SCHEMA (besides `public`).
    pub created_schemas: Vec<String>,
    pub tables: BTreeMap<(String, String), Arc<TableDesc>>,
    pub sequences: crate::sequence::SeqMap,
    pub views: ViewMap,
    pub domains: DomainMap,
    pub comments: CommentMap,
}

impl CatalogSnapshot {
    pub async fn load(txn: &Txn, db_name: &str) -> SqlResult<Self> {
        let Some(db) = get_database(txn, db_name).await? else {
            return Err(SqlError::new(
                code::INVALID_CATALOG_NAME,
                format!("database \"{db_name}\" does not exist"),
            ));
        };
        let mut tables = BTreeMap::new();
        for t in tables_of(txn, db.id).await? {
            tables.insert((t.schema.clone(), t.name.clone()), Arc::new(t));
        }
        let prefix = crate::sequence::seq_prefix(db.id);
        let end = keycode::prefix_end(&prefix);
        let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
        let mut sequences = BTreeMap::new();
        for (_, v) in rows {
            let s = crate::sequence::decode_sequence(&v)?;
            sequences.insert((s.schema.clone(), s.name.clone()), Arc::new(s));
        }
        let prefix = schemas_prefix(db.id);
        let end = keycode::prefix_end(&prefix);
        let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
        let created_schemas = rows
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        let prefix = views_prefix(db.id);
        let end = keycode::prefix_end(&prefix);
        let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
        let mut views = BTreeMap::new();
        for (_, v) in rows {
            let view: ViewDesc = decode(&v, "view")?;
            views.insert((view.schema.clone(), view.name.clone()), Arc::new(view));
        }
        let prefix = domains_prefix(db.id);
        let end = keycode::prefix_end(&prefix);
        let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
        let mut domains = BTreeMap::new();
        for (_, v) in rows {
            let d: DomainDesc = decode(&v, "domain")?;
            domains.insert((d.schema.clone(), d.name.clone()), Arc::new(d));
        }
        let prefix = comments_prefix(db.id);
        let end = keycode::prefix_end(&prefix);
        let (rows, _) = txn.scan(&prefix, end.as_deref(), usize::MAX).await?;
        let mut comments = BTreeMap::new();
        for (k, v) in rows {
            let rest = &k[prefix.len()..];
            if rest.len() != 8 {
                return Err(SqlError::internal("corrupt comment key"));
            }
            let table = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let column = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let column =
                u16::try_from(column).map_err(|_| SqlError::internal("corrupt comment key"))?;
            comments.insert((table, column), String::from_utf8_lossy(&v).into_owned());
        }
        Ok(Self {
            db: Some(db),
            views: Arc::new(views),
            domains: Arc::new(domains),
            comments: Arc::new(comments),
            created_schemas,
            tables,
            sequences: Arc::new(sequences),
        })
    }

    pub fn db_id(&self) -> u32 {
        self.db.as_ref().map(|d| d.id).unwrap_or(0)
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Arc<TableDesc>> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    pub fn table_by_id(&self, id: u32) -> Option<&Arc<TableDesc>> {
        self.tables.values().find(|t| t.id == id)
    }

    /// The foreign keys that reference table `parent`: `(child table, index into its
    /// foreign_keys)` each (a self-referencing table appears as its own child).
    pub fn referencing(&self, parent: u32) -> Vec<(Arc<TableDesc>, usize)> {
        let mut out = Vec::new();
        for t in self.tables.values() {
            for (i, fk) in t.foreign_keys.iter().enumerate() {
                if fk.parent == parent {
                    out.push((t.clone(), i));
                }
            }
        }
        out
    }

    pub fn has_schema(&self, name: &str) -> bool {
        name == DEFAULT_SCHEMA || self.created_schemas.iter().any(|s| s == name)
    }

    pub fn schemas(&self) -> Vec<String> {
        let mut s: Vec<String> = self.tables.keys().map(|(s, _)| s.clone()).collect();
        s.push(DEFAULT_SCHEMA.to_string());
        s.extend(self.created_schemas.iter().cloned());
        s.sort();
        s.dedup();
        s
    }
}

/// A table's descriptor as of `txn` (its own catalog writes included).
pub async fn get_table(
    txn: &Txn,
    db_id: u32,
    schema: &str,
    name: &str,
) -> SqlResult<Option<TableDesc>> {
    txn.get_cached(&table_key(db_id, schema, name))
        .await?
        .map(|b| decode_table(&b))
        .transpose()
}

/// Whether any foreign key of database `db_id` references table `parent` (a self-reference
/// included). Reads every table descriptor of the database through `txn`, as a statement's
/// catalog snapshot does, so SERIALIZABLE validates the answer against concurrent DDL.
pub async fn is_referenced(txn: &Txn, db_id: u32, parent: u32) -> SqlResult<bool> {
    let tables = tables_of(txn, db_id).await?;
    Ok(tables
        .iter()
        .any(|t| t.foreign_keys.iter().any(|fk| fk.parent == parent)))
}

pub fn put_table(txn: &mut Txn, t: &TableDesc) -> SqlResult<()> {
    txn.put(table_key(t.db_id, &t.schema, &t.name), encode(t))?;
    Ok(())
}

pub fn delete_table(txn: &mut Txn, t: &TableDesc) -> SqlResult<()> {
    txn.delete(table_key(t.db_id, &t.schema, &t.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_table() -> legacy::TableDescV1 {
        legacy::TableDescV1 {
            id: 100,
            db_id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![legacy::ColumnDescV1 {
                id: 1,
                name: "a".into(),
                ty: SqlType::Int4,
                nullable: false,
                default: Some(("7".into(), Datum::I32(7))),
                default_expr: None,
                identity_always: false,
                hidden: false,
            }],
            primary_key: vec![0],
            next_column_id: 2,
            checks: vec![],
            indexes: vec![],
            next_index_id: 2,
        }
    }

    #[test]
    fn version_1_table_descriptors_still_decode() {
        let bytes = bincode::serialize(&v1_table()).expect("serializes");
        let t = decode_table(&bytes).expect("legacy layout decodes");
        assert_eq!(t.name, "t");
        assert_eq!(t.columns[0].default, Some(("7".into(), Datum::I32(7))));
        assert_eq!(t.columns[0].generated, None);
        assert!(t.foreign_keys.is_empty());
        // Written back, it carries the header and reads as the current layout.
        let again = decode_table(&encode(&t)).expect("current layout decodes");
        assert_eq!(again, t);
    }

    #[test]
    fn version_2_table_descriptors_still_decode() {
        let v2 = legacy::TableDescV2 {
            id: 100,
            db_id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: TableDesc::from(v1_table()).columns,
            primary_key: vec![0],
            next_column_id: 2,
            checks: vec![],
            indexes: vec![legacy::IndexDescV2 {
                id: 2,
                name: "t_a_idx".into(),
                columns: vec![1],
                unique: true,
                nulls_not_distinct: false,
                constraint: false,
            }],
            next_index_id: 3,
            foreign_keys: vec![],
        };
        let mut bytes = DESC_MAGIC.to_vec();
        bytes.push(2);
        bytes.extend(bincode::serialize(&v2).expect("serializes"));
        let t = decode_table(&bytes).expect("version 2 decodes");
        assert_eq!(t.indexes.len(), 1);
        assert!(t.indexes[0].is_plain() && t.indexes[0].unique);
        assert_eq!(t.indexes[0].columns, vec![1]);
        assert_eq!(
            decode_table(&encode(&t)).expect("current layout decodes"),
            t
        );
    }

    #[test]
    fn unknown_descriptor_versions_are_refused() {
        let mut bytes = encode(&TableDesc::from(v1_table()));
        bytes[3] = DESC_VERSION + 1;
        let e = decode_table(&bytes).expect_err("future version");
        assert!(e.message.contains("format version"), "{}", e.message);
    }

    #[test]
    fn headerless_database_descriptors_still_decode() {
        let db = DbDesc {
            id: 1,
            name: "defaultdb".into(),
        };
        let old = bincode::serialize(&db).expect("serializes");
        assert_eq!(decode::<DbDesc>(&old, "database").expect("decodes"), db);
        assert_eq!(
            decode::<DbDesc>(&encode(&db), "database").expect("decodes"),
            db
        );
    }
}
