//! [`ApiError`]: the one error type handlers return, rendered as
//! `{"error":{"code":"…","message":"…"}}` with the right status and headers.
//!
//! 4xx bodies say what the client did wrong; 5xx bodies never carry internal error text (the
//! cause chain goes to the log at `error!`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared_proto::ErrorBody;

use crate::db::DbError;

/// Seconds a client should wait after a 503 for an unavailable database.
const DB_RETRY_AFTER_S: u64 = 5;
/// Seconds a client should wait after a 503 for a full ingest queue.
const OVERLOADED_RETRY_AFTER_S: u64 = 1;

/// Everything a handler can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (`code` names how).
    #[error("{message}")]
    BadRequest {
        /// Snake-case code, e.g. `malformed_json`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// 401: missing, malformed, unknown or revoked credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 413: body or batch too large (`code` names which).
    #[error("{message}")]
    TooLarge {
        /// `body_too_large` or `too_many_events`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// 415: not `application/json`, or an unsupported `Content-Encoding`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the key's rate limit is exhausted; retry after this many seconds.
    #[error("rate limit exceeded; retry after {0} s")]
    RateLimited(u64),
    /// 503: the ingest queue is full.
    #[error("the server is overloaded")]
    Overloaded,
    /// 503: the database cannot be reached.
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] DbError),
    /// 500: anything else.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::TooLarge { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Overloaded => "overloaded",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A 400 with `code` and `message`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(s) => Some(*s),
            ApiError::Overloaded => Some(OVERLOADED_RETRY_AFTER_S),
            ApiError::DatabaseUnavailable(_) => Some(DB_RETRY_AFTER_S),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %error_chain(&self), "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        // 5xx: a fixed sentence per code, never the cause's text.
        let message = if status.is_server_error() {
            match &self {
                ApiError::Overloaded => "the server is overloaded; retry later".to_owned(),
                ApiError::DatabaseUnavailable(_) => {
                    "the database is unavailable; retry later".to_owned()
                }
                _ => "internal error".to_owned(),
            }
        } else {
            self.to_string()
        };
        let mut resp = (status, Json(ErrorBody::new(self.code(), message))).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The error and its sources, joined with `: ` for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match &e {
            DbError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            DbError::Query(sqlx::Error::RowNotFound) => ApiError::NotFound("not found".to_owned()),
            DbError::Connect(_)
            | DbError::Query(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => ApiError::DatabaseUnavailable(e),
            _ => ApiError::Internal(e.into()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}
