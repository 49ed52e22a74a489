//! `/admin/*` (admin bearer): customers and their keys, dead letters and their requeue, the
//! audit log. Bodies are the types of [`shared_proto::admin`].
//!
//! Every change goes through the same [`Store`](crate::db::Store) functions as the operator
//! commands, and writes its audit entry (actor [`ACTOR`]) in the transaction of the change.
//! A requeue stores the event through the ingest writer, like `POST /v1/events` (so dedupe,
//! agent ownership and rollups apply), then marks the dead letter and writes the audit entry
//! in a second transaction: the writer's transaction belongs to the group it commits.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::value::RawValue;
use shared_proto::admin::{
    AuditItem, AuditPage, AuditQuery, CreateCustomerRequest, CreatedKey, CustomerId, CustomerList,
    CustomerSummary, DEFAULT_PAGE_LIMIT, DeadLetterItem, DeadLetterPage, DeadLetterQuery, KeyList,
    KeySummary, MAX_PAGE_LIMIT, RequeueResponse, RotateKeyRequest, check_customer_name,
    check_key_label,
};
use shared_proto::{EventStatus, KeyEnv};

use crate::auth::Admin;
use crate::db::ingest::Outcome;
use crate::db::{AuditEntry, CustomerInfo, DeadLetter, DeadLetterFilter, KeyInfo, MintedKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ingest::validate::validate;
use crate::ingest::writer::SubmitError;
use crate::ingest::{Item, WriteJob};
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
    Ok((StatusCode::CREATED, Json(created_key(minted))).into_response())
}

/// `GET /admin/customers`: every customer with its key counts.
async fn get_customers(State(state): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let customers = state.store().list_customers(None).await?;
    let customers = customers.into_iter().map(customer_summary).collect();
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
    Ok((StatusCode::CREATED, Json(created_key(minted))).into_response())
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
        keys: keys.into_iter().map(key_summary).collect(),
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
    Ok(Json(key_summary(key)).into_response())
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
        dead_letters: rows.into_iter().map(dead_letter_item).collect(),
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
    let dead = state
        .store()
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dead letter {id} not found")))?;
    if dead.truncated {
        return Err(ApiError::Conflict {
            code: "dead_letter_truncated",
            message: format!(
                "dead letter {id} keeps only {} of the element's {} bytes; it cannot be requeued",
                dead.raw.len(),
                dead.raw_bytes
            ),
        });
    }
    let element: &RawValue = serde_json::from_str(&dead.raw).map_err(|e| {
        unprocessable(
            "malformed_json",
            format!("the stored element is not JSON: {e}"),
        )
    })?;
    let item = validate(&dead.raw, element);
    let event_id = match &item {
        Item::Valid(ev) => ev.event_id.to_string(),
        Item::Rejected { code, message, .. } => return Err(unprocessable(code, message.clone())),
    };
    let job = WriteJob {
        customer_id: dead.customer_id.clone(),
        items: vec![item],
        body: dead.raw.clone(),
        in_flight: state.in_flight(),
    };
    let reply = state.submit(job).map_err(|e| match e {
        SubmitError::Full | SubmitError::Closed => ApiError::Overloaded,
    })?;
    let outcome = reply
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(ApiError::from)?
        .pop();
    let status = match outcome {
        Some(Outcome::Accepted(_)) => EventStatus::Accepted,
        Some(Outcome::Duplicate(_)) => EventStatus::Duplicate,
        Some(Outcome::Rejected { code, message, .. }) => return Err(unprocessable(&code, message)),
        None => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the ingest writer answered no outcome"
            )));
        }
    };
    let status_name = match status {
        EventStatus::Accepted => "accepted",
        _ => "duplicate",
    };
    let marked = state
        .store()
        .mark_requeued(id, &event_id, status_name, ACTOR)
        .await?;
    Ok(Json(RequeueResponse {
        dead_letter_id: id,
        customer_id: marked.customer_id,
        event_id,
        status,
        requeued_at: marked.requeued_at.unwrap_or_default(),
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
        entries: rows.into_iter().map(audit_item).collect(),
        next_cursor,
    })
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

fn created_key(m: MintedKey) -> CreatedKey {
    CreatedKey {
        api_key_plaintext: m.api_key.expose().to_owned(),
        customer_id: m.customer_id,
        key_id: m.key_id,
        env: m.env,
        label: m.label,
        last4: m.last4,
        created_at: m.created_at,
    }
}

fn key_summary(k: KeyInfo) -> KeySummary {
    KeySummary {
        key_id: k.key_id,
        customer_id: k.customer_id,
        label: k.label,
        env: k.env,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
        last4: k.last4,
    }
}

fn customer_summary(c: CustomerInfo) -> CustomerSummary {
    CustomerSummary {
        customer_id: c.customer_id,
        name: c.name,
        created_at: c.created_at,
        live_keys: c.live_keys,
        keys: c.keys,
    }
}

fn dead_letter_item(d: DeadLetter) -> DeadLetterItem {
    DeadLetterItem {
        id: d.id,
        customer_id: d.customer_id,
        received_at: d.received_at,
        event_id: d.event_id,
        reason: d.reason,
        message: d.message,
        raw_bytes: d.raw_bytes,
        truncated: d.truncated,
        raw: d.raw,
        requeued_at: d.requeued_at,
        requeued_event_id: d.requeued_event_id,
    }
}

fn audit_item(a: AuditEntry) -> AuditItem {
    AuditItem {
        id: a.id,
        at: a.at,
        actor: a.actor,
        action: a.action,
        params: a.params,
    }
}
