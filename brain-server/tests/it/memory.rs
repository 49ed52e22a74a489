//! Issue 6, case 3: memory in flight and dead-letter size. The in-flight byte budget answers
//! 503 `overloaded` with `Retry-After` (never a 500) and is given back on every exit path; a
//! huge rejected element is dead-lettered cut to the cap with its size; dead letters past
//! their retention are deleted.

use std::time::{Duration, Instant};

use brain_server::Store;
use brain_server::config::Limits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{
    Backend, Options, TestApp, assert_error, limits, spawn_app, spawn_app_with, tool_call,
};

both!(
    the_in_flight_budget_refuses_with_503_and_is_given_back,
    a_huge_rejected_element_is_dead_lettered_capped_with_its_size,
    dead_letters_past_their_retention_are_deleted,
);

/// A single-event body of exactly `len` bytes whose event is rejected (`payload_too_large`),
/// a fresh `event_id` each time; `tail` is repeated to fill the payload.
fn rejected_body(len: usize, tail: &str) -> (String, String) {
    let mut ev = tool_call("agent_big", "Bash", true, 1);
    ev["payload"]["padding"] = json!("");
    let id = ev["event_id"].as_str().unwrap().to_owned();
    let empty = ev.to_string().len();
    let fill = len - empty;
    let mut padding = tail.repeat(fill / tail.len());
    padding.push_str(&"x".repeat(fill - padding.len()));
    ev["payload"]["padding"] = json!(padding);
    let body = ev.to_string();
    assert_eq!(body.len(), len);
    (id, body)
}

/// Waits (at most 10 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request sent by hand: headers, then `sent` bytes of `body`, the rest held back.
async fn start_trickle(app: &TestApp, key: &str, body: &str, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: brain\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(body.get(..sent).unwrap().as_bytes())
        .await
        .unwrap();
    stream
}

/// Sends the rest of `body` on a [`start_trickle`] stream and returns the answer's status line.
async fn finish_trickle(mut stream: TcpStream, body: &str, sent: usize) -> String {
    stream
        .write_all(body.get(sent..).unwrap().as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Bytes held, as `/metrics` says.
async fn in_flight_metric(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("brain_ingest_in_flight_bytes "))
        .unwrap()
        .parse()
        .unwrap()
}

/// Two trickled 1 MB bodies hold 1.8 MB of a 2.5 MB budget; a burst of ten concurrent 1 MB
/// rejected bodies is then refused, each with 503 `overloaded` and `Retry-After` (none is
/// stored, none is a 500); a trickled request whose client goes away gives its bytes back,
/// one that completes is answered 422 and gives them back after; then two concurrent 1 MB
/// bodies fit and are answered. Before the budget: all ten were read and held (the server
/// held every body it was sent, 150 of them took it to 5.25 GB).
async fn the_in_flight_budget_refuses_with_503_and_is_given_back(backend: Backend) {
    const LEN: usize = 1_000_000;
    const HELD: usize = 900_000;
    let opts = Options {
        limits: Limits {
            in_flight_bytes: 2_500_000,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let key = app.mint("acme").await;

    // Two bodies trickled: 900 KB of each read (and counted), the rest not sent yet.
    let (a_id, a) = rejected_body(LEN, "a");
    let (_, b) = rejected_body(LEN, "b");
    let a_stream = start_trickle(&app, &key, &a, HELD).await;
    until("A's bytes counted", || app.state.in_flight_bytes() >= HELD).await;
    let b_stream = start_trickle(&app, &key, &b, HELD).await;
    until("A's and B's bytes counted", || {
        app.state.in_flight_bytes() >= 2 * HELD
    })
    .await;

    // A burst of ten concurrent 1 MB rejected bodies: no room for any.
    let burst: Vec<_> = (0..10)
        .map(|_| {
            let (_, body) = rejected_body(LEN, "c");
            app.post_raw(Some(&key), "application/json", None, body.into_bytes())
        })
        .collect();
    for resp in futures_util::future::join_all(burst).await {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_error(&resp.json().await.unwrap(), "overloaded");
    }
    assert_eq!(
        app.state.in_flight_bytes(),
        2 * HELD,
        "the refused hold nothing"
    );

    // B's client goes away mid-body: its bytes are given back.
    drop(b_stream);
    until("B's bytes given back", || {
        app.state.in_flight_bytes() == HELD
    })
    .await;
    // A completes: dead-lettered, answered 422, and its bytes given back.
    let status = finish_trickle(a_stream, &a, HELD).await;
    assert!(status.contains(" 422 "), "{status}");
    until("A's bytes given back", || app.state.in_flight_bytes() == 0).await;
    assert_eq!(in_flight_metric(&app).await, 0);

    // After the burst: two concurrent 1 MB bodies fit the budget and are answered.
    let after: Vec<_> = (0..2)
        .map(|_| {
            let (_, body) = rejected_body(LEN, "d");
            app.post_raw(Some(&key), "application/json", None, body.into_bytes())
        })
        .collect();
    for resp in futures_util::future::join_all(after).await {
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["results"][0]["error"]["code"], "payload_too_large");
    }
    until("all given back", || app.state.in_flight_bytes() == 0).await;
    let dead = app.store().dead_letters("acme", 100).await.unwrap();
    assert_eq!(dead.len(), 3, "A and the two after; nothing of the refused");
    assert!(dead.iter().any(|d| d.event_id.as_deref() == Some(&a_id)));
    app.stop().await;
}

/// A 1 MB element is dead-lettered cut to the 64 KiB cap (at a character boundary), marked
/// truncated, with its full size, `event_id`, code and message; the same element resent is
/// kept once, and one differing only past the cap is a second dead letter. A small rejected
/// element is stored whole. Before the cap: the whole megabyte was stored (and bound into the
/// insert) for every such element.
async fn a_huge_rejected_element_is_dead_lettered_capped_with_its_size(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let cap = Limits::default().dead_letter_raw_bytes;

    // Two-byte characters throughout, so the cap falls inside one when the prefix is odd.
    let (id, body) = rejected_body(1_000_001, "é");
    for _ in 0..2 {
        let resp = app
            .post_raw(
                Some(&key),
                "application/json",
                None,
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["results"][0]["event_id"], id.as_str());
    }
    let dead = app.store().dead_letters("acme", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "resent: kept once");
    let d = &dead[0];
    assert!(d.truncated);
    assert_eq!(d.raw_bytes, 1_000_001);
    assert!(
        d.raw.len() <= cap && d.raw.len() >= cap - 3,
        "{}",
        d.raw.len()
    );
    assert!(body.starts_with(&d.raw));
    assert_eq!(d.event_id.as_deref(), Some(id.as_str()));
    assert_eq!(d.reason, "payload_too_large");
    assert!(!d.message.is_empty());

    // Same first 64 KiB, another tail (`run_id` comes after the payload): another dead letter.
    let other = body.replace(r#""run_id":"run_1""#, r#""run_id":"run_2""#);
    assert_ne!(other, body);
    let resp = app
        .post_raw(Some(&key), "application/json", None, other.into_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A small rejected element: whole.
    let mut small = tool_call("agent_big", "Bash", true, 1);
    small["event_type"] = json!("no_such_type");
    let (status, _) = app.ingest(&key, &small).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let dead = app.store().dead_letters("acme", 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let s = &dead[0];
    assert!(!s.truncated);
    assert_eq!(s.raw, small.to_string());
    assert_eq!(s.raw_bytes, i64::try_from(s.raw.len()).unwrap());
    app.stop().await;
}

/// Moves the dead letter of `event_id` back in time by two days.
async fn age_dead_letter(store: &Store, event_id: &str) {
    match store {
        Store::Postgres(pool) => {
            sqlx::query(
                "UPDATE dead_letters SET received_at = received_at - interval '2 days' \
                 WHERE event_id = $1",
            )
            .bind(event_id)
            .execute(pool)
            .await
            .unwrap();
        }
        Store::Sqlite(pool) => {
            sqlx::query(
                "UPDATE dead_letters SET received_at = received_at - 2 * 86400000 \
                 WHERE event_id = ?",
            )
            .bind(event_id)
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

/// With a retention of one day (pruned every 100 ms here; hourly by default), a dead letter
/// two days old is deleted by the server's retention task and a fresh one is kept. Before:
/// dead letters were kept forever.
async fn dead_letters_past_their_retention_are_deleted(backend: Backend) {
    let opts = Options {
        limits: Limits {
            dead_letter_retention: Duration::from_secs(86_400),
            dead_letter_prune_every: Duration::from_millis(100),
            ..Limits::default()
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let key = app.mint("acme").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut ev = tool_call("agent_a", "Bash", true, 1);
        ev["event_type"] = json!("no_such_type");
        ids.push(ev["event_id"].as_str().unwrap().to_owned());
        let (status, _) = app.ingest(&key, &ev).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Both fresh: both kept through a few prune rounds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.store().dead_letters("acme", 10).await.unwrap().len(), 2);

    age_dead_letter(app.store(), &ids[0]).await;
    let start = Instant::now();
    loop {
        let dead = app.store().dead_letters("acme", 10).await.unwrap();
        if dead.len() == 1 {
            assert_eq!(dead[0].event_id.as_deref(), Some(ids[1].as_str()));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old dead letter is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
