//! API keys: minting (with the customer created on first use), rotation, revocation,
//! listing without plaintext, and the lookup that authenticates ingest. Only
//! `sha256(plaintext)` is stored; the plaintext lives in [`MintedKey`] and nowhere else.
//! Every change writes an audit entry in the same transaction.

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared_proto::{ApiKey, KeyEnv, KeyHash};
use sqlx::FromRow;
use uuid::Uuid;

use super::{DbError, Store, StoredTime};

impl Store {
    /// Mints a new key for `customer_id`, creating the customer (named `name`) if missing.
    ///
    /// A customer that already has a live key gets a second one (a rotation); the audit log
    /// records `mint` or `rotate` with the key id, never the plaintext.
    ///
    /// # Errors
    /// [`DbError::Key`] when the OS random source fails, [`DbError::Query`] on a database error.
    pub async fn mint_key(
        &self,
        customer_id: &str,
        name: &str,
        label: Option<&str>,
        env: &KeyEnv,
        actor: &str,
    ) -> Result<MintedKey, DbError> {
        let api_key = ApiKey::generate(env)?;
        let new = NewKey {
            key_id: format!("key_{}", Uuid::new_v4().simple()),
            customer_id: customer_id.to_owned(),
            key_hash: api_key.hash(),
            env: env.as_str().to_owned(),
            label: label.map(str::to_owned),
            last4: api_key.last4().to_owned(),
            created_at: Utc::now(),
        };
        let (customer_created, rotated) = dispatch!(self, mint_key(name, &new, actor))?;
        Ok(MintedKey {
            key_id: new.key_id,
            customer_id: new.customer_id,
            api_key,
            customer_created,
            rotated,
        })
    }

    /// Revokes the key `key_id` (idempotent: revoking a revoked key keeps the first time).
    ///
    /// # Errors
    /// [`DbError::NotFound`] when there is no such key, [`DbError::Query`] otherwise.
    pub async fn revoke_key(&self, key_id: &str, actor: &str) -> Result<KeyInfo, DbError> {
        let now = Utc::now();
        dispatch!(self, revoke_key(key_id, now, actor))?.ok_or(DbError::NotFound("key"))
    }

    /// Lists keys (without plaintext), of one customer or of all, oldest first.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn list_keys(&self, customer_id: Option<&str>) -> Result<Vec<KeyInfo>, DbError> {
        dispatch!(self, list_keys(customer_id))
    }

    /// Finds the live (not revoked) key with this hash.
    pub(crate) async fn find_live_key(&self, hash: &KeyHash) -> Result<Option<AuthKey>, DbError> {
        dispatch!(self, find_live_key(hash.as_str()))
    }
}

/// A freshly minted key: the plaintext is here and nowhere else.
#[derive(Debug)]
pub struct MintedKey {
    /// The key's id (`key_<32 hex>`), safe to show and to revoke by.
    pub key_id: String,
    /// The customer it authenticates.
    pub customer_id: String,
    /// The plaintext key (its `Debug` hides the secret).
    pub api_key: ApiKey,
    /// Whether the customer was created by this call.
    pub customer_created: bool,
    /// Whether the customer already had a live key (this one is a rotation).
    pub rotated: bool,
}

/// A key as listed: no plaintext, no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key's id.
    pub key_id: String,
    /// Its customer.
    pub customer_id: String,
    /// The `<env>` part (`dev`, `prod`, …).
    pub env: String,
    /// Free-form label given at minting.
    pub label: Option<String>,
    /// Last four characters of the plaintext.
    pub last4: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The live key a bearer token resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthKey {
    pub(crate) key_id: String,
    pub(crate) customer_id: String,
}

/// A key about to be inserted.
#[derive(Debug)]
struct NewKey {
    key_id: String,
    customer_id: String,
    key_hash: KeyHash,
    env: String,
    label: Option<String>,
    last4: String,
    created_at: DateTime<Utc>,
}

/// An `api_keys` row without its hash, times as the backend `T` returns them.
#[derive(FromRow)]
struct KeyRow<T> {
    key_id: String,
    customer_id: String,
    env: String,
    label: Option<String>,
    last4: String,
    created_at: T,
    revoked_at: Option<T>,
}

impl<T: StoredTime> From<KeyRow<T>> for KeyInfo {
    fn from(r: KeyRow<T>) -> Self {
        KeyInfo {
            key_id: r.key_id,
            customer_id: r.customer_id,
            env: r.env,
            label: r.label,
            last4: r.last4,
            created_at: r.created_at.into_utc(),
            revoked_at: r.revoked_at.map(T::into_utc),
        }
    }
}
