//! The numeric limits of the wire contract (SPEC §2 and §4).

/// Most envelopes in one `POST /v1/events` body.
pub const MAX_BATCH_EVENTS: usize = 500;

/// Largest request body, in bytes, after gzip decompression (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest serialized `payload` object, in bytes (16 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Longest `agent_id` and `run_id`, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// Longest `message_120c` of an `error` payload, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 120;

/// Longest short text field of a payload (names, kinds, models), in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// How far into the future an event's `ts` may lie before it is rejected, in hours.
pub const MAX_FUTURE_SKEW_HOURS: i64 = 24;
