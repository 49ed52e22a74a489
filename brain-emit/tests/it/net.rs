//! A network-fault harness (issue 6): a loopback TCP proxy between the emitter and a small
//! upstream that stores events by id (answering `duplicate` for an id it already has),
//! which resets connections mid-request, cuts responses half-way, black-holes requests or
//! delays answers, so `flush` can be driven through each fault to a clean end.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::flush_wait_against;
use crate::faults::queue_errors;
use crate::helpers::Sandbox;

/// What the proxy does to the next connections.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Forwards both ways, holding the answer back this long first.
    Delay(Duration),
    /// Reads a few bytes of the request, then closes with the rest unread: the kernel
    /// answers with a TCP reset while the client is still sending.
    ResetMidRequest,
    /// Forwards the request (the upstream stores the events), then sends the client only
    /// the first half of the answer and closes.
    CutMidResponse,
    /// Accepts and reads the request, never answers, never closes.
    BlackHole,
}

/// The upstream: stores event ids, answers each batch with per-event results.
struct StoringUpstream {
    port: u16,
    stored: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
}

impl StoringUpstream {
    fn start() -> StoringUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stored = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stored.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = answer_batch(conn, &st);
            }
        });
        StoringUpstream { port, stored, stop }
    }

    fn stored(&self) -> HashSet<String> {
        self.stored.lock().unwrap().clone()
    }
}

impl Drop for StoringUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one `POST /v1/events` (gzip'd JSON array) and answers it with per-event results.
fn answer_batch(mut conn: TcpStream, stored: &Mutex<HashSet<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text)?;
    let events: Vec<Value> = serde_json::from_str(&text)?;
    let mut stored = stored.lock().unwrap();
    let results: Vec<Value> = events
        .iter()
        .map(|e| {
            let id = e["event_id"].as_str().unwrap_or_default().to_owned();
            let status = if stored.insert(id.clone()) {
                "accepted"
            } else {
                "duplicate"
            };
            json!({"event_id": id, "status": status})
        })
        .collect();
    let accepted = results.iter().filter(|r| r["status"] == "accepted").count();
    let answer = json!({
        "accepted": accepted,
        "duplicate": events.len() - accepted,
        "rejected": 0,
        "results": results,
    })
    .to_string();
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )
}

/// The proxy: forwards loopback connections to `upstream`, with the current [`Fault`].
struct FaultProxy {
    port: u16,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::Delay(Duration::ZERO)));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, sp) = (fault.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let fault = *f.lock().unwrap();
                std::thread::spawn(move || {
                    let _ = relay(conn, upstream, fault);
                });
            }
        });
        FaultProxy { port, fault, stop }
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One proxied connection under `fault`.
fn relay(mut client: TcpStream, upstream: u16, fault: Fault) -> std::io::Result<()> {
    match fault {
        Fault::ResetMidRequest => {
            let mut first = [0u8; 16];
            client.read_exact(&mut first)?;
            // Let the rest of the request arrive, then close with it unread: a reset.
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        Fault::BlackHole => {
            let mut sink = [0u8; 4096];
            while client.read(&mut sink)? > 0 {}
            return Ok(());
        }
        Fault::Delay(_) | Fault::CutMidResponse => {}
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(std::net::Shutdown::Write);
    });
    // The upstream answers `Connection: close`: its answer ends when it closes.
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    match fault {
        Fault::Delay(d) => {
            std::thread::sleep(d);
            client.write_all(&answer)?;
        }
        _ => client.write_all(&answer[..answer.len() / 2])?,
    }
    client.shutdown(std::net::Shutdown::Both)
}

/// Faults between the emitter and the server never lose or condemn an event: through a
/// reset mid-request, an answer cut half-way (after the upstream stored the batch) and a
/// black hole, `flush --wait` exits 1 keeping every row and dead-lettering none; once the
/// network only delays, it drains the spool, and the upstream holds every event exactly
/// once (the batch it stored behind the cut answer comes back as duplicates).
#[test]
fn flush_reaches_a_clean_end_through_network_faults() {
    let upstream = StoringUpstream::start();
    let proxy = FaultProxy::start(upstream.port);
    let sb = Sandbox::new();
    queue_errors(&sb, 40);
    let ids: HashSet<String> = sb
        .rows()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 40);
    for fault in [
        Fault::ResetMidRequest,
        Fault::CutMidResponse,
        Fault::BlackHole,
    ] {
        proxy.set(fault);
        let out = flush_wait_against(&sb, proxy.port);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {stderr}");
        assert_eq!(sb.rows().len(), 40, "{fault:?}: every row kept");
        let status = sb.status();
        assert_eq!(status["dead_letters"], 0, "{fault:?}");
        assert!(status["last_error"].is_string(), "{fault:?}: {status}");
        assert!(status["config_error"].is_null(), "{fault:?}: {status}");
        if let Fault::CutMidResponse = fault {
            assert!(
                status["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("broke while reading the answer")),
                "the cause is named: {status}"
            );
        }
    }
    assert_eq!(
        upstream.stored(),
        ids,
        "the cut answer came after the upstream stored the batch"
    );
    proxy.set(Fault::Delay(Duration::from_secs(2)));
    let out = flush_wait_against(&sb, proxy.port);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accepted 0, duplicate 40, rejected 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(sb.rows().is_empty());
    let status = sb.status();
    assert_eq!(status["dead_letters"], 0);
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(upstream.stored(), ids);
}
