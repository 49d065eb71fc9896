//! The audit trail: every data call, append-only and hash-chained (`DATA/audit/calls.ndjson`).
//!
//! Each line is one call as JSON, with `prev` (the previous line's MAC) and `mac`, an
//! HMAC-SHA256 under the hub's audit key over the line without its MAC. Editing, deleting or
//! reordering a line breaks the chain; cutting lines off the end is caught against
//! `head.json`, which names the last durable record.
//!
//! The MAC chain needs the hub's secret to check, so only the operator could check the
//! operator. Each line therefore also carries `sha`, a public SHA-256 chain (the previous
//! line's `sha`, a newline, then the line as far as `prev`), and every head is signed with
//! an ed25519 key derived from the audit key. With the published public key
//! ([`public_key_hex`], `GET /api/v1/audit/key`) a department or an outside auditor checks
//! the whole trail ([`verify_public`]) without any secret. Against an operator who rewrites
//! the trail and signs a new head, the defence is a head kept elsewhere: every signed head
//! an auditor saved must still be in the trail (`citybrain audit verify --head`).
//!
//! Appends are group-committed: the first caller to find no flush running writes and
//! fsyncs everyone's lines at once, so each call waits for one fsync yet many calls share it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use citybrain_core::{DatasetName, Timestamp};
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// On the record that ends a streamed result, the sequence number of the call it
    /// closes (that call was recorded before its first row left; this one gives the total
    /// rows and the outcome). Not a call of its own: counters skip it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes: Option<u64>,
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
            closes: None,
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
    /// The public chain's hash up to and including this line (empty on lines written
    /// before the public chain existed).
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub mac: String,
}

/// The last durable record, kept beside the log to catch a truncated tail, and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub mac: String,
    /// The public chain's hash at `seq`.
    #[serde(default)]
    pub sha: String,
    /// ed25519 over [`Head::signed_text`], hex.
    #[serde(default)]
    pub sig: String,
}

impl Head {
    /// What the signature covers: a fixed label, the sequence and the public hash.
    pub fn signed_text(&self) -> String {
        format!("citybrain audit head v1\n{}\n{}", self.seq, self.sha)
    }

    pub(crate) fn signed(seq: u64, mac: String, sha: String, signer: &SigningKey) -> Self {
        let mut head = Head {
            seq,
            mac,
            sha,
            sig: String::new(),
        };
        head.sig = hex::encode(signer.sign(head.signed_text().as_bytes()).to_bytes());
        head
    }

    /// Whether `sig` is the signature of this head under `key`.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = hex::decode(&self.sig) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(self.signed_text().as_bytes(), &sig).is_ok()
    }
}

/// The key that signs heads, derived from the audit key (so it needs no storage of its own
/// and is exactly as secret).
fn head_signer(key: &[u8]) -> SigningKey {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"citybrain audit head signing v1\n")
        .chain_update(key)
        .finalize()
        .into();
    SigningKey::from_bytes(&seed)
}

/// The public key that checks the heads of a trail kept under the audit key `key`, hex.
pub fn public_key_hex(key: &[u8]) -> String {
    hex::encode(head_signer(key).verifying_key().to_bytes())
}

/// Reads a public key as [`public_key_hex`] writes it.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, GovError> {
    let bad = || {
        GovError::Audit(
            "a public key is 64 hex digits, as `citybrain audit key` or GET /api/v1/audit/key give it"
                .into(),
        )
    };
    let bytes: [u8; 32] = hex::decode(text.trim())
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// The public chain's next hash: the previous hash, a newline, the line up to `prev`.
fn chain_sha(prev_sha: &str, body: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(prev_sha.as_bytes())
            .chain_update(b"\n")
            .chain_update(body.as_bytes())
            .finalize(),
    )
}

/// Longest `detail` kept, so one huge statement cannot bloat the trail.
const DETAIL_CAP: usize = 4096;
const MAC_KEY: &str = ",\"mac\":\"";
const SHA_KEY: &str = ",\"sha\":\"";

pub(crate) type Keyed = Hmac<Sha256>;

fn mac_of(key: &Keyed, body: &str) -> String {
    let mut mac = key.clone();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Serializes an entry (its `sha` and `mac` ignored), chains it to `prev_sha` and signs it:
/// returns the full line, no newline. The MAC covers the line with its `sha`.
pub(crate) fn sign(key: &Keyed, entry: &mut Entry, prev_sha: &str) -> String {
    let mut body = serde_json::to_string(&Unsigned {
        seq: entry.seq,
        call: &entry.call,
        prev: &entry.prev,
    })
    .expect("audit entries serialize");
    entry.sha = chain_sha(prev_sha, &body);
    body.pop(); // the closing brace
    body.push_str(SHA_KEY);
    body.push_str(&entry.sha);
    body.push_str("\"}");
    entry.mac = mac_of(key, &body);
    body.pop(); // the closing brace again
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

/// Parses one line and checks it: its MAC when `key` is given, and its public hash against
/// `prev_sha`, the previous line's. Returns the entry and what is wrong with it; an error
/// only when the line is not a record at all.
fn check_line(
    key: Option<&Keyed>,
    line: &str,
    prev_sha: &str,
) -> Result<(Entry, Vec<String>), String> {
    let entry: Entry = serde_json::from_str(line).map_err(|e| format!("not a record: {e}"))?;
    let at = line.rfind(MAC_KEY).ok_or("no mac")?;
    let mut wrong = Vec::new();
    if let Some(key) = key
        && mac_of(key, &format!("{}}}", &line[..at])) != entry.mac
    {
        wrong.push(format!(
            "record {} was altered (its MAC does not match)",
            entry.seq
        ));
    }
    // Lines from before the public chain have no hash; `check` decides what that means.
    if !entry.sha.is_empty() {
        let sha_at = line[..at].rfind(SHA_KEY).ok_or("no sha")?;
        if chain_sha(prev_sha, &format!("{}}}", &line[..sha_at])) != entry.sha {
            wrong.push(format!(
                "record {} was altered, or the record before it is not the one it followed (its public hash does not match)",
                entry.seq
            ));
        }
    }
    Ok((entry, wrong))
}

struct State {
    file: File,
    next_seq: u64,
    last_mac: String,
    last_sha: String,
    pending: Vec<u8>,
    durable_seq: u64,
    flushing: bool,
    failed: Option<String>,
    /// When the signed head was last written.
    head_written: Option<std::time::Instant>,
}

/// The longest a signed head lags the durable records while calls keep coming.
const HEAD_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub struct AuditLog {
    dir: PathBuf,
    key: Keyed,
    signer: SigningKey,
    trail: Trail,
}

/// Where the records go: this node's files, or the cluster's one chain in PostgreSQL.
enum Trail {
    File {
        state: Mutex<State>,
        flushed: Condvar,
    },
    Shared(crate::audit_shared::SharedTrail),
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
/// The public key that checks the heads, hex, written beside the log for anyone to copy.
pub const PUBLIC_KEY_FILE: &str = "public.key";

impl AuditLog {
    /// Opens (or creates) the log in `dir`, cutting a torn last line left by a crash
    /// (a line is only acknowledged after its fsync, so a torn one was never acknowledged).
    pub fn open(dir: &Path, key: &[u8]) -> Result<Self, GovError> {
        std::fs::create_dir_all(dir).map_err(io("creating the audit directory"))?;
        let signer = head_signer(key);
        std::fs::write(
            dir.join(PUBLIC_KEY_FILE),
            format!("{}\n", public_key_hex(key)),
        )
        .map_err(io("writing the audit public key"))?;
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
        let (next_seq, last_mac, last_sha) = match last_line {
            None => (1, String::new(), String::new()),
            Some(line) => {
                let entry: Entry = serde_json::from_str(&line).map_err(|e| {
                    GovError::Audit(format!(
                        "the last audit record is unreadable ({e}); run `citybrain audit verify`"
                    ))
                })?;
                (entry.seq + 1, entry.mac, entry.sha)
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            signer,
            trail: Trail::File {
                state: Mutex::new(State {
                    file,
                    next_seq,
                    last_mac,
                    last_sha,
                    pending: Vec::new(),
                    durable_seq: next_seq - 1,
                    flushing: false,
                    failed: None,
                    head_written: None,
                }),
                flushed: Condvar::new(),
            },
        })
    }

    /// Opens the cluster's trail in `postgres`: every node appends to one chain, sequenced
    /// by the database (`audit_shared`). `dir` gets the public key only.
    pub fn open_shared(
        dir: &Path,
        key: &[u8],
        postgres: &citybrain_metadb::Postgres,
    ) -> Result<Self, GovError> {
        std::fs::create_dir_all(dir).map_err(io("creating the audit directory"))?;
        std::fs::write(
            dir.join(PUBLIC_KEY_FILE),
            format!("{}\n", public_key_hex(key)),
        )
        .map_err(io("writing the audit public key"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            signer: head_signer(key),
            key: Keyed::new_from_slice(key).expect("HMAC takes keys of any length"),
            trail: Trail::Shared(crate::audit_shared::SharedTrail::open(postgres)?),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key that checks this trail's signed heads, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signer.verifying_key().to_bytes())
    }

    /// The signed head on disk (the last durable record).
    pub fn head(&self) -> Result<Option<Head>, GovError> {
        if let Trail::Shared(shared) = &self.trail {
            return shared.head();
        }
        match std::fs::read(self.dir.join(HEAD_FILE)) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading the audit head")(e)),
        }
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
        let (state, flushed) = match &self.trail {
            Trail::File { state, flushed } => (state, flushed),
            Trail::Shared(shared) => return shared.append(call, &self.key, &self.signer),
        };
        let mut st = state.lock().expect("audit lock");
        if let Some(why) = &st.failed {
            return Err(GovError::Audit(why.clone()));
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut entry = Entry {
            seq,
            call,
            prev: std::mem::take(&mut st.last_mac),
            sha: String::new(),
            mac: String::new(),
        };
        let line = sign(&self.key, &mut entry, &st.last_sha);
        st.last_mac = entry.mac;
        st.last_sha = entry.sha;
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
                st = flushed.wait(st).expect("audit lock");
                continue;
            }
            // Lead a flush of everything pending, ours included.
            st.flushing = true;
            let buffer = std::mem::take(&mut st.pending);
            let (last, mac, sha) = (st.next_seq - 1, st.last_mac.clone(), st.last_sha.clone());
            let file = st.file.try_clone();
            drop(st);
            let result = file
                .and_then(|mut f| {
                    citybrain_core::failpoint::write("audit.append", &mut f, &buffer)?;
                    f.write_all(&buffer)?;
                    f.sync_data()
                })
                .and_then(|()| {
                    // A signed head after the flush that ends a burst (nothing queued
                    // behind it: no later flush would write one) and at least every
                    // HEAD_EVERY within one; not after each of a burst's flushes, whose
                    // signature and file replacement were a third of an NGSI-LD create.
                    let due = {
                        let st = state.lock().expect("audit lock");
                        st.pending.is_empty()
                            || st.head_written.is_none_or(|t| t.elapsed() >= HEAD_EVERY)
                    };
                    if due {
                        citybrain_core::failpoint::step("audit.head")?;
                        self.write_head(&Head::signed(last, mac, sha, &self.signer))?;
                    }
                    Ok(due)
                });
            st = state.lock().expect("audit lock");
            st.flushing = false;
            match result {
                Ok(due) => {
                    st.durable_seq = last;
                    if due {
                        st.head_written = Some(std::time::Instant::now());
                    }
                }
                // Fail closed: later lines would chain to records that never reached disk.
                Err(e) => st.failed = Some(format!("the audit log cannot be written: {e}")),
            }
            flushed.notify_all();
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
        if let Trail::Shared(shared) = &self.trail {
            return shared.scan(|line| {
                if let Ok(entry) = serde_json::from_str::<Entry>(line) {
                    visit(entry);
                }
            });
        }
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
    /// Records from before the public chain (no `sha`): only the MAC chain checks them.
    pub without_public_hash: u64,
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

/// Checks the whole chain in `dir` under `key`: every MAC, every link, the public hashes,
/// the sequence, the head's signature, and that nothing the head vouches for is missing.
pub fn verify(dir: &Path, key: &[u8]) -> Result<Verification, GovError> {
    let public = head_signer(key).verifying_key();
    let key = Keyed::new_from_slice(key).expect("HMAC takes keys of any length");
    check(dir, Some(&key), &public, &[])
}

/// Checks the whole chain in `dir` with the public key only: every public hash, every link,
/// the sequence, the head's signature, that nothing the head vouches for is missing, and
/// that every head in `kept` (heads an auditor saved earlier) is still in the trail.
/// Without the secret the MACs cannot be checked; the public chain and the signed head
/// stand in for them.
pub fn verify_public(
    dir: &Path,
    public: &VerifyingKey,
    kept: &[Head],
) -> Result<Verification, GovError> {
    check(dir, None, public, kept)
}

fn check(
    dir: &Path,
    key: Option<&Keyed>,
    public: &VerifyingKey,
    kept: &[Head],
) -> Result<Verification, GovError> {
    let mut bytes = Vec::new();
    File::open(dir.join(LOG_FILE))
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io("reading the audit log"))?;
    let head: Option<Head> = std::fs::read(dir.join(HEAD_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(check_trail(&bytes, head, key, public, kept))
}

/// Checks the cluster's trail in `postgres` under `key` (as [`verify`] a directory's).
pub fn verify_shared(
    postgres: &citybrain_metadb::Postgres,
    key: &[u8],
) -> Result<Verification, GovError> {
    let public = head_signer(key).verifying_key();
    let key = Keyed::new_from_slice(key).expect("HMAC takes keys of any length");
    let (bytes, head) = crate::audit_shared::SharedTrail::open(postgres)?.read_all()?;
    Ok(check_trail(&bytes, head, Some(&key), &public, &[]))
}

/// Checks the cluster's trail in `postgres` with the public key only (as
/// [`verify_public`] a directory's).
pub fn verify_shared_public(
    postgres: &citybrain_metadb::Postgres,
    public: &VerifyingKey,
    kept: &[Head],
) -> Result<Verification, GovError> {
    let (bytes, head) = crate::audit_shared::SharedTrail::open(postgres)?.read_all()?;
    Ok(check_trail(&bytes, head, None, public, kept))
}

/// Checks a trail's lines (`bytes`, one record a line) against its head.
fn check_trail(
    bytes: &[u8],
    head: Option<Head>,
    key: Option<&Keyed>,
    public: &VerifyingKey,
    kept: &[Head],
) -> Verification {
    let mut problems = Vec::new();
    let mut note = |p: String| {
        if problems.len() < PROBLEMS_CAP {
            problems.push(p);
        }
    };
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        note("the last record is cut short: the file was truncated".to_string());
    }
    // Every head to hold against the trail: the one on disk and those kept elsewhere.
    let mut vouched: Vec<(&str, &Head, bool)> = Vec::new();
    if let Some(h) = &head {
        vouched.push(("head.json", h, false));
    }
    for h in kept {
        vouched.push(("the kept head", h, false));
    }
    for (name, h, _) in &vouched {
        // A head from before signed heads ({seq, mac} only) is held to its record's MAC and
        // (empty) public hash below, which only the secret's check can trust.
        let legacy = key.is_some() && h.sha.is_empty() && h.sig.is_empty();
        if !legacy && (h.sha.is_empty() || !h.is_signed_by(public)) {
            note(format!(
                "{name} (record {}) is not signed by this public key",
                h.seq
            ));
        }
    }
    let mut expected_seq = 1u64;
    let mut prev_mac = String::new();
    let mut prev_sha = String::new();
    let (mut records, mut without_public_hash) = (0u64, 0u64);
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
        match check_line(key, text, &prev_sha) {
            Err(why) => note(format!("line {line_no}: {why}")),
            Ok((entry, wrong)) => {
                for why in wrong {
                    note(format!("line {line_no}: {why}"));
                }
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
                if entry.sha.is_empty() {
                    without_public_hash += 1;
                    if !prev_sha.is_empty() {
                        note(format!(
                            "line {line_no}: record {} has no public hash after records that have one",
                            entry.seq
                        ));
                    }
                }
                for (name, h, seen) in &mut vouched {
                    if h.seq == entry.seq {
                        *seen = true;
                        if h.mac != entry.mac || h.sha != entry.sha {
                            note(format!(
                                "record {} differs from the one {name} vouches for",
                                entry.seq
                            ));
                        }
                    }
                }
                expected_seq = entry.seq + 1;
                prev_mac = entry.mac;
                prev_sha = entry.sha;
                records += 1;
            }
        }
    }
    for (name, h, seen) in &vouched {
        if !seen && h.seq > 0 {
            note(format!(
                "{name} vouches for record {} but the log ends at record {}: records were cut off the end",
                h.seq,
                expected_seq - 1
            ));
        }
    }
    if head.is_none() && records > 0 {
        note("head.json is missing or unreadable".to_string());
    }
    if key.is_none() && without_public_hash > 0 {
        note(format!(
            "{without_public_hash} records were written before the public chain: only `citybrain audit verify` with the hub's secret checks them"
        ));
    }
    Verification {
        records,
        head,
        without_public_hash,
        problems,
    }
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
