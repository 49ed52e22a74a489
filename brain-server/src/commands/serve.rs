//! `brain-server serve` (the default command): bind, open and migrate the database, serve
//! until SIGTERM or ctrl-c, drain, exit.

use anyhow::Context as _;

use super::UserError;
use crate::config::ServerConfig;

/// Serves HTTP until a shutdown signal, then drains and closes the database.
///
/// # Errors
/// [`UserError`] when the address cannot be bound; any other error for failures.
/// With `retention_days` > 0, raw events older than that are pruned at start-up and daily
/// (`super::prune`).
pub(super) async fn serve(config: ServerConfig, retention_days: u32) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| UserError(format!("cannot listen on {}: {e}", config.listen)))?;
    let store = crate::open_store(&config.db).await?;
    rebuild_missing_rollups(&store).await?;
    let state = crate::build_state(store.clone(), &config, &config.db.data_dir)?;
    let retention = super::prune::start_daily(store.clone(), retention_days);
    tracing::info!(listen = %config.listen, "brain-server listening");
    let served = crate::run(listener, state, shutdown_signal())
        .await
        .context("serving HTTP");
    if let Some(r) = retention {
        r.abort();
    }
    served?;
    store.close().await;
    tracing::info!("brain-server stopped");
    Ok(())
}

/// Fills the rollups of a database written before they existed (events, but no rollups).
///
/// # Errors
/// When the database cannot be read or written.
async fn rebuild_missing_rollups(store: &crate::Store) -> anyhow::Result<()> {
    if !store
        .rollups_missing()
        .await
        .context("checking whether the rollups need building")?
    {
        return Ok(());
    }
    tracing::info!("events are stored but the rollups are empty: rebuilding them from events");
    let r = store
        .rebuild_rollups()
        .await
        .context("building the rollups from events")?;
    tracing::info!(
        events = r.events,
        rows = r.rows,
        "rebuilt the rollups from events"
    );
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
