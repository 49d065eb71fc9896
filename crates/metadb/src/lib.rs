//! The small, precious metadata (the hub's catalog, governance) in SQLite or PostgreSQL.
//!
//! One machine keeps it in SQLite files in the data directory; a cluster keeps it in one
//! PostgreSQL database every node shares (issue 25, docs/cluster.md), so a token revoked
//! or a grant decided on one node holds on every node at its next call. The callers write
//! their SQL once, in the dialect both engines speak (`?1` placeholders, `ON CONFLICT`,
//! `RETURNING`), and read rows as [`Value`]s; only their table definitions differ, kept
//! as numbered migration files for PostgreSQL.
//!
//! Both engines are used synchronously, one connection each, behind a lock: the callers
//! are synchronous and their statements are key lookups. PostgreSQL's async client runs on
//! a runtime of this crate's own (`postgres.rs` says why). A lost PostgreSQL connection is
//! reopened at the next call; until it opens, calls fail with [`DbError::Unavailable`],
//! which the server answers with 503.

mod postgres;
mod sqlite;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub use postgres::Postgres;

/// Where the metadata lives.
#[derive(Debug, Clone)]
pub enum Place {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Postgres),
}

/// A component's tables.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Names the component in `citybrain_migrations` (PostgreSQL).
    pub component: &'static str,
    /// Run at every SQLite open: `CREATE ... IF NOT EXISTS` statements.
    pub sqlite: &'static str,
    /// PostgreSQL migrations, in order; each runs once per database, in a transaction.
    pub postgres: &'static [&'static str],
}

/// The engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// `[a.into(), b.into(), ...]`, for a statement's parameters.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::Value::from($v)),*] };
}

/// A result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    fn get(&self, index: usize) -> Result<&Value, DbError> {
        self.0.get(index).ok_or(DbError::Column {
            index,
            problem: "no such column",
        })
    }

    pub fn int(&self, index: usize) -> Result<i64, DbError> {
        match self.get(index)? {
            Value::Int(v) => Ok(*v),
            _ => Err(DbError::Column {
                index,
                problem: "not an integer",
            }),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, DbError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    pub fn text(&self, index: usize) -> Result<String, DbError> {
        match self.get(index)? {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(DbError::Column {
                index,
                problem: "not text",
            }),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<String>, DbError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (PostgreSQL down, restarting, or not answering in
    /// time): the call may succeed later.
    #[error("{place} is unavailable: {reason}")]
    Unavailable { place: String, reason: String },
    /// A unique key already holds the value.
    #[error("{0}")]
    Duplicate(String),
    #[error("{0}")]
    Failed(String),
    #[error("column {index}: {problem}")]
    Column { index: usize, problem: &'static str },
}

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

enum Engine {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Pg>),
}

/// One connection to the metadata, used by one component.
pub struct Db {
    engine: Mutex<Engine>,
    dialect: Dialect,
    place: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("place", &self.place).finish()
    }
}

impl Db {
    /// Opens `place` and brings `schema`'s tables up to date.
    pub fn open(place: &Place, schema: &Schema) -> Result<Self, DbError> {
        let (engine, dialect, shown) = match place {
            Place::Sqlite(path) => (
                Engine::Sqlite(sqlite::Sqlite::open(path, schema)?),
                Dialect::Sqlite,
                path.display().to_string(),
            ),
            Place::Postgres(settings) => (
                Engine::Postgres(Box::new(postgres::Pg::open(settings, schema)?)),
                Dialect::Postgres,
                settings.shown(),
            ),
        };
        Ok(Self {
            engine: Mutex::new(engine),
            dialect,
            place: shown,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Where the data is, fit to show (a PostgreSQL password is left out).
    pub fn place(&self) -> &str {
        &self.place
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        // A panic while holding the lock leaves nothing half-done that the engine's own
        // transaction does not undo.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        match &mut *self.engine() {
            Engine::Sqlite(db) => db.execute(sql, params),
            Engine::Postgres(db) => db.execute(sql, params),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match &mut *self.engine() {
            Engine::Sqlite(db) => db.query(sql, params),
            Engine::Postgres(db) => db.query(sql, params),
        }
    }

    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Starts a change: the statements that follow take effect at [`Db::commit`].
    pub fn begin(&self) -> Result<(), DbError> {
        match &mut *self.engine() {
            // A savepoint, which SQLite nests; the callers never nest.
            Engine::Sqlite(db) => db.batch("SAVEPOINT change"),
            Engine::Postgres(db) => db.begin(),
        }
    }

    pub fn commit(&self) -> Result<(), DbError> {
        match &mut *self.engine() {
            Engine::Sqlite(db) => db.batch("RELEASE change"),
            Engine::Postgres(db) => db.commit(),
        }
    }

    pub fn rollback(&self) -> Result<(), DbError> {
        match &mut *self.engine() {
            Engine::Sqlite(db) => db.batch("ROLLBACK TO change; RELEASE change"),
            Engine::Postgres(db) => db.rollback(),
        }
    }
}

/// How long a PostgreSQL call may take before it counts as unavailable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: Schema = Schema {
        component: "test",
        sqlite: "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER, b BLOB);",
        postgres: &["CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, b BYTEA);"],
    };

    #[test]
    fn sqlite_round_trips_values_and_undoes_a_rolled_back_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&Place::Sqlite(dir.path().join("t.sqlite")), &SCHEMA).unwrap();
        assert_eq!(
            db.execute(
                "INSERT INTO t (k, n, b) VALUES (?1, ?2, ?3)",
                params!["a", 7i64, vec![1u8, 2]]
            )
            .unwrap(),
            1
        );
        let err = db
            .execute(
                "INSERT INTO t (k, n) VALUES (?1, ?2)",
                params!["a", None::<i64>],
            )
            .unwrap_err();
        assert!(err.is_duplicate(), "{err}");
        db.begin().unwrap();
        db.execute("INSERT INTO t (k) VALUES (?1)", params!["b"])
            .unwrap();
        db.rollback().unwrap();
        let rows = db.query("SELECT k, n, b FROM t ORDER BY k", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text(0).unwrap(), "a");
        assert_eq!(rows[0].int(1).unwrap(), 7);
        assert_eq!(rows[0].0[2], Value::Blob(vec![1, 2]));
        assert!(rows[0].text(1).is_err());
    }
}
