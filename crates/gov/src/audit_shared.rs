//! The cluster's audit trail: one hash chain in PostgreSQL that every node appends to.
//!
//! Records are the same lines as a node's `calls.ndjson` (`audit::sign`), one row each in
//! `audit_trail`, and the signed head is the one row of `audit_head`. The chain is sequenced
//! by the database: an append locks the head row (`SELECT ... FOR UPDATE`), chains its
//! records to it, inserts them and moves the head, in one transaction. A second node's
//! append waits for the lock and then chains to the first one's records, so two nodes
//! never fork the chain; `seq` is the primary key besides.
//!
//! Appends are group-committed as on one node: the first caller to find no write running
//! takes every call waiting and writes them in one transaction. A failed transaction wrote
//! nothing, so, unlike the file trail, nothing has to fail closed: its callers get the
//! error (503 while the database is away) and later calls chain to the head as it is.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use citybrain_metadb::{Db, DbError, Place, Postgres, Schema, params};
use ed25519_dalek::SigningKey;

use crate::GovError;
use crate::audit::{Call, Entry, Head, Keyed, sign};

const SCHEMA: Schema = Schema {
    component: "audit",
    // Never opened in SQLite: one node's trail is its files.
    sqlite: "",
    postgres: &[include_str!("../migrations/postgres/0001_audit.sql")],
};

/// Rows read at a time when scanning the trail.
const PAGE: i64 = 10_000;

#[derive(Default)]
struct Waiting {
    calls: Vec<(u64, Call)>,
    next_ticket: u64,
    done: HashMap<u64, Result<u64, DbError>>,
    writing: bool,
}

pub(crate) struct SharedTrail {
    db: Db,
    waiting: Mutex<Waiting>,
    written: Condvar,
}

fn stored(context: &'static str) -> impl FnOnce(DbError) -> GovError {
    move |source| GovError::Storage { context, source }
}

impl SharedTrail {
    pub(crate) fn open(postgres: &Postgres) -> Result<Self, GovError> {
        Ok(Self {
            db: Db::open(&Place::Postgres(postgres.clone()), &SCHEMA)
                .map_err(stored("opening the cluster's audit trail"))?,
            waiting: Mutex::default(),
            written: Condvar::new(),
        })
    }

    /// Appends one call; its sequence number once the transaction holding it committed.
    pub(crate) fn append(
        &self,
        call: Call,
        key: &Keyed,
        signer: &SigningKey,
    ) -> Result<u64, GovError> {
        let mut st = self.waiting.lock().expect("audit lock");
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.calls.push((ticket, call));
        loop {
            if let Some(done) = st.done.remove(&ticket) {
                return done.map_err(stored("recording the call in the cluster's audit trail"));
            }
            if st.writing {
                st = self.written.wait(st).expect("audit lock");
                continue;
            }
            // Lead a write of every call waiting, ours included.
            st.writing = true;
            let batch = std::mem::take(&mut st.calls);
            drop(st);
            let result = self.write(&batch, key, signer);
            st = self.waiting.lock().expect("audit lock");
            st.writing = false;
            match result {
                Ok(seqs) => {
                    for ((t, _), seq) in batch.iter().zip(seqs) {
                        st.done.insert(*t, Ok(seq));
                    }
                }
                Err(e) => {
                    for (t, _) in &batch {
                        st.done.insert(*t, Err(e.clone()));
                    }
                }
            }
            self.written.notify_all();
        }
    }

    /// Chains `batch` to the head under its row lock, in one transaction.
    fn write(
        &self,
        batch: &[(u64, Call)],
        key: &Keyed,
        signer: &SigningKey,
    ) -> Result<Vec<u64>, DbError> {
        self.db.begin()?;
        let chained = (|| {
            let row = self
                .db
                .query_opt(
                    "SELECT seq, mac, sha FROM audit_head WHERE id = 1 FOR UPDATE",
                    &[],
                )?
                .ok_or_else(|| DbError::Failed("audit_head has no row".into()))?;
            let (mut seq, mut mac, mut sha) = (row.int(0)? as u64, row.text(1)?, row.text(2)?);
            let mut seqs = Vec::with_capacity(batch.len());
            let mut rows = Vec::with_capacity(batch.len());
            for (_, call) in batch {
                seq += 1;
                let mut entry = Entry {
                    seq,
                    call: call.clone(),
                    prev: mac,
                    sha: String::new(),
                    mac: String::new(),
                };
                rows.push((seq, sign(key, &mut entry, &sha)));
                (mac, sha) = (entry.mac, entry.sha);
                seqs.push(seq);
            }
            // The whole batch in one statement (one round trip), as a JSON array of
            // [seq, line] pairs: the lines come back out exactly as signed.
            self.db.execute(
                "INSERT INTO audit_trail (seq, line)
                 SELECT CAST(e ->> 0 AS BIGINT), e ->> 1
                 FROM json_array_elements(CAST(CAST(?1 AS TEXT) AS JSON)) AS e",
                params![serde_json::to_string(&rows).expect("records serialize")],
            )?;
            let head = Head::signed(seq, mac, sha, signer);
            self.db.execute(
                "UPDATE audit_head SET seq = ?1, mac = ?2, sha = ?3, sig = ?4 WHERE id = 1",
                params![head.seq as i64, head.mac, head.sha, head.sig],
            )?;
            citybrain_core::failpoint::step("audit.head")
                .map_err(|e| DbError::Failed(e.to_string()))?;
            self.db.commit()?;
            Ok(seqs)
        })();
        if chained.is_err() {
            let _ = self.db.rollback();
        }
        chained
    }

    /// The signed head (the last committed record); None before the first.
    pub(crate) fn head(&self) -> Result<Option<Head>, GovError> {
        let row = self
            .db
            .query_opt(
                "SELECT seq, mac, sha, sig FROM audit_head WHERE id = 1",
                &[],
            )
            .map_err(stored("reading the cluster's audit head"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = || -> Result<Head, DbError> {
            Ok(Head {
                seq: row.int(0)? as u64,
                mac: row.text(1)?,
                sha: row.text(2)?,
                sig: row.text(3)?,
            })
        };
        let head = read().map_err(stored("reading the cluster's audit head"))?;
        Ok((head.seq > 0).then_some(head))
    }

    /// Visits every record's line in order, a page at a time.
    pub(crate) fn scan(&self, mut visit: impl FnMut(&str)) -> Result<(), GovError> {
        let mut after = 0i64;
        loop {
            let rows = self
                .db
                .query(
                    "SELECT seq, line FROM audit_trail WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    params![after, PAGE],
                )
                .map_err(stored("reading the cluster's audit trail"))?;
            for row in &rows {
                after = row
                    .int(0)
                    .map_err(stored("reading the cluster's audit trail"))?;
                visit(
                    &row.text(1)
                        .map_err(stored("reading the cluster's audit trail"))?,
                );
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }

    /// The whole trail as the lines of a `calls.ndjson`, with its head, for a check.
    pub(crate) fn read_all(&self) -> Result<(Vec<u8>, Option<Head>), GovError> {
        let mut bytes = Vec::new();
        self.scan(|line| {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        })?;
        Ok((bytes, self.head()?))
    }
}
