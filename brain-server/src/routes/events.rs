//! `POST /v1/events`: authenticate, read the body (counted into the in-flight budget),
//! validate every element, hand the request to the group-commit writer ([`crate::ingest`]),
//! answer after the commit.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shared_proto::{BatchResponse, EventResult, EventStatus};

use crate::auth::CustomerKey;
use crate::error::ApiError;
use crate::ingest::validate::validate;
use crate::ingest::writer::SubmitError;
use crate::ingest::{WriteJob, body};
use crate::state::AppState;

/// Ingests one envelope or an array of at most 500.
#[tracing::instrument(skip_all, fields(customer_id = %key.customer_id, key_id = %key.key_id))]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    key: CustomerKey,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut in_flight = state.in_flight();
    let text = body::read(
        &headers,
        body,
        state.limits().body_read_timeout,
        &mut in_flight,
    )
    .await?;
    let elements = body::split(&text)?;
    let single = elements.single;
    let items = elements
        .items
        .iter()
        .map(|el| validate(&text, el))
        .collect();
    let job = WriteJob {
        customer_id: key.customer_id,
        items,
        body: text,
        in_flight,
    };
    let reply = state.submit(job).map_err(|e| match e {
        SubmitError::Full | SubmitError::Closed => ApiError::Overloaded,
    })?;
    let outcomes = reply
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(ApiError::from)?;
    let response =
        BatchResponse::from_results(outcomes.into_iter().map(EventResult::from).collect());
    let status = if single
        && response
            .results
            .first()
            .is_some_and(|r| r.status == EventStatus::Rejected)
    {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)).into_response())
}
