//! Brain's wire contract, shared by `brain-emit`, `brain-heartbeat` and `brain-server`.
//!
//! This crate owns the shapes that cross the network and the rules they obey: the event
//! [`Event`] envelope (wire format v1) and its six [`Payload`]s, the customer [`ApiKey`]
//! format, the batch [`BatchResponse`] with per-event results, the [`ErrorBody`] every
//! error answers with, and the [`limits`]. It is pure: no I/O, no async runtime.
//!
//! Values are valid once constructed: an [`Event`] can only be built by [`Event::parse`]
//! (or deserialization, which calls it) or from already-validated parts, so downstream code
//! never re-checks.

pub mod admin;
mod api;
pub mod dashboard;
mod event;
mod key;
pub mod limits;
mod payload;

pub use api::{BatchResponse, ErrorBody, ErrorDetail, EventResult, EventStatus};
pub use event::{AgentId, Event, EventError, EventType, IdError, RunId};
pub use key::{ApiKey, KeyEnv, KeyError, KeyHash};
pub use payload::{
    Error as ErrorPayload, Heartbeat, LlmUsage, Payload, PayloadError, SessionEnd, SessionStart,
    SessionStatus, ToolCall, ToolSource,
};

/// Version of the wire format this crate speaks (the envelope of SPEC §2).
pub const WIRE_VERSION: u32 = 1;

/// Names of the environment variables the binaries read, in one place.
pub mod env_vars {
    /// Base URL of `brain-server`, e.g. `http://brain:8080`.
    pub const BRAIN_URL: &str = "BRAIN_URL";
    /// The customer's API key (`m8brain_<env>_…`).
    pub const BRAIN_API_KEY: &str = "BRAIN_API_KEY";
    /// Path of the env file the emitter reads first (default `/etc/m8trx/brain.env`).
    pub const BRAIN_ENV_FILE: &str = "BRAIN_ENV_FILE";
    /// Path of the emitter's SQLite spool.
    pub const BRAIN_SPOOL: &str = "BRAIN_SPOOL";
    /// Agent id, first choice.
    pub const BRAIN_AGENT_ID: &str = "BRAIN_AGENT_ID";
    /// Agent id, second choice (set by Paperclip).
    pub const PAPERCLIP_AGENT_ID: &str = "PAPERCLIP_AGENT_ID";
    /// Run id, first choice.
    pub const BRAIN_RUN_ID: &str = "BRAIN_RUN_ID";
    /// Run id, second choice (set by Paperclip).
    pub const PAPERCLIP_RUN_ID: &str = "PAPERCLIP_RUN_ID";
    /// Address the server listens on.
    pub const BRAIN_LISTEN: &str = "BRAIN_LISTEN";
    /// `postgres://…` or `sqlite://path`; unset means the embedded SQLite file.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// The server's data directory (embedded database, generated admin token).
    pub const BRAIN_DATA_DIR: &str = "BRAIN_DATA_DIR";
    /// Bearer token for `/v1/dashboard/*` and `/admin/*`.
    pub const BRAIN_ADMIN_TOKEN: &str = "BRAIN_ADMIN_TOKEN";
    /// The `<env>` part of newly minted keys (`dev`, `prod`, …).
    pub const BRAIN_KEY_ENV: &str = "BRAIN_KEY_ENV";
    /// Days of events to keep; 0 keeps forever.
    pub const BRAIN_RETENTION_DAYS: &str = "BRAIN_RETENTION_DAYS";
    /// Sustained requests per second allowed per API key.
    pub const BRAIN_RATE_LIMIT_PER_SEC: &str = "BRAIN_RATE_LIMIT_PER_SEC";
    /// Burst of requests allowed per API key above the sustained rate.
    pub const BRAIN_RATE_LIMIT_BURST: &str = "BRAIN_RATE_LIMIT_BURST";
}
