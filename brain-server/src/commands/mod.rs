//! The operator commands of SPEC §5, one module per command family: `serve` (the HTTP
//! server), `migrate` (here), `keys` (`mint-key`, `revoke-key`, `keys`), `rollups`
//! (`rollups verify`, `rollups rebuild`). This module
//! dispatches and owns the one function that writes to stdout.

mod keys;
mod rollups;
mod serve;

use std::io::{self, Write};

use anyhow::Context as _;

use crate::cli::{Cli, Command, RollupsCommand};
use crate::config::{DbConfig, ServerConfig};

/// An error caused by the operator's input (exit code 1), as opposed to a failure (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Who the audit log names for actions taken from the command line.
pub(super) const ACTOR: &str = "cli";

/// Runs the command `cli` names (default `serve`).
///
/// # Errors
/// [`UserError`] for bad input (unknown key id, bad key environment, bad address), any other
/// error for failures.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let db = DbConfig::from_cli(&cli);
    match &cli.command {
        None | Some(Command::Serve) => serve::serve(ServerConfig::from_cli(&cli)).await,
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
        }) => keys::mint(&db, customer_id, name, label.as_deref(), key_env).await,
        Some(Command::RevokeKey { key_id }) => keys::revoke(&db, key_id).await,
        Some(Command::Keys { customer_id }) => keys::list(&db, customer_id.as_deref()).await,
        Some(Command::Rollups {
            action: RollupsCommand::Verify,
        }) => rollups::verify(&db).await,
        Some(Command::Rollups {
            action: RollupsCommand::Rebuild,
        }) => rollups::rebuild(&db).await,
    }
}

/// Writes to stdout; a closed pipe (`brain-server keys | head`) counts as success.
pub(super) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
