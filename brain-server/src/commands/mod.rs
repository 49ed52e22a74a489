//! The operator commands of SPEC §5, one module per command family: `serve` (the HTTP
//! server), `migrate` (here), `keys` (`mint-key`, `rotate-key`, `revoke-key`, `keys`),
//! `customers` (`customers create`, `customers list`), `dead_letters` (`dead-letters list`,
//! `dead-letters requeue`), `audit`, `export`, `prune`, `rollups` (`rollups verify`, `rollups rebuild`). This
//! module dispatches and owns the one function that writes to stdout.
//!
//! The commands that change something go through the same [`crate::db::Store`] functions as
//! the admin API (`routes/admin.rs`), and their audit entries name the operator (`actor`: `cli:<unix user>`).

mod audit;
mod customers;
mod dead_letters;
mod export;
mod keys;
mod prune;
mod rollups;
mod serve;

use std::io::{self, Write};

use anyhow::Context as _;

use crate::cli::{Cli, Command, CustomersCommand, DeadLettersCommand, RollupsCommand};
use crate::config::{DbConfig, ServerConfig};

/// An error caused by the operator's input (exit code 1), as opposed to a failure (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Who the audit log names for actions taken from the command line: `cli:<user>`, the user
/// the process runs as. The uid is read from the owner of `/proc/self` and named from
/// `/etc/passwd` (`cli:uid=<n>` when it has no entry there); `$USER`, which anyone can set to
/// anything, is not used.
pub(super) fn actor() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata("/proc/self") else {
        return "cli:unknown".to_owned();
    };
    let uid = meta.uid();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?.parse::<u32>().ok()?;
                (id == uid && !name.is_empty()).then(|| name.to_owned())
            })
        });
    match name {
        Some(name) => format!("cli:{name}"),
        None => format!("cli:uid={uid}"),
    }
}

/// Runs the command `cli` names (default `serve`).
///
/// # Errors
/// [`UserError`] for bad input (unknown key id, bad key environment, bad address), any other
/// error for failures.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let db = DbConfig::from_cli(&cli);
    match &cli.command {
        None | Some(Command::Serve) => {
            serve::serve(
                ServerConfig::from_cli(&cli),
                cli.retention_days.unwrap_or(0),
            )
            .await
        }
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
        Some(Command::RotateKey {
            customer_id,
            label,
            key_env,
        }) => keys::rotate(&db, customer_id, label.as_deref(), key_env.as_deref()).await,
        Some(Command::RevokeKey { key_id }) => keys::revoke(&db, key_id).await,
        Some(Command::Keys { customer_id, json }) => {
            keys::list(&db, customer_id.as_deref(), *json).await
        }
        Some(Command::Customers {
            action:
                CustomersCommand::Create {
                    customer_id,
                    name,
                    label,
                    key_env,
                },
        }) => customers::create(&db, customer_id, name, label.as_deref(), key_env).await,
        Some(Command::Customers {
            action: CustomersCommand::List { json },
        }) => customers::list(&db, *json).await,
        Some(Command::DeadLetters {
            action:
                DeadLettersCommand::List {
                    customer,
                    reason,
                    limit,
                    json,
                },
        }) => dead_letters::list(&db, customer.clone(), reason.clone(), *limit, *json).await,
        Some(Command::DeadLetters {
            action: DeadLettersCommand::Requeue { id },
        }) => dead_letters::requeue(&db, *id).await,
        Some(Command::Audit { limit, json }) => audit::list(&db, *limit, *json).await,
        Some(Command::Export {
            format,
            since,
            until,
            customer,
            event_type,
            out,
        }) => {
            let filter = crate::db::ExportFilter {
                since: *since,
                until: *until,
                customer_id: customer.clone(),
                event_type: event_type.clone(),
            };
            export::run(&db, format, filter, out.as_deref()).await
        }
        Some(Command::Prune { older_than_days }) => {
            prune::run(&db, older_than_days.or(cli.retention_days)).await
        }
        Some(Command::Rollups {
            action: RollupsCommand::Verify,
        }) => rollups::verify(&db).await,
        Some(Command::Rollups {
            action: RollupsCommand::Rebuild,
        }) => rollups::rebuild(&db).await,
    }
}

/// `value` as pretty JSON and a newline, for `--json`.
pub(super) fn json_text(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    text.push('\n');
    Ok(text)
}

/// A time as the tables print it: RFC 3339, UTC, whole seconds.
pub(super) fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The page size `--limit` asks for: 1–1000.
pub(super) fn checked_limit(limit: u32) -> Result<i64, UserError> {
    let max = shared_proto::admin::MAX_PAGE_LIMIT;
    if (1..=max).contains(&limit) {
        Ok(i64::from(limit))
    } else {
        Err(UserError(format!("--limit must be between 1 and {max}")))
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
