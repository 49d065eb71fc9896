//! Identifiers: dataset names, department and principal ids, validated on construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} '{value}' is invalid: {reason}")]
    Invalid {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The longest part of a name (a department, a principal, either half of a dataset name, a
/// field): PostgreSQL's identifier limit, so every name is usable as an SQL identifier as is.
pub const MAX_NAME_PART_LEN: usize = 63;

fn check_word(kind: &'static str, whole: &str, word: &str) -> Result<(), IdError> {
    let invalid = |reason| IdError::Invalid {
        kind,
        value: whole.to_string(),
        reason,
    };
    let first = word
        .chars()
        .next()
        .ok_or_else(|| invalid("a part is empty"))?;
    if !first.is_ascii_lowercase() {
        return Err(invalid("each part must start with a lowercase letter a-z"));
    }
    if !word
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid("use only lowercase letters, digits and '_'"));
    }
    if word.len() > MAX_NAME_PART_LEN {
        return Err(invalid("each part is at most 63 characters"));
    }
    Ok(())
}

/// A department that owns datasets and whose principals call the API (`transport`, `health`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DepartmentId(String);

impl DepartmentId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_word("department", value, value)?;
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A principal (a person or a service) that calls the API on behalf of one department
/// (`transport_ops`, `cockpit`). Unique across the hub.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_word("principal", value, value)?;
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dataset's dotted name, `namespace.table` (`transport.anpr_passages`).
///
/// Exactly two parts, so the name maps one-to-one onto SQL's `schema.table`. A double
/// underscore is reserved for datasets the hub derives itself (`x.y__rejected`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

/// Suffix of the dead-letter dataset that keeps records refused in skip mode.
pub const REJECTED_SUFFIX: &str = "__rejected";

impl DatasetName {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let mut parts = value.split('.');
        let (Some(namespace), Some(table), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(IdError::Invalid {
                kind: "dataset name",
                value: value.to_string(),
                reason: "write it as namespace.table, e.g. transport.anpr_passages",
            });
        };
        check_word("dataset name", value, namespace)?;
        check_word("dataset name", value, table)?;
        Ok(Self(value.to_string()))
    }

    /// Like [`DatasetName::parse`], but also refuses the names the hub reserves for itself.
    pub fn parse_user(value: &str) -> Result<Self, IdError> {
        let name = Self::parse(value)?;
        if value.contains("__") {
            return Err(IdError::Invalid {
                kind: "dataset name",
                value: value.to_string(),
                reason: "'__' is reserved for datasets the hub derives (dead letters)",
            });
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn namespace(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }
    pub fn table(&self) -> &str {
        self.0.split('.').nth(1).unwrap_or_default()
    }
    /// The dataset holding this dataset's rejected records.
    pub fn rejected(&self) -> DatasetName {
        DatasetName(format!("{}{REJECTED_SUFFIX}", self.0))
    }
    pub fn is_rejected(&self) -> bool {
        self.0.ends_with(REJECTED_SUFFIX)
    }
}

macro_rules! string_id_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(&value)
            }
        }
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.0
            }
        }
        impl std::str::FromStr for $t {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }
    };
}
string_id_impls!(DepartmentId);
string_id_impls!(PrincipalName);
string_id_impls!(DatasetName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names() {
        let name = DatasetName::parse("transport.anpr_passages").unwrap();
        assert_eq!(name.namespace(), "transport");
        assert_eq!(name.table(), "anpr_passages");
        assert_eq!(
            name.rejected().as_str(),
            "transport.anpr_passages__rejected"
        );
        for bad in [
            "transport",
            "a.b.c",
            "Transport.x",
            "t.1x",
            "t.x-y",
            ".x",
            "t.",
        ] {
            assert!(DatasetName::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(DatasetName::parse_user("t.x__rejected").is_err());
    }
}
