//! `brain-server mint-key`, `rotate-key`, `revoke-key` and `keys`: API keys from the command
//! line. The plaintext of a minted key is printed once, on stdout, and stored nowhere.

use anyhow::Context as _;
use shared_proto::KeyEnv;
use shared_proto::admin::{KeySummary, check_key_label};

use super::{UserError, actor, json_text, out, time_text};
use crate::config::DbConfig;
use crate::db::{DbError, MintedKey};

/// `label`, checked as the admin API checks it.
fn checked_label(label: Option<&str>) -> Result<Option<&str>, UserError> {
    if let Some(l) = label {
        check_key_label(l).map_err(|e| UserError(format!("--label: {e}")))?;
    }
    Ok(label)
}

/// `key_env`, parsed.
fn parse_env(key_env: &str) -> Result<KeyEnv, UserError> {
    KeyEnv::parse(key_env).map_err(|e| UserError(format!("--env {key_env}: {e}")))
}

/// Logs what was minted (stderr) and prints the plaintext as one line (stdout).
pub(super) fn print_minted(minted: &MintedKey) -> anyhow::Result<()> {
    tracing::info!(
        key_id = %minted.key_id,
        customer_id = %minted.customer_id,
        customer_created = minted.customer_created,
        rotation = minted.rotated,
        "minted an API key; it is shown once, on stdout"
    );
    out(&format!("{}\n", minted.api_key.expose()))
}

/// Mints a key for `customer_id` (created, named `name`, when missing) and prints its
/// plaintext as one line. An existing customer keeps its stored name: a different `name` is
/// reported on stderr, and the key is minted all the same (the name is only what the
/// dashboard shows; the operator asked for a key).
///
/// # Errors
/// [`UserError`] for a bad `--env` or `--label` or an empty customer id; any other error for
/// failures.
pub(super) async fn mint(
    db: &DbConfig,
    customer_id: &str,
    name: &str,
    label: Option<&str>,
    key_env: &str,
) -> anyhow::Result<()> {
    let env = parse_env(key_env)?;
    let label = checked_label(label)?;
    if customer_id.is_empty() {
        return Err(UserError("customer_id must not be empty".to_owned()).into());
    }
    let store = crate::open_store(db).await?;
    let minted = store
        .mint_key(customer_id, name, label, &env, &actor())
        .await
        .context("minting the key");
    store.close().await;
    let minted = minted?;
    if !minted.customer_created && minted.stored_name != name {
        tracing::warn!(
            "customer {customer_id} exists with the name {:?}; the name {name:?} given is ignored \
             (the stored name is kept) and the key is minted for the existing customer",
            minted.stored_name
        );
    }
    print_minted(&minted)
}

/// Mints another key for the existing customer `customer_id` and prints its plaintext.
///
/// # Errors
/// [`UserError`] for an unknown customer or a bad `--env`/`--label`; any other error for
/// failures.
pub(super) async fn rotate(
    db: &DbConfig,
    customer_id: &str,
    label: Option<&str>,
    key_env: Option<&str>,
) -> anyhow::Result<()> {
    let env = key_env.map(parse_env).transpose()?;
    let label = checked_label(label)?;
    let store = crate::open_store(db).await?;
    let minted = store
        .rotate_key(customer_id, label, env.as_ref(), &actor())
        .await
        .context("minting the key");
    store.close().await;
    match minted? {
        Some(minted) => print_minted(&minted),
        None => Err(UserError(format!(
            "no customer {customer_id} (see `brain-server customers list`; `customers create` makes one)"
        ))
        .into()),
    }
}

/// Revokes the key `key_id`.
///
/// # Errors
/// [`UserError`] when there is no such key; any other error for failures.
pub(super) async fn revoke(db: &DbConfig, key_id: &str) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let result = store.revoke_key(key_id, &actor()).await;
    store.close().await;
    match result {
        Ok(k) => out(&format!(
            "revoked {} (customer {}) at {}\n",
            k.key_id,
            k.customer_id,
            k.revoked_at.map(time_text).unwrap_or_default()
        )),
        Err(DbError::NotFound(_)) => Err(UserError(format!("no key with id {key_id}")).into()),
        Err(e) => Err(e).context("revoking the key"),
    }
}

/// Prints the keys (never plaintext) of one customer or of all: a tab-separated table, or
/// with `json` an array of the key objects `GET /admin/customers/{id}/keys` answers.
///
/// # Errors
/// [`UserError`] when `customer_id` names no customer; any other error when the database
/// cannot be read or stdout written.
pub(super) async fn list(
    db: &DbConfig,
    customer_id: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let keys = async {
        if let Some(id) = customer_id
            && store.customer(id).await?.is_none()
        {
            return Ok(None);
        }
        store.list_keys(customer_id).await.map(Some)
    }
    .await;
    store.close().await;
    let Some(keys) = keys.context("listing keys")? else {
        return Err(UserError(format!(
            "no customer {} (see `brain-server customers list`)",
            customer_id.unwrap_or_default()
        ))
        .into());
    };
    if json {
        let keys: Vec<KeySummary> = keys.into_iter().map(Into::into).collect();
        return out(&json_text(&keys)?);
    }
    let mut text = String::from("key_id\tcustomer_id\tenv\tlabel\tlast4\tcreated_at\trevoked_at\n");
    for k in keys {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            k.key_id,
            k.customer_id,
            k.env,
            k.label.unwrap_or_default(),
            k.last4,
            time_text(k.created_at),
            k.revoked_at.map(time_text).unwrap_or_default(),
        ));
    }
    out(&text)
}
