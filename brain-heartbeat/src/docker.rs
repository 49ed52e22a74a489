//! The Docker Engine API, read over its Unix socket: Paperclip's uptime, the running
//! agent-runtime containers, and their versions.
//!
//! Speaks the Engine API's HTTP/1.1 wire format (`GET /containers/json`,
//! `GET /containers/{name}/json`) with hyper over a `tokio::net::UnixStream`; no Docker SDK.
//! Source of the shapes: Docker Engine API v1.43 reference (`ContainerSummary`,
//! `ContainerInspectResponse.State.StartedAt`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// Default path of the Docker Engine API socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long one Engine API request may take before it is abandoned.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures talking to the Docker Engine API.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The socket could not be connected to.
    #[error("connect to the Docker socket {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("Docker Engine API request {uri}")]
    Request {
        /// The request path.
        uri: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
    /// The engine answered with a non-2xx status.
    #[error("Docker Engine API {uri} answered {status}")]
    Status {
        /// The request path.
        uri: String,
        /// The status code.
        status: u16,
    },
    /// The answer was not the JSON shape the Engine API documents.
    #[error("Docker Engine API {uri} answered unexpected JSON")]
    Decode {
        /// The request path.
        uri: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The request path is not a valid URI.
    #[error("invalid Docker Engine API path {uri}")]
    BadUri {
        /// The request path.
        uri: String,
    },
    /// The engine did not answer in time.
    #[error("Docker Engine API {uri} timed out")]
    Timeout {
        /// The request path.
        uri: String,
    },
}

/// Which containers are Paperclip and which are agent runtimes.
#[derive(Debug, Clone)]
pub struct DockerSelectors {
    /// Name of the Paperclip container (without the leading `/`).
    pub paperclip_container: String,
    /// `key=value` label carried by agent-runtime containers.
    pub agent_label: String,
    /// Label holding an agent-runtime container's agent id; the container name when absent.
    pub agent_id_label: String,
    /// Label holding the agent's version; the image tag when absent.
    pub version_label: String,
}

/// What the Engine API told about the host's agents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerFacts {
    /// Seconds since the Paperclip container started; `None` when it is not running.
    pub paperclip_uptime_s: Option<u64>,
    /// Running agent-runtime containers.
    pub agent_runtime_count: u64,
    /// Agent id → version of each running agent-runtime container.
    pub agent_versions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSummary {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerInspect {
    state: ContainerState,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerState {
    running: bool,
    started_at: String,
}

/// Reads the Docker facts, or `Ok(None)` when there is no socket at `socket` (no Docker on
/// this host: the fields are then reported as unknown, never invented).
///
/// # Errors
/// [`DockerError`] when the socket exists but the engine cannot be asked or answers badly.
pub async fn read_facts(
    socket: &Path,
    selectors: &DockerSelectors,
    now: DateTime<Utc>,
) -> Result<Option<DockerFacts>, DockerError> {
    if !socket.exists() {
        return Ok(None);
    }
    let filters = serde_json::json!({"label": [selectors.agent_label], "status": ["running"]});
    let list_uri = format!(
        "/containers/json?filters={}",
        percent_encode(&filters.to_string())
    );
    let runtimes: Vec<ContainerSummary> = get_json(socket, &list_uri).await?;
    let mut facts = DockerFacts {
        agent_runtime_count: runtimes.len() as u64,
        ..DockerFacts::default()
    };
    for c in runtimes {
        let name = c
            .names
            .first()
            .map(|n| n.trim_start_matches('/').to_owned());
        let Some(id) = c.labels.get(&selectors.agent_id_label).cloned().or(name) else {
            continue;
        };
        let version = c
            .labels
            .get(&selectors.version_label)
            .cloned()
            .or_else(|| image_tag(&c.image).map(str::to_owned));
        if let Some(version) = version {
            facts.agent_versions.insert(id, version);
        }
    }
    let inspect_uri = format!(
        "/containers/{}/json",
        percent_encode(&selectors.paperclip_container)
    );
    match get_json::<ContainerInspect>(socket, &inspect_uri).await {
        Ok(c) if c.state.running => {
            facts.paperclip_uptime_s = DateTime::parse_from_rfc3339(&c.state.started_at)
                .ok()
                .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0) as u64);
        }
        Ok(_) | Err(DockerError::Status { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(Some(facts))
}

/// The tag of an image reference (`repo/name:1.2.3` → `1.2.3`), ignoring registry ports.
fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    Some(tag.split('@').next().unwrap_or(tag))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn get_json<T: serde::de::DeserializeOwned>(
    socket: &Path,
    uri: &str,
) -> Result<T, DockerError> {
    tokio::time::timeout(REQUEST_TIMEOUT, get_json_inner(socket, uri))
        .await
        .map_err(|_| DockerError::Timeout {
            uri: uri.to_owned(),
        })?
}

async fn get_json_inner<T: serde::de::DeserializeOwned>(
    socket: &Path,
    uri: &str,
) -> Result<T, DockerError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| DockerError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let request_err = |source| DockerError::Request {
        uri: uri.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(request_err)?;
    // The connection future drives the socket; it ends when the response body is read.
    let driver = async move {
        let _ = conn.await;
    };
    let request = hyper::Request::get(uri)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())
        .map_err(|_| DockerError::BadUri {
            uri: uri.to_owned(),
        })?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(request_err)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(request_err)?
            .to_bytes();
        // Dropping the sender lets the connection future finish.
        drop(sender);
        Ok::<_, DockerError>((status, body))
    };
    let (result, ()) = tokio::join!(exchange, driver);
    let (status, body) = result?;
    if !(200..300).contains(&status) {
        return Err(DockerError::Status {
            uri: uri.to_owned(),
            status,
        });
    }
    serde_json::from_slice(&body).map_err(|source| DockerError::Decode {
        uri: uri.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_ignore_registry_ports_and_digests() {
        assert_eq!(
            image_tag("ghcr.io/m8trx/agent-runtime:2.1.39"),
            Some("2.1.39")
        );
        assert_eq!(
            image_tag("localhost:5000/agent:1.0@sha256:abc"),
            Some("1.0")
        );
        assert_eq!(image_tag("localhost:5000/agent"), None);
        assert_eq!(image_tag("agent"), None);
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"{"a":["b=c"]}"#),
            "%7B%22a%22%3A%5B%22b%3Dc%22%5D%7D"
        );
    }
}
