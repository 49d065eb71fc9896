//! The cluster's engine: one PostgreSQL database every node shares.
//!
//! tokio-postgres runs on a two-worker runtime owned here, and each call waits for its
//! answer on a channel. The synchronous `postgres` wrapper would be less code, but it
//! waits with its runtime's `block_on`, which panics on a thread that is already running
//! a runtime (the server's handlers call governance directly). Statements are prepared
//! once per connection and kept.
//!
//! A connection lost outside a change is reopened at the next call. Lost inside a change
//! (between `BEGIN` and `COMMIT`), it is not: the server has dropped the change, and
//! statements run on a new connection would commit one by one. Every call then fails
//! until the caller's rollback closes the change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use crate::{DbError, Row, Schema, Value};

/// A PostgreSQL database: its connection string (`postgresql://user:password@host:port/db`
/// or `host=... user=...`) and how long a call may take.
#[derive(Clone)]
pub struct Postgres {
    pub url: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold the password.
        f.debug_struct("Postgres")
            .field("place", &self.shown())
            .finish()
    }
}

impl Postgres {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: crate::DEFAULT_TIMEOUT,
        }
    }

    /// The connection string checked, with an error that says what is wrong with it.
    pub fn config(&self) -> Result<tokio_postgres::Config, DbError> {
        self.url.parse::<tokio_postgres::Config>().map_err(|e| {
            DbError::Failed(format!(
                "the PostgreSQL connection string is not one: {e} (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
            ))
        })
    }

    /// Where the database is, without the password: for messages and logs.
    pub fn shown(&self) -> String {
        let Ok(config) = self.config() else {
            return "PostgreSQL (an unreadable connection string)".into();
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            })
            .collect();
        format!(
            "PostgreSQL {}@{}/{}",
            config.get_user().unwrap_or("?"),
            hosts.join(","),
            config.get_dbname().unwrap_or("?")
        )
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Value::Text(v) => v.as_str().to_sql(ty, out),
            Value::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn decode(row: &tokio_postgres::Row, index: usize) -> Result<Value, DbError> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        index: usize,
    ) -> Result<Option<T>, DbError> {
        row.try_get::<_, Option<T>>(index)
            .map_err(|e| DbError::Failed(format!("column {index}: {e}")))
    }
    let ty = row.columns()[index].type_().clone();
    Ok(match ty {
        Type::INT8 => get::<i64>(row, index)?.map_or(Value::Null, Value::Int),
        Type::INT4 => get::<i32>(row, index)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT2 => get::<i16>(row, index)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::BOOL => get::<bool>(row, index)?.map_or(Value::Null, |v| Value::Int(v.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            get::<String>(row, index)?.map_or(Value::Null, Value::Text)
        }
        Type::BYTEA => get::<Vec<u8>>(row, index)?.map_or(Value::Null, Value::Blob),
        _ => {
            return Err(DbError::Column {
                index,
                problem: "a type the metadata never holds",
            });
        }
    })
}

/// `?1` (SQLite's numbered placeholder, what callers write) as `$1`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) struct Pg {
    settings: Postgres,
    config: tokio_postgres::Config,
    runtime: tokio::runtime::Runtime,
    client: Option<Arc<Client>>,
    statements: HashMap<String, Statement>,
    /// Between BEGIN and COMMIT/ROLLBACK.
    in_change: bool,
    /// The connection was lost inside the change: nothing runs until the rollback.
    change_lost: bool,
}

impl Pg {
    pub(crate) fn open(settings: &Postgres, schema: &Schema) -> Result<Self, DbError> {
        let config = settings.config()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("citybrain-postgres")
            .enable_all()
            .build()
            .map_err(|e| DbError::Failed(format!("starting PostgreSQL's runtime: {e}")))?;
        let mut pg = Self {
            settings: settings.clone(),
            config,
            runtime,
            client: None,
            statements: HashMap::new(),
            in_change: false,
            change_lost: false,
        };
        pg.migrate(schema)?;
        Ok(pg)
    }

    fn unavailable(&self, reason: impl std::fmt::Display) -> DbError {
        DbError::Unavailable {
            place: self.settings.shown(),
            reason: reason.to_string(),
        }
    }

    /// Runs `future` on the runtime, within the timeout, and waits for it from this thread.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    ) -> Result<Result<T, tokio_postgres::Error>, DbError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.settings.timeout;
        self.runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, future).await);
        });
        match rx.recv() {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => {
                Err(self.unavailable(format!("no answer within {} s", timeout.as_secs_f64())))
            }
            Err(_) => Err(self.unavailable("the client's runtime stopped")),
        }
    }

    fn client(&mut self) -> Result<Arc<Client>, DbError> {
        if self.change_lost {
            return Err(self
                .unavailable("the connection was lost during a change, which PostgreSQL dropped"));
        }
        if let Some(client) = &self.client
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        if self.client.take().is_some() && self.in_change {
            self.change_lost = true;
            return self.client();
        }
        self.statements.clear();
        let config = self.config.clone();
        let connected = self.run(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(message = "The PostgreSQL connection ended.", error = %e);
                }
            });
            Ok(client)
        })?;
        let client = Arc::new(connected.map_err(|e| self.unavailable(e))?);
        self.client = Some(client.clone());
        Ok(client)
    }

    /// An error from PostgreSQL, classified; a closed connection is dropped.
    fn classify(&mut self, error: tokio_postgres::Error) -> DbError {
        let closed = self.client.as_ref().is_none_or(|c| c.is_closed());
        if closed && self.client.take().is_some() && self.in_change {
            self.change_lost = true;
        }
        if let Some(db) = error.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION {
                return DbError::Duplicate(db.message().to_string());
            }
            // Class 08 (connection exception), shutdowns and "too many connections".
            if code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
            {
                return self.unavailable(db.message());
            }
            return DbError::Failed(format!("{} ({})", db.message(), code.code()));
        }
        if closed || error.is_closed() {
            return self.unavailable(error);
        }
        DbError::Failed(error.to_string())
    }

    fn statement(&mut self, client: &Arc<Client>, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let text = placeholders(sql);
        let c = client.clone();
        let statement = self
            .run(async move { c.prepare(&text).await })?
            .map_err(|e| self.classify(e))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        let client = self.client()?;
        let text = sql.to_string();
        self.run(async move { client.batch_execute(&text).await })
            .and_then(|r| r.map_err(|e| self.classify(e)))
    }

    pub(crate) fn begin(&mut self) -> Result<(), DbError> {
        self.batch("BEGIN")?;
        self.in_change = true;
        Ok(())
    }

    pub(crate) fn commit(&mut self) -> Result<(), DbError> {
        let result = self.batch("COMMIT");
        // Committed, or dropped with its connection: over either way.
        self.in_change = false;
        self.change_lost = false;
        result
    }

    /// Ends a change, whatever happened to the connection.
    pub(crate) fn rollback(&mut self) -> Result<(), DbError> {
        if self.change_lost {
            self.change_lost = false;
            self.in_change = false;
            return Ok(());
        }
        let result = self.batch("ROLLBACK");
        self.in_change = false;
        if self.change_lost {
            self.change_lost = false;
            return Ok(());
        }
        result
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let client = self.client()?;
        let statement = self.statement(&client, sql)?;
        let params = params.to_vec();
        self.run(async move {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            client.execute(&statement, &refs).await
        })?
        .map_err(|e| self.classify(e))
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let client = self.client()?;
        let statement = self.statement(&client, sql)?;
        let params = params.to_vec();
        let rows = self
            .run(async move {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                client.query(&statement, &refs).await
            })?
            .map_err(|e| self.classify(e))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| decode(row, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }

    /// Runs `schema`'s migrations not yet run on this database, once across nodes: the
    /// first node to take the advisory lock runs them, the others then find them done.
    fn migrate(&mut self, schema: &Schema) -> Result<(), DbError> {
        // A node started beside a database that is still starting waits for it a while.
        let deadline = std::time::Instant::now() + self.settings.timeout;
        loop {
            match self.client() {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
        self.begin()?;
        let result = (|| {
            // Any constant: it names this lock among the database's advisory locks.
            self.batch(
                "SELECT pg_advisory_xact_lock(7002517743);
                 CREATE TABLE IF NOT EXISTS citybrain_migrations (
                     component TEXT NOT NULL, version BIGINT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                     PRIMARY KEY (component, version))",
            )?;
            let done: Vec<i64> = self
                .query(
                    "SELECT version FROM citybrain_migrations WHERE component = ?1",
                    crate::params![schema.component],
                )?
                .iter()
                .map(|row| row.int(0))
                .collect::<Result<_, _>>()?;
            for (i, migration) in schema.postgres.iter().enumerate() {
                let version = i as i64 + 1;
                if done.contains(&version) {
                    continue;
                }
                self.batch(migration).map_err(|e| {
                    DbError::Failed(format!(
                        "migration {} #{version} failed: {e}",
                        schema.component
                    ))
                })?;
                self.execute(
                    "INSERT INTO citybrain_migrations (component, version) VALUES (?1, ?2)",
                    crate::params![schema.component, version],
                )?;
                tracing::info!(
                    message = "Migrated the PostgreSQL metadata.",
                    component = schema.component,
                    version
                );
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.commit(),
            Err(e) => {
                let _ = self.rollback();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_postgres_numbered_ones() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c > ?12 OR d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c > $12 OR d = '?'"
        );
    }

    #[test]
    fn the_password_is_never_shown() {
        let pg = Postgres::new("postgresql://city:s3cret@127.0.0.1:5544/brain");
        assert_eq!(pg.shown(), "PostgreSQL city@127.0.0.1:5544/brain");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let kv = Postgres::new("host=db1 user=city password=s3cret dbname=brain");
        assert!(!kv.shown().contains("s3cret"));
    }
}
