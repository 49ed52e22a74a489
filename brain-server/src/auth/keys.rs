//! Customer key checks on the ingest path: a short-lived cache of successful lookups (so a
//! busy key costs no query per request, and a revocation still bites within 5 s) and the
//! per-key rate limit (governor's GCRA, keyed by key id).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared_proto::KeyHash;

use crate::db::keys::AuthKey;
use crate::db::{DbError, Store};

/// How long a successful key lookup is reused. Revocation must bite within 5 s (SPEC §3);
/// 2 s leaves room for the lookup itself.
const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Cached key lookups kept before the cache is cleared.
const KEY_CACHE_MAX: usize = 10_000;

/// The key cache and the per-key rate limiter.
#[derive(Debug)]
pub(crate) struct KeyChecks {
    /// Recent successful key lookups: key hash → (key, when looked up).
    cache: Mutex<HashMap<String, (AuthKey, Instant)>>,
    /// Per-key request rate limiter, keyed by key id.
    limiter: DefaultKeyedRateLimiter<String>,
}

impl KeyChecks {
    /// Allows `per_sec` requests per second per key, with bursts of `burst`.
    pub(crate) fn new(per_sec: NonZeroU32, burst: NonZeroU32) -> Self {
        KeyChecks {
            cache: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
        }
    }

    /// The live key with this hash, from the short-lived cache or `store`.
    ///
    /// # Errors
    /// [`DbError`] when the lookup fails.
    pub(crate) async fn lookup(
        &self,
        store: &Store,
        hash: &KeyHash,
    ) -> Result<Option<AuthKey>, DbError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((key, at)) = cache.get(hash.as_str())
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(Some(key.clone()));
        }
        let found = store.find_live_key(hash).await?;
        if let (Some(key), Ok(mut cache)) = (&found, self.cache.lock()) {
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash.as_str().to_owned(), (key.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Takes one request from the key's budget; `Err(seconds)` says when to retry.
    pub(crate) fn check_rate(&self, key_id: &str) -> Result<(), u64> {
        self.limiter
            .check_key(&key_id.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_millis()
                    .div_ceil(1000)
                    .clamp(1, u128::from(u64::MAX)) as u64
            })
    }
}
