//! The real `brain-server` binary: `mint-key`, `keys`, `revoke-key`, `serve`, SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, fresh_postgres_db, tool_call};

const BIN: &str = env!("CARGO_BIN_EXE_brain-server");

fn cmd(data_dir: &Path, db_url: Option<&str>) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("RUST_LOG", "info")
        .env("BRAIN_DATA_DIR", data_dir);
    if let Some(url) = db_url {
        c.env("DATABASE_URL", url);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn binary_end_to_end(backend: Backend) {
    let dir = tempfile::TempDir::new().unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match fresh_postgres_db() {
            Some(db) => Some(db),
            None => return,
        },
    };
    let url = pg.as_ref().map(|db| db.url.as_str());

    // mint-key: stdout is exactly the key, one line.
    let out = cmd(dir.path(), url)
        .args([
            "mint-key", "acme", "Acme Inc", "--label", "box-1", "--env", "prod",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    let key = stdout.trim().to_owned();
    shared_proto::ApiKey::parse(&key).expect("a well-formed key");
    assert!(key.starts_with("m8brain_prod_"));
    if backend == Backend::Sqlite {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("brain.db"),
            "start-up says where the database is: {stderr}"
        );
    }

    // keys: lists it without the plaintext.
    let out = cmd(dir.path(), url)
        .args(["keys", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(!listing.contains(&key));
    assert!(listing.contains(&key[key.len() - 4..]));
    assert!(listing.contains("box-1"));
    let key_id = listing
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();

    // revoke-key of an unknown id: exit 1.
    let out = cmd(dir.path(), url)
        .args(["revoke-key", "key_nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // serve: healthz answers, ingest works, SIGTERM exits 0.
    let port = free_port();
    let mut child = cmd(dir.path(), url)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(format!("{base}/v1/healthz")).send().await {
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.json::<Value>().await.unwrap()["ok"], true);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .json(&tool_call("agent_a", "Bash", true, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // The generated admin token file opens the dashboard.
    let token = std::fs::read_to_string(dir.path().join("admin_token")).unwrap();
    let resp = client
        .get(format!("{base}/v1/dashboard/customers"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["customers"][0]["events"], 1);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("#token="),
        "the generated token's URL is printed once: {stderr}"
    );

    // revoke-key of the real id: exit 0.
    let out = cmd(dir.path(), url)
        .args(["revoke-key", &key_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

mod binary_end_to_end {
    #[tokio::test]
    async fn sqlite() {
        super::binary_end_to_end(super::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn postgres() {
        super::binary_end_to_end(super::Backend::Postgres).await;
    }
}

/// The README quickstart starts the server and runs `mint-key` at once on a fresh data
/// directory: every process migrates concurrently. All must succeed, on one schema.
#[test]
fn concurrent_first_starts_on_sqlite_all_succeed() {
    for round in 0..3 {
        let dir = tempfile::TempDir::new().unwrap();
        let children: Vec<_> = (0..4)
            .map(|i| {
                let mut c = cmd(dir.path(), None);
                if i % 2 == 0 {
                    c.arg("migrate");
                } else {
                    c.args(["mint-key", &format!("cust{i}"), "Cust"]);
                }
                c.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // One schema: each migration recorded once, both minted keys listed.
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/sqlite"))
            .unwrap()
            .count();
        let counts = sqlite_counts(&dir.path().join("brain.db"));
        assert_eq!(
            counts,
            (i64::try_from(files).unwrap(), 2),
            "round {round}: (migrations, keys)"
        );
    }
}

/// (rows in `_sqlx_migrations`, rows in `api_keys`) of the SQLite file at `path`.
fn sqlite_counts(path: &Path) -> (i64, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (migrations, keys)
    })
}

/// Bad usage is an operator error: exit 1 with the reason on stderr (clap's own 2 means an
/// unexpected failure here); `--help` succeeds on stdout.
#[test]
fn bad_flags_exit_1_and_help_exits_0() {
    let dir = tempfile::TempDir::new().unwrap();
    for args in [&["--no-such-flag"][..], &["mint-key", "--no-such-flag"]] {
        let out = cmd(dir.path(), None).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"),
            "{args:?}: {out:?}"
        );
    }

    let out = cmd(dir.path(), None).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: brain-server"), "{help}");
    assert!(help.contains("mint-key"), "{help}");
}
