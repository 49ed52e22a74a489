//! Several server instances on one Postgres database (SPEC §10, issue 6 "Also build"): the
//! server keeps no state of its own, so three instances resent the same events concurrently
//! store each `event_id` once and accept it once, and a key revoked through the operator
//! command is refused by all three within 5 s, and the rollups they maintained together pass
//! `brain-server rollups verify`. (SQLite is for one box: Postgres only.)

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use brain_server::Store;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    Options, TestApp, assert_error, fresh_postgres_db, limits, spawn_app_on_url, tool_call,
};

/// Instances sharing the database.
const INSTANCES: usize = 3;
/// Batches of distinct events, each sent to every instance at once.
const BATCHES: usize = 20;
/// Events per batch.
const PER_BATCH: usize = 25;

/// (status, body) of a `POST /v1/events` to `app`.
async fn send(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    app.ingest(key, body).await
}

/// Three instances (started at once, so their migrations race too) on one fresh database; all
/// 20 batches of 25 events are sent to all three at the same moment (60 concurrent
/// requests). Every answer is 200, each `event_id` is `accepted` in exactly one answer and
/// `duplicate` in the two others, and the database holds each exactly once. Then the key is
/// used on every instance (so each has it cached), revoked with `brain-server revoke-key` on
/// the shared database, and every instance refuses it within 5 s, and keeps refusing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_postgres_store_once_and_honour_revocation() {
    let Some(db) = fresh_postgres_db() else {
        return;
    };
    let opts = Options {
        limits: limits(10_000, 10_000),
        ..Options::default()
    };
    let apps: Vec<TestApp> = futures_util::future::join_all(
        (0..INSTANCES).map(|_| spawn_app_on_url(&db.url, opts.clone())),
    )
    .await;
    let key = apps[0].mint("acme").await;

    // Several agents, new to the database: their first claim races across instances too.
    let batches: Vec<Value> = (0..BATCHES)
        .map(|b| {
            Value::Array(
                (0..PER_BATCH)
                    .map(|i| tool_call(&format!("agent_{}", (b + i) % 7), "Bash", true, 1))
                    .collect(),
            )
        })
        .collect();
    let key_ref = key.as_str();
    let sends = batches
        .iter()
        .flat_map(|batch| apps.iter().map(move |app| send(app, key_ref, batch)));
    let answers = futures_util::future::join_all(sends).await;

    let mut accepted: HashMap<String, usize> = HashMap::new();
    let mut duplicate: HashMap<String, usize> = HashMap::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        for r in body["results"].as_array().unwrap() {
            let id = r["event_id"].as_str().unwrap().to_owned();
            match r["status"].as_str().unwrap() {
                "accepted" => *accepted.entry(id).or_default() += 1,
                "duplicate" => *duplicate.entry(id).or_default() += 1,
                other => panic!("{other}: {r}"),
            }
        }
    }
    let total = BATCHES * PER_BATCH;
    assert_eq!(
        accepted.len(),
        total,
        "every event accepted by some instance"
    );
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events accepted more than once, e.g. {:?}",
        twice.len(),
        twice.iter().take(3).collect::<Vec<_>>()
    );
    assert!(duplicate.values().all(|&n| n == INSTANCES - 1));
    let Store::Postgres(pool) = apps[0].store() else {
        panic!("Postgres")
    };
    let (rows, ids): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events WHERE customer_id = 'acme'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((rows, ids), (total as i64, total as i64));
    // The rollups, written by three instances' writers at once, equal a scan of `events`.
    let out = Command::new(env!("CARGO_BIN_EXE_brain-server"))
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .args(["rollups", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every instance has the key cached, then it is revoked by the operator command.
    let probe = || tool_call("agent_0", "Bash", true, 1);
    for app in &apps {
        assert_eq!(
            app.post_events(&key, &probe()).await.status(),
            StatusCode::OK
        );
    }
    let key_id = apps[0].store().list_keys(Some("acme")).await.unwrap()[0]
        .key_id
        .clone();
    let out = Command::new(env!("CARGO_BIN_EXE_brain-server"))
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .args(["revoke-key", &key_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let mut refused = [false; INSTANCES];
    while !refused.iter().all(|r| *r) {
        for (i, app) in apps.iter().enumerate() {
            if refused[i] {
                continue;
            }
            let resp = app.post_events(&key, &probe()).await;
            match resp.status() {
                StatusCode::UNAUTHORIZED => {
                    assert_error(&resp.json().await.unwrap(), "unauthorized");
                    refused[i] = true;
                }
                StatusCode::OK => {}
                other => panic!("instance {i}: {other}"),
            }
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "revoked key still accepted after 5 s by instances {:?}",
            refused
                .iter()
                .enumerate()
                .filter(|(_, r)| !**r)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past every cache's lifetime: still refused everywhere.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for app in &apps {
        assert_eq!(
            app.post_events(&key, &probe()).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    for app in apps {
        app.stop().await;
    }
    drop(db);
}
