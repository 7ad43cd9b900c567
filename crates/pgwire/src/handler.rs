//! The per-connection protocol handlers.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use futures::{stream, Sink};
use kestrel_sql::{ExecResult, Prepared, Session, SqlEngine, SqlError};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::encode::{encode_rows, field_infos};
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

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or_else(no_session)?;
        let (results, err) = session.execute_sql(query).await;
        let mut out = Vec::with_capacity(results.len() + 1);
        for r in results {
            match to_response(r, &Format::UnifiedText) {
                Ok(resp) => out.push(resp),
                Err(e) => {
                    out.push(Response::Error(Box::new(to_wire(&e))));
                    return Ok(out);
                }
            }
        }
        if let Some(e) = err {
            out.push(Response::Error(Box::new(to_wire(&e))));
        }
        Ok(out)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Stmt;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Stmt>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Stmt>,
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
            let v = params::decode(
                raw.as_deref(),
                portal.parameter_format.is_binary(i),
                &ty,
                target,
            )
            .map_err(|e| to_pgwire_error(&e))?;
            values.push(v);
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
        match self.engine.session(&db).await {
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
        self.handler.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
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
