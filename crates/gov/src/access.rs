//! Who may read what, decided without I/O: a dataset's definition, the caller and the
//! grants in force go in; a [`View`] (which columns, each raw or masked) or a [`Denial`]
//! comes out. SQL, record reads and exports all plan against the view, so one function
//! decides access for every kind of data call.

use citybrain_core::{DatasetName, DepartmentId, Timestamp};
use citybrain_hub::schema::INGESTED_AT;
use citybrain_hub::{DatasetDef, MaskKind, SharingClass};
use serde::Serialize;

use crate::model::{Grant, GrantId, GrantRequest, Principal};

/// One column a caller sees, and whether it is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewColumn {
    pub name: String,
    /// None: the raw value.
    pub mask: Option<MaskKind>,
    /// For a pseudonymised column, the linkage domain whose key makes its pseudonyms
    /// (`Gov::view` sets it: an approved linkage's, else the column's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// What one caller sees of one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    pub dataset: DatasetName,
    /// In the dataset's column order (its fields, then `_ingested_at`).
    pub columns: Vec<ViewColumn>,
    /// The grants the view rests on (empty for the owner and unconditional data read masked).
    pub grants: Vec<GrantId>,
    /// The purposes of those grants, for the audit trail.
    pub purposes: Vec<String>,
}

impl View {
    /// Everything, raw: for the owner, and for the platform's own computations.
    pub fn full(def: &DatasetDef) -> Self {
        let mut columns: Vec<ViewColumn> = def
            .fields
            .iter()
            .map(|f| ViewColumn {
                name: f.name.clone(),
                mask: None,
                domain: None,
            })
            .collect();
        columns.push(ViewColumn {
            name: INGESTED_AT.to_string(),
            mask: None,
            domain: None,
        });
        Self {
            dataset: def.name.clone(),
            columns,
            grants: Vec::new(),
            purposes: Vec::new(),
        }
    }

    pub fn is_masked(&self) -> bool {
        self.columns.iter().any(|c| c.mask.is_some())
    }
}

/// Why a caller may not read a dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// Indistinguishable from a dataset that does not exist: `none` data of another department.
    #[error("dataset {0} does not exist")]
    Unknown(DatasetName),
    #[error(
        "department {department} needs a grant to read {dataset} (sharing: conditional): {why}; request one with `citybrain grants request {dataset} --purpose ... --days ...`"
    )]
    GrantRequired {
        dataset: DatasetName,
        department: DepartmentId,
        why: String,
    },
}

/// Decides what `caller` sees of the dataset `def` at `now`, given every grant made on it.
pub fn decide(
    def: &DatasetDef,
    caller: &Principal,
    grants: &[Grant],
    now: Timestamp,
) -> Result<View, Denial> {
    if caller.department == def.owner {
        return Ok(View::full(def));
    }
    let ours: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.dataset == def.name && g.department == caller.department)
        .collect();
    let active: Vec<&Grant> = ours.iter().copied().filter(|g| g.is_active(now)).collect();
    match def.sharing {
        SharingClass::None => return Err(Denial::Unknown(def.name.clone())),
        SharingClass::Conditional if active.is_empty() => {
            // Name the most recent grant's fate so the caller knows what to do.
            let why = match ours.iter().max_by_key(|g| g.id) {
                None => "it has none".to_string(),
                Some(g) => format!(
                    "its latest grant #{} is {}{}",
                    g.id,
                    g.status(now),
                    if g.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", g.reason)
                    }
                ),
            };
            return Err(Denial::GrantRequired {
                dataset: def.name.clone(),
                department: caller.department.clone(),
                why,
            });
        }
        SharingClass::Conditional | SharingClass::Unconditional => {}
    }
    let conditional = def.sharing == SharingClass::Conditional;
    let mut columns = Vec::new();
    for field in &def.fields {
        if conditional && !active.iter().any(|g| g.covers(&field.name)) {
            continue;
        }
        let raw = active.iter().any(|g| g.raw.contains(&field.name));
        columns.push(ViewColumn {
            name: field.name.clone(),
            mask: if raw { None } else { field.mask_kind() },
            domain: None,
        });
    }
    columns.push(ViewColumn {
        name: INGESTED_AT.to_string(),
        mask: None,
        domain: None,
    });
    Ok(View {
        dataset: def.name.clone(),
        columns,
        grants: active.iter().map(|g| g.id).collect(),
        purposes: active.iter().map(|g| g.purpose.clone()).collect(),
    })
}

/// Checks a grant request against the dataset it names; returns every problem.
pub fn check_request(def: &DatasetDef, request: &GrantRequest) -> Vec<String> {
    let mut problems = Vec::new();
    if request.purpose.trim().len() < 3 {
        problems.push("purpose: say what the data is for (the owner decides on it)".to_string());
    }
    if request.days == 0 || request.days > 3660 {
        problems.push("days: a grant lasts 1 to 3660 days".to_string());
    }
    for field in request.fields.iter().chain(&request.raw) {
        if def.field(field).is_none() {
            problems.push(format!("field '{field}': {} has no such field", def.name));
        }
    }
    for field in &request.raw {
        if def.field(field).is_some_and(|f| f.mask_kind().is_none()) {
            problems.push(format!(
                "field '{field}': only personal fields are masked; it needs no raw grant"
            ));
        }
        if !request.fields.is_empty() && !request.fields.contains(field) {
            problems.push(format!(
                "field '{field}': listed raw but not among the requested fields"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantState, Role};
    use citybrain_core::PrincipalName;

    fn def(sharing: SharingClass) -> DatasetDef {
        let mut d = DatasetDef::from_file_text(
            "d.toml",
            r#"
name = "transport.anpr"
owner = "transport"
[[fields]]
name = "ts"
type = "timestamp"
[[fields]]
name = "plate"
type = "string"
class = "personal"
mask = "plate"
[[fields]]
name = "speed"
type = "float"
"#,
        )
        .unwrap();
        d.sharing = sharing;
        d
    }

    fn caller(department: &str) -> Principal {
        Principal {
            name: PrincipalName::parse("someone").unwrap(),
            department: DepartmentId::parse(department).unwrap(),
            role: Role::Reader,
        }
    }

    fn grant(state: GrantState, fields: &[&str], raw: &[&str], expires: i64) -> Grant {
        Grant {
            id: GrantId(1),
            dataset: DatasetName::parse("transport.anpr").unwrap(),
            department: DepartmentId::parse("market").unwrap(),
            purpose: "study".into(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            raw: raw.iter().map(|s| s.to_string()).collect(),
            days: 1,
            state,
            reason: String::new(),
            requested_by: PrincipalName::parse("someone").unwrap(),
            requested_at: Timestamp(0),
            decided_by: None,
            decided_at: None,
            expires_at: Some(Timestamp(expires)),
        }
    }

    fn names(view: &View) -> Vec<(String, Option<MaskKind>)> {
        view.columns
            .iter()
            .map(|c| (c.name.clone(), c.mask))
            .collect()
    }

    #[test]
    fn the_owner_reads_everything_raw() {
        let view = decide(
            &def(SharingClass::None),
            &caller("transport"),
            &[],
            Timestamp(5),
        )
        .unwrap();
        assert!(!view.is_masked());
        assert_eq!(view.columns.len(), 4);
    }

    #[test]
    fn none_is_unknown_to_others_even_with_a_grant() {
        let g = grant(GrantState::Approved, &[], &["plate"], 10);
        let err = decide(
            &def(SharingClass::None),
            &caller("market"),
            &[g],
            Timestamp(5),
        );
        assert_eq!(
            err,
            Err(Denial::Unknown(
                DatasetName::parse("transport.anpr").unwrap()
            ))
        );
    }

    #[test]
    fn unconditional_masks_personal_fields_unless_granted_raw() {
        let d = def(SharingClass::Unconditional);
        let view = decide(&d, &caller("market"), &[], Timestamp(5)).unwrap();
        assert_eq!(names(&view)[1], ("plate".into(), Some(MaskKind::Plate)));
        let g = grant(GrantState::Approved, &[], &["plate"], 10);
        let view = decide(
            &d,
            &caller("market"),
            std::slice::from_ref(&g),
            Timestamp(5),
        )
        .unwrap();
        assert!(!view.is_masked());
        // Expired: masked again.
        let view = decide(&d, &caller("market"), &[g], Timestamp(10)).unwrap();
        assert!(view.is_masked());
    }

    #[test]
    fn conditional_needs_an_active_grant_and_shows_only_its_fields() {
        let d = def(SharingClass::Conditional);
        let err = decide(&d, &caller("market"), &[], Timestamp(5)).unwrap_err();
        assert!(err.to_string().contains("it has none"), "{err}");
        for (state, at, word) in [
            (GrantState::Requested, 5, "requested"),
            (GrantState::Refused, 5, "refused"),
            (GrantState::Revoked, 5, "revoked"),
            (GrantState::Approved, 10, "expired"),
        ] {
            let g = grant(state, &["ts", "plate"], &[], 10);
            let err = decide(&d, &caller("market"), &[g], Timestamp(at)).unwrap_err();
            assert!(err.to_string().contains(word), "{err}");
        }
        let g = grant(GrantState::Approved, &["ts", "plate"], &[], 10);
        let view = decide(&d, &caller("market"), &[g], Timestamp(5)).unwrap();
        assert_eq!(
            names(&view),
            vec![
                ("ts".into(), None),
                ("plate".into(), Some(MaskKind::Plate)),
                (INGESTED_AT.into(), None)
            ]
        );
        // Another department's grant does not count.
        let mut g = grant(GrantState::Approved, &[], &[], 10);
        g.department = DepartmentId::parse("health").unwrap();
        assert!(decide(&d, &caller("market"), &[g], Timestamp(5)).is_err());
    }

    #[test]
    fn requests_are_checked_against_the_definition() {
        let d = def(SharingClass::Conditional);
        let request = GrantRequest {
            dataset: d.name.clone(),
            purpose: "".into(),
            fields: vec!["ts".into(), "nope".into()],
            raw: vec!["speed".into(), "plate".into()],
            days: 0,
        };
        let problems = check_request(&d, &request);
        assert_eq!(problems.len(), 6, "{problems:?}");
    }
}
