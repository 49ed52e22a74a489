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

/// Largest value of a payload counter (token counts, turns, durations in ms, byte sizes,
/// uptime, spool depth, …): 10^11. Far above any real figure (10^11 ms is over 3 years), and
/// low enough that a sum over 10 M events (the scale of SPEC §10) fits a signed 64-bit
/// integer, so no store or rollup can overflow. A larger value is rejected (`out_of_range`),
/// never clamped.
pub const MAX_COUNT: u64 = 100_000_000_000;

/// Largest `cost_cents` of one `llm_usage` report, in US cents: 10^8 (one million dollars).
/// Sums over any number of events stay finite and exact to far below a cent. A larger value is
/// rejected (`out_of_range`), never clamped.
pub const MAX_COST_CENTS: u64 = 100_000_000;

/// Largest `host_load_1m` of a heartbeat: 10^6. A larger value is rejected (`out_of_range`).
pub const MAX_LOAD_AVERAGE: u64 = 1_000_000;
