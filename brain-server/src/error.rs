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
    /// 409: the request conflicts with the resource's state (`code` names how, e.g.
    /// `customer_exists`).
    #[error("{message}")]
    Conflict {
        /// Snake-case code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// 422: the body is well-formed JSON but not a valid request, or an element is refused by
    /// validation (`code` is the validation's code, e.g. `unknown_event_type`).
    #[error("{message}")]
    Unprocessable {
        /// Snake-case code.
        code: String,
        /// For people.
        message: String,
    },
    /// 408: the body did not arrive within the body read timeout (seconds).
    #[error("the body was not received within {0} s")]
    BodyTimeout(u64),
    /// 413: body or batch too large (`code` names which).
    #[error("{message}")]
    TooLarge {
        /// `body_too_large` or `too_many_events`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// 414: the request target (path and query) is longer than the server answers.
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    /// 431: the request's header block is larger than the server answers.
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
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
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code of this error.
    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::TooLarge { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
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
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be arriving: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
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
            DbError::Connect(_) | DbError::ConnectTimeout(_) => ApiError::DatabaseUnavailable(e),
            DbError::Query(q) if is_unavailable(q) => ApiError::DatabaseUnavailable(e),
            _ => ApiError::Internal(e.into()),
        }
    }
}

/// Whether `e` says the database cannot take the work now (a retry later may succeed), as
/// opposed to a fault in the statement or the data.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// A Postgres SQLSTATE (five characters) or a SQLite extended result code (a number) that
/// means "unavailable": Postgres `53300` too many connections, `57P01`–`57P03` shutting down
/// or starting, `08xxx` connection exceptions, `40P01`/`40001` a transaction conflict that
/// outlasted the writer's retries (nothing was committed); SQLite `SQLITE_BUSY` (5) or
/// `SQLITE_LOCKED` (6) and their extended codes, which reach us only after the 5 s busy
/// timeout; and storage that cannot take writes ([`storage_code`]).
fn unavailable_code(code: &str) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    if storage_code(code) {
        return true;
    }
    if code.len() == 5 {
        // A SQLSTATE: SQLite extended result codes have at most four digits.
        return matches!(
            code,
            "53300" | "57P01" | "57P02" | "57P03" | "40P01" | "40001"
        ) || code.starts_with("08");
    }
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

/// Whether `e` says the storage cannot take writes now: the disk is full, the database is
/// read-only, or an I/O error (see [`storage_code`]). The transaction committed nothing; a
/// retry after the operator freed space (or remounted) succeeds.
pub(crate) fn is_storage_failure(e: &DbError) -> bool {
    match e {
        DbError::Query(sqlx::Error::Database(db)) => db.code().is_some_and(|c| storage_code(&c)),
        _ => false,
    }
}

/// A SQLSTATE or SQLite extended result code of storage that cannot take writes: Postgres
/// `53100` disk full, `25006` read-only transaction (a standby, `default_transaction_read_only`),
/// `58030` I/O error; SQLite `SQLITE_READONLY` (8), `SQLITE_IOERR` (10), `SQLITE_FULL` (13)
/// and their extended codes (e.g. 266 `SQLITE_IOERR_READ`, 1032 `SQLITE_READONLY_DBMOVED`).
fn storage_code(code: &str) -> bool {
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    if code.len() == 5 {
        return matches!(code, "53100" | "25006" | "58030");
    }
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL))
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;

    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use sqlx::ConnectOptions;
    use sqlx::error::{DatabaseError, ErrorKind};

    use super::ApiError;
    use crate::db::DbError;

    /// A database error with a given code, as a driver reports it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl DatabaseError for Coded {
        fn message(&self) -> &str {
            "database error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn mapped(e: sqlx::Error) -> ApiError {
        ApiError::from(DbError::Query(e))
    }

    fn coded(code: &'static str) -> ApiError {
        mapped(sqlx::Error::Database(Box::new(Coded(code))))
    }

    fn assert_unavailable(e: ApiError, what: &str) {
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert_eq!(e.code(), "database_unavailable", "{what}");
        let resp = e.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5", "{what}");
    }

    #[test]
    fn unavailability_maps_to_503_with_retry_after() {
        // Postgres: too many connections, shutting down / starting, connection exceptions.
        for code in [
            "53300", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08P01", "40P01",
            "40001",
        ] {
            assert_unavailable(coded(code), code);
        }
        // SQLite: BUSY, LOCKED and their extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT,
        // BUSY_TIMEOUT, LOCKED_SHAREDCACHE).
        for code in ["5", "6", "261", "517", "773", "262"] {
            assert_unavailable(coded(code), code);
        }
        // Storage that cannot take writes: Postgres disk full, read-only transaction, I/O
        // error; SQLite READONLY, IOERR, FULL and extended codes (READONLY_DBMOVED,
        // IOERR_READ, IOERR_WRITE, IOERR_FSYNC).
        for code in [
            "53100", "25006", "58030", "8", "10", "13", "1032", "266", "778", "1034",
        ] {
            assert_unavailable(coded(code), code);
            assert!(
                super::is_storage_failure(&DbError::Query(sqlx::Error::Database(Box::new(Coded(
                    code
                ))))),
                "{code}"
            );
        }
        assert_unavailable(mapped(sqlx::Error::PoolTimedOut), "pool timeout");
        assert_unavailable(mapped(sqlx::Error::PoolClosed), "pool closed");
        assert_unavailable(
            mapped(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            "io",
        );
    }

    #[test]
    fn faults_in_the_statement_or_data_stay_500() {
        // Postgres: unique violation, syntax error, raised exception. SQLite: constraint
        // (19, 2067), generic error (1), corrupt (11).
        for code in ["23505", "42601", "P0001", "1", "19", "2067", "11"] {
            let e = coded(code);
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR, "{code}");
            assert_eq!(e.code(), "internal", "{code}");
        }
        assert_eq!(
            mapped(sqlx::Error::RowNotFound).status(),
            StatusCode::NOT_FOUND
        );
    }

    /// A real SQLITE_BUSY: another connection holds the write lock and this one does not wait.
    #[tokio::test]
    async fn a_real_sqlite_busy_is_503() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = opts.connect().await.expect("connect");
        let mut other = opts.connect().await.expect("connect");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("lock");
        let err = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("busy");
        assert_unavailable(mapped(err), "real SQLITE_BUSY");
    }
}
