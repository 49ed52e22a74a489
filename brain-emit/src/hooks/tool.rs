//! `tool-call` (PostToolUse / PostToolUseFailure JSON): the `tool_call` event, from metadata
//! only (sizes, error shape, tool origin), with the duration from the payload or from the
//! start `tool-start` recorded. `tool-start` itself is one spool call in [`super`].

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared_proto::{Event, Payload, ToolCall, ToolSource};
use uuid::Uuid;

use super::{HookInput, name};
use crate::config::Settings;
use crate::envelope::event;

/// Counts bytes written through it.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Byte length of `v` serialized as compact JSON.
fn serialized_len(v: &Value) -> u64 {
    let mut n = ByteCount(0);
    // Serializing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// Whether a `tool_response` looks like a failure: `{"is_error": true}`, an object with a
/// non-empty `error`, a string starting with `Error` or `<tool_use_error>`, or a list of
/// content blocks one of which has `is_error: true`.
fn is_error_response(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("is_error").and_then(Value::as_bool) == Some(true)
                || m.get("error").is_some_and(|e| match e {
                    Value::Null | Value::Bool(false) => false,
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                })
        }
        Value::String(s) => {
            let s = s.trim_start();
            s.starts_with("Error") || s.starts_with("<tool_use_error>")
        }
        Value::Array(items) => items
            .iter()
            .any(|i| i.get("is_error").and_then(Value::as_bool) == Some(true)),
        _ => false,
    }
}

/// `mcp__<server>__<tool>` → (mcp or plugin, server); anything else is builtin.
///
/// Plugin-provided MCP servers are named `plugin_<plugin>_<server>` by Claude Code; they are
/// reported as `tool_source = plugin`.
fn tool_origin(tool_name: &str) -> (ToolSource, Option<String>) {
    let Some(rest) = tool_name.strip_prefix("mcp__") else {
        return (ToolSource::Builtin, None);
    };
    let server = rest.split_once("__").map_or(rest, |(s, _)| s);
    if server.is_empty() {
        return (ToolSource::Mcp, None);
    }
    let source = if server.starts_with("plugin_") {
        ToolSource::Plugin
    } else {
        ToolSource::Mcp
    };
    (source, name(Some(server)))
}

pub(super) fn tool_call_event(
    settings: &Settings,
    input: &HookInput,
    started_at_ms: Option<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<Event> {
    let tool_name = name(input.tool_name.as_deref()).context("hook input has no tool_name")?;
    let failure_hook = input.hook_event_name.as_deref() == Some("PostToolUseFailure");
    let ok = !failure_hook && !input.tool_response.as_ref().is_some_and(is_error_response);
    let duration_ms = input
        .duration_ms
        .as_ref()
        .and_then(|d| {
            d.as_u64()
                .or_else(|| d.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64))
        })
        .or_else(|| started_at_ms.and_then(|s| u64::try_from(now.timestamp_millis() - s).ok()));
    let (source, mcp_server) = tool_origin(&tool_name);
    let payload = Payload::ToolCall(ToolCall {
        duration_ms,
        ok,
        args_size_bytes: input.tool_input.as_ref().map(serialized_len),
        output_size_bytes: input.tool_response.as_ref().map(serialized_len),
        tool_use_id: name(input.tool_use_id.as_deref()),
        tool_source: Some(source),
        mcp_server,
        tool_name,
        extra: serde_json::Map::new(),
    });
    event(
        settings,
        input.session_id.as_deref(),
        now,
        Uuid::new_v4(),
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_shapes() {
        assert!(is_error_response(
            &json!({"is_error": true, "content": "x"})
        ));
        assert!(is_error_response(&json!({"error": "boom"})));
        assert!(is_error_response(&json!("Error: file not found")));
        assert!(is_error_response(&json!(
            "<tool_use_error>File has not been read yet</tool_use_error>"
        )));
        assert!(is_error_response(
            &json!([{"type": "text", "text": "x", "is_error": true}])
        ));
        assert!(!is_error_response(&json!({"error": null, "stdout": "ok"})));
        assert!(!is_error_response(
            &json!({"type": "create", "filePath": "/x"})
        ));
        assert!(!is_error_response(&json!("all good")));
    }

    #[test]
    fn origins() {
        assert_eq!(tool_origin("Bash"), (ToolSource::Builtin, None));
        assert_eq!(
            tool_origin("mcp__github__create_issue"),
            (ToolSource::Mcp, Some("github".into()))
        );
        assert_eq!(
            tool_origin("mcp__plugin_acme_db__query"),
            (ToolSource::Plugin, Some("plugin_acme_db".into()))
        );
    }

    #[test]
    fn sizes_are_compact_byte_lengths() {
        let v = json!({"a": "é"});
        assert_eq!(serialized_len(&v), r#"{"a":"é"}"#.len() as u64);
    }
}
