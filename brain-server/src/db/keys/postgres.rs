//! The Postgres statements of the keys domain (`TIMESTAMPTZ` times).

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::{AuthKey, CustomerMode, CustomerRow, KeyInfo, KeyRow, MintDone, NewKey, audit_action};
use crate::db::DbError;
use crate::db::admin::postgres::insert_audit;

/// Mints `k` for its customer, treating the customer as `mode` says, and writes the audit
/// entry, in one transaction (nothing is written when the mint is refused).
pub(super) async fn mint_key(
    pool: &PgPool,
    mode: CustomerMode<'_>,
    k: &NewKey,
    actor: &str,
) -> Result<MintDone, DbError> {
    let mut tx = pool.begin().await?;
    let created = match mode {
        CustomerMode::New(name) | CustomerMode::CreateOrUse(name) => {
            sqlx::query(
                "INSERT INTO customers (customer_id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO NOTHING",
            )
            .bind(&k.customer_id)
            .bind(name)
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
        CustomerMode::Existing => false,
    };
    if matches!(mode, CustomerMode::New(_)) && !created {
        return Ok(MintDone::Exists);
    }
    let stored_name: Option<String> =
        sqlx::query_scalar("SELECT name FROM customers WHERE customer_id = $1")
            .bind(&k.customer_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(stored_name) = stored_name else {
        return Ok(MintDone::NoCustomer);
    };
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL",
    )
    .bind(&k.customer_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO api_keys (key_id, customer_id, key_hash, env, label, last4, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.key_id)
    .bind(&k.customer_id)
    .bind(k.key_hash.as_str())
    .bind(&k.env)
    .bind(&k.label)
    .bind(&k.last4)
    .bind(k.created_at)
    .execute(&mut *tx)
    .await?;
    let rotated = live > 0;
    let mut params = json!({
        "customer_id": k.customer_id, "key_id": k.key_id, "label": k.label,
        "env": k.env, "last4": k.last4, "customer_created": created,
    });
    if let CustomerMode::New(name) | CustomerMode::CreateOrUse(name) = mode {
        params["name"] = json!(name);
    }
    insert_audit(&mut tx, actor, audit_action(mode, rotated), &params).await?;
    tx.commit().await?;
    Ok(MintDone::Minted {
        customer_created: created,
        rotated,
        stored_name,
    })
}

pub(super) async fn revoke_key(
    pool: &PgPool,
    key_id: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<KeyInfo>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<KeyRow<DateTime<Utc>>> = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 \
         RETURNING key_id, customer_id, env, label, last4, created_at, revoked_at",
    )
    .bind(key_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = &row {
        insert_audit(
            &mut tx,
            actor,
            "revoke",
            &json!({
                "key_id": key_id, "customer_id": r.customer_id,
                "already_revoked": r.revoked_at != Some(now),
            }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row.map(Into::into))
}

pub(super) async fn list_keys(
    pool: &PgPool,
    customer_id: Option<&str>,
) -> Result<Vec<KeyInfo>, DbError> {
    let rows: Vec<KeyRow<DateTime<Utc>>> = sqlx::query_as(
        "SELECT key_id, customer_id, env, label, last4, created_at, revoked_at FROM api_keys \
         WHERE ($1::text IS NULL OR customer_id = $1) ORDER BY created_at, key_id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn find_live_key(pool: &PgPool, hash: &str) -> Result<Option<AuthKey>, DbError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT key_id, customer_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(key_id, customer_id)| AuthKey {
        key_id,
        customer_id,
    }))
}

pub(super) async fn newest_key_env(
    pool: &PgPool,
    customer_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT env FROM api_keys WHERE customer_id = $1 ORDER BY created_at DESC, key_id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn customers(
    pool: &PgPool,
    customer_id: Option<&str>,
) -> Result<Vec<CustomerRow<DateTime<Utc>>>, DbError> {
    Ok(sqlx::query_as(
        "SELECT c.customer_id, c.name, c.created_at, \
           (SELECT COUNT(*) FROM api_keys k WHERE k.customer_id = c.customer_id AND k.revoked_at IS NULL) AS live_keys, \
           (SELECT COUNT(*) FROM api_keys k WHERE k.customer_id = c.customer_id) AS keys \
         FROM customers c WHERE ($1::text IS NULL OR c.customer_id = $1) ORDER BY c.customer_id",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?)
}
