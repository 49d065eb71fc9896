//! Departments, principals, tokens and grants, kept in SQLite (`DATA/governance.sqlite`)
//! or, in a cluster, in the PostgreSQL database every node shares (`citybrain_metadb`).
//!
//! Nothing is cached in memory: a revoked token or grant stops working on the next call,
//! on every node. Lookups are by primary key or unique index, microseconds against the
//! cost of any query.

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use citybrain_metadb::{Db, DbError, Dialect, Place, Row, Schema, params};
use sha2::{Digest, Sha256};

use crate::GovError;
use crate::linkage::Linkage;
use crate::model::{
    Department, Grant, GrantId, GrantRequest, GrantState, IssuedToken, Principal, Role, Session,
    TokenInfo,
};

#[derive(Debug)]
pub struct Store {
    db: Db,
}

fn db(context: &'static str) -> impl FnOnce(DbError) -> GovError {
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

/// A stored value this version cannot read (a bug, or a database edited by hand).
fn unreadable(what: &'static str) -> impl FnOnce(String) -> GovError {
    move |problem| GovError::Storage {
        context: what,
        source: DbError::Failed(problem),
    }
}

fn text_as<T, E: std::fmt::Display>(
    row: &Row,
    index: usize,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, GovError> {
    let text = row.text(index).map_err(db("reading a column"))?;
    parse(&text).map_err(|e| unreadable("reading a column")(format!("column {index}: {e}")))
}

fn int(row: &Row, index: usize) -> Result<i64, GovError> {
    row.int(index).map_err(db("reading a column"))
}

fn opt_ts(row: &Row, index: usize) -> Result<Option<Timestamp>, GovError> {
    Ok(row
        .opt_int(index)
        .map_err(db("reading a column"))?
        .map(Timestamp))
}

fn grant_from_row(row: &Row) -> Result<Grant, GovError> {
    let list = |i: usize| text_as(row, i, |s| serde_json::from_str::<Vec<String>>(s));
    Ok(Grant {
        id: GrantId(int(row, 0)?),
        dataset: text_as(row, 1, DatasetName::parse)?,
        department: text_as(row, 2, DepartmentId::parse)?,
        purpose: row.text(3).map_err(db("reading a grant"))?,
        fields: list(4)?,
        raw: list(5)?,
        days: u32::try_from(int(row, 6)?)
            .map_err(|e| unreadable("reading a grant")(e.to_string()))?,
        state: text_as(row, 7, |s| {
            GrantState::parse(s).ok_or("unknown grant state")
        })?,
        reason: row.text(8).map_err(db("reading a grant"))?,
        requested_by: text_as(row, 9, PrincipalName::parse)?,
        requested_at: Timestamp(int(row, 10)?),
        decided_by: match row.opt_text(11).map_err(db("reading a grant"))? {
            Some(s) => Some(
                PrincipalName::parse(&s)
                    .map_err(|e| unreadable("reading a grant")(e.to_string()))?,
            ),
            None => None,
        },
        decided_at: opt_ts(row, 12)?,
        expires_at: opt_ts(row, 13)?,
    })
}

fn token_from_row(row: &Row) -> Result<TokenInfo, GovError> {
    Ok(TokenInfo {
        id: row.text(0).map_err(db("reading a token"))?,
        principal: text_as(row, 1, PrincipalName::parse)?,
        created_at: Timestamp(int(row, 2)?),
        expires_at: opt_ts(row, 3)?,
        revoked_at: opt_ts(row, 4)?,
        issued_by: row.opt_text(5).map_err(db("reading a token"))?,
    })
}

fn principal_from_row(row: &Row) -> Result<Principal, GovError> {
    Ok(Principal {
        name: text_as(row, 0, PrincipalName::parse)?,
        department: text_as(row, 1, DepartmentId::parse)?,
        role: text_as(row, 2, |s| Role::parse(s).ok_or("unknown role"))?,
    })
}

fn department_from_row(row: &Row) -> Result<Department, GovError> {
    Ok(Department {
        id: text_as(row, 0, DepartmentId::parse)?,
        name: row.text(1).map_err(db("reading a department"))?,
        created_at: Timestamp(int(row, 2)?),
    })
}

const TOKEN_COLUMNS: &str = "id, principal, created_at, expires_at, revoked_at, issued_by";
const GRANT_COLUMNS: &str = "id, dataset, department, purpose, fields, raw, days, state, reason, requested_by, requested_at, decided_by, decided_at, expires_at";

/// The tables. SQLite's are created at every open (and `tokens.issued_by` added to a
/// database from before it existed); PostgreSQL's are migrations, run once per database.
const SCHEMA: Schema = Schema {
    component: "governance",
    sqlite: "CREATE TABLE IF NOT EXISTS departments (
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
             CREATE TABLE IF NOT EXISTS linkages (name TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS hub (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    postgres: &[include_str!("../migrations/postgres/0001_governance.sql")],
};

impl Store {
    /// Starts a change: the writes that follow take effect at [`Store::commit`] (see
    /// `Gov::audited`, which records a change in the trail before committing it).
    pub fn begin(&self) -> Result<(), GovError> {
        self.db.begin().map_err(db("starting a governance change"))
    }

    pub fn commit(&self) -> Result<(), GovError> {
        citybrain_core::failpoint::step("gov.commit").map_err(|source| GovError::Io {
            context: "committing a governance change",
            source,
        })?;
        self.db
            .commit()
            .map_err(db("committing a governance change"))
    }

    pub fn rollback(&self) -> Result<(), GovError> {
        self.db
            .rollback()
            .map_err(db("undoing a governance change"))
    }

    pub fn open(place: &Place) -> Result<Self, GovError> {
        let conn = Db::open(place, &SCHEMA).map_err(db("opening the governance database"))?;
        if conn.dialect() == Dialect::Sqlite {
            // Which token issued a token (none: the first admin's), added after the first
            // release.
            let has_issued_by = conn
                .query(
                    "SELECT count(*) FROM pragma_table_info('tokens') WHERE name = 'issued_by'",
                    &[],
                )
                .and_then(|rows| rows[0].int(0))
                .map_err(db("reading the tokens table"))?
                > 0;
            if !has_issued_by {
                conn.execute("ALTER TABLE tokens ADD COLUMN issued_by TEXT", &[])
                    .map_err(db("adding tokens.issued_by"))?;
            }
        }
        Ok(Self { db: conn })
    }

    /// Where governance is kept, fit to show.
    pub fn place(&self) -> &str {
        self.db.place()
    }

    /// The value the hub keeps under `key` (its identity), setting it to `value` when
    /// there is none yet; the value kept either way.
    pub fn hub_value(&self, key: &str, value: &str) -> Result<String, GovError> {
        self.db
            .execute(
                "INSERT INTO hub (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )
            .map_err(db("recording the hub's identity"))?;
        let row = self
            .db
            .query_opt("SELECT value FROM hub WHERE key = ?1", params![key])
            .map_err(db("reading the hub's identity"))?;
        row.map_or(Ok(value.to_string()), |r| {
            r.text(0).map_err(db("reading the hub's identity"))
        })
    }

    pub fn create_department(
        &self,
        id: &DepartmentId,
        name: &str,
        now: Timestamp,
    ) -> Result<Department, GovError> {
        let inserted = self
            .db
            .execute(
                "INSERT INTO departments (id, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO NOTHING",
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
        self.db
            .query_opt(
                "SELECT id, name, created_at FROM departments WHERE id = ?1",
                params![id.as_str()],
            )
            .map_err(db("reading a department"))?
            .as_ref()
            .map(department_from_row)
            .transpose()
    }

    pub fn departments(&self) -> Result<Vec<Department>, GovError> {
        self.db
            .query(
                "SELECT id, name, created_at FROM departments ORDER BY id",
                &[],
            )
            .map_err(db("listing departments"))?
            .iter()
            .map(department_from_row)
            .collect()
    }

    pub fn create_principal(&self, principal: &Principal, now: Timestamp) -> Result<(), GovError> {
        if self.department(&principal.department)?.is_none() {
            return Err(GovError::NotFound(format!(
                "department {} does not exist; create it first with `citybrain departments create {}`",
                principal.department, principal.department
            )));
        }
        let inserted = self
            .db
            .execute(
                "INSERT INTO principals (name, department, role, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
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

    pub fn principal(&self, name: &PrincipalName) -> Result<Option<Principal>, GovError> {
        self.db
            .query_opt(
                "SELECT name, department, role FROM principals WHERE name = ?1",
                params![name.as_str()],
            )
            .map_err(db("reading a principal"))?
            .as_ref()
            .map(principal_from_row)
            .transpose()
    }

    pub fn principals(&self) -> Result<Vec<Principal>, GovError> {
        self.db
            .query(
                "SELECT name, department, role FROM principals ORDER BY department, name",
                &[],
            )
            .map_err(db("listing principals"))?
            .iter()
            .map(principal_from_row)
            .collect()
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
        self.db
            .execute(
                "INSERT INTO tokens (id, principal, hash, created_at, expires_at, issued_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.as_str(),
                    principal.as_str(),
                    token_hash(&token),
                    now.0,
                    expires_at.map(|t| t.0),
                    issued_by
                ],
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
        let Some(row) = self
            .db
            .query_opt(
                "SELECT p.name, p.department, p.role, t.id, t.expires_at FROM tokens t JOIN principals p ON p.name = t.principal
                 WHERE t.hash = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)",
                params![token_hash(token), now.0],
            )
            .map_err(db("checking a token"))?
        else {
            return Ok(None);
        };
        Ok(Some(Session {
            principal: principal_from_row(&row)?,
            token_id: row.text(3).map_err(db("checking a token"))?,
            expires_at: opt_ts(&row, 4)?,
        }))
    }

    /// `id` and every token issued with it, directly or through others (unrevoked ones).
    pub fn token_descendants(&self, id: &str) -> Result<Vec<String>, GovError> {
        self.db
            .query(
                "WITH RECURSIVE minted(id) AS (
                     SELECT CAST(?1 AS TEXT)
                     UNION SELECT t.id FROM tokens t JOIN minted m ON t.issued_by = m.id)
                 SELECT id FROM minted",
                params![id],
            )
            .and_then(|rows| rows.iter().map(|row| row.text(0)).collect())
            .map_err(db("listing minted tokens"))
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenInfo>, GovError> {
        self.db
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                params![id],
            )
            .map_err(db("reading a token"))?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, GovError> {
        self.db
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
                &[],
            )
            .map_err(db("listing tokens"))?
            .iter()
            .map(token_from_row)
            .collect()
    }

    pub fn revoke_token(&self, id: &str, now: Timestamp) -> Result<(), GovError> {
        self.db
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
        let id = self
            .db
            .query(
                "INSERT INTO grants (dataset, department, purpose, fields, raw, days, state, reason, requested_by, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'requested', '', ?7, ?8) RETURNING id",
                params![
                    request.dataset.as_str(),
                    department.as_str(),
                    request.purpose.as_str(),
                    json(&request.fields),
                    json(&request.raw),
                    request.days,
                    by.as_str(),
                    now.0
                ],
            )
            .and_then(|rows| rows[0].int(0))
            .map(GrantId)
            .map_err(db("storing a grant request"))?;
        self.grant(id)?
            .ok_or_else(|| GovError::NotFound(format!("grant #{id} vanished")))
    }

    pub fn grant(&self, id: GrantId) -> Result<Option<Grant>, GovError> {
        self.db
            .query_opt(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
                params![id.0],
            )
            .map_err(db("reading a grant"))?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    /// Every grant on `dataset`, oldest first.
    pub fn grants_on(&self, dataset: &DatasetName) -> Result<Vec<Grant>, GovError> {
        self.db
            .query(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE dataset = ?1 ORDER BY id"),
                params![dataset.as_str()],
            )
            .map_err(db("reading grants"))?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    /// Every linkage, as JSON bodies (few, small, read whole).
    pub fn linkages(&self) -> Result<Vec<Linkage>, GovError> {
        self.db
            .query("SELECT body FROM linkages ORDER BY name", &[])
            .map_err(db("reading linkages"))?
            .iter()
            .map(|row| text_as(row, 0, |s| serde_json::from_str::<Linkage>(s)))
            .collect()
    }

    /// Stores a linkage; `new` refuses one whose name is taken.
    pub fn put_linkage(&self, linkage: &Linkage, new: bool) -> Result<(), GovError> {
        let body = serde_json::to_string(linkage).expect("linkages serialize");
        let sql = if new {
            "INSERT INTO linkages (name, body) VALUES (?1, ?2)"
        } else {
            "UPDATE linkages SET body = ?2 WHERE name = ?1"
        };
        match self.db.execute(sql, params![linkage.name.as_str(), body]) {
            Err(e) if e.is_duplicate() => Err(GovError::Conflict(format!(
                "a linkage named {} exists; choose another name",
                linkage.name
            ))),
            other => other.map(|_| ()).map_err(db("storing a linkage")),
        }
    }

    pub fn grants(&self) -> Result<Vec<Grant>, GovError> {
        self.db
            .query(
                &format!("SELECT {GRANT_COLUMNS} FROM grants ORDER BY id"),
                &[],
            )
            .map_err(db("listing grants"))?
            .iter()
            .map(grant_from_row)
            .collect()
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
        self.db
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
