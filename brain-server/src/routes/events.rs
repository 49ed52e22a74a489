//! `POST /v1/events`: authenticate, read (and gunzip) the body, validate every element with
//! [`shared_proto::Event::parse`], hand the request to the group-commit writer, answer after
//! the commit.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::read::GzDecoder;
use futures_util::StreamExt;
use serde_json::Value;
use shared_proto::limits::{MAX_BATCH_EVENTS, MAX_BODY_BYTES};
use shared_proto::{BatchResponse, Event, EventStatus};

use crate::db::{Item, RequestBody, WriteJob};
use crate::error::ApiError;
use crate::extract::CustomerKey;
use crate::state::AppState;
use crate::writer::SubmitError;

/// Ingests one envelope or an array of at most 500.
#[tracing::instrument(skip_all, fields(customer_id = %key.customer_id, key_id = %key.key_id))]
pub(crate) async fn post_events(
    State(state): State<AppState>,
    key: CustomerKey,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_content_type(&headers)?;
    let gzip = content_encoding_is_gzip(&headers)?;
    let raw = read_limited(body).await?;
    let bytes = if gzip { gunzip(&raw)? } else { raw };

    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    let (elements, single) = match value {
        Value::Array(items) => (items, false),
        obj @ Value::Object(_) => (vec![obj], true),
        _ => {
            return Err(ApiError::bad_request(
                "not_an_envelope",
                "the body must be an event object or an array of event objects",
            ));
        }
    };
    if elements.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooLarge {
            code: "too_many_events",
            message: format!(
                "{} events in one request; at most {MAX_BATCH_EVENTS} are allowed",
                elements.len()
            ),
        });
    }

    let body = RequestBody(bytes);
    let mut reparsed = None;
    let items: Vec<Item> = elements
        .into_iter()
        .enumerate()
        .map(|(i, el)| validate(el, || original_element(&body, i, &mut reparsed)))
        .collect();
    let job = WriteJob {
        customer_id: key.customer_id,
        items,
        body,
    };
    let reply = state.submit(job).map_err(|e| match e {
        SubmitError::Full | SubmitError::Closed => ApiError::Overloaded,
    })?;
    let results = reply
        .await
        .map_err(|_| ApiError::Overloaded)?
        .map_err(ApiError::from)?;
    let response = BatchResponse::from_results(results);
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

/// Validates one element. A rejection keeps the element's raw JSON and `event_id`, which
/// `original` gives back (the element itself is consumed by parsing; rejections are rare, so
/// the common path never copies or re-serializes an element).
fn validate(element: Value, original: impl FnOnce() -> Value) -> Item {
    // Postgres cannot store U+0000 in JSONB or TEXT: refuse it on both backends alike.
    let nul = has_nul(&element);
    let (code, message) = match Event::parse(element) {
        Ok(event) if !nul => return Item::Valid(event.into()),
        Ok(_) => (
            "invalid_value".to_owned(),
            "the event contains a NUL (U+0000) character".to_owned(),
        ),
        Err(e) => (e.code().to_owned(), e.to_string()),
    };
    let original = original();
    Item::Rejected {
        event_id: original
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        raw: original.to_string(),
        code,
        message,
    }
}

/// Element `i` of the body as received, parsing the body again on first use.
fn original_element(body: &RequestBody, i: usize, cache: &mut Option<Vec<Value>>) -> Value {
    let elements = cache.get_or_insert_with(|| body.elements());
    elements.get(i).cloned().unwrap_or(Value::Null)
}

/// Whether any string (or object key) in `v` contains U+0000.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/json, got `{ct}`"
        )))
    }
}

fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Ok(false),
        Some(Ok(enc)) if enc.trim().eq_ignore_ascii_case("gzip") => Ok(true),
        Some(Ok(enc)) if enc.trim().eq_ignore_ascii_case("identity") => Ok(false),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding must be gzip or absent, got `{}`",
            other.unwrap_or("?")
        ))),
    }
}

fn too_large() -> ApiError {
    ApiError::TooLarge {
        code: "body_too_large",
        message: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
    }
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] as soon as it is exceeded.
async fn read_limited(body: Body) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("unreadable_body", format!("could not read the body: {e}"))
        })?;
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decompresses a gzip body, refusing more than [`MAX_BODY_BYTES`] of output.
fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, ApiError> {
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX) + 1;
    let mut out = Vec::new();
    GzDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request("invalid_gzip", format!("the body is not valid gzip: {e}"))
        })?;
    if out.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(out)
}
