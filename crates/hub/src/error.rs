//! The hub's one error type, split by whose fault it is.

use citybrain_core::DatasetName;

use crate::{DecodeError, RejectionReport, SchemaProblem};

/// At most this many problems are listed in a rejection; the count says how many in all.
pub const MAX_LISTED_PROBLEMS: usize = 1_000;

/// Everything that can go wrong in the hub, split by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    // The caller's fault (4xx).
    #[error(
        "dataset '{0}' does not exist; list datasets with GET /api/v1/datasets or `citybrain datasets list`"
    )]
    NotFound(DatasetName),
    #[error("dataset '{0}' already exists; change its schema with PUT /api/v1/datasets/{0}")]
    AlreadyExists(DatasetName),
    #[error("the dataset definition is invalid: {}", join(.0))]
    InvalidDefinition(Vec<SchemaProblem>),
    #[error("the schema change would break stored data: {}", join(.0))]
    BreakingChange(Vec<SchemaProblem>),
    #[error("dataset '{0}' is derived by the hub and cannot be written directly")]
    ReadOnly(DatasetName),
    #[error("{} of {} records are invalid, so none were stored (send ?on_error=skip to store the valid ones)", .rejected.rejected, .rejected.total)]
    BatchRejected { rejected: RejectionReport },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    // The environment's fault (disk, database).
    #[error("storage failed while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The shared log (NATS JetStream) did not answer. For an append, the call is not
    /// acknowledged, though a frame the client had sent may still be stored when the log is
    /// back (the context says so).
    #[error("the shared log ({log}) is unavailable while {context}: {source}")]
    LogUnavailable {
        log: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the catalog failed while {context}: {source}")]
    Catalog {
        context: &'static str,
        #[source]
        source: citybrain_metadb::DbError,
    },
    // A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(problems: &[SchemaProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
