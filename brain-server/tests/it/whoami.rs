//! `GET /v1/whoami`: the customer and key id a customer key authenticates; 401 in the error
//! envelope for a missing, malformed, unknown or revoked key.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, assert_error, limits, spawn_app_with, tool_call};

both!(whoami_names_the_keys_customer_and_refuses_bad_keys);

/// `GET /v1/whoami` with `key` (none: no `Authorization`): (status, JSON body).
async fn whoami(app: &TestApp, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = app.client.get(app.url("/v1/whoami"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// A good key is answered 200 with its customer and key id (and costs one request of its
/// rate limit, no more: with a burst of 3, two ingest requests still pass after it); a second
/// customer's key names that customer; an unknown, a malformed, a missing and a revoked key
/// (within 5 s) are 401 `unauthorized`. Before: 404 `not_found` for every key.
async fn whoami_names_the_keys_customer_and_refuses_bad_keys(backend: Backend) {
    let opts = Options {
        limits: limits(1, 3),
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    let acme_key_id = app.store().list_keys(Some("acme")).await.unwrap()[0]
        .key_id
        .clone();
    let globex_key_id = app.store().list_keys(Some("globex")).await.unwrap()[0]
        .key_id
        .clone();

    let (status, body) = whoami(&app, Some(&acme)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let who: brain_server::WhoAmI = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        who,
        brain_server::WhoAmI {
            customer_id: "acme".to_owned(),
            key_id: acme_key_id.clone(),
        }
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    for _ in 0..2 {
        let resp = app
            .post_events(&acme, &tool_call("agent_a", "Bash", true, 1))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "whoami took one request at most"
        );
    }

    let (status, body) = whoami(&app, Some(&globex)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customer_id"], "globex");
    assert_eq!(body["key_id"], globex_key_id.as_str());

    for bad in [
        Some("m8brain_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
        Some("not-a-key"),
        None,
    ] {
        let (status, body) = whoami(&app, bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_error(&body, "unauthorized");
    }

    app.store()
        .revoke_key(&globex_key_id, "test")
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let (status, body) = whoami(&app, Some(&globex)).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_error(&body, "unauthorized");
            break;
        }
        // Polled faster than the key's 1/s: 429 until the revocation bites.
        assert!(
            matches!(status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS),
            "{status}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "revoked key still answered after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}
