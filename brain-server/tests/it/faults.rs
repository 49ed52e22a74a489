//! The server-side fault cases of issue 6: a full disk, an `event_id` shared by two
//! customers, NUL characters, a gzip body of several members, absurd numbers, and the
//! statuses after a failed group is written again one request at a time. Each test names the
//! fault it injects and the promise it checks (nothing is acknowledged that is not stored,
//! nothing a client sends produces a 500).

use std::collections::HashSet;

use brain_server::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared_proto::KeyEnv;
use sqlx::sqlite::SqliteConnectOptions;
use tempfile::TempDir;

/// Runs the async test body `$name(fill)` once per [`Fill`].
macro_rules! both_fills {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn page_cap() {
                super::$name(super::Fill::PageCap).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn tmpfs() {
                super::$name(super::Fill::Tmpfs).await;
            }
        }
    )*};
}

use crate::helpers::{
    Backend, Options, TestApp, assert_error, limits, spawn_app, spawn_app_on, spawn_app_with,
    tool_call,
};

/// Mints a key for `customer_id` straight through `store`; returns the plaintext.
async fn mint(store: &Store, customer_id: &str) -> Result<String, brain_server::db::DbError> {
    let env = KeyEnv::parse("test").unwrap();
    let minted = store
        .mint_key(customer_id, customer_id, None, &env, "test")
        .await?;
    Ok(minted.api_key.expose().to_owned())
}

/// A `tool_call` of about 3 KB (an unknown payload field is stored as sent).
fn padded_event(i: u64) -> Value {
    let mut ev = tool_call("agent_a", "Bash", true, i);
    ev["payload"]["padding"] = json!("x".repeat(3000));
    ev
}

/// The `event_id`s of the events a 200 answer says were stored (`accepted`).
fn accepted_ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "accepted")
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `/v1/healthz`: (status, `ok`).
async fn health(app: &TestApp) -> (StatusCode, Value) {
    let resp = app.client.get(app.url("/v1/healthz")).send().await.unwrap();
    let status = resp.status();
    (status, resp.json::<Value>().await.unwrap()["ok"].clone())
}

/// Pages the server's connections may add to the database file before SQLite answers
/// `SQLITE_FULL` (4 KiB each: room for a few requests).
const HEADROOM_PAGES: i64 = 24;

/// Bytes left free on the small filesystem once it is filled up (room for a few requests).
const HEADROOM_BYTES: u64 = 192 * 1024;

/// How the database is made to run out of space.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// `PRAGMA max_page_count` on every connection of the server's pool: the statement that
    /// needs a new page fails with `SQLITE_FULL` (runs anywhere). Freeing space: deleting a
    /// filler table (free pages inside the file).
    PageCap,
    /// The data directory on a 4 MiB tmpfs filled up by a filler file: a real full disk, where
    /// the COMMIT's write to the WAL fails and SQLite rolls the transaction back itself (needs
    /// root to mount; skipped, said loudly, without). Freeing space: deleting the filler file.
    Tmpfs,
}

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
#[derive(Debug)]
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes; `None` (said on stderr) when mounting is not permitted,
    /// except under CI (`CI` set), where that fails the test: CI must run it.
    #[expect(clippy::print_stderr, reason = "a skipped test says so")]
    fn mount(size: u64) -> Option<Tmpfs> {
        let dir = TempDir::new().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = format!("cannot mount a tmpfs (needs root): {other:?}");
                assert!(std::env::var_os("CI").is_none(), "{why}");
                eprintln!("SKIPPED: {why}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file of a still-closing pool does not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes `path` until the filesystem is full, then gives back `HEADROOM_BYTES`.
fn fill_filesystem(path: &std::path::Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written: u64 = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    file.set_len(written.saturating_sub(HEADROOM_BYTES))
        .unwrap();
    file.sync_all().unwrap();
}

both_fills!(sqlite_full_disk_acknowledges_only_committed_events_and_recovers);
both!(
    an_event_id_used_by_another_customer_is_stored,
    nul_characters_are_refused_or_stored_escaped,
    absurd_costs_are_rejected_and_reads_stay_finite,
    a_failed_group_retried_one_by_one_reports_neighbours_accepted,
);

/// Case 1: the SQLite database runs out of space (see [`Fill`]). While it is full, ingest
/// answers 503 with `Retry-After` (never 500, never a 200 for rows that are not committed) and
/// `/v1/healthz` says `ok: false`; once the operator frees space, ingest and minting a key
/// work again without a restart; after a restart on the same file, exactly the acknowledged
/// events are there.
///
/// Before the fix, on the tmpfs: a COMMIT that failed left its pooled connection believing it
/// was still in a transaction, so later groups became SAVEPOINTs of a transaction that was
/// never committed: 200s for lost events, and "database is locked" for `mint-key` after
/// space was freed. On both: 500 instead of 503, and healthz said ok.
async fn sqlite_full_disk_acknowledges_only_committed_events_and_recovers(fill: Fill) {
    let mount = match fill {
        Fill::PageCap => None,
        Fill::Tmpfs => match Tmpfs::mount(4 * 1024 * 1024) {
            Some(m) => Some(m),
            None => return,
        },
    };
    let dir = match &mount {
        Some(m) => TempDir::new_in(m.dir.path()).unwrap(),
        None => TempDir::new().unwrap(),
    };
    let path = dir.path().join(brain_server::config::SQLITE_FILE);
    // A migrated database with a key, and filler the operator can delete later.
    let store = Store::open_sqlite_file(&path).await.unwrap();
    store.migrate().await.unwrap();
    let key = mint(&store, "acme").await.unwrap();
    let Store::Sqlite(pool) = &store else {
        panic!("a SQLite store");
    };
    let mut opts = SqliteConnectOptions::new().filename(&path);
    let filler_file = dir.path().join("filler");
    match fill {
        Fill::PageCap => {
            sqlx::raw_sql(
                "CREATE TABLE filler (b BLOB); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 256) \
                 INSERT INTO filler SELECT randomblob(4000) FROM n;",
            )
            .execute(pool)
            .await
            .unwrap();
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(pool)
                .await
                .unwrap();
            opts = opts.pragma("max_page_count", (pages + HEADROOM_PAGES).to_string());
        }
        Fill::Tmpfs => {}
    }
    store.close().await;
    let capped = Store::open_sqlite_with(opts).await.unwrap();
    if let Fill::Tmpfs = fill {
        fill_filesystem(&filler_file);
    }
    let opts = Options {
        limits: limits(10_000, 10_000),
        ..Options::default()
    };
    let app = spawn_app_on(capped, dir, opts).await;

    // Fill it up, then keep sending: big batches and single small events.
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut refused = 0;
    for i in 0..60 {
        let body = if i % 2 == 0 {
            json!(
                (0..20)
                    .map(|j| padded_event(i * 100 + j))
                    .collect::<Vec<_>>()
            )
        } else {
            tool_call("agent_a", "Bash", true, i)
        };
        let resp = app.post_events(&key, &body).await;
        let status = resp.status();
        let retry_after = resp.headers().contains_key("retry-after");
        let answer: Value = resp.json().await.unwrap();
        match status {
            StatusCode::OK => acknowledged.extend(accepted_ids(&answer)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after, "503 without Retry-After: {answer}");
                assert_error(&answer, "database_unavailable");
                refused += 1;
                if refused == 1 {
                    let (status, ok) = health(&app).await;
                    assert_eq!(
                        (status, ok),
                        (StatusCode::SERVICE_UNAVAILABLE, json!(false)),
                        "healthz while writes fail"
                    );
                }
            }
            other => panic!("request {i}: {other} {answer}"),
        }
    }
    assert!(
        refused >= 10,
        "the database never filled up ({refused} refusals)"
    );
    assert!(
        !acknowledged.is_empty(),
        "nothing was stored before it filled up"
    );

    // The operator frees space; no restart.
    match fill {
        Fill::PageCap => {
            let Store::Sqlite(pool) = app.store() else {
                panic!("a SQLite store");
            };
            sqlx::query("DELETE FROM filler")
                .execute(pool)
                .await
                .unwrap();
        }
        Fill::Tmpfs => std::fs::remove_file(&filler_file).unwrap(),
    }
    for i in 0..3 {
        let (status, answer) = app.ingest(&key, &padded_event(10_000 + i)).await;
        assert_eq!(status, StatusCode::OK, "after freeing space: {answer}");
        assert_eq!(answer["accepted"], 1, "{answer}");
        acknowledged.extend(accepted_ids(&answer));
    }
    mint(app.store(), "globex")
        .await
        .expect("mint-key after freeing space");
    assert_eq!(
        health(&app).await,
        (StatusCode::OK, json!(true)),
        "healthz once writes succeed again"
    );

    // Restart on the same file: exactly the acknowledged events are stored.
    let dir = app.stop_keeping_data().await;
    let store = Store::open_sqlite_file(&dir.path().join(brain_server::config::SQLITE_FILE))
        .await
        .unwrap();
    let Store::Sqlite(pool) = &store else {
        panic!("a SQLite store");
    };
    let stored: HashSet<String> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost = acknowledged.difference(&stored).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged events are not stored",
        acknowledged.len()
    );
    assert_eq!(
        stored, acknowledged,
        "stored events that were never acknowledged"
    );
    let keys: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE customer_id = 'globex'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(keys, 1, "the key minted after freeing space");
    store.close().await;
    drop(dir);
    drop(mount);
}

/// `(customer_id, tool_name)` of every stored event with this `event_id`, by customer.
async fn stored_copies(store: &Store, event_id: &str) -> Vec<(String, String)> {
    match store {
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT customer_id, payload->>'tool_name' FROM events \
             WHERE event_id = $1::uuid ORDER BY customer_id",
        )
        .bind(event_id)
        .fetch_all(pool)
        .await
        .unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(
            "SELECT customer_id, json_extract(payload, '$.tool_name') FROM events \
             WHERE event_id = ?1 ORDER BY customer_id",
        )
        .bind(event_id)
        .fetch_all(pool)
        .await
        .unwrap(),
    }
}

/// Case 6: dedupe is scoped to the customer. Globex sends an `event_id` that Acme already
/// used: Globex's event is stored and `accepted`, Acme's is untouched; each resend is a
/// `duplicate` of its own customer's event only. The same holds when both send a new shared
/// id in one group. Before the fix (`events.event_id` unique on its own): Globex was told
/// `duplicate` and its event was neither stored nor dead-lettered.
#[expect(
    clippy::disallowed_methods,
    reason = "the test queues requests from tasks while the writer is held"
)]
async fn an_event_id_used_by_another_customer_is_stored(backend: Backend) {
    let opts = Options {
        limits: brain_server::config::Limits {
            pg_writers: 1,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;

    let ours = tool_call("agent_acme", "AcmeTool", true, 1);
    let id = ours["event_id"].as_str().unwrap().to_owned();
    let mut theirs = tool_call("agent_globex", "GlobexTool", true, 2);
    theirs["event_id"] = json!(id);
    let (_, body) = app.ingest(&acme, &ours).await;
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    let (status, body) = app.ingest(&globex, &theirs).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    for (key, ev) in [(&acme, &ours), (&globex, &theirs)] {
        let (_, body) = app.ingest(key, ev).await;
        assert_eq!(body["results"][0]["status"], "duplicate", "{body}");
    }
    assert_eq!(
        stored_copies(app.store(), &id).await,
        [
            ("acme".to_owned(), "AcmeTool".to_owned()),
            ("globex".to_owned(), "GlobexTool".to_owned())
        ]
    );

    // A new shared id from both customers, in one group (the writer is held meanwhile).
    let lock = crate::hold_writer(app.store()).await;
    let shared = uuid::Uuid::new_v4().to_string();
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for (key, agent, tool) in [
        (&acme, "agent_acme", "AcmeTool"),
        (&globex, "agent_globex", "GlobexTool"),
    ] {
        let mut ev = tool_call(agent, tool, true, 3);
        ev["event_id"] = json!(shared);
        let (app, key) = (std::sync::Arc::clone(&app), key.clone());
        tasks.push(tokio::spawn(async move { app.ingest(&key, &ev).await }));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    lock.release().await;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    }
    assert_eq!(stored_copies(app.store(), &shared).await.len(), 2);
    assert_eq!(app.store().count_events().await.unwrap(), 4);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

/// Case 4: NUL (U+0000), which Postgres cannot store in text. Rejected elements whose
/// `event_id`, `ts` or `event_type` holds a NUL are dead-lettered (the NUL kept escaped) next
/// to a valid event, and a resend changes nothing; a dashboard read with `%00` in its query is
/// a 400. Before the fix, on Postgres: 500 for the batch and for every resend (a poison batch),
/// and 500 for the read.
async fn nul_characters_are_refused_or_stored_escaped(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let valid = tool_call("agent_a", "Bash", true, 1);
    let mut bad_id = tool_call("agent_a", "Bash", true, 2);
    bad_id["event_id"] = json!("0000\u{0}0000");
    let mut bad_ts = tool_call("agent_a", "Bash", true, 3);
    bad_ts["ts"] = json!("2026-12-01T00:00:00\u{0}Z");
    let mut bad_type = tool_call("agent_a", "Bash", true, 4);
    bad_type["event_type"] = json!("tool\u{0}call");
    let body = json!([valid, bad_id, bad_ts, bad_type]);
    for (attempt, accepted) in [(1, 1), (2, 0)] {
        let (status, answer) = app.ingest(&key, &body).await;
        assert_eq!(status, StatusCode::OK, "send {attempt}: {answer}");
        assert_eq!(answer["accepted"], accepted, "send {attempt}: {answer}");
        assert_eq!(answer["rejected"], 3, "send {attempt}: {answer}");
        assert_eq!(
            answer["results"][1]["event_id"], "0000\u{0}0000",
            "{answer}"
        );
    }
    let dead = app.store().dead_letters("acme", 10).await.unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert!(
            !d.event_id.as_deref().unwrap_or_default().contains('\0') && !d.message.contains('\0'),
            "{d:?}"
        );
        // The raw element is kept as sent (JSON escapes the NUL).
        let raw: Value = serde_json::from_str(&d.raw).unwrap();
        assert!(body.as_array().unwrap().contains(&raw), "{raw}");
    }
    assert!(
        dead.iter()
            .any(|d| d.event_id.as_deref() == Some("0000\\u00000000")),
        "{dead:?}"
    );
    assert_eq!(app.store().count_events().await.unwrap(), 1);

    for path in [
        "/v1/dashboard/agents?customer_id=acme%00x",
        "/v1/dashboard/tools?window=24h&customer_id=acme%00x",
    ] {
        let (status, answer) = app.admin_get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_error(&answer, "invalid_query");
    }
    app.stop().await;
}

/// `bytes` as one gzip member.
fn gzip_member(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Case 7: a gzip body of several members (RFC 1952 allows it; streaming compressors write
/// one per flush) is read whole, and the 1 MiB cap applies to all members together. Before
/// the fix only the first member was read: the body split across two members was a 400
/// `malformed_json`, and a second member's events were silently ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_gzip_member_is_read_under_one_cap() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = app.mint("acme").await;
    let (one, two) = (
        tool_call("agent_a", "Bash", true, 1),
        tool_call("agent_a", "Bash", true, 2),
    );
    let post = |body: Vec<u8>| app.post_raw(Some(&key), "application/json", Some("gzip"), body);

    // One array split across two members.
    let mut body = gzip_member(format!("[{one},").as_bytes());
    body.extend(gzip_member(format!("{two}]").as_bytes()));
    let resp = post(body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["accepted"], 2, "{answer}");

    // A complete array in the first member, whitespace in the second: one body.
    let three = tool_call("agent_a", "Bash", true, 3);
    let mut body = gzip_member(json!([three]).to_string().as_bytes());
    body.extend(gzip_member(b"  \n"));
    let resp = post(body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 1);

    // Two members of 600 KiB each: over the cap together, though each is under it.
    let half = " ".repeat(600 * 1024);
    let mut body = gzip_member(format!("[{half}").as_bytes());
    body.extend(gzip_member(format!("{half}]").as_bytes()));
    let resp = post(body).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&resp.json().await.unwrap(), "body_too_large");

    // A member followed by bytes that are not gzip: refused, not half read.
    let mut body = gzip_member(
        json!([tool_call("agent_a", "Bash", true, 4)])
            .to_string()
            .as_bytes(),
    );
    body.extend(b"trailing garbage");
    let resp = post(body).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_error(&resp.json().await.unwrap(), "invalid_gzip");
    assert_eq!(app.store().count_events().await.unwrap(), 3);
    app.stop().await;
}

/// Inserts an `llm_usage` event of `acme`/`agent_a` costing `cost_cents` straight into
/// `events`, as a server without the bound stored it.
async fn insert_legacy_usage(store: &Store, cost_cents: &str) {
    let payload = format!(
        r#"{{"model":"m","input_tokens":1,"output_tokens":1,"cost_cents":{cost_cents},"total_turns":1}}"#
    );
    let id = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    match store {
        Store::Postgres(pool) => sqlx::query(
            "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, event_type, payload) \
             VALUES ($1, $2, $2, 'acme', 'agent_a', 'llm_usage', $3::jsonb)",
        )
        .bind(id)
        .bind(now)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
        Store::Sqlite(pool) => sqlx::query(
            "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, event_type, payload) \
             VALUES (?1, ?2, ?2, 'acme', 'agent_a', 'llm_usage', ?3)",
        )
        .bind(id.to_string())
        .bind(now.timestamp_millis())
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
    }
}

/// Case 8: `cost_cents: 1e308` is rejected (`out_of_range`, dead-lettered), and no dashboard
/// read serializes a non-finite number: rows stored before the bound existed (two costs of
/// 1e308, whose sum overflows) are left out of the cost figures, which stay numbers. Before
/// the fix: the event was accepted, and every cost figure of the customer read `null` (SQLite)
/// or the reads failed with a 500 (Postgres: float overflow in SUM).
async fn absurd_costs_are_rejected_and_reads_stay_finite(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let usage = |cost: Value| {
        crate::helpers::event(
            "llm_usage",
            "agent_a",
            None,
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1,
                   "cost_cents": cost, "total_turns": 1}),
        )
    };
    let (status, answer) = app.ingest(&key, &usage(json!(1e308))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        answer["results"][0]["error"]["code"], "out_of_range",
        "{answer}"
    );
    let (status, answer) = app.ingest(&key, &usage(json!(12.5))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(app.store().dead_letters("acme", 10).await.unwrap().len(), 1);

    insert_legacy_usage(app.store(), "1e308").await;
    insert_legacy_usage(app.store(), "1e308").await;
    for (path, list) in [
        ("/v1/dashboard/overview", "customers"),
        ("/v1/dashboard/customers", "customers"),
        ("/v1/dashboard/agents?customer_id=acme", "agents"),
    ] {
        let (status, answer) = app.admin_get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let rows = answer[list].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{path}: {answer}");
        assert_eq!(rows[0]["cost_cents"], json!(12.5), "{path}: {answer}");
    }
    app.stop().await;
}

/// Makes the insert of a dead letter whose element has the event type `poison` fail inside
/// the transaction: after the group's events were inserted.
async fn poison_dead_letters(store: &Store) {
    match store {
        Store::Postgres(pool) => sqlx::raw_sql(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.raw LIKE '%\"poison\"%' THEN \
                 RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON dead_letters \
               FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
        Store::Sqlite(pool) => sqlx::raw_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON dead_letters \
               WHEN NEW.raw LIKE '%\"poison\"%' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .execute(pool)
        .await
        .map(drop)
        .unwrap(),
    }
}

/// Case 5: 30 requests wait in one group behind a held writer; one of them fails inside the
/// transaction (a trigger refuses its dead letter, written after the group's events). The
/// group commits nothing, so when the writer
/// writes each request alone, every innocent neighbour is told `accepted` (not `duplicate` of
/// a half-committed write) and its event is stored once; only the poisoned request fails. The
/// issue saw 4 of 30 told `duplicate` on Postgres when a failed group had committed part of
/// its work. Mutation: writing the Postgres group on a plain connection (each statement
/// committed alone, as before the group became one transaction) makes every neighbour's
/// retry answer `duplicate`.
#[expect(
    clippy::disallowed_methods,
    reason = "the test queues requests from tasks while the writer is held"
)]
async fn a_failed_group_retried_one_by_one_reports_neighbours_accepted(backend: Backend) {
    let opts = Options {
        limits: brain_server::config::Limits {
            pg_writers: 1,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let key = app.mint("acme").await;
    poison_dead_letters(app.store()).await;
    let failed_groups = || {
        app.state
            .writer_stats()
            .failed_groups
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let lock = crate::hold_writer(app.store()).await;
    let send = |ev: Value| {
        let http = app.client.clone();
        let url = app.url("/v1/events");
        let key = key.clone();
        tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&ev)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        })
    };
    // The writer takes the first request alone and waits on the lock; 30 queue behind it.
    let first = send(tool_call("agent_a", "Bash", true, 0));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut innocents = Vec::new();
    let mut poisoned = None;
    for i in 1..=30 {
        if i == 15 {
            let bad = crate::helpers::event("poison", "agent_a", None, json!({}));
            poisoned = Some(send(json!([tool_call("agent_a", "Bash", true, i), bad])));
        } else {
            let ev = tool_call("agent_a", "Bash", true, i);
            innocents.push((ev["event_id"].as_str().unwrap().to_owned(), send(ev)));
        }
    }
    assert!(
        crate::wait_for(|| app.state.queue_depth() == 30).await,
        "only {} of 30 requests queued",
        app.state.queue_depth()
    );
    lock.release().await;

    let (status, body) = first.await.unwrap();
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::OK, &json!(1)),
        "{body}"
    );
    let (status, body) = poisoned.unwrap().await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    for (id, task) in innocents {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["results"][0]["event_id"], json!(id), "{body}");
        assert_eq!(body["results"][0]["status"], "accepted", "{body}");
        assert_eq!(
            stored_copies(app.store(), &id).await.len(),
            1,
            "event {id} stored once"
        );
    }
    assert_eq!(
        failed_groups(),
        1,
        "the 30 were one group, retried one by one"
    );
    assert_eq!(app.store().count_events().await.unwrap(), 30);
    assert!(
        app.store()
            .dead_letters("acme", 10)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

/// Limits with short connection timeouts, for the slow-client tests.
fn short_timeouts(header_s: u64, body_s: u64, drain_s: u64, max_connections: usize) -> Options {
    use std::time::Duration;
    Options {
        limits: brain_server::config::Limits {
            header_read_timeout: Duration::from_secs(header_s),
            body_read_timeout: Duration::from_secs(body_s),
            shutdown_drain: Duration::from_secs(drain_s),
            max_connections,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    }
}

/// Reads `stream` until the server closes it (or resets it), for at most `within`: what it
/// sent, or `None` when it kept the connection open that long.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Case 2: a client that sends its headers a line at a time, and a kept-alive connection left
/// idle, are both closed after the header read timeout (1 s here). Before the fix
/// (`axum::serve`, no timer): both were held for as long as the client liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[expect(
    clippy::disallowed_methods,
    reason = "the test trickles bytes from a task"
)]
async fn slow_headers_and_idle_connections_are_closed() {
    use tokio::io::AsyncWriteExt as _;
    let Some(app) = spawn_app_with(Backend::Sqlite, short_timeouts(1, 30, 10, 64)).await else {
        return;
    };
    let secs = std::time::Duration::from_secs;

    // Headers trickled: a line every 300 ms, never finished.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: brain\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..30 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if writer
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let closed = tokio::time::timeout(secs(4), async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0_u8; 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a trickled header was still being read after 4 s"
    );
    trickle.abort();

    // A kept-alive connection after one answered request, then silence.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: brain\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, secs(4))
        .await
        .expect("an idle kept-alive connection was still open after 4 s");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    app.stop().await;
}

/// Case 2: a body sent a byte every 200 ms is cut off after the body read timeout (1 s here)
/// with 408 `body_timeout` in the error envelope, and nothing is stored. Before the fix it was
/// read for as long as it kept coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[expect(
    clippy::disallowed_methods,
    reason = "the test trickles bytes from a task"
)]
async fn a_trickled_body_is_cut_off_with_408() {
    use tokio::io::AsyncWriteExt as _;
    let Some(app) = spawn_app_with(Backend::Sqlite, short_timeouts(10, 1, 10, 64)).await else {
        return;
    };
    let key = app.mint("acme").await;
    let body = json!([tool_call("agent_a", "Bash", true, 1)]).to_string();
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: brain\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for b in body.bytes() {
            if writer.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let answer = tokio::time::timeout(std::time::Duration::from_secs(4), async {
        use tokio::io::AsyncReadExt as _;
        let mut got = Vec::new();
        let mut buf = [0_u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("the trickled body was still being read after 4 s");
    trickle.abort();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let envelope: Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    assert_error(&envelope, "body_timeout");
    assert_eq!(app.store().count_events().await.unwrap(), 0);
    app.stop().await;
}

/// Case 2: with `max_connections` = 4, twelve connections that never send a byte hold at most
/// four slots (the rest wait in the listen backlog, not in an open file), each closed after
/// the header timeout, and an honest request behind them is served. Before the fix every
/// connection was accepted and held: under a 1024 open-file limit, `accept` failed and ingest
/// timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_limit_wait_and_are_served() {
    let Some(app) = spawn_app_with(Backend::Sqlite, short_timeouts(1, 30, 10, 4)).await else {
        return;
    };
    let key = app.mint("acme").await;
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    assert!(
        crate::wait_for(|| app.state.open_connections() == 4).await,
        "{} connections served, not 4",
        app.state.open_connections()
    );
    // Never more than 4 while the idle ones are cut off and the next ones taken in.
    for _ in 0..30 {
        assert!(app.state.open_connections() <= 4, "over the limit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let honest = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.post_events(&key, &tool_call("agent_a", "Bash", true, 1)),
    )
    .await
    .expect("the honest request was not served within 10 s");
    assert_eq!(honest.status(), StatusCode::OK);
    assert!(app.state.open_connections() <= 4);
    drop(idle);
    app.stop().await;
}

/// Case 2: a shutdown while a request is half-sent (headers done, body stalled) finishes
/// within the drain bound (1 s here; the body and header timeouts are 60 s), having stored
/// nothing of that request. Before the fix the listener closed and `run` never returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_a_half_sent_request_ends_within_the_drain() {
    use tokio::io::AsyncWriteExt as _;
    let Some(app) = spawn_app_with(Backend::Sqlite, short_timeouts(60, 60, 1, 64)).await else {
        return;
    };
    let key = app.mint("acme").await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: brain\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"event_id\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir = tokio::time::timeout(std::time::Duration::from_secs(5), app.stop_keeping_data())
        .await
        .expect("shutdown did not finish within 5 s with a half-sent request");
    let store = Store::open_sqlite_file(&dir.path().join(brain_server::config::SQLITE_FILE))
        .await
        .unwrap();
    assert_eq!(store.count_events().await.unwrap(), 0);
    store.close().await;
}

/// Case 2: an oversized request target (10 KiB) and an oversized header block (20 KiB) are
/// answered 414 and 431 in the error envelope. Before the fix both went on to the handlers (the
/// target got 401 here, the headers 200); only a head over hyper's ~400 KB buffer was
/// refused, with a bare 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_targets_and_headers_get_the_envelope() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let resp = app
        .client
        .get(app.url(&format!(
            "/v1/dashboard/agents?customer_id={}",
            "a".repeat(10 * 1024)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::URI_TOO_LONG);
    assert_error(&resp.json().await.unwrap(), "uri_too_long");
    let resp = app
        .client
        .get(app.url("/v1/healthz"))
        .header("x-padding", "p".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_error(&resp.json().await.unwrap(), "headers_too_large");
    app.stop().await;
}
