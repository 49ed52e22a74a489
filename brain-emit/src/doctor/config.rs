//! The configuration checks: the env file, the URL and key it sets, and the URL's shape.

use reqwest::Url;
use shared_proto::ApiKey;
use shared_proto::env_vars::{BRAIN_API_KEY, BRAIN_ENV_FILE, BRAIN_URL};

use super::{Check, Status};
use crate::config::{DEFAULT_ENV_FILE, Settings, parse_env_file};

/// `env_file`: the env file exists and can be read; says whether `BRAIN_ENV_FILE` or the
/// default named it.
pub(super) fn env_file(settings: &Settings) -> Check {
    let path = settings.env_file.display();
    let which = if settings.env_file_from_variable {
        format!("named by {BRAIN_ENV_FILE}")
    } else {
        format!("the default; {BRAIN_ENV_FILE} is not set")
    };
    match std::fs::read_to_string(&settings.env_file) {
        Ok(_) => Check::new("env_file", Status::Ok, format!("{path} ({which})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::new(
            "env_file",
            Status::Fail,
            format!(
                "{path} ({which}) does not exist; hooks and the heartbeat read BRAIN_URL and \
                 BRAIN_API_KEY from it (default {DEFAULT_ENV_FILE})"
            ),
        ),
        Err(e) => Check::new(
            "env_file",
            Status::Fail,
            format!("{path} ({which}) cannot be read: {e}"),
        ),
    }
}

/// `settings`: `BRAIN_URL` and `BRAIN_API_KEY` are set and the key has a key's shape; a
/// warning when either comes from this shell's environment or a flag rather than the env
/// file, which is all hooks and the heartbeat see.
pub(super) fn settings(settings: &Settings) -> Check {
    let file = std::fs::read_to_string(&settings.env_file)
        .map(|t| parse_env_file(&t))
        .unwrap_or_default();
    let in_file = |k: &str| file.get(k).is_some_and(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    if settings.url.is_none() {
        missing.push(BRAIN_URL);
    }
    if settings.api_key.is_none() {
        missing.push(BRAIN_API_KEY);
    }
    if !missing.is_empty() {
        return Check::new(
            "settings",
            Status::Fail,
            format!(
                "{} not set (in {} or the environment)",
                missing.join(" and "),
                settings.env_file.display()
            ),
        );
    }
    if let Some(key) = settings.api_key_plain()
        && let Err(e) = ApiKey::parse(key)
    {
        return Check::new(
            "settings",
            Status::Fail,
            format!("{BRAIN_API_KEY} is malformed: {e}"),
        );
    }
    let elsewhere: Vec<&str> = [BRAIN_URL, BRAIN_API_KEY]
        .into_iter()
        .filter(|k| !in_file(k))
        .collect();
    if elsewhere.is_empty() {
        Check::new(
            "settings",
            Status::Ok,
            format!("{BRAIN_URL} and {BRAIN_API_KEY} set in the env file"),
        )
    } else {
        Check::new(
            "settings",
            Status::Warn,
            format!(
                "{} set only in this shell's environment or a flag, not in {}: hooks and the \
                 heartbeat will not see it",
                elsewhere.join(" and "),
                settings.env_file.display()
            ),
        )
    }
}

/// `url`: the configured URL is an http(s) URL with a host; the parsed URL for the server
/// check when it is.
pub(super) fn url(settings: &Settings) -> (Check, Option<Url>) {
    let Some(raw) = settings.url.as_deref() else {
        return (
            Check::new("url", Status::Skip, format!("{BRAIN_URL} is not set")),
            None,
        );
    };
    match parse_brain_url(raw) {
        Ok(url) => (Check::new("url", Status::Ok, raw), Some(url)),
        Err(why) => (
            Check::new("url", Status::Fail, format!("{BRAIN_URL}={raw:?} {why}")),
            None,
        ),
    }
}

/// Parses a `BRAIN_URL`: an `http` or `https` URL with a host and no query or fragment.
///
/// # Errors
/// What is wrong with it, as the end of a sentence that starts with the URL (`has no
/// scheme: …`). A URL without a scheme (`brain.example:8080`) is refused here rather than
/// left to fail as an unreachable server.
pub(crate) fn parse_brain_url(raw: &str) -> Result<Url, String> {
    if raw.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    if !raw.contains("://") {
        return Err(format!(
            "has no scheme: write it as http://{raw} or https://{raw}"
        ));
    }
    let url = Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "has the scheme {:?}, not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or a fragment".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls_parse() {
        for raw in [
            "http://127.0.0.1:8080",
            "https://brain.example",
            "http://brain.tailnet.ts.net:8080",
            "https://proxy.example/brain",
            "http://[::1]:8080",
        ] {
            assert!(parse_brain_url(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn a_url_without_a_scheme_is_named_as_such() {
        // The `url` crate alone would take `brain.example` as the scheme.
        for raw in [
            "brain.example:8080",
            "localhost:8080",
            "10.0.0.5",
            "brain.example",
        ] {
            let e = parse_brain_url(raw).unwrap_err();
            assert!(e.starts_with("has no scheme"), "{raw}: {e}");
            assert!(e.contains(&format!("http://{raw}")), "{raw}: {e}");
        }
    }

    #[test]
    fn other_malformed_urls() {
        let cases = [
            ("ftp://brain.example", "not http or https"),
            ("http://", "not a URL"),
            ("http://brain.example/?x=1", "query"),
            ("http://brain.example/#top", "fragment"),
            ("http://brain example", "whitespace"),
            ("http//brain.example", "no scheme"),
        ];
        for (raw, want) in cases {
            let e = parse_brain_url(raw).unwrap_err();
            assert!(e.contains(want), "{raw}: {e}");
        }
    }
}
