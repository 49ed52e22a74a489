//! The request body of `POST /v1/events`: content type and encoding checks, a size-capped
//! read (at most [`MAX_BODY_BYTES`] before and after gunzip), and the split into elements.
//!
//! The split keeps each element as a [`RawValue`] borrowed from the body: the syntax is
//! checked once, nothing is copied, and an element's position in the body is its raw JSON
//! for a dead letter.
//!
//! Every byte read (and every byte gunzipped) is counted into the request's [`InFlight`]
//! guard as it arrives (`budget.rs`). When the server-wide budget has no room, the request
//! gives back what it held, reads the rest of its body without keeping it (so that the client
//! gets the answer rather than a reset connection), and is answered 503 `overloaded`.

use std::io::Read;
use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;
use futures_util::StreamExt;
use serde_json::value::RawValue;
use shared_proto::limits::{MAX_BATCH_EVENTS, MAX_BODY_BYTES};

use super::budget::InFlight;
use crate::error::ApiError;

/// Bytes inflated at a time from a gzip body, each counted into the budget before it is kept.
const GUNZIP_CHUNK: usize = 64 * 1024;

/// Checks the headers and reads the body as text: gunzipped (every member) when
/// `Content-Encoding: gzip`, at most [`MAX_BODY_BYTES`] either way, all of it within
/// `timeout`, every byte held counted into `in_flight` as it arrives.
///
/// # Errors
/// 415 for another content type or encoding, 413 when too large, 408 `body_timeout` when it
/// does not arrive in time, 503 `overloaded` when the in-flight budget has no room for it,
/// 400 `invalid_gzip`, `unreadable_body`, or `malformed_json` when the body is not UTF-8.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
    in_flight: &mut InFlight,
) -> Result<String, ApiError> {
    check_content_type(headers)?;
    let gzip = content_encoding_is_gzip(headers)?;
    let raw = tokio::time::timeout(timeout, read_limited(body, in_flight))
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout.as_secs()))??;
    let bytes = if gzip {
        let inflated = gunzip(&raw, in_flight)?;
        in_flight.shrink(raw.len());
        inflated
    } else {
        raw
    };
    String::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })
}

/// The elements of a body: an array's elements, or the one object of a single-event body
/// (`single` is then true), each borrowed from `body`.
#[derive(Debug)]
pub(crate) struct Elements<'a> {
    /// The elements in request order.
    pub(crate) items: Vec<&'a RawValue>,
    /// The body was one object rather than an array.
    pub(crate) single: bool,
}

/// Splits `body` into its elements, checking the JSON syntax once.
///
/// # Errors
/// 400 `malformed_json` when the body is not JSON, 400 `not_an_envelope` when it is neither
/// an object nor an array, 413 `too_many_events` for more than [`MAX_BATCH_EVENTS`].
pub(crate) fn split(body: &str) -> Result<Elements<'_>, ApiError> {
    let (items, single) = match serde_json::from_str::<Vec<&RawValue>>(body) {
        Ok(items) => (items, false),
        Err(_) => {
            let one = serde_json::from_str::<&RawValue>(body).map_err(|e| {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            })?;
            if !one.get().starts_with('{') {
                return Err(ApiError::bad_request(
                    "not_an_envelope",
                    "the body must be an event object or an array of event objects",
                ));
            }
            (vec![one], true)
        }
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooLarge {
            code: "too_many_events",
            message: format!(
                "{} events in one request; at most {MAX_BATCH_EVENTS} are allowed",
                items.len()
            ),
        });
    }
    Ok(Elements { items, single })
}

/// Where `element` (borrowed from `body` by [`split`]) lies in `body`, in bytes.
pub(crate) fn span(body: &str, element: &RawValue) -> Range<usize> {
    let text = element.get();
    // `element` borrows from `body`, so its text is a sub-slice: the distance between the
    // two start addresses is its offset.
    let start = (text.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    let span = start..start + text.len();
    debug_assert_eq!(body.get(span.clone()), Some(text));
    span
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

fn unreadable(e: &axum::Error) -> ApiError {
    ApiError::bad_request("unreadable_body", format!("could not read the body: {e}"))
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] as soon as it is exceeded, counting
/// each chunk into `in_flight` before keeping it. Over budget: gives back what it held, reads
/// the rest without keeping it (up to the size cap), and answers 503 `overloaded`.
async fn read_limited(body: Body, in_flight: &mut InFlight) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreadable(&e))?;
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        if in_flight.grow(chunk.len()).is_err() {
            let mut seen = out.len() + chunk.len();
            drop(out);
            in_flight.release();
            while let Some(chunk) = stream.next().await {
                seen += chunk.map_err(|e| unreadable(&e))?.len();
                if seen > MAX_BODY_BYTES {
                    return Err(too_large());
                }
            }
            return Err(ApiError::Overloaded);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decompresses a gzip body: every member (RFC 1952 allows several one after the other, and a
/// streaming compressor writes one per flush), refusing more than [`MAX_BODY_BYTES`] of output
/// for all of them together, counting the output into `in_flight` as it is inflated. Bytes
/// after a member that are not another member are an error.
fn gunzip(compressed: &[u8], in_flight: &mut InFlight) -> Result<Vec<u8>, ApiError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut out = Vec::new();
    let mut chunk = vec![0_u8; GUNZIP_CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ApiError::bad_request(
                    "invalid_gzip",
                    format!("the body is not valid gzip: {e}"),
                ));
            }
        };
        if out.len() + n > MAX_BODY_BYTES {
            return Err(too_large());
        }
        in_flight.grow(n).map_err(|_| ApiError::Overloaded)?;
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{span, split};

    #[test]
    fn elements_keep_their_text_and_position() {
        let body = r#" [ {"a": 1.50, "b":"x"} ,{"c":[1, 2]}]"#;
        let els = split(body).unwrap();
        assert!(!els.single);
        let texts: Vec<&str> = els.items.iter().map(|e| &body[span(body, e)]).collect();
        assert_eq!(texts, [r#"{"a": 1.50, "b":"x"}"#, r#"{"c":[1, 2]}"#]);
    }

    #[test]
    fn one_object_is_a_single_element_and_other_values_are_refused() {
        let els = split(r#"{"event_id": "x"}"#).unwrap();
        assert!(els.single);
        assert_eq!(els.items.len(), 1);
        for (body, code) in [
            ("42", "not_an_envelope"),
            ("[1,", "malformed_json"),
            ("", "malformed_json"),
        ] {
            let err = split(body).unwrap_err();
            assert!(format!("{err:?}").contains(code), "{body:?}: {err:?}");
        }
    }
}
