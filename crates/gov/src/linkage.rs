//! Linkage domains: which pseudonymised columns of different datasets share pseudonyms.
//!
//! Key decision: linkage is something owners grant, not a side effect of one hub key. Each
//! pseudonymised column has a key of its own (its domain is `column:<dataset>.<field>`),
//! so a value's pseudonym in one dataset says nothing about its pseudonym in another, and
//! no one can join a dataset of guesses they made up against another department's personal
//! column. A linkage names columns of several datasets; once the admins of every owning
//! department have approved it, those columns pseudonymise under the linkage's key
//! (`linkage:<name>`) and joins across them work. Any of them can withdraw it. A column is
//! in at most one linkage that is not withdrawn, so no one can add a column of theirs to a
//! domain others agreed on. See docs/adr/2026-12-01-linkage-domains.md.

use std::collections::BTreeSet;

use citybrain_core::{DatasetName, DepartmentId, PrincipalName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::{Principal, Role};
use crate::{Gov, GovError, check_purpose};

/// One column in a linkage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkMember {
    pub dataset: DatasetName,
    pub field: String,
}

impl std::fmt::Display for LinkMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dataset, self.field)
    }
}

/// A linkage as stored: the columns, the departments that must approve it (the owners of
/// its datasets when it was proposed) and those that have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linkage {
    pub name: String,
    pub purpose: String,
    pub members: Vec<LinkMember>,
    pub required: BTreeSet<DepartmentId>,
    pub approved: BTreeSet<DepartmentId>,
    pub proposed_by: PrincipalName,
    pub proposed_at: Timestamp,
    pub withdrawn_at: Option<Timestamp>,
}

impl Linkage {
    /// In force: not withdrawn, and approved by every owning department.
    pub fn is_active(&self) -> bool {
        self.withdrawn_at.is_none() && self.required.is_subset(&self.approved)
    }

    pub fn status(&self) -> &'static str {
        if self.withdrawn_at.is_some() {
            "withdrawn"
        } else if self.is_active() {
            "active"
        } else {
            "pending"
        }
    }

    pub fn pending(&self) -> Vec<&DepartmentId> {
        self.required.difference(&self.approved).collect()
    }
}

/// A pseudonymised column's domain: the key its pseudonyms are made with.
pub fn domain_of(linkages: &[Linkage], dataset: &DatasetName, field: &str) -> String {
    linkages
        .iter()
        .find(|l| {
            l.is_active()
                && l.members
                    .iter()
                    .any(|m| &m.dataset == dataset && m.field == field)
        })
        .map_or_else(
            || format!("column:{dataset}.{field}"),
            |l| format!("linkage:{}", l.name),
        )
}

/// A linkage's name: 1 to 63 of a-z, 0-9, `_` and `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "linkage name '{name}': use 1 to 63 of a-z, 0-9, _ and -"
        ));
    }
    Ok(())
}

/// Proposing, approving and withdrawing linkages: management calls on [`Gov`], audited.
impl Gov {
    /// Proposes a linkage of pseudonymised columns (`owner_of` gives each dataset's owner;
    /// the caller checked the columns exist and are pseudonymised). Its proposer, an
    /// admin, approves for its own department at once; the other owners approve with
    /// [`Gov::approve_linkage`].
    pub fn propose_linkage(
        &self,
        by: &Principal,
        name: &str,
        purpose: &str,
        members: Vec<LinkMember>,
        owner_of: impl Fn(&DatasetName) -> Option<DepartmentId>,
        now: Timestamp,
    ) -> Result<Linkage, GovError> {
        check_name(name).map_err(GovError::Invalid)?;
        check_purpose(purpose)?;
        if by.role != Role::Admin {
            return Err(GovError::Forbidden("only admins propose linkages".into()));
        }
        let mut members = members;
        members.sort();
        members.dedup();
        let datasets: BTreeSet<&DatasetName> = members.iter().map(|m| &m.dataset).collect();
        if datasets.len() < 2 {
            return Err(GovError::Invalid(
                "a linkage joins columns of at least two datasets".into(),
            ));
        }
        let mut required = BTreeSet::new();
        for m in &members {
            let owner = owner_of(&m.dataset).ok_or_else(|| {
                GovError::NotFound(format!("dataset {} does not exist", m.dataset))
            })?;
            required.insert(owner);
        }
        if !by.is_hub_admin() && !required.contains(&by.department) {
            return Err(GovError::Forbidden(format!(
                "only admins of the departments that own its datasets ({}) propose a linkage",
                required
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut approved = BTreeSet::new();
        if required.contains(&by.department) {
            approved.insert(by.department.clone());
        }
        let proposed = Linkage {
            name: name.to_string(),
            purpose: purpose.to_string(),
            members,
            required,
            approved,
            proposed_by: by.name.clone(),
            proposed_at: now,
            withdrawn_at: None,
        };
        self.manage(by, now, format!("propose linkage {name}"), |store| {
            for other in store.linkages()?.iter().filter(|l| l.withdrawn_at.is_none()) {
                if let Some(m) = proposed.members.iter().find(|m| other.members.contains(m)) {
                    return Err(GovError::Conflict(format!(
                        "{m} is already in linkage {}; a column is in one linkage at a time (withdraw that one first)",
                        other.name
                    )));
                }
            }
            store.put_linkage(&proposed, true)?;
            Ok(proposed.clone())
        })
    }

    /// An admin of an owning department approves a linkage for its department.
    pub fn approve_linkage(
        &self,
        by: &Principal,
        name: &str,
        now: Timestamp,
    ) -> Result<Linkage, GovError> {
        self.change_linkage(by, name, now, "approve", |l| {
            l.approved.insert(by.department.clone());
        })
    }

    /// An admin of an owning department (or of the hub) withdraws a linkage: its columns
    /// go back to pseudonyms of their own at once.
    pub fn withdraw_linkage(
        &self,
        by: &Principal,
        name: &str,
        now: Timestamp,
    ) -> Result<Linkage, GovError> {
        self.change_linkage(by, name, now, "withdraw", |l| {
            l.withdrawn_at.get_or_insert(now);
        })
    }

    fn change_linkage(
        &self,
        by: &Principal,
        name: &str,
        now: Timestamp,
        verb: &str,
        change: impl FnOnce(&mut Linkage),
    ) -> Result<Linkage, GovError> {
        self.manage(by, now, format!("{verb} linkage {name}"), |store| {
            let mut linkage = store
                .linkages()?
                .into_iter()
                .find(|l| l.name == name)
                .ok_or_else(|| GovError::NotFound(format!("linkage {name} does not exist")))?;
            let owner_admin = by.role == Role::Admin && linkage.required.contains(&by.department);
            // Approving speaks for a department's data: its own admins only.
            let allowed = owner_admin || (verb == "withdraw" && by.is_hub_admin());
            if !allowed {
                return Err(GovError::Forbidden(format!(
                    "only admins of {} {verb} linkage {name}",
                    linkage
                        .required
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if linkage.withdrawn_at.is_some() {
                return Err(GovError::Conflict(format!(
                    "linkage {name} was withdrawn; propose a new one"
                )));
            }
            change(&mut linkage);
            store.put_linkage(&linkage, false)?;
            Ok(linkage)
        })
    }

    /// The linkages `by` takes part in (the hub's admins: all).
    pub fn linkages(&self, by: &Principal) -> Result<Vec<Linkage>, GovError> {
        Ok(self
            .store()
            .linkages()?
            .into_iter()
            .filter(|l| by.is_hub_admin() || l.required.contains(&by.department))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(d: &str, f: &str) -> LinkMember {
        LinkMember {
            dataset: DatasetName::parse(d).unwrap(),
            field: f.into(),
        }
    }

    #[test]
    fn a_column_uses_a_linkage_only_once_every_owner_approved() {
        let dep = |s: &str| DepartmentId::parse(s).unwrap();
        let mut l = Linkage {
            name: "care".into(),
            purpose: "p".into(),
            members: vec![member("health.visits", "id"), member("civil.people", "id")],
            required: [dep("health"), dep("civil")].into(),
            approved: [dep("civil")].into(),
            proposed_by: PrincipalName::parse("a").unwrap(),
            proposed_at: Timestamp(0),
            withdrawn_at: None,
        };
        let health = DatasetName::parse("health.visits").unwrap();
        let ls = std::slice::from_ref(&l);
        assert_eq!(domain_of(ls, &health, "id"), "column:health.visits.id");
        l.approved.insert(dep("health"));
        assert_eq!(
            domain_of(std::slice::from_ref(&l), &health, "id"),
            "linkage:care"
        );
        l.withdrawn_at = Some(Timestamp(1));
        assert_eq!(
            domain_of(std::slice::from_ref(&l), &health, "id"),
            "column:health.visits.id"
        );
    }
}
