//! The one place the server spawns tasks: named, instrumented with a span.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::Instrument;

/// Spawns `fut` on the runtime inside a span named after the task.
#[expect(clippy::disallowed_methods, reason = "this is the named spawn helper")]
pub(crate) fn spawn<F>(name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.instrument(tracing::info_span!("task", name)))
}
