//! One request: a batch of queued envelopes, gzip'd, posted to `POST /v1/events`, and what
//! its answer means (the table in [`super`]). Brain's 413 (too large) or 400 (unreadable
//! content) splits the batch, any other 400 or 413 keeps it; the delivery HTTP client is
//! built here and only here.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use shared_proto::limits::{MAX_BATCH_EVENTS, MAX_BODY_BYTES};
use shared_proto::{BatchResponse, ErrorBody};

use super::settle::apply_results;
use super::{FlushReport, LEASE_TTL_MS, Stop};
use crate::error_chain;
use crate::spool::{QueuedRow, Spool};

/// Total timeout of one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an idle kept-alive connection stays in the pool.
///
/// brain-server closes a connection idle for 10 s (`brain-server/src/http.rs`). A flusher
/// that reused a connection at the moment the server closes it would see the request fail
/// (a reset, or an empty answer) for no fault of the batch; dropping idle connections well
/// before the server does means every reused connection is one the server still keeps.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Budget for one request body (the server's limit, minus a margin), in bytes.
const BODY_BUDGET: usize = MAX_BODY_BYTES - 4096;

pub(super) fn build_client() -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
}

/// Posts batches for the holder of the lease `token`.
pub(super) struct Sender<'a> {
    pub(super) client: &'a Client,
    /// `<BRAIN_URL>/v1/events`.
    pub(super) endpoint: &'a str,
    /// The API key, sent as a bearer token.
    pub(super) key: &'a str,
    /// Our lease, renewed before every request.
    pub(super) token: &'a str,
}

impl Sender<'_> {
    /// Sends batches until the queue is empty or something stops us.
    pub(super) fn drain(&self, spool: &mut Spool, report: &mut FlushReport) -> Result<(), Stop> {
        loop {
            let rows = spool.peek_batch(MAX_BATCH_EVENTS, BODY_BUDGET)?;
            if rows.is_empty() {
                return Ok(());
            }
            self.send(spool, &rows, report)?;
        }
    }

    /// Sends one batch and applies the answer; splits it when the server finds it too
    /// large or unreadable.
    fn send(
        &self,
        spool: &mut Spool,
        rows: &[QueuedRow],
        report: &mut FlushReport,
    ) -> Result<(), Stop> {
        if !spool.renew_lease(self.token, LEASE_TTL_MS)? {
            return Err(Stop::LostLease);
        }
        let body = gzip_batch(rows);
        let answer = self
            .client
            .post(self.endpoint)
            .bearer_auth(self.key)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(
                USER_AGENT,
                concat!("brain-emit/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send();
        let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                spool.bump_attempts(&ids)?;
                return Err(Stop::Retryable {
                    reason: format!("cannot reach {}: {}", self.endpoint, error_chain(&e)),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match response.bytes() {
            Ok(b) => b,
            Err(e) => {
                // The connection broke mid-answer: whether the server stored the batch is
                // unknown, so keep every row (resending is safe: ids are deduplicated).
                spool.bump_attempts(&ids)?;
                return Err(Stop::Retryable {
                    reason: format!(
                        "server answered {status}, then the connection broke while reading the answer: {}",
                        error_chain(&e)
                    ),
                    retry_after,
                });
            }
        };
        let server_says = || {
            serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| format!("{}: {}", b.error.code, b.error.message))
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                })
        };
        match status {
            StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY => {
                match serde_json::from_slice::<BatchResponse>(&bytes) {
                    Ok(batch) => {
                        if apply_results(spool, rows, &batch, report)? == 0 {
                            // Nothing settled: resending at once would loop forever.
                            return Err(Stop::Retryable {
                                reason: format!(
                                    "server answered {status} without a result for any of {} events",
                                    rows.len()
                                ),
                                retry_after,
                            });
                        }
                        Ok(())
                    }
                    Err(e) => {
                        spool.bump_attempts(&ids)?;
                        Err(Stop::Retryable {
                            reason: format!(
                                "server answered {status} with an unreadable body: {e}"
                            ),
                            retry_after: None,
                        })
                    }
                }
            }
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                let Some(verdict) = brain_batch_verdict(status, &bytes) else {
                    // Not Brain's verdict on our events (a proxy's body-size limit, plain
                    // HTTP to a TLS port, another service, a transport problem such as
                    // gzip): keep every row and report it as a configuration problem.
                    spool.bump_attempts(&ids)?;
                    return Err(Stop::Config(format!(
                        "server answered {status} to POST {} without Brain's verdict on the \
                         events (is BRAIN_URL right? does a proxy limit request bodies?): {}",
                        self.endpoint,
                        server_says()
                    )));
                };
                if let [only] = rows {
                    if !verdict.condemns_a_single_event() {
                        spool.bump_attempts(&ids)?;
                        return Err(Stop::Config(format!(
                            "server refused a single event with {status} {}: {}",
                            verdict.code, verdict.message
                        )));
                    }
                    spool.dead_letter(&only.event_id, &verdict.code, &verdict.message)?;
                    report.rejected += 1;
                    return Ok(());
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                self.send(spool, left, report)?;
                self.send(spool, right, report)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                spool.bump_attempts(&ids)?;
                Err(Stop::Config(format!(
                    "server refused the API key ({status}): {}",
                    server_says()
                )))
            }
            s if s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error() =>
            {
                spool.bump_attempts(&ids)?;
                Err(Stop::Retryable {
                    reason: format!("server answered {status}: {}", server_says()),
                    retry_after,
                })
            }
            s => {
                spool.bump_attempts(&ids)?;
                Err(Stop::Config(format!(
                    "server answered {s} to POST {} (is BRAIN_URL right?): {}",
                    self.endpoint,
                    server_says()
                )))
            }
        }
    }
}

/// Codes of a Brain 400 that are about the batch's content, so splitting the batch (and
/// dead-lettering an event refused alone) is the right answer.
const CONTENT_ERROR_CODES: [&str; 2] = ["malformed_json", "not_an_envelope"];

/// Codes of a Brain 413 (`body_too_large`: the body is over
/// [`shared_proto::limits::MAX_BODY_BYTES`]; `too_many_events`: over
/// [`MAX_BATCH_EVENTS`]), answered by splitting the batch.
const SIZE_ERROR_CODES: [&str; 2] = ["body_too_large", "too_many_events"];

/// Brain's verdict on a whole batch, read from a 400 or 413 error envelope.
#[derive(Debug, PartialEq, Eq)]
struct BatchVerdict {
    /// The error code, one of [`CONTENT_ERROR_CODES`] or [`SIZE_ERROR_CODES`].
    code: String,
    /// Brain's message.
    message: String,
}

impl BatchVerdict {
    /// Whether an event sent alone and refused with this verdict is itself at fault (so it
    /// goes to the dead letters): true for content errors and `body_too_large`; a
    /// `too_many_events` for one event says nothing about the event.
    fn condemns_a_single_event(&self) -> bool {
        self.code != "too_many_events"
    }
}

/// The verdict in a 400 or 413 answer when its body is Brain's error envelope with one of
/// the codes that justify splitting the batch (400: [`CONTENT_ERROR_CODES`], 413:
/// [`SIZE_ERROR_CODES`]); `None` for anything else: an HTML page from a proxy, a bare
/// status, another Brain code such as `invalid_gzip`, which are no reason to discard events.
fn brain_batch_verdict(status: StatusCode, body: &[u8]) -> Option<BatchVerdict> {
    let codes: &[&str] = match status {
        StatusCode::BAD_REQUEST => &CONTENT_ERROR_CODES,
        StatusCode::PAYLOAD_TOO_LARGE => &SIZE_ERROR_CODES,
        _ => return None,
    };
    let body = serde_json::from_slice::<ErrorBody>(body).ok()?;
    codes
        .contains(&body.error.code.as_str())
        .then_some(BatchVerdict {
            code: body.error.code,
            message: body.error.message,
        })
}

/// `[` + the queued envelopes joined by `,` + `]`, gzip'd; the bodies are JSON already.
fn gzip_batch(rows: &[QueuedRow]) -> Vec<u8> {
    let len: usize = rows.iter().map(|r| r.body.len() + 1).sum::<usize>() + 2;
    let mut gz = GzEncoder::new(Vec::with_capacity(len / 4), Compression::fast());
    // Writes go into a Vec, which cannot fail; a failure would surface as an empty body,
    // which the server answers with 400 and the batch is split.
    let _ = gz.write_all(b"[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            let _ = gz.write_all(b",");
        }
        let _ = gz.write_all(row.body.as_bytes());
    }
    let _ = gz.write_all(b"]");
    gz.finish().unwrap_or_default()
}

/// `Retry-After` as seconds or an HTTP date, capped at 1 hour.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let delta = at.timestamp() - chrono::Utc::now().timestamp();
            u64::try_from(delta).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(secs.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn only_brains_envelope_with_a_size_or_content_code_is_a_verdict() {
        let env = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        let verdict = |status, body: &str| brain_batch_verdict(status, body.as_bytes());
        let too_large = StatusCode::PAYLOAD_TOO_LARGE;
        let bad = StatusCode::BAD_REQUEST;
        for code in SIZE_ERROR_CODES {
            assert!(verdict(too_large, &env(code)).is_some(), "{code}");
            assert!(verdict(bad, &env(code)).is_none(), "400 {code}");
        }
        for code in CONTENT_ERROR_CODES {
            assert!(verdict(bad, &env(code)).is_some(), "{code}");
            assert!(verdict(too_large, &env(code)).is_none(), "413 {code}");
        }
        for body in [
            "<html><body><h1>413 Request Entity Too Large</h1></body></html>",
            "",
            r#"{"error":"too big"}"#,
            &env("invalid_gzip"),
        ] {
            assert!(verdict(too_large, body).is_none(), "{body}");
            assert!(verdict(bad, body).is_none(), "{body}");
        }
        assert!(
            !verdict(too_large, &env("too_many_events"))
                .unwrap()
                .condemns_a_single_event()
        );
        assert!(
            verdict(too_large, &env("body_too_large"))
                .unwrap()
                .condemns_a_single_event()
        );
    }

    #[test]
    fn gzip_batch_is_a_json_array() {
        let rows = vec![
            QueuedRow {
                event_id: "a".into(),
                body: r#"{"x":1}"#.into(),
            },
            QueuedRow {
                event_id: "b".into(),
                body: r#"{"x":2}"#.into(),
            },
        ];
        let gz = gzip_batch(&rows);
        let mut out = String::new();
        GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!([{"x":1},{"x":2}]));
    }
}
