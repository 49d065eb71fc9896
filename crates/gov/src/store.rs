//! Departments, principals, tokens and grants, kept in SQLite (`DATA/governance.sqlite`).
//!
//! Nothing is cached in memory: a revoked token or grant stops working on the next call.
//! Lookups are by primary key or unique index, microseconds against the cost of any query.

use std::path::Path;

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use crate::GovError;
use crate::linkage::Linkage;
use crate::model::{
    Department, Grant, GrantId, GrantRequest, GrantState, IssuedToken, Principal, Role, Session,
    TokenInfo,
};

#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

fn db(context: &'static str) -> impl FnOnce(rusqlite::Error) -> GovError {
    move |source| GovError::Storage { context, source }
}

/// Tokens are high-entropy random strings, so one SHA-256 is enough to store them safely.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system provides randomness");
    hex::encode(buf)
}

fn parse_col<T, E: std::fmt::Display>(index: usize, result: Result<T, E>) -> rusqlite::Result<T> {
    result.map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            e.to_string().into(),
        )
    })
}

fn opt_ts(value: Option<i64>) -> Option<Timestamp> {
    value.map(Timestamp)
}

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    let list = |i: usize, text: String| parse_col(i, serde_json::from_str::<Vec<String>>(&text));
    Ok(Grant {
        id: GrantId(row.get(0)?),
        dataset: parse_col(1, DatasetName::parse(&row.get::<_, String>(1)?))?,
        department: parse_col(2, DepartmentId::parse(&row.get::<_, String>(2)?))?,
        purpose: row.get(3)?,
        fields: list(4, row.get(4)?)?,
        raw: list(5, row.get(5)?)?,
        days: row.get(6)?,
        state: parse_col(
            7,
            GrantState::parse(&row.get::<_, String>(7)?).ok_or("unknown grant state"),
        )?,
        reason: row.get(8)?,
        requested_by: parse_col(9, PrincipalName::parse(&row.get::<_, String>(9)?))?,
        requested_at: Timestamp(row.get(10)?),
        decided_by: row
            .get::<_, Option<String>>(11)?
            .map(|s| parse_col(11, PrincipalName::parse(&s)))
            .transpose()?,
        decided_at: opt_ts(row.get(12)?),
        expires_at: opt_ts(row.get(13)?),
    })
}

const TOKEN_COLUMNS: &str = "id, principal, created_at, expires_at, revoked_at, issued_by";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        principal: parse_col(1, PrincipalName::parse(&row.get::<_, String>(1)?))?,
        created_at: Timestamp(row.get(2)?),
        expires_at: opt_ts(row.get(3)?),
        revoked_at: opt_ts(row.get(4)?),
        issued_by: row.get(5)?,
    })
}

const GRANT_COLUMNS: &str = "id, dataset, department, purpose, fields, raw, days, state, reason, requested_by, requested_at, decided_by, decided_at, expires_at";

impl Store {
    /// Opens a savepoint: the writes that follow take effect at [`Store::commit`] (see
    /// `Gov::audited`, which records a change in the trail before committing it).
    pub fn begin(&self) -> Result<(), GovError> {
        self.conn
            .execute_batch("SAVEPOINT change")
            .map_err(db("starting a governance change"))
    }

    pub fn commit(&self) -> Result<(), GovError> {
        citybrain_core::failpoint::step("gov.commit").map_err(|source| GovError::Io {
            context: "committing a governance change",
            source,
        })?;
        self.conn
            .execute_batch("RELEASE change")
            .map_err(db("committing a governance change"))
    }

    pub fn rollback(&self) -> Result<(), GovError> {
        self.conn
            .execute_batch("ROLLBACK TO change; RELEASE change")
            .map_err(db("undoing a governance change"))
    }

    pub fn open(path: &Path) -> Result<Self, GovError> {
        let conn = Connection::open(path).map_err(db("opening the governance database"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS departments (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS principals (
                 name TEXT PRIMARY KEY, department TEXT NOT NULL REFERENCES departments(id),
                 role TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tokens (
                 id TEXT PRIMARY KEY, principal TEXT NOT NULL REFERENCES principals(name),
                 hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL,
                 expires_at INTEGER, revoked_at INTEGER);
             CREATE TABLE IF NOT EXISTS grants (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL,
                 department TEXT NOT NULL, purpose TEXT NOT NULL, fields TEXT NOT NULL,
                 raw TEXT NOT NULL, days INTEGER NOT NULL, state TEXT NOT NULL,
                 reason TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at INTEGER NOT NULL,
                 decided_by TEXT, decided_at INTEGER, expires_at INTEGER);
             CREATE INDEX IF NOT EXISTS grants_by_dataset ON grants(dataset, department);
             CREATE TABLE IF NOT EXISTS linkages (name TEXT PRIMARY KEY, body TEXT NOT NULL);",
        )
        .map_err(db("creating the governance tables"))?;
        // Which token issued a token (none: the first admin's), added after the first release.
        let has_issued_by: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'issued_by'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map_err(db("reading the tokens table"))?
            > 0;
        if !has_issued_by {
            conn.execute_batch("ALTER TABLE tokens ADD COLUMN issued_by TEXT")
                .map_err(db("adding tokens.issued_by"))?;
        }
        Ok(Self { conn })
    }

    pub fn create_department(
        &self,
        id: &DepartmentId,
        name: &str,
        now: Timestamp,
    ) -> Result<Department, GovError> {
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO departments (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id.as_str(), name, now.0],
            )
            .map_err(db("creating a department"))?;
        if inserted == 0 {
            return Err(GovError::Conflict(format!(
                "department {id} already exists"
            )));
        }
        Ok(Department {
            id: id.clone(),
            name: name.to_string(),
            created_at: now,
        })
    }

    pub fn department(&self, id: &DepartmentId) -> Result<Option<Department>, GovError> {
        self.conn
            .query_row(
                "SELECT name, created_at FROM departments WHERE id = ?1",
                [id.as_str()],
                |row| {
                    Ok(Department {
                        id: id.clone(),
                        name: row.get(0)?,
                        created_at: Timestamp(row.get(1)?),
                    })
                },
            )
            .optional()
            .map_err(db("reading a department"))
    }

    pub fn departments(&self) -> Result<Vec<Department>, GovError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, created_at FROM departments ORDER BY id")
            .map_err(db("listing departments"))?;
        stmt.query_map([], |row| {
            Ok(Department {
                id: parse_col(0, DepartmentId::parse(&row.get::<_, String>(0)?))?,
                name: row.get(1)?,
                created_at: Timestamp(row.get(2)?),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(db("listing departments"))
    }

    pub fn create_principal(&self, principal: &Principal, now: Timestamp) -> Result<(), GovError> {
        if self.department(&principal.department)?.is_none() {
            return Err(GovError::NotFound(format!(
                "department {} does not exist; create it first with `citybrain departments create {}`",
                principal.department, principal.department
            )));
        }
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO principals (name, department, role, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    principal.name.as_str(),
                    principal.department.as_str(),
                    principal.role.name(),
                    now.0
                ],
            )
            .map_err(db("creating a principal"))?;
        if inserted == 0 {
            return Err(GovError::Conflict(format!(
                "principal {} already exists",
                principal.name
            )));
        }
        Ok(())
    }

    fn principal_from_row(row: &Row<'_>) -> rusqlite::Result<Principal> {
        Ok(Principal {
            name: parse_col(0, PrincipalName::parse(&row.get::<_, String>(0)?))?,
            department: parse_col(1, DepartmentId::parse(&row.get::<_, String>(1)?))?,
            role: parse_col(
                2,
                Role::parse(&row.get::<_, String>(2)?).ok_or("unknown role"),
            )?,
        })
    }

    pub fn principal(&self, name: &PrincipalName) -> Result<Option<Principal>, GovError> {
        self.conn
            .query_row(
                "SELECT name, department, role FROM principals WHERE name = ?1",
                [name.as_str()],
                Self::principal_from_row,
            )
            .optional()
            .map_err(db("reading a principal"))
    }

    pub fn principals(&self) -> Result<Vec<Principal>, GovError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, department, role FROM principals ORDER BY department, name")
            .map_err(db("listing principals"))?;
        stmt.query_map([], Self::principal_from_row)
            .and_then(|rows| rows.collect())
            .map_err(db("listing principals"))
    }

    /// Issues a token for `principal`: `cbt_<id>_<secret>`; only its hash is kept.
    pub fn issue_token(
        &self,
        principal: &PrincipalName,
        expires_at: Option<Timestamp>,
        issued_by: Option<&str>,
        now: Timestamp,
    ) -> Result<IssuedToken, GovError> {
        let id = random_hex(4);
        let token = format!("cbt_{id}_{}", random_hex(24));
        self.conn
            .execute(
                "INSERT INTO tokens (id, principal, hash, created_at, expires_at, issued_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, principal.as_str(), token_hash(&token), now.0, expires_at.map(|t| t.0), issued_by],
            )
            .map_err(db("storing a token"))?;
        Ok(IssuedToken {
            id,
            principal: principal.clone(),
            token,
            expires_at,
        })
    }

    /// The principal a token belongs to, with the token's id and expiry, if the token is
    /// known, unexpired and not revoked.
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<Option<Session>, GovError> {
        self.conn
            .prepare_cached(
                "SELECT p.name, p.department, p.role, t.id, t.expires_at FROM tokens t JOIN principals p ON p.name = t.principal
                 WHERE t.hash = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![token_hash(token), now.0], |row| {
                    Ok(Session {
                        principal: Self::principal_from_row(row)?,
                        token_id: row.get(3)?,
                        expires_at: opt_ts(row.get(4)?),
                    })
                })
                .optional()
            })
            .map_err(db("checking a token"))
    }

    /// `id` and every token issued with it, directly or through others (unrevoked ones).
    pub fn token_descendants(&self, id: &str) -> Result<Vec<String>, GovError> {
        let mut stmt = self
            .conn
            .prepare(
                "WITH RECURSIVE minted(id) AS (
                     SELECT ?1
                     UNION SELECT t.id FROM tokens t JOIN minted m ON t.issued_by = m.id)
                 SELECT id FROM minted",
            )
            .map_err(db("listing minted tokens"))?;
        stmt.query_map([id], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(db("listing minted tokens"))
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenInfo>, GovError> {
        self.conn
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .optional()
            .map_err(db("reading a token"))
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, GovError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
            ))
            .map_err(db("listing tokens"))?;
        stmt.query_map([], token_from_row)
            .and_then(|rows| rows.collect())
            .map_err(db("listing tokens"))
    }

    pub fn revoke_token(&self, id: &str, now: Timestamp) -> Result<(), GovError> {
        self.conn
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now.0],
            )
            .map_err(db("revoking a token"))?;
        Ok(())
    }

    pub fn insert_grant(
        &self,
        request: &GrantRequest,
        department: &DepartmentId,
        by: &PrincipalName,
        now: Timestamp,
    ) -> Result<Grant, GovError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialize");
        self.conn
            .execute(
                "INSERT INTO grants (dataset, department, purpose, fields, raw, days, state, reason, requested_by, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'requested', '', ?7, ?8)",
                params![
                    request.dataset.as_str(),
                    department.as_str(),
                    request.purpose,
                    json(&request.fields),
                    json(&request.raw),
                    request.days,
                    by.as_str(),
                    now.0
                ],
            )
            .map_err(db("storing a grant request"))?;
        let id = GrantId(self.conn.last_insert_rowid());
        self.grant(id)?
            .ok_or_else(|| GovError::NotFound(format!("grant #{id} vanished")))
    }

    pub fn grant(&self, id: GrantId) -> Result<Option<Grant>, GovError> {
        self.conn
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
                [id.0],
                grant_from_row,
            )
            .optional()
            .map_err(db("reading a grant"))
    }

    /// Every grant on `dataset`, oldest first.
    pub fn grants_on(&self, dataset: &DatasetName) -> Result<Vec<Grant>, GovError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE dataset = ?1 ORDER BY id"
            ))
            .map_err(db("reading grants"))?;
        stmt.query_map([dataset.as_str()], grant_from_row)
            .and_then(|rows| rows.collect())
            .map_err(db("reading grants"))
    }

    /// Every linkage, as JSON bodies (few, small, read whole).
    pub fn linkages(&self) -> Result<Vec<Linkage>, GovError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM linkages ORDER BY name")
            .map_err(db("reading linkages"))?;
        stmt.query_map([], |row| {
            let body: String = row.get(0)?;
            parse_col(0, serde_json::from_str::<Linkage>(&body))
        })
        .and_then(|rows| rows.collect())
        .map_err(db("reading linkages"))
    }

    /// Stores a linkage; `new` refuses one whose name is taken.
    pub fn put_linkage(&self, linkage: &Linkage, new: bool) -> Result<(), GovError> {
        let body = serde_json::to_string(linkage).expect("linkages serialize");
        let sql = if new {
            "INSERT INTO linkages (name, body) VALUES (?1, ?2)"
        } else {
            "UPDATE linkages SET body = ?2 WHERE name = ?1"
        };
        match self.conn.execute(sql, params![linkage.name, body]) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(GovError::Conflict(format!(
                    "a linkage named {} exists; choose another name",
                    linkage.name
                )))
            }
            other => other.map(|_| ()).map_err(db("storing a linkage")),
        }
    }

    pub fn grants(&self) -> Result<Vec<Grant>, GovError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {GRANT_COLUMNS} FROM grants ORDER BY id"))
            .map_err(db("listing grants"))?;
        stmt.query_map([], grant_from_row)
            .and_then(|rows| rows.collect())
            .map_err(db("listing grants"))
    }

    pub fn set_grant_state(
        &self,
        id: GrantId,
        state: GrantState,
        reason: &str,
        by: &PrincipalName,
        now: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<(), GovError> {
        self.conn
            .execute(
                "UPDATE grants SET state = ?2, reason = ?3, decided_by = ?4, decided_at = ?5,
                 expires_at = COALESCE(?6, expires_at) WHERE id = ?1",
                params![
                    id.0,
                    state.name(),
                    reason,
                    by.as_str(),
                    now.0,
                    expires_at.map(|t| t.0)
                ],
            )
            .map_err(db("deciding a grant"))?;
        Ok(())
    }
}
