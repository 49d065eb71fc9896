//! The one table of API errors: code, type, HTTP status. JSON errors are
//! `{code, type, message}` (plus `problems` for refused batches); internals are logged,
//! never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_gov::{Denial, GovError};
use citybrain_hub::HubError;
use citybrain_sql::SqlError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    kind: &'static str,
    message: String,
    details: Option<serde_json::Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ApiError {
    /// A 400 naming what was wrong.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let kind = if status == StatusCode::SERVICE_UNAVAILABLE {
            "unavailable"
        } else if status.is_server_error() {
            "internal"
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            "auth"
        } else {
            "invalid_request"
        };
        Self {
            status,
            code,
            kind,
            message: message.into(),
            details: None,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_or_invalid_token",
            "send 'Authorization: Bearer TOKEN' with a valid, unexpired, unrevoked token; the hub admin's is in DATA/admin.token",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body exceeds the limit of {limit} bytes; split it into smaller batches"
            ),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(message = "Internal error.", error = %message);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> Self {
        let message = error.to_string();
        match error {
            HubError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "dataset_not_found", message),
            HubError::AlreadyExists(_) => {
                Self::new(StatusCode::CONFLICT, "dataset_exists", message)
            }
            HubError::InvalidDefinition(problems) => Self {
                details: Some(json!(problems)),
                ..Self::new(StatusCode::BAD_REQUEST, "invalid_definition", message)
            },
            HubError::BreakingChange(problems) => Self {
                details: Some(json!(problems)),
                ..Self::new(StatusCode::CONFLICT, "breaking_schema_change", message)
            },
            HubError::ReadOnly(_) => Self::new(StatusCode::FORBIDDEN, "dataset_read_only", message),
            HubError::BatchRejected { rejected } => Self {
                details: Some(json!(rejected)),
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "batch_rejected", message)
            },
            HubError::Decode(
                citybrain_hub::DecodeError::TooManyRows { .. }
                | citybrain_hub::DecodeError::TooManyBytes { .. },
            ) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", message),
            HubError::Decode(_) => Self::new(StatusCode::BAD_REQUEST, "unreadable_body", message),
            HubError::Io { .. } | HubError::Catalog { .. } | HubError::Internal(_) => {
                Self::internal(message)
            }
        }
    }
}

impl From<SqlError> for ApiError {
    fn from(error: SqlError) -> Self {
        let message = error.to_string();
        match error {
            SqlError::NotReadOnly(_) => {
                Self::new(StatusCode::FORBIDDEN, "sql_not_read_only", message)
            }
            SqlError::Denied(_) => Self::new(StatusCode::FORBIDDEN, "grant_required", message),
            SqlError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "sql_invalid", message),
            SqlError::Timeout(_) => Self::new(StatusCode::REQUEST_TIMEOUT, "sql_timeout", message),
            SqlError::MemoryLimit { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "sql_memory_limit",
                message,
            ),
            SqlError::TooComplex(_) => {
                Self::new(StatusCode::BAD_REQUEST, "sql_too_complex", message)
            }
            SqlError::ValueTooLarge(_) => {
                Self::new(StatusCode::BAD_REQUEST, "sql_value_too_large", message)
            }
            SqlError::ResultTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "sql_result_too_large",
                message,
            ),
            SqlError::Execution(_) => Self::internal(message),
        }
    }
}

impl From<GovError> for ApiError {
    fn from(error: GovError) -> Self {
        let message = error.to_string();
        match error {
            GovError::Unauthorized => Self::unauthorized(),
            GovError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            // Word for word what a dataset that does not exist gets: a hidden dataset must
            // not be told apart from a missing one.
            GovError::Denied(Denial::Unknown(name)) => HubError::NotFound(name).into(),
            GovError::Denied(Denial::GrantRequired { .. }) => {
                Self::new(StatusCode::FORBIDDEN, "grant_required", message)
            }
            GovError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            GovError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", message),
            GovError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            GovError::Storage { .. }
            | GovError::Io { .. }
            | GovError::Audit(_)
            | GovError::SecretMissing(_) => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "type": self.kind, "message": self.message});
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (self.status, Json(body)).into_response()
    }
}
