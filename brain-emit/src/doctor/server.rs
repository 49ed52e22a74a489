//! The `server` check: `GET /v1/whoami` with the configured key, and what the answer says
//! about the URL and the key.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::USER_AGENT;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use shared_proto::ErrorBody;

use super::{Check, Status};
use crate::config::Settings;
use crate::error_chain;

/// Whole-request timeout of the probe: doctor must answer promptly on a black-holed URL.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Connect timeout of the probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What brain-server's `GET /v1/whoami` answers (docs/api.md).
#[derive(Debug, Deserialize)]
struct WhoAmI {
    customer_id: String,
    key_id: String,
}

/// `server`: skipped without a usable URL and key.
pub(super) fn whoami(settings: &Settings, url: Option<&Url>) -> Check {
    let (Some(url), Some(key)) = (url, settings.api_key_plain()) else {
        return Check::new(
            "server",
            Status::Skip,
            "not checked: needs a well-formed BRAIN_URL and BRAIN_API_KEY",
        );
    };
    let endpoint = format!("{}/v1/whoami", url.as_str().trim_end_matches('/'));
    let client = match Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                "server",
                Status::Fail,
                format!("cannot build the HTTP client: {}", error_chain(&e)),
            );
        }
    };
    let answer = client
        .get(&endpoint)
        .bearer_auth(key)
        .header(
            USER_AGENT,
            concat!("brain-emit-doctor/", env!("CARGO_PKG_VERSION")),
        )
        .send()
        .and_then(|r| {
            let status = r.status();
            r.bytes().map(|b| (status, b))
        });
    match answer {
        Ok((status, body)) => classify(&endpoint, status, &body),
        Err(e) => Check::new(
            "server",
            Status::Fail,
            format!("server unreachable: GET {endpoint}: {}", error_chain(&e)),
        ),
    }
}

/// What an answer to `GET <endpoint>` says: 200 with the whoami body is the only `ok`; an
/// answer that is not Brain's (no whoami body, no error envelope) means the URL points at
/// something else (another service, a proxy's page).
fn classify(endpoint: &str, status: StatusCode, body: &[u8]) -> Check {
    let not_brain = || {
        let excerpt: String = String::from_utf8_lossy(&body[..body.len().min(120)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Check::new(
            "server",
            Status::Fail,
            format!(
                "wrong URL or a proxy in the way: GET {endpoint} answered {status} without \
                 Brain's answer ({:?})",
                excerpt.trim()
            ),
        )
    };
    if status == StatusCode::OK {
        return match serde_json::from_slice::<WhoAmI>(body) {
            Ok(me) => Check::new(
                "server",
                Status::Ok,
                format!(
                    "key accepted: customer {}, key {}",
                    me.customer_id, me.key_id
                ),
            ),
            Err(_) => not_brain(),
        };
    }
    let Ok(envelope) = serde_json::from_slice::<ErrorBody>(body) else {
        return not_brain();
    };
    let says = format!("{}: {}", envelope.error.code, envelope.error.message);
    let (state, what) = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            Status::Fail,
            "key refused (revoked, unknown or another server's)",
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            Status::Warn,
            "rate limited, so the key was not confirmed; try again shortly",
        ),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => (
            Status::Fail,
            "brain-server has no /v1/whoami (older than this brain-emit?) or BRAIN_URL has an extra path",
        ),
        s if s.is_server_error() => (Status::Fail, "server error"),
        _ => (Status::Fail, "unexpected answer"),
    };
    Check::new(
        "server",
        state,
        format!("{what}: GET {endpoint} answered {status} ({says})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str) -> Check {
        classify(
            "http://b/v1/whoami",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn answers_are_told_apart() {
        let ok = check(200, r#"{"customer_id":"acme","key_id":"key_1"}"#);
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("customer acme, key key_1"), "{ok:?}");

        let refused = check(
            401,
            r#"{"error":{"code":"unauthorized","message":"invalid API key"}}"#,
        );
        assert_eq!(refused.status, Status::Fail);
        assert!(refused.detail.starts_with("key refused"), "{refused:?}");

        for (status, body) in [
            (404, "<html>404 Not Found</html>"),
            (404, ""),
            (200, "<html>welcome to nginx</html>"),
            (200, r#"{"ok":true}"#),
            (401, "Unauthorized"),
            (502, "Bad Gateway"),
        ] {
            let c = check(status, body);
            assert_eq!(c.status, Status::Fail, "{status} {body}");
            assert!(c.detail.starts_with("wrong URL"), "{status} {body}: {c:?}");
        }

        let limited = check(
            429,
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
        );
        assert_eq!(limited.status, Status::Warn);
        let missing = check(
            404,
            r#"{"error":{"code":"not_found","message":"no route"}}"#,
        );
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.detail.contains("no /v1/whoami"), "{missing:?}");
    }
}
