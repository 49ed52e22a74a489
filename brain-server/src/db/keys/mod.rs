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
    /// Mints a new key for `customer_id`, creating the customer (named `name`) if missing
    /// (`brain-server mint-key`). An existing customer keeps its stored name (see
    /// [`MintedKey::stored_name`]).
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
        let minted = self
            .mint(
                CustomerMode::CreateOrUse(name),
                customer_id,
                label,
                env,
                actor,
            )
            .await?;
        minted.ok_or(DbError::NotFound("customer"))
    }

    /// Creates the customer `customer_id` named `name` with its first key; `None` (and nothing
    /// written) when the customer exists. The audit log records `create_customer`.
    ///
    /// # Errors
    /// [`DbError::Key`] when the OS random source fails, [`DbError::Query`] on a database error.
    pub async fn create_customer(
        &self,
        customer_id: &str,
        name: &str,
        label: Option<&str>,
        env: &KeyEnv,
        actor: &str,
    ) -> Result<Option<MintedKey>, DbError> {
        self.mint(CustomerMode::New(name), customer_id, label, env, actor)
            .await
    }

    /// Mints a new key for the existing customer `customer_id` beside its live ones (a
    /// rotation), in the environment `env`, else that of its newest key, else `dev`; `None`
    /// (and nothing written) when there is no such customer. The audit log records `rotate`
    /// (or `mint` when the customer had no live key).
    ///
    /// # Errors
    /// [`DbError::Key`] when the OS random source fails, [`DbError::Query`] on a database error.
    pub async fn rotate_key(
        &self,
        customer_id: &str,
        label: Option<&str>,
        env: Option<&KeyEnv>,
        actor: &str,
    ) -> Result<Option<MintedKey>, DbError> {
        let env = match env {
            Some(env) => env.clone(),
            None => {
                let newest = dispatch!(self, newest_key_env(customer_id))?;
                newest
                    .and_then(|e| KeyEnv::parse(&e).ok())
                    .map_or_else(|| KeyEnv::parse(DEFAULT_KEY_ENV), Ok)?
            }
        };
        self.mint(CustomerMode::Existing, customer_id, label, &env, actor)
            .await
    }

    async fn mint(
        &self,
        mode: CustomerMode<'_>,
        customer_id: &str,
        label: Option<&str>,
        env: &KeyEnv,
        actor: &str,
    ) -> Result<Option<MintedKey>, DbError> {
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
        let done = dispatch!(self, mint_key(mode, &new, actor))?;
        Ok(match done {
            MintDone::Minted {
                customer_created,
                rotated,
                stored_name,
            } => Some(MintedKey {
                key_id: new.key_id,
                customer_id: new.customer_id,
                env: new.env,
                label: new.label,
                last4: new.last4,
                created_at: new.created_at,
                api_key,
                customer_created,
                rotated,
                stored_name,
            }),
            MintDone::Exists | MintDone::NoCustomer => None,
        })
    }

    /// The customers (one, when `customer_id` is given), by id, with their key counts.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn list_customers(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<CustomerInfo>, DbError> {
        Ok(match self {
            Store::Postgres(pool) => postgres::customers(pool, customer_id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
            Store::Sqlite(pool) => sqlite::customers(pool, customer_id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }

    /// The customer `customer_id`, if it exists.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn customer(&self, customer_id: &str) -> Result<Option<CustomerInfo>, DbError> {
        Ok(self.list_customers(Some(customer_id)).await?.pop())
    }

    /// Revokes the key `key_id` (idempotent: revoking a revoked key keeps the first time).
    ///
    /// # Errors
    /// [`DbError::NotFound`] when there is no such key, [`DbError::Query`] otherwise.
    pub async fn revoke_key(&self, key_id: &str, actor: &str) -> Result<KeyInfo, DbError> {
        // At the precision both backends store (Postgres: µs), so that the row read back
        // says whether this call revoked it.
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
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

/// The key environment of a rotation when neither the request nor the customer's keys name one.
const DEFAULT_KEY_ENV: &str = "dev";

/// A freshly minted key: the plaintext is here and nowhere else.
#[derive(Debug)]
pub struct MintedKey {
    /// The key's id (`key_<32 hex>`), safe to show and to revoke by.
    pub key_id: String,
    /// The customer it authenticates.
    pub customer_id: String,
    /// The `<env>` part.
    pub env: String,
    /// Its label.
    pub label: Option<String>,
    /// Last four characters of the plaintext.
    pub last4: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// The plaintext key (its `Debug` hides the secret).
    pub api_key: ApiKey,
    /// Whether the customer was created by this call.
    pub customer_created: bool,
    /// Whether the customer already had a live key (this one is a rotation).
    pub rotated: bool,
    /// The customer's name as stored (an existing customer keeps its name).
    pub stored_name: String,
}

/// A customer as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerInfo {
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

/// How a mint treats the key's customer.
#[derive(Debug, Clone, Copy)]
enum CustomerMode<'a> {
    /// Create it with this name; refuse when it exists (`POST /admin/customers`).
    New(&'a str),
    /// It must exist (a rotation).
    Existing,
    /// Create it with this name when missing (`mint-key`).
    CreateOrUse(&'a str),
}

/// What a backend's mint did.
#[derive(Debug)]
enum MintDone {
    /// Minted.
    Minted {
        customer_created: bool,
        rotated: bool,
        stored_name: String,
    },
    /// Refused: the customer exists ([`CustomerMode::New`]).
    Exists,
    /// Refused: no such customer ([`CustomerMode::Existing`]).
    NoCustomer,
}

/// The audit action of a mint: `create_customer`, else `rotate` when the customer had a live
/// key, else `mint`.
fn audit_action(mode: CustomerMode<'_>, rotated: bool) -> &'static str {
    match mode {
        CustomerMode::New(_) => "create_customer",
        _ if rotated => "rotate",
        _ => "mint",
    }
}

/// A `customers` row with its key counts, times as the backend `T` returns them.
#[derive(FromRow)]
struct CustomerRow<T> {
    customer_id: String,
    name: String,
    created_at: T,
    live_keys: i64,
    keys: i64,
}

impl<T: StoredTime> From<CustomerRow<T>> for CustomerInfo {
    fn from(r: CustomerRow<T>) -> Self {
        CustomerInfo {
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at.into_utc(),
            live_keys: r.live_keys,
            keys: r.keys,
        }
    }
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

impl From<KeyInfo> for shared_proto::admin::KeySummary {
    fn from(k: KeyInfo) -> Self {
        shared_proto::admin::KeySummary {
            key_id: k.key_id,
            customer_id: k.customer_id,
            label: k.label,
            env: k.env,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            last4: k.last4,
        }
    }
}

impl From<CustomerInfo> for shared_proto::admin::CustomerSummary {
    fn from(c: CustomerInfo) -> Self {
        shared_proto::admin::CustomerSummary {
            customer_id: c.customer_id,
            name: c.name,
            created_at: c.created_at,
            live_keys: c.live_keys,
            keys: c.keys,
        }
    }
}

impl From<MintedKey> for shared_proto::admin::CreatedKey {
    fn from(m: MintedKey) -> Self {
        shared_proto::admin::CreatedKey {
            api_key_plaintext: m.api_key.expose().to_owned(),
            customer_id: m.customer_id,
            key_id: m.key_id,
            env: m.env,
            label: m.label,
            last4: m.last4,
            created_at: m.created_at,
        }
    }
}
