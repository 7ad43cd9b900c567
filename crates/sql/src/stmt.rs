//! Per-statement context: the transaction a statement runs in, and the DataFusion catalog view
//! of the tables as of that transaction's snapshot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use kestrel_kv::{Kv, Txn};

use crate::catalog::CatalogSnapshot;
use crate::error::SqlError;
use crate::pg_catalog::SystemSchema;
use crate::provider::KestrelTable;

/// Named limits of the SQL layer.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Rows one INSERT/UPDATE/DELETE may write.
    pub statement_rows_max: usize,
    /// Rows a scan decodes into one Arrow batch at most.
    pub scan_batch_rows_max: usize,
    /// Stored bytes a table scan must cover per partition before it is split into several
    /// scans that run in parallel (0: never split).
    pub scan_partition_bytes_min: u64,
    /// Stored bytes from which a scan without LIMIT does not fill the block cache (0: every
    /// scan fills it). The node sets a quarter of its block cache.
    pub scan_bulk_bytes_min: u64,
    /// Bytes of decoded columns the column cache (`column_cache.rs`) holds at most (0:
    /// scans cache nothing).
    pub column_cache_bytes_max: usize,
    /// Stored bytes a scan partition must cover for its columns to be cached.
    pub column_cache_scan_bytes_min: u64,
    /// Parallel partitions of one table scan at most (DataFusion's `target_partitions`, the
    /// number of cores by default, caps it too).
    pub scan_partitions_max: usize,
    /// Bytes of result rows one query may hold in memory.
    pub result_bytes_max: usize,
    /// Times an autocommit statement is retried after a serialization conflict.
    pub autocommit_retries_max: usize,
    /// Times a statement re-runs on a refreshed snapshot after waiting for a row lock.
    pub statement_restarts_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            statement_rows_max: 1_000_000,
            scan_batch_rows_max: 8192,
            scan_partition_bytes_min: 16 << 20,
            scan_partitions_max: 16,
            scan_bulk_bytes_min: 64 << 20,
            column_cache_bytes_max: 2 << 30,
            column_cache_scan_bytes_min: 1 << 20,
            result_bytes_max: 512 << 20,
            autocommit_retries_max: 20,
            statement_restarts_max: 100,
        }
    }
}

pub struct StmtCtx {
    pub kv: Arc<Kv>,
    /// Shared with the session while a transaction block is open.
    pub txn: Arc<tokio::sync::RwLock<Txn>>,
    /// Expose the generated `rowid` of tables without a primary key (UPDATE/DELETE need it).
    pub expose_hidden: bool,
    pub limits: Limits,
    /// The node's column cache (`column_cache.rs`).
    pub column_cache: Arc<crate::column_cache::ColumnCache>,
    /// For `… RETURNING`: the written rows (full rows of the target table; deleted rows for
    /// DELETE), collected by the write paths when set.
    pub returning: Option<std::sync::Mutex<Vec<Vec<crate::datum::Datum>>>>,
    /// The ON CONFLICT clause of an INSERT (taken off the statement before planning).
    pub on_conflict: Option<crate::upsert::OnConflictClause>,
    /// Per-row DEFAULT expressions of an INSERT's target by `(table id, column name)`,
    /// compiled for this statement (they may call the statement's sequence functions).
    pub defaults: std::sync::OnceLock<HashMap<(u32, String), datafusion::logical_expr::Expr>>,
    /// The views of the statement's catalog snapshot (expanded into the statement).
    pub views: crate::catalog::ViewMap,
    /// The statement's catalog snapshot (foreign keys find their tables in it).
    pub catalog: Arc<crate::catalog::CatalogSnapshot>,
    /// Row changes the statement's foreign keys must look at ([`crate::fk::enforce`]).
    pub fk: crate::fk::FkLog,
    /// The RETURNING rows of the statement's data-modifying CTEs, by CTE name; unqualified
    /// names resolve to them first.
    pub cte_results: std::sync::Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl StmtCtx {
    /// The foreign-key work of the statement, once its own writes are done.
    pub async fn enforce_foreign_keys(
        &self,
        state: &datafusion::execution::SessionState,
    ) -> crate::SqlResult<()> {
        crate::fk::enforce(state, &self.txn, &self.catalog, &self.fk).await
    }

    /// Keeps `rows` for RETURNING, if the statement has one.
    pub fn capture(&self, rows: impl IntoIterator<Item = Vec<crate::datum::Datum>>) {
        if let Some(r) = &self.returning {
            if let Ok(mut v) = r.lock() {
                v.extend(rows);
            }
        }
    }
}

impl StmtCtx {
    /// Compiles the per-row defaults of an INSERT's target with `state`'s functions (before
    /// planning, which asks the table for them). Other tables never need them.
    pub fn compile_defaults(
        &self,
        state: &datafusion::execution::SessionState,
        table: &crate::catalog::TableDesc,
    ) -> crate::SqlResult<()> {
        let mut out = HashMap::new();
        for c in &table.columns {
            if let Some(sql) = &c.default_expr {
                out.insert(
                    (table.id, c.name.clone()),
                    compile_default(state, sql, &c.ty)?,
                );
            }
        }
        let _ = self.defaults.set(out);
        Ok(())
    }
}

/// A per-row DEFAULT as a DataFusion expression of the column's type.
pub fn compile_default(
    state: &datafusion::execution::SessionState,
    sql: &str,
    ty: &crate::types::SqlType,
) -> crate::SqlResult<datafusion::logical_expr::Expr> {
    use datafusion::logical_expr::ExprSchemable;
    let empty = datafusion::common::DFSchema::empty();
    state
        .create_logical_expr(sql, &empty)
        .and_then(|e| e.cast_to(&ty.arrow(), &empty))
        .map_err(crate::error::from_datafusion)
}

impl fmt::Debug for StmtCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StmtCtx")
    }
}

/// The catalog list DataFusion sees: the session's database only.
#[derive(Debug)]
pub struct KCatalogList {
    name: String,
    catalog: Arc<KCatalog>,
}

impl KCatalogList {
    pub fn new(
        db_name: &str,
        snapshot: &CatalogSnapshot,
        ctx: Arc<StmtCtx>,
        info: Arc<crate::pg_catalog::CatalogInfo>,
    ) -> Self {
        let mut schemas: HashMap<String, Arc<KSchema>> = HashMap::new();
        let pg_catalog = Arc::new(SystemSchema {
            schema: crate::pg_catalog::PG_CATALOG,
            info: info.clone(),
            ctx: ctx.clone(),
        });
        for name in snapshot.schemas() {
            let system = (name == crate::catalog::DEFAULT_SCHEMA).then(|| pg_catalog.clone());
            schemas.insert(
                name.clone(),
                Arc::new(KSchema {
                    tables: HashMap::new(),
                    ctx: ctx.clone(),
                    system,
                }),
            );
        }
        for ((schema, name), desc) in &snapshot.tables {
            if let Some(s) = schemas.get_mut(schema) {
                Arc::get_mut(s)
                    .expect("not shared yet")
                    .tables
                    .insert(name.clone(), desc.clone());
            }
        }
        let information_schema = Arc::new(SystemSchema {
            schema: crate::pg_catalog::INFORMATION_SCHEMA,
            info,
            ctx,
        });
        let mut system: HashMap<String, Arc<dyn SchemaProvider>> = HashMap::new();
        system.insert(crate::pg_catalog::PG_CATALOG.into(), pg_catalog);
        system.insert(
            crate::pg_catalog::INFORMATION_SCHEMA.into(),
            information_schema,
        );
        Self {
            name: db_name.to_string(),
            catalog: Arc::new(KCatalog { schemas, system }),
        }
    }
}

impl CatalogProviderList for KCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }
    fn catalog_names(&self) -> Vec<String> {
        vec![self.name.clone()]
    }
    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == self.name).then(|| self.catalog.clone() as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
pub struct KCatalog {
    schemas: HashMap<String, Arc<KSchema>>,
    /// `pg_catalog` and `information_schema`.
    system: HashMap<String, Arc<dyn SchemaProvider>>,
}

impl CatalogProvider for KCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas
            .keys()
            .chain(self.system.keys())
            .cloned()
            .collect()
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match self.schemas.get(name) {
            Some(s) => Some(s.clone() as Arc<dyn SchemaProvider>),
            None => self.system.get(name).cloned(),
        }
    }
}

#[derive(Debug)]
pub struct KSchema {
    tables: HashMap<String, Arc<crate::catalog::TableDesc>>,
    ctx: Arc<StmtCtx>,
    /// For the default schema: `pg_catalog`, searched first for unqualified names, as
    /// PostgreSQL's implicit `pg_catalog` at the head of `search_path`.
    system: Option<Arc<SystemSchema>>,
}

#[async_trait]
impl SchemaProvider for KSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.system.is_some() {
            let cte = self
                .ctx
                .cte_results
                .lock()
                .ok()
                .and_then(|m| m.get(name).cloned());
            if cte.is_some() {
                return Ok(cte);
            }
        }
        if let Some(system) = self.system.as_ref().filter(|s| s.table_exist(name)) {
            return system.table(name).await;
        }
        match self.tables.get(name) {
            None => Ok(None),
            Some(desc) => Ok(Some(Arc::new(
                KestrelTable::new(desc.clone(), self.ctx.clone())
                    .map_err(SqlError::into_datafusion)?,
            ))),
        }
    }
    fn table_exist(&self, name: &str) -> bool {
        let cte = self.system.is_some()
            && self
                .ctx
                .cte_results
                .lock()
                .is_ok_and(|m| m.contains_key(name));
        cte || self.tables.contains_key(name)
            || self.system.as_ref().is_some_and(|s| s.table_exist(name))
    }
}
