//! Governance: who calls (departments, principals, tokens), what they may read (sharing
//! classes, grants, masks), and the record of every data call (a hash-chained audit trail
//! and per-department counters).
//!
//! Key decision: access is decided once per dataset per call by the pure [`access::decide`],
//! which returns a [`View`]: the columns the caller sees, each raw or masked. The SQL crate
//! applies the view where the dataset is scanned, at the leaves of the query plan, so every
//! expression, join, aggregate and predicate above sees only masked values. This crate knows
//! nothing of SQL.

pub mod access;
pub mod audit;
mod audit_shared;
pub mod forwarding;
pub mod linkage;
pub mod mask;
pub mod model;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use citybrain_hub::DatasetDef;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use access::{Denial, View, ViewColumn};
pub use audit::{AuditLog, Call, CallKind, Outcome, Touch};
pub use forwarding::{Forwarded, Forwarding};
pub use linkage::{LinkMember, Linkage};
pub use mask::Masker;
pub use model::{
    Department, Grant, GrantId, GrantRequest, GrantState, HUB_DEPARTMENT, IssuedToken, Principal,
    Role, Session, TokenInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum GovError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error(
        "the hub secret {0} is missing, but this data directory holds governance and an audit trail made with it; restore secret.key from your backup (without it pseudonyms change and the audit trail cannot be verified), or start with an empty data directory"
    )]
    SecretMissing(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Denied(#[from] Denial),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Storage {
        context: &'static str,
        source: citybrain_metadb::DbError,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("audit trail: {0}")]
    Audit(String),
}

/// File holding the hub's secret (32 random bytes); pseudonym and audit keys derive from it.
pub const SECRET_FILE: &str = "secret.key";
/// Directory of the audit trail inside the data directory.
pub const AUDIT_DIR: &str = "audit";

/// Reads the hub's secret, creating it (mode 0600) on first start. A data directory that
/// already holds governance or an audit trail was made with a secret: if it is gone, a new
/// one would silently change every pseudonym and make the audit trail read as altered, so
/// this refuses and says how to restore it.
pub fn load_secret(data_dir: &Path) -> Result<Vec<u8>, GovError> {
    match read_secret(data_dir) {
        Err(GovError::SecretMissing(_)) if !holds_keyed_state(data_dir) => {
            let path = data_dir.join(SECRET_FILE);
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).expect("the operating system provides randomness");
            write_private(&path, &secret).map_err(|source| GovError::Io {
                context: "writing the hub secret",
                source,
            })?;
            Ok(secret)
        }
        other => other,
    }
}

/// Whether `data_dir` holds state keyed by its secret (governance, an audit trail).
fn holds_keyed_state(data_dir: &Path) -> bool {
    data_dir.join("governance.sqlite").exists()
        || std::fs::read_dir(data_dir.join(AUDIT_DIR))
            .is_ok_and(|mut entries| entries.next().is_some())
}

/// Reads the hub's secret; never creates it (for `audit verify` and anything offline).
pub fn read_secret(data_dir: &Path) -> Result<Vec<u8>, GovError> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        Ok(_) => Err(GovError::Invalid(format!(
            "{} is shorter than 32 bytes; restore it from backup",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(GovError::SecretMissing(path.display().to_string()))
        }
        Err(source) => Err(GovError::Io {
            context: "reading the hub secret",
            source,
        }),
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Longest purpose a call may state, in characters.
pub const MAX_PURPOSE_CHARS: usize = 500;

/// A purpose is one line of printable text: it is shown to owners in tables and
/// terminals, where a newline would forge a row and an escape sequence rewrite the screen.
pub fn check_purpose(purpose: &str) -> Result<(), GovError> {
    let count = purpose.chars().count();
    if count > MAX_PURPOSE_CHARS {
        return Err(GovError::Invalid(format!(
            "purpose: {count} characters, over the limit of {MAX_PURPOSE_CHARS}; say why in one short line"
        )));
    }
    if let Some(c) = purpose.chars().find(|c| is_unprintable(*c)) {
        return Err(GovError::Invalid(format!(
            "purpose: the character {:?} is not allowed (no control characters, line breaks or direction overrides)",
            c
        )));
    }
    Ok(())
}

/// Control characters, and the invisible marks that reorder text on screen.
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}')
}

/// A key for one purpose, derived from the hub secret, so one leaked key exposes one use.
pub fn derive_key(secret: &[u8], purpose: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Counters of data calls, exported on `/metrics`.
type CounterKey = (String, String, CallKind, Outcome);

/// The governance state of one hub.
#[derive(Debug)]
pub struct Gov {
    store: Mutex<store::Store>,
    audit: AuditLog,
    masker: Masker,
    counters: Mutex<BTreeMap<CounterKey, u64>>,
    dir: PathBuf,
    forwarding: Forwarding,
}

/// A management call by `by` about `dataset` (grant requests and decisions).
fn manage_call(by: &Principal, now: Timestamp, dataset: &DatasetName, fields: &[String]) -> Call {
    let mut call = Call::new(
        now,
        by.name.as_str(),
        by.department.as_str(),
        CallKind::Manage,
    );
    call.datasets.push(Touch {
        dataset: dataset.clone(),
        fields: fields.to_vec(),
    });
    call
}

fn who(principal: &Principal) -> (&str, &str) {
    (principal.name.as_str(), principal.department.as_str())
}

impl Gov {
    /// Opens governance in the data directory; creates the `hub` department and its
    /// `admin` principal on first start.
    pub fn open(data_dir: &Path, now: Timestamp) -> Result<Self, GovError> {
        Self::open_with(data_dir, None, now)
    }

    /// As [`Gov::open`], with the departments, principals, tokens and grants in `postgres`
    /// when given (a cluster's nodes share one database) instead of
    /// `DATA/governance.sqlite`. Every node must hold the same `secret.key`: pseudonyms and
    /// the audit key derive from it, so a node with another is refused.
    pub fn open_with(
        data_dir: &Path,
        postgres: Option<&citybrain_metadb::Postgres>,
        now: Timestamp,
    ) -> Result<Self, GovError> {
        let secret = load_secret(data_dir)?;
        let place = match postgres {
            Some(pg) => citybrain_metadb::Place::Postgres(pg.clone()),
            None => citybrain_metadb::Place::Sqlite(data_dir.join("governance.sqlite")),
        };
        let store = store::Store::open(&place)?;
        let fingerprint = hex::encode(&derive_key(&secret, "citybrain identity v1")[..16]);
        if store.hub_value("secret_fingerprint", &fingerprint)? != fingerprint {
            return Err(GovError::Invalid(format!(
                "{} is not the secret governance in {} was made with (another node's or another hub's); copy secret.key from a node of this hub into {} and start again",
                data_dir.join(SECRET_FILE).display(),
                store.place(),
                data_dir.display()
            )));
        }
        let hub = DepartmentId::parse(HUB_DEPARTMENT).expect("valid id");
        if store.department(&hub)?.is_none() {
            // Nodes of a cluster may start at once: the one that finds them made is done.
            match store.create_department(&hub, "City Brain hub operators", now) {
                Ok(_) | Err(GovError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            match store.create_principal(&Self::admin_principal(), now) {
                Ok(()) | Err(GovError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let audit_key = derive_key(&secret, "citybrain audit v1");
        let audit = match postgres {
            Some(pg) => AuditLog::open_shared(&data_dir.join(AUDIT_DIR), &audit_key, pg)?,
            None => AuditLog::open(&data_dir.join(AUDIT_DIR), &audit_key)?,
        };
        Ok(Self {
            store: Mutex::new(store),
            audit,
            masker: Masker::new(&derive_key(&secret, "citybrain pseudonym v1")),
            counters: Mutex::new(BTreeMap::new()),
            dir: data_dir.to_path_buf(),
            forwarding: Forwarding::of_secret(&secret),
        })
    }

    /// The hub's first administrator.
    pub fn admin_principal() -> Principal {
        Principal {
            name: PrincipalName::parse("admin").expect("valid id"),
            department: DepartmentId::parse(HUB_DEPARTMENT).expect("valid id"),
            role: Role::Admin,
        }
    }

    /// The audit key for `dir`'s hub (for `citybrain audit verify`, which runs offline).
    pub fn audit_key(data_dir: &Path) -> Result<Vec<u8>, GovError> {
        Ok(derive_key(&read_secret(data_dir)?, "citybrain audit v1"))
    }

    /// The seed of the key that signs codes (`citybrain_services::codes`) for `dir`'s hub.
    pub fn codes_seed(data_dir: &Path) -> Result<Vec<u8>, GovError> {
        Ok(derive_key(&read_secret(data_dir)?, "citybrain codes v1"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key that proves a call was sent on by a node of this hub (see [`forwarding`]).
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    fn store(&self) -> std::sync::MutexGuard<'_, store::Store> {
        self.store.lock().expect("governance store lock")
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn authenticate(&self, token: &str, now: Timestamp) -> Result<Principal, GovError> {
        Ok(self.session(token, now)?.principal)
    }

    /// The principal a token belongs to, with the token (see [`Session`]).
    pub fn session(&self, token: &str, now: Timestamp) -> Result<Session, GovError> {
        self.store()
            .authenticate(token, now)?
            .ok_or(GovError::Unauthorized)
    }

    // ---- departments, principals, tokens ----

    pub fn create_department(
        &self,
        by: &Principal,
        id: &DepartmentId,
        name: &str,
        now: Timestamp,
    ) -> Result<Department, GovError> {
        if !by.is_hub_admin() {
            return Err(GovError::Forbidden(
                "only the hub's admins create departments".into(),
            ));
        }
        self.manage(by, now, format!("create department {id}"), |store| {
            store.create_department(id, name, now)
        })
    }

    pub fn departments(&self) -> Result<Vec<Department>, GovError> {
        self.store().departments()
    }

    pub fn department_exists(&self, id: &DepartmentId) -> Result<bool, GovError> {
        Ok(self.store().department(id)?.is_some())
    }

    pub fn create_principal(
        &self,
        by: &Principal,
        principal: &Principal,
        now: Timestamp,
    ) -> Result<(), GovError> {
        if !by.administers(&principal.department) {
            return Err(GovError::Forbidden(format!(
                "only admins of {} (or of the hub) add its principals",
                principal.department
            )));
        }
        self.manage(
            by,
            now,
            format!(
                "create principal {} ({} in {})",
                principal.name,
                principal.role.name(),
                principal.department
            ),
            |store| store.create_principal(principal, now),
        )
    }

    pub fn principals(&self, by: &Principal) -> Result<Vec<Principal>, GovError> {
        let all = self.store().principals()?;
        Ok(all
            .into_iter()
            .filter(|p| by.is_hub_admin() || p.department == by.department)
            .collect())
    }

    /// Issues a token for `principal`. Only admins issue tokens (its department's, or the
    /// hub's; a reader or publisher asks one), and a token never outlives the one that
    /// issues it: without an expiry it expires with it, and a later expiry is refused.
    pub fn issue_token(
        &self,
        by: &Session,
        principal: &PrincipalName,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<IssuedToken, GovError> {
        let target = self
            .store()
            .principal(principal)?
            .ok_or_else(|| GovError::NotFound(format!("principal {principal} does not exist")))?;
        if !by.principal.administers(&target.department) {
            return Err(GovError::Forbidden(format!(
                "only admins of {} (or of the hub) issue tokens for {principal}; ask one of them",
                target.department
            )));
        }
        let expires_at = match (expires_at, by.expires_at) {
            (Some(wanted), Some(limit)) if wanted > limit => {
                return Err(GovError::Forbidden(format!(
                    "a token may not outlive the token that issues it (yours expires at {limit}); ask for an expiry before then"
                )));
            }
            (None, limit) => limit,
            (wanted, _) => wanted,
        };
        self.manage(
            &by.principal,
            now,
            format!("issue a token for {principal}"),
            |store| store.issue_token(principal, expires_at, Some(&by.token_id), now),
        )
    }

    /// Issues a token at the operator's console (`citybrain up` setting up the demo city):
    /// no token issues it, so none can revoke it by cascade; audited as `by`'s.
    pub fn issue_console_token(
        &self,
        by: &Principal,
        principal: &PrincipalName,
        now: Timestamp,
    ) -> Result<IssuedToken, GovError> {
        self.manage(
            by,
            now,
            format!("issue a token for {principal} (console)"),
            |store| store.issue_token(principal, None, None, now),
        )
    }

    /// Issues the hub admin's token without a caller (first start).
    pub fn issue_admin_token(&self, now: Timestamp) -> Result<IssuedToken, GovError> {
        self.store()
            .issue_token(&Self::admin_principal().name, None, None, now)
    }

    pub fn tokens(&self, by: &Principal) -> Result<Vec<TokenInfo>, GovError> {
        let store = self.store();
        let tokens = store.tokens()?;
        let mut visible = Vec::new();
        for t in tokens {
            let owner = store.principal(&t.principal)?;
            if by.name == t.principal || owner.is_some_and(|p| by.administers(&p.department)) {
                visible.push(t);
            }
        }
        Ok(visible)
    }

    /// Revokes a token and, with `cascade`, every token issued with it (and with those):
    /// a leaked token's offspring go with it. Returns the ids revoked.
    pub fn revoke_token(
        &self,
        by: &Principal,
        id: &str,
        cascade: bool,
        now: Timestamp,
    ) -> Result<Vec<String>, GovError> {
        let info = self
            .store()
            .token(id)?
            .ok_or_else(|| GovError::NotFound(format!("token {id} does not exist")))?;
        let owner = self.store().principal(&info.principal)?;
        if !(by.name == info.principal || owner.is_some_and(|p| by.administers(&p.department))) {
            return Err(GovError::Forbidden(format!(
                "only admins of {}'s department revoke its tokens",
                info.principal
            )));
        }
        let ids = if cascade {
            self.store().token_descendants(id)?
        } else {
            vec![id.to_string()]
        };
        self.manage(
            by,
            now,
            format!("revoke token {}", ids.join(", ")),
            |store| {
                for id in &ids {
                    store.revoke_token(id, now)?;
                }
                Ok(ids.clone())
            },
        )
    }

    // ---- grants ----

    /// A department asks the owner of `def` for a grant.
    pub fn request_grant(
        &self,
        by: &Principal,
        def: &DatasetDef,
        request: &GrantRequest,
        now: Timestamp,
    ) -> Result<Grant, GovError> {
        // A dataset shared with no one is unknown to others: no requests either.
        if def.sharing == citybrain_hub::SharingClass::None && by.department != def.owner {
            return Err(Denial::Unknown(def.name.clone()).into());
        }
        let problems = access::check_request(def, request);
        if !problems.is_empty() {
            return Err(GovError::Invalid(format!(
                "the grant request has problems: {}",
                problems.join("; ")
            )));
        }
        let mut call = manage_call(by, now, &def.name, &request.fields);
        check_purpose(&request.purpose)?;
        call.purpose = request.purpose.clone();
        self.audited(
            call,
            |store| store.insert_grant(request, &by.department, &by.name, now),
            |result| match result {
                Ok(g) => format!("request grant #{}", g.id),
                Err(e) => format!("request grant: {e}"),
            },
        )
    }

    pub fn grant(&self, id: GrantId) -> Result<Grant, GovError> {
        self.store()
            .grant(id)?
            .ok_or_else(|| GovError::NotFound(format!("grant #{id} does not exist")))
    }

    /// Approves, refuses or revokes a grant. `owner` is the owner of the grant's dataset.
    /// Owners' admins decide; the grantee's admins may also give a grant up (revoke).
    pub fn decide_grant(
        &self,
        by: &Principal,
        id: GrantId,
        owner: &DepartmentId,
        decision: GrantState,
        reason: &str,
        now: Timestamp,
    ) -> Result<Grant, GovError> {
        let grant = self.grant(id)?;
        let owner_admin = by.role == Role::Admin && &by.department == owner;
        let allowed = match decision {
            GrantState::Approved | GrantState::Refused => owner_admin,
            GrantState::Revoked => owner_admin || by.administers(&grant.department),
            GrantState::Requested => false,
        };
        if !allowed {
            return Err(GovError::Forbidden(format!(
                "only admins of {owner}, which owns {}, decide on its grants",
                grant.dataset
            )));
        }
        let valid = match decision {
            GrantState::Approved | GrantState::Refused => grant.state == GrantState::Requested,
            GrantState::Revoked => grant.state == GrantState::Approved,
            GrantState::Requested => false,
        };
        if !valid {
            return Err(GovError::Conflict(format!(
                "grant #{id} is {}; it cannot become {}",
                grant.status(now),
                decision.name()
            )));
        }
        if decision == GrantState::Refused && reason.trim().is_empty() {
            return Err(GovError::Invalid(
                "a refusal needs a reason the requester can act on".into(),
            ));
        }
        let expires_at = (decision == GrantState::Approved)
            .then(|| Timestamp(now.0 + i64::from(grant.days) * 86_400_000_000));
        let call = manage_call(by, now, &grant.dataset, &grant.fields);
        let detail = format!("grant #{id} {}: {reason}", decision.name());
        self.audited(
            call,
            |store| store.set_grant_state(id, decision, reason, &by.name, now, expires_at),
            |_| detail,
        )?;
        self.grant(id)
    }

    /// Grants the caller may see: its department's, and those on datasets it owns.
    pub fn grants_for(
        &self,
        by: &Principal,
        owner_of: impl Fn(&DatasetName) -> Option<DepartmentId>,
    ) -> Result<Vec<Grant>, GovError> {
        let all = self.store().grants()?;
        Ok(all
            .into_iter()
            .filter(|g| {
                by.is_hub_admin()
                    || g.department == by.department
                    || owner_of(&g.dataset).as_ref() == Some(&by.department)
            })
            .collect())
    }

    /// What `caller` sees of `def` now.
    pub fn view(
        &self,
        def: &DatasetDef,
        caller: &Principal,
        now: Timestamp,
    ) -> Result<View, GovError> {
        if caller.department == def.owner {
            return Ok(View::full(def));
        }
        let grants = self.store().grants_on(&def.name)?;
        let mut view = access::decide(def, caller, &grants, now)?;
        let pseudonymised =
            |c: &access::ViewColumn| c.mask == Some(citybrain_hub::MaskKind::Pseudonym);
        // Linkages matter only to pseudonymised columns; most views have none.
        if !view.columns.iter().any(pseudonymised) {
            return Ok(view);
        }
        let linkages = self.store().linkages()?;
        for column in &mut view.columns {
            if column.mask == Some(citybrain_hub::MaskKind::Pseudonym) {
                column.domain = Some(linkage::domain_of(&linkages, &def.name, &column.name));
            }
        }
        Ok(view)
    }

    // ---- audit and counters ----

    /// Records one call in the trail (durably) and in the counters.
    pub fn record(&self, call: Call) -> Result<u64, GovError> {
        // A streamed result's closing record is not a call of its own.
        if call.closes.is_none() {
            let mut counters = self.counters.lock().expect("counters lock");
            let datasets: Vec<String> = if call.datasets.is_empty() {
                vec![String::new()]
            } else {
                call.datasets
                    .iter()
                    .map(|t| t.dataset.to_string())
                    .collect()
            };
            for dataset in datasets {
                *counters
                    .entry((call.department.clone(), dataset, call.kind, call.outcome))
                    .or_default() += 1;
            }
        }
        self.audit.append(call)
    }

    fn manage<T>(
        &self,
        by: &Principal,
        now: Timestamp,
        detail: String,
        action: impl FnOnce(&store::Store) -> Result<T, GovError>,
    ) -> Result<T, GovError> {
        let (name, department) = who(by);
        let call = Call::new(now, name, department, CallKind::Manage);
        self.audited(call, action, |_| detail)
    }

    /// Runs a governance change and records it: the change is made in an open SQLite
    /// savepoint, the call (with its outcome) is appended to the trail, and only then is the
    /// change committed. A crash before the record rolls the change back, so no change ever
    /// stands without its audit record; a crash between the record and the commit leaves a
    /// record of a change that did not take (the caller got no answer and repeats it).
    fn audited<T>(
        &self,
        mut call: Call,
        action: impl FnOnce(&store::Store) -> Result<T, GovError>,
        detail: impl FnOnce(&Result<T, GovError>) -> String,
    ) -> Result<T, GovError> {
        let store = self.store();
        store.begin()?;
        let result = action(&store);
        call.outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        call.detail = detail(&result);
        let recorded = citybrain_core::failpoint::step("gov.audit")
            .map_err(|source| GovError::Io {
                context: "recording a governance change",
                source,
            })
            .and_then(|()| self.record(call));
        if let Err(e) = recorded {
            store.rollback()?;
            return Err(e);
        }
        match &result {
            // A failed commit must not leave the savepoint open: every later change
            // would nest in it and never commit (the crash matrix found this).
            Ok(_) => {
                if let Err(e) = store.commit() {
                    store.rollback()?;
                    return Err(e);
                }
            }
            Err(_) => store.rollback()?,
        }
        result
    }

    /// Calls that touched `dataset`: for its owner's admins and publishers, and the hub's admins.
    pub fn calls_on(
        &self,
        by: &Principal,
        def: &DatasetDef,
        limit: usize,
    ) -> Result<Vec<audit::Entry>, GovError> {
        if !(by.publishes_for(&def.owner)) {
            return Err(GovError::Forbidden(format!(
                "only {}'s admins and publishers see who read {}",
                def.owner, def.name
            )));
        }
        self.audit.calls_on(&def.name, limit)
    }

    /// The counters `viewer` may see: the hub's admins all of them; anyone else those of
    /// its department's datasets (`owner_of` says whose a dataset is), its own
    /// department's calls that touched no dataset, and the rest summed per calling
    /// department. A count of calls on a dataset tells that it exists and is used, which
    /// is its owner's to know.
    pub fn metrics_text(
        &self,
        viewer: &Principal,
        owner_of: impl Fn(&str) -> Option<DepartmentId>,
    ) -> String {
        let counters = self.counters.lock().expect("counters lock");
        let mut out = String::from(
            "# HELP citybrain_data_calls_total Data calls by calling department, dataset, kind and outcome.\n# TYPE citybrain_data_calls_total counter\n",
        );
        let visible = |department: &str, dataset: &str| {
            viewer.is_hub_admin()
                || if dataset.is_empty() {
                    department == viewer.department.as_str()
                } else {
                    owner_of(dataset).is_some_and(|owner| owner == viewer.department)
                }
        };
        // What the viewer may not see by dataset it sees summed per calling department as
        // `dataset="*"`: how busy departments are, never which datasets exist.
        let mut others: BTreeMap<(&str, CallKind, Outcome), u64> = BTreeMap::new();
        let line = |department: &str, dataset: &str, kind: CallKind, outcome: Outcome, n: u64| {
            format!(
                "citybrain_data_calls_total{{department=\"{department}\",dataset=\"{dataset}\",kind=\"{}\",outcome=\"{}\"}} {n}\n",
                kind.name(),
                outcome.name()
            )
        };
        for ((department, dataset, kind, outcome), n) in counters.iter() {
            if visible(department, dataset) {
                out.push_str(&line(department, dataset, *kind, *outcome, *n));
            } else {
                *others.entry((department, *kind, *outcome)).or_default() += n;
            }
        }
        for ((department, kind, outcome), n) in others {
            out.push_str(&line(department, "*", kind, outcome, n));
        }
        out
    }
}
