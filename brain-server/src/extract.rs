//! Our extractors for request inputs, so that every rejection uses the [`ApiError`] envelope.
//! (The authenticating extractors live in [`crate::auth`].)

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Query<T>` whose rejection is a 400 `invalid_query` envelope. A query holding a NUL
/// (`%00`) is refused the same way: no stored text can contain one (Postgres cannot store it),
/// and passed on it would fail the query with a 500.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A URI cannot hold a bare NUL byte; percent-decoding `%00` is the only way to one.
        if parts
            .uri
            .query()
            .is_some_and(|q| q.to_ascii_lowercase().contains("%00"))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "the query string contains a NUL character (%00)",
            ));
        }
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// A JSON request body as `T`, with every rejection in the envelope: 415
/// `unsupported_media_type` for a body that is not `application/json`, 400 `malformed_json`
/// for one that is not JSON, 422 `invalid_body` for JSON that is not a `T` (a missing or
/// unknown field, a wrong type). An empty body reads as `{}` (so a body of optional fields
/// may be left out).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::bad_request("unreadable_body", format!("could not read the body: {e}"))
        })?;
        let text: &[u8] = if bytes.trim_ascii().is_empty() {
            b"{}"
        } else if json_type {
            &bytes
        } else {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".to_owned(),
            ));
        };
        serde_json::from_slice(text).map(ApiJson).map_err(|e| {
            if e.is_data() {
                ApiError::Unprocessable {
                    code: "invalid_body".to_owned(),
                    message: format!("the body is not a valid request: {e}"),
                }
            } else {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        })
    }
}

/// `Path<T>` whose rejection is a 400 `invalid_path` envelope (e.g. a dead-letter id that is
/// not a number).
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        Ok(ApiPath(value))
    }
}
