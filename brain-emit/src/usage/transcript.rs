//! Reading Claude Code transcript files: the complete lines after a byte offset, and the usage
//! record (if any) of one line.
//!
//! Owns the on-disk format knowledge. A transcript is JSONL, appended to while the session
//! runs, so its last line may be half written: only bytes up to the last `'\n'` are handed out,
//! the rest is read again next time. Each line is parsed with `serde_json` into a small struct
//! holding only the fields accounting needs (serde skips the rest); line contents are never kept.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use super::UsageError;
use super::pricing::TokenCounts;

/// The complete lines of a transcript after some offset.
#[derive(Debug)]
pub(crate) struct CompleteLines {
    /// Offset (bytes from the start of the file) the bytes were read from.
    pub(crate) start: u64,
    /// Bytes from `start` up to and including the last `'\n'`; empty when no line is complete.
    pub(crate) bytes: Vec<u8>,
}

/// Reads the complete lines of `path` that start at or after byte `offset`.
///
/// A file shorter than `offset` has been replaced or truncated: it is read again from the
/// start (response dedupe keeps that from counting anything twice).
///
/// # Errors
///
/// [`UsageError::Read`] when the file cannot be opened, sized, positioned or read.
pub(crate) fn read_complete_lines(path: &Path, offset: u64) -> Result<CompleteLines, UsageError> {
    let err = |source| UsageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start)).map_err(err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(err)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(complete);
    Ok(CompleteLines { start, bytes })
}

/// What one transcript line means for accounting.
#[derive(Debug, PartialEq)]
pub(crate) enum Line {
    /// Valid JSON that carries no billable usage: not an assistant line, no `message.usage`,
    /// model `<synthetic>`, or an empty id (ccusage drops those too).
    Skip,
    /// Not JSON, or an assistant line whose fields have the wrong shape.
    Malformed,
    /// The usage of one copy of an API response.
    Usage(UsageLine),
}

/// The usage of one assistant line.
#[derive(Debug, PartialEq)]
pub(crate) struct UsageLine {
    /// Dedupe key: `message.id` and `requestId`; `None` when the line has no `message.id`
    /// (such a line is counted as it is, like ccusage does).
    pub(crate) key: Option<String>,
    /// `message.model`, or `unknown` when absent.
    pub(crate) model: String,
    /// The line's `isSidechain` (subagent transcripts set it on every line).
    pub(crate) sidechain: bool,
    /// Tokens per bucket; without the 5m/1h split, `cache_creation_input_tokens` counts as 5m.
    pub(crate) tokens: TokenCounts,
    /// ccusage's dedupe measure: input + output + cache creation + cache read tokens.
    pub(crate) total: u64,
    /// The line's `timestamp` as Unix ms; `None` when absent or not RFC 3339.
    pub(crate) timestamp_ms: Option<i64>,
}

#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "isSidechain", default)]
    is_sidechain: Option<bool>,
    #[serde(rename = "requestId", borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<RawMessage<'a>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<RawCacheCreation>,
}

#[derive(Deserialize)]
struct RawCacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

/// Only the line's `type`, to tell a differently shaped non-assistant line from garbage.
#[derive(Deserialize)]
struct RawHead<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

const ASSISTANT: &str = "assistant";
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// Classifies one transcript line (without its `'\n'`).
pub(crate) fn parse_line(bytes: &[u8]) -> Line {
    let raw: RawLine<'_> = match serde_json::from_slice(bytes) {
        Ok(raw) => raw,
        // Valid JSON of another shape (e.g. a `message` that is not an object) is only
        // malformed when it claims to be an assistant line.
        Err(_) => {
            return match serde_json::from_slice::<RawHead<'_>>(bytes) {
                Ok(head) if head.kind.as_deref() != Some(ASSISTANT) => Line::Skip,
                _ => Line::Malformed,
            };
        }
    };
    if raw.kind.as_deref() != Some(ASSISTANT) {
        return Line::Skip;
    }
    let Some(message) = raw.message else {
        return Line::Skip;
    };
    let Some(usage) = message.usage else {
        return Line::Skip;
    };
    let model = message.model.as_deref().unwrap_or("unknown");
    if model == SYNTHETIC_MODEL
        || model.is_empty()
        || message.id.as_deref() == Some("")
        || raw.request_id.as_deref() == Some("")
    {
        return Line::Skip;
    }

    let creation_total = usage.cache_creation_input_tokens.unwrap_or(0);
    let (cache_write_5m, cache_write_1h) = match usage.cache_creation {
        Some(split) => (
            split.ephemeral_5m_input_tokens.unwrap_or(0),
            split.ephemeral_1h_input_tokens.unwrap_or(0),
        ),
        None => (creation_total, 0),
    };
    let tokens = TokenCounts {
        input: usage.input_tokens.unwrap_or(0),
        output: usage.output_tokens.unwrap_or(0),
        cache_read: usage.cache_read_input_tokens.unwrap_or(0),
        cache_write_5m,
        cache_write_1h,
    };
    let total = tokens
        .input
        .saturating_add(tokens.output)
        .saturating_add(creation_total.max(cache_write_5m.saturating_add(cache_write_1h)))
        .saturating_add(tokens.cache_read);
    let key = message.id.map(|id| {
        let request = raw.request_id.as_deref().unwrap_or("");
        let mut key = String::with_capacity(id.len() + 1 + request.len());
        key.push_str(&id);
        key.push(' ');
        key.push_str(request);
        key
    });
    let timestamp_ms = raw
        .timestamp
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    Line::Usage(UsageLine {
        key,
        model: model.to_owned(),
        sidechain: raw.is_sidechain.unwrap_or(false),
        tokens,
        total,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(line: &str) -> UsageLine {
        match parse_line(line.as_bytes()) {
            Line::Usage(u) => u,
            other => panic!("expected usage, got {other:?}"),
        }
    }

    #[test]
    fn assistant_line_with_split_cache_creation() {
        let u = usage(
            r#"{"type":"assistant","isSidechain":true,"requestId":"req_1","message":{"id":"msg_1","model":"claude-opus-4-6","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"cache_creation_input_tokens":30,"cache_read_input_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20},"output_tokens":13,"service_tier":"standard"}}}"#,
        );
        assert_eq!(u.key.as_deref(), Some("msg_1 req_1"));
        assert_eq!(u.model, "claude-opus-4-6");
        assert!(u.sidechain);
        assert_eq!(
            u.tokens,
            TokenCounts {
                input: 3,
                output: 13,
                cache_read: 7,
                cache_write_5m: 10,
                cache_write_1h: 20
            }
        );
        assert_eq!(u.total, 3 + 13 + 30 + 7);
    }

    #[test]
    fn cache_creation_without_split_counts_as_5m() {
        let u = usage(
            r#"{"type":"assistant","message":{"id":"m","model":"claude-sonnet-4-20250514","usage":{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":40,"cache_read_input_tokens":null}}}"#,
        );
        assert_eq!(u.key.as_deref(), Some("m "));
        assert!(!u.sidechain);
        assert_eq!(u.tokens.cache_write_5m, 40);
        assert_eq!(u.tokens.cache_write_1h, 0);
        assert_eq!(u.tokens.cache_read, 0);
        assert_eq!(u.total, 43);
    }

    #[test]
    fn line_without_message_id_has_no_key() {
        let u =
            usage(r#"{"type":"assistant","message":{"model":"x","usage":{"output_tokens":5}}}"#);
        assert_eq!(u.key, None);
        assert_eq!(u.tokens.output, 5);
    }

    #[test]
    fn non_billable_lines_are_skipped() {
        for line in [
            // Other line types, even with a nested usage (agent progress) or odd `message`.
            r#"{"type":"user","message":{"role":"user","content":"hello"}}"#,
            r#"{"type":"progress","data":{"message":{"type":"assistant","message":{"id":"m","model":"claude-haiku-4-5-20251001","usage":{"output_tokens":3}}}}}"#,
            r#"{"type":"system","message":"a string, not an object"}"#,
            r#"{"type":"file-history-snapshot","snapshot":{}}"#,
            r#"{"no_type":true}"#,
            // Assistant lines without usage or with the synthetic model.
            r#"{"type":"assistant","message":{"id":"m","model":"claude-opus-4-6","content":[]}}"#,
            r#"{"type":"assistant","message":{"id":"m","model":"<synthetic>","usage":{"input_tokens":0,"output_tokens":0}}}"#,
            r#"{"type":"assistant"}"#,
            // Empty ids, which ccusage drops as invalid entries.
            r#"{"type":"assistant","requestId":"","message":{"id":"m","model":"x","usage":{"output_tokens":1}}}"#,
        ] {
            assert_eq!(parse_line(line.as_bytes()), Line::Skip, "{line}");
        }
    }

    #[test]
    fn garbage_and_misshapen_assistant_lines_are_malformed() {
        for line in [
            "not json",
            r#"{"type":"assistant","message":{"id":"m","usage":{"output_tokens":"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"output_tokens":-1}}}"#,
            r#"{"type":"assistant","message":{"id":"m","usage":{"output_tokens":"12"}}}"#,
            r#"{"type":"assistant","message":"string"}"#,
            "[1,2,3]",
            "\u{0}\u{1}",
        ] {
            assert_eq!(parse_line(line.as_bytes()), Line::Malformed, "{line}");
        }
    }

    #[test]
    fn only_complete_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").unwrap();
        let read = read_complete_lines(&path, 0).unwrap();
        assert_eq!(read.start, 0);
        assert_eq!(read.bytes, b"{\"a\":1}\n");
        let read = read_complete_lines(&path, 8).unwrap();
        assert!(read.bytes.is_empty());
        // A file that shrank below the offset is read from the start again.
        let read = read_complete_lines(&path, 1_000).unwrap();
        assert_eq!(read.start, 0);
        assert_eq!(read.bytes.len(), 8);
        let missing = read_complete_lines(&dir.path().join("missing.jsonl"), 0);
        assert!(matches!(missing, Err(UsageError::Read { .. })));
    }
}
