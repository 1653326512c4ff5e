//! API errors: every 4xx names the offending field (rule 4 of the project, DESIGN.md inv. 6).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::CoreError;
use crate::store::{ApplyError, StoreError};

/// An error answer: status, a stable code, the field at fault, and a sentence for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code, e.g. `invalid_field`, `not_found`, `conflict`.
    pub code: &'static str,
    /// The field (JSON path, path parameter or header) at fault.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// 422: a field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            field: field.into(),
            message: message.into(),
        }
    }
    /// 400: the body is not JSON at all.
    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "malformed_body",
            field: "body".into(),
            message: message.into(),
        }
    }
    /// 404.
    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: field.into(),
            message: message.into(),
        }
    }
    /// 409.
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            field: field.into(),
            message: message.into(),
        }
    }
    /// 500: the store failed; the message is logged, the client gets a generic text.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(error = %message, "internal error answering an API request");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            field: String::new(),
            message: "internal error; the daemon's log has the details".into(),
        }
    }

    /// Maps a refused event to an answer; `field` names what the path or body identified.
    pub fn from_apply(e: ApplyError, field: &str) -> Self {
        match e {
            ApplyError::Core(c) => Self::from_core(c, field),
            ApplyError::Store(s) => Self::from_store(s),
        }
    }

    /// Maps a core refusal (the mapping lives in src/operations.rs, shared with the web page).
    pub fn from_core(e: CoreError, field: &str) -> Self {
        crate::operations::OpError::from_core(e, field).into()
    }

    /// Maps a store failure.
    pub fn from_store(e: StoreError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<crate::operations::OpError> for ApiError {
    fn from(e: crate::operations::OpError) -> Self {
        use crate::operations::OpErrorKind;
        match e.kind {
            OpErrorKind::Invalid => Self::invalid(e.field, e.message),
            OpErrorKind::NotFound => Self::not_found(e.field, e.message),
            OpErrorKind::Conflict => Self::conflict(e.field, e.message),
            OpErrorKind::Internal => Self::internal(e.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "field": self.field, "message": self.message }
        });
        let mut resp = (self.status, Json(body)).into_response();
        // An error may be answered before the request body was read; closing the connection
        // (and saying so, RFC 9112 §9.6) keeps a client from writing into a dead keep-alive.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"regmail\""),
            );
        }
        resp
    }
}
