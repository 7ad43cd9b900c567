//! `pg_catalog` and `information_schema`: PostgreSQL's system catalogs, answered from Kestrel's
//! own catalog so that psql's `\d` family, JDBC `DatabaseMetaData`, SQLAlchemy reflection and
//! other introspecting clients work unmodified.
//!
//! Every catalog table is *virtual*: it has no rows in KV. When a statement names one, its rows
//! are built from the statement's [`CatalogSnapshot`] (so they are exactly as transactional as
//! the catalog itself) into one Arrow batch and served by a read-only [`SystemTable`]. Tables
//! the snapshot has nothing for (triggers, policies, publications …) exist with PostgreSQL's
//! columns and no rows, so the queries clients send plan and run.
//!
//! Object ids (`oid`) are derived, never stored:
//! * databases, tables and sequences: `16384 + descriptor id` (ids come from one counter);
//! * indexes: `0x8000_0000 + table_id·4096 + index id` (the primary key is index 1);
//! * constraints: `0x4000_0000 + table_id·4096 + n`;
//! * schemas made with CREATE SCHEMA and views: a hash of their name in their own range;
//! * built-in schemas, types, access methods and the catalog tables: PostgreSQL's own oids.
//!
//! Unqualified names resolve here before `public`, as PostgreSQL's implicit `pg_catalog`
//! first in `search_path` does ([`crate::stmt::KSchema`]).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::{CatalogSnapshot, IndexDesc, TableDesc, ViewDesc, DEFAULT_SCHEMA};
use crate::error::SqlError;
use crate::sequence::SeqDesc;
use crate::stmt::StmtCtx;
use crate::types::SqlType;

pub const PG_CATALOG: &str = "pg_catalog";
pub const INFORMATION_SCHEMA: &str = "information_schema";
pub const NS_PG_CATALOG: i64 = 11;
pub const NS_PUBLIC: i64 = 2200;
pub const NS_INFORMATION_SCHEMA: i64 = 13_000;
/// The one role: every client connects as a superuser (authentication is a later issue).
pub const ROLE_OID: i64 = 10;
/// The role that owns `public` in PostgreSQL 15.
pub const ROLE_DATABASE_OWNER: i64 = 6171;
const FIRST_USER_OID: i64 = 16_384;
const AM_HEAP: i64 = 2;
const AM_BTREE: i64 = 403;
const COLLATION_DEFAULT: i64 = 100;

pub fn desc_oid(id: u32) -> i64 {
    FIRST_USER_OID + id as i64
}

pub fn index_oid(table_id: u32, index_id: u32) -> i64 {
    0x8000_0000 + ((table_id as i64) << 12) + (index_id as i64 & 0xfff)
}

/// Constraint oids of a table by `n`: 0 the primary key, index ids for UNIQUE constraints,
/// 1024 + i foreign keys, 2048 + i checks, 3072 + i column defaults (12 bits in all).
fn constraint_oid(table_id: u32, n: i64) -> i64 {
    0x4000_0000 + ((table_id as i64) << 12) + (n & 0xfff)
}

fn hashed_oid(base: i64, text: &str) -> i64 {
    // FNV-1a: stable across runs and builds.
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    base + (h & 0x0fff_ffff) as i64
}

/// The PostgreSQL type of a Kestrel column: `(type oid, typmod)`.
pub fn type_of(ty: &SqlType) -> (i64, i32) {
    match ty {
        SqlType::Int2 => (21, -1),
        SqlType::Int4 => (23, -1),
        SqlType::Int8 => (20, -1),
        SqlType::Float4 => (700, -1),
        SqlType::Float8 => (701, -1),
        SqlType::Numeric {
            precision,
            scale,
            constrained,
        } => match constrained {
            true => (
                1700,
                (((*precision as i32) << 16) | (*scale as i32 & 0xffff)) + 4,
            ),
            false => (1700, -1),
        },
        SqlType::Text => (25, -1),
        SqlType::Varchar(n) => (1043, n.map(|n| n as i32 + 4).unwrap_or(-1)),
        SqlType::Char(n) => (1042, *n as i32 + 4),
        SqlType::Bool => (16, -1),
        SqlType::Date => (1082, -1),
        SqlType::Timestamp => (1114, -1),
        SqlType::TimestampTz => (1184, -1),
        SqlType::Bytea => (17, -1),
        SqlType::Uuid => (2950, -1),
        SqlType::Jsonb => (3802, -1),
        SqlType::Json => (114, -1),
        SqlType::Interval => (1186, -1),
        SqlType::Array(elem) => (array_type_oid(elem), -1),
    }
}

/// The oid of the array type whose elements are `elem` (`text[]` is 1009).
fn array_type_oid(elem: &SqlType) -> i64 {
    let (elem_oid, _) = type_of(elem);
    TYPES.iter().find(|t| t.0 == elem_oid).map_or(1009, |t| t.5)
}

/// A built-in type: `(oid, name, length, category, element type, array type)`.
type TypeRow = (i64, &'static str, i16, &'static str, i64, i64);

const TYPES: &[TypeRow] = &[
    (16, "bool", 1, "B", 0, 1000),
    (17, "bytea", -1, "U", 0, 1001),
    (18, "char", 1, "Z", 0, 1002),
    (19, "name", 64, "S", 0, 1003),
    (20, "int8", 8, "N", 0, 1016),
    (21, "int2", 2, "N", 0, 1005),
    (22, "int2vector", -1, "A", 21, 1006),
    (23, "int4", 4, "N", 0, 1007),
    (24, "regproc", 4, "N", 0, 1008),
    (25, "text", -1, "S", 0, 1009),
    (26, "oid", 4, "N", 0, 1028),
    (30, "oidvector", -1, "A", 26, 1013),
    (114, "json", -1, "U", 0, 199),
    (700, "float4", 4, "N", 0, 1021),
    (701, "float8", 8, "N", 0, 1022),
    (705, "unknown", -2, "X", 0, 0),
    (1000, "_bool", -1, "A", 16, 0),
    (1001, "_bytea", -1, "A", 17, 0),
    (1002, "_char", -1, "A", 18, 0),
    (1003, "_name", -1, "A", 19, 0),
    (1005, "_int2", -1, "A", 21, 0),
    (1007, "_int4", -1, "A", 23, 0),
    (1009, "_text", -1, "A", 25, 0),
    (1014, "_bpchar", -1, "A", 1042, 0),
    (1015, "_varchar", -1, "A", 1043, 0),
    (1016, "_int8", -1, "A", 20, 0),
    (1021, "_float4", -1, "A", 700, 0),
    (1022, "_float8", -1, "A", 701, 0),
    (1028, "_oid", -1, "A", 26, 0),
    (1042, "bpchar", -1, "S", 0, 1014),
    (1043, "varchar", -1, "S", 0, 1015),
    (1082, "date", 4, "D", 0, 1182),
    (1083, "time", 8, "D", 0, 1183),
    (1114, "timestamp", 8, "D", 0, 1115),
    (1115, "_timestamp", -1, "A", 1114, 0),
    (1182, "_date", -1, "A", 1082, 0),
    (1184, "timestamptz", 8, "D", 0, 1185),
    (1185, "_timestamptz", -1, "A", 1184, 0),
    (1186, "interval", 16, "T", 0, 1187),
    (1700, "numeric", -1, "N", 0, 1231),
    (1231, "_numeric", -1, "A", 1700, 0),
    (2205, "regclass", 4, "N", 0, 2210),
    (2206, "regtype", 4, "N", 0, 2211),
    (2249, "record", -1, "P", 0, 2287),
    (2278, "void", 4, "P", 0, 0),
    (2950, "uuid", 16, "U", 0, 2951),
    (2951, "_uuid", -1, "A", 2950, 0),
    (3802, "jsonb", -1, "U", 0, 3807),
];

/// `format_type(type oid, typmod)`: the SQL name PostgreSQL prints for a type.
pub fn format_type(oid: i64, typmod: i32) -> Option<String> {
    let sized = |base: &str| match typmod {
        m if m >= 4 => format!("{base}({})", m - 4),
        _ => base.to_string(),
    };
    Some(match oid {
        16 => "boolean".into(),
        17 => "bytea".into(),
        18 => "\"char\"".into(),
        19 => "name".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        25 => "text".into(),
        26 => "oid".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1042 => sized("character"),
        1043 => sized("character varying"),
        1082 => "date".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        1700 if typmod >= 4 => {
            let m = typmod - 4;
            format!("numeric({},{})", m >> 16, m & 0xffff)
        }
        1700 => "numeric".into(),
        2950 => "uuid".into(),
        3802 => "jsonb".into(),
        114 => "json".into(),
        _ => {
            let (_, name, _, cat, elem, _) = TYPES.iter().find(|t| t.0 == oid)?;
            if *cat == "A" {
                return Some(format!("{}[]", format_type(*elem, -1)?));
            }
            name.to_string()
        }
    })
}

/// What a relation (`pg_class` row) is.
#[derive(Clone, Debug)]
pub enum RelKind {
    Table(Arc<TableDesc>),
    /// `None`: the table's primary key.
    Index(Arc<TableDesc>, Option<IndexDesc>),
    Sequence(Arc<SeqDesc>),
    View(Arc<ViewDesc>),
    System(&'static SystemDef),
}

#[derive(Clone, Debug)]
pub struct Rel {
    pub oid: i64,
    pub name: String,
    pub schema: String,
    pub ns: i64,
    pub kind: RelKind,
}

impl Rel {
    fn relkind(&self) -> &'static str {
        match &self.kind {
            RelKind::Table(_) => "r",
            RelKind::Index(..) => "i",
            RelKind::Sequence(_) => "S",
            RelKind::View(_) => "v",
            RelKind::System(d) if d.schema == INFORMATION_SCHEMA => "v",
            RelKind::System(_) => "r",
        }
    }
}

/// One statement's view of the catalog, as the system tables and functions present it.
pub struct CatalogInfo {
    pub snapshot: Arc<CatalogSnapshot>,
    pub database: String,
    pub user: String,
    /// The session's parameters (for `pg_settings`).
    pub settings: Vec<(String, String)>,
    rels: OnceLock<Vec<Rel>>,
}

impl std::fmt::Debug for CatalogInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CatalogInfo({})", self.database)
    }
}

impl CatalogInfo {
    pub fn new(
        snapshot: Arc<CatalogSnapshot>,
        database: &str,
        user: &str,
        settings: Vec<(String, String)>,
    ) -> Self {
        Self {
            snapshot,
            database: database.to_string(),
            user: user.to_string(),
            settings,
            rels: OnceLock::new(),
        }
    }

    /// `(oid, name)` of every schema.
    pub fn namespaces(&self) -> Vec<(i64, String)> {
        let mut out = vec![
            (NS_PG_CATALOG, PG_CATALOG.to_string()),
            (NS_INFORMATION_SCHEMA, INFORMATION_SCHEMA.to_string()),
        ];
        for s in self.snapshot.schemas() {
            out.push((self.ns_oid(&s), s));
        }
        out
    }

    pub fn ns_oid(&self, schema: &str) -> i64 {
        match schema {
            PG_CATALOG => NS_PG_CATALOG,
            INFORMATION_SCHEMA => NS_INFORMATION_SCHEMA,
            DEFAULT_SCHEMA => NS_PUBLIC,
            s => hashed_oid(0x2000_0000, s),
        }
    }

    pub fn ns_name(&self, oid: i64) -> Option<String> {
        self.namespaces()
            .into_iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, n)| n)
    }

    /// Every relation: system tables, then tables with their indexes, sequences and views.
    pub fn rels(&self) -> &[Rel] {
        self.rels.get_or_init(|| self.build_rels())
    }

    fn build_rels(&self) -> Vec<Rel> {
        let mut out: Vec<Rel> = SYSTEM_TABLES
            .iter()
            .map(|d| Rel {
                oid: d.oid,
                name: d.name.to_string(),
                schema: d.schema.to_string(),
                ns: self.ns_oid(d.schema),
                kind: RelKind::System(d),
            })
            .collect();
        for ((schema, name), t) in &self.snapshot.tables {
            let ns = self.ns_oid(schema);
            let rel = |oid, name: String, kind| Rel {
                oid,
                name,
                schema: schema.clone(),
                ns,
                kind,
            };
            out.push(rel(desc_oid(t.id), name.clone(), RelKind::Table(t.clone())));
            if !t.has_hidden_key() {
                out.push(rel(
                    index_oid(t.id, 1),
                    t.pkey_name(),
                    RelKind::Index(t.clone(), None),
                ));
            }
            for ix in &t.indexes {
                out.push(rel(
                    index_oid(t.id, ix.id),
                    ix.name.clone(),
                    RelKind::Index(t.clone(), Some(ix.clone())),
                ));
            }
        }
        for ((schema, name), s) in self.snapshot.sequences.iter() {
            out.push(Rel {
                oid: desc_oid(s.id),
                name: name.clone(),
                schema: schema.clone(),
                ns: self.ns_oid(schema),
                kind: RelKind::Sequence(s.clone()),
            });
        }
        for ((schema, name), v) in self.snapshot.views.iter() {
            out.push(Rel {
                oid: hashed_oid(0x3000_0000, &format!("{schema}.{name}")),
                name: name.clone(),
                schema: schema.clone(),
                ns: self.ns_oid(schema),
                kind: RelKind::View(v.clone()),
            });
        }
        out
    }

    pub fn rel(&self, oid: i64) -> Option<&Rel> {
        self.rels().iter().find(|r| r.oid == oid)
    }

    /// A relation named the way `regclass` input reads names (`t`, `s.t`, `"T"`): unqualified
    /// names look in `pg_catalog`, then `public`.
    pub fn rel_by_name(&self, text: &str) -> Result<Option<&Rel>, SqlError> {
        let (schema, name) = crate::sequence::parse_name(text)?;
        let qualified = text.contains('.');
        let found = |s: &str| self.rels().iter().find(|r| r.schema == s && r.name == name);
        Ok(match qualified {
            true => found(&schema),
            false => found(PG_CATALOG).or_else(|| found(DEFAULT_SCHEMA)),
        })
    }

    /// Schemas on the search path: `pg_catalog` (implicitly first) and `public`.
    pub fn visible(&self, rel: &Rel) -> bool {
        rel.schema == PG_CATALOG || rel.schema == DEFAULT_SCHEMA
    }

    /// `pg_get_indexdef`: the CREATE INDEX that makes the index (or one column's name).
    pub fn indexdef(&self, rel: &Rel, column: i64) -> Option<String> {
        let RelKind::Index(t, ix) = &rel.kind else {
            return None;
        };
        let names = index_columns(t, ix.as_ref());
        if column > 0 {
            return names.get(column as usize - 1).cloned();
        }
        let unique = ix.as_ref().map(|i| i.unique).unwrap_or(true);
        let nnd = match ix {
            Some(i) if i.nulls_not_distinct => " NULLS NOT DISTINCT",
            _ => "",
        };
        // PostgreSQL's deparser parenthesizes every predicate but a bare column.
        let predicate = match ix.as_ref().and_then(|i| i.predicate.as_ref()) {
            Some(p) if crate::check::stored_column_ref(p).is_some() => format!(" WHERE {p}"),
            Some(p) => format!(" WHERE ({p})"),
            None => String::new(),
        };
        Some(format!(
            "CREATE {}INDEX {} ON {}.{} USING btree ({}){}{}",
            if unique { "UNIQUE " } else { "" },
            quote_ident(&rel.name),
            quote_ident(&rel.schema),
            quote_ident(&t.name),
            names.join(", "),
            nnd,
            predicate
        ))
    }

    /// Every constraint (`pg_constraint` row) of every table.
    pub fn constraints(&self) -> Vec<Constraint> {
        let mut out = Vec::new();
        for t in self.snapshot.tables.values() {
            if !t.has_hidden_key() {
                out.push(Constraint {
                    oid: constraint_oid(t.id, 0),
                    name: t.pkey_name(),
                    table: t.clone(),
                    kind: "p",
                    index: index_oid(t.id, 1),
                    columns: t.primary_key.iter().map(|&p| attnum(t, p)).collect(),
                    check: None,
                    fk: None,
                });
            }
            for ix in t.indexes.iter().filter(|i| i.constraint) {
                out.push(Constraint {
                    oid: constraint_oid(t.id, ix.id as i64),
                    name: ix.name.clone(),
                    table: t.clone(),
                    kind: "u",
                    index: index_oid(t.id, ix.id),
                    columns: t
                        .index_positions(ix)
                        .into_iter()
                        .map(|p| attnum(t, p))
                        .collect(),
                    check: None,
                    fk: None,
                });
            }
            for (i, c) in t.checks.iter().enumerate() {
                out.push(Constraint {
                    oid: constraint_oid(t.id, 2048 + i as i64),
                    name: c.name.clone(),
                    table: t.clone(),
                    kind: "c",
                    index: 0,
                    columns: Vec::new(),
                    check: Some(c.expr.clone()),
                    fk: None,
                });
            }
            for (i, fk) in t.foreign_keys.iter().enumerate() {
                if let Some(c) = self.foreign_key(t, i as i64, fk) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The `pg_constraint` row of foreign key `fk` (number `i`) of `t`.
    fn foreign_key(
        &self,
        t: &Arc<TableDesc>,
        i: i64,
        fk: &crate::catalog::ForeignKeyDesc,
    ) -> Option<Constraint> {
        let parent = self.snapshot.table_by_id(fk.parent)?.clone();
        let attnums = |t: &TableDesc, ids: &[u16]| -> Option<Vec<i64>> {
            ids.iter()
                .map(|id| {
                    t.columns
                        .iter()
                        .position(|c| c.id == *id)
                        .map(|p| attnum(t, p))
                })
                .collect()
        };
        let columns = attnums(t, &fk.columns)?;
        let parent_columns = attnums(&parent, &fk.parent_columns)?;
        // The unique constraint the key leans on: the primary key or a unique index.
        let want: std::collections::BTreeSet<u16> = fk.parent_columns.iter().copied().collect();
        let pk_ids: std::collections::BTreeSet<u16> = parent
            .primary_key
            .iter()
            .map(|&p| parent.columns[p].id)
            .collect();
        let (index, unique_name, unique_ids) = match parent.indexes.iter().find(|ix| {
            ix.unique
                && ix
                    .columns
                    .iter()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>()
                    == want
        }) {
            _ if pk_ids == want => (
                index_oid(parent.id, 1),
                parent.pkey_name(),
                parent
                    .primary_key
                    .iter()
                    .map(|&p| parent.columns[p].id)
                    .collect(),
            ),
            Some(ix) => (
                index_oid(parent.id, ix.id),
                ix.name.clone(),
                ix.columns.clone(),
            ),
            None => (0, String::new(), Vec::new()),
        };
        Some(Constraint {
            oid: constraint_oid(t.id, 1024 + i),
            name: fk.name.clone(),
            table: t.clone(),
            kind: "f",
            index,
            columns,
            check: None,
            fk: Some(ForeignKeyInfo {
                positions_in_unique: fk
                    .parent_columns
                    .iter()
                    .map(|id| {
                        unique_ids
                            .iter()
                            .position(|u| u == id)
                            .map_or(0, |p| p as i64 + 1)
                    })
                    .collect(),
                parent,
                parent_columns,
                unique_name,
                desc: fk.clone(),
            }),
        })
    }

    /// `pg_get_constraintdef` (`pretty`: without the CHECK expression's own parentheses).
    pub fn constraintdef(&self, oid: i64, pretty: bool) -> Option<String> {
        let c = self.constraints().into_iter().find(|c| c.oid == oid)?;
        let cols = |c: &Constraint| {
            c.columns
                .iter()
                .filter_map(|&n| column_by_attnum(&c.table, n))
                .map(|n| quote_ident(&n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(match c.kind {
            "p" => format!("PRIMARY KEY ({})", cols(&c)),
            "u" => format!("UNIQUE ({})", cols(&c)),
            "f" => {
                let f = c.fk.as_ref()?;
                let pcols: Vec<String> = f
                    .parent_columns
                    .iter()
                    .filter_map(|&n| column_by_attnum(&f.parent, n))
                    .map(|n| quote_ident(&n))
                    .collect();
                let parent = match f.parent.schema.as_str() {
                    crate::catalog::DEFAULT_SCHEMA => quote_ident(&f.parent.name),
                    s => format!("{}.{}", quote_ident(s), quote_ident(&f.parent.name)),
                };
                let mut def = format!(
                    "FOREIGN KEY ({}) REFERENCES {parent}({})",
                    cols(&c),
                    pcols.join(", ")
                );
                if f.desc.match_full {
                    def.push_str(" MATCH FULL");
                }
                if f.desc.on_update != crate::catalog::FkAction::NoAction {
                    def.push_str(&format!(" ON UPDATE {}", f.desc.on_update.sql()));
                }
                if f.desc.on_delete != crate::catalog::FkAction::NoAction {
                    def.push_str(&format!(" ON DELETE {}", f.desc.on_delete.sql()));
                }
                def
            }
            _ if pretty => format!("CHECK ({})", c.check.unwrap_or_default()),
            _ => format!("CHECK (({}))", c.check.unwrap_or_default()),
        })
    }
}

pub struct Constraint {
    pub oid: i64,
    pub name: String,
    pub table: Arc<TableDesc>,
    /// `p` primary key, `u` unique, `c` check.
    pub kind: &'static str,
    pub index: i64,
    pub columns: Vec<i64>,
    pub check: Option<String>,
    /// For a foreign key (`f`): what it references.
    pub fk: Option<ForeignKeyInfo>,
}

pub struct ForeignKeyInfo {
    pub parent: Arc<TableDesc>,
    /// The referenced columns' attnums, paired with the constraint's `columns`.
    pub parent_columns: Vec<i64>,
    /// The parent's primary key or unique constraint the key references.
    pub unique_name: String,
    /// Each referenced column's 1-based position in that unique constraint.
    pub positions_in_unique: Vec<i64>,
    pub desc: crate::catalog::ForeignKeyDesc,
}

impl CatalogInfo {
    /// `(table oid, attnum or 0, text)` of every COMMENT ON TABLE | COLUMN.
    pub fn comments(&self) -> Vec<(i64, i64, String)> {
        let mut out = Vec::new();
        for ((table, column), text) in self.snapshot.comments.iter() {
            let Some(t) = self.snapshot.tables.values().find(|t| t.id == *table) else {
                continue;
            };
            let sub = match *column {
                0 => 0,
                id => match t.columns.iter().position(|c| c.id == id) {
                    Some(pos) => attnum(t, pos),
                    None => continue,
                },
            };
            out.push((desc_oid(t.id), sub, text.clone()));
        }
        out
    }

    /// The comment on relation `oid` (`attnum` 0) or one of its columns.
    pub fn comment(&self, oid: i64, attnum: i64) -> Option<String> {
        self.comments()
            .into_iter()
            .find(|(o, s, _)| *o == oid && *s == attnum)
            .map(|(_, _, t)| t)
    }
}

/// A column's `attnum`: its 1-based position among the visible columns.
fn attnum(t: &TableDesc, pos: usize) -> i64 {
    t.visible_columns(false)
        .iter()
        .position(|&p| p == pos)
        .map(|i| i as i64 + 1)
        .unwrap_or(0)
}

fn column_by_attnum(t: &TableDesc, n: i64) -> Option<String> {
    let vis = t.visible_columns(false);
    let pos = *vis.get(usize::try_from(n - 1).ok()?)?;
    Some(t.columns[pos].name.clone())
}

/// Positions (into `columns`) of an index's key columns; `None` is the primary key.
fn key_positions(t: &TableDesc, ix: Option<&IndexDesc>) -> Vec<usize> {
    match ix {
        Some(ix) => t.index_positions(ix),
        None => t.primary_key.clone(),
    }
}

/// An index's keys as `pg_index` sees them: a column (its position) or an expression (its
/// SQL).
enum IndexKey {
    Column(usize),
    Expr(String),
}

fn index_keys(t: &TableDesc, ix: Option<&IndexDesc>) -> Vec<IndexKey> {
    let Some(ix) = ix.filter(|ix| !ix.exprs.is_empty()) else {
        return key_positions(t, ix)
            .into_iter()
            .map(IndexKey::Column)
            .collect();
    };
    ix.exprs
        .iter()
        .map(|e| {
            let column = crate::check::stored_column_ref(e).and_then(|n| t.column(&n));
            match column {
                Some((pos, _)) => IndexKey::Column(pos),
                None => IndexKey::Expr(e.clone()),
            }
        })
        .collect()
}

/// Each key as `pg_get_indexdef` writes it.
fn index_columns(t: &TableDesc, ix: Option<&IndexDesc>) -> Vec<String> {
    index_keys(t, ix)
        .into_iter()
        .map(|k| match k {
            IndexKey::Column(p) => quote_ident(&t.columns[p].name),
            IndexKey::Expr(e) => display_expr(&e),
        })
        .collect()
}

/// A stored expression with its column names quoted only where PostgreSQL's deparser would.
fn display_expr(sql: &str) -> String {
    use datafusion::sql::sqlparser::ast;
    let Ok(mut e) = crate::check::stored_expr(sql) else {
        return sql.to_string();
    };
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Identifier(i) = x {
            let name = crate::ddl::ident(i);
            if quote_ident(&name) == name {
                *i = ast::Ident::new(name);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

fn expr_column_name(sql: &str) -> String {
    crate::check::stored_expr(sql)
        .ok()
        .and_then(|e| crate::pgcompat::column_name(&e))
        .unwrap_or_else(|| "expr".into())
}

/// An identifier as PostgreSQL's `quote_ident` writes it.
pub fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !is_reserved(s) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn is_reserved(s: &str) -> bool {
    matches!(
        s,
        "all"
            | "and"
            | "any"
            | "array"
            | "as"
            | "asc"
            | "both"
            | "case"
            | "cast"
            | "check"
            | "collate"
            | "column"
            | "constraint"
            | "create"
            | "default"
            | "desc"
            | "distinct"
            | "do"
            | "else"
            | "end"
            | "false"
            | "for"
            | "foreign"
            | "from"
            | "grant"
            | "group"
            | "having"
            | "in"
            | "into"
            | "is"
            | "join"
            | "leading"
            | "limit"
            | "not"
            | "null"
            | "offset"
            | "on"
            | "only"
            | "or"
            | "order"
            | "primary"
            | "references"
            | "select"
            | "table"
            | "then"
            | "to"
            | "true"
            | "union"
            | "unique"
            | "user"
            | "using"
            | "when"
            | "where"
            | "with"
    )
}

// ---- system table definitions ----

/// A column type of a system table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    Oid,
    I2,
    I4,
    I8,
    F4,
    Bool,
    Text,
    TextList,
    I2List,
    OidList,
    /// `int2vector` / `oidvector`: arrays that print as `1 2` (clients split them).
    I2Vector,
    OidVector,
    Tstz,
}

impl Ty {
    fn arrow(self) -> DataType {
        let list = |t| DataType::List(Arc::new(Field::new_list_field(t, true)));
        match self {
            Ty::Oid | Ty::I8 => DataType::Int64,
            Ty::I2 => DataType::Int16,
            Ty::I4 => DataType::Int32,
            Ty::F4 => DataType::Float32,
            Ty::Bool => DataType::Boolean,
            Ty::Text => DataType::Utf8,
            Ty::TextList => list(DataType::Utf8),
            Ty::I2List | Ty::I2Vector => list(DataType::Int16),
            Ty::OidList | Ty::OidVector => list(DataType::Int64),
            Ty::Tstz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        }
    }

    /// `(type oid, length)` for `pg_attribute`.
    fn pg(self) -> (i64, i16) {
        match self {
            Ty::Oid => (26, 4),
            Ty::I2 => (21, 2),
            Ty::I4 => (23, 4),
            Ty::I8 => (20, 8),
            Ty::F4 => (700, 4),
            Ty::Bool => (16, 1),
            Ty::Text => (25, -1),
            Ty::TextList => (1009, -1),
            Ty::I2List => (1005, -1),
            Ty::OidList => (1028, -1),
            Ty::I2Vector => (22, -1),
            Ty::OidVector => (30, -1),
            Ty::Tstz => (1184, 8),
        }
    }
}

#[derive(Debug)]
pub struct SystemDef {
    pub schema: &'static str,
    pub name: &'static str,
    pub oid: i64,
    pub columns: &'static [(&'static str, Ty)],
}

impl SystemDef {
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, t)| {
                    let f = Field::new(*n, t.arrow(), true);
                    let vector = match t {
                        Ty::I2Vector => "int2vector",
                        Ty::OidVector => "oidvector",
                        _ => return f,
                    };
                    f.with_metadata(std::collections::HashMap::from([(
                        crate::types::PG_TYPE_META.to_string(),
                        vector.to_string(),
                    )]))
                })
                .collect::<Vec<_>>(),
        ))
    }
}

use Ty::{
    Bool as B, I2List as I2L, Oid as O, OidList as OL, Text as S, TextList as SL, Tstz as TS,
    F4 as F4T, I2 as I2T, I4 as I4T, I8 as I8T,
};

macro_rules! sys {
    ($schema:expr, $name:literal, $oid:expr, [$($col:literal : $ty:expr),* $(,)?]) => {
        SystemDef { schema: $schema, name: $name, oid: $oid, columns: &[$(($col, $ty)),*] }
    };
}

/// Every system table, in `pg_catalog` then `information_schema`.
pub static SYSTEM_TABLES: &[SystemDef] = &[
    sys!(PG_CATALOG, "pg_namespace", 2615, ["oid": O, "nspname": S, "nspowner": O, "nspacl": SL]),
    sys!(PG_CATALOG, "pg_class", 1259, [
        "oid": O, "relname": S, "relnamespace": O, "reltype": O, "reloftype": O, "relowner": O,
        "relam": O, "relfilenode": O, "reltablespace": O, "relpages": I4T, "reltuples": F4T,
        "relallvisible": I4T, "reltoastrelid": O, "relhasindex": B, "relisshared": B,
        "relpersistence": S, "relkind": S, "relnatts": I2T, "relchecks": I2T,
        "relhasrules": B, "relhastriggers": B, "relhassubclass": B, "relrowsecurity": B,
        "relforcerowsecurity": B, "relispopulated": B, "relreplident": S,
        "relispartition": B, "relrewrite": O, "relfrozenxid": I8T, "relminmxid": I8T,
        "relacl": SL, "reloptions": SL, "relpartbound": S]),
    sys!(PG_CATALOG, "pg_attribute", 1249, [
        "attrelid": O, "attname": S, "atttypid": O, "attstattarget": I4T, "attlen": I2T,
        "attnum": I2T, "attndims": I4T, "attcacheoff": I4T, "atttypmod": I4T,
        "attbyval": B, "attalign": S, "attstorage": S, "attcompression": S,
        "attnotnull": B, "atthasdef": B, "atthasmissing": B, "attidentity": S,
        "attgenerated": S, "attisdropped": B, "attislocal": B, "attinhcount": I4T,
        "attcollation": O, "attacl": SL, "attoptions": SL, "attfdwoptions": SL,
        "attmissingval": S]),
    sys!(PG_CATALOG, "pg_type", 1247, [
        "oid": O, "typname": S, "typnamespace": O, "typowner": O, "typlen": I2T,
        "typbyval": B, "typtype": S, "typcategory": S, "typispreferred": B,
        "typisdefined": B, "typdelim": S, "typrelid": O, "typsubscript": S, "typelem": O,
        "typarray": O, "typinput": S, "typoutput": S, "typreceive": S, "typsend": S,
        "typmodin": S, "typmodout": S, "typanalyze": S, "typalign": S, "typstorage": S,
        "typnotnull": B, "typbasetype": O, "typtypmod": I4T, "typndims": I4T,
        "typcollation": O, "typdefaultbin": S, "typdefault": S, "typacl": SL]),
    sys!(PG_CATALOG, "pg_index", 2610, [
        "indexrelid": O, "indrelid": O, "indnatts": I2T, "indnkeyatts": I2T,
        "indisunique": B, "indnullsnotdistinct": B, "indisprimary": B,
        "indisexclusion": B, "indimmediate": B, "indisclustered": B, "indisvalid": B,
        "indcheckxmin": B, "indisready": B, "indislive": B, "indisreplident": B,
        "indkey": Ty::I2Vector, "indcollation": Ty::OidVector, "indclass": Ty::OidVector,
        "indoption": Ty::I2Vector,
        "indexprs": S, "indpred": S]),
    sys!(PG_CATALOG, "pg_constraint", 2606, [
        "oid": O, "conname": S, "connamespace": O, "contype": S, "condeferrable": B,
        "condeferred": B, "convalidated": B, "conrelid": O, "contypid": O, "conindid": O,
        "conparentid": O, "confrelid": O, "confupdtype": S, "confdeltype": S,
        "confmatchtype": S, "conislocal": B, "coninhcount": I4T, "connoinherit": B,
        "conkey": I2L, "confkey": I2L, "conpfeqop": OL, "conppeqop": OL, "conffeqop": OL,
        "confdelsetcols": I2L, "conexclop": OL, "conbin": S]),
    sys!(PG_CATALOG, "pg_attrdef", 2604, ["oid": O, "adrelid": O, "adnum": I2T, "adbin": S]),
    sys!(PG_CATALOG, "pg_database", 1262, [
        "oid": O, "datname": S, "datdba": O, "encoding": I4T, "datlocprovider": S,
        "datistemplate": B, "datallowconn": B, "datconnlimit": I4T, "datfrozenxid": I8T,
        "datminmxid": I8T, "dattablespace": O, "datcollate": S, "datctype": S,
        "daticulocale": S, "datcollversion": S, "datacl": SL]),
    sys!(PG_CATALOG, "pg_roles", 1260, [
        "rolname": S, "rolsuper": B, "rolinherit": B, "rolcreaterole": B, "rolcreatedb": B,
        "rolcanlogin": B, "rolreplication": B, "rolconnlimit": I4T, "rolpassword": S,
        "rolvaliduntil": TS, "rolbypassrls": B, "rolconfig": SL, "oid": O]),
    sys!(PG_CATALOG, "pg_user", 12_001, [
        "usename": S, "usesysid": O, "usecreatedb": B, "usesuper": B, "userepl": B,
        "usebypassrls": B, "passwd": S, "valuntil": TS, "useconfig": SL]),
    sys!(PG_CATALOG, "pg_auth_members", 1261, [
        "oid": O, "roleid": O, "member": O, "grantor": O, "admin_option": B]),
    sys!(PG_CATALOG, "pg_settings", 12_002, [
        "name": S, "setting": S, "unit": S, "category": S, "short_desc": S, "extra_desc": S,
        "context": S, "vartype": S, "source": S, "min_val": S, "max_val": S, "enumvals": SL,
        "boot_val": S, "reset_val": S, "sourcefile": S, "sourceline": I4T,
        "pending_restart": B]),
    sys!(PG_CATALOG, "pg_am", 2601, ["oid": O, "amname": S, "amhandler": S, "amtype": S]),
    sys!(PG_CATALOG, "pg_collation", 3456, [
        "oid": O, "collname": S, "collnamespace": O, "collowner": O, "collprovider": S,
        "collisdeterministic": B, "collencoding": I4T, "collcollate": S, "collctype": S,
        "colliculocale": S, "collversion": S]),
    sys!(PG_CATALOG, "pg_tablespace", 1213, [
        "oid": O, "spcname": S, "spcowner": O, "spcacl": SL, "spcoptions": SL]),
    sys!(PG_CATALOG, "pg_description", 2609, [
        "objoid": O, "classoid": O, "objsubid": I4T, "description": S]),
    sys!(PG_CATALOG, "pg_shdescription", 2396, ["objoid": O, "classoid": O, "description": S]),
    sys!(PG_CATALOG, "pg_sequence", 2224, [
        "seqrelid": O, "seqtypid": O, "seqstart": I8T, "seqincrement": I8T, "seqmax": I8T,
        "seqmin": I8T, "seqcache": I8T, "seqcycle": B]),
    sys!(PG_CATALOG, "pg_depend", 2608, [
        "classid": O, "objid": O, "objsubid": I4T, "refclassid": O, "refobjid": O,
        "refobjsubid": I4T, "deptype": S]),
    sys!(PG_CATALOG, "pg_inherits", 2611, [
        "inhrelid": O, "inhparent": O, "inhseqno": I4T, "inhdetachpending": B]),
    sys!(PG_CATALOG, "pg_partitioned_table", 3350, [
        "partrelid": O, "partstrat": S, "partnatts": I2T, "partdefid": O, "partattrs": I2L]),
    sys!(PG_CATALOG, "pg_policy", 3256, [
        "oid": O, "polname": S, "polrelid": O, "polcmd": S, "polpermissive": B,
        "polroles": OL, "polqual": S, "polwithcheck": S]),
    sys!(PG_CATALOG, "pg_statistic_ext", 3381, [
        "oid": O, "stxrelid": O, "stxname": S, "stxnamespace": O, "stxowner": O,
        "stxstattarget": I4T, "stxkeys": I2L, "stxkind": SL, "stxexprs": S]),
    sys!(PG_CATALOG, "pg_publication", 6104, [
        "oid": O, "pubname": S, "pubowner": O, "puballtables": B, "pubinsert": B,
        "pubupdate": B, "pubdelete": B, "pubtruncate": B, "pubviaroot": B]),
    sys!(PG_CATALOG, "pg_publication_rel", 6106, [
        "oid": O, "prpubid": O, "prrelid": O, "prqual": S, "prattrs": I2L]),
    sys!(PG_CATALOG, "pg_publication_namespace", 6237, [
        "oid": O, "pnpubid": O, "pnnspid": O]),
    sys!(PG_CATALOG, "pg_trigger", 2620, [
        "oid": O, "tgrelid": O, "tgparentid": O, "tgname": S, "tgfoid": O, "tgtype": I2T,
        "tgenabled": S, "tgisinternal": B, "tgconstrrelid": O, "tgconstrindid": O,
        "tgconstraint": O, "tgdeferrable": B, "tginitdeferred": B, "tgnargs": I2T,
        "tgattr": I2L, "tgargs": S, "tgqual": S, "tgoldtable": S, "tgnewtable": S]),
    sys!(PG_CATALOG, "pg_rewrite", 2618, [
        "oid": O, "rulename": S, "ev_class": O, "ev_type": S, "ev_enabled": S,
        "is_instead": B, "ev_qual": S, "ev_action": S]),
    sys!(PG_CATALOG, "pg_enum", 3501, [
        "oid": O, "enumtypid": O, "enumsortorder": F4T, "enumlabel": S]),
    sys!(PG_CATALOG, "pg_extension", 3079, [
        "oid": O, "extname": S, "extowner": O, "extnamespace": O, "extrelocatable": B,
        "extversion": S, "extconfig": OL, "extcondition": SL]),
    sys!(PG_CATALOG, "pg_foreign_table", 3118, ["ftrelid": O, "ftserver": O, "ftoptions": SL]),
    sys!(PG_CATALOG, "pg_proc", 1255, [
        "oid": O, "proname": S, "pronamespace": O, "proowner": O, "prokind": S,
        "prorettype": O, "proargtypes": OL, "proretset": B]),
    sys!(PG_CATALOG, "pg_tables", 12_003, [
        "schemaname": S, "tablename": S, "tableowner": S, "tablespace": S, "hasindexes": B,
        "hasrules": B, "hastriggers": B, "rowsecurity": B]),
    sys!(PG_CATALOG, "pg_indexes", 12_004, [
        "schemaname": S, "tablename": S, "indexname": S, "tablespace": S, "indexdef": S]),
    sys!(PG_CATALOG, "pg_views", 12_005, [
        "schemaname": S, "viewname": S, "viewowner": S, "definition": S]),
    sys!(PG_CATALOG, "pg_matviews", 12_006, [
        "schemaname": S, "matviewname": S, "matviewowner": S, "tablespace": S,
        "hasindexes": B, "ispopulated": B, "definition": S]),
    sys!(PG_CATALOG, "pg_sequences", 12_007, [
        "schemaname": S, "sequencename": S, "sequenceowner": S, "data_type": S,
        "start_value": I8T, "min_value": I8T, "max_value": I8T, "increment_by": I8T,
        "cycle": B, "cache_size": I8T, "last_value": I8T]),
    sys!(INFORMATION_SCHEMA, "schemata", 13_001, [
        "catalog_name": S, "schema_name": S, "schema_owner": S,
        "default_character_set_catalog": S, "default_character_set_schema": S,
        "default_character_set_name": S, "sql_path": S]),
    sys!(INFORMATION_SCHEMA, "tables", 13_002, [
        "table_catalog": S, "table_schema": S, "table_name": S, "table_type": S,
        "self_referencing_column_name": S, "reference_generation": S,
        "user_defined_type_catalog": S, "user_defined_type_schema": S,
        "user_defined_type_name": S, "is_insertable_into": S, "is_typed": S,
        "commit_action": S]),
    sys!(INFORMATION_SCHEMA, "columns", 13_003, [
        "table_catalog": S, "table_schema": S, "table_name": S, "column_name": S,
        "ordinal_position": I4T, "column_default": S, "is_nullable": S, "data_type": S,
        "character_maximum_length": I4T, "character_octet_length": I4T,
        "numeric_precision": I4T, "numeric_precision_radix": I4T, "numeric_scale": I4T,
        "datetime_precision": I4T, "interval_type": S, "interval_precision": I4T,
        "character_set_catalog": S, "character_set_schema": S, "character_set_name": S,
        "collation_catalog": S, "collation_schema": S, "collation_name": S,
        "domain_catalog": S, "domain_schema": S, "domain_name": S, "udt_catalog": S,
        "udt_schema": S, "udt_name": S, "scope_catalog": S, "scope_schema": S,
        "scope_name": S, "maximum_cardinality": I4T, "dtd_identifier": S,
        "is_self_referencing": S, "is_identity": S, "identity_generation": S,
        "identity_start": S, "identity_increment": S, "identity_maximum": S,
        "identity_minimum": S, "identity_cycle": S, "is_generated": S,
        "generation_expression": S, "is_updatable": S]),
    sys!(INFORMATION_SCHEMA, "table_constraints", 13_004, [
        "constraint_catalog": S, "constraint_schema": S, "constraint_name": S,
        "table_catalog": S, "table_schema": S, "table_name": S, "constraint_type": S,
        "is_deferrable": S, "initially_deferred": S, "enforced": S, "nulls_distinct": S]),
    sys!(INFORMATION_SCHEMA, "key_column_usage", 13_005, [
        "constraint_catalog": S, "constraint_schema": S, "constraint_name": S,
        "table_catalog": S, "table_schema": S, "table_name": S, "column_name": S,
        "ordinal_position": I4T, "position_in_unique_constraint": I4T]),
    sys!(INFORMATION_SCHEMA, "check_constraints", 13_006, [
        "constraint_catalog": S, "constraint_schema": S, "constraint_name": S,
        "check_clause": S]),
    sys!(INFORMATION_SCHEMA, "referential_constraints", 13_007, [
        "constraint_catalog": S, "constraint_schema": S, "constraint_name": S,
        "unique_constraint_catalog": S, "unique_constraint_schema": S,
        "unique_constraint_name": S, "match_option": S, "update_rule": S,
        "delete_rule": S]),
    sys!(INFORMATION_SCHEMA, "views", 13_008, [
        "table_catalog": S, "table_schema": S, "table_name": S, "view_definition": S,
        "check_option": S, "is_updatable": S, "is_insertable_into": S,
        "is_trigger_updatable": S, "is_trigger_deletable": S,
        "is_trigger_insertable_into": S]),
    sys!(INFORMATION_SCHEMA, "sequences", 13_009, [
        "sequence_catalog": S, "sequence_schema": S, "sequence_name": S, "data_type": S,
        "numeric_precision": I4T, "numeric_precision_radix": I4T, "numeric_scale": I4T,
        "start_value": S, "minimum_value": S, "maximum_value": S, "increment": S,
        "cycle_option": S]),
];

pub fn system_table(schema: &str, name: &str) -> Option<&'static SystemDef> {
    SYSTEM_TABLES
        .iter()
        .find(|d| d.schema == schema && d.name == name)
}

// ---- rows ----

/// One value of a system table row.
#[derive(Clone, Debug)]
pub enum Cell {
    Null,
    I(i64),
    F(f64),
    B(bool),
    T(String),
    IL(Vec<i64>),
    TL(Vec<String>),
}

const N: Cell = Cell::Null;

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::I(v)
    }
}
impl From<i32> for Cell {
    fn from(v: i32) -> Self {
        Cell::I(v as i64)
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::B(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::T(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::T(v)
    }
}
impl From<Vec<i64>> for Cell {
    fn from(v: Vec<i64>) -> Self {
        Cell::IL(v)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Cell::Null)
    }
}

macro_rules! row {
    ($($v:expr),* $(,)?) => { vec![$(Cell::from($v)),*] };
}

/// Builds one Arrow batch from `rows` (each as wide as `def`'s columns).
pub fn build_batch(def: &SystemDef, rows: &[Vec<Cell>]) -> Result<RecordBatch, SqlError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(def.columns.len());
    for (j, (name, ty)) in def.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| r.get(j).unwrap_or(&Cell::Null));
        let bad = || SqlError::internal(format!("{}.{name}: value of the wrong kind", def.name));
        arrays.push(build_column(*ty, cells).ok_or_else(bad)?);
    }
    RecordBatch::try_new(def.arrow_schema(), arrays)
        .map_err(|e| SqlError::internal(format!("system table {}: {e}", def.name)))
}

fn build_column<'a>(ty: Ty, cells: impl Iterator<Item = &'a Cell>) -> Option<ArrayRef> {
    // One builder loop per column type: NULL, the cell kinds the type takes, else a mismatch.
    macro_rules! column {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for c in cells {
                match c {
                    Cell::Null => b.append_null(),
                    $($pat => b.append_value($val),)+
                    _ => return None,
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    // Lists: each element converted by `$conv`.
    macro_rules! list {
        ($inner:expr, $variant:ident, |$x:ident| $conv:expr) => {{
            let mut b = ListBuilder::new($inner);
            for c in cells {
                match c {
                    Cell::Null => b.append_null(),
                    Cell::$variant(v) => {
                        for $x in v {
                            b.values().append_value($conv);
                        }
                        b.append(true);
                    }
                    _ => return None,
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Some(match ty {
        Ty::Oid | Ty::I8 => column!(Int64Builder::new(), Cell::I(v) => *v),
        Ty::I4 => column!(Int32Builder::new(), Cell::I(v) => i32::try_from(*v).ok()?),
        Ty::I2 => column!(Int16Builder::new(), Cell::I(v) => i16::try_from(*v).ok()?),
        Ty::Tstz => column!(
            TimestampMicrosecondBuilder::new().with_timezone("+00:00"),
            Cell::I(v) => *v
        ),
        Ty::F4 => column!(Float32Builder::new(), Cell::F(v) => *v as f32, Cell::I(v) => *v as f32),
        Ty::Bool => column!(BooleanBuilder::new(), Cell::B(v) => *v),
        Ty::Text => column!(StringBuilder::new(), Cell::T(v) => v),
        Ty::TextList => list!(StringBuilder::new(), TL, |s| s),
        Ty::I2List | Ty::I2Vector => list!(Int16Builder::new(), IL, |x| i16::try_from(*x).ok()?),
        Ty::OidList | Ty::OidVector => list!(Int64Builder::new(), IL, |x| *x),
    })
}

/// The rows of system table `def` (`databases`: every database, for `pg_database`).
pub fn rows(
    info: &CatalogInfo,
    def: &SystemDef,
    databases: &[crate::catalog::DbDesc],
) -> Vec<Vec<Cell>> {
    match (def.schema, def.name) {
        (PG_CATALOG, "pg_namespace") => info
            .namespaces()
            .into_iter()
            .map(|(oid, name)| {
                let owner = match oid {
                    NS_PUBLIC => ROLE_DATABASE_OWNER,
                    _ => ROLE_OID,
                };
                row![oid, name, owner, N]
            })
            .collect(),
        (PG_CATALOG, "pg_class") => info.rels().iter().map(|r| class_row(r)).collect(),
        (PG_CATALOG, "pg_attribute") => attribute_rows(info),
        (PG_CATALOG, "pg_type") => type_rows(info),
        (PG_CATALOG, "pg_index") => index_rows(info),
        (PG_CATALOG, "pg_constraint") => constraint_rows(info),
        (PG_CATALOG, "pg_attrdef") => attrdef_rows(info),
        (PG_CATALOG, "pg_database") => databases
            .iter()
            .map(|d| {
                row![
                    desc_oid(d.id),
                    d.name.clone(),
                    ROLE_OID,
                    6,
                    "c",
                    false,
                    true,
                    -1,
                    0i64,
                    1i64,
                    1663i64,
                    "C",
                    "C",
                    N,
                    N,
                    N
                ]
            })
            .collect(),
        (PG_CATALOG, "pg_roles") => vec![row![
            info.user.clone(),
            true,
            true,
            true,
            true,
            true,
            true,
            -1,
            "********",
            N,
            true,
            N,
            ROLE_OID
        ]],
        (PG_CATALOG, "pg_user") => vec![row![
            info.user.clone(),
            ROLE_OID,
            true,
            true,
            true,
            true,
            "********",
            N,
            N
        ]],
        (PG_CATALOG, "pg_settings") => info
            .settings
            .iter()
            .map(|(k, v)| {
                row![
                    k.clone(),
                    v.clone(),
                    N,
                    "Kestrel",
                    N,
                    N,
                    "user",
                    "string",
                    "session",
                    N,
                    N,
                    N,
                    v.clone(),
                    v.clone(),
                    N,
                    N,
                    false
                ]
            })
            .collect(),
        (PG_CATALOG, "pg_am") => vec![
            row![AM_HEAP, "heap", "heap_tableam_handler", "t"],
            row![AM_BTREE, "btree", "bthandler", "i"],
        ],
        (PG_CATALOG, "pg_collation") => vec![
            row![
                COLLATION_DEFAULT,
                "default",
                NS_PG_CATALOG,
                ROLE_OID,
                "d",
                true,
                -1,
                N,
                N,
                N,
                N
            ],
            row![
                950i64,
                "C",
                NS_PG_CATALOG,
                ROLE_OID,
                "c",
                true,
                -1,
                "C",
                "C",
                N,
                N
            ],
            row![
                951i64,
                "POSIX",
                NS_PG_CATALOG,
                ROLE_OID,
                "c",
                true,
                -1,
                "POSIX",
                "POSIX",
                N,
                N
            ],
        ],
        (PG_CATALOG, "pg_description") => info
            .comments()
            .into_iter()
            .map(|(oid, sub, text)| row![oid, 1259i64, sub, text])
            .collect(),
        (PG_CATALOG, "pg_tablespace") => vec![
            row![1663i64, "pg_default", ROLE_OID, N, N],
            row![1664i64, "pg_global", ROLE_OID, N, N],
        ],
        (PG_CATALOG, "pg_sequence") => info
            .snapshot
            .sequences
            .values()
            .map(|s| {
                row![
                    desc_oid(s.id),
                    seq_type(s).0,
                    s.start,
                    s.increment,
                    s.max,
                    s.min,
                    s.cache,
                    s.cycle
                ]
            })
            .collect(),
        (PG_CATALOG, "pg_tables") => info
            .snapshot
            .tables
            .values()
            .map(|t| {
                let has_index = !t.has_hidden_key() || !t.indexes.is_empty();
                row![
                    t.schema.clone(),
                    t.name.clone(),
                    info.user.clone(),
                    N,
                    has_index,
                    false,
                    false,
                    false
                ]
            })
            .collect(),
        (PG_CATALOG, "pg_indexes") => info
            .rels()
            .iter()
            .filter_map(|r| match &r.kind {
                RelKind::Index(t, _) => Some(row![
                    r.schema.clone(),
                    t.name.clone(),
                    r.name.clone(),
                    N,
                    info.indexdef(r, 0)
                ]),
                _ => None,
            })
            .collect(),
        (PG_CATALOG, "pg_views") => info
            .snapshot
            .views
            .values()
            .map(|v| {
                row![
                    v.schema.clone(),
                    v.name.clone(),
                    info.user.clone(),
                    v.query.clone()
                ]
            })
            .collect(),
        (PG_CATALOG, "pg_sequences") => info
            .snapshot
            .sequences
            .values()
            .map(|s| {
                row![
                    s.schema.clone(),
                    s.name.clone(),
                    info.user.clone(),
                    seq_type(s).1,
                    s.start,
                    s.min,
                    s.max,
                    s.increment,
                    s.cycle,
                    s.cache,
                    N
                ]
            })
            .collect(),
        (INFORMATION_SCHEMA, name) => information_schema_rows(info, name),
        _ => Vec::new(),
    }
}

/// `(type oid, type name)` of a sequence, read off its bounds.
fn seq_type(s: &SeqDesc) -> (i64, &'static str) {
    match s.type_name() {
        "smallint" => (21, "smallint"),
        "integer" => (23, "integer"),
        _ => (20, "bigint"),
    }
}

fn class_row(r: &Rel) -> Vec<Cell> {
    let (am, natts, checks, has_index) = match &r.kind {
        RelKind::Table(t) => (
            AM_HEAP,
            t.visible_columns(false).len() as i64,
            t.checks.len() as i64,
            !t.has_hidden_key() || !t.indexes.is_empty(),
        ),
        RelKind::Index(t, ix) => (
            AM_BTREE,
            index_columns(t, ix.as_ref()).len() as i64,
            0,
            false,
        ),
        RelKind::Sequence(_) => (AM_HEAP, 3, 0, false),
        RelKind::View(v) => (0, v.columns.len() as i64, 0, false),
        RelKind::System(d) => (AM_HEAP, d.columns.len() as i64, 0, false),
    };
    row![
        r.oid,
        r.name.clone(),
        r.ns,
        0i64,
        0i64,
        ROLE_OID,
        am,
        r.oid,
        0i64,
        0,
        0i64,
        0,
        0i64,
        has_index,
        false,
        "p",
        r.relkind(),
        natts,
        checks,
        false,
        false,
        false,
        false,
        false,
        true,
        "d",
        false,
        0i64,
        0i64,
        0i64,
        N,
        N,
        N
    ]
}

/// `(attname, type oid, typmod, not null, has default, identity, generated)` of a relation's
/// columns (`identity` `a` for GENERATED ALWAYS AS IDENTITY, `generated` `s` for STORED).
type ColumnFacts = (String, i64, i32, bool, bool, &'static str, &'static str);

fn rel_columns(r: &Rel) -> Vec<ColumnFacts> {
    match &r.kind {
        RelKind::Table(t) => t
            .visible_columns(false)
            .into_iter()
            .map(|p| {
                let c = &t.columns[p];
                let (oid, typmod) = type_of(&c.ty);
                let has_default =
                    c.default.is_some() || c.default_expr.is_some() || c.generated.is_some();
                let identity = if c.identity_always { "a" } else { "" };
                let generated = if c.generated.is_some() { "s" } else { "" };
                (
                    c.name.clone(),
                    oid,
                    typmod,
                    !c.nullable,
                    has_default,
                    identity,
                    generated,
                )
            })
            .collect(),
        RelKind::Index(t, ix) => index_keys(t, ix.as_ref())
            .into_iter()
            .map(|k| match k {
                IndexKey::Column(p) => {
                    let c = &t.columns[p];
                    let (oid, typmod) = type_of(&c.ty);
                    (c.name.clone(), oid, typmod, false, false, "", "")
                }
                // PostgreSQL names an expression column after the expression's function.
                IndexKey::Expr(e) => (expr_column_name(&e), 25, -1, false, false, "", ""),
            })
            .collect(),
        RelKind::Sequence(_) => vec![
            ("last_value".into(), 20, -1, true, false, "", ""),
            ("log_cnt".into(), 20, -1, true, false, "", ""),
            ("is_called".into(), 16, -1, true, false, "", ""),
        ],
        RelKind::View(_) => Vec::new(),
        RelKind::System(d) => d
            .columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.pg().0, -1, false, false, "", ""))
            .collect(),
    }
}

fn type_len(oid: i64) -> i64 {
    TYPES
        .iter()
        .find(|t| t.0 == oid)
        .map(|t| t.2 as i64)
        .unwrap_or(-1)
}

fn collation_of(type_oid: i64) -> i64 {
    match type_oid {
        25 | 1042 | 1043 | 19 => COLLATION_DEFAULT,
        _ => 0,
    }
}

fn attribute_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for r in info.rels() {
        for (i, (name, ty, typmod, notnull, hasdef, identity, generated)) in
            rel_columns(r).into_iter().enumerate()
        {
            let len = type_len(ty);
            out.push(row![
                r.oid,
                name,
                ty,
                -1,
                len,
                (i + 1) as i64,
                0,
                -1,
                typmod,
                (1..=8).contains(&len),
                "i",
                if len == -1 { "x" } else { "p" },
                "",
                notnull,
                hasdef,
                false,
                identity,
                generated,
                false,
                true,
                0,
                collation_of(ty),
                N,
                N,
                N,
                N
            ]);
        }
    }
    out
}

fn type_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    let _ = info;
    TYPES
        .iter()
        .map(|&(oid, name, len, cat, elem, array)| {
            let typtype = if cat == "P" { "p" } else { "b" };
            row![
                oid,
                name,
                NS_PG_CATALOG,
                ROLE_OID,
                len as i64,
                (1..=8).contains(&len),
                typtype,
                cat,
                false,
                true,
                ",",
                0i64,
                N,
                elem,
                array,
                if cat == "A" {
                    "array_in".to_string()
                } else {
                    format!("{name}in")
                },
                if cat == "A" {
                    "array_out".to_string()
                } else {
                    format!("{name}out")
                },
                N,
                N,
                N,
                N,
                N,
                "i",
                if len == -1 { "x" } else { "p" },
                false,
                0i64,
                -1,
                0,
                collation_of(oid),
                N,
                N,
                N
            ]
        })
        .collect()
}

fn index_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for r in info.rels() {
        let RelKind::Index(t, ix) = &r.kind else {
            continue;
        };
        let keys: Vec<i64> = index_keys(t, ix.as_ref())
            .iter()
            .map(|k| match k {
                IndexKey::Column(p) => attnum(t, *p),
                IndexKey::Expr(_) => 0,
            })
            .collect();
        let exprs = ix
            .as_ref()
            .filter(|i| !i.exprs.is_empty())
            .map(|i| i.exprs.join(", "));
        let predicate = ix.as_ref().and_then(|i| i.predicate.clone());
        let n = keys.len() as i64;
        let unique = ix.as_ref().map(|i| i.unique).unwrap_or(true);
        let nnd = ix.as_ref().is_some_and(|i| i.nulls_not_distinct);
        let zeros = vec![0i64; keys.len()];
        out.push(row![
            r.oid,
            desc_oid(t.id),
            n,
            n,
            unique,
            nnd,
            ix.is_none(),
            false,
            true,
            false,
            true,
            false,
            true,
            true,
            false,
            keys,
            zeros.clone(),
            zeros.clone(),
            zeros,
            exprs,
            predicate
        ]);
    }
    out
}

fn constraint_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    info.constraints()
        .into_iter()
        .map(|c| {
            let keys = match c.kind {
                "c" => Cell::Null,
                _ => Cell::IL(c.columns.clone()),
            };
            let (confrelid, upd, del, matchtype, confkey) = match &c.fk {
                Some(f) => (
                    desc_oid(f.parent.id),
                    f.desc.on_update.letter(),
                    f.desc.on_delete.letter(),
                    if f.desc.match_full { "f" } else { "s" },
                    Cell::IL(f.parent_columns.clone()),
                ),
                None => (0, " ", " ", " ", Cell::Null),
            };
            vec![
                c.oid.into(),
                c.name.clone().into(),
                info.ns_oid(&c.table.schema).into(),
                c.kind.into(),
                false.into(),
                false.into(),
                true.into(),
                desc_oid(c.table.id).into(),
                0i64.into(),
                c.index.into(),
                0i64.into(),
                confrelid.into(),
                upd.into(),
                del.into(),
                matchtype.into(),
                true.into(),
                0.into(),
                false.into(),
                keys,
                confkey,
                N,
                N,
                N,
                N,
                N,
                c.check.into(),
            ]
        })
        .collect()
}

fn attrdef_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    let mut out = Vec::new();
    for t in info.snapshot.tables.values() {
        for (i, p) in t.visible_columns(false).into_iter().enumerate() {
            let c = &t.columns[p];
            let text = match (&c.default_expr, &c.default, &c.generated) {
                (Some(e), _, _) => e.clone(),
                (None, Some((text, _)), _) => text.clone(),
                (None, None, Some(g)) => g.clone(),
                (None, None, None) => continue,
            };
            out.push(row![
                constraint_oid(t.id, 3072 + i as i64),
                desc_oid(t.id),
                (i + 1) as i64,
                text
            ]);
        }
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

fn information_schema_rows(info: &CatalogInfo, name: &str) -> Vec<Vec<Cell>> {
    let db = info.database.clone();
    match name {
        "schemata" => info
            .namespaces()
            .into_iter()
            .map(|(_, n)| row![db.clone(), n, info.user.clone(), N, N, N, N])
            .collect(),
        "tables" => info
            .rels()
            .iter()
            .filter_map(|r| {
                let ty = match r.relkind() {
                    "r" => "BASE TABLE",
                    "v" => "VIEW",
                    _ => return None,
                };
                let insertable = matches!(r.kind, RelKind::Table(_));
                Some(row![
                    db.clone(),
                    r.schema.clone(),
                    r.name.clone(),
                    ty,
                    N,
                    N,
                    N,
                    N,
                    N,
                    yes(insertable),
                    "NO",
                    N
                ])
            })
            .collect(),
        "columns" => column_rows(info),
        "table_constraints" => info
            .constraints()
            .into_iter()
            .map(|c| {
                let ty = match c.kind {
                    "p" => "PRIMARY KEY",
                    "u" => "UNIQUE",
                    "f" => "FOREIGN KEY",
                    _ => "CHECK",
                };
                row![
                    db.clone(),
                    c.table.schema.clone(),
                    c.name.clone(),
                    db.clone(),
                    c.table.schema.clone(),
                    c.table.name.clone(),
                    ty,
                    "NO",
                    "NO",
                    "YES",
                    if c.kind == "u" { Some("YES") } else { None }
                ]
            })
            .collect(),
        "key_column_usage" => {
            let mut out = Vec::new();
            for c in info.constraints().into_iter().filter(|c| c.kind != "c") {
                for (i, n) in c.columns.iter().enumerate() {
                    let in_unique =
                        c.fk.as_ref()
                            .and_then(|f| f.positions_in_unique.get(i).copied());
                    out.push(row![
                        db.clone(),
                        c.table.schema.clone(),
                        c.name.clone(),
                        db.clone(),
                        c.table.schema.clone(),
                        c.table.name.clone(),
                        column_by_attnum(&c.table, *n),
                        (i + 1) as i64,
                        in_unique
                    ]);
                }
            }
            out
        }
        "referential_constraints" => info
            .constraints()
            .into_iter()
            .filter_map(|c| {
                let f = c.fk?;
                Some(row![
                    db.clone(),
                    c.table.schema.clone(),
                    c.name.clone(),
                    db.clone(),
                    f.parent.schema.clone(),
                    f.unique_name.clone(),
                    if f.desc.match_full { "FULL" } else { "NONE" },
                    f.desc.on_update.sql(),
                    f.desc.on_delete.sql()
                ])
            })
            .collect(),
        "check_constraints" => info
            .constraints()
            .into_iter()
            .filter(|c| c.kind == "c")
            .map(|c| {
                row![
                    db.clone(),
                    c.table.schema.clone(),
                    c.name.clone(),
                    format!("({})", c.check.unwrap_or_default())
                ]
            })
            .collect(),
        "views" => info
            .snapshot
            .views
            .values()
            .map(|v| {
                row![
                    db.clone(),
                    v.schema.clone(),
                    v.name.clone(),
                    v.query.clone(),
                    "NONE",
                    "NO",
                    "NO",
                    "NO",
                    "NO",
                    "NO"
                ]
            })
            .collect(),
        "sequences" => info
            .snapshot
            .sequences
            .values()
            .map(|s| {
                let (_, ty) = seq_type(s);
                let bits = match ty {
                    "smallint" => 16,
                    "integer" => 32,
                    _ => 64,
                };
                row![
                    db.clone(),
                    s.schema.clone(),
                    s.name.clone(),
                    ty,
                    bits,
                    2,
                    0,
                    s.start.to_string(),
                    s.min.to_string(),
                    s.max.to_string(),
                    s.increment.to_string(),
                    yes(s.cycle)
                ]
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn column_rows(info: &CatalogInfo) -> Vec<Vec<Cell>> {
    let db = info.database.clone();
    let mut out = Vec::new();
    for r in info.rels() {
        let types: Vec<Option<SqlType>> = match &r.kind {
            RelKind::Table(t) => t
                .visible_columns(false)
                .into_iter()
                .map(|p| Some(t.columns[p].ty.clone()))
                .collect(),
            RelKind::System(d) => d.columns.iter().map(|(_, t)| system_sql_type(*t)).collect(),
            _ => continue,
        };
        let defaults: Vec<Option<String>> = match &r.kind {
            RelKind::Table(t) => t
                .visible_columns(false)
                .into_iter()
                .map(|p| {
                    let c = &t.columns[p];
                    c.default_expr
                        .clone()
                        .or_else(|| c.default.as_ref().map(|d| d.0.clone()))
                        .or_else(|| c.generated.clone())
                })
                .collect(),
            _ => Vec::new(),
        };
        for (i, (name, ty_oid, _typmod, notnull, _, identity, generated)) in
            rel_columns(r).into_iter().enumerate()
        {
            let sql = types.get(i).cloned().flatten();
            let (data_type, char_len, num_prec, num_radix, num_scale, dt_prec) =
                column_type_info(ty_oid, sql.as_ref());
            let udt = TYPES
                .iter()
                .find(|t| t.0 == ty_oid)
                .map(|t| t.1.to_string());
            let default = if identity.is_empty() && generated.is_empty() {
                defaults.get(i).cloned().flatten()
            } else {
                None
            };
            let generation = match generated {
                "s" => defaults.get(i).cloned().flatten(),
                _ => None,
            };
            out.push(row![
                db.clone(),
                r.schema.clone(),
                r.name.clone(),
                name,
                (i + 1) as i64,
                default,
                yes(!notnull),
                data_type,
                char_len,
                char_len.map(|n| n * 4),
                num_prec,
                num_radix,
                num_scale,
                dt_prec,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                N,
                db.clone(),
                PG_CATALOG,
                udt,
                N,
                N,
                N,
                N,
                (i + 1).to_string(),
                "NO",
                yes(!identity.is_empty()),
                if identity == "a" {
                    Some("ALWAYS")
                } else {
                    None
                },
                N,
                N,
                N,
                N,
                if identity.is_empty() {
                    None
                } else {
                    Some("NO")
                },
                if generated.is_empty() {
                    "NEVER"
                } else {
                    "ALWAYS"
                },
                generation,
                yes(matches!(r.kind, RelKind::Table(_)))
            ]);
        }
    }
    out
}

fn system_sql_type(t: Ty) -> Option<SqlType> {
    match t {
        Ty::I2 => Some(SqlType::Int2),
        Ty::I4 => Some(SqlType::Int4),
        Ty::I8 | Ty::Oid => Some(SqlType::Int8),
        Ty::F4 => Some(SqlType::Float4),
        Ty::Bool => Some(SqlType::Bool),
        Ty::Text => Some(SqlType::Text),
        Ty::Tstz => Some(SqlType::TimestampTz),
        _ => None,
    }
}

/// information_schema's `(data_type, character_maximum_length, numeric_precision,
/// numeric_precision_radix, numeric_scale, datetime_precision)` of a column.
#[allow(clippy::type_complexity)]
fn column_type_info(
    oid: i64,
    ty: Option<&SqlType>,
) -> (
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
) {
    let name = match oid {
        1043 => "character varying".to_string(),
        1042 => "character".to_string(),
        1700 => "numeric".to_string(),
        o if TYPES.iter().any(|t| t.0 == o && t.3 == "A") => "ARRAY".to_string(),
        o => format_type(o, -1).unwrap_or_else(|| "USER-DEFINED".into()),
    };
    match ty {
        Some(SqlType::Varchar(n)) => (name, n.map(|n| n as i64), N2, N2, N2, N2),
        Some(SqlType::Char(n)) => (name, Some(*n as i64), N2, N2, N2, N2),
        Some(SqlType::Int2) => (name, None, Some(16), Some(2), Some(0), None),
        Some(SqlType::Int4) => (name, None, Some(32), Some(2), Some(0), None),
        Some(SqlType::Int8) => (name, None, Some(64), Some(2), Some(0), None),
        Some(SqlType::Float4) => (name, None, Some(24), Some(2), None, None),
        Some(SqlType::Float8) => (name, None, Some(53), Some(2), None, None),
        Some(SqlType::Numeric {
            precision,
            scale,
            constrained: true,
        }) => (
            name,
            None,
            Some(*precision as i64),
            Some(10),
            Some(*scale as i64),
            None,
        ),
        Some(SqlType::Numeric { .. }) => (name, None, None, Some(10), None, None),
        Some(SqlType::Date) => (name, None, None, None, None, Some(0)),
        Some(SqlType::Timestamp | SqlType::TimestampTz) => (name, None, None, None, None, Some(6)),
        _ => (name, None, None, None, None, None),
    }
}

const N2: Option<i64> = None;

// ---- DataFusion plumbing ----

/// A read-only system table: one batch built when the statement named it.
#[derive(Debug)]
pub struct SystemTable {
    def: &'static SystemDef,
    mem: MemTable,
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.def.arrow_schema()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.mem.scan(state, projection, filters, limit).await
    }
}

impl SystemTable {
    pub fn def(&self) -> &'static SystemDef {
        self.def
    }
}

/// Builds the system table `def` for one statement.
pub async fn open(
    info: &CatalogInfo,
    ctx: &StmtCtx,
    def: &'static SystemDef,
) -> Result<SystemTable, SqlError> {
    let databases = match def.name {
        "pg_database" => crate::catalog::list_databases(&*ctx.txn.read().await).await?,
        _ => Vec::new(),
    };
    let batch = build_batch(def, &rows(info, def, &databases))?;
    let mem = MemTable::try_new(def.arrow_schema(), vec![vec![batch]])
        .map_err(crate::error::from_datafusion)?;
    Ok(SystemTable { def, mem })
}

/// `pg_catalog` or `information_schema` as a DataFusion schema.
#[derive(Debug)]
pub struct SystemSchema {
    pub schema: &'static str,
    pub info: Arc<CatalogInfo>,
    pub ctx: Arc<StmtCtx>,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES
            .iter()
            .filter(|d| d.schema == self.schema)
            .map(|d| d.name.to_string())
            .collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match system_table(self.schema, name) {
            None => Ok(None),
            Some(def) => Ok(Some(Arc::new(
                open(&self.info, &self.ctx, def)
                    .await
                    .map_err(SqlError::into_datafusion)?,
            ))),
        }
    }
    fn table_exist(&self, name: &str) -> bool {
        system_table(self.schema, name).is_some()
    }
}

/// Session parameters as `pg_settings` lists them.
pub fn settings_of(vars: &BTreeMap<String, String>) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_table_builds_empty_and_rows_match_width() {
        let info = CatalogInfo::new(Arc::default(), "db", "root", vec![("a".into(), "b".into())]);
        let dbs = vec![crate::catalog::DbDesc {
            id: 1,
            name: "db".into(),
        }];
        for def in SYSTEM_TABLES {
            let rows = rows(&info, def, &dbs);
            for r in &rows {
                assert_eq!(r.len(), def.columns.len(), "{}", def.name);
            }
            build_batch(def, &rows).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        }
    }

    #[test]
    fn type_names_match_postgres() {
        assert_eq!(
            format_type(1043, 14).as_deref(),
            Some("character varying(10)")
        );
        assert_eq!(
            format_type(1700, ((10 << 16) | 2) + 4).as_deref(),
            Some("numeric(10,2)")
        );
        assert_eq!(format_type(1009, -1).as_deref(), Some("text[]"));
        assert_eq!(type_of(&SqlType::Varchar(Some(10))), (1043, 14));
        assert_eq!(quote_ident("abc"), "abc");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("user"), "\"user\"");
    }
}
