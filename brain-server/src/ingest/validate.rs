//! Validation of one element: [`shared_proto::Event::parse`] plus the server's own rule (no
//! U+0000, which Postgres cannot store), giving an [`Item`].

use serde_json::Value;
use serde_json::value::RawValue;
use shared_proto::Event;

use super::body::span;
use super::{Item, ValidEvent};

/// Validates `element` of `body`. A rejection keeps the element's position in the body (its
/// raw JSON) and its `event_id` when that is a string.
pub(crate) fn validate(body: &str, element: &RawValue) -> Item {
    let raw = span(body, element);
    let (code, message) = match serde_json::from_str::<Value>(element.get()) {
        Ok(value) => {
            // Postgres cannot store U+0000 in JSONB or TEXT: refuse it on both backends alike.
            let nul = has_nul(&value);
            match Event::parse(value) {
                Ok(event) if !nul => return Item::Valid(ValidEvent::new(event, raw)),
                Ok(_) => (
                    "invalid_value".to_owned(),
                    "the event contains a NUL (U+0000) character".to_owned(),
                ),
                Err(e) => (e.code().to_owned(), e.to_string()),
            }
        }
        // The body's syntax was checked already; kept for completeness.
        Err(e) => ("malformed_json".to_owned(), e.to_string()),
    };
    Item::Rejected {
        event_id: event_id_of(element),
        raw,
        code,
        message,
    }
}

/// The element's `event_id` when it is a string (parsed again: rejections are rare).
fn event_id_of(element: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        event_id: Option<Value>,
    }
    let probe: Probe = serde_json::from_str(element.get()).ok()?;
    match probe.event_id? {
        Value::String(s) => Some(s),
        _ => None,
    }
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
