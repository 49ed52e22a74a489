//! `brain-server customers create` and `customers list`: customers from the command line, as
//! `POST /admin/customers` and `GET /admin/customers` (the same store functions and rules).

use anyhow::Context as _;
use shared_proto::KeyEnv;
use shared_proto::admin::{CustomerId, CustomerList, check_customer_name, check_key_label};

use super::keys::print_minted;
use super::{UserError, actor, json_text, out, time_text};
use crate::config::DbConfig;

/// Creates the customer `customer_id` named `name` with its first key and prints the key's
/// plaintext as one line.
///
/// # Errors
/// [`UserError`] when the customer exists or an argument breaks its rule; any other error for
/// failures.
pub(super) async fn create(
    db: &DbConfig,
    customer_id: &str,
    name: &str,
    label: Option<&str>,
    key_env: &str,
) -> anyhow::Result<()> {
    let id = CustomerId::parse(customer_id).map_err(|e| UserError(e.to_string()))?;
    check_customer_name(name).map_err(|e| UserError(e.to_string()))?;
    if let Some(l) = label {
        check_key_label(l).map_err(|e| UserError(format!("--label: {e}")))?;
    }
    let env = KeyEnv::parse(key_env).map_err(|e| UserError(format!("--env {key_env}: {e}")))?;
    let store = crate::open_store(db).await?;
    let created = store
        .create_customer(id.as_str(), name, label, &env, &actor())
        .await
        .context("creating the customer");
    store.close().await;
    match created? {
        Some(minted) => print_minted(&minted),
        None => Err(UserError(format!(
            "customer {id} exists (`brain-server rotate-key {id}` mints another key)"
        ))
        .into()),
    }
}

/// Prints every customer with its key counts: a tab-separated table, or with `json` the body
/// `GET /admin/customers` answers.
///
/// # Errors
/// When the database cannot be read or stdout written.
pub(super) async fn list(db: &DbConfig, json: bool) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let customers = store.list_customers(None).await;
    store.close().await;
    let customers = customers.context("listing customers")?;
    if json {
        let list = CustomerList {
            customers: customers.into_iter().map(Into::into).collect(),
        };
        return out(&json_text(&list)?);
    }
    let mut text = String::from("customer_id\tname\tcreated_at\tlive_keys\tkeys\n");
    for c in customers {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            c.customer_id,
            c.name,
            time_text(c.created_at),
            c.live_keys,
            c.keys
        ));
    }
    out(&text)
}
