//! The audit trail: every data call, append-only and hash-chained (`DATA/audit/calls.ndjson`).
//!
//! Each line is one call as JSON, with `prev` (the previous line's MAC) and `mac`, an
//! HMAC-SHA256 under the hub's audit key over the line without its MAC. Editing, deleting or
//! reordering a line breaks the chain; cutting lines off the end is caught against
//! `head.json`, which names the last durable record. Anyone who wants protection against an
//! operator who also rewinds `head.json` copies `citybrain audit verify`'s head elsewhere.
//!
//! Appends are group-committed: the first caller to find no flush running writes and
//! fsyncs everyone's lines at once, so each call waits for one fsync yet many calls share it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use citybrain_core::{DatasetName, Timestamp};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::GovError;

/// The kind of data call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Sql,
    Read,
    Export,
    Ingest,
    /// Grants, tokens, principals, departments, definitions.
    Manage,
}

impl CallKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Read => "read",
            Self::Export => "export",
            Self::Ingest => "ingest",
            Self::Manage => "manage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Refused by governance (no grant, wrong role, unknown dataset).
    Denied,
    /// Accepted but failed (invalid SQL, rejected batch, limits).
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
}

/// A dataset a call touched, with the fields it read or wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub dataset: DatasetName,
    pub fields: Vec<String>,
}

/// One data call, as the caller of [`AuditLog::append`] describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// RFC 3339, UTC.
    pub at: String,
    pub principal: String,
    pub department: String,
    pub kind: CallKind,
    #[serde(default)]
    pub datasets: Vec<Touch>,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub rows: u64,
    pub outcome: Outcome,
    /// The statement or action, and the reason for a refusal or failure.
    #[serde(default)]
    pub detail: String,
}

impl Call {
    pub fn new(at: Timestamp, principal: &str, department: &str, kind: CallKind) -> Self {
        Self {
            at: at.to_string(),
            principal: principal.to_string(),
            department: department.to_string(),
            kind,
            datasets: Vec::new(),
            purpose: String::new(),
            rows: 0,
            outcome: Outcome::Ok,
            detail: String::new(),
        }
    }
}

/// A stored line: the call, its place in the chain and its MAC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    #[serde(flatten)]
    pub call: Call,
    pub prev: String,
    #[serde(default)]
    pub mac: String,
}

/// The last durable record, kept beside the log to catch a truncated tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub mac: String,
}

/// Longest `detail` kept, so one huge statement cannot bloat the trail.
const DETAIL_CAP: usize = 4096;
const MAC_KEY: &str = ",\"mac\":\"";

type Keyed = Hmac<Sha256>;

fn mac_of(key: &Keyed, body: &str) -> String {
    let mut mac = key.clone();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Serializes an entry (its `mac` ignored) and signs it: returns the full line, no newline.
fn sign(key: &Keyed, entry: &mut Entry) -> String {
    entry.mac.clear();
    let mut body = serde_json::to_string(&Unsigned {
        seq: entry.seq,
        call: &entry.call,
        prev: &entry.prev,
    })
    .expect("audit entries serialize");
    entry.mac = mac_of(key, &body);
    body.pop(); // the closing brace
    body.push_str(MAC_KEY);
    body.push_str(&entry.mac);
    body.push_str("\"}");
    body
}

#[derive(Serialize)]
struct Unsigned<'a> {
    seq: u64,
    #[serde(flatten)]
    call: &'a Call,
    prev: &'a str,
}

/// Checks one line's MAC; returns the parsed entry.
fn check_line(key: &Keyed, line: &str) -> Result<Entry, String> {
    let entry: Entry = serde_json::from_str(line).map_err(|e| format!("not a record: {e}"))?;
    let at = line.rfind(MAC_KEY).ok_or("no mac")?;
    let body = format!("{}}}", &line[..at]);
    if mac_of(key, &body) != entry.mac {
        return Err(format!(
            "record {} was altered (its MAC does not match)",
            entry.seq
        ));
    }
    Ok(entry)
}

struct State {
    file: File,
    next_seq: u64,
    last_mac: String,
    pending: Vec<u8>,
    durable_seq: u64,
    flushing: bool,
    failed: Option<String>,
}

pub struct AuditLog {
    dir: PathBuf,
    key: Keyed,
    state: Mutex<State>,
    flushed: Condvar,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.dir).finish()
    }
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> GovError {
    move |source| GovError::Io { context, source }
}

pub const LOG_FILE: &str = "calls.ndjson";
pub const HEAD_FILE: &str = "head.json";

impl AuditLog {
    /// Opens (or creates) the log in `dir`, cutting a torn last line left by a crash
    /// (a line is only acknowledged after its fsync, so a torn one was never acknowledged).
    pub fn open(dir: &Path, key: &[u8]) -> Result<Self, GovError> {
        std::fs::create_dir_all(dir).map_err(io("creating the audit directory"))?;
        let key = Keyed::new_from_slice(key).expect("HMAC takes keys of any length");
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("opening the audit log"))?;
        let len = file.metadata().map_err(io("reading the audit log"))?.len();
        // Only the tail matters here: the last complete line gives the chain's end.
        let window = len.min(1 << 20);
        file.seek(SeekFrom::Start(len - window))
            .map_err(io("reading the audit log"))?;
        let mut tail = Vec::with_capacity(window as usize);
        (&mut file)
            .take(window)
            .read_to_end(&mut tail)
            .map_err(io("reading the audit log"))?;
        let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < tail.len() {
            let keep = len - (tail.len() - complete) as u64;
            tracing::warn!(
                message = "Cutting a torn audit record left by a crash.",
                bytes = tail.len() - complete
            );
            file.set_len(keep)
                .map_err(io("cutting a torn audit record"))?;
            file.sync_all().map_err(io("cutting a torn audit record"))?;
        }
        let last_line = tail[..complete]
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned());
        let (next_seq, last_mac) = match last_line {
            None => (1, String::new()),
            Some(line) => {
                let entry: Entry = serde_json::from_str(&line).map_err(|e| {
                    GovError::Audit(format!(
                        "the last audit record is unreadable ({e}); run `citybrain audit verify`"
                    ))
                })?;
                (entry.seq + 1, entry.mac)
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            state: Mutex::new(State {
                file,
                next_seq,
                last_mac,
                pending: Vec::new(),
                durable_seq: next_seq - 1,
                flushing: false,
                failed: None,
            }),
            flushed: Condvar::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one call; returns its sequence number once it is on disk.
    pub fn append(&self, mut call: Call) -> Result<u64, GovError> {
        if call.detail.len() > DETAIL_CAP {
            let mut cut = DETAIL_CAP;
            while !call.detail.is_char_boundary(cut) {
                cut -= 1;
            }
            call.detail.truncate(cut);
            call.detail.push('…');
        }
        let mut st = self.state.lock().expect("audit lock");
        if let Some(why) = &st.failed {
            return Err(GovError::Audit(why.clone()));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut entry = Entry {
            seq,
            call,
            prev: std::mem::take(&mut st.last_mac),
            mac: String::new(),
        };
        let line = sign(&self.key, &mut entry);
        st.last_mac = entry.mac;
        st.pending.extend_from_slice(line.as_bytes());
        st.pending.push(b'\n');
        loop {
            if let Some(why) = &st.failed {
                return Err(GovError::Audit(why.clone()));
            }
            if st.durable_seq >= seq {
                return Ok(seq);
            }
            if st.flushing {
                st = self.flushed.wait(st).expect("audit lock");
                continue;
            }
            // Lead a flush of everything pending, ours included.
            st.flushing = true;
            let buffer = std::mem::take(&mut st.pending);
            let head = Head {
                seq: st.next_seq - 1,
                mac: st.last_mac.clone(),
            };
            let file = st.file.try_clone();
            drop(st);
            let result = file.and_then(|mut f| {
                f.write_all(&buffer)?;
                f.sync_data()?;
                self.write_head(&head)
            });
            st = self.state.lock().expect("audit lock");
            st.flushing = false;
            match result {
                Ok(()) => st.durable_seq = head.seq,
                // Fail closed: later lines would chain to records that never reached disk.
                Err(e) => st.failed = Some(format!("the audit log cannot be written: {e}")),
            }
            self.flushed.notify_all();
        }
    }

    fn write_head(&self, head: &Head) -> std::io::Result<()> {
        let tmp = self.dir.join("head.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(head).expect("heads serialize"))?;
        std::fs::rename(tmp, self.dir.join(HEAD_FILE))
    }

    /// Calls that touched `dataset`, newest last, at most `limit` of them.
    pub fn calls_on(&self, dataset: &DatasetName, limit: usize) -> Result<Vec<Entry>, GovError> {
        let mut found = std::collections::VecDeque::new();
        self.scan(|entry| {
            if entry.call.datasets.iter().any(|t| &t.dataset == dataset) {
                if found.len() == limit {
                    found.pop_front();
                }
                found.push_back(entry);
            }
        })?;
        Ok(found.into())
    }

    /// Visits every stored entry in order.
    pub fn scan(&self, mut visit: impl FnMut(Entry)) -> Result<(), GovError> {
        let file = File::open(self.dir.join(LOG_FILE)).map_err(io("reading the audit log"))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io("reading the audit log"))?;
            if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                visit(entry);
            }
        }
        Ok(())
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub records: u64,
    pub head: Option<Head>,
    /// Empty when the trail is intact.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Most problems listed; one is enough to know the trail was tampered with.
const PROBLEMS_CAP: usize = 20;

/// Checks the whole chain in `dir` under `key`: every MAC, every link, the sequence, and
/// that nothing the head vouches for is missing.
pub fn verify(dir: &Path, key: &[u8]) -> Result<Verification, GovError> {
    let key = Keyed::new_from_slice(key).expect("HMAC takes keys of any length");
    let mut bytes = Vec::new();
    File::open(dir.join(LOG_FILE))
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io("reading the audit log"))?;
    let head: Option<Head> = std::fs::read(dir.join(HEAD_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut problems = Vec::new();
    let mut note = |p: String| {
        if problems.len() < PROBLEMS_CAP {
            problems.push(p);
        }
    };
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        note("the last record is cut short: the file was truncated".to_string());
    }
    let mut expected_seq = 1u64;
    let mut prev_mac = String::new();
    let mut records = 0u64;
    let mut head_seen = false;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let line_no = i + 1;
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(_) => {
                note(format!("line {line_no}: not UTF-8"));
                continue;
            }
        };
        match check_line(&key, text) {
            Err(why) => note(format!("line {line_no}: {why}")),
            Ok(entry) => {
                if entry.seq != expected_seq {
                    note(format!(
                        "line {line_no}: record {} where {expected_seq} should be (records deleted or reordered)",
                        entry.seq
                    ));
                }
                if entry.prev != prev_mac {
                    note(format!(
                        "line {line_no}: record {} does not follow the record before it (deleted or reordered)",
                        entry.seq
                    ));
                }
                if let Some(h) = &head
                    && h.seq == entry.seq
                {
                    head_seen = true;
                    if h.mac != entry.mac {
                        note(format!(
                            "record {} differs from the one the head vouches for",
                            entry.seq
                        ));
                    }
                }
                expected_seq = entry.seq + 1;
                prev_mac = entry.mac;
                records += 1;
            }
        }
    }
    match &head {
        Some(h) if !head_seen && h.seq > 0 => note(format!(
            "the head vouches for record {} but the log ends at record {}: records were cut off the end",
            h.seq,
            expected_seq - 1
        )),
        None if records > 0 => note("head.json is missing or unreadable".to_string()),
        _ => {}
    }
    Ok(Verification {
        records,
        head,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: u64) -> Call {
        let mut c = Call::new(Timestamp(i as i64), "p", "transport", CallKind::Sql);
        c.rows = i;
        c
    }

    #[test]
    fn appends_chain_and_reopen_continues() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), b"k").unwrap();
        for i in 0..5 {
            assert_eq!(log.append(call(i)).unwrap(), i + 1);
        }
        drop(log);
        let log = AuditLog::open(dir.path(), b"k").unwrap();
        assert_eq!(log.append(call(9)).unwrap(), 6);
        let v = verify(dir.path(), b"k").unwrap();
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.records, 6);
        // The wrong key fails every record.
        assert!(!verify(dir.path(), b"other").unwrap().is_intact());
    }

    #[test]
    fn concurrent_appends_share_fsyncs_and_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path(), b"k").unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append(call(t * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = verify(dir.path(), b"k").unwrap();
        assert!(v.is_intact(), "{:?}", v.problems);
        assert_eq!(v.records, 400);
        assert_eq!(v.head.unwrap().seq, 400);
    }

    #[test]
    fn a_torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), b"k").unwrap();
        log.append(call(1)).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"at\"").unwrap();
        drop(f);
        let log = AuditLog::open(dir.path(), b"k").unwrap();
        assert_eq!(log.append(call(2)).unwrap(), 2);
        assert!(verify(dir.path(), b"k").unwrap().is_intact());
    }
}
