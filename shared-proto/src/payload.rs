//! The six payloads of v0.1 and their validation rules (SPEC §2).
//!
//! Counters are non-negative integers of at most [`MAX_COUNT`], durations are milliseconds,
//! money is US cents of at most [`MAX_COST_CENTS`] per report: bounds far above any real
//! figure that keep every sum finite and inside a 64-bit integer. A value beyond its bound is
//! rejected (`out_of_range`), never clamped. Unknown payload fields are kept in each
//! struct's `extra` map and written back out, so a newer emitter's fields survive.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::EventType;
use crate::limits::{
    MAX_COST_CENTS, MAX_COUNT, MAX_ERROR_MESSAGE_CHARS, MAX_LOAD_AVERAGE, MAX_NAME_CHARS,
};

/// Why a payload is not acceptable. [`PayloadError::code`] gives the wire error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A required field is absent or null.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What it must be, e.g. "a non-negative integer".
        expected: &'static str,
    },
    /// A counter, duration or amount is negative.
    #[error("field `{0}` must not be negative")]
    Negative(&'static str),
    /// A counter or amount is above its upper bound ([`MAX_COUNT`], [`MAX_COST_CENTS`],
    /// [`MAX_LOAD_AVERAGE`]).
    #[error("field `{field}` must be at most {max}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The bound (inclusive).
        max: u64,
    },
    /// A text field is longer than allowed.
    #[error("field `{field}` is longer than {max} characters")]
    TooLong {
        /// The field's name.
        field: &'static str,
        /// The limit, in characters.
        max: usize,
    },
    /// A field's value is not one of the allowed values, or is empty.
    #[error("field `{field}` {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong, e.g. "must be one of success, failed, timeout".
        reason: &'static str,
    },
}

impl PayloadError {
    /// The snake_case error code sent on the wire for this rejection.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::Missing(_) => "missing_field",
            PayloadError::WrongType { .. } => "wrong_type",
            PayloadError::Negative(_) => "negative_value",
            PayloadError::OutOfRange { .. } => "out_of_range",
            PayloadError::TooLong { .. } => "too_long",
            PayloadError::Invalid { .. } => "invalid_value",
        }
    }
}

/// A payload object being taken apart: known fields are removed as they are read, what is
/// left is kept as `extra`.
struct Fields(Map<String, Value>);

impl Fields {
    fn take(&mut self, field: &'static str) -> Option<Value> {
        match self.0.remove(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn opt_text(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<String>, PayloadError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(PayloadError::Invalid {
                field,
                reason: "must not be empty",
            }),
            Some(Value::String(s)) if s.chars().count() > max => {
                Err(PayloadError::TooLong { field, max })
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(PayloadError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    fn text(&mut self, field: &'static str, max: usize) -> Result<String, PayloadError> {
        self.opt_text(field, max)?
            .ok_or(PayloadError::Missing(field))
    }

    fn opt_count(&mut self, field: &'static str) -> Result<Option<u64>, PayloadError> {
        let Some(v) = self.take(field) else {
            return Ok(None);
        };
        let wrong = PayloadError::WrongType {
            field,
            expected: "a non-negative integer",
        };
        let Value::Number(n) = v else {
            return Err(wrong);
        };
        let too_large = PayloadError::OutOfRange {
            field,
            max: MAX_COUNT,
        };
        if let Some(i) = n.as_i64() {
            let count = u64::try_from(i).map_err(|_| PayloadError::Negative(field))?;
            return if count > MAX_COUNT {
                Err(too_large)
            } else {
                Ok(Some(count))
            };
        }
        // Above i64::MAX (an integer beyond the bound, or a float as large), or not an integer.
        match n.as_f64() {
            Some(f) if f < 0.0 => Err(PayloadError::Negative(field)),
            Some(f) if f > MAX_COUNT as f64 => Err(too_large),
            _ => Err(wrong),
        }
    }

    fn count(&mut self, field: &'static str) -> Result<u64, PayloadError> {
        self.opt_count(field)?.ok_or(PayloadError::Missing(field))
    }

    fn int(&mut self, field: &'static str) -> Result<i64, PayloadError> {
        match self.take(field) {
            None => Err(PayloadError::Missing(field)),
            Some(Value::Number(n)) => n.as_i64().ok_or(PayloadError::WrongType {
                field,
                expected: "an integer",
            }),
            Some(_) => Err(PayloadError::WrongType {
                field,
                expected: "an integer",
            }),
        }
    }

    /// A finite, non-negative number of at most `max`.
    fn amount(&mut self, field: &'static str, max: u64) -> Result<f64, PayloadError> {
        match self.take(field) {
            None => Err(PayloadError::Missing(field)),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f < 0.0 => Err(PayloadError::Negative(field)),
                Some(f) if f > max as f64 => Err(PayloadError::OutOfRange { field, max }),
                Some(f) if f.is_finite() => Ok(f),
                _ => Err(PayloadError::WrongType {
                    field,
                    expected: "a finite number",
                }),
            },
            Some(_) => Err(PayloadError::WrongType {
                field,
                expected: "a number",
            }),
        }
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, PayloadError> {
        match self.take(field) {
            None => Err(PayloadError::Missing(field)),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(PayloadError::WrongType {
                field,
                expected: "a boolean",
            }),
        }
    }

    fn string_map(
        &mut self,
        field: &'static str,
    ) -> Result<BTreeMap<String, String>, PayloadError> {
        let wrong = PayloadError::WrongType {
            field,
            expected: "an object of strings",
        };
        match self.take(field) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    _ => Err(wrong.clone()),
                })
                .collect(),
            Some(_) => Err(wrong),
        }
    }

    fn rest(self) -> Map<String, Value> {
        self.0
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The run finished normally.
    Success,
    /// The run failed.
    Failed,
    /// The run was stopped for taking too long.
    Timeout,
}

impl SessionStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Success => "success",
            SessionStatus::Failed => "failed",
            SessionStatus::Timeout => "timeout",
        }
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(SessionStatus::Success),
            "failed" => Ok(SessionStatus::Failed),
            "timeout" => Ok(SessionStatus::Timeout),
            _ => Err(PayloadError::Invalid {
                field: "status",
                reason: "must be one of success, failed, timeout",
            }),
        }
    }
}

/// Where a tool comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolSource {
    /// A tool built into Claude Code (`Bash`, `Edit`, …).
    Builtin,
    /// A tool of an MCP server (`mcp__<server>__<tool>`).
    Mcp,
    /// A tool provided by a plugin.
    Plugin,
}

impl std::str::FromStr for ToolSource {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "builtin" => Ok(ToolSource::Builtin),
            "mcp" => Ok(ToolSource::Mcp),
            "plugin" => Ok(ToolSource::Plugin),
            _ => Err(PayloadError::Invalid {
                field: "tool_source",
                reason: "must be one of builtin, mcp, plugin",
            }),
        }
    }
}

/// `session.start`: an agent run began.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SessionStart {
    /// Paperclip's id for the run.
    pub paperclip_run_id: String,
    /// What kind of agent runs (free-form label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_kind: Option<String>,
    /// What started the run (free-form label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `session.end`: an agent run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEnd {
    /// How it ended.
    pub status: SessionStatus,
    /// The wrapped process's exit code.
    pub exit_code: i64,
    /// Wall time of the run, ms.
    pub duration_ms: u64,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_call`: one tool call finished.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ToolCall {
    /// Claude Code's tool name, e.g. `Bash` or `mcp__github__create_issue`.
    pub tool_name: String,
    /// Wall time of the call, ms, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// False for PostToolUseFailure or an error-shaped tool response.
    pub ok: bool,
    /// Byte length of the serialized `tool_input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_size_bytes: Option<u64>,
    /// Byte length of the serialized `tool_response`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_size_bytes: Option<u64>,
    /// Claude Code's `tool_use_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// Where the tool comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_source: Option<ToolSource>,
    /// The MCP server's name, for MCP tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<String>,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `llm_usage`: tokens and cost of one model since the previous report for the transcript.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LlmUsage {
    /// Model id, e.g. `claude-opus-4-6`.
    pub model: String,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache (5-minute and 1-hour writes together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Cost in US cents; may be fractional; 0 for a model without a known price; at most
    /// [`MAX_COST_CENTS`].
    pub cost_cents: f64,
    /// API responses (assistant turns) counted in this report.
    pub total_turns: u64,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `error`: a failure seen by the wrapper or a hook.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Error {
    /// What kind of failure, e.g. `hook_failed`.
    pub kind: String,
    /// A message of at most 120 characters: the only free text that leaves a box.
    pub message_120c: String,
    /// A hash identifying the stack or code site, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_hash: Option<String>,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `heartbeat`: host facts, every 5 minutes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Heartbeat {
    /// Seconds the Paperclip container has been up; `null` when unknown.
    pub paperclip_uptime_s: Option<u64>,
    /// Running agent-runtime containers; `null` when unknown.
    pub agent_runtime_count: Option<u64>,
    /// The host's 1-minute load average.
    pub host_load_1m: f64,
    /// Agent id → version, from the agent-runtime containers.
    pub agent_versions: BTreeMap<String, String>,
    /// Events waiting in the emitter's spool when the heartbeat was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_depth: Option<u64>,
    /// Events the spool has dropped for lack of room since it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dropped: Option<u64>,
    /// Fields this version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A validated payload, one variant per [`EventType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `session.start`.
    SessionStart(SessionStart),
    /// `session.end`.
    SessionEnd(SessionEnd),
    /// `tool_call`.
    ToolCall(ToolCall),
    /// `llm_usage`.
    LlmUsage(LlmUsage),
    /// `error`.
    Error(Error),
    /// `heartbeat`.
    Heartbeat(Heartbeat),
}

impl Payload {
    /// Validates a payload object as the payload of `event_type`.
    ///
    /// # Errors
    /// [`PayloadError`] naming the first field that breaks a rule.
    pub fn parse(event_type: EventType, obj: Map<String, Value>) -> Result<Self, PayloadError> {
        let mut f = Fields(obj);
        Ok(match event_type {
            EventType::SessionStart => Payload::SessionStart(SessionStart {
                paperclip_run_id: f.text("paperclip_run_id", MAX_NAME_CHARS)?,
                agent_kind: f.opt_text("agent_kind", MAX_NAME_CHARS)?,
                source: f.opt_text("source", MAX_NAME_CHARS)?,
                extra: f.rest(),
            }),
            EventType::SessionEnd => Payload::SessionEnd(SessionEnd {
                status: f.text("status", MAX_NAME_CHARS)?.parse()?,
                exit_code: f.int("exit_code")?,
                duration_ms: f.count("duration_ms")?,
                extra: f.rest(),
            }),
            EventType::ToolCall => Payload::ToolCall(ToolCall {
                tool_name: f.text("tool_name", MAX_NAME_CHARS)?,
                duration_ms: f.opt_count("duration_ms")?,
                ok: f.boolean("ok")?,
                args_size_bytes: f.opt_count("args_size_bytes")?,
                output_size_bytes: f.opt_count("output_size_bytes")?,
                tool_use_id: f.opt_text("tool_use_id", MAX_NAME_CHARS)?,
                tool_source: f
                    .opt_text("tool_source", MAX_NAME_CHARS)?
                    .map(|s| s.parse())
                    .transpose()?,
                mcp_server: f.opt_text("mcp_server", MAX_NAME_CHARS)?,
                extra: f.rest(),
            }),
            EventType::LlmUsage => Payload::LlmUsage(LlmUsage {
                model: f.text("model", MAX_NAME_CHARS)?,
                input_tokens: f.count("input_tokens")?,
                output_tokens: f.count("output_tokens")?,
                cache_read_tokens: f.opt_count("cache_read_tokens")?,
                cache_write_tokens: f.opt_count("cache_write_tokens")?,
                cost_cents: f.amount("cost_cents", MAX_COST_CENTS)?,
                total_turns: f.count("total_turns")?,
                extra: f.rest(),
            }),
            EventType::Error => Payload::Error(Error {
                kind: f.text("kind", MAX_NAME_CHARS)?,
                message_120c: match f.take("message_120c") {
                    None => return Err(PayloadError::Missing("message_120c")),
                    Some(Value::String(s)) if s.chars().count() > MAX_ERROR_MESSAGE_CHARS => {
                        return Err(PayloadError::TooLong {
                            field: "message_120c",
                            max: MAX_ERROR_MESSAGE_CHARS,
                        });
                    }
                    Some(Value::String(s)) => s,
                    Some(_) => {
                        return Err(PayloadError::WrongType {
                            field: "message_120c",
                            expected: "a string",
                        });
                    }
                },
                stack_hash: f.opt_text("stack_hash", MAX_NAME_CHARS)?,
                extra: f.rest(),
            }),
            EventType::Heartbeat => Payload::Heartbeat(Heartbeat {
                paperclip_uptime_s: f.opt_count("paperclip_uptime_s")?,
                agent_runtime_count: f.opt_count("agent_runtime_count")?,
                host_load_1m: f.amount("host_load_1m", MAX_LOAD_AVERAGE)?,
                agent_versions: f.string_map("agent_versions")?,
                spool_depth: f.opt_count("spool_depth")?,
                spool_dropped: f.opt_count("spool_dropped")?,
                extra: f.rest(),
            }),
        })
    }

    /// The event type this payload belongs to.
    pub fn event_type(&self) -> EventType {
        match self {
            Payload::SessionStart(_) => EventType::SessionStart,
            Payload::SessionEnd(_) => EventType::SessionEnd,
            Payload::ToolCall(_) => EventType::ToolCall,
            Payload::LlmUsage(_) => EventType::LlmUsage,
            Payload::Error(_) => EventType::Error,
            Payload::Heartbeat(_) => EventType::Heartbeat,
        }
    }

    /// The payload as compact JSON text, unknown fields included.
    pub fn to_json(&self) -> String {
        let s = match self {
            Payload::SessionStart(p) => serde_json::to_string(p),
            Payload::SessionEnd(p) => serde_json::to_string(p),
            Payload::ToolCall(p) => serde_json::to_string(p),
            Payload::LlmUsage(p) => serde_json::to_string(p),
            Payload::Error(p) => serde_json::to_string(p),
            Payload::Heartbeat(p) => serde_json::to_string(p),
        };
        // As for `to_value`: these plain structs always serialize.
        s.unwrap_or_else(|_| "{}".to_owned())
    }

    /// The payload as a JSON object value, unknown fields included.
    pub fn to_value(&self) -> Value {
        let v = match self {
            Payload::SessionStart(p) => serde_json::to_value(p),
            Payload::SessionEnd(p) => serde_json::to_value(p),
            Payload::ToolCall(p) => serde_json::to_value(p),
            Payload::LlmUsage(p) => serde_json::to_value(p),
            Payload::Error(p) => serde_json::to_value(p),
            Payload::Heartbeat(p) => serde_json::to_value(p),
        };
        // Serializing plain structs of strings, numbers and maps with string keys cannot fail.
        v.unwrap_or(Value::Null)
    }
}
