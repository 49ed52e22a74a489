//! Request and response bodies of the admin API (`/admin/*`, SPEC §4 "Admin"), and the rules
//! of the names an operator chooses ([`CustomerId`], customer names, key labels).
//!
//! One struct per request body and per response. Times are RFC 3339 UTC strings. The shapes
//! are plain (no untagged enums, no flattening) so an OpenAPI document can be generated from
//! them. A response never carries a key's hash, and carries a key's plaintext only in
//! [`CreatedKey`], the answer to the request that minted it.
//!
//! Pages are newest first; `next_cursor` is an opaque string to pass back as `cursor` for the
//! next (older) page, `null` on the last page.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::EventStatus;

/// Longest customer id, in characters.
pub const MAX_CUSTOMER_ID_CHARS: usize = 64;
/// Longest customer name, in characters.
pub const MAX_CUSTOMER_NAME_CHARS: usize = 200;
/// Longest key label, in characters.
pub const MAX_KEY_LABEL_CHARS: usize = 100;
/// Rows of a dead-letter or audit page when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// Most rows of one dead-letter or audit page.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Why an operator-chosen name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The customer id does not follow [`CustomerId::parse`]'s rule.
    #[error(
        "customer_id must be 1-{MAX_CUSTOMER_ID_CHARS} characters of [a-z0-9_-], starting with a letter or digit"
    )]
    CustomerId,
    /// The customer name is empty, too long, or holds a control character.
    #[error(
        "name must be 1-{MAX_CUSTOMER_NAME_CHARS} characters, not all blank, with no control characters"
    )]
    CustomerName,
    /// The key label is empty, too long, or holds a control character.
    #[error("label must be 1-{MAX_KEY_LABEL_CHARS} characters with no control characters")]
    KeyLabel,
}

/// A customer id chosen by the operator: 1–64 characters of `[a-z0-9_-]`, the first a letter
/// or digit (it appears in URLs, file names of exports and log lines as is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    /// Checks `s` against the rule.
    ///
    /// # Errors
    /// [`NameError::CustomerId`] when it does not follow it.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if first_ok && s.len() <= MAX_CUSTOMER_ID_CHARS && s.chars().all(ok_char) {
            Ok(CustomerId(s.to_owned()))
        } else {
            Err(NameError::CustomerId)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a customer's display name: 1–200 characters, not all blank, no control characters.
///
/// # Errors
/// [`NameError::CustomerName`] when it does not follow the rule.
pub fn check_customer_name(name: &str) -> Result<(), NameError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_CUSTOMER_NAME_CHARS
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(NameError::CustomerName)
    }
}

/// Checks a key label: 1–100 characters, no control characters.
///
/// # Errors
/// [`NameError::KeyLabel`] when it does not follow the rule.
pub fn check_key_label(label: &str) -> Result<(), NameError> {
    let ok = !label.is_empty()
        && label.chars().count() <= MAX_KEY_LABEL_CHARS
        && !label.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(NameError::KeyLabel) }
}

/// Body of `POST /admin/customers`: a new customer and its first key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    /// The new customer's id ([`CustomerId`]'s rule).
    pub customer_id: String,
    /// Its display name.
    pub name: String,
    /// A label for its first key, e.g. `box-1`.
    #[serde(default)]
    pub label: Option<String>,
    /// The `<env>` part of its first key (`dev`, `prod`, …: 1–16 of `[a-z0-9]`); default `dev`.
    #[serde(default)]
    pub env: Option<String>,
}

/// Body of `POST /admin/customers/{id}/keys` (may be empty): a new key for the customer,
/// beside its live ones (a rotation: revoke the old key once the new one is in place).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// A label for the new key.
    #[serde(default)]
    pub label: Option<String>,
    /// The `<env>` part of the new key; default: that of the customer's newest key (`dev` when
    /// it has none).
    #[serde(default)]
    pub env: Option<String>,
}

/// The 201 answer to a request that minted a key: the plaintext, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The customer the key authenticates.
    pub customer_id: String,
    /// The key's id (`key_<32 hex>`), to revoke it by.
    pub key_id: String,
    /// The `<env>` part of the key.
    pub env: String,
    /// The key's label.
    pub label: Option<String>,
    /// The last four characters of the plaintext (what listings show).
    pub last4: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// The plaintext key (`m8brain_<env>_…`). Stored nowhere: this answer is the only copy.
    pub api_key_plaintext: String,
}

/// A key as listed: never its plaintext or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySummary {
    /// The key's id.
    pub key_id: String,
    /// Its customer.
    pub customer_id: String,
    /// Its label.
    pub label: Option<String>,
    /// The `<env>` part.
    pub env: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `null` while it is live.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last four characters of the plaintext.
    pub last4: String,
}

/// Answer of `GET /admin/customers/{id}/keys`: the customer's keys, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// The customer.
    pub customer_id: String,
    /// Its keys, revoked ones included.
    pub keys: Vec<KeySummary>,
}

/// A customer as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// Its id.
    pub customer_id: String,
    /// Its display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its keys that are not revoked.
    pub live_keys: i64,
    /// All its keys.
    pub keys: i64,
}

/// Answer of `GET /admin/customers`: every customer, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerList {
    /// The customers.
    pub customers: Vec<CustomerSummary>,
}

/// Query of `GET /admin/dead-letters`: every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Only this customer's dead letters.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Only this rejection code (e.g. `unknown_event_type`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Only those received at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only those received before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Rows per page: 1–1000, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Query of `GET /admin/export`: the format and optional filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` or `jsonl` (required).
    #[serde(default)]
    pub format: Option<String>,
    /// Only events with `ts` at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only events with `ts` before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Only this customer's events.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Only events of this type (e.g. `tool_call`).
    #[serde(default)]
    pub event_type: Option<String>,
}

/// The columns of a CSV export, in their order (the first line of every CSV export).
pub const EXPORT_CSV_COLUMNS: [&str; 8] = [
    "event_id",
    "ts",
    "ingested_at",
    "customer_id",
    "agent_id",
    "run_id",
    "event_type",
    "payload",
];

/// One dead letter: an element the server was sent and did not store as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterItem {
    /// Its id (what `requeue` takes).
    pub id: i64,
    /// The customer whose key sent it.
    pub customer_id: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `event_id`, when it had a readable one.
    pub event_id: Option<String>,
    /// The rejection code.
    pub reason: String,
    /// Why, for a person.
    pub message: String,
    /// Size of the element's JSON as received, in bytes.
    pub raw_bytes: i64,
    /// Whether `raw` is cut short of the element (then it cannot be requeued).
    pub truncated: bool,
    /// The element's JSON as received (cut to the server's cap when `truncated`).
    pub raw: String,
    /// When it was first requeued and stored (or found stored) as an event; `null` if never.
    pub requeued_at: Option<DateTime<Utc>>,
    /// The `event_id` it was stored under by the requeue.
    pub requeued_event_id: Option<String>,
}

/// Answer of `GET /admin/dead-letters`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPage {
    /// The dead letters of this page.
    pub dead_letters: Vec<DeadLetterItem>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Answer of `POST /admin/dead-letters/{id}/requeue`: what the ingest write did with the
/// element (200). A requeue that stored the event answers `accepted`; one whose event is
/// already stored (a second requeue, or a resend by the client) answers `duplicate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeueResponse {
    /// The dead letter.
    pub dead_letter_id: i64,
    /// The customer the event was stored for (the one whose key sent it).
    pub customer_id: String,
    /// The event's id.
    pub event_id: String,
    /// `accepted` or `duplicate`.
    pub status: EventStatus,
    /// When the dead letter was first requeued.
    pub requeued_at: DateTime<Utc>,
}

/// Query of `GET /admin/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Rows per page: 1–1000, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One admin action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditItem {
    /// Its id.
    pub id: i64,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// Who: `admin-token` (the HTTP API) or `cli:<unix user>` (an operator command).
    pub actor: String,
    /// What: `create_customer`, `mint`, `rotate`, `revoke`, `requeue`.
    pub action: String,
    /// Its parameters (ids, labels, filters, outcome): never a plaintext key or the admin
    /// token.
    pub params: Value,
}

/// Answer of `GET /admin/audit`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries of this page.
    pub entries: Vec<AuditItem>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{CustomerId, check_customer_name, check_key_label};

    #[test]
    fn customer_ids_follow_the_rule() {
        for ok in ["acme", "a", "0x", "acme-2_prod", &"a".repeat(64)] {
            assert!(CustomerId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "-acme",
            "_a",
            "a b",
            "a/b",
            "é",
            &"a".repeat(65),
            "a\0",
        ] {
            assert!(CustomerId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_labels_follow_the_rule() {
        assert!(check_customer_name("Acme Inc.").is_ok());
        assert!(check_customer_name("  ").is_err());
        assert!(check_customer_name("a\nb").is_err());
        assert!(check_customer_name(&"n".repeat(201)).is_err());
        assert!(check_key_label("box-1").is_ok());
        assert!(check_key_label("").is_err());
        assert!(check_key_label("a\u{7}").is_err());
    }
}
