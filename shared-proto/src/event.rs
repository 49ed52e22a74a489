//! The event envelope (wire format v1): ids, timestamp, type and a validated payload.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::limits::{MAX_FUTURE_SKEW_HOURS, MAX_ID_CHARS, MAX_PAYLOAD_BYTES};
use crate::payload::{Payload, PayloadError};

/// The six event types of v0.1, spelled on the wire as `session.start`, `session.end`,
/// `tool_call`, `llm_usage`, `error` and `heartbeat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// An agent run started (isolate wrapper).
    #[serde(rename = "session.start")]
    SessionStart,
    /// An agent run ended (isolate wrapper's EXIT trap).
    #[serde(rename = "session.end")]
    SessionEnd,
    /// One tool call finished (PostToolUse / PostToolUseFailure hook).
    #[serde(rename = "tool_call")]
    ToolCall,
    /// Token usage and cost of one model since the last report (Stop / SubagentStop / SessionEnd).
    #[serde(rename = "llm_usage")]
    LlmUsage,
    /// A failure seen by the wrapper or a hook.
    #[serde(rename = "error")]
    Error,
    /// Host facts, every 5 minutes.
    #[serde(rename = "heartbeat")]
    Heartbeat,
}

impl EventType {
    /// Every event type, in wire order.
    pub const ALL: [EventType; 6] = [
        EventType::SessionStart,
        EventType::SessionEnd,
        EventType::ToolCall,
        EventType::LlmUsage,
        EventType::Error,
        EventType::Heartbeat,
    ];

    /// The wire name, e.g. `"session.start"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionStart => "session.start",
            EventType::SessionEnd => "session.end",
            EventType::ToolCall => "tool_call",
            EventType::LlmUsage => "llm_usage",
            EventType::Error => "error",
            EventType::Heartbeat => "heartbeat",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = EventError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| EventError::UnknownEventType(s.to_owned()))
    }
}

/// Why an `agent_id` or `run_id` is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("is empty")]
    Empty,
    /// The id has more than [`MAX_ID_CHARS`] characters.
    #[error("is longer than {MAX_ID_CHARS} characters")]
    TooLong,
    /// The id has a character outside `[A-Za-z0-9_.:-]`.
    #[error("has a character outside [A-Za-z0-9_.:-]")]
    BadChar,
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_CHARS {
        return Err(IdError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err(IdError::BadChar);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the id alphabet and length.
            ///
            /// # Errors
            /// [`IdError`] when `s` is empty, longer than 128 characters, or has a character
            /// outside `[A-Za-z0-9_.:-]`.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An agent's id: 1–128 characters of `[A-Za-z0-9_.:-]` (the Paperclip agent id).
    AgentId
);
id_type!(
    /// An agent run's id: 1–128 characters of `[A-Za-z0-9_.:-]`.
    RunId
);

/// Why a JSON value is not a valid event. [`EventError::code`] gives the wire error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// The value is not a JSON object.
    #[error("an event must be a JSON object")]
    NotAnObject,
    /// A required envelope field is absent or null.
    #[error("missing envelope field `{0}`")]
    MissingField(&'static str),
    /// An envelope field has the wrong JSON type.
    #[error("envelope field `{field}` must be {expected}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What it must be, e.g. "a string".
        expected: &'static str,
    },
    /// `event_id` is not a UUID.
    #[error("`event_id` is not a UUID: {0}")]
    EventId(String),
    /// `ts` is not an RFC 3339 timestamp.
    #[error("`ts` is not an RFC 3339 timestamp: {0}")]
    Ts(String),
    /// `ts` lies more than 24 hours in the future.
    #[error("`ts` {0} is more than {MAX_FUTURE_SKEW_HOURS} h in the future")]
    TsInFuture(String),
    /// `event_type` is not one of the six known types.
    #[error("unknown event_type `{0}`")]
    UnknownEventType(String),
    /// `agent_id` breaks the id rules.
    #[error("`agent_id` {0}")]
    AgentId(IdError),
    /// `run_id` breaks the id rules.
    #[error("`run_id` {0}")]
    RunId(IdError),
    /// The serialized payload is larger than 16 KiB.
    #[error("payload is {0} bytes serialized, over the {MAX_PAYLOAD_BYTES}-byte limit")]
    PayloadTooLarge(usize),
    /// The payload breaks its event type's rules.
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
}

impl EventError {
    /// The snake_case error code sent on the wire for this rejection.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::NotAnObject => "not_an_envelope",
            EventError::MissingField(_) => "missing_field",
            EventError::WrongType { .. } => "wrong_type",
            EventError::EventId(_) => "invalid_event_id",
            EventError::Ts(_) => "invalid_ts",
            EventError::TsInFuture(_) => "ts_in_future",
            EventError::UnknownEventType(_) => "unknown_event_type",
            EventError::AgentId(_) => "invalid_agent_id",
            EventError::RunId(_) => "invalid_run_id",
            EventError::PayloadTooLarge(_) => "payload_too_large",
            EventError::Payload(e) => e.code(),
        }
    }
}

/// One validated event: the envelope of SPEC §2 around a typed [`Payload`].
///
/// Born valid: built only by [`Event::parse`] / [`Event::parse_at`] (which deserialization
/// uses) or [`Event::new`], all of which apply every rule of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    event_id: Uuid,
    ts: DateTime<Utc>,
    agent_id: AgentId,
    run_id: Option<RunId>,
    payload: Payload,
}

fn take_str(
    obj: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, EventError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn require_str(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    take_str(obj, field)?.ok_or(EventError::MissingField(field))
}

impl Event {
    /// Builds an event from parts, applying the same rules as [`Event::parse`].
    ///
    /// `ts` is kept to millisecond precision.
    ///
    /// # Errors
    /// [`EventError`] when the payload breaks its rules or serializes to more than 16 KiB,
    /// or `ts` is more than 24 h in the future.
    pub fn new(
        event_id: Uuid,
        ts: DateTime<Utc>,
        agent_id: AgentId,
        run_id: Option<RunId>,
        payload: Payload,
    ) -> Result<Self, EventError> {
        let event = Event {
            event_id,
            ts,
            agent_id,
            run_id,
            payload,
        };
        // Round-trip through the wire form so that a hand-built payload meets exactly the
        // rules a received one does.
        Event::parse(event.to_value())
    }

    /// Validates a received JSON value as an event, with "now" taken from the clock.
    ///
    /// # Errors
    /// See [`Event::parse_at`].
    pub fn parse(value: Value) -> Result<Self, EventError> {
        Event::parse_at(value, Utc::now())
    }

    /// Validates a received JSON value as an event; `now` bounds how far `ts` may lie ahead.
    ///
    /// Unknown envelope fields are ignored; unknown payload fields are kept.
    ///
    /// # Errors
    /// [`EventError`] naming the first rule the value breaks; [`EventError::code`] is the
    /// wire error code.
    pub fn parse_at(value: Value, now: DateTime<Utc>) -> Result<Self, EventError> {
        let Value::Object(mut obj) = value else {
            return Err(EventError::NotAnObject);
        };
        let event_id = require_str(&mut obj, "event_id")?;
        let event_id = Uuid::parse_str(&event_id).map_err(|_| EventError::EventId(event_id))?;
        let ts = require_str(&mut obj, "ts")?;
        let ts = DateTime::parse_from_rfc3339(&ts)
            .map_err(|_| EventError::Ts(ts.clone()))?
            .with_timezone(&Utc);
        let ts = truncate_to_millis(ts);
        if ts > now + TimeDelta::hours(MAX_FUTURE_SKEW_HOURS) {
            return Err(EventError::TsInFuture(format_ts(ts)));
        }
        let event_type: EventType = require_str(&mut obj, "event_type")?.parse()?;
        let agent_id =
            AgentId::parse(require_str(&mut obj, "agent_id")?).map_err(EventError::AgentId)?;
        let run_id = take_str(&mut obj, "run_id")?
            .map(RunId::parse)
            .transpose()
            .map_err(EventError::RunId)?;
        let payload = match obj.remove("payload") {
            None | Some(Value::Null) => return Err(EventError::MissingField("payload")),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(EventError::WrongType {
                    field: "payload",
                    expected: "an object",
                });
            }
        };
        let size = serialized_len(&payload);
        if size > MAX_PAYLOAD_BYTES {
            return Err(EventError::PayloadTooLarge(size));
        }
        let payload = Payload::parse(event_type, payload)?;
        Ok(Event {
            event_id,
            ts,
            agent_id,
            run_id,
            payload,
        })
    }

    /// The client-generated id, the dedupe key end to end.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// When the thing happened (UTC, millisecond precision).
    pub fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    /// The event's type, derived from its payload.
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    /// The agent that produced the event.
    pub fn agent_id(&self) -> &AgentId {
        &self.agent_id
    }

    /// The agent run the event belongs to, when known.
    pub fn run_id(&self) -> Option<&RunId> {
        self.run_id.as_ref()
    }

    /// The typed payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The payload as a JSON object value (unknown fields included).
    pub fn payload_value(&self) -> Value {
        self.payload.to_value()
    }

    /// The payload as compact JSON text (unknown fields included), serialized straight from
    /// the typed payload: what a store keeps.
    pub fn payload_json(&self) -> String {
        self.payload.to_json()
    }

    /// The whole envelope as a JSON value, in wire form.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("event_id".into(), Value::String(self.event_id.to_string()));
        obj.insert("ts".into(), Value::String(format_ts(self.ts)));
        obj.insert(
            "event_type".into(),
            Value::String(self.event_type().as_str().into()),
        );
        obj.insert("agent_id".into(), Value::String(self.agent_id.0.clone()));
        if let Some(run_id) = &self.run_id {
            obj.insert("run_id".into(), Value::String(run_id.0.clone()));
        }
        obj.insert("payload".into(), self.payload.to_value());
        Value::Object(obj)
    }
}

/// Byte length of `value` serialized as compact JSON, counted without building the text.
fn serialized_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Formats a timestamp as the wire does: RFC 3339, UTC, milliseconds, `Z`.
pub(crate) fn format_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn truncate_to_millis(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Event::parse(value).map_err(serde::de::Error::custom)
    }
}
