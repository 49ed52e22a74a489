//! Our extractors for request inputs, so that every rejection uses the [`ApiError`] envelope.
//! (The authenticating extractors live in [`crate::auth`].)

use axum::extract::{FromRequestParts, Query};
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
