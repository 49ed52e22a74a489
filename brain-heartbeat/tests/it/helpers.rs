//! A customer box in a temp dir, a fake Docker Engine API on a Unix socket, and a stand-in
//! brain-server answering `GET /v1/whoami`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tempfile::TempDir;

/// A box: env file, spool, and the heartbeat binary run against them.
pub(crate) struct Box_ {
    pub(crate) dir: TempDir,
}

impl Box_ {
    /// A box whose env file names `url` (and a well-formed key) or nothing.
    pub(crate) fn new(url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = match url {
            Some(url) => format!(
                "BRAIN_URL={url}\nBRAIN_API_KEY=m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
            ),
            None => String::new(),
        };
        std::fs::write(dir.path().join("brain.env"), env).unwrap();
        Box_ { dir }
    }

    /// Runs `brain-heartbeat` with the Docker socket at `socket` (none: a missing path).
    pub(crate) fn heartbeat(&self, socket: Option<&Path>) -> Output {
        let missing = self.dir.path().join("docker.sock");
        Command::new(env!("CARGO_BIN_EXE_brain-heartbeat"))
            .env("BRAIN_ENV_FILE", self.dir.path().join("brain.env"))
            .env("BRAIN_SPOOL", self.dir.path().join("spool.db"))
            .env("BRAIN_AGENT_ID", "host_box_1")
            .env("BRAIN_DOCKER_SOCKET", socket.unwrap_or(&missing))
            .env_remove("BRAIN_URL")
            .env_remove("BRAIN_API_KEY")
            .output()
            .unwrap()
    }

    /// Runs `brain-heartbeat --check --json` with the Docker socket at `socket`; the exit
    /// code and the parsed report.
    pub(crate) fn check(&self, socket: &Path) -> (Option<i32>, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_brain-heartbeat"))
            .args(["--check", "--json"])
            .env("BRAIN_ENV_FILE", self.dir.path().join("brain.env"))
            .env("BRAIN_SPOOL", self.dir.path().join("spool.db"))
            .env("BRAIN_AGENT_ID", "host_box_1")
            .env("BRAIN_DOCKER_SOCKET", socket)
            .env_remove("BRAIN_URL")
            .env_remove("BRAIN_API_KEY")
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "--check --json printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), report)
    }

    /// The spooled envelopes of `event_type`, oldest first.
    pub(crate) fn spooled(&self, event_type: &str) -> Vec<Value> {
        let db = rusqlite::Connection::open(self.dir.path().join("spool.db")).unwrap();
        let mut stmt = db
            .prepare("SELECT body FROM queue WHERE event_type = ?1 ORDER BY seq")
            .unwrap();
        stmt.query_map([event_type], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
            .collect()
    }
}

#[derive(Clone)]
struct Fake {
    containers: Value,
    paperclip: Option<Value>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A Docker Engine API stand-in: answers `GET /containers/json` and
/// `GET /containers/paperclip/json` with the Engine API's JSON, on a Unix socket.
pub(crate) struct FakeDocker {
    pub(crate) socket: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
    _thread: std::thread::JoinHandle<()>,
}

async fn answer(State(fake): State<Fake>, req: Request) -> Response {
    let uri = req.uri().to_string();
    fake.requests.lock().unwrap().push(uri.clone());
    if req.uri().path() == "/containers/json" {
        return axum::Json(fake.containers.clone()).into_response();
    }
    match (&fake.paperclip, req.uri().path()) {
        (Some(p), "/containers/paperclip/json") => axum::Json(p.clone()).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"message": "No such container: paperclip"})),
        )
            .into_response(),
    }
}

impl FakeDocker {
    pub(crate) fn start(containers: Value, paperclip: Option<Value>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            containers,
            paperclip,
            requests: requests.clone(),
        };
        let std_listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
                let app = Router::new().fallback(answer).with_state(fake);
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeDocker {
            socket,
            requests,
            _dir: dir,
            _thread: thread,
        }
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A stand-in brain-server answering `GET /v1/whoami` as the real one does: 200 with the
/// customer and key id for [`FakeBrain::KEY`], 401 in the error envelope for any other.
pub(crate) struct FakeBrain {
    pub(crate) url: String,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeBrain {
    /// The key the fake accepts (the one [`Box_::new`] writes).
    pub(crate) const KEY: &'static str = "m8brain_dev_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    pub(crate) fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().route(
                    "/v1/whoami",
                    axum::routing::get(|headers: axum::http::HeaderMap| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        if auth == format!("Bearer {}", FakeBrain::KEY) {
                            axum::Json(serde_json::json!({
                                "customer_id": "acme",
                                "key_id": "key_0f3c2b1a9d8e4f7a6b5c4d3e2f1a0b9c"
                            }))
                            .into_response()
                        } else {
                            (
                                StatusCode::UNAUTHORIZED,
                                axum::Json(serde_json::json!({
                                    "error": {"code": "unauthorized", "message": "invalid API key"}
                                })),
                            )
                                .into_response()
                        }
                    }),
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeBrain {
            url,
            _thread: thread,
        }
    }
}
