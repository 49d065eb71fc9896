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
