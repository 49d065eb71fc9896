//! The PostgreSQL wire protocol in front of citybrain's governed SQL, so psql, psycopg,
//! asyncpg, SQLAlchemy, Node's `pg`, Superset, Grafana and DBeaver connect as they would
//! to PostgreSQL (`citybrain up --pg-listen 127.0.0.1:5433`).
//!
//! Key decision: the wire is only another way to make the data call `POST /api/v1/sql`
//! makes. A principal logs in with its name as the user and its token as the password;
//! every statement is re-authenticated (a revoked token stops an open connection too) and
//! runs through `SqlEngine::stream_with_params_as`, so grants, masks, limits and the audit
//! trail are the same code as over HTTP. What PostgreSQL clients need beyond that is
//! small: session statements (`session`), a catalog to browse (`citybrain_sql::pg_catalog`)
//! and the mapping of types (`encode`). The protocol itself is the `pgwire` crate.

mod encode;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod psql;
mod session;

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citybrain_core::Timestamp;
use citybrain_gov::{CallKind, Gov, Principal};
use citybrain_sql::{DataCall, Described, Reader, SqlEngine};
use futures::future::Either;
use futures::{Sink, StreamExt};
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
    StartupHandler,
};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_query_response};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, PgWireConnectionState,
    PgWireServerHandlers, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::error::{sql_error, user_error};
use crate::session::Command;

pub use session::purpose_from_options;

/// What the wire serves: the same engine and governance as the HTTP API.
#[derive(Debug, Clone)]
pub struct PgServer {
    pub sql: SqlEngine,
    pub gov: Arc<Gov>,
    /// With TLS, every login must come over it: a token is a password.
    pub tls: Option<Tls>,
}

/// The listener's certificate, for `sslmode=require` and stronger.
#[derive(Clone)]
pub struct Tls(pgwire::tokio::TlsAcceptor);

impl Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// From a TLS identity offering ALPN `postgresql` (`citybrain_server::tls_identity`).
    pub fn from_config(config: Arc<pgwire::tokio::tokio_rustls::rustls::ServerConfig>) -> Self {
        Self(pgwire::tokio::TlsAcceptor::from(config))
    }
}

/// Accepts connections on `listener` until `shutdown` resolves. Each connection runs on
/// its own task; a statement in flight when the server stops ends with its connection.
pub async fn serve(
    listener: TcpListener,
    server: PgServer,
    shutdown: impl Future<Output = ()> + Send,
) {
    let tls = server.tls.clone().map(|t| t.0);
    let handlers = Arc::new(Handlers::new(server));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let (handlers, tls) = (handlers.clone(), tls.clone());
                    tokio::spawn(async move {
                        if let Err(error) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                            tracing::debug!(message = "A Postgres wire connection ended with an error.", %error);
                        }
                    });
                }
                Err(error) => {
                    // Out of descriptors, typically: wait rather than spin.
                    tracing::warn!(message = "Accepting a Postgres wire connection failed.", %error);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// The current time, read at the edge.
fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}

/// One connection's login: its token (checked again at every statement) and purpose.
struct Session {
    token: String,
    purpose: Mutex<String>,
}

impl Session {
    /// The data call a statement makes, for the principal the token stands for now.
    fn call(&self, gov: &Gov) -> PgWireResult<DataCall> {
        let now = now();
        let principal = gov.authenticate(&self.token, now).map_err(|e| {
            if let Some(unavailable) = error::metadata_unavailable(&e, "ERROR") {
                return unavailable;
            }
            let mut info = pgwire::error::ErrorInfo::new(
                "FATAL".to_string(),
                "28000".to_string(),
                format!("the token no longer authenticates ({e}); reconnect with a valid token"),
            );
            info.hint = Some("issue a new token with `citybrain token issue`".to_string());
            PgWireError::UserError(Box::new(info))
        })?;
        Ok(DataCall {
            reader: Reader::Principal(principal),
            purpose: self.purpose.lock().expect("purpose lock").clone(),
            kind: CallKind::Sql,
            now,
        })
    }
}

fn session<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| user_error("28000", "the connection has not logged in"))
}

struct Handlers {
    backend: Arc<Backend>,
    startup: Arc<Startup>,
}

impl Handlers {
    fn new(server: PgServer) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        // Plain, for the clients that parse it; `version()` says it is citybrain.
        parameters.server_version = "15.0".to_string();
        parameters.time_zone = "UTC".to_string();
        parameters.default_transaction_read_only = true;
        Self {
            startup: Arc::new(Startup {
                tls_required: server.tls.is_some(),
                driver: AuthDriver::new(parameters),
                factory: CleartextPasswordAuth::new(Arc::new(Tokens {
                    gov: server.gov.clone(),
                })),
            }),
            backend: Arc::new(Backend {
                parser: Arc::new(Parser {
                    server: server.clone(),
                }),
                server,
            }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Passwords are tokens: a login succeeds when the token authenticates the principal
/// named as the user.
#[derive(Debug)]
struct Tokens {
    gov: Arc<Gov>,
}

/// Who logged in, with what.
struct Login {
    token: String,
}

#[async_trait]
impl AuthSource<Login> for Tokens {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Tokens are stored as hashes: there is no password to hand out.
        Err(user_error(
            "28000",
            "only password (token) logins are accepted",
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Login>> {
        let user = login.user().unwrap_or_default();
        let refused = || {
            let mut info = pgwire::error::ErrorInfo::new(
                "FATAL".to_string(),
                "28P01".to_string(),
                format!("password authentication failed for user \"{user}\""),
            );
            info.hint = Some(
                "connect as the principal's name with its API token as the password".to_string(),
            );
            PgWireError::UserError(Box::new(info))
        };
        let token = std::str::from_utf8(presented)
            .map_err(|_| refused())?
            .trim();
        let principal: Principal = self
            .gov
            .authenticate(token, now())
            .map_err(|e| error::metadata_unavailable(&e, "FATAL").unwrap_or_else(refused))?;
        if principal.name.as_str() != user {
            return Err(refused());
        }
        Ok(Some(Login {
            token: token.to_string(),
        }))
    }
}

struct Startup {
    tls_required: bool,
    driver: AuthDriver<DefaultServerParameterProvider, Login>,
    factory: CleartextPasswordAuth<Tokens>,
}

#[async_trait]
impl StartupHandler for Startup {
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
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_required && !client.is_secure() {
                    let mut info = pgwire::error::ErrorInfo::new(
                        "FATAL".to_string(),
                        "28000".to_string(),
                        "this server takes logins over TLS only".to_string(),
                    );
                    info.hint = Some("connect with sslmode=require (or verify-full)".to_string());
                    return Err(PgWireError::UserError(Box::new(info)));
                }
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                let mechanism = self.factory.create();
                self.driver.begin_authentication(client, mechanism).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.driver.advance_authentication(client, message).await?
            }
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated {
                identity,
                final_message,
            } => {
                let Some(login) = identity else {
                    return Err(user_error("28000", "the login named no principal"));
                };
                // libpq's `options`, or a startup parameter of its own (asyncpg's
                // `server_settings`).
                let metadata = client.metadata();
                let purpose = metadata
                    .get("options")
                    .and_then(|o| purpose_from_options(o))
                    .or_else(|| metadata.get("purpose").cloned())
                    .or_else(|| metadata.get("citybrain.purpose").cloned())
                    .unwrap_or_default();
                client.session_extensions().insert(Session {
                    token: login.token,
                    purpose: Mutex::new(purpose),
                });
                self.driver
                    .complete_authentication(client, final_message)
                    .await
            }
        }
    }
}

/// A statement as the extended protocol keeps it between Parse and Execute.
#[derive(Debug, Clone)]
pub enum Prepared {
    Command(Command),
    Query { sql: String, described: Described },
}

#[derive(Debug)]
struct Parser {
    server: PgServer,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let command = session::classify(sql);
        if command != Command::Query {
            return Ok(Some(Prepared::Command(command)));
        }
        let call = session(client)?.call(&self.server.gov)?;
        let sql = psql::rewrite(sql).unwrap_or_else(|| sql.to_string());
        let described = self
            .server
            .sql
            .describe_as(&sql, &call)
            .await
            .map_err(sql_error)?;
        Ok(Some(Prepared::Query { sql, described }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(match statement {
            Prepared::Command(_) => Vec::new(),
            Prepared::Query { described, .. } => described
                .parameters
                .iter()
                .map(|t| encode::parameter_type(None, t.as_ref()))
                .collect(),
        })
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match statement {
            Prepared::Command(Command::Show(name)) => show_fields(name, format),
            Prepared::Command(_) => Vec::new(),
            Prepared::Query { described, .. } => encode::fields(&described.schema, format),
        })
    }
}

fn show_fields(name: &str, format: Option<&Format>) -> Vec<FieldInfo> {
    let format = format.map_or(pgwire::api::results::FieldFormat::Text, |f| f.format_for(0));
    vec![FieldInfo::new(
        name.split_whitespace().next().unwrap_or(name).to_string(),
        None,
        None,
        Type::TEXT,
        format,
    )]
}

struct Backend {
    server: PgServer,
    parser: Arc<Parser>,
}

impl Backend {
    /// Answers a session statement.
    fn command<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        command: &Command,
        format: Option<&Format>,
    ) -> PgWireResult<Response> {
        Ok(match command {
            Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Command::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Command::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Command::Ignored(tag) => Response::Execution(Tag::new(tag)),
            Command::Set { name, value } => {
                if session::is_purpose(name) {
                    citybrain_gov::check_purpose(value)
                        .map_err(|e| user_error("22023", e.to_string()))?;
                    *session(client)?.purpose.lock().expect("purpose lock") = value.clone();
                }
                Response::Execution(Tag::new("SET"))
            }
            Command::Show(name) => {
                let value = if session::is_purpose(name) {
                    session(client)?
                        .purpose
                        .lock()
                        .expect("purpose lock")
                        .clone()
                } else {
                    citybrain_sql::pg_catalog::setting(name)
                        .ok_or_else(|| {
                            user_error(
                                "42704",
                                format!("unrecognized configuration parameter \"{name}\""),
                            )
                        })?
                        .to_string()
                };
                let fields = Arc::new(show_fields(name, format));
                let mut encoder = pgwire::api::results::DataRowEncoder::new(fields.clone());
                encoder.encode_field(&value)?;
                let row = encoder.take_row();
                Response::Query(QueryResponse::new(fields, futures::stream::iter([Ok(row)])))
            }
            Command::Query => unreachable!("queries are not session statements"),
        })
    }

    /// Runs a query with its parameter values. Streamed, its rows go out as the statement
    /// produces them (citybrain_sql's `stream`: the server holds a few batches of a long
    /// result, and the statement its slot until the client has read it); collected, the
    /// statement is done and its slot free when this returns.
    async fn query<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        params: Vec<citybrain_sql::ScalarValue>,
        format: Option<&Format>,
        streamed: bool,
    ) -> PgWireResult<Response> {
        let call = session(client)?.call(&self.server.gov)?;
        // psql's `\d NAME`, written for PostgreSQL's planner (psql.rs).
        let rewritten = psql::rewrite(sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        let engine = &self.server.sql;
        let (fields, batches) = if streamed {
            let result = engine
                .stream_with_params_as(sql, params, &call)
                .await
                .map_err(sql_error)?;
            let fields = Arc::new(encode::fields(result.schema(), format));
            (fields, result.map(|batch| batch.map_err(sql_error)).boxed())
        } else {
            let result = engine
                .query_with_params_as(sql, params, &call)
                .await
                .map_err(sql_error)?;
            let fields = Arc::new(encode::fields(&result.schema, format));
            (
                fields,
                futures::stream::iter(result.batches.into_iter().map(Ok)).boxed(),
            )
        };
        Ok(Response::Query(QueryResponse::new(
            fields.clone(),
            encode::rows(batches, fields),
        )))
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        let statements = session::split(query);
        let last = statements.len().saturating_sub(1);
        for (i, statement) in statements.into_iter().enumerate() {
            let response = match session::classify(statement) {
                // pgwire sends the answers once every statement has run, so only the last
                // may stream: one still streaming would hold its slot while the next waits
                // for one (two long statements on two slots would wait out the timeout).
                Command::Query => {
                    self.query(client, statement, Vec::new(), None, i == last)
                        .await
                }
                command => self.command(client, &command, None),
            };
            match response {
                Ok(response) => responses.push(response),
                // PostgreSQL stops a multi-statement query at its first error.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// pgwire's own Execute, asked for every row of a portal (`max_rows` 0, what psycopg,
    /// asyncpg's fetch, SQLAlchemy and node-pg send), collects them all before it sends
    /// the first. Here such a query's rows go out as the statement produces them, as
    /// over the simple protocol; a cancel request stops the statement while it streams.
    /// Everything else (row limits, a portal already started, session statements) is
    /// pgwire's.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal))
                if message.max_rows == 0
                    && matches!(portal.statement.statement, Prepared::Query { .. }) =>
            {
                portal
            }
            _ => return self._on_execute(client, message).await,
        };
        if !matches!(*portal.state().lock().await, PortalExecutionState::Initial) {
            return self._on_execute(client, message).await;
        }
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
        let cancelled = match handle {
            Some(handle) => Either::Left(handle.start_query().await),
            None => Either::Right(futures::future::pending()),
        };
        let run = Box::pin(async {
            match ExtendedQueryHandler::do_query(self, client, &portal, 0).await? {
                Response::Query(rows) => send_query_response(client, rows, false).await,
                _ => unreachable!("a prepared query answers rows"),
            }
        });
        match futures::future::select(run, cancelled).await {
            Either::Left((sent, _)) => sent?,
            // Dropping the statement's stream stops it (citybrain_sql's `stream`).
            Either::Right(_) => return Err(PgWireError::QueryCanceled),
        }
        *portal.state().lock().await = PortalExecutionState::Finished;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = Some(&portal.result_column_format);
        match &portal.statement.statement {
            Prepared::Command(command) => self.command(client, command, format),
            Prepared::Query { sql, described } => {
                let declared = &portal.statement.parameter_types;
                let params = (0..portal.parameter_len())
                    .map(|i| {
                        encode::parameter(
                            portal,
                            i,
                            declared.get(i).and_then(Option::as_ref),
                            described.parameters.get(i).and_then(Option::as_ref),
                        )
                    })
                    .collect::<PgWireResult<Vec<_>>>()?;
                self.query(client, sql, params, format, true).await
            }
        }
    }
}
