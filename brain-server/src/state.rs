//! [`AppState`]: what every handler shares (store, ingest writer, key checks, admin token),
//! a cheap clone over one `Arc`.

use std::sync::Arc;

use secrecy::SecretString;

use crate::auth::AdminToken;
use crate::auth::keys::KeyChecks;
use crate::config::Limits;
use crate::db::{Backend, Store};
use crate::http::ConnectionGauge;
use crate::ingest::WriteJob;
use crate::ingest::budget::{InFlight, MemoryBudget};
use crate::ingest::retention::Pruner;
use crate::ingest::writer::{SubmitError, WriteResult, Writer, WriterStats};
use crate::metrics::Metrics;

/// Shared application state. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The database.
    store: Store,
    /// The ingest writer (group commit).
    writer: Writer,
    /// The customer key cache and per-key rate limiter.
    keys: KeyChecks,
    /// The admin token (its digest).
    admin_token: AdminToken,
    /// Ingest and connection limits.
    limits: Limits,
    /// HTTP connections open now.
    connections: Arc<ConnectionGauge>,
    /// Bytes of ingest bodies held now, under [`Limits::in_flight_bytes`].
    budget: Arc<MemoryBudget>,
    /// Deletes dead letters past their retention.
    pruner: Pruner,
    /// This server's Prometheus recorder (not the process-global one: `metrics.rs`).
    metrics: Metrics,
}

impl AppState {
    /// Builds the state and starts the ingest writer (needs a Tokio runtime).
    pub fn new(store: Store, admin_token: &SecretString, limits: Limits) -> Self {
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => limits.pg_writers,
        };
        let metrics = Metrics::new();
        let writer = Writer::start(
            store.clone(),
            writers,
            limits.queue_requests,
            limits.group_events,
            limits.dead_letter_raw_bytes,
            limits.rollups,
            metrics.clone(),
        );
        let pruner = Pruner::start(
            store.clone(),
            limits.dead_letter_retention,
            limits.dead_letter_prune_every,
        );
        AppState(Arc::new(Inner {
            store,
            writer,
            keys: KeyChecks::new(limits.rate_per_sec, limits.rate_burst),
            admin_token: AdminToken::new(admin_token),
            limits,
            connections: Arc::default(),
            budget: MemoryBudget::new(limits.in_flight_bytes),
            pruner,
            metrics,
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

    /// Whether ingest writes are failing for lack of storage (disk full, read-only database,
    /// I/O error): `/v1/healthz` then answers 503 `ok: false`.
    pub(crate) fn writes_failing(&self) -> bool {
        self.0.writer.writes_failing()
    }

    /// Requests waiting in the ingest writer's queue (not yet taken into a group).
    pub fn queue_depth(&self) -> usize {
        self.0.writer.queue_depth()
    }

    /// Stops the ingest writer after it has written everything queued, and the dead-letter
    /// retention task.
    pub async fn shutdown(&self) {
        self.0.pruner.stop();
        self.0.writer.shutdown().await;
    }

    /// Bytes of ingest bodies held now (read or gunzipped, not yet answered).
    pub fn in_flight_bytes(&self) -> usize {
        self.0.budget.used()
    }

    /// An empty share of the in-flight budget, for one request.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.0.budget.guard()
    }

    /// Queues a validated request for the writer.
    pub(crate) fn submit(
        &self,
        job: WriteJob,
    ) -> Result<tokio::sync::oneshot::Receiver<WriteResult>, SubmitError> {
        self.0.writer.submit(job)
    }

    /// HTTP connections being served now.
    pub fn open_connections(&self) -> usize {
        self.0.connections.get()
    }

    /// The gauge of open HTTP connections, for the server loop.
    pub(crate) fn connections(&self) -> Arc<ConnectionGauge> {
        Arc::clone(&self.0.connections)
    }

    /// Ingest and connection limits.
    pub(crate) fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The customer key cache and rate limiter.
    pub(crate) fn keys(&self) -> &KeyChecks {
        &self.0.keys
    }

    /// The admin token.
    pub(crate) fn admin_token(&self) -> &AdminToken {
        &self.0.admin_token
    }

    /// This server's metrics recorder.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}
