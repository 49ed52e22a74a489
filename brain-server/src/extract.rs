//! Our extractors for request inputs, so that every rejection uses the [`ApiError`] envelope.
//! (The authenticating extractors live in [`crate::auth`].)

use axum::extract::{FromRequestParts, Query};

use crate::error::ApiError;

/// `Query<T>` whose rejection is a 400 `invalid_query` envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);
