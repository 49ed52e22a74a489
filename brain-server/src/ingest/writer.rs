//! The ingest writer: writer tasks own every ingest write and commit in groups.
//!
//! Handlers validate a request, then [`Writer::submit`] its elements with a oneshot over a
//! bounded queue. A writer takes everything queued (up to [`Limits::group_events`]
//! events) into ONE transaction, commits, then answers every waiting request. N concurrent
//! one-event requests therefore cost far fewer than N commits. A full queue answers 503.
//! On shutdown the writer finishes what is queued before it exits.
//!
//! [`Limits::group_events`]: crate::config::Limits::group_events

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::WriteJob;
use crate::db::ingest::Outcome;
use crate::db::{DbError, Store};
use crate::error::is_storage_failure;
use crate::metrics::Metrics;
use crate::task;

/// The answer to one submitted request: the outcome of each element, in request order.
pub(crate) type WriteResult = Result<Vec<Outcome>, DbError>;

struct Pending {
    job: WriteJob,
    reply: oneshot::Sender<WriteResult>,
}

/// Counters of the writer, for `/metrics` and for tests that prove group commit.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Requests answered after a commit.
    pub requests: AtomicU64,
    /// Elements (events and rejected elements) written.
    pub items: AtomicU64,
    /// Groups that failed and were retried request by request.
    pub failed_groups: AtomicU64,
}

/// How long a write that failed for lack of storage keeps `/v1/healthz` at `ok: false` when no
/// later write commits. Clients retry a 503 after its `Retry-After` (5 s), so a disk that stays
/// full keeps refreshing it; with no traffic at all, health turns ok after this and the next
/// write tells again.
const STORAGE_FAILURE_TTL: Duration = Duration::from_secs(30);

/// Whether ingest writes are failing for lack of storage (disk full, read-only database, I/O
/// error: [`crate::error::is_storage_failure`]), as the writers last saw it.
#[derive(Debug, Default)]
struct WriteHealth {
    /// When the last write failed for lack of storage, unless a write committed since.
    failed_at: Mutex<Option<Instant>>,
}

impl WriteHealth {
    /// Records the outcome of one transaction.
    fn record<T>(&self, result: &Result<T, DbError>) {
        let failed = match result {
            Ok(_) => false,
            Err(e) if is_storage_failure(e) => true,
            // Another failure says nothing about the storage.
            Err(_) => return,
        };
        if let Ok(mut at) = self.failed_at.lock() {
            *at = failed.then(Instant::now);
        }
    }

    /// Whether a write failed for lack of storage less than [`STORAGE_FAILURE_TTL`] ago with
    /// no commit since.
    fn failing(&self) -> bool {
        self.failed_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < STORAGE_FAILURE_TTL)
    }
}

/// Why a request could not be queued.
#[derive(Debug)]
pub(crate) enum SubmitError {
    /// The queue is full: answer 503.
    Full,
    /// The writer has stopped (shutting down): answer 503.
    Closed,
}

/// Handle to the writer tasks.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Pending>,
    stop: watch::Sender<bool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<WriterStats>,
    health: Arc<WriteHealth>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("items", &self.job.items.len())
            .finish()
    }
}

/// The queue, shared by the writers: whoever holds the lock collects the next group.
type SharedReceiver = Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>;

impl Writer {
    /// Starts `writers` writer tasks over `store` (1 for SQLite, which has one writer anyway;
    /// a few for Postgres, so that one group commits while the next is collected).
    pub(crate) fn start(
        store: Store,
        writers: usize,
        queue_requests: usize,
        group_events: usize,
        dead_letter_raw_bytes: usize,
        rollups: bool,
        metrics: Metrics,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue_requests.max(1));
        let rx: SharedReceiver = Arc::new(tokio::sync::Mutex::new(rx));
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(WriterStats::default());
        let health = Arc::new(WriteHealth::default());
        let handles = (0..writers.max(1))
            .map(|index| {
                task::spawn(
                    "ingest-writer",
                    run(
                        store.clone(),
                        Arc::clone(&rx),
                        stop_rx.clone(),
                        Caps {
                            group_events: group_events.max(1),
                            dead_letter_raw_bytes,
                            // The writer's index: two writers never update one rollup row.
                            shard: rollups.then(|| i16::try_from(index).unwrap_or(i16::MAX)),
                        },
                        Arc::clone(&stats),
                        Arc::clone(&health),
                        metrics.clone(),
                    ),
                )
            })
            .collect();
        Writer {
            tx,
            stop,
            handles: Mutex::new(handles),
            stats,
            health,
        }
    }

    /// Queues a request's elements; the receiver yields the results after the commit.
    pub(crate) fn submit(
        &self,
        job: WriteJob,
    ) -> Result<oneshot::Receiver<WriteResult>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { job, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        Ok(rx)
    }

    /// The writers' counters.
    pub(crate) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Whether ingest writes are failing for lack of storage (disk full, read-only, I/O
    /// error): the last such failure is under 30 s old and no write committed since.
    pub(crate) fn writes_failing(&self) -> bool {
        self.health.failing()
    }

    /// Requests waiting in the queue.
    pub(crate) fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Tells the writers to finish what is queued and stop, and waits for them.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handles = self
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for handle in handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "ingest writer task failed");
            }
        }
    }
}

/// A writer's size limits.
#[derive(Debug, Clone, Copy)]
struct Caps {
    /// Most elements taken into one group.
    group_events: usize,
    /// Most bytes of raw JSON one dead letter stores.
    dead_letter_raw_bytes: usize,
    /// The `shard` of this writer's rollup rows; `None`: no rollup maintenance (benchmarks).
    shard: Option<i16>,
}

async fn run(
    store: Store,
    rx: SharedReceiver,
    mut stop: watch::Receiver<bool>,
    caps: Caps,
    stats: Arc<WriterStats>,
    health: Arc<WriteHealth>,
    metrics: Metrics,
) {
    let Caps { group_events, .. } = caps;
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                biased;
                p = rx.recv() => p,
                _ = stop.changed() => None,
            };
            match first {
                Some(first) => take_group(first, &mut rx, group_events),
                None => break,
            }
        };
        write(&store, group, caps, &stats, &health, &metrics).await;
    }
    // Shutting down: refuse new work, finish what is queued.
    loop {
        let group = {
            let mut rx = rx.lock().await;
            rx.close();
            match rx.try_recv() {
                Ok(first) => take_group(first, &mut rx, group_events),
                Err(_) => break,
            }
        };
        write(&store, group, caps, &stats, &health, &metrics).await;
    }
    tracing::debug!("ingest writer drained and stopped");
}

/// `first` plus whatever is already queued, up to `group_events` elements.
fn take_group(
    first: Pending,
    rx: &mut mpsc::Receiver<Pending>,
    group_events: usize,
) -> Vec<Pending> {
    let mut n = first.job.items.len();
    let mut group = vec![first];
    while n < group_events {
        match rx.try_recv() {
            Ok(p) => {
                n += p.job.items.len();
                group.push(p);
            }
            Err(_) => break,
        }
    }
    group
}

/// Writes one group (dead letters cut to `caps.dead_letter_raw_bytes` bytes, rollups in rows
/// of `caps.shard`) and answers its requests; each job, with its share of the in-flight
/// budget, is dropped once its request is answered.
async fn write(
    store: &Store,
    group: Vec<Pending>,
    caps: Caps,
    stats: &WriterStats,
    health: &WriteHealth,
    metrics: &Metrics,
) {
    let (jobs, replies): (Vec<WriteJob>, Vec<oneshot::Sender<WriteResult>>) =
        group.into_iter().map(|p| (p.job, p.reply)).unzip();
    let items: usize = jobs.iter().map(|j| j.items.len()).sum();
    let (cap, shard) = (caps.dead_letter_raw_bytes, caps.shard);
    let written = store.write_group(&jobs, cap, shard).await;
    health.record(&written);
    match written {
        Ok(results) => {
            metrics.group_committed(&jobs, &results);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .requests
                .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            stats.items.fetch_add(items as u64, Ordering::Relaxed);
            for (reply, result) in replies.into_iter().zip(results) {
                // The client may have gone away; its events are stored either way.
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) if jobs.len() > 1 => {
            // One bad request must not fail its neighbours: retry each alone.
            stats.failed_groups.fetch_add(1, Ordering::Relaxed);
            metrics.commit_failed();
            tracing::warn!(error = %e, requests = jobs.len(), "group commit failed; retrying one by one");
            for (job, reply) in jobs.into_iter().zip(replies) {
                let n = job.items.len() as u64;
                let one = [job];
                let result = store.write_group(&one, cap, shard).await;
                health.record(&result);
                match &result {
                    Ok(r) => metrics.group_committed(&one, r),
                    Err(_) => metrics.commit_failed(),
                }
                let result = result.map(|mut r| r.pop().unwrap_or_default());
                if result.is_ok() {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    stats.items.fetch_add(n, Ordering::Relaxed);
                }
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            metrics.commit_failed();
            // A group of one request: that request gets the error.
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}
