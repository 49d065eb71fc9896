//! The governance vocabulary: departments, principals and their roles, tokens, grants.

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use serde::{Deserialize, Serialize};

/// The department the hub's own operators belong to. Its admins manage departments and
/// principals everywhere; for reading data it is a department like any other.
pub const HUB_DEPARTMENT: &str = "hub";

/// What a principal may do within its department. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads what the department may read (SQL, records, exports).
    Reader,
    /// Also defines the department's datasets and ingests into them.
    Publisher,
    /// Also manages the department's principals and tokens and decides grants on its datasets.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reader" => Some(Self::Reader),
            "publisher" => Some(Self::Publisher),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Publisher => "publisher",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub id: DepartmentId,
    #[serde(default)]
    pub name: String,
    pub created_at: Timestamp,
}

/// Who is calling: established from a bearer token on every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: PrincipalName,
    pub department: DepartmentId,
    pub role: Role,
}

impl Principal {
    pub fn is_hub_admin(&self) -> bool {
        self.department.as_str() == HUB_DEPARTMENT && self.role == Role::Admin
    }
    /// Admin of `department`, or of the hub.
    pub fn administers(&self, department: &DepartmentId) -> bool {
        self.is_hub_admin() || (self.role == Role::Admin && &self.department == department)
    }
    /// May define and ingest into `department`'s datasets.
    pub fn publishes_for(&self, department: &DepartmentId) -> bool {
        self.is_hub_admin() || (self.role >= Role::Publisher && &self.department == department)
    }
}

/// A token as listed: never the secret, which is shown once when issued and stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub principal: PrincipalName,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The token that issued this one (none for the hub admin's first token).
    #[serde(default)]
    pub issued_by: Option<String>,
}

/// An authenticated call's principal and the token it came with: a token issued with it
/// may not outlive it, and revoking it can revoke what it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub token_id: String,
    pub expires_at: Option<Timestamp>,
}

/// A freshly issued token: the only time the secret exists outside the caller's hands.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub principal: PrincipalName,
    pub token: String,
    pub expires_at: Option<Timestamp>,
}

/// A grant's identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub i64);

impl std::fmt::Display for GrantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a grant stands, as stored. Expiry is not stored: it follows from `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Requested,
    Approved,
    Refused,
    Revoked,
}

impl GrantState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Refused => "refused",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "requested" => Some(Self::Requested),
            "approved" => Some(Self::Approved),
            "refused" => Some(Self::Refused),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A department's request to read a dataset, and the owner's decision on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub dataset: DatasetName,
    /// The department that may read.
    pub department: DepartmentId,
    pub purpose: String,
    /// The fields the grantee may see; empty means every field.
    pub fields: Vec<String>,
    /// Personal fields the grantee may see unmasked.
    pub raw: Vec<String>,
    /// How long the grant lasts once approved.
    pub days: u32,
    pub state: GrantState,
    /// The owner's reason for a refusal or a revocation.
    pub reason: String,
    pub requested_by: PrincipalName,
    pub requested_at: Timestamp,
    pub decided_by: Option<PrincipalName>,
    pub decided_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

impl Grant {
    /// Whether the grant lets its department read at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.state == GrantState::Approved && self.expires_at.is_some_and(|e| now < e)
    }

    /// The state a person would name at `now`, including `expired`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        if self.state == GrantState::Approved && !self.is_active(now) {
            "expired"
        } else {
            self.state.name()
        }
    }

    pub fn covers(&self, field: &str) -> bool {
        self.fields.is_empty() || self.fields.iter().any(|f| f == field)
    }
}

/// A grant request, as a department sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    pub dataset: DatasetName,
    pub purpose: String,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub raw: Vec<String>,
    pub days: u32,
}
