//! `/admin/*` (admin bearer): customers and their keys, dead letters and their requeue, the
//! audit log, the export of stored events (streamed: [`crate::export`]). Bodies are the types of [`shared_proto::admin`].
//!
//! Every change goes through the same [`Store`](crate::db::Store) functions as the operator
//! commands, and writes its audit entry (actor [`ACTOR`]) in the transaction of the change.
//! A requeue ([`crate::requeue`]) stores the event through the ingest writer, like
//! `POST /v1/events` (so dedupe, agent ownership and rollups apply), then marks the dead letter
//! and writes the audit entry in a second transaction: the writer's transaction belongs to the
//! group it commits.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shared_proto::KeyEnv;
use shared_proto::admin::{
    AuditPage, AuditQuery, CreateCustomerRequest, CreatedKey, CustomerId, CustomerList,
    DEFAULT_PAGE_LIMIT, DeadLetterPage, DeadLetterQuery, ExportQuery, KeyList, KeySummary,
    MAX_PAGE_LIMIT, RequeueResponse, RotateKeyRequest, check_customer_name, check_key_label,
};

use crate::auth::Admin;
use crate::db::{DeadLetterFilter, ExportFilter};
use crate::error::ApiError;
use crate::export;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ingest::writer::SubmitError;
use crate::requeue::{RequeueError, requeue};
use crate::state::AppState;

/// Who the audit log names for actions taken through the HTTP API.
pub(crate) const ACTOR: &str = "admin-token";

/// The key environment of a new customer's first key when the request names none.
const DEFAULT_KEY_ENV: &str = "dev";

/// The `/admin` router.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", post(post_customer).get(get_customers))
        .route(
            "/customers/{customer_id}/keys",
            post(post_customer_key).get(get_customer_keys),
        )
        .route("/keys/{key_id}/revoke", post(post_key_revoke))
        .route("/dead-letters", get(get_dead_letters))
        .route("/dead-letters/{id}/requeue", post(post_dead_letter_requeue))
        .route("/audit", get(get_audit))
        .route("/export", get(get_export))
}

/// A 422 with `code` for a field of a well-formed body.
fn unprocessable(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// The label of a request, checked.
fn checked_label(label: Option<&str>) -> Result<Option<&str>, ApiError> {
    if let Some(l) = label {
        check_key_label(l).map_err(|e| unprocessable("invalid_label", e.to_string()))?;
    }
    Ok(label)
}

/// The key environment of a request, checked.
fn checked_env(env: Option<&str>) -> Result<Option<KeyEnv>, ApiError> {
    env.map(|e| {
        KeyEnv::parse(e).map_err(|err| unprocessable("invalid_env", format!("env `{e}`: {err}")))
    })
    .transpose()
}

/// `POST /admin/customers`: a new customer and its first key (201, the plaintext this once);
/// 409 `customer_exists` when the id is taken.
#[tracing::instrument(skip_all, fields(customer_id = %req.customer_id))]
async fn post_customer(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(req): ApiJson<CreateCustomerRequest>,
) -> Result<Response, ApiError> {
    let id = CustomerId::parse(&req.customer_id)
        .map_err(|e| unprocessable("invalid_customer_id", e.to_string()))?;
    check_customer_name(&req.name).map_err(|e| unprocessable("invalid_name", e.to_string()))?;
    let label = checked_label(req.label.as_deref())?;
    let env = checked_env(req.env.as_deref())?
        .map_or_else(|| KeyEnv::parse(DEFAULT_KEY_ENV), Ok)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let minted = state
        .store()
        .create_customer(id.as_str(), &req.name, label, &env, ACTOR)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            code: "customer_exists",
            message: format!(
                "customer `{id}` exists; POST /admin/customers/{id}/keys mints another key"
            ),
        })?;
    Ok((StatusCode::CREATED, Json(CreatedKey::from(minted))).into_response())
}

/// `GET /admin/customers`: every customer with its key counts.
async fn get_customers(State(state): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let customers = state.store().list_customers(None).await?;
    let customers = customers.into_iter().map(Into::into).collect();
    Ok(Json(CustomerList { customers }).into_response())
}

/// `POST /admin/customers/{id}/keys`: a new key beside the live ones (201); 404 for an
/// unknown customer.
#[tracing::instrument(skip_all, fields(customer_id = %customer_id))]
async fn post_customer_key(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(customer_id): ApiPath<String>,
    ApiJson(req): ApiJson<RotateKeyRequest>,
) -> Result<Response, ApiError> {
    let label = checked_label(req.label.as_deref())?;
    let env = checked_env(req.env.as_deref())?;
    let minted = state
        .store()
        .rotate_key(&customer_id, label, env.as_ref(), ACTOR)
        .await?
        .ok_or_else(|| unknown_customer(&customer_id))?;
    Ok((StatusCode::CREATED, Json(CreatedKey::from(minted))).into_response())
}

/// `GET /admin/customers/{id}/keys`: the customer's keys, never their plaintext; 404 for an
/// unknown customer.
async fn get_customer_keys(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(customer_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let store = state.store();
    if store.customer(&customer_id).await?.is_none() {
        return Err(unknown_customer(&customer_id));
    }
    let keys = store.list_keys(Some(&customer_id)).await?;
    Ok(Json(KeyList {
        customer_id,
        keys: keys.into_iter().map(Into::into).collect(),
    })
    .into_response())
}

/// `POST /admin/keys/{key_id}/revoke`: revokes the key and answers its row (200); revoking a
/// revoked key answers the same row with its first `revoked_at`; 404 for an unknown key.
#[tracing::instrument(skip_all, fields(key_id = %key_id))]
async fn post_key_revoke(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let key = state.store().revoke_key(&key_id, ACTOR).await?;
    Ok(Json(KeySummary::from(key)).into_response())
}

/// `GET /admin/dead-letters`: one page, newest first, filtered by customer, reason and
/// received time.
async fn get_dead_letters(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let filter = DeadLetterFilter {
        customer_id: q.customer_id.filter(|c| !c.is_empty()),
        reason: q.reason.filter(|r| !r.is_empty()),
        since: q.since,
        until: q.until,
        before_id: page_cursor(q.cursor.as_deref())?,
        limit: i64::from(limit) + 1,
    };
    let mut rows = state.store().list_dead_letters(&filter).await?;
    let next_cursor = next_cursor(&mut rows, limit, |d| d.id);
    Ok(Json(DeadLetterPage {
        dead_letters: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response())
}

/// `POST /admin/dead-letters/{id}/requeue`: validates the stored element with today's rules and
/// ingests it as its customer through the ingest writer. 200 `accepted` (stored now) or
/// `duplicate` (already stored: a second requeue changes nothing); 422 with the validation's
/// code when it is still refused (it stays a dead letter); 409 `dead_letter_truncated` when
/// only a prefix of the element was kept; 404 for an unknown id.
#[tracing::instrument(skip_all, fields(dead_letter_id = id))]
async fn post_dead_letter_requeue(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let writer = state.clone();
    let write = |job| async move {
        let reply = writer.submit(job).map_err(|e| match e {
            SubmitError::Full | SubmitError::Closed => RequeueError::Overloaded,
        })?;
        reply.await.map_err(|_| RequeueError::Overloaded)
    };
    let done = requeue(state.store(), id, ACTOR, state.in_flight(), write)
        .await
        .map_err(|e| match e {
            RequeueError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RequeueError::Truncated { .. } => ApiError::Conflict {
                code: "dead_letter_truncated",
                message: e.to_string(),
            },
            RequeueError::Refused { code, message } => unprocessable(&code, message),
            RequeueError::Overloaded => ApiError::Overloaded,
            RequeueError::Db(e) => e.into(),
        })?;
    Ok(Json(RequeueResponse {
        dead_letter_id: id,
        customer_id: done.dead_letter.customer_id,
        event_id: done.event_id,
        status: done.status,
        requeued_at: done.dead_letter.requeued_at.unwrap_or_default(),
    })
    .into_response())
}

/// `GET /admin/audit`: one page of the audit log, newest first.
async fn get_audit(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit)?;
    let before = page_cursor(q.cursor.as_deref())?;
    let mut rows = state
        .store()
        .audit_page(i64::from(limit) + 1, before)
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |a| a.id);
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response())
}

/// `GET /admin/export`: every stored event matching the filters, in `(ts, customer_id,
/// event_id)` order, streamed as CSV or JSONL (an attachment); 400 `invalid_query` for a
/// missing or unknown format, an unknown event type, a bad customer id or time, or `since`
/// not before `until`. The `export` audit entry (the filters) is written before the first
/// byte.
#[tracing::instrument(skip_all)]
async fn get_export(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let filter = ExportFilter {
        since: q.since,
        until: q.until,
        customer_id: q.customer_id.filter(|c| !c.is_empty()),
        event_type: q.event_type.filter(|t| !t.is_empty()),
    };
    let (format, filter) = export::check(q.format.as_deref(), filter)
        .map_err(|m| ApiError::bad_request("invalid_query", m))?;
    let rx = export::start(state.store(), format, filter, ACTOR).await?;
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let disposition = format!("attachment; filename=\"brain-export.{}\"", format.as_str());
    Ok((
        [
            (CONTENT_TYPE, format.content_type().to_owned()),
            (CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

fn unknown_customer(customer_id: &str) -> ApiError {
    ApiError::NotFound(format!("customer `{customer_id}` not found"))
}

/// The page size `limit` asks for: 1–1000, default 100.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if (1..=MAX_PAGE_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE_LIMIT}"),
        ))
    }
}

/// The row id a cursor holds (rows below it come next). A cursor is the decimal id of the
/// last row of the previous page; pass it on as it came.
fn page_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "cursor is not one this server gave (pass next_cursor as it came)",
                )
            }),
    }
}

/// Cuts `rows` (fetched `limit + 1`) to `limit`; the cursor after the last kept row when more
/// follow.
fn next_cursor<T>(rows: &mut Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Option<String> {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    }
}
