//! `GET /v1/whoami` (customer key): which customer and key a bearer key authenticates, so
//! that a box can check its key (`brain-emit doctor`) without sending an event.

use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::CustomerKey;

/// What `GET /v1/whoami` answers: the identity a live customer key authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The customer the key authenticates (the customer every event it sends is stored under).
    pub customer_id: String,
    /// The key's id (`key_<32 hex>`), as `brain-server keys` lists it and `revoke-key` takes it.
    pub key_id: String,
}

/// 200 with the key's customer and id. The key is checked as on ingest (401 when missing,
/// malformed, unknown or revoked; revocation bites within 5 s) and the request takes one
/// request of the key's rate limit, as one ingest request would (429 past it).
pub(crate) async fn get_whoami(key: CustomerKey) -> Json<WhoAmI> {
    Json(WhoAmI {
        customer_id: key.customer_id,
        key_id: key.key_id,
    })
}
