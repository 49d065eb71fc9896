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

/// Declares [`ErrorCode`]: each variant with its wire text and what it means.
macro_rules! error_codes {
    ($($variant:ident = $text:literal, $about:literal;)*) => {
        /// Every error code the API answers with: stable, for programs; the OpenAPI
        /// document lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $(#[doc = $about] $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            pub fn about(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $about,)*
                }
            }
        }
    };
}

error_codes! {
    BatchRejected = "batch_rejected", "Some records of a batch are invalid and on_error=reject: nothing stored; details list each problem";
    BatchTooLarge = "batch_too_large", "A batch decodes to more rows or bytes than the ingest limits";
    BodyTimeout = "body_timeout", "The request body came too slowly or took too long";
    BodyTooLarge = "body_too_large", "The request body is over the limit";
    BodyUnreadable = "body_unreadable", "The request body could not be read";
    BreakingSchemaChange = "breaking_schema_change", "The new definition would make stored data unreadable";
    CannotExplain = "cannot_explain", "The enterprise cannot be decided (not found, or its facts do not fit)";
    CockpitNotFound = "cockpit_not_found", "No such cockpit or panel, or one your department may not open (the two are not told apart)";
    Conflict = "conflict", "The change conflicts with the current state";
    DatasetExists = "dataset_exists", "A dataset of that name exists";
    DatasetNotFound = "dataset_not_found", "No such dataset, or one you may not see (the two are not told apart)";
    DatasetReadOnly = "dataset_read_only", "The dataset is written by the hub only (dead letters)";
    FormMisdefined = "form_misdefined", "A form template's field query does not run (the message names the template and the field)";
    Forbidden = "forbidden", "Your role or department may not do this";
    GrantRequired = "grant_required", "The dataset is shared with a grant your department lacks";
    Internal = "internal", "A fault on the server; the log says more";
    InvalidBody = "invalid_body", "The JSON body is malformed or misses a field";
    InvalidDatasetName = "invalid_dataset_name", "Not a namespace.table name";
    InvalidDefinition = "invalid_definition", "The dataset definition has problems; details list them";
    InvalidCockpit = "invalid_cockpit", "The cockpit definition has problems; details list them, each naming its panel";
    InvalidDepartment = "invalid_department", "Not a department id";
    InvalidExpiry = "invalid_expiry", "The token expiry is out of range";
    InvalidFormat = "invalid_format", "format must be json, csv, excel (CSV with a UTF-8 byte-order mark), xlsx (an Excel workbook), arrow or geojson";
    InvalidLocation = "invalid_location", "lat/lon out of range";
    InvalidMember = "invalid_member", "A linkage member names no pseudonymised column";
    InvalidOnError = "invalid_on_error", "on_error must be reject or skip";
    InvalidIdempotencyKey = "invalid_idempotency_key", "the Idempotency-Key header is 1 to 200 visible ASCII characters";
    InvalidOrder = "invalid_order", "A recognition order is malformed: its order id, patient id, test code or time";
    InvalidPath = "invalid_path", "A path parameter is malformed";
    InvalidPrincipal = "invalid_principal", "Not a principal name";
    InvalidQuery = "invalid_query", "A query parameter is malformed";
    InvalidRadius = "invalid_radius", "radius_m out of range";
    InvalidRequest = "invalid_request", "The request breaks a governance rule";
    InvalidRole = "invalid_role", "role must be reader, publisher or admin";
    InvalidRoute = "invalid_route", "The emergency route is not drivable";
    InvalidRun = "invalid_run", "The payout run name is malformed";
    InvalidSqlRequest = "invalid_sql_request", "The SQL request body is malformed";
    LogUnavailable = "log_unavailable", "The shared log (NATS JetStream) did not acknowledge: the call is not acknowledged (it may still be stored once the log is back)";
    MetadataUnavailable = "metadata_unavailable", "The metadata database (PostgreSQL: catalog, governance) is unreachable: nothing was done; call again once it is back";
    MissingOrInvalidToken = "missing_or_invalid_token", "No bearer token, or one that is unknown, expired or revoked";
    NameMismatch = "name_mismatch", "The name in the path and in the definition differ";
    NamespaceNotYours = "namespace_not_yours", "The namespace is reserved or another department owns it";
    NotFound = "not_found", "No such governance object";
    PanelMisdefined = "panel_misdefined", "The panel's query does not return the columns its kind draws";
    RunFailed = "run_failed", "The payout run could not decide or store";
    RunInProgress = "run_in_progress", "A payout run is in progress";
    SceneUnavailable = "scene_unavailable", "The scene is not running on this server (the message says why)";
    SqlInvalid = "sql_invalid", "The SQL does not parse or plan";
    SqlMemoryLimit = "sql_memory_limit", "The query needs more memory than the limit";
    SqlDepartmentMemory = "sql_department_memory", "The department's statements in flight together need more memory than its quota";
    SqlDepartmentBusy = "sql_department_busy", "The department already has as many statements running or waiting as its quota allows";
    RateLimited = "rate_limited", "The principal sent more requests than its rate allows; retry after the time in Retry-After";
    TooManyStreams = "too_many_streams", "As many event streams are open as the server allows";
    SqlNotReadOnly = "sql_not_read_only", "Only SELECT (and WITH, EXPLAIN) may run";
    SqlResultTooLarge = "sql_result_too_large", "The result is over the row or byte limit";
    SqlTimeout = "sql_timeout", "The query ran past the time limit";
    SqlTooComplex = "sql_too_complex", "The query has too many operators or is nested too deep";
    SqlValueTooLarge = "sql_value_too_large", "A function would build a value over the limit";
    TaskMoveRefused = "task_move_refused", "The task cannot go to that state from the one it is in (the message says where it can go)";
    TaskNotFound = "task_not_found", "No such task";
    UnknownDecision = "unknown_decision", "The decision in the path is not one the route takes";
    UnknownDepartment = "unknown_department", "No such department";
    UnreadableBody = "unreadable_body", "The batch body does not decode in its format";
    UnknownMapping = "unknown_mapping", "The dataset declares no feed mapping of that name, or it cannot read this format";
    UnsupportedContentEncoding = "unsupported_content_encoding", "Compressed bodies are refused";
    UnsupportedContentType = "unsupported_content_type", "Content-Type is not NDJSON, CSV or Parquet";
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    kind: &'static str,
    message: String,
    details: Option<serde_json::Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl ApiError {
    /// A 400 naming what was wrong.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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

    /// The error with `details` (each problem, for a client to list).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the error carries beyond its message (a refused batch's problems).
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.details.as_ref()
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MissingOrInvalidToken,
            "send 'Authorization: Bearer TOKEN' with a valid, unexpired, unrevoked token; the hub admin's is in DATA/admin.token",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
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
            ErrorCode::Internal,
            "internal error; see the server log",
        )
    }
}

impl From<HubError> for ApiError {
    fn from(error: HubError) -> Self {
        let message = error.to_string();
        match error {
            HubError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, ErrorCode::DatasetNotFound, message)
            }
            HubError::AlreadyExists(_) => {
                Self::new(StatusCode::CONFLICT, ErrorCode::DatasetExists, message)
            }
            HubError::InvalidDefinition(problems) => Self {
                details: Some(json!(problems)),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidDefinition,
                    message,
                )
            },
            HubError::BreakingChange(problems) => Self {
                details: Some(json!(problems)),
                ..Self::new(
                    StatusCode::CONFLICT,
                    ErrorCode::BreakingSchemaChange,
                    message,
                )
            },
            HubError::ReadOnly(_) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::DatasetReadOnly, message)
            }
            HubError::BatchRejected { rejected } => Self {
                details: Some(json!(rejected)),
                ..Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::BatchRejected,
                    message,
                )
            },
            HubError::Decode(
                citybrain_hub::DecodeError::TooManyRows { .. }
                | citybrain_hub::DecodeError::TooManyBytes { .. },
            ) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BatchTooLarge,
                message,
            ),
            HubError::Decode(citybrain_hub::DecodeError::Mapping(_)) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::UnknownMapping, message)
            }
            HubError::Decode(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::UnreadableBody, message)
            }
            HubError::LogUnavailable { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::LogUnavailable,
                message,
            ),
            HubError::Catalog { ref source, .. } if source.is_unavailable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::MetadataUnavailable,
                message,
            ),
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
                Self::new(StatusCode::FORBIDDEN, ErrorCode::SqlNotReadOnly, message)
            }
            SqlError::Denied(_) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::GrantRequired, message)
            }
            SqlError::Invalid(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::SqlInvalid, message)
            }
            SqlError::Timeout(_) => {
                Self::new(StatusCode::REQUEST_TIMEOUT, ErrorCode::SqlTimeout, message)
            }
            SqlError::DepartmentBusy { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::SqlDepartmentBusy,
                message,
            ),
            SqlError::MemoryLimit { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::SqlMemoryLimit,
                message,
            ),
            SqlError::DepartmentMemory { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::SqlDepartmentMemory,
                message,
            ),
            SqlError::TooComplex(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::SqlTooComplex, message)
            }
            SqlError::ValueTooLarge(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::SqlValueTooLarge,
                message,
            ),
            SqlError::ResultTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::SqlResultTooLarge,
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
            GovError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
            }
            // Word for word what a dataset that does not exist gets: a hidden dataset must
            // not be told apart from a missing one.
            GovError::Denied(Denial::Unknown(name)) => HubError::NotFound(name).into(),
            GovError::Denied(Denial::GrantRequired { .. }) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::GrantRequired, message)
            }
            GovError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
            GovError::Invalid(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
            }
            GovError::Conflict(_) => Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message),
            GovError::Storage { ref source, .. } if source.is_unavailable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::MetadataUnavailable,
                message,
            ),
            GovError::Storage { .. }
            | GovError::Io { .. }
            | GovError::Audit(_)
            | GovError::SecretMissing(_) => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"code": self.code.as_str(), "type": self.kind, "message": self.message});
        if let Some(details) = self.details {
            body["details"] = details;
        }
        (self.status, Json(body)).into_response()
    }
}
