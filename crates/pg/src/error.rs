//! citybrain's errors as PostgreSQL errors: the message a person reads and the SQLSTATE a
//! client's code branches on.

use citybrain_sql::SqlError;
use pgwire::error::{ErrorInfo, PgWireError};

/// An error for the client, with its SQLSTATE.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// The SQLSTATE of a refused or failed statement.
pub fn sqlstate(error: &SqlError) -> &'static str {
    match error {
        SqlError::Denied(_) => "42501",
        SqlError::NotReadOnly(_) => "25006",
        SqlError::Invalid(m) if m.contains("not found") && m.contains("able") => "42P01",
        SqlError::Invalid(m) if m.contains("No field named") || m.contains("column") => "42703",
        SqlError::Invalid(m) if m.contains("parameter") || m.contains("Placeholder") => "42P18",
        SqlError::Invalid(_) => "42601",
        SqlError::Timeout(_) => "57014",
        SqlError::DepartmentBusy { .. } => "53300",
        SqlError::MemoryLimit { .. } | SqlError::DepartmentMemory { .. } => "53200",
        SqlError::TooComplex(_) => "54001",
        SqlError::ValueTooLarge(_) | SqlError::ResultTooLarge { .. } => "54000",
        SqlError::Execution(_) => "XX000",
    }
}

/// When governance cannot be reached (a cluster's PostgreSQL is down or restarting), the
/// client is told so, with the SQLSTATE drivers retry on, rather than that its token is
/// wrong. `severity`: FATAL at login, ERROR for a statement.
pub fn metadata_unavailable(
    error: &citybrain_gov::GovError,
    severity: &str,
) -> Option<PgWireError> {
    match error {
        citybrain_gov::GovError::Storage { source, .. } if source.is_unavailable() => {
            let mut info = ErrorInfo::new(
                severity.to_string(),
                "57P03".to_string(),
                format!("citybrain cannot check the token now: {error}"),
            );
            info.hint = Some("try again once the metadata database is back".to_string());
            Some(PgWireError::UserError(Box::new(info)))
        }
        _ => None,
    }
}

pub fn sql_error(error: SqlError) -> PgWireError {
    user_error(sqlstate(&error), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_sqlstate() {
        assert_eq!(sqlstate(&SqlError::Denied("no grant".into())), "42501");
        assert_eq!(sqlstate(&SqlError::NotReadOnly("insert".into())), "25006");
        assert_eq!(
            sqlstate(&SqlError::Invalid(
                "Error during planning: table 'datafusion.traffic.nope' not found".into()
            )),
            "42P01"
        );
    }
}
