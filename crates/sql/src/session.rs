//! Sessions: parse, plan and execute statements, each in its own (autocommit) transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{self, ObjectType, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::FutureExt;
use kestrel_kv::{Kv, Txn};

use crate::catalog::{self, CatalogSnapshot, DEFAULT_SCHEMA};
use crate::datum::{datums_from_array, Datum};
use crate::ddl::{self, AfterCommit, DdlCtx};
use crate::error::{code, from_datafusion, SqlError, SqlResult};
use crate::metrics::METRICS;
use crate::stmt::{KCatalogList, Limits, StmtCtx};
use crate::types::SqlType;

/// The most `$n` parameters one statement may have (PostgreSQL's protocol limit).
pub const PARAMS_MAX: usize = 65_535;

/// The node's SQL engine, shared by every session.
pub struct SqlEngine {
    pub kv: Arc<Kv>,
    pub limits: Limits,
}

impl SqlEngine {
    /// Opens the engine, creating the default databases on a fresh store.
    pub async fn open(kv: Arc<Kv>, limits: Limits) -> SqlResult<Arc<Self>> {
        catalog::bootstrap(&kv).await?;
        Ok(Arc::new(Self { kv, limits }))
    }

    /// A session on `database` (which must exist).
    pub async fn session(self: &Arc<Self>, database: &str) -> SqlResult<Session> {
        let txn = self.kv.begin();
        if catalog::get_database(&txn, database).await?.is_none() {
            return Err(SqlError::new(
                code::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            ));
        }
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(database, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let base = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rule(Arc::new(crate::pgcompat::PgCastRule))
            .build();
        Ok(Session {
            engine: self.clone(),
            database: database.to_string(),
            base,
            vars: default_vars(),
        })
    }
}

fn default_vars() -> BTreeMap<String, String> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "repeatable read"),
        ("extra_float_digits", "1"),
        ("integer_datetimes", "on"),
        ("search_path", "public"),
        ("server_encoding", "UTF8"),
        ("server_version", crate::SERVER_VERSION),
        ("standard_conforming_strings", "on"),
        ("statement_timeout", "0"),
        ("timezone", "UTC"),
        ("transaction_isolation", "repeatable read"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The outcome of one statement.
#[derive(Debug)]
pub enum ExecResult {
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A command tag such as `INSERT 0 3` or `CREATE TABLE`.
    Command(String),
}

/// A parsed statement with what the extended protocol's Describe needs.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub stmt: DFStatement,
    /// `$1, $2, …` in order; `None` where the type could not be inferred. Fields carry the
    /// column's PostgreSQL type tag (uuid, varchar …) when a parameter stands for a column.
    pub param_fields: Vec<Option<FieldRef>>,
    /// The result columns; `None` for statements that return no rows.
    pub schema: Option<SchemaRef>,
}

pub struct Session {
    engine: Arc<SqlEngine>,
    database: String,
    base: SessionState,
    vars: BTreeMap<String, String>,
}

enum Kind {
    /// Planned and run by DataFusion (SELECT, INSERT, UPDATE, DELETE, EXPLAIN …).
    DataFusion {
        expose_hidden: bool,
    },
    CreateTable,
    DropTable,
    Set,
    Show,
    Transaction,
}

fn classify(stmt: &DFStatement) -> SqlResult<Kind> {
    let s = match stmt {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::Explain(_) => {
            return Ok(Kind::DataFusion {
                expose_hidden: false,
            })
        }
        DFStatement::CreateExternalTable(_) => {
            return Err(SqlError::unsupported("CREATE EXTERNAL TABLE"))
        }
        DFStatement::CopyTo(_) => return Err(SqlError::unsupported("COPY")),
        DFStatement::Reset(_) => return Ok(Kind::Set),
    };
    Ok(match s {
        SqlStatement::Query(_) | SqlStatement::Insert(_) => Kind::DataFusion {
            expose_hidden: false,
        },
        SqlStatement::Explain { .. } => Kind::DataFusion {
            expose_hidden: false,
        },
        SqlStatement::Update(_) | SqlStatement::Delete(_) => Kind::DataFusion {
            expose_hidden: true,
        },
        SqlStatement::CreateTable(_) => Kind::CreateTable,
        SqlStatement::Drop {
            object_type: ObjectType::Table,
            ..
        } => Kind::DropTable,
        SqlStatement::Set(_) => Kind::Set,
        SqlStatement::ShowVariable { .. } => Kind::Show,
        SqlStatement::StartTransaction { .. }
        | SqlStatement::Commit { .. }
        | SqlStatement::Rollback { .. } => Kind::Transaction,
        other => {
            let text = other.to_string();
            let head: Vec<&str> = text.split_whitespace().take(2).collect();
            return Err(SqlError::unsupported(format!(
                "statement {}",
                head.join(" ")
            )));
        }
    })
}

/// Splits SQL text into statements.
pub fn parse(sql: &str) -> SqlResult<Vec<DFStatement>> {
    DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
        .map(|v| v.into_iter().collect())
        .map_err(from_datafusion)
}

fn show_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

impl Session {
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs every statement of `sql` (simple query protocol). Stops at the first error.
    pub async fn execute_sql(&mut self, sql: &str) -> (Vec<ExecResult>, Option<SqlError>) {
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => return (vec![], Some(e)),
        };
        let mut out = Vec::new();
        for stmt in stmts {
            match self.execute(&stmt, None).await {
                Ok(r) => out.push(r),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Parses and describes one statement (extended protocol Parse/Describe).
    pub async fn prepare(&mut self, sql: &str) -> SqlResult<Option<Prepared>> {
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let (param_types, schema) = match classify(&stmt)? {
            Kind::DataFusion { expose_hidden } => {
                let txn = self.engine.kv.begin();
                let (state, _ctx) = self.state_for(txn, expose_hidden).await?;
                let plan = state
                    .statement_to_plan(stmt.clone())
                    .await
                    .map_err(from_datafusion)?;
                let types = plan.get_parameter_fields().map_err(from_datafusion)?;
                let mut ordered: Vec<(usize, Option<FieldRef>)> = types
                    .into_iter()
                    .filter_map(|(k, v)| {
                        k.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .map(|i| (i, v))
                    })
                    .collect();
                ordered.sort_by_key(|(i, _)| *i);
                let n = ordered.last().map(|(i, _)| *i).unwrap_or(0);
                if n > PARAMS_MAX || ordered.first().is_some_and(|(i, _)| *i == 0) {
                    return Err(SqlError::syntax(format!(
                        "parameter numbers must be between $1 and ${PARAMS_MAX}"
                    )));
                }
                let mut params = vec![None; n];
                for (i, t) in ordered {
                    params[i - 1] = t;
                }
                let schema = match &plan {
                    LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => None,
                    p => Some(Arc::new(p.schema().as_arrow().clone())),
                };
                (params, schema)
            }
            Kind::Show => {
                let name = show_name(&stmt);
                (vec![], Some(show_schema(&name)))
            }
            _ => (vec![], None),
        };
        Ok(Some(Prepared {
            stmt,
            param_fields: param_types,
            schema,
        }))
    }

    /// Executes one statement in its own transaction, retrying serialization conflicts.
    pub async fn execute(
        &mut self,
        stmt: &DFStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let started = Instant::now();
        let kind = classify(stmt)?;
        let res = match kind {
            Kind::Set => self.set(stmt),
            Kind::Show => self.show(stmt),
            Kind::Transaction => Err(SqlError::unsupported(
                "explicit transactions (BEGIN/COMMIT/ROLLBACK)",
            )),
            _ => self.execute_autocommit(stmt, &kind, params).await,
        };
        METRICS.observe(started.elapsed(), res.is_ok());
        res
    }

    async fn execute_autocommit(
        &mut self,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let retries = self.engine.limits.autocommit_retries_max;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut after = Vec::new();
            let res = self
                .execute_once(stmt, kind, params.clone(), &mut after)
                .await;
            match res {
                Err(e) if e.is_retryable() && attempt <= retries => {
                    tokio::time::sleep(std::time::Duration::from_millis(attempt as u64)).await;
                    continue;
                }
                Err(e) => return Err(e),
                Ok(r) => {
                    for a in after {
                        match a {
                            AfterCommit::ClearSpan(s, e) => {
                                if let Err(err) = self.engine.kv.clear_span(&s, &e).await {
                                    tracing::warn!("clearing a dropped table's data failed: {err}");
                                }
                            }
                        }
                    }
                    return Ok(r);
                }
            }
        }
    }

    async fn execute_once(
        &mut self,
        stmt: &DFStatement,
        kind: &Kind,
        params: Option<Vec<ScalarValue>>,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<ExecResult> {
        let txn = self.engine.kv.begin();
        let result = match kind {
            Kind::DataFusion { expose_hidden } => {
                let (state, ctx) = self.state_for(txn, *expose_hidden).await?;
                let r = self.run_datafusion(&state, &ctx, stmt, params).await?;
                drop(state);
                commit_ctx(ctx).await?;
                r
            }
            Kind::CreateTable | Kind::DropTable => {
                if params.as_ref().is_some_and(|p| !p.is_empty()) {
                    return Err(SqlError::syntax("DDL statements take no parameters"));
                }
                let mut txn = txn;
                let tag = self.run_ddl(&mut txn, stmt, kind, after).await?;
                txn.commit().await?;
                ExecResult::Command(tag)
            }
            _ => return Err(SqlError::internal("statement kind has no autocommit path")),
        };
        Ok(result)
    }

    async fn state_for(
        &self,
        txn: Txn,
        expose_hidden: bool,
    ) -> SqlResult<(SessionState, Arc<StmtCtx>)> {
        let snapshot = CatalogSnapshot::load(&txn, &self.database).await?;
        let ctx = Arc::new(StmtCtx {
            kv: self.engine.kv.clone(),
            txn: tokio::sync::RwLock::new(txn),
            expose_hidden,
            limits: self.engine.limits.clone(),
        });
        let list = Arc::new(KCatalogList::new(&self.database, &snapshot, ctx.clone()));
        let state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(list)
            .build();
        Ok((state, ctx))
    }

    async fn run_datafusion(
        &self,
        state: &SessionState,
        ctx: &Arc<StmtCtx>,
        stmt: &DFStatement,
        params: Option<Vec<ScalarValue>>,
    ) -> SqlResult<ExecResult> {
        let mut plan = state
            .statement_to_plan(stmt.clone())
            .await
            .map_err(from_datafusion)?;
        if let Some(p) = params {
            plan = plan.with_param_values(p).map_err(from_datafusion)?;
        }
        match &plan {
            LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Update | WriteOp::Delete) => {
                let n = crate::dml::execute(state, d, ctx).await?;
                let verb = if d.op == WriteOp::Update {
                    "UPDATE"
                } else {
                    "DELETE"
                };
                Ok(ExecResult::Command(format!("{verb} {n}")))
            }
            LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)) => {
                let batches = self.collect(state, &plan).await?;
                let n = batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<UInt64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0);
                Ok(ExecResult::Command(format!("INSERT 0 {n}")))
            }
            LogicalPlan::Dml(d) => Err(SqlError::unsupported(format!("{} statements", d.op))),
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Copy(_) => Err(
                SqlError::unsupported(format!("statement {}", plan.display())),
            ),
            _ => {
                let batches = self.collect(state, &plan).await?;
                Ok(ExecResult::Rows {
                    schema: Arc::new(plan.schema().as_arrow().clone()),
                    batches,
                })
            }
        }
    }

    async fn collect(
        &self,
        state: &SessionState,
        plan: &LogicalPlan,
    ) -> SqlResult<Vec<RecordBatch>> {
        crate::exec::collect(state, plan, &self.engine.limits, None).await
    }

    async fn run_ddl(
        &self,
        txn: &mut Txn,
        stmt: &DFStatement,
        kind: &Kind,
        after: &mut Vec<AfterCommit>,
    ) -> SqlResult<String> {
        let snapshot = CatalogSnapshot::load(txn, &self.database).await?;
        let eval = |e: &ast::Expr, ty: &SqlType| self.eval_constant(e.clone(), ty.clone()).boxed();
        let ddl = DdlCtx {
            kv: &self.engine.kv,
            db: &self.database,
            snapshot: &snapshot,
            eval: &eval,
        };
        let DFStatement::Statement(s) = stmt else {
            return Err(SqlError::internal("not a DDL statement"));
        };
        match (kind, s.as_ref()) {
            (Kind::CreateTable, SqlStatement::CreateTable(ct)) => {
                ddl::create_table(&ddl, txn, ct).await
            }
            (
                Kind::DropTable,
                SqlStatement::Drop {
                    names, if_exists, ..
                },
            ) => ddl::drop_table(&ddl, txn, names, *if_exists, after),
            _ => Err(SqlError::internal("DDL statement mismatch")),
        }
    }

    /// Evaluates a constant expression (no tables) to a value of `ty`.
    async fn eval_constant(&self, e: ast::Expr, ty: SqlType) -> SqlResult<Datum> {
        let sql = format!("SELECT CAST({e} AS {})", cast_name(&ty));
        let stmt = parse(&sql)?
            .pop()
            .ok_or_else(|| SqlError::internal("empty constant"))?;
        let plan = self
            .base
            .statement_to_plan(stmt)
            .await
            .map_err(from_datafusion)?;
        let batches = self.collect(&self.base, &plan).await?;
        let col = batches
            .first()
            .map(|b| b.column(0).clone())
            .ok_or_else(|| SqlError::internal("no constant"))?;
        let mut d = datums_from_array(&ty, &col)?;
        Ok(d.pop().unwrap_or(Datum::Null))
    }

    fn set(&mut self, stmt: &DFStatement) -> SqlResult<ExecResult> {
        let DFStatement::Statement(s) = stmt else {
            return Ok(ExecResult::Command("RESET".into()));
        };
        match s.as_ref() {
            SqlStatement::Set(ast::Set::SingleAssignment {
                variable, values, ..
            }) => {
                let name = variable.to_string().to_lowercase();
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                self.vars.insert(name, value);
            }
            SqlStatement::Set(ast::Set::SetTimeZone { value, .. }) => {
                self.vars.insert(
                    "timezone".into(),
                    value.to_string().trim_matches('\'').to_string(),
                );
            }
            SqlStatement::Set(_) => {}
            _ => return Err(SqlError::internal("not a SET statement")),
        }
        Ok(ExecResult::Command("SET".into()))
    }

    fn show(&self, stmt: &DFStatement) -> SqlResult<ExecResult> {
        let name = show_name(stmt);
        let Some(v) = self.vars.get(&name) else {
            return Err(SqlError::new(
                code::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        };
        let schema = show_schema(&name);
        let arr = Arc::new(datafusion::arrow::array::StringArray::from(vec![v.clone()]));
        let batch = RecordBatch::try_new(schema.clone(), vec![arr])
            .map_err(|e| SqlError::internal(e.to_string()))?;
        Ok(ExecResult::Rows {
            schema,
            batches: vec![batch],
        })
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|s| s.as_str())
    }
}

fn show_name(stmt: &DFStatement) -> String {
    match stmt {
        DFStatement::Statement(s) => match s.as_ref() {
            SqlStatement::ShowVariable { variable } => variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// The SQL type name DataFusion's parser understands for a CAST to `ty`.
fn cast_name(ty: &SqlType) -> String {
    match ty {
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Uuid | SqlType::Text => "TEXT".into(),
        SqlType::Bytea => "BYTEA".into(),
        SqlType::TimestampTz => "TIMESTAMPTZ".into(),
        other => other.pg_name(),
    }
}

/// Commits the statement's transaction. Plan pieces aborted early (e.g. by a LIMIT) may still
/// hold the context for a moment; they only read, and the commit empties the write buffer.
async fn commit_ctx(ctx: Arc<StmtCtx>) -> SqlResult<()> {
    ctx.txn.write().await.commit().await?;
    Ok(())
}
