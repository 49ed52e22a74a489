//! `brain-server mint-key`, `revoke-key` and `keys`: API keys from the command line. The
//! plaintext of a minted key is printed once, on stdout, and stored nowhere.

use anyhow::Context as _;
use shared_proto::KeyEnv;

use super::{ACTOR, UserError, out};
use crate::config::DbConfig;
use crate::db::DbError;

/// Mints a key for `customer_id` (created, named `name`, when missing) and prints its
/// plaintext as one line.
///
/// # Errors
/// [`UserError`] for a bad `--env` or an empty customer id; any other error for failures.
pub(super) async fn mint(
    db: &DbConfig,
    customer_id: &str,
    name: &str,
    label: Option<&str>,
    key_env: &str,
) -> anyhow::Result<()> {
    let env = KeyEnv::parse(key_env).map_err(|e| UserError(format!("--env {key_env}: {e}")))?;
    if customer_id.is_empty() {
        return Err(UserError("customer_id must not be empty".to_owned()).into());
    }
    let store = crate::open_store(db).await?;
    let minted = store
        .mint_key(customer_id, name, label, &env, ACTOR)
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

/// Revokes the key `key_id`.
///
/// # Errors
/// [`UserError`] when there is no such key; any other error for failures.
pub(super) async fn revoke(db: &DbConfig, key_id: &str) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let result = store.revoke_key(key_id, ACTOR).await;
    store.close().await;
    match result {
        Ok(k) => out(&format!(
            "revoked {} (customer {})\n",
            k.key_id, k.customer_id
        )),
        Err(DbError::NotFound(_)) => Err(UserError(format!("no key with id {key_id}")).into()),
        Err(e) => Err(e).context("revoking the key"),
    }
}

/// Prints the keys (never plaintext) of one customer or of all, tab-separated.
///
/// # Errors
/// When the database cannot be read or stdout written.
pub(super) async fn list(db: &DbConfig, customer_id: Option<&str>) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let keys = store.list_keys(customer_id).await.context("listing keys")?;
    store.close().await;
    let mut text = String::from("key_id\tcustomer_id\tenv\tlabel\tlast4\tcreated_at\trevoked_at\n");
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
