//! CREATE TABLE and DROP TABLE: catalog changes inside the statement's transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, CreateTable, Ident, ObjectName, TableConstraint,
};
use kestrel_kv::keys::table_span;
use kestrel_kv::{Kv, Txn};

use crate::catalog::{
    self, CatalogSnapshot, CheckDesc, ColumnDesc, IndexDesc, TableDesc, DEFAULT_SCHEMA,
};
use crate::datum::Datum;
use crate::error::{code, SqlError, SqlResult};
use crate::index::{index_span, Resolved, INDEXES_MAX};
use crate::types::SqlType;

/// The most columns a table may have (as in PostgreSQL); column ids are `u16`.
pub const COLUMNS_MAX: usize = 1600;

/// Work that may only run once the statement's transaction has committed.
#[derive(Debug)]
pub enum AfterCommit {
    /// Drop the data of a dropped table.
    ClearSpan(Vec<u8>, Vec<u8>),
    /// Drop the node's reserved values of an altered sequence (by uid).
    ForgetSequence(u64),
}

/// An identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The last part of a possibly qualified name, folded like an identifier (`""` if it is not
/// a plain identifier).
pub fn last_ident(n: &ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident)
        .unwrap_or_default()
}

/// The `DEFAULT` keyword where a value may stand (`VALUES`, `SET col = DEFAULT`).
pub fn is_default_keyword(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i)
        if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `(schema, table)` of a possibly qualified name in the session's database.
pub fn table_name(name: &ObjectName, db: &str) -> SqlResult<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(ident)
                .ok_or_else(|| SqlError::syntax(format!("invalid name {name}")))
        })
        .collect::<SqlResult<_>>()?;
    qualify(&parts, db)
}

/// `(schema, name)` of a relation named by folded name parts in database `db`.
pub(crate) fn qualify(parts: &[String], db: &str) -> SqlResult<(String, String)> {
    match parts {
        [t] => Ok((DEFAULT_SCHEMA.to_string(), t.clone())),
        [s, t] => Ok((s.clone(), t.clone())),
        [d, s, t] if d == db => Ok((s.clone(), t.clone())),
        [d, _, _] => Err(SqlError::unsupported(format!(
            "cross-database reference to \"{d}\""
        ))),
        _ => Err(SqlError::syntax(format!(
            "improper qualified name (too many dotted names): {}",
            parts.join(".")
        ))),
    }
}

/// Evaluates a constant expression to a value of `ty` (DEFAULT clauses).
pub type ConstEval<'a> =
    &'a (dyn Fn(&ast::Expr, &SqlType) -> futures::future::BoxFuture<'a, SqlResult<Datum>> + Sync);

pub struct DdlCtx<'a> {
    pub kv: &'a Arc<Kv>,
    /// For compiling expressions (CHECK constraints) against a table.
    pub state: &'a datafusion::execution::SessionState,
    pub db: &'a str,
    pub snapshot: &'a CatalogSnapshot,
    pub eval: ConstEval<'a>,
    /// The node's sequence allocator (dropped sequences forget their reserved values).
    pub sequences: &'a crate::sequence::Sequences,
}

/// Whether a DEFAULT must be evaluated per row (it calls a function); column references
/// and subqueries are rejected as in PostgreSQL.
pub(crate) fn default_is_per_row(e: &ast::Expr) -> SqlResult<bool> {
    let mut calls = false;
    let mut bad = None;
    let _ = ast::visit_expressions(e, |x| {
        match x {
            ast::Expr::Function(_) => calls = true,
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
                bad = Some("cannot use subquery in DEFAULT expression");
            }
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                bad = Some("cannot use column reference in DEFAULT expression");
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    match bad {
        Some(m) => Err(SqlError::new(code::FEATURE_NOT_SUPPORTED, m)),
        None => Ok(calls),
    }
}

/// `x::regclass` is just `x` for Kestrel's sequence functions (they take the name as text).
pub fn strip_regclass(e: &ast::Expr) -> ast::Expr {
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if let ast::Expr::Cast {
            expr, data_type, ..
        } = x
        {
            if data_type.to_string().eq_ignore_ascii_case("regclass") {
                *x = expr.as_ref().clone();
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e
}

/// A sequence-backed column (SERIAL or IDENTITY) waiting for its table's id.
#[derive(Debug, Clone)]
pub struct SerialSpec {
    pub column: String,
    pub ty: SqlType,
    pub options: Vec<ast::SequenceOptions>,
}

/// What column definitions add to their table besides the columns.
#[derive(Debug, Default)]
pub struct ColumnExtras {
    pub checks: Vec<CheckDesc>,
    pub uniques: Vec<UniqueSpec>,
    pub serials: Vec<SerialSpec>,
    pub fks: Vec<crate::fk::FkSpec>,
    /// `(domain, column id)` of the columns declared with a domain.
    pub domains: Vec<(Arc<catalog::DomainDesc>, u16)>,
}

/// The domain a column type names, if it names one.
fn domain_of(ddl: &DdlCtx<'_>, dt: &ast::DataType) -> SqlResult<Option<Arc<catalog::DomainDesc>>> {
    let ast::DataType::Custom(name, mods) = dt else {
        return Ok(None);
    };
    if !mods.is_empty() {
        return Ok(None);
    }
    let (schema, n) = table_name(name, ddl.db)?;
    Ok(ddl.snapshot.domains.get(&(schema, n)).cloned())
}

/// A domain's DEFAULT (unless the column has its own) and CHECKs (over the column instead
/// of `VALUE`, keeping the domain's constraint names) as options of a column.
fn domain_options(
    d: &catalog::DomainDesc,
    column: &ast::Ident,
    options: &mut Vec<ast::ColumnOptionDef>,
) -> SqlResult<()> {
    let parse = crate::check::stored_expr;
    let has_default = options
        .iter()
        .any(|o| matches!(o.option, ColumnOption::Default(_)));
    if let (Some(def), false) = (&d.default, has_default) {
        options.push(ast::ColumnOptionDef {
            name: None,
            option: ColumnOption::Default(parse(def)?),
        });
    }
    for ck in &d.checks {
        let mut e = parse(&ck.expr)?;
        let _ = ast::visit_expressions_mut(&mut e, |x| {
            if matches!(x, ast::Expr::Identifier(i) if ident(i) == "value") {
                *x = ast::Expr::Identifier(column.clone());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        options.push(ast::ColumnOptionDef {
            name: Some(ast::Ident::with_quote('"', ck.name.clone())),
            option: ColumnOption::Check(ast::CheckConstraint {
                name: None,
                expr: Box::new(e),
                enforced: None,
            }),
        });
    }
    Ok(())
}

/// `COMMENT ON TABLE t | COLUMN t.c IS 'text' | NULL`.
pub fn comment_on(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    kind: &ast::CommentObject,
    name: &ObjectName,
    text: Option<&str>,
) -> SqlResult<String> {
    let (table_part, column) = match kind {
        ast::CommentObject::Table => (name.clone(), None),
        ast::CommentObject::Column => {
            let mut parts = name.0.clone();
            let col = parts
                .pop()
                .and_then(|p| p.as_ident().map(ident))
                .filter(|_| !parts.is_empty())
                .ok_or_else(|| SqlError::syntax("column name must be qualified"))?;
            (ObjectName(parts), Some(col))
        }
        other => return Err(SqlError::unsupported(format!("COMMENT ON {other}"))),
    };
    let (schema, table) = table_name(&table_part, ddl.db)?;
    let Some(t) = ddl.snapshot.table(&schema, &table) else {
        return Err(SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{table}\" does not exist"),
        ));
    };
    let column_id = match &column {
        None => 0,
        Some(c) => {
            let col = t
                .columns
                .iter()
                .find(|x| &x.name == c && !x.hidden)
                .ok_or_else(|| {
                    SqlError::new(
                        code::UNDEFINED_COLUMN,
                        format!("column \"{c}\" of relation \"{table}\" does not exist"),
                    )
                })?;
            col.id
        }
    };
    catalog::set_comment(txn, t.db_id, t.id, column_id, text)?;
    Ok("COMMENT".into())
}

/// `CREATE DOMAIN name AS type [DEFAULT expr] [CONSTRAINT c] CHECK (…) …`.
pub fn create_domain(ddl: &DdlCtx<'_>, txn: &mut Txn, cd: &ast::CreateDomain) -> SqlResult<String> {
    let (schema, name) = table_name(&cd.name, ddl.db)?;
    if ddl
        .snapshot
        .domains
        .contains_key(&(schema.clone(), name.clone()))
    {
        return Err(SqlError::new(
            code::DUPLICATE_OBJECT,
            format!("type \"{name}\" already exists"),
        ));
    }
    let base = SqlType::from_ast(&cd.data_type)?;
    let mut checks: Vec<CheckDesc> = Vec::new();
    for c in &cd.constraints {
        let ast::TableConstraint::Check(ck) = c else {
            return Err(SqlError::unsupported(format!("domain constraint {c}")));
        };
        let name = match &ck.name {
            Some(n) => ident(n),
            None => unique_check_name(&checks, &format!("{name}_check")),
        };
        checks.push(CheckDesc {
            name,
            expr: ck.expr.to_string(),
        });
    }
    let d = catalog::DomainDesc {
        db_id: ddl.snapshot.db_id(),
        schema,
        name,
        base,
        default: cd.default.as_ref().map(|e| e.to_string()),
        checks,
        users: Vec::new(),
    };
    // The checks must compile over a column of the base type.
    let probe = TableDesc {
        id: 0,
        db_id: d.db_id,
        schema: d.schema.clone(),
        name: d.name.clone(),
        columns: vec![ColumnDesc {
            id: 1,
            name: "value".into(),
            ty: d.base.clone(),
            nullable: true,
            default: None,
            default_expr: None,
            identity_always: false,
            hidden: false,
            generated: None,
        }],
        primary_key: vec![],
        next_column_id: 2,
        checks: d.checks.clone(),
        indexes: vec![],
        next_index_id: 2,
        foreign_keys: vec![],
    };
    crate::check::Checks::compile(ddl.state, &probe)?;
    catalog::put_domain(txn, &d)?;
    Ok("CREATE DOMAIN".into())
}

/// `DROP DOMAIN`: 2BP01 while a column still uses it (CASCADE is not supported).
pub fn drop_domain(ddl: &DdlCtx<'_>, txn: &mut Txn, dd: &ast::DropDomain) -> SqlResult<String> {
    let (schema, name) = table_name(&dd.name, ddl.db)?;
    let Some(d) = ddl.snapshot.domains.get(&(schema, name.clone())) else {
        if dd.if_exists {
            return Ok("DROP DOMAIN".into());
        }
        return Err(SqlError::new(
            code::UNDEFINED_OBJECT,
            format!("type \"{name}\" does not exist"),
        ));
    };
    let user = d.users.iter().find_map(|&(table, column)| {
        let t = ddl.snapshot.tables.values().find(|t| t.id == table)?;
        let c = t.columns.iter().find(|c| c.id == column)?;
        Some((t.name.clone(), c.name.clone()))
    });
    if let Some((t, c)) = user {
        if matches!(dd.drop_behavior, Some(ast::DropBehavior::Cascade)) {
            return Err(SqlError::unsupported("DROP DOMAIN … CASCADE"));
        }
        return Err(SqlError::new(
            code::DEPENDENT_OBJECTS_STILL_EXIST,
            format!("cannot drop type {name} because other objects depend on it"),
        )
        .with_detail(format!("column {c} of table {t} depends on type {name}")));
    }
    catalog::delete_domain(txn, d)?;
    Ok("DROP DOMAIN".into())
}

/// Records the columns of `table` declared with a domain in the domains' descriptors.
pub fn note_domain_users(
    txn: &mut Txn,
    table: u32,
    users: &[(Arc<catalog::DomainDesc>, u16)],
) -> SqlResult<()> {
    let mut changed: BTreeMap<(String, String), catalog::DomainDesc> = BTreeMap::new();
    for (d, column) in users {
        changed
            .entry((d.schema.clone(), d.name.clone()))
            .or_insert_with(|| d.as_ref().clone())
            .users
            .push((table, *column));
    }
    for d in changed.values() {
        catalog::put_domain(txn, d)?;
    }
    Ok(())
}

/// The integer type behind `SERIAL`-style pseudo types.
fn serial_type(dt: &ast::DataType) -> Option<SqlType> {
    match dt.to_string().to_lowercase().as_str() {
        "smallserial" | "serial2" => Some(SqlType::Int2),
        "serial" | "serial4" => Some(SqlType::Int4),
        "bigserial" | "serial8" => Some(SqlType::Int8),
        _ => None,
    }
}

/// A UNIQUE constraint before it becomes an index.
#[derive(Debug, Clone)]
pub struct UniqueSpec {
    pub name: Option<String>,
    pub columns: Vec<String>,
    pub nulls_not_distinct: bool,
}

impl UniqueSpec {
    pub fn from_constraint(u: &ast::UniqueConstraint) -> SqlResult<Self> {
        if u.characteristics
            .is_some_and(|c| c.deferrable == Some(true))
        {
            return Err(SqlError::unsupported("deferrable unique constraints"));
        }
        Ok(Self {
            name: u.name.as_ref().map(ident),
            columns: index_column_names(&u.columns)?,
            nulls_not_distinct: u.nulls_distinct == ast::NullsDistinctOption::NotDistinct,
        })
    }
}

/// The plain column names of an index column list (expressions are not supported).
pub fn index_column_names(cols: &[ast::IndexColumn]) -> SqlResult<Vec<String>> {
    cols.iter()
        .map(|ic| match &ic.column.expr {
            ast::Expr::Identifier(id) => Ok(ident(id)),
            other => Err(SqlError::unsupported(format!("index expression {other}"))),
        })
        .collect()
}

/// The descriptor of a column definition, and whether it declares itself the primary key.
/// Column CHECK constraints go to `extras.checks` (named `{table}_{column}_check`), UNIQUE
/// constraints to `extras.uniques`, SERIAL and IDENTITY to `extras.serials`.
pub async fn column_desc(
    ddl: &DdlCtx<'_>,
    table: &str,
    c: &ast::ColumnDef,
    id: u16,
    extras: &mut ColumnExtras,
) -> SqlResult<(ColumnDesc, bool)> {
    let serial = serial_type(&c.data_type);
    let domain = domain_of(ddl, &c.data_type)?;
    let ty = match (&serial, &domain) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.base.clone(),
        (None, None) => SqlType::from_ast(&c.data_type)?,
    };
    let mut col = ColumnDesc {
        id,
        name: ident(&c.name),
        ty,
        nullable: true,
        default: None,
        default_expr: None,
        identity_always: false,
        hidden: false,
        generated: None,
    };
    let mut is_pk = false;
    if let Some(ty) = serial {
        extras.serials.push(SerialSpec {
            column: col.name.clone(),
            ty,
            options: vec![],
        });
        col.nullable = false;
    }
    let mut options = c.options.clone();
    if let Some(d) = &domain {
        domain_options(d, &c.name, &mut options)?;
        extras.domains.push((d.clone(), id));
    }
    let checks = &mut extras.checks;
    let uniques = &mut extras.uniques;
    let serials = &mut extras.serials;
    let fks = &mut extras.fks;
    for opt in &options {
        match &opt.option {
            ColumnOption::Null => {}
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Default(e) if default_is_per_row(e)? => {
                let e = strip_regclass(e);
                crate::stmt::compile_default(ddl.state, &e.to_string(), &col.ty)?;
                col.default_expr = Some(e.to_string());
            }
            ColumnOption::Default(e) => {
                let v = (ddl.eval)(e, &col.ty).await?;
                col.default = Some((e.to_string(), v));
            }
            ColumnOption::Generated {
                generated_as: how @ (ast::GeneratedAs::Always | ast::GeneratedAs::ByDefault),
                sequence_options,
                generation_expr: None,
                ..
            } => {
                col.identity_always = matches!(how, ast::GeneratedAs::Always);
                if !matches!(col.ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) {
                    return Err(SqlError::new(
                        code::INVALID_PARAMETER_VALUE,
                        format!("identity column type must be smallint, integer, or bigint"),
                    ));
                }
                serials.push(SerialSpec {
                    column: col.name.clone(),
                    ty: col.ty.clone(),
                    options: sequence_options.clone().unwrap_or_default(),
                });
                col.nullable = false;
            }
            ColumnOption::Generated {
                generation_expr: Some(e),
                generation_expr_mode,
                ..
            } => {
                if !matches!(
                    generation_expr_mode,
                    Some(ast::GeneratedExpressionMode::Stored)
                ) {
                    return Err(SqlError::unsupported("virtual generated columns"));
                }
                col.generated = Some(e.to_string());
            }
            ColumnOption::PrimaryKey(_) => is_pk = true,
            ColumnOption::ForeignKey(f) => {
                let mut clause = f.clone();
                clause.name = opt.name.clone().or(clause.name);
                fks.push(crate::fk::FkSpec {
                    columns: vec![col.name.clone()],
                    clause,
                });
            }
            ColumnOption::Unique(u) => {
                let mut spec = UniqueSpec::from_constraint(u)?;
                spec.name = opt.name.as_ref().map(ident).or(spec.name);
                spec.columns = vec![col.name.clone()];
                uniques.push(spec);
            }
            ColumnOption::Check(ck) => {
                let name = match opt.name.as_ref().or(ck.name.as_ref()) {
                    Some(n) => ident(n),
                    None => unique_check_name(checks, &format!("{table}_{}_check", col.name)),
                };
                checks.push(CheckDesc {
                    name,
                    expr: ck.expr.to_string(),
                });
            }
            other => return Err(SqlError::unsupported(format!("column constraint {other}"))),
        }
    }
    if col.generated.is_some() && (col.default.is_some() || col.default_expr.is_some()) {
        return Err(SqlError::syntax(format!(
            "both default and generation expression specified for column \"{}\" of table \"{table}\"",
            col.name
        )));
    }
    Ok((col, is_pk))
}

/// The column positions a PRIMARY KEY constraint names, in key order.
pub fn pk_indexes(p: &ast::PrimaryKeyConstraint, columns: &[ColumnDesc]) -> SqlResult<Vec<usize>> {
    let mut idx = Vec::new();
    for ic in &p.columns {
        let ast::Expr::Identifier(id) = &ic.column.expr else {
            return Err(SqlError::unsupported(format!(
                "primary key expression {}",
                ic.column.expr
            )));
        };
        let n = ident(id);
        let pos = columns
            .iter()
            .position(|c| c.name == n && !c.hidden)
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!("column \"{n}\" named in key does not exist"),
                )
            })?;
        if idx.contains(&pos) {
            return Err(SqlError::new(
                code::DUPLICATE_COLUMN,
                format!("column \"{n}\" appears twice in primary key constraint"),
            ));
        }
        idx.push(pos);
    }
    Ok(idx)
}

/// `CREATE TABLE t (LIKE src [INCLUDING DEFAULTS])`: `t` gets `src`'s visible columns with
/// their types and NOT NULL (defaults only when included), as PostgreSQL copies them; keys,
/// indexes and CHECKs are not copied (PostgreSQL's default `EXCLUDING ALL`).
fn with_columns_of(
    ddl: &DdlCtx<'_>,
    ct: &CreateTable,
    like: &ast::CreateTableLikeKind,
) -> SqlResult<CreateTable> {
    let (ast::CreateTableLikeKind::Parenthesized(l) | ast::CreateTableLikeKind::Plain(l)) = like;
    let (schema, name) = table_name(&l.name, ddl.db)?;
    let src = ddl.snapshot.table(&schema, &name).ok_or_else(|| {
        SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{name}\" does not exist"),
        )
    })?;
    let defaults = matches!(l.defaults, Some(ast::CreateTableLikeDefaults::Including));
    let dialect = crate::dialect::KestrelDialect;
    let parse_type = |c: &ColumnDesc| {
        datafusion::sql::sqlparser::parser::Parser::new(&dialect)
            .try_with_sql(&c.ty.pg_name())
            .and_then(|mut p| p.parse_data_type())
            .map_err(|e| SqlError::internal(format!("type {}: {e}", c.ty.pg_name())))
    };
    let mut columns = ct.columns.clone();
    for c in src.columns.iter().filter(|c| !c.hidden) {
        let mut options = Vec::new();
        if !c.nullable {
            options.push(ast::ColumnOptionDef {
                name: None,
                option: ast::ColumnOption::NotNull,
            });
        }
        if defaults {
            if let Some(d) = crate::upsert::default_sql(c)
                .ok()
                .filter(|_| c.default.is_some() || c.default_expr.is_some())
            {
                options.push(ast::ColumnOptionDef {
                    name: None,
                    option: ast::ColumnOption::Default(d),
                });
            }
        }
        columns.push(ast::ColumnDef {
            name: ast::Ident::with_quote('"', c.name.clone()),
            data_type: parse_type(c)?,
            options,
        });
    }
    let mut out = ct.clone();
    out.columns = columns;
    out.like = None;
    Ok(out)
}

/// `base`, or `base1`, `base2` … if taken (PostgreSQL's naming of constraints).
pub fn unique_check_name(checks: &[CheckDesc], base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 0;
    while checks.iter().any(|c| c.name == name) {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

pub async fn create_table(ddl: &DdlCtx<'_>, txn: &mut Txn, ct: &CreateTable) -> SqlResult<String> {
    let liked;
    let ct = match &ct.like {
        Some(like) if ct.query.is_none() && ct.clone.is_none() => {
            liked = with_columns_of(ddl, ct, like)?;
            &liked
        }
        _ => ct,
    };
    if ct.query.is_some() || ct.like.is_some() || ct.clone.is_some() {
        return Err(SqlError::unsupported("CREATE TABLE … AS / CLONE"));
    }
    if ct.temporary {
        return Err(SqlError::unsupported("temporary tables"));
    }
    let (schema, name) = table_name(&ct.name, ddl.db)?;
    if !ddl.snapshot.has_schema(&schema) {
        return Err(SqlError::new(
            code::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        ));
    }
    let key = (schema.clone(), name.clone());
    let other_relation = ddl.snapshot.views.contains_key(&key)
        || ddl.snapshot.sequences.contains_key(&key)
        || ddl
            .snapshot
            .tables
            .values()
            .any(|t| t.schema == schema && t.indexes.iter().any(|ix| ix.name == name));
    if ddl.snapshot.table(&schema, &name).is_some() || other_relation {
        if ct.if_not_exists {
            return Ok("CREATE TABLE".into());
        }
        return Err(SqlError::new(
            code::DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
        ));
    }
    if ct.columns.len() > COLUMNS_MAX {
        return Err(SqlError::new(
            code::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {COLUMNS_MAX} columns"),
        ));
    }
    let mut columns: Vec<ColumnDesc> = Vec::new();
    let mut pk: Option<Vec<usize>> = None;
    let mut set_pk = |cols: Vec<usize>| -> SqlResult<()> {
        if pk.is_some() {
            return Err(SqlError::new(
                code::INVALID_TABLE_DEFINITION,
                format!("multiple primary keys for table \"{name}\" are not allowed"),
            ));
        }
        pk = Some(cols);
        Ok(())
    };
    let mut extras = ColumnExtras::default();
    for (i, c) in ct.columns.iter().enumerate() {
        let (col, is_pk) = column_desc(ddl, &name, c, i as u16 + 1, &mut extras).await?;
        if columns.iter().any(|x| x.name == col.name) {
            return Err(SqlError::new(
                code::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once", col.name),
            ));
        }
        if is_pk {
            set_pk(vec![i])?;
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        match tc {
            TableConstraint::PrimaryKey(p) => set_pk(pk_indexes(p, &columns)?)?,
            TableConstraint::Unique(u) => extras.uniques.push(UniqueSpec::from_constraint(u)?),
            TableConstraint::ForeignKey(f) => extras.fks.push(crate::fk::FkSpec {
                columns: f.columns.iter().map(ident).collect(),
                clause: f.clone(),
            }),
            TableConstraint::Check(ck) => {
                let cname = match &ck.name {
                    Some(n) => ident(n),
                    None => unique_check_name(&extras.checks, &format!("{name}_check")),
                };
                extras.checks.push(CheckDesc {
                    name: cname,
                    expr: ck.expr.to_string(),
                });
            }
            other => return Err(SqlError::unsupported(format!("table constraint {other}"))),
        }
    }
    if columns.is_empty() {
        return Err(SqlError::unsupported("tables without columns"));
    }
    let primary_key = match pk {
        Some(p) => p,
        None => {
            let mut hidden = "rowid".to_string();
            while columns.iter().any(|c| c.name == hidden) {
                hidden.push('_');
            }
            columns.push(ColumnDesc {
                id: columns.len() as u16 + 1,
                name: hidden,
                ty: SqlType::Int8,
                nullable: false,
                default: None,
                default_expr: None,
                identity_always: false,
                hidden: true,
                generated: None,
            });
            vec![columns.len() - 1]
        }
    };
    for &i in &primary_key {
        columns[i].nullable = false;
        if matches!(columns[i].ty, SqlType::Array(_)) {
            return Err(array_key(&columns[i].name));
        }
    }
    let id = catalog::allocate_id(txn).await?;
    let next_column_id = columns.len() as u16 + 1;
    let mut desc = TableDesc {
        id,
        db_id: ddl.snapshot.db_id(),
        schema,
        name,
        columns,
        primary_key,
        next_column_id,
        checks: extras.checks,
        indexes: Vec::new(),
        next_index_id: crate::rowcodec::PRIMARY_INDEX_ID + 1,
        foreign_keys: Vec::new(),
    };
    for spec in &extras.uniques {
        let ix = unique_index(ddl.snapshot, &desc, spec)?;
        add_index(txn, &mut desc, ix, false).await?;
    }
    for spec in &extras.serials {
        create_owned_sequence(ddl, txn, &mut desc, spec).await?;
    }
    for spec in &extras.fks {
        let fk = crate::fk::resolve(ddl.snapshot, ddl.db, &desc, spec)?;
        desc.foreign_keys.push(fk);
    }
    // Compiling the checks now reports unknown columns or non-boolean expressions at once.
    crate::check::Checks::compile(ddl.state, &desc)?;
    note_domain_users(txn, id, &extras.domains)?;
    // The table's own range exists before the catalog names it; if this transaction aborts the
    // empty range stays behind unused (table ids are never reused).
    let (start, end) = table_span(id);
    ddl.kv.split_out(&start, &end).await?;
    catalog::put_table(txn, &desc)?;
    Ok("CREATE TABLE".into())
}

/// Whether `name` is taken in `schema` by a table or an index (`pending` replaces the
/// snapshot's version of the table being changed).
fn relation_taken(snapshot: &CatalogSnapshot, pending: &TableDesc, name: &str) -> bool {
    let mut tables: Vec<&TableDesc> = snapshot
        .tables
        .values()
        .filter(|t| t.schema == pending.schema && t.id != pending.id && t.name != pending.name)
        .map(|t| t.as_ref())
        .collect();
    tables.push(pending);
    let key = (pending.schema.clone(), name.to_string());
    snapshot.sequences.contains_key(&key)
        || snapshot.views.contains_key(&key)
        || tables
            .iter()
            .any(|t| t.name == name || t.indexes.iter().any(|ix| ix.name == name))
}

/// Whether a new relation (sequence, view) may not be called `name` in `schema`.
pub(crate) fn name_taken(snapshot: &CatalogSnapshot, schema: &str, name: &str) -> bool {
    let probe = TableDesc {
        id: u32::MAX,
        db_id: snapshot.db_id(),
        schema: schema.to_string(),
        name: String::new(),
        columns: vec![],
        primary_key: vec![],
        next_column_id: 0,
        checks: vec![],
        indexes: vec![],
        next_index_id: 0,
        foreign_keys: Vec::new(),
    };
    relation_taken(snapshot, &probe, name)
}

/// `base`, or `base1`, `base2` … whichever is free (PostgreSQL's choice of index names).
fn free_relation_name(snapshot: &CatalogSnapshot, pending: &TableDesc, base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 0;
    while relation_taken(snapshot, pending, &name) {
        n += 1;
        name = format!("{base}{n}");
    }
    name
}

/// The column ids of named columns, in order (42703 for an unknown one).
fn column_ids(desc: &TableDesc, names: &[String]) -> SqlResult<Vec<u16>> {
    let mut ids = Vec::new();
    for n in names {
        let c = desc
            .columns
            .iter()
            .find(|c| &c.name == n && !c.hidden)
            .ok_or_else(|| {
                SqlError::new(
                    code::UNDEFINED_COLUMN,
                    format!("column \"{n}\" named in key does not exist"),
                )
            })?;
        ids.push(c.id);
    }
    if ids.is_empty() {
        return Err(SqlError::syntax("an index needs at least one column"));
    }
    Ok(ids)
}

/// The index behind a UNIQUE constraint (named `{table}_{columns}_key` unless named).
pub fn unique_index(
    snapshot: &CatalogSnapshot,
    desc: &TableDesc,
    spec: &UniqueSpec,
) -> SqlResult<IndexDesc> {
    let columns = column_ids(desc, &spec.columns)?;
    let name = match &spec.name {
        Some(n) if relation_taken(snapshot, desc, n) => {
            return Err(SqlError::new(
                code::DUPLICATE_TABLE,
                format!("relation \"{n}\" already exists"),
            ))
        }
        Some(n) => n.clone(),
        None => free_relation_name(
            snapshot,
            desc,
            &format!("{}_{}_key", desc.name, spec.columns.join("_")),
        ),
    };
    Ok(IndexDesc {
        id: desc.next_index_id,
        name,
        columns,
        unique: true,
        nulls_not_distinct: spec.nulls_not_distinct,
        constraint: true,
        exprs: Vec::new(),
        predicate: None,
    })
}

/// Adds `ix` to `desc` (and to its rows when `backfill`), then stores the descriptor.
fn array_key(column: &str) -> SqlError {
    SqlError::unsupported(format!(
        "array column \"{column}\" in a primary key or an index"
    ))
}

/// Key encodings exist for scalar columns only: arrays cannot be indexed yet.
fn keys_supported(desc: &TableDesc, positions: &[usize]) -> SqlResult<()> {
    match positions
        .iter()
        .map(|&i| &desc.columns[i])
        .find(|c| matches!(c.ty, SqlType::Array(_)))
    {
        Some(c) => Err(array_key(&c.name)),
        None => Ok(()),
    }
}

pub async fn add_index(
    txn: &mut Txn,
    desc: &mut TableDesc,
    ix: IndexDesc,
    backfill: bool,
) -> SqlResult<()> {
    if desc.indexes.len() >= INDEXES_MAX {
        return Err(SqlError::new(
            code::PROGRAM_LIMIT_EXCEEDED,
            format!("tables can have at most {INDEXES_MAX} indexes"),
        ));
    }
    let positions = desc.index_positions(&ix);
    keys_supported(desc, &positions)?;
    assert_eq!(
        ix.id, desc.next_index_id,
        "index ids are allocated in order"
    );
    desc.next_index_id += 1;
    desc.indexes.push(ix.clone());
    if backfill {
        let resolved = Resolved::new(desc, &ix)?;
        crate::index::backfill(txn, desc, &resolved).await?;
    }
    Ok(())
}

/// Removes the index `name` from `desc`; its entries are cleared after commit.
pub fn remove_index(desc: &mut TableDesc, name: &str, after: &mut Vec<AfterCommit>) -> bool {
    let Some(pos) = desc.indexes.iter().position(|ix| ix.name == name) else {
        return false;
    };
    let ix = desc.indexes.remove(pos);
    let (s, e) = index_span(desc.id, ix.id);
    after.push(AfterCommit::ClearSpan(s, e));
    true
}

/// The table holding index `name` in `schema`.
fn index_owner<'a>(
    snapshot: &'a CatalogSnapshot,
    schema: &str,
    name: &str,
) -> Option<&'a Arc<TableDesc>> {
    snapshot
        .tables
        .values()
        .find(|t| t.schema == schema && t.indexes.iter().any(|ix| ix.name == name))
}

/// The keys of a CREATE INDEX: plain column keys, or (for an expression or partial index)
/// each key's SQL and every column the keys and the predicate read.
struct IndexKeys {
    columns: Vec<u16>,
    exprs: Vec<String>,
    predicate: Option<String>,
    /// What the default index name is made of (`{table}_{parts}_idx`).
    name_parts: Vec<String>,
}

impl IndexKeys {
    fn of(desc: &TableDesc, ci: &ast::CreateIndex) -> SqlResult<Self> {
        let plain = ci
            .columns
            .iter()
            .all(|ic| matches!(ic.column.expr, ast::Expr::Identifier(_)));
        if plain && ci.predicate.is_none() {
            let names = index_column_names(&ci.columns)?;
            return Ok(Self {
                columns: column_ids(desc, &names)?,
                exprs: Vec::new(),
                predicate: None,
                name_parts: names,
            });
        }
        let mut read: Vec<usize> = Vec::new();
        let mut note = |e: &ast::Expr| {
            let _ = ast::visit_expressions(e, |x| {
                let name = match x {
                    ast::Expr::Identifier(i) => Some(ident(i)),
                    ast::Expr::CompoundIdentifier(p) => p.last().map(ident),
                    _ => None,
                };
                if let Some((pos, _)) = name.and_then(|n| desc.column(&n)) {
                    read.push(pos);
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        };
        ci.columns.iter().for_each(|ic| note(&ic.column.expr));
        if let Some(p) = &ci.predicate {
            note(p);
        }
        read.sort();
        read.dedup();
        Ok(Self {
            columns: read.iter().map(|&i| desc.columns[i].id).collect(),
            exprs: ci
                .columns
                .iter()
                .map(|ic| ic.column.expr.to_string())
                .collect(),
            predicate: ci.predicate.as_ref().map(|p| p.to_string()),
            name_parts: ci
                .columns
                .iter()
                .map(|ic| crate::pgcompat::column_name(&ic.column.expr).unwrap_or("expr".into()))
                .collect(),
        })
    }
}

pub async fn create_index(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    ci: &ast::CreateIndex,
) -> SqlResult<String> {
    if !ci.include.is_empty() {
        return Err(SqlError::unsupported("CREATE INDEX … INCLUDE"));
    }
    if let Some(u) = &ci.using {
        let method = u.to_string().to_ascii_lowercase();
        if !["btree", "hash", "gist", "gin", "spgist", "brin"].contains(&method.as_str()) {
            return Err(SqlError::new(
                code::UNDEFINED_OBJECT,
                format!("access method \"{method}\" does not exist"),
            ));
        }
        if method != "btree" {
            return Err(SqlError::unsupported(format!(
                "index access method {method}"
            )));
        }
    }
    let (schema, table) = table_name(&ci.table_name, ddl.db)?;
    let Some(desc) = ddl.snapshot.table(&schema, &table) else {
        return Err(SqlError::new(
            code::UNDEFINED_TABLE,
            format!("relation \"{table}\" does not exist"),
        ));
    };
    let mut desc = desc.as_ref().clone();
    let keys = IndexKeys::of(&desc, ci)?;
    let names = keys.name_parts;
    let name = match &ci.name {
        Some(n) => {
            let (_, n) = table_name(n, ddl.db)?;
            if relation_taken(ddl.snapshot, &desc, &n) {
                if ci.if_not_exists {
                    return Ok("CREATE INDEX".into());
                }
                return Err(SqlError::new(
                    code::DUPLICATE_TABLE,
                    format!("relation \"{n}\" already exists"),
                ));
            }
            n
        }
        None => free_relation_name(
            ddl.snapshot,
            &desc,
            &format!("{}_{}_idx", desc.name, names.join("_")),
        ),
    };
    let ix = IndexDesc {
        id: desc.next_index_id,
        name,
        columns: keys.columns,
        unique: ci.unique,
        nulls_not_distinct: ci.nulls_distinct == Some(false),
        constraint: false,
        exprs: keys.exprs,
        predicate: keys.predicate,
    };
    // Compiling checks the expressions now (unknown columns, volatile functions).
    Resolved::new(&desc, &ix)?;
    add_index(txn, &mut desc, ix, true).await?;
    catalog::put_table(txn, &desc)?;
    Ok("CREATE INDEX".into())
}

pub fn drop_index(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    let mut changed: Vec<TableDesc> = Vec::new();
    for n in names {
        let (schema, name) = table_name(n, ddl.db)?;
        let owner = changed
            .iter()
            .position(|t| t.schema == schema && t.indexes.iter().any(|ix| ix.name == name));
        let pos = match owner {
            Some(p) => p,
            None => match index_owner(ddl.snapshot, &schema, &name) {
                Some(t) => {
                    changed.push(t.as_ref().clone());
                    changed.len() - 1
                }
                None if if_exists => continue,
                None => {
                    return Err(SqlError::new(
                        code::UNDEFINED_OBJECT,
                        format!("index \"{name}\" does not exist"),
                    ))
                }
            },
        };
        let desc = &mut changed[pos];
        if desc
            .indexes
            .iter()
            .any(|ix| ix.name == name && ix.constraint)
        {
            return Err(SqlError::new(
                code::DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop index {name} because constraint {name} on table {} requires it",
                    desc.name
                ),
            ));
        }
        remove_index(desc, &name, after);
        let snap_id = ddl
            .snapshot
            .table(&desc.schema, &desc.name)
            .map_or(desc.id, |t| t.id);
        crate::fk::keys_still_backed(ddl.snapshot, desc, snap_id, &name)?;
    }
    for desc in &changed {
        catalog::put_table(txn, desc)?;
    }
    Ok("DROP INDEX".into())
}

/// An integer sequence option (`INCREMENT BY -2`, `START 10` …).
fn option_i64(e: &ast::Expr, what: &str) -> SqlResult<i64> {
    e.to_string()
        .replace(' ', "")
        .parse::<i64>()
        .map_err(|_| SqlError::syntax(format!("{what} must be an integer, not {e}")))
}

/// A sequence descriptor from CREATE SEQUENCE-style options over an integer type.
fn sequence_desc(
    db_id: u32,
    schema: &str,
    name: &str,
    ty: &SqlType,
    options: &[ast::SequenceOptions],
) -> SqlResult<crate::sequence::SeqDesc> {
    use ast::SequenceOptions as O;
    let type_max = match ty {
        SqlType::Int2 => i16::MAX as i64,
        SqlType::Int4 => i32::MAX as i64,
        _ => i64::MAX,
    };
    let (mut inc, mut min, mut max, mut start, mut cache, mut cycle) =
        (1i64, None, None, None, 1i64, false);
    for o in options {
        match o {
            O::IncrementBy(e, _) => inc = option_i64(e, "INCREMENT")?,
            O::MinValue(e) => min = e.as_ref().map(|e| option_i64(e, "MINVALUE")).transpose()?,
            O::MaxValue(e) => max = e.as_ref().map(|e| option_i64(e, "MAXVALUE")).transpose()?,
            O::StartWith(e, _) => start = Some(option_i64(e, "START")?),
            O::Cache(e) => cache = option_i64(e, "CACHE")?,
            O::Cycle(no) => cycle = !*no,
        }
    }
    let min = min.unwrap_or(if inc > 0 { 1 } else { -type_max - 1 });
    let max = max.unwrap_or(if inc > 0 { type_max } else { -1 });
    let start = start.unwrap_or(if inc > 0 { min } else { max });
    let desc = crate::sequence::SeqDesc {
        id: 0,
        uid: 0,
        db_id,
        schema: schema.to_string(),
        name: name.to_string(),
        start,
        increment: inc,
        min,
        max,
        cycle,
        cache,
        owner: None,
        type_max,
    };
    desc.validate()?;
    Ok(desc)
}
/// The sequence of a SERIAL or IDENTITY column, named `{table}_{column}_seq`; the column's
/// default becomes `nextval('…')`.
async fn create_owned_sequence(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    desc: &mut TableDesc,
    spec: &SerialSpec,
) -> SqlResult<()> {
    let name = free_relation_name(
        ddl.snapshot,
        desc,
        &format!("{}_{}_seq", desc.name, spec.column),
    );
    let mut seq = sequence_desc(desc.db_id, &desc.schema, &name, &spec.ty, &spec.options)?;
    seq.id = catalog::allocate_id(txn).await?;
    seq.uid = ddl.kv.unique_id() as u64;
    let col = desc
        .columns
        .iter_mut()
        .find(|c| c.name == spec.column)
        .ok_or_else(|| SqlError::internal("serial column vanished"))?;
    seq.owner = Some((desc.id, col.id));
    col.default = None;
    col.default_expr = Some(nextval_default(&desc.schema, &name));
    crate::sequence::put_sequence(txn, &seq)
}

/// The tables whose column defaults call `nextval` on `seq`, with those columns' positions.
/// (A default that also calls another function is rewritten whole by RENAME: only
/// `nextval(…)` defaults are expected here.)
pub(crate) fn defaults_using(
    snapshot: &CatalogSnapshot,
    seq: &crate::sequence::SeqDesc,
) -> Vec<(Arc<TableDesc>, Vec<usize>)> {
    let me = (seq.schema.clone(), seq.name.clone());
    let mut out = Vec::new();
    for t in snapshot.tables.values() {
        let cols: Vec<usize> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.default_expr
                    .as_deref()
                    .is_some_and(|e| crate::sequence::default_sequences(e).contains(&me))
            })
            .map(|(i, _)| i)
            .collect();
        if !cols.is_empty() {
            out.push((t.clone(), cols));
        }
    }
    out
}

/// The column default that draws from sequence `schema.name`, as SERIAL writes it.
pub(crate) fn nextval_default(schema: &str, name: &str) -> String {
    let qualified = match schema {
        DEFAULT_SCHEMA => quote_literal_name(name),
        schema => format!(
            "{}.{}",
            quote_literal_name(schema),
            quote_literal_name(name)
        ),
    };
    format!("nextval('{qualified}')")
}

/// A relation name as text `nextval` parses back (quoted unless plain lower case).
fn quote_literal_name(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\"")).replace('\'', "''")
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn create_sequence(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    name: &ObjectName,
    if_not_exists: bool,
    data_type: &Option<ast::DataType>,
    options: &[ast::SequenceOptions],
    owned_by: &Option<ObjectName>,
) -> SqlResult<String> {
    let (schema, seq) = table_name(name, ddl.db)?;
    if !ddl.snapshot.has_schema(&schema) {
        return Err(SqlError::new(
            code::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        ));
    }
    if name_taken(ddl.snapshot, &schema, &seq) {
        if if_not_exists {
            return Ok("CREATE SEQUENCE".into());
        }
        return Err(SqlError::new(
            code::DUPLICATE_TABLE,
            format!("relation \"{seq}\" already exists"),
        ));
    }
    let ty = match data_type {
        Some(t) => SqlType::from_ast(t)?,
        None => SqlType::Int8,
    };
    if !matches!(ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) {
        return Err(SqlError::new(
            code::INVALID_PARAMETER_VALUE,
            "sequence type must be smallint, integer, or bigint",
        ));
    }
    let mut desc = sequence_desc(ddl.snapshot.db_id(), &schema, &seq, &ty, options)?;
    if let Some(owner) = owned_by {
        desc.owner = crate::alter_sequence::create_owner(ddl, &schema, owner)?;
    }
    desc.id = catalog::allocate_id(txn).await?;
    desc.uid = ddl.kv.unique_id() as u64;
    crate::sequence::put_sequence(txn, &desc)?;
    Ok("CREATE SEQUENCE".into())
}

pub fn drop_sequence(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
) -> SqlResult<String> {
    for n in names {
        let (schema, name) = table_name(n, ddl.db)?;
        match ddl.snapshot.sequences.get(&(schema, name.clone())) {
            None if if_exists => {}
            None => {
                return Err(SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("sequence \"{name}\" does not exist"),
                ))
            }
            // A column default that calls nextval on it depends on it (OWNED BY alone does
            // not: it only makes the sequence go with its column).
            Some(s) if !defaults_using(ddl.snapshot, s).is_empty() => {
                return Err(SqlError::new(
                    code::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop sequence {name} because other objects depend on it"),
                ))
            }
            Some(s) => {
                crate::sequence::delete_sequence(txn, s)?;
                ddl.sequences.forget(s.uid);
            }
        }
    }
    Ok("DROP SEQUENCE".into())
}

pub fn create_schema(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    name: &ast::SchemaName,
    if_not_exists: bool,
) -> SqlResult<String> {
    let n = match name {
        ast::SchemaName::Simple(n) | ast::SchemaName::NamedAuthorization(n, _) => n,
        ast::SchemaName::UnnamedAuthorization(_) => {
            return Err(SqlError::unsupported("CREATE SCHEMA AUTHORIZATION"))
        }
    };
    let [part] = n.0.as_slice() else {
        return Err(SqlError::unsupported("CREATE SCHEMA in another database"));
    };
    let schema = part.as_ident().map(ident).unwrap_or_default();
    if ddl.snapshot.has_schema(&schema) || schema.starts_with("pg_") {
        if if_not_exists {
            return Ok("CREATE SCHEMA".into());
        }
        return Err(SqlError::new(
            code::DUPLICATE_SCHEMA,
            format!("schema \"{schema}\" already exists"),
        ));
    }
    catalog::put_schema(txn, ddl.snapshot.db_id(), &schema)?;
    Ok("CREATE SCHEMA".into())
}

pub async fn drop_schema(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    for n in names {
        let schema = last_ident(n);
        if !ddl.snapshot.created_schemas.contains(&schema) {
            if schema == DEFAULT_SCHEMA {
                return Err(SqlError::unsupported("dropping schema public"));
            }
            if if_exists {
                continue;
            }
            return Err(SqlError::new(
                code::INVALID_SCHEMA_NAME,
                format!("schema \"{schema}\" does not exist"),
            ));
        }
        let tables: Vec<&Arc<TableDesc>> = ddl
            .snapshot
            .tables
            .values()
            .filter(|t| t.schema == schema)
            .collect();
        let seqs: Vec<_> = ddl
            .snapshot
            .sequences
            .values()
            .filter(|s| s.schema == schema)
            .collect();
        if !cascade && (!tables.is_empty() || !seqs.is_empty()) {
            return Err(SqlError::new(
                code::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop schema {schema} because other objects depend on it"),
            ));
        }
        for t in &tables {
            catalog::delete_table(txn, t)?;
            let (s, e) = table_span(t.id);
            after.push(AfterCommit::ClearSpan(s, e));
        }
        // Foreign keys of tables elsewhere that referenced a dropped table go with it.
        for t in &tables {
            crate::fk::forget_parent(txn, ddl.snapshot, t.id).await?;
        }
        for s in seqs {
            crate::sequence::delete_sequence(txn, s)?;
            ddl.sequences.forget(s.uid);
        }
        catalog::delete_schema(txn, ddl.snapshot.db_id(), &schema)?;
    }
    Ok("DROP SCHEMA".into())
}

pub async fn create_database(
    txn: &mut Txn,
    name: &ObjectName,
    if_not_exists: bool,
) -> SqlResult<String> {
    let db = last_ident(name);
    if catalog::get_database(txn, &db).await?.is_some() {
        if if_not_exists {
            return Ok("CREATE DATABASE".into());
        }
        return Err(SqlError::new(
            code::DUPLICATE_DATABASE,
            format!("database \"{db}\" already exists"),
        ));
    }
    let id = catalog::allocate_id(txn).await?;
    catalog::put_database(txn, &catalog::DbDesc { id, name: db })?;
    Ok("CREATE DATABASE".into())
}

pub async fn drop_database(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    for n in names {
        let db = last_ident(n);
        if db == ddl.db {
            return Err(SqlError::new(
                code::OBJECT_IN_USE,
                "cannot drop the currently open database",
            ));
        }
        let Some(desc) = catalog::get_database(txn, &db).await? else {
            if if_exists {
                continue;
            }
            return Err(SqlError::new(
                code::INVALID_CATALOG_NAME,
                format!("database \"{db}\" does not exist"),
            ));
        };
        for t in catalog::tables_of(txn, desc.id).await? {
            catalog::delete_table(txn, &t)?;
            let (s, e) = table_span(t.id);
            after.push(AfterCommit::ClearSpan(s, e));
        }
        catalog::delete_database(txn, &desc)?;
    }
    Ok("DROP DATABASE".into())
}

pub fn create_view(ddl: &DdlCtx<'_>, txn: &mut Txn, cv: &ast::CreateView) -> SqlResult<String> {
    if cv.materialized {
        return Err(SqlError::unsupported("materialized views"));
    }
    let (schema, name) = table_name(&cv.name, ddl.db)?;
    if !ddl.snapshot.has_schema(&schema) {
        return Err(SqlError::new(
            code::INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
        ));
    }
    let exists = ddl
        .snapshot
        .views
        .contains_key(&(schema.clone(), name.clone()));
    match exists {
        true if cv.if_not_exists => return Ok("CREATE VIEW".into()),
        true if cv.or_replace => {}
        _ => {
            if name_taken(ddl.snapshot, &schema, &name) {
                return Err(SqlError::new(
                    code::DUPLICATE_TABLE,
                    format!("relation \"{name}\" already exists"),
                ));
            }
        }
    }
    let view = catalog::ViewDesc {
        db_id: ddl.snapshot.db_id(),
        schema,
        name,
        query: cv.query.to_string(),
        columns: cv.columns.iter().map(|c| ident(&c.name)).collect(),
    };
    catalog::put_view(txn, &view)?;
    Ok("CREATE VIEW".into())
}

/// The views whose query names relation `schema.name` (a view or table), by `(schema,
/// name)`. A CTE of the same name counts too: the check errs on the side of refusing.
fn views_naming(
    snapshot: &CatalogSnapshot,
    db: &str,
    schema: &str,
    name: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, v) in snapshot.views.iter() {
        let Ok(stmts) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &crate::dialect::KestrelDialect,
            &v.query,
        ) else {
            continue;
        };
        let mut names = false;
        let _ = ast::visit_relations(&stmts, |r| {
            names |= table_name(r, db).is_ok_and(|(s, n)| s == schema && n == name);
            std::ops::ControlFlow::<()>::Continue(())
        });
        if names && key != &(schema.to_string(), name.to_string()) {
            out.push(key.clone());
        }
    }
    out
}

/// 2BP01 unless `cascade` when views depend on `schema.name`; with CASCADE the dependent
/// views (and theirs) are dropped. `dropping` holds views already being dropped.
fn dependent_views(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    what: &str,
    schema: &str,
    name: &str,
    cascade: bool,
    dropping: &mut Vec<(String, String)>,
) -> SqlResult<()> {
    let deps: Vec<(String, String)> = views_naming(ddl.snapshot, ddl.db, schema, name)
        .into_iter()
        .filter(|k| !dropping.contains(k))
        .collect();
    let Some(first) = deps.first() else {
        return Ok(());
    };
    if !cascade {
        return Err(SqlError::new(
            code::DEPENDENT_OBJECTS_STILL_EXIST,
            format!("cannot drop {what} {name} because other objects depend on it"),
        )
        .with_detail(format!("view {} depends on {what} {name}", first.1)));
    }
    for k in deps {
        if let Some(v) = ddl.snapshot.views.get(&k) {
            catalog::delete_view(txn, v)?;
        }
        dropping.push(k.clone());
        dependent_views(ddl, txn, "view", &k.0, &k.1, true, dropping)?;
    }
    Ok(())
}

pub fn drop_view(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> SqlResult<String> {
    let mut dropping: Vec<(String, String)> = Vec::new();
    for n in names {
        if let Ok(k) = table_name(n, ddl.db) {
            dropping.push(k);
        }
    }
    for n in names {
        let (schema, name) = table_name(n, ddl.db)?;
        match ddl.snapshot.views.get(&(schema.clone(), name.clone())) {
            Some(v) => {
                dependent_views(ddl, txn, "view", &schema, &name, cascade, &mut dropping)?;
                catalog::delete_view(txn, v)?
            }
            None if ddl.snapshot.table(&schema, &name).is_some() => {
                return Err(SqlError::new(
                    code::WRONG_OBJECT_TYPE,
                    format!("\"{name}\" is not a view"),
                ))
            }
            None if if_exists => {}
            None => {
                return Err(SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("view \"{name}\" does not exist"),
                ))
            }
        }
    }
    Ok("DROP VIEW".into())
}

pub async fn drop_table(
    ddl: &DdlCtx<'_>,
    txn: &mut Txn,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
    after: &mut Vec<AfterCommit>,
) -> SqlResult<String> {
    let mut doomed: Vec<&TableDesc> = Vec::new();
    for n in names {
        let (schema, name) = table_name(n, ddl.db)?;
        if ddl
            .snapshot
            .views
            .contains_key(&(schema.clone(), name.clone()))
        {
            return Err(SqlError::new(
                code::WRONG_OBJECT_TYPE,
                format!("\"{name}\" is not a table"),
            ));
        }
        match ddl.snapshot.table(&schema, &name) {
            None if if_exists => continue,
            None => {
                return Err(SqlError::new(
                    code::UNDEFINED_TABLE,
                    format!("table \"{name}\" does not exist"),
                ))
            }
            Some(desc) => doomed.push(desc),
        }
    }
    if !cascade {
        crate::fk::referenced_from_outside(ddl.snapshot, &doomed, false)?;
    }
    let mut dropping = Vec::new();
    for desc in &doomed {
        dependent_views(
            ddl,
            txn,
            "table",
            &desc.schema,
            &desc.name,
            cascade,
            &mut dropping,
        )?;
    }
    for desc in &doomed {
        for &(table, column) in ddl.snapshot.comments.keys() {
            if table == desc.id {
                catalog::set_comment(txn, desc.db_id, table, column, None)?;
            }
        }
        catalog::delete_table(txn, desc)?;
        for s in ddl.snapshot.sequences.values() {
            if s.owner.is_some_and(|(t, _)| t == desc.id) {
                crate::sequence::delete_sequence(txn, s)?;
                ddl.sequences.forget(s.uid);
            }
        }
        let (s, e) = table_span(desc.id);
        after.push(AfterCommit::ClearSpan(s, e));
    }
    // CASCADE: the foreign keys of surviving tables that referenced a dropped one go.
    for desc in &doomed {
        crate::fk::forget_parent(txn, ddl.snapshot, desc.id).await?;
    }
    Ok("DROP TABLE".into())
}
