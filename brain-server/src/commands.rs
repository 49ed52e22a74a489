//! The operator commands of SPEC §5 (`serve`, `migrate`, `mint-key`, `revoke-key`, `keys`)
//! and the one module that writes to stdout.

use std::io::{self, Write};

use anyhow::Context as _;
use shared_proto::KeyEnv;

use crate::cli::{Cli, Command};
use crate::config::{DbConfig, ServerConfig};
use crate::db::DbError;

/// An error caused by the operator's input (exit code 1), as opposed to a failure (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Who the audit log names for actions taken from the command line.
const ACTOR: &str = "cli";

/// Runs the command `cli` names (default `serve`).
///
/// # Errors
/// [`UserError`] for bad input (unknown key id, bad key environment, bad address), any other
/// error for failures.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let db = DbConfig::from_cli(&cli);
    match &cli.command {
        None | Some(Command::Serve) => serve(ServerConfig::from_cli(&cli)).await,
        Some(Command::Migrate) => {
            let store = crate::open_store(&db).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::MintKey {
            customer_id,
            name,
            label,
            key_env,
        }) => {
            let env =
                KeyEnv::parse(key_env).map_err(|e| UserError(format!("--env {key_env}: {e}")))?;
            if customer_id.is_empty() {
                return Err(UserError("customer_id must not be empty".to_owned()).into());
            }
            let store = crate::open_store(&db).await?;
            let minted = store
                .mint_key(customer_id, name, label.as_deref(), &env, ACTOR)
                .await
                .context("minting the key")?;
            store.close().await;
            tracing::info!(
                key_id = %minted.key_id,
                customer_id = %minted.customer_id,
                customer_created = minted.customer_created,
                rotation = minted.rotated,
                "minted an API key; it is shown once, on stdout"
            );
            out(&format!("{}\n", minted.api_key.expose()))
        }
        Some(Command::RevokeKey { key_id }) => {
            let store = crate::open_store(&db).await?;
            let result = store.revoke_key(key_id, ACTOR).await;
            store.close().await;
            match result {
                Ok(k) => out(&format!(
                    "revoked {} (customer {})\n",
                    k.key_id, k.customer_id
                )),
                Err(DbError::NotFound(_)) => {
                    Err(UserError(format!("no key with id {key_id}")).into())
                }
                Err(e) => Err(e).context("revoking the key"),
            }
        }
        Some(Command::Keys { customer_id }) => {
            let store = crate::open_store(&db).await?;
            let keys = store
                .list_keys(customer_id.as_deref())
                .await
                .context("listing keys")?;
            store.close().await;
            let mut text =
                String::from("key_id\tcustomer_id\tenv\tlabel\tlast4\tcreated_at\trevoked_at\n");
            for k in keys {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    k.key_id,
                    k.customer_id,
                    k.env,
                    k.label.unwrap_or_default(),
                    k.last4,
                    k.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    k.revoked_at
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default(),
                ));
            }
            out(&text)
        }
    }
}

/// Writes to stdout; a closed pipe (`brain-server keys | head`) counts as success.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| UserError(format!("cannot listen on {}: {e}", config.listen)))?;
    let store = crate::open_store(&config.db).await?;
    let state = crate::build_state(store.clone(), &config, &config.db.data_dir)?;
    tracing::info!(listen = %config.listen, "brain-server listening");
    crate::run(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    store.close().await;
    tracing::info!("brain-server stopped");
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
