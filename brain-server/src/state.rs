//! [`AppState`]: what every handler shares (store, writer, key cache, rate limiter, admin
//! token), a cheap clone over one `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use shared_proto::KeyHash;
use subtle::ConstantTimeEq;

use crate::config::Limits;
use crate::db::{AuthKey, Backend, DbError, Store, WriteJob};
use crate::writer::{SubmitError, WriteResult, Writer, WriterStats};

/// How long a successful key lookup is reused. Revocation must bite within 5 s (SPEC §3);
/// 2 s leaves room for the lookup itself.
const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Cached key lookups kept before the cache is cleared.
const KEY_CACHE_MAX: usize = 10_000;

/// Shared application state. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The database.
    store: Store,
    /// The single ingest writer (group commit).
    writer: Writer,
    /// Recent successful key lookups: key hash → (key, when looked up).
    keys: Mutex<HashMap<String, (AuthKey, Instant)>>,
    /// Per-key request rate limiter, keyed by key id.
    limiter: DefaultKeyedRateLimiter<String>,
    /// SHA-256 of the admin token, compared in constant time.
    admin_token_sha256: [u8; 32],
}

impl AppState {
    /// Builds the state and starts the ingest writer (needs a Tokio runtime).
    pub fn new(store: Store, admin_token: &SecretString, limits: Limits) -> Self {
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => limits.pg_writers,
        };
        let writer = Writer::start(
            store.clone(),
            writers,
            limits.queue_requests,
            limits.group_events,
        );
        let quota = Quota::per_second(limits.rate_per_sec).allow_burst(limits.rate_burst);
        AppState(Arc::new(Inner {
            store,
            writer,
            keys: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(quota),
            admin_token_sha256: Sha256::digest(admin_token.expose_secret().as_bytes()).into(),
        }))
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The ingest writer's counters (commits, requests, items).
    pub fn writer_stats(&self) -> &WriterStats {
        self.0.writer.stats()
    }

    /// Requests waiting for the ingest writer.
    pub(crate) fn queue_depth(&self) -> usize {
        self.0.writer.queue_depth()
    }

    /// Stops the ingest writer after it has written everything queued.
    pub async fn shutdown(&self) {
        self.0.writer.shutdown().await;
    }

    /// Queues a validated request for the writer.
    pub(crate) fn submit(
        &self,
        job: WriteJob,
    ) -> Result<tokio::sync::oneshot::Receiver<WriteResult>, SubmitError> {
        self.0.writer.submit(job)
    }

    /// The live key with this hash, from the short-lived cache or the database.
    pub(crate) async fn lookup_key(&self, hash: &KeyHash) -> Result<Option<AuthKey>, DbError> {
        if let Ok(cache) = self.0.keys.lock()
            && let Some((key, at)) = cache.get(hash.as_str())
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some(key.clone()));
        }
        let found = self.0.store.find_live_key(hash).await?;
        if let (Some(key), Ok(mut cache)) = (&found, self.0.keys.lock()) {
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash.as_str().to_owned(), (key.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Takes one request from the key's budget; `Err(seconds)` says when to retry.
    pub(crate) fn check_rate(&self, key_id: &str) -> Result<(), u64> {
        self.0
            .limiter
            .check_key(&key_id.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_millis()
                    .div_ceil(1000)
                    .clamp(1, u128::from(u64::MAX)) as u64
            })
    }

    /// Whether `presented` is the admin token (constant-time comparison of SHA-256 digests).
    pub(crate) fn is_admin_token(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.0.admin_token_sha256).into()
    }
}
