//! The HTTP server loop: accepts connections under a limit, serves each with hyper's HTTP/1
//! under a header read timeout, and drains within a bound on shutdown.
//!
//! `axum::serve` bounds none of these, so one slow or idle client per open file could take
//! the server down. Here:
//!
//! - at most [`Limits::max_connections`] connections are served at once; the loop accepts the
//!   next one only when a slot is free, so the others wait in the kernel's listen backlog
//!   (no open file, no `accept` failing for lack of them);
//! - a request's headers must arrive within [`Limits::header_read_timeout`], which hyper
//!   also applies to a kept-alive connection waiting for its next request, so an idle or
//!   trickling connection is closed (the body has its own timeout, `ingest/body.rs`);
//! - on shutdown the loop stops accepting, asks every connection to finish its request in
//!   flight and close, waits at most [`Limits::shutdown_drain`], then closes the ones still
//!   open. A request cut off there was never answered, so its client keeps the events and
//!   sends them again (a duplicate if they were committed meanwhile).
//!
//! [`Limits::max_connections`]: crate::config::Limits::max_connections
//! [`Limits::header_read_timeout`]: crate::config::Limits::header_read_timeout
//! [`Limits::shutdown_drain`]: crate::config::Limits::shutdown_drain

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Limits;
use crate::task;

/// hyper's read buffer per connection, in bytes: bounds a request head (64 KiB).
const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// Open files kept for everything but client connections (database pool, SQLite and WAL
/// files, logs) when the connection limit is fitted under the open-files limit.
const RESERVED_FILES: usize = 128;

/// How long the loop pauses after `accept` fails (e.g. out of open files) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections being served now, for `/metrics` and tests.
#[derive(Debug, Default)]
pub(crate) struct ConnectionGauge(AtomicUsize);

impl ConnectionGauge {
    /// Connections open now.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts one open connection while it lives.
struct Open(Arc<ConnectionGauge>);

impl Open {
    fn new(gauge: &Arc<ConnectionGauge>) -> Self {
        gauge.0.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(gauge))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    gauge: Arc<ConnectionGauge>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max_connections = connection_limit(limits.max_connections, open_files_limit());
    tracing::info!(max_connections, "serving HTTP");
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A request head over this is refused by hyper with a bare 431; up to it, the router
        // answers oversized targets and headers in the error envelope (`routes/mod.rs`).
        .max_buf_size(MAX_HEAD_BUFFER);
    let graceful = GracefulShutdown::new();
    // Closes the connections still open when the drain time is up.
    let (close_all, closing) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let open = Open::new(&gauge);
        let mut closing = closing.clone();
        task::spawn("http-connection", async move {
            tokio::select! {
                served = conn => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = closing.wait_for(|close| *close) => {
                    tracing::debug!("connection closed at the end of the shutdown drain");
                }
            }
            drop((slot, open));
        });
    }
    drop(listener);
    let open = gauge.get();
    if open > 0 {
        tracing::info!(connections = open, "draining connections");
    }
    if tokio::time::timeout(limits.shutdown_drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = gauge.get(),
            drain_s = limits.shutdown_drain.as_secs_f64(),
            "shutdown drain time is up; closing the connections still open"
        );
        let _ = close_all.send(true);
    }
}

/// `configured`, kept under the open-files limit `open_files` (less [`RESERVED_FILES`]) when
/// that is known: with more connections than open files, `accept` fails and nobody is
/// served. At least 1.
fn connection_limit(configured: usize, open_files: Option<usize>) -> usize {
    let fitted = match open_files {
        Some(files) => configured.min(files.saturating_sub(RESERVED_FILES)),
        None => configured,
    };
    fitted.max(1)
}

/// This process's soft limit on open files (`Max open files` in `/proc/self/limits`); `None`
/// when it is unlimited or cannot be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{RESERVED_FILES, connection_limit, open_files_limit};

    #[test]
    fn the_connection_limit_fits_under_the_open_files_limit() {
        assert_eq!(connection_limit(4096, Some(1024)), 1024 - RESERVED_FILES);
        assert_eq!(connection_limit(4096, Some(65536)), 4096);
        assert_eq!(connection_limit(4, Some(1024)), 4);
        assert_eq!(connection_limit(4096, None), 4096);
        assert_eq!(connection_limit(4096, Some(10)), 1);
        // This process has a limit, and it is read.
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
