//! Our extractors, so that every rejection uses the [`ApiError`] envelope: [`ApiQuery`],
//! the customer key ([`CustomerKey`]) and the admin token ([`Admin`]).

use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use shared_proto::ApiKey;

use crate::error::ApiError;
use crate::state::AppState;

/// `Query<T>` whose rejection is a 400 `invalid_query` envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// The bearer token of the `Authorization` header, if any.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request authenticated by a live customer API key, within the key's rate limit.
#[derive(Debug, Clone)]
pub(crate) struct CustomerKey {
    /// The key's id.
    pub(crate) key_id: String,
    /// The customer the key authenticates (never taken from the body).
    pub(crate) customer_id: String,
}

impl FromRequestParts<AppState> for CustomerKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer API key"))?;
        let key = ApiKey::parse(token).map_err(|_| ApiError::Unauthorized("malformed API key"))?;
        let found = state
            .lookup_key(&key.hash())
            .await?
            .ok_or(ApiError::Unauthorized("unknown or revoked API key"))?;
        state
            .check_rate(&found.key_id)
            .map_err(ApiError::RateLimited)?;
        Ok(CustomerKey {
            key_id: found.key_id,
            customer_id: found.customer_id,
        })
    }
}

/// A request carrying the admin token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            Some(token) if state.is_admin_token(token) => Ok(Admin),
            Some(_) => Err(ApiError::Unauthorized("wrong admin token")),
            None => Err(ApiError::Unauthorized("missing bearer admin token")),
        }
    }
}
