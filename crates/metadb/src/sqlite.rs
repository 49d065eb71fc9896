//! The embedded engine: a SQLite file, WAL, synchronous commits.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::{DbError, Row, Schema, Value};

pub(crate) struct Sqlite {
    conn: Connection,
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn failed(e: rusqlite::Error) -> DbError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            DbError::Duplicate(e.to_string())
        }
        _ => DbError::Failed(e.to_string()),
    }
}

impl Sqlite {
    pub(crate) fn open(path: &Path, schema: &Schema) -> Result<Self, DbError> {
        let conn = Connection::open(path)
            .map_err(|e| DbError::Failed(format!("opening {}: {e}", path.display())))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(failed)?;
        conn.execute_batch(schema.sqlite).map_err(failed)?;
        Ok(Self { conn })
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(failed)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(failed)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(params))
            .map_err(failed)?;
        Ok(changed as u64)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(failed)?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(failed)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(failed)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match row.get_ref(i).map_err(failed)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Value::Blob(v.to_vec()),
                    ValueRef::Real(_) => {
                        return Err(DbError::Column {
                            index: i,
                            problem: "a real number, which the metadata never holds",
                        });
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}
