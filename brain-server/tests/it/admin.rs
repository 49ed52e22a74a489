//! The admin API (`/admin/*`) and its audit log, on both backends: status and body of every
//! endpoint, the audit row of every change, what changed in the database; the requeue of a
//! dead letter through the ingest writer (idempotent); and no plaintext key or admin token in
//! any column of any table after keys were minted over HTTP and from the command line.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use brain_server::Store;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ADMIN_TOKEN, Backend, Options, TestApp, assert_error, event, fresh_postgres_db, spawn_app,
    spawn_app_on_url, tool_call,
};

const BIN: &str = env!("CARGO_BIN_EXE_brain-server");

both!(
    customers_and_keys_over_http,
    bad_requests_are_refused_in_the_envelope,
    dead_letters_are_listed_and_requeued,
    no_plaintext_key_or_admin_token_anywhere_in_the_database,
    the_command_line_does_what_the_admin_api_does,
);

/// POSTs `body` (JSON, or nothing) to `path` with the admin token; (status, JSON body).
async fn admin_post(app: &TestApp, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let mut req = app.client.post(app.url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// The `brain-server` binary over the app's database.
fn cli(data_dir: &Path, db_url: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("RUST_LOG", "info")
        .env("USER", "opal")
        .env("BRAIN_DATA_DIR", data_dir);
    if let Some(url) = db_url {
        c.env("DATABASE_URL", url);
    }
    c
}

/// A running app and, on Postgres, its database URL (for the command line).
async fn app_with_url(
    backend: Backend,
) -> Option<(TestApp, Option<String>, Option<test_support::TestDb>)> {
    match backend {
        Backend::Sqlite => Some((spawn_app(backend).await?, None, None)),
        Backend::Postgres => {
            let db = fresh_postgres_db()?;
            let app = spawn_app_on_url(&db.url, Options::default()).await;
            let url = db.url.clone();
            Some((app, Some(url), Some(db)))
        }
    }
}

async fn customers_and_keys_over_http(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    // No token, a wrong token: 401 in the envelope, nothing created.
    let body = json!({"customer_id": "acme", "name": "Acme Inc"});
    let resp = app
        .client
        .post(app.url("/admin/customers"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_error(&resp.json().await.unwrap(), "unauthorized");
    let resp = app
        .client
        .get(app.url("/admin/audit"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(app.store().list_customers(None).await.unwrap().is_empty());

    // Create: 201 with the plaintext once; the key works.
    let (status, created) = admin_post(
        &app,
        "/admin/customers",
        Some(&json!({"customer_id": "acme", "name": "Acme Inc", "label": "box-1", "env": "prod"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["customer_id"], "acme");
    assert_eq!(created["label"], "box-1");
    assert_eq!(created["env"], "prod");
    let key1 = created["api_key_plaintext"].as_str().unwrap().to_owned();
    let key1_id = created["key_id"].as_str().unwrap().to_owned();
    shared_proto::ApiKey::parse(&key1).expect("a well-formed key");
    assert!(key1.starts_with("m8brain_prod_"), "{key1}");
    assert_eq!(created["last4"], key1[key1.len() - 4..]);
    let (status, res) = app
        .ingest(&key1, &json!([tool_call("agent_a", "Bash", true, 5)]))
        .await;
    assert_eq!(
        (status, res["accepted"].clone()),
        (StatusCode::OK, json!(1))
    );

    // Again: 409 customer_exists, nothing written (one key, one audit entry).
    let (status, body) = admin_post(
        &app,
        "/admin/customers",
        Some(&json!({"customer_id": "acme", "name": "Other name"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "customer_exists");
    assert_eq!(app.store().list_keys(Some("acme")).await.unwrap().len(), 1);
    let customers = app.store().list_customers(None).await.unwrap();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].name, "Acme Inc", "the stored name is kept");
    assert_eq!(app.store().audit_log(100).await.unwrap().len(), 1);

    // Rotate: 201, the environment of the newest key; then with an empty body (no label).
    let (status, rotated) = admin_post(
        &app,
        "/admin/customers/acme/keys",
        Some(&json!({"label": "box-2"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["env"], "prod");
    assert_eq!(rotated["label"], "box-2");
    let key2 = rotated["api_key_plaintext"].as_str().unwrap().to_owned();
    assert_ne!(key1, key2);
    let (status, rotated3) = admin_post(&app, "/admin/customers/acme/keys", None).await;
    assert_eq!(status, StatusCode::CREATED, "{rotated3}");
    assert_eq!(rotated3["label"], Value::Null);
    let key3 = rotated3["api_key_plaintext"].as_str().unwrap().to_owned();
    for key in [&key1, &key2, &key3] {
        let (status, _) = app
            .ingest(key, &json!([tool_call("agent_a", "Bash", true, 5)]))
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "every live key works during a rotation"
        );
    }
    let (status, body) = admin_post(&app, "/admin/customers/nope/keys", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    // List: three keys, oldest first, no plaintext, last 4 characters.
    let (status, list) = app.admin_get("/admin/customers/acme/keys").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["key_id"], key1_id.as_str());
    assert_eq!(keys[0]["label"], "box-1");
    assert_eq!(keys[0]["env"], "prod");
    assert_eq!(keys[0]["last4"], key1[key1.len() - 4..]);
    assert_eq!(keys[0]["revoked_at"], Value::Null);
    assert!(keys[0]["created_at"].is_string());
    let text = list.to_string();
    for key in [&key1, &key2, &key3] {
        assert!(!text.contains(key.as_str()), "no plaintext in a listing");
    }
    assert!(!text.contains("hash"), "no hash in a listing: {text}");
    let (status, body) = app.admin_get("/admin/customers/nope/keys").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    // Revoke: 200 with the row; again: 200 with the first revoked_at; unknown: 404.
    let (status, revoked) = admin_post(&app, &format!("/admin/keys/{key1_id}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["key_id"], key1_id.as_str());
    let revoked_at = revoked["revoked_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, again) = admin_post(&app, &format!("/admin/keys/{key1_id}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["revoked_at"], revoked_at.as_str(), "idempotent");
    let (status, body) = admin_post(&app, "/admin/keys/key_nope/revoke", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let start = Instant::now();
    loop {
        let resp = app
            .post_events(&key1, &json!([tool_call("agent_a", "Bash", true, 5)]))
            .await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "revoked key still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Customers: counts.
    let (status, customers) = app.admin_get("/admin/customers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(customers["customers"][0]["customer_id"], "acme");
    assert_eq!(customers["customers"][0]["name"], "Acme Inc");
    assert_eq!(customers["customers"][0]["keys"], 3);
    assert_eq!(customers["customers"][0]["live_keys"], 2);

    // Audit: every change, newest first, by the admin token, never a plaintext.
    let (status, audit) = app.admin_get("/admin/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["revoke", "revoke", "rotate", "rotate", "create_customer"]
    );
    assert!(
        entries.iter().all(|e| e["actor"] == "admin-token"),
        "{audit}"
    );
    assert!(entries.iter().all(|e| e["at"].is_string()));
    assert_eq!(entries[0]["params"]["already_revoked"], true);
    assert_eq!(entries[1]["params"]["already_revoked"], false);
    assert_eq!(entries[1]["params"]["key_id"], key1_id.as_str());
    assert_eq!(entries[2]["params"]["key_id"], rotated3["key_id"]);
    assert_eq!(entries[3]["params"]["label"], "box-2");
    assert_eq!(entries[4]["params"]["customer_id"], "acme");
    assert_eq!(entries[4]["params"]["name"], "Acme Inc");
    assert_eq!(entries[4]["params"]["env"], "prod");
    assert_eq!(audit["next_cursor"], Value::Null);
    let text = audit.to_string();
    for secret in [key1.as_str(), &key2, &key3, ADMIN_TOKEN] {
        assert!(!text.contains(secret), "no secret in the audit log");
    }

    // Audit pages: 2 + 2 + 1, each newest first, the same entries.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/audit?limit=2&cursor={c}"),
            None => "/admin/audit?limit=2".to_owned(),
        };
        let (status, page) = app.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let n = page["entries"].as_array().unwrap().len();
        assert!(n <= 2);
        seen.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(&seen, entries);

    app.stop().await;
}

async fn bad_requests_are_refused_in_the_envelope(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let post = |body: &'static str, content_type: &'static str| {
        let req = app
            .client
            .post(app.url("/admin/customers"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", content_type)
            .body(body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    for (body, content_type, status, code) in [
        (
            "{",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            r#"{"customer_id": "acme"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            r#"{"customer_id": "acme", "name": "A", "extra": 1}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            r#"{"customer_id": 7, "name": "A"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            r#"{"customer_id": "Acme!", "name": "A"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_customer_id",
        ),
        (
            r#"{"customer_id": "", "name": "A"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_customer_id",
        ),
        (
            r#"{"customer_id": "acme", "name": "  "}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            r#"{"customer_id": "acme", "name": "A", "env": "PROD"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_env",
        ),
        (
            r#"{"customer_id": "acme", "name": "A", "label": "a\nb"}"#,
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
        ),
        (
            r#"{"customer_id": "acme", "name": "A"}"#,
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ] {
        let (got, body) = post(body, content_type).await;
        assert_eq!(got, status, "{body}");
        assert_error(&body, code);
    }
    assert!(app.store().list_customers(None).await.unwrap().is_empty());
    assert!(app.store().audit_log(10).await.unwrap().is_empty());

    for (path, status, code) in [
        (
            "/admin/dead-letters?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/dead-letters?limit=1001",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/dead-letters?cursor=abc",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/dead-letters?since=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/dead-letters?nope=1",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/audit?limit=-1",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/admin/audit?cursor=0",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("/admin/nope", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, body) = app.admin_get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_error(&body, code);
    }
    let (status, body) = admin_post(&app, "/admin/dead-letters/abc/requeue", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_path");
    let (status, body) = admin_post(&app, "/admin/dead-letters/999/requeue", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "not_found");
    let (status, body) = app.admin_get("/admin/keys/key_x/revoke").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    app.stop().await;
}

/// Inserts a dead letter as an older server would have stored it: `raw` refused for `reason`.
async fn plant_dead_letter(
    store: &Store,
    customer_id: &str,
    raw: &str,
    reason: &str,
    truncated: bool,
) -> i64 {
    let raw_bytes = i64::try_from(raw.len()).unwrap() + if truncated { 1000 } else { 0 };
    let key = Uuid::new_v4().to_string();
    match store {
        Store::Postgres(pool) => sqlx::query_scalar(
            "INSERT INTO dead_letters (customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message, dedupe_key) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, 'refused by an older server', $7) RETURNING id",
        )
        .bind(customer_id)
        .bind(Utc::now())
        .bind(raw)
        .bind(raw_bytes)
        .bind(truncated)
        .bind(reason)
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap(),
        Store::Sqlite(pool) => sqlx::query_scalar(
            "INSERT INTO dead_letters (customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message, dedupe_key) \
             VALUES (?, ?, NULL, ?, ?, ?, ?, 'refused by an older server', ?) RETURNING id",
        )
        .bind(customer_id)
        .bind(Utc::now().timestamp_millis())
        .bind(raw)
        .bind(raw_bytes)
        .bind(truncated)
        .bind(reason)
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap(),
    }
}

async fn dead_letter_count(app: &TestApp) -> usize {
    let (status, page) = app.admin_get("/admin/dead-letters?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["dead_letters"].as_array().unwrap().len()
}

async fn dead_letters_are_listed_and_requeued(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;

    // Three dead letters from ingest: an unknown type and a missing field (acme), an agent
    // owned by acme sent by globex.
    let unknown = event("nope", "agent_a", None, json!({}));
    let missing = event("tool_call", "agent_a", Some("run_1"), json!({"ok": true}));
    let ok = tool_call("agent_a", "Bash", true, 5);
    let (status, res) = app.ingest(&acme, &json!([unknown, missing, ok])).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["rejected"], 2);
    let forbidden = tool_call("agent_a", "Read", true, 5);
    let (_, res) = app.ingest(&globex, &json!([forbidden])).await;
    assert_eq!(res["results"][0]["error"]["code"], "agent_forbidden");
    // Refused by an older server, valid today; and a truncated one.
    let today = tool_call("agent_b", "Edit", false, 42);
    let today_id = today["event_id"].as_str().unwrap().to_owned();
    let planted = plant_dead_letter(
        app.store(),
        "acme",
        &today.to_string(),
        "unknown_event_type",
        false,
    )
    .await;
    let cut = plant_dead_letter(
        app.store(),
        "acme",
        "{\"event_id\": \"x",
        "invalid_value",
        true,
    )
    .await;

    // List: newest first, every field.
    let (status, page) = app.admin_get("/admin/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let all = page["dead_letters"].as_array().unwrap();
    assert_eq!(all.len(), 5);
    let ids: Vec<i64> = all.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(all[0]["id"], cut);
    assert_eq!(all[0]["truncated"], true);
    assert_eq!(all[1]["id"], planted);
    assert_eq!(all[1]["raw"], today.to_string());
    assert_eq!(all[1]["requeued_at"], Value::Null);
    assert_eq!(all[2]["reason"], "agent_forbidden");
    assert_eq!(all[2]["customer_id"], "globex");
    for d in all {
        for field in ["received_at", "reason", "message", "raw"] {
            assert!(d[field].is_string(), "{field}: {d}");
        }
        assert!(d["raw_bytes"].as_i64().unwrap() > 0);
    }
    assert_eq!(page["next_cursor"], Value::Null);

    // Filters: customer, reason, time; pages of 2 give the same rows.
    let count = |path: &'static str| {
        let app = &app;
        async move {
            let (status, page) = app.admin_get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page["dead_letters"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("/admin/dead-letters?customer_id=globex").await, 1);
    assert_eq!(count("/admin/dead-letters?customer_id=acme").await, 4);
    assert_eq!(
        count("/admin/dead-letters?reason=unknown_event_type").await,
        2
    );
    assert_eq!(
        count("/admin/dead-letters?customer_id=acme&reason=agent_forbidden").await,
        0
    );
    assert_eq!(
        count("/admin/dead-letters?since=2100-01-01T00:00:00Z").await,
        0
    );
    assert_eq!(
        count("/admin/dead-letters?until=2000-01-01T00:00:00Z").await,
        0
    );
    assert_eq!(
        count("/admin/dead-letters?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z").await,
        5
    );
    let mut paged = Vec::new();
    let mut path = "/admin/dead-letters?limit=2".to_owned();
    loop {
        let (status, page) = app.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(page["dead_letters"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/admin/dead-letters?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(&paged, all);

    // Requeue the one valid today: accepted, stored for its customer through the writer
    // (agent claimed, rollups kept), the dead letter marked.
    let events_before = app.store().count_events().await.unwrap();
    let (status, body) = admin_post(
        &app,
        &format!("/admin/dead-letters/{planted}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["event_id"], today_id.as_str());
    assert_eq!(body["customer_id"], "acme");
    assert_eq!(body["dead_letter_id"], planted);
    let requeued_at = body["requeued_at"].as_str().unwrap().to_owned();
    assert_eq!(app.store().count_events().await.unwrap(), events_before + 1);
    let agent = app.store().agent("agent_b").await.unwrap().unwrap();
    assert_eq!(agent.customer_id, "acme");
    let (status, tools) = app
        .admin_get("/v1/dashboard/tools?window=24h&customer_id=acme")
        .await;
    assert_eq!(status, StatusCode::OK, "{tools}");
    assert!(
        tools.to_string().contains("\"Edit\""),
        "the requeued tool call is in the rollups: {tools}"
    );
    let row = app.store().dead_letter(planted).await.unwrap().unwrap();
    assert_eq!(row.requeued_event_id.as_deref(), Some(today_id.as_str()));
    assert!(row.requeued_at.is_some());

    // Again: duplicate, nothing changes (events, the mark, the dead letters).
    let dead_before = dead_letter_count(&app).await;
    let (status, body) = admin_post(
        &app,
        &format!("/admin/dead-letters/{planted}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["requeued_at"], requeued_at.as_str());
    assert_eq!(app.store().count_events().await.unwrap(), events_before + 1);
    assert_eq!(
        app.store().dead_letter(planted).await.unwrap().unwrap(),
        row
    );
    assert_eq!(dead_letter_count(&app).await, dead_before);

    // Still invalid: 422 with its code, stays a dead letter, unmarked, no new row.
    let still = all
        .iter()
        .find(|d| d["reason"] == "unknown_event_type" && d["id"] != planted)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, body) =
        admin_post(&app, &format!("/admin/dead-letters/{still}/requeue"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "unknown_event_type");
    // The agent of another customer: refused by the writer, no second dead letter.
    let forbidden_id = all[2]["id"].as_i64().unwrap();
    let (status, body) = admin_post(
        &app,
        &format!("/admin/dead-letters/{forbidden_id}/requeue"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "agent_forbidden");
    // Truncated: 409.
    let (status, body) =
        admin_post(&app, &format!("/admin/dead-letters/{cut}/requeue"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "dead_letter_truncated");
    assert_eq!(dead_letter_count(&app).await, dead_before);
    assert_eq!(app.store().count_events().await.unwrap(), events_before + 1);
    for id in [still, forbidden_id, cut] {
        assert_eq!(
            app.store()
                .dead_letter(id)
                .await
                .unwrap()
                .unwrap()
                .requeued_at,
            None
        );
    }

    // Audit: the two requeues that reached the store, with their outcome.
    let (_, audit) = app.admin_get("/admin/audit").await;
    let requeues: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "requeue")
        .collect();
    assert_eq!(requeues.len(), 2, "{audit}");
    assert_eq!(requeues[0]["params"]["status"], "duplicate");
    assert_eq!(requeues[1]["params"]["status"], "accepted");
    assert_eq!(requeues[1]["params"]["dead_letter_id"], planted);
    assert_eq!(requeues[1]["params"]["event_id"], today_id.as_str());
    assert_eq!(requeues[1]["actor"], "admin-token");

    app.stop().await;
}

/// Every value of every column of every table of the database, as text.
async fn dump_database(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    match store {
        Store::Postgres(pool) => {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(columns.iter().any(|(t, _)| t == "audit_log"), "{columns:?}");
            for (table, column) in columns {
                let sql = format!("SELECT \"{column}\"::text FROM \"{table}\"");
                let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(pool)
                    .await
                    .unwrap();
                out.extend(values.into_iter().flatten());
            }
        }
        Store::Sqlite(pool) => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert!(tables.iter().any(|t| t == "audit_log"), "{tables:?}");
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
                        .bind(&table)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                for column in columns {
                    // A blob (the migrations' checksums) as hex: it is not UTF-8.
                    let sql = format!(
                        "SELECT CASE WHEN typeof(\"{column}\") = 'blob' THEN hex(\"{column}\") \
                         ELSE CAST(\"{column}\" AS TEXT) END FROM \"{table}\""
                    );
                    let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    out.extend(values.into_iter().flatten());
                }
            }
        }
    }
    out
}

async fn no_plaintext_key_or_admin_token_anywhere_in_the_database(backend: Backend) {
    let Some((app, url, _pg)) = app_with_url(backend).await else {
        return;
    };
    let mut keys = Vec::new();
    let mut key_ids = Vec::new();

    // Over HTTP: two customers, two rotations each, one revocation.
    for customer in ["acme", "globex"] {
        let (status, created) = admin_post(
            &app,
            "/admin/customers",
            Some(&json!({"customer_id": customer, "name": format!("{customer} Inc")})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        keys.push(created["api_key_plaintext"].as_str().unwrap().to_owned());
        key_ids.push(created["key_id"].as_str().unwrap().to_owned());
        for label in ["r1", "r2"] {
            let (status, rotated) = admin_post(
                &app,
                &format!("/admin/customers/{customer}/keys"),
                Some(&json!({"label": label})),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{rotated}");
            keys.push(rotated["api_key_plaintext"].as_str().unwrap().to_owned());
            key_ids.push(rotated["key_id"].as_str().unwrap().to_owned());
        }
    }
    let (status, _) = admin_post(&app, &format!("/admin/keys/{}/revoke", key_ids[0]), None).await;
    assert_eq!(status, StatusCode::OK);

    // From the command line: a new customer and a second key for it, a key for acme, a
    // customer created and its key rotated.
    for args in [
        &["mint-key", "initech", "Initech"][..],
        &["mint-key", "initech", "Initech", "--label", "cli-2"],
        &["mint-key", "acme", "acme Inc"],
        &["customers", "create", "hooli", "Hooli"],
        &["rotate-key", "hooli", "--label", "cli-r"],
    ] {
        let out = cli(app.data_dir.path(), url.as_deref())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        shared_proto::ApiKey::parse(&key).expect("a key on stdout");
        keys.push(key);
    }

    // Each key is used once (events, agents, rollups written by each customer).
    for (i, key) in keys.iter().enumerate().skip(1) {
        let (status, _) = app
            .ingest(
                key,
                &json!([tool_call(&format!("agent_{i}"), "Bash", true, 5)]),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let audit = app.store().audit_log(1000).await.unwrap();
    assert_eq!(audit.len(), 2 * 3 + 1 + 5, "{audit:?}");
    assert!(
        audit.iter().take(5).all(|a| a.actor.starts_with("cli:")),
        "{audit:?}"
    );

    let dump = dump_database(app.store()).await;
    // The dump is the real thing: it holds every key id (api_keys, audit_log).
    for id in &key_ids {
        assert!(
            dump.iter().any(|v| v.contains(id.as_str())),
            "{id} not in the dump"
        );
    }
    let mut secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    secrets.push(ADMIN_TOKEN);
    for secret in secrets {
        // The key's random part too: no column holds it in another form.
        let random = &secret[secret.len() - 20..];
        for value in &dump {
            assert!(!value.contains(random), "a secret is stored: {value}");
        }
    }
    app.stop().await;
}

/// Runs the binary with `args`; (exit code, stdout, stderr).
fn run(data_dir: &Path, url: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let out = cli(data_dir, url).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The user name the audit log should name for this process (the uid's /etc/passwd entry).
fn unix_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)? == &uid.to_string().as_str()).then(|| f[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid={uid}"))
}

async fn the_command_line_does_what_the_admin_api_does(backend: Backend) {
    let Some((app, url, _pg)) = app_with_url(backend).await else {
        return;
    };
    let dir = app.data_dir.path().to_owned();
    let url = url.as_deref();
    let run = |args: &[&str]| run(&dir, url, args);

    // customers create: the plaintext on stdout, one line; which database on stderr.
    let (code, stdout, stderr) = run(&[
        "customers",
        "create",
        "acme",
        "Acme Inc",
        "--label",
        "box-1",
        "--env",
        "prod",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    let key1 = stdout.trim().to_owned();
    assert!(key1.starts_with("m8brain_prod_"), "{key1}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("database: "))
        .collect();
    assert_eq!(said.len(), 1, "one line names the database: {stderr}");
    match backend {
        Backend::Sqlite => assert!(said[0].contains("brain.db"), "{stderr}"),
        Backend::Postgres => {
            assert!(
                said[0].contains("Postgres") && said[0].contains("127.0.0.1"),
                "{stderr}"
            );
        }
    }
    let (status, _) = app
        .ingest(&key1, &json!([tool_call("agent_a", "Bash", true, 5)]))
        .await;
    assert_eq!(status, StatusCode::OK, "the key works");
    let (code, _, stderr) = run(&["customers", "create", "acme", "Acme Inc"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("customer acme exists"), "{stderr}");
    let (code, _, stderr) = run(&["customers", "create", "Acme!", "Acme Inc"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("customer_id must be"), "{stderr}");

    // mint-key with another name: minted for the existing customer, its name kept, said.
    let (code, stdout, stderr) = run(&["mint-key", "acme", "ACME Corp"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("exists with the name \"Acme Inc\""),
        "{stderr}"
    );
    assert!(stderr.contains("ignored"), "{stderr}");
    let key2 = stdout.trim().to_owned();
    shared_proto::ApiKey::parse(&key2).unwrap();

    // rotate-key: the environment of the newest key; unknown customer: exit 1.
    let (code, stdout, stderr) = run(&["rotate-key", "acme", "--label", "box-3"]);
    assert_eq!(code, 0, "{stderr}");
    let key3 = stdout.trim().to_owned();
    assert!(
        key3.starts_with("m8brain_dev_"),
        "mint-key's default env was newest: {key3}"
    );
    let (code, _, stderr) = run(&["rotate-key", "nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no customer nope"), "{stderr}");

    // keys: table and JSON, never the plaintext; unknown customer: exit 1.
    let (code, table, _) = run(&["keys", "acme"]);
    assert_eq!(code, 0);
    assert_eq!(table.lines().count(), 4, "{table}");
    let (code, stdout, stderr) = run(&["keys", "acme", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["label"], "box-1");
    assert_eq!(keys[2]["label"], "box-3");
    for key in [&key1, &key2, &key3] {
        assert!(!stdout.contains(key.as_str()) && !table.contains(key.as_str()));
    }
    let (code, stdout, stderr) = run(&["keys", "nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("no customer nope"), "{stderr}");
    let (code, stdout, _) = run(&["keys", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // revoke-key; the admin API sees what the command line did.
    let key1_id = keys[0]["key_id"].as_str().unwrap();
    let (code, stdout, stderr) = run(&["revoke-key", key1_id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!("revoked {key1_id}")),
        "{stdout}"
    );
    let (_, list) = app.admin_get("/admin/customers/acme/keys").await;
    assert!(list["keys"][0]["revoked_at"].is_string(), "{list}");

    // customers list: table and JSON (the body of GET /admin/customers).
    let (code, stdout, _) = run(&["customers", "list"]);
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("acme\tAcme Inc\t"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["customers", "list", "--json"]);
    assert_eq!(code, 0);
    let (_, http) = app.admin_get("/admin/customers").await;
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), http);
    assert_eq!(http["customers"][0]["live_keys"], 2);

    // dead-letters list and requeue.
    let (status, _) = app
        .ingest(&key2, &json!([event("nope", "agent_a", None, json!({}))]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let today = tool_call("agent_c", "Grep", true, 7);
    let today_id = today["event_id"].as_str().unwrap().to_owned();
    let planted = plant_dead_letter(
        app.store(),
        "acme",
        &today.to_string(),
        "unknown_event_type",
        false,
    )
    .await;
    let (code, stdout, stderr) = run(&["dead-letters", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, http) = app.admin_get("/admin/dead-letters").await;
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), http);
    let (code, stdout, _) = run(&[
        "dead-letters",
        "list",
        "--customer",
        "acme",
        "--reason",
        "unknown_event_type",
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let (code, stdout, _) = run(&["dead-letters", "list", "--customer", "globex"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (code, _, stderr) = run(&["dead-letters", "list", "--limit", "0"]);
    assert_eq!(code, 1, "{stderr}");
    let events = app.store().count_events().await.unwrap();
    let (code, stdout, stderr) = run(&["dead-letters", "requeue", &planted.to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("accepted {today_id}\n"));
    assert_eq!(app.store().count_events().await.unwrap(), events + 1);
    assert_eq!(
        app.store()
            .agent("agent_c")
            .await
            .unwrap()
            .unwrap()
            .customer_id,
        "acme"
    );
    let (code, stdout, _) = run(&["dead-letters", "requeue", &planted.to_string()]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("duplicate {today_id}\n"));
    assert_eq!(app.store().count_events().await.unwrap(), events + 1);
    // The same dead letter over HTTP: duplicate too.
    let (status, body) = admin_post(
        &app,
        &format!("/admin/dead-letters/{planted}/requeue"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("duplicate"))
    );
    let still = http["dead_letters"][1]["id"].as_i64().unwrap();
    let (code, _, stderr) = run(&["dead-letters", "requeue", &still.to_string()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("still refused: unknown_event_type"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["dead-letters", "requeue", "999999"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");

    // audit: who did what, newest first; the table and JSON.
    let (code, stdout, stderr) = run(&["audit", "--json", "--limit", "1000"]);
    assert_eq!(code, 0, "{stderr}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    let me = format!("cli:{}", unix_user());
    assert_eq!(
        got,
        [
            ("admin-token", "requeue"),
            (me.as_str(), "requeue"),
            (me.as_str(), "requeue"),
            (me.as_str(), "revoke"),
            (me.as_str(), "rotate"),
            (me.as_str(), "rotate"),
            (me.as_str(), "create_customer"),
        ],
        "{stdout}"
    );
    assert_eq!(entries[2]["params"]["status"], "accepted");
    assert_eq!(entries[1]["params"]["status"], "duplicate");
    assert_eq!(
        entries[5]["params"]["name"], "ACME Corp",
        "the name given is recorded"
    );
    let (code, stdout, _) = run(&["audit", "--limit", "2"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("\tadmin-token\trequeue\t"),
        "{stdout}"
    );
    let (code, _, _) = run(&["audit", "--limit", "1001"]);
    assert_eq!(code, 1);
    for secret in [key1.as_str(), &key2, &key3, ADMIN_TOKEN] {
        assert!(!stdout.contains(secret));
    }
    app.stop().await;
}

/// With no --data-dir and no BRAIN_DATA_DIR, every command finds the same database wherever
/// it runs from: $XDG_DATA_HOME/brain, else ~/.local/share/brain (/var/lib/brain when it
/// exists and is writable: not on a test machine).
#[test]
#[expect(clippy::print_stderr, reason = "a skipped test says so")]
fn the_data_directory_does_not_depend_on_the_working_directory() {
    if Path::new(brain_server::config::SYSTEM_DATA_DIR).exists() {
        eprintln!(
            "skipped: {} exists on this machine",
            brain_server::config::SYSTEM_DATA_DIR
        );
        return;
    }
    let home = tempfile::TempDir::new().unwrap();
    let elsewhere = tempfile::TempDir::new().unwrap();
    let bare = |cwd: &Path| {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("RUST_LOG", "info")
            .env("HOME", home.path())
            .current_dir(cwd);
        c
    };
    let out = bare(home.path())
        .args(["customers", "create", "acme", "Acme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = home.path().join(".local/share/brain/brain.db");
    assert!(db.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&db.display().to_string()));
    // From another directory: the same database (the customer is there).
    let out = bare(elsewhere.path())
        .args(["keys", "acme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing in the cwd"
    );
    // $XDG_DATA_HOME wins over ~/.local/share.
    let xdg = tempfile::TempDir::new().unwrap();
    let out = bare(elsewhere.path())
        .env("XDG_DATA_HOME", xdg.path())
        .args(["keys", "acme"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a fresh database: no customer acme"
    );
    assert!(xdg.path().join("brain/brain.db").exists());
}

/// An unreachable Postgres is reported with its cause, not as a pool timeout, and the line
/// naming the database never shows the password.
#[test]
fn an_unreachable_postgres_is_reported_with_its_cause() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = cli(
        dir.path(),
        Some("postgres://postgres:s3cret-pw@127.0.0.1:1/brain"),
    )
    .args(["keys"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Postgres postgres@127.0.0.1:1/brain"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("timed out"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "never the password: {stderr}"
    );
}
