//! The per-connection protocol handlers.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::{stream, Sink, SinkExt};
use kestrel_sql::{ExecResult, Prepared, Session, SqlEngine, SqlError, TxnStatus};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::copy::{send_copy_in_response, send_copy_out_response, CopyHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler,
    SimpleQueryHandler,
};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type, DEFAULT_NAME, METADATA_DATABASE,
    METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, Sync as PgSync, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::copy::copy_line;
use crate::deferred::Pipelined;
use crate::encode::{encode_rows, field_infos, text_cells};
use crate::{params, to_pgwire_error, to_wire};

type SharedSession = Arc<Mutex<Option<Session>>>;

/// A statement after Parse: the plan-derived description plus the client's parameter types.
#[derive(Clone, Debug)]
pub struct Stmt {
    prepared: Option<Arc<Prepared>>,
    param_types: Vec<Type>,
}

pub struct Parser {
    session: SharedSession,
}

fn no_session() -> PgWireError {
    to_pgwire_error(&SqlError::internal("no session: startup did not complete"))
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Stmt;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Stmt>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        let Some(prepared) = session
            .prepare(sql)
            .await
            .map_err(|e| to_pgwire_error(&e))?
        else {
            return Ok(None);
        };
        let n = prepared.param_fields.len().max(types.len());
        let param_types = (0..n)
            .map(|i| match types.get(i).cloned().flatten() {
                Some(t) if t != Type::UNKNOWN => t,
                _ => params::pg_type_of(prepared.param_fields.get(i).and_then(|t| t.as_deref())),
            })
            .collect();
        Ok(Some(Stmt {
            prepared: Some(Arc::new(prepared)),
            param_types,
        }))
    }

    fn get_parameter_types(&self, stmt: &Stmt) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Stmt,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let fmt = format.cloned().unwrap_or(Format::UnifiedText);
        Ok(
            match stmt.prepared.as_ref().and_then(|p| p.schema.as_ref()) {
                Some(schema) => field_infos(schema, &fmt),
                None => vec![],
            },
        )
    }
}

pub struct Handler {
    engine: Arc<SqlEngine>,
    session: SharedSession,
    parser: Arc<Parser>,
}

fn to_response(result: ExecResult, format: &Format) -> Result<Response, SqlError> {
    match result {
        ExecResult::Command(tag) => Ok(Response::Execution(Tag::new(&tag))),
        ExecResult::Rows { schema, batches } => rows_response(&schema, &batches, format),
        ExecResult::Returned {
            schema,
            batches,
            verb,
        } => {
            let mut resp = rows_response(&schema, &batches, format)?;
            if let Response::Query(q) = &mut resp {
                q.set_command_tag(verb);
            }
            Ok(resp)
        }
        ExecResult::CopyIn { columns } => Ok(Response::CopyIn(CopyResponse::new(
            0,
            columns,
            stream::empty(),
        ))),
        ExecResult::CopyOut {
            schema,
            batches,
            options,
        } => {
            let lines: Vec<PgWireResult<CopyData>> = text_cells(&schema, &batches)?
                .iter()
                .map(|row| Ok(CopyData::new(copy_line(row, &options).into())))
                .collect();
            Ok(Response::CopyOut(CopyResponse::new(
                0,
                schema.fields().len(),
                stream::iter(lines),
            )))
        }
    }
}

fn rows_response(
    schema: &SchemaRef,
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    format: &Format,
) -> Result<Response, SqlError> {
    let fields = Arc::new(field_infos(schema, format));
    let rows = encode_rows(&fields, schema, batches)?;
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows.into_iter().map(Ok)),
    )))
}

/// The ReadyForQuery status of a session.
fn wire_status(s: TxnStatus) -> TransactionStatus {
    match s {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InBlock => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

impl Handler {
    /// Runs a simple-protocol query string; returns the responses and the session's status.
    async fn simple_query(&self, query: &str) -> PgWireResult<(Vec<Response>, TransactionStatus)> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        let (results, err) = session.execute_sql(query).await;
        let mut out = Vec::with_capacity(results.len() + 1);
        for r in results {
            match to_response(r, &Format::UnifiedText) {
                Ok(resp) => out.push(resp),
                Err(e) => {
                    out.push(Response::Error(Box::new(to_wire(&e))));
                    return Ok((out, wire_status(session.txn_status())));
                }
            }
        }
        if let Some(e) = err {
            out.push(Response::Error(Box::new(to_wire(&e))));
        }
        Ok((out, wire_status(session.txn_status())))
    }

    async fn session_status(&self) -> TransactionStatus {
        match self.session.lock().await.as_ref() {
            Some(s) => wire_status(s.txn_status()),
            None => TransactionStatus::Idle,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    /// Runs the query and reports the session's own transaction status in ReadyForQuery
    /// (pgwire's default derives it from response kinds, which cannot express e.g. a failed
    /// COMMIT ending the block or ROLLBACK TO reviving a failed one).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let (responses, status) = self.simple_query(&query.query).await?;
        if responses.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        for r in responses {
            match r {
                Response::CopyIn(c) => {
                    // The rest arrives as CopyData; CopyDone ends it and sends ReadyForQuery.
                    send_copy_in_response(client, c).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    return Ok(());
                }
                Response::CopyOut(c) => send_copy_out_response(client, c).await?,
                Response::Query(q) => send_query_response(client, q, true).await?,
                Response::Execution(tag)
                | Response::TransactionStart(tag)
                | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                Response::Error(e) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                        .await?
                }
                _ => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(self.simple_query(query).await?.0)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Stmt;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Describe of a statement that returns no rows answers ParameterDescription + NoData,
    /// as PostgreSQL does (pgwire would send an empty RowDescription when the statement has
    /// parameters, and JDBC then reads its batch update counts as 0).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &stmt).await?;
                if described.fields.is_empty() {
                    let oids = described.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(oids),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    /// Sync: ReadyForQuery carries the session's own transaction status (see `on_query`).
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = self.session_status().await;
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Stmt>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Stmt>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &portal.statement.statement;
        let Some(prepared) = stmt.prepared.as_ref() else {
            return Ok(Response::EmptyQuery);
        };
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, raw) in portal.parameters.iter().enumerate() {
            let ty = stmt.param_types.get(i).cloned().unwrap_or(Type::TEXT);
            let target: Option<&DataType> = prepared
                .param_fields
                .get(i)
                .and_then(|f| f.as_ref())
                .map(|f| f.data_type());
            match params::decode(
                raw.as_deref(),
                portal.parameter_format.is_binary(i),
                &ty,
                target,
            ) {
                Ok(v) => values.push(v),
                Err(e) => {
                    if let Some(s) = self.session.lock().await.as_mut() {
                        s.fail_block();
                    }
                    return Err(to_pgwire_error(&e));
                }
            }
        }
        let params = (!values.is_empty() || !prepared.param_fields.is_empty()).then_some(values);
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        let result = session
            .execute(&prepared.stmt, params)
            .await
            .map_err(|e| to_pgwire_error(&e))?;
        to_response(result, &portal.result_column_format).map_err(|e| to_pgwire_error(&e))
    }
}

#[async_trait]
impl CopyHandler for Handler {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        session.copy_data(&data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        let res = session.copy_done().await;
        client.set_transaction_status(wire_status(session.txn_status()));
        let n = res.map_err(|e| to_pgwire_error(&e))?;
        let tag = Tag::new("COPY").with_rows(n as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(s) = self.session.lock().await.as_mut() {
            s.copy_fail().await;
            client.set_transaction_status(wire_status(s.txn_status()));
        }
        to_pgwire_error(&SqlError::new(
            "57014",
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

/// What the server announces at startup.
struct ServerParams {
    user: String,
    application_name: String,
}

impl ServerParameterProvider for ServerParams {
    fn server_parameters<C>(&self, _client: &C) -> Option<std::collections::HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut m = std::collections::HashMap::new();
        for (k, v) in [
            ("server_version", kestrel_sql::SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("IntervalStyle", "postgres"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "on"),
            ("default_transaction_read_only", "off"),
            ("in_hot_standby", "off"),
        ] {
            m.insert(k.to_string(), v.to_string());
        }
        m.insert("session_authorization".into(), self.user.clone());
        m.insert("application_name".into(), self.application_name.clone());
        Some(m)
    }
}

#[async_trait]
impl StartupHandler for Handler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(ref startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        let db = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| "defaultdb".to_string());
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_else(|| "root".to_string());
        match self.engine.session(&db, &user).await {
            Ok(s) => *self.session.lock().await = Some(s),
            Err(e) => {
                let mut info = to_wire(&e);
                info.severity = "FATAL".into();
                return Err(PgWireError::UserError(Box::new(info)));
            }
        }
        let (pid, key) = RandomPidSecretKeyGenerator::default().generate(client);
        client.set_pid_and_secret_key(pid, key);
        let app = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        finish_authentication(
            client,
            &ServerParams {
                user,
                application_name: app,
            },
        )
        .await
    }
}

/// One client connection's handlers.
pub struct Connection {
    handler: Arc<Handler>,
}

impl Connection {
    pub fn new(engine: Arc<SqlEngine>) -> Self {
        let session: SharedSession = Arc::new(Mutex::new(None));
        let parser = Arc::new(Parser {
            session: session.clone(),
        });
        Self {
            handler: Arc::new(Handler {
                engine,
                session,
                parser,
            }),
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Pipelined(self.handler.clone()))
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.handler.clone()
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.handler.clone()
    }
}

/// Serves one accepted socket until the client disconnects.
pub async fn serve_connection(socket: TcpStream, engine: Arc<SqlEngine>) {
    let _ = socket.set_nodelay(true);
    if let Err(e) = pgwire::tokio::process_socket(socket, None, Connection::new(engine)).await {
        tracing::debug!("connection ended: {e}");
    }
}
