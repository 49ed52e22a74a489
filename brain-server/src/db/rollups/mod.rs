//! Rollup tables (docs/rollups.md): what each dashboard read is answered from, maintained by
//! the ingest write in the same transaction as the events they summarise.
//!
//! This module owns the one definition of what an event contributes: [`Facts`] (the few
//! payload fields the rollups need, taken by the request handler from the parsed payload) and
//! [`Rollups::add`], which folds one stored event into in-memory sums keyed like the tables.
//! The ingest write (`db/ingest`) folds exactly the events it inserted and upserts the sums
//! ([`postgres::upsert`], [`sqlite::upsert`]) as the last statements of its transaction;
//! `rollups verify` folds every row of `events` through the same [`Rollups::add`] and
//! compares with the tables; `rollups rebuild` writes that fold in place of the tables.
//!
//! Times are unix milliseconds (UTC) here; each backend half converts them for its column
//! type. Maps are [`BTreeMap`]s, so rows are written, and locked, in one key order.

pub(crate) mod latency;
pub(super) mod postgres;
pub(super) mod sqlite;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use shared_proto::{EventType, Payload, SessionStatus, ToolSource};
use uuid::Uuid;

use super::{DbError, Store};

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a day.
const DAY_MS: i64 = 24 * HOUR_MS;

/// The grain of an hour bucket.
const HOUR: &str = "h";
/// The grain of a day bucket.
const DAY: &str = "d";
/// The grain of the all-time bucket of `rollup_agents` (`bucket_start` = 1970-01-01).
const ALL_TIME: &str = "a";

/// The first instant (unix ms) of the UTC hour of `ms`.
fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// The first instant (unix ms) of the UTC day of `ms`.
fn day_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// A count from the wire (at most `MAX_COUNT`, 10^11) as a database integer.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What one event contributes to the rollups: the fields of its payload they need, by event
/// type. Built from the parsed payload by the request handler (the parallel part), so that
/// the writer only adds numbers; built from a stored payload by `rollups verify`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Facts {
    /// `session.start`: one run begins.
    SessionStart,
    /// `session.end`.
    SessionEnd {
        /// `success`, `failed` or `timeout`.
        status: &'static str,
        /// The wrapped process's exit code.
        exit_code: i64,
        /// Wall time of the run, ms.
        duration_ms: i64,
    },
    /// `tool_call`.
    ToolCall {
        /// Claude Code's tool name.
        tool_name: String,
        /// `builtin`, `mcp`, `plugin`, or `''` when absent.
        tool_source: &'static str,
        /// The MCP server, or `''` when absent.
        mcp_server: String,
        /// False for a failed call.
        ok: bool,
        /// Wall time of the call, ms, when known.
        duration_ms: Option<u64>,
    },
    /// `llm_usage`.
    LlmUsage {
        /// Model id.
        model: String,
        /// Token counts: input, output, cache read, cache write (absent cache counts are 0).
        tokens: [i64; 4],
        /// Cost, US cents.
        cost_cents: f64,
    },
    /// `error`.
    Error {
        /// What kind of failure.
        kind: String,
        /// The stack hash, or `''` when absent.
        stack_hash: String,
        /// `message_120c`.
        message: String,
    },
    /// `heartbeat`.
    Heartbeat(Box<HeartbeatFacts>),
}

/// The figures of a heartbeat, as `agent_heartbeats` keeps them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatFacts {
    /// Seconds the Paperclip container has been up, when known.
    paperclip_uptime_s: Option<i64>,
    /// Running agent-runtime containers, when known.
    agent_runtime_count: Option<i64>,
    /// The host's 1-minute load average.
    host_load_1m: f64,
    /// Events waiting in the emitter's spool.
    spool_depth: Option<i64>,
    /// Events the spool has dropped.
    spool_dropped: Option<i64>,
    /// `agent_versions` as JSON object text (keys sorted).
    agent_versions: String,
}

impl Facts {
    /// The rollup facts of a validated payload.
    pub(crate) fn of(payload: &Payload) -> Self {
        match payload {
            Payload::SessionStart(_) => Facts::SessionStart,
            Payload::SessionEnd(p) => Facts::SessionEnd {
                status: match p.status {
                    SessionStatus::Success => "success",
                    SessionStatus::Failed => "failed",
                    SessionStatus::Timeout => "timeout",
                },
                exit_code: p.exit_code,
                duration_ms: int(p.duration_ms),
            },
            Payload::ToolCall(p) => Facts::ToolCall {
                tool_name: p.tool_name.clone(),
                tool_source: match p.tool_source {
                    None => "",
                    Some(ToolSource::Builtin) => "builtin",
                    Some(ToolSource::Mcp) => "mcp",
                    Some(ToolSource::Plugin) => "plugin",
                },
                mcp_server: p.mcp_server.clone().unwrap_or_default(),
                ok: p.ok,
                duration_ms: p.duration_ms,
            },
            Payload::LlmUsage(p) => Facts::LlmUsage {
                model: p.model.clone(),
                tokens: [
                    int(p.input_tokens),
                    int(p.output_tokens),
                    int(p.cache_read_tokens.unwrap_or(0)),
                    int(p.cache_write_tokens.unwrap_or(0)),
                ],
                cost_cents: p.cost_cents,
            },
            Payload::Error(p) => Facts::Error {
                kind: p.kind.clone(),
                stack_hash: p.stack_hash.clone().unwrap_or_default(),
                message: p.message_120c.clone(),
            },
            Payload::Heartbeat(p) => Facts::Heartbeat(Box::new(HeartbeatFacts {
                paperclip_uptime_s: p.paperclip_uptime_s.map(int),
                agent_runtime_count: p.agent_runtime_count.map(int),
                host_load_1m: p.host_load_1m,
                spool_depth: p.spool_depth.map(int),
                spool_dropped: p.spool_dropped.map(int),
                agent_versions: serde_json::to_string(&p.agent_versions)
                    .unwrap_or_else(|_| "{}".to_owned()),
            })),
        }
    }

    /// The rollup facts of a stored event (`event_type` and payload JSON text), parsed with
    /// the same rules as on ingest.
    ///
    /// # Errors
    /// Why the stored event does not parse (an unknown type, a payload that breaks a rule).
    pub(crate) fn of_stored(event_type: &str, payload: &str) -> Result<Self, String> {
        let event_type: EventType = event_type.parse().map_err(|e| format!("{e}"))?;
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(payload).map_err(|e| format!("payload: {e}"))?;
        let payload = Payload::parse(event_type, obj).map_err(|e| format!("payload: {e}"))?;
        Ok(Facts::of(&payload))
    }
}

/// One stored event, as the rollups see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredEvent<'b> {
    /// The customer whose key sent it.
    pub(crate) customer_id: &'b str,
    /// The agent.
    pub(crate) agent_id: &'b str,
    /// The run, when it has one.
    pub(crate) run_id: Option<&'b str>,
    /// Its id.
    pub(crate) event_id: Uuid,
    /// When it happened, unix ms.
    pub(crate) ts: i64,
    /// When it was stored, unix ms.
    pub(crate) ingested_at: i64,
    /// What it contributes.
    pub(crate) facts: &'b Facts,
}

/// `rollup_usage` and `run_models` sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    llm_events: i64,
    /// Input, output, cache-read and cache-write tokens.
    tokens: [i64; 4],
    /// US cents.
    cost_cents: f64,
}

impl Usage {
    fn add(&mut self, tokens: &[i64; 4], cost_cents: f64) {
        self.llm_events += 1;
        for (sum, n) in self.tokens.iter_mut().zip(tokens) {
            *sum += n;
        }
        self.cost_cents += cost_cents;
    }
}

/// `rollup_tools` sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ToolSums {
    calls: i64,
    failures: i64,
    timed_calls: i64,
    /// ms.
    duration_sum_ms: i64,
}

/// The activity counts `rollup_agents` and `runs` share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Activity {
    events: i64,
    tool_calls: i64,
    tool_failures: i64,
    error_events: i64,
    llm_events: i64,
    /// US cents.
    cost_cents: f64,
    /// First and last `ts`, unix ms.
    first_ts: i64,
    last_ts: i64,
}

impl Activity {
    fn new(ts: i64) -> Self {
        Activity {
            first_ts: ts,
            last_ts: ts,
            ..Activity::default()
        }
    }

    fn add(&mut self, ts: i64, facts: &Facts) {
        self.events += 1;
        self.first_ts = self.first_ts.min(ts);
        self.last_ts = self.last_ts.max(ts);
        match facts {
            Facts::ToolCall { ok, .. } => {
                self.tool_calls += 1;
                self.tool_failures += i64::from(!ok);
            }
            Facts::Error { .. } => self.error_events += 1,
            Facts::LlmUsage { cost_cents, .. } => {
                self.llm_events += 1;
                self.cost_cents += cost_cents;
            }
            _ => {}
        }
    }
}

/// `rollup_agents` sums.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentSums<'a> {
    customer_id: Cow<'a, str>,
    activity: Activity,
    runs: i64,
    runs_failed: i64,
    runs_timed_out: i64,
}

/// `rollup_errors` sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorSums<'a> {
    events: i64,
    /// unix ms.
    first_ts: i64,
    last_ts: i64,
    /// The least `message_120c` (byte order).
    example_message: Cow<'a, str>,
}

/// A run's end as `runs` keeps it: the greatest by (`ended_at`, `status`, `exit_code`,
/// `duration_ms`), so the latest `session.end` wins and a tie is settled the same way in
/// any arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RunEnd {
    /// unix ms.
    ended_at: i64,
    status: &'static str,
    exit_code: i64,
    /// ms.
    duration_ms: i64,
}

/// A `runs` row's contribution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunSums<'a> {
    /// The least agent of the run's events.
    agent_id: Cow<'a, str>,
    activity: Activity,
    /// The earliest `session.start`, unix ms.
    started_at: Option<i64>,
    end: Option<RunEnd>,
}

/// An `agent_heartbeats` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatRow<'a> {
    customer_id: Cow<'a, str>,
    /// unix ms.
    ts: i64,
    event_id: Uuid,
    facts: Cow<'a, HeartbeatFacts>,
}

/// `rollup_usage` key: customer, grain, bucket start (unix ms), model.
type UsageKey<'a> = (Cow<'a, str>, &'static str, i64, Cow<'a, str>);
/// `rollup_tools` key: customer (`''`: fleet), grain, bucket, tool, source, MCP server.
type ToolKey<'a> = (
    Cow<'a, str>,
    &'static str,
    i64,
    Cow<'a, str>,
    &'static str,
    Cow<'a, str>,
);
/// `rollup_tool_latency` key: customer (`''`: fleet), grain, bucket, tool, latency bucket.
type LatencyKey<'a> = (Cow<'a, str>, &'static str, i64, Cow<'a, str>, i32);
/// `rollup_agents` key: agent, grain, bucket.
type AgentKey<'a> = (Cow<'a, str>, &'static str, i64);
/// `rollup_errors` key: customer, grain, bucket, kind, stack hash.
type ErrorKey<'a> = (Cow<'a, str>, &'static str, i64, Cow<'a, str>, Cow<'a, str>);
/// `runs` key: customer, run.
type RunKey<'a> = (Cow<'a, str>, Cow<'a, str>);
/// `run_models` key: customer, run, model.
type RunModelKey<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

/// Every rollup table's contributions of a set of events, keyed like the tables (without
/// `shard`, which the write adds). Strings borrow from the events where they can (the ingest
/// write) and own them where they cannot (`rollups verify` streams rows).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Rollups<'a> {
    usage: BTreeMap<UsageKey<'a>, Usage>,
    tools: BTreeMap<ToolKey<'a>, ToolSums>,
    tool_latency: BTreeMap<LatencyKey<'a>, i64>,
    agents: BTreeMap<AgentKey<'a>, AgentSums<'a>>,
    errors: BTreeMap<ErrorKey<'a>, ErrorSums<'a>>,
    /// (hour of `ingested_at` in unix ms, lag bucket) → events.
    ingest: BTreeMap<(i64, i32), i64>,
    runs: BTreeMap<RunKey<'a>, RunSums<'a>>,
    run_models: BTreeMap<RunModelKey<'a>, Usage>,
    heartbeats: BTreeMap<Cow<'a, str>, HeartbeatRow<'a>>,
}

impl<'a> Rollups<'a> {
    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Folds one stored event in, borrowing its strings.
    pub(crate) fn add(&mut self, e: &StoredEvent<'a>) {
        self.add_with(e, Cow::Borrowed, Cow::Borrowed);
    }

    /// Folds one stored event in, copying its strings (for events that do not outlive the
    /// sums).
    pub(crate) fn add_owned(&mut self, e: &StoredEvent<'_>) {
        self.add_with(e, |s| Cow::Owned(s.to_owned()), |h| Cow::Owned(h.clone()));
    }

    /// What every table gets from one event (docs/rollups.md, "Tables"); `own` turns the
    /// event's strings into keys.
    fn add_with<'b>(
        &mut self,
        e: &StoredEvent<'b>,
        own: impl Fn(&'b str) -> Cow<'a, str>,
        own_hb: impl Fn(&'b HeartbeatFacts) -> Cow<'a, HeartbeatFacts>,
    ) {
        let customer = own(e.customer_id);
        let agent = own(e.agent_id);
        let (hour, day) = (hour_of(e.ts), day_of(e.ts));
        let buckets = [(HOUR, hour), (DAY, day)];

        for (grain, bucket) in [(HOUR, hour), (DAY, day), (ALL_TIME, 0)] {
            let sums = self
                .agents
                .entry((agent.clone(), grain, bucket))
                .or_insert_with(|| AgentSums {
                    customer_id: customer.clone(),
                    activity: Activity::new(e.ts),
                    runs: 0,
                    runs_failed: 0,
                    runs_timed_out: 0,
                });
            sums.activity.add(e.ts, e.facts);
            match e.facts {
                Facts::SessionStart => sums.runs += 1,
                Facts::SessionEnd { status, .. } if *status == "failed" => sums.runs_failed += 1,
                Facts::SessionEnd { status, .. } if *status == "timeout" => {
                    sums.runs_timed_out += 1;
                }
                _ => {}
            }
        }

        let lag = u64::try_from(e.ingested_at.saturating_sub(e.ts)).unwrap_or(0);
        *self
            .ingest
            .entry((hour_of(e.ingested_at), latency::bucket_of(lag)))
            .or_default() += 1;

        let run = e.run_id.map(|r| (customer.clone(), own(r)));
        if let Some(key) = &run {
            let sums = self.runs.entry(key.clone()).or_insert_with(|| RunSums {
                agent_id: agent.clone(),
                activity: Activity::new(e.ts),
                started_at: None,
                end: None,
            });
            sums.activity.add(e.ts, e.facts);
            if agent < sums.agent_id {
                sums.agent_id = agent.clone();
            }
            match e.facts {
                Facts::SessionStart => {
                    sums.started_at = Some(sums.started_at.map_or(e.ts, |s| s.min(e.ts)));
                }
                Facts::SessionEnd {
                    status,
                    exit_code,
                    duration_ms,
                } => {
                    let end = RunEnd {
                        ended_at: e.ts,
                        status,
                        exit_code: *exit_code,
                        duration_ms: *duration_ms,
                    };
                    sums.end = sums.end.max(Some(end));
                }
                _ => {}
            }
        }

        match e.facts {
            Facts::ToolCall {
                tool_name,
                tool_source,
                mcp_server,
                ok,
                duration_ms,
            } => {
                let (tool, mcp) = (own(tool_name), own(mcp_server));
                for level in [customer.clone(), Cow::Borrowed("")] {
                    for (grain, bucket) in buckets {
                        let sums = self
                            .tools
                            .entry((
                                level.clone(),
                                grain,
                                bucket,
                                tool.clone(),
                                *tool_source,
                                mcp.clone(),
                            ))
                            .or_default();
                        sums.calls += 1;
                        sums.failures += i64::from(!ok);
                        if let Some(ms) = duration_ms {
                            sums.timed_calls += 1;
                            sums.duration_sum_ms += int(*ms);
                            *self
                                .tool_latency
                                .entry((
                                    level.clone(),
                                    grain,
                                    bucket,
                                    tool.clone(),
                                    latency::bucket_of(*ms),
                                ))
                                .or_default() += 1;
                        }
                    }
                }
            }
            Facts::LlmUsage {
                model,
                tokens,
                cost_cents,
            } => {
                let model = own(model);
                for (grain, bucket) in buckets {
                    self.usage
                        .entry((customer.clone(), grain, bucket, model.clone()))
                        .or_default()
                        .add(tokens, *cost_cents);
                }
                if let Some((c, r)) = run {
                    self.run_models
                        .entry((c, r, model))
                        .or_default()
                        .add(tokens, *cost_cents);
                }
            }
            Facts::Error {
                kind,
                stack_hash,
                message,
            } => {
                let (kind, stack) = (own(kind), own(stack_hash));
                for (grain, bucket) in buckets {
                    let sums = self
                        .errors
                        .entry((customer.clone(), grain, bucket, kind.clone(), stack.clone()))
                        .or_insert_with(|| ErrorSums {
                            events: 0,
                            first_ts: e.ts,
                            last_ts: e.ts,
                            example_message: own(message),
                        });
                    sums.events += 1;
                    sums.first_ts = sums.first_ts.min(e.ts);
                    sums.last_ts = sums.last_ts.max(e.ts);
                    if message.as_str() < sums.example_message.as_ref() {
                        sums.example_message = own(message);
                    }
                }
            }
            Facts::Heartbeat(hb) => {
                let newer = self
                    .heartbeats
                    .get(e.agent_id)
                    .is_none_or(|old| (e.ts, e.event_id) > (old.ts, old.event_id));
                if newer {
                    self.heartbeats.insert(
                        agent.clone(),
                        HeartbeatRow {
                            customer_id: customer.clone(),
                            ts: e.ts,
                            event_id: e.event_id,
                            facts: own_hb(hb),
                        },
                    );
                }
            }
            Facts::SessionStart | Facts::SessionEnd { .. } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// verify and rebuild

/// How a rollup column is typed, for reading it back and comparing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    /// Money (or a load average): compared with a relative tolerance.
    Money,
    Time,
    /// A UUID, read as its text.
    Uuid,
}

/// How `verify` sums a column over `shard` (and names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    /// A key column.
    Key,
    Sum,
    Min,
    Max,
    /// A table without `shard`: the value as stored.
    Plain,
}

/// A rollup table as `verify` reads it.
#[derive(Debug)]
struct Table {
    name: &'static str,
    /// Key columns (without `shard`), then value columns.
    columns: &'static [(&'static str, Kind, Agg)],
}

use Agg::{Key, Max, Min, Plain, Sum};
use Kind::{Int, Money, Text, Time};

/// Every rollup table, in the order they are written.
const TABLES: &[Table] = &[
    Table {
        name: "rollup_usage",
        columns: &[
            ("customer_id", Text, Key),
            ("grain", Text, Key),
            ("bucket_start", Time, Key),
            ("model", Text, Key),
            ("llm_events", Int, Sum),
            ("input_tokens", Int, Sum),
            ("output_tokens", Int, Sum),
            ("cache_read_tokens", Int, Sum),
            ("cache_write_tokens", Int, Sum),
            ("cost_cents", Money, Sum),
        ],
    },
    Table {
        name: "rollup_tools",
        columns: &[
            ("customer_id", Text, Key),
            ("grain", Text, Key),
            ("bucket_start", Time, Key),
            ("tool_name", Text, Key),
            ("tool_source", Text, Key),
            ("mcp_server", Text, Key),
            ("calls", Int, Sum),
            ("failures", Int, Sum),
            ("timed_calls", Int, Sum),
            ("duration_sum_ms", Int, Sum),
        ],
    },
    Table {
        name: "rollup_tool_latency",
        columns: &[
            ("customer_id", Text, Key),
            ("grain", Text, Key),
            ("bucket_start", Time, Key),
            ("tool_name", Text, Key),
            ("bucket", Int, Key),
            ("calls", Int, Sum),
        ],
    },
    Table {
        name: "rollup_agents",
        columns: &[
            ("agent_id", Text, Key),
            ("grain", Text, Key),
            ("bucket_start", Time, Key),
            ("customer_id", Text, Min),
            ("events", Int, Sum),
            ("runs", Int, Sum),
            ("runs_failed", Int, Sum),
            ("runs_timed_out", Int, Sum),
            ("tool_calls", Int, Sum),
            ("tool_failures", Int, Sum),
            ("error_events", Int, Sum),
            ("llm_events", Int, Sum),
            ("cost_cents", Money, Sum),
            ("first_ts", Time, Min),
            ("last_ts", Time, Max),
        ],
    },
    Table {
        name: "rollup_errors",
        columns: &[
            ("customer_id", Text, Key),
            ("grain", Text, Key),
            ("bucket_start", Time, Key),
            ("kind", Text, Key),
            ("stack_hash", Text, Key),
            ("events", Int, Sum),
            ("first_ts", Time, Min),
            ("last_ts", Time, Max),
            ("example_message", Text, Min),
        ],
    },
    Table {
        name: "rollup_ingest",
        columns: &[
            ("bucket_start", Time, Key),
            ("lag_bucket", Int, Key),
            ("events", Int, Sum),
        ],
    },
    Table {
        name: "runs",
        columns: &[
            ("customer_id", Text, Key),
            ("run_id", Text, Key),
            ("agent_id", Text, Plain),
            ("first_ts", Time, Plain),
            ("last_ts", Time, Plain),
            ("started_at", Time, Plain),
            ("ended_at", Time, Plain),
            ("status", Text, Plain),
            ("exit_code", Int, Plain),
            ("duration_ms", Int, Plain),
            ("events", Int, Plain),
            ("tool_calls", Int, Plain),
            ("tool_failures", Int, Plain),
            ("error_events", Int, Plain),
            ("llm_events", Int, Plain),
            ("cost_cents", Money, Plain),
        ],
    },
    Table {
        name: "run_models",
        columns: &[
            ("customer_id", Text, Key),
            ("run_id", Text, Key),
            ("model", Text, Key),
            ("llm_events", Int, Plain),
            ("input_tokens", Int, Plain),
            ("output_tokens", Int, Plain),
            ("cache_read_tokens", Int, Plain),
            ("cache_write_tokens", Int, Plain),
            ("cost_cents", Money, Plain),
        ],
    },
    Table {
        name: "agent_heartbeats",
        columns: &[
            ("agent_id", Text, Key),
            ("customer_id", Text, Plain),
            ("ts", Time, Plain),
            ("event_id", Kind::Uuid, Plain),
            ("paperclip_uptime_s", Int, Plain),
            ("agent_runtime_count", Int, Plain),
            ("host_load_1m", Money, Plain),
            ("spool_depth", Int, Plain),
            ("spool_dropped", Int, Plain),
            ("agent_versions", Text, Plain),
        ],
    },
];

/// One cell of a rollup row, backend-independent.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Money(Option<f64>),
    /// unix ms.
    Time(Option<i64>),
}

impl Cell {
    /// Whether two cells agree: counts and text exactly, money within a relative 1e-9.
    fn agrees(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Money(Some(a)), Cell::Money(Some(b))) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
            }
            _ => self == other,
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Text(Some(s)) => write!(f, "{s:?}"),
            Cell::Int(Some(n)) => write!(f, "{n}"),
            Cell::Money(Some(x)) => write!(f, "{x}"),
            Cell::Time(Some(ms)) => f.write_str(&time_text(*ms)),
            Cell::Text(None) | Cell::Int(None) | Cell::Money(None) | Cell::Time(None) => {
                f.write_str("NULL")
            }
        }
    }
}

/// A time as RFC 3339 with milliseconds.
fn time_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// Rows of one table: the key (rendered `col=value, …`) → the value cells in column order.
type TableRows = BTreeMap<String, Vec<Cell>>;

/// `col=value, …` of a row's key cells.
fn render_key(table: &Table, key: &[Cell]) -> String {
    let mut s = String::new();
    for ((name, _, _), cell) in table.columns.iter().zip(key) {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(s, "{name}={cell}");
    }
    s
}

fn text(s: &str) -> Cell {
    Cell::Text(Some(s.to_owned()))
}

impl Rollups<'_> {
    /// Every table's rows as cells, in [`TABLES`] order, summed as `verify` reads them.
    fn cells(&self) -> Vec<TableRows> {
        let [
            usage,
            tools,
            latency,
            agents,
            errors,
            ingest,
            runs,
            run_models,
            heartbeats,
        ] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| &TABLES[i]);
        let mut out: Vec<TableRows> = vec![TableRows::new(); TABLES.len()];
        let mut put = |i: usize, table: &Table, key: Vec<Cell>, values: Vec<Cell>| {
            out[i].insert(render_key(table, &key), values);
        };
        let usage_cells = |u: &Usage| {
            let mut v: Vec<Cell> = std::iter::once(u.llm_events)
                .chain(u.tokens)
                .map(|n| Cell::Int(Some(n)))
                .collect();
            v.push(Cell::Money(Some(u.cost_cents)));
            v
        };
        for ((c, g, b, m), u) in &self.usage {
            put(
                0,
                usage,
                vec![text(c), text(g), Cell::Time(Some(*b)), text(m)],
                usage_cells(u),
            );
        }
        for ((c, g, b, t, s, m), v) in &self.tools {
            put(
                1,
                tools,
                vec![
                    text(c),
                    text(g),
                    Cell::Time(Some(*b)),
                    text(t),
                    text(s),
                    text(m),
                ],
                [v.calls, v.failures, v.timed_calls, v.duration_sum_ms]
                    .map(|n| Cell::Int(Some(n)))
                    .to_vec(),
            );
        }
        for ((c, g, b, t, lb), n) in &self.tool_latency {
            put(
                2,
                latency,
                vec![
                    text(c),
                    text(g),
                    Cell::Time(Some(*b)),
                    text(t),
                    Cell::Int(Some(i64::from(*lb))),
                ],
                vec![Cell::Int(Some(*n))],
            );
        }
        for ((a, g, b), s) in &self.agents {
            let x = &s.activity;
            let mut v = vec![text(&s.customer_id)];
            v.extend(
                [
                    x.events,
                    s.runs,
                    s.runs_failed,
                    s.runs_timed_out,
                    x.tool_calls,
                    x.tool_failures,
                    x.error_events,
                    x.llm_events,
                ]
                .map(|n| Cell::Int(Some(n))),
            );
            v.push(Cell::Money(Some(x.cost_cents)));
            v.push(Cell::Time(Some(x.first_ts)));
            v.push(Cell::Time(Some(x.last_ts)));
            put(3, agents, vec![text(a), text(g), Cell::Time(Some(*b))], v);
        }
        for ((c, g, b, k, h), s) in &self.errors {
            put(
                4,
                errors,
                vec![text(c), text(g), Cell::Time(Some(*b)), text(k), text(h)],
                vec![
                    Cell::Int(Some(s.events)),
                    Cell::Time(Some(s.first_ts)),
                    Cell::Time(Some(s.last_ts)),
                    text(&s.example_message),
                ],
            );
        }
        for ((b, lb), n) in &self.ingest {
            put(
                5,
                ingest,
                vec![Cell::Time(Some(*b)), Cell::Int(Some(i64::from(*lb)))],
                vec![Cell::Int(Some(*n))],
            );
        }
        for ((c, r), s) in &self.runs {
            let x = &s.activity;
            let mut v = vec![
                text(&s.agent_id),
                Cell::Time(Some(x.first_ts)),
                Cell::Time(Some(x.last_ts)),
                Cell::Time(s.started_at),
                Cell::Time(s.end.map(|e| e.ended_at)),
                Cell::Text(s.end.map(|e| e.status.to_owned())),
                Cell::Int(s.end.map(|e| e.exit_code)),
                Cell::Int(s.end.map(|e| e.duration_ms)),
            ];
            v.extend(
                [
                    x.events,
                    x.tool_calls,
                    x.tool_failures,
                    x.error_events,
                    x.llm_events,
                ]
                .map(|n| Cell::Int(Some(n))),
            );
            v.push(Cell::Money(Some(x.cost_cents)));
            put(6, runs, vec![text(c), text(r)], v);
        }
        for ((c, r, m), u) in &self.run_models {
            put(
                7,
                run_models,
                vec![text(c), text(r), text(m)],
                usage_cells(u),
            );
        }
        for (a, h) in &self.heartbeats {
            let f = &h.facts;
            put(
                8,
                heartbeats,
                vec![text(a)],
                vec![
                    text(&h.customer_id),
                    Cell::Time(Some(h.ts)),
                    text(&h.event_id.hyphenated().to_string()),
                    Cell::Int(f.paperclip_uptime_s),
                    Cell::Int(f.agent_runtime_count),
                    Cell::Money(Some(f.host_load_1m)),
                    Cell::Int(f.spool_depth),
                    Cell::Int(f.spool_dropped),
                    text(&f.agent_versions),
                ],
            );
        }
        out
    }
}

/// One difference `verify` found between a table and the recomputation from `events`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Difference {
    /// The table (or `events` for a stored event that does not parse).
    pub(crate) table: &'static str,
    /// The row's key, `col=value, …`.
    pub(crate) key: String,
    /// The column (`(row)` for a row present on one side only).
    pub(crate) column: &'static str,
    /// What the table holds.
    pub(crate) stored: String,
    /// What the events give.
    pub(crate) expected: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] {}: stored {}, expected {}",
            self.table, self.key, self.column, self.stored, self.expected
        )
    }
}

/// What `rollups verify` found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verification {
    /// Events folded.
    pub(crate) events: u64,
    /// Rollup rows compared (the union of stored and expected keys, all tables).
    pub(crate) rows: usize,
    /// Every difference, table by table in key order.
    pub(crate) differences: Vec<Difference>,
    /// The retention horizon: rows of buckets before it were not checked (their raw events
    /// may be pruned).
    pub(crate) horizon: Option<DateTime<Utc>>,
}

/// What `rollups rebuild` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rebuilt {
    /// Events folded.
    pub(crate) events: u64,
    /// Rollup rows written (all tables).
    pub(crate) rows: usize,
}

/// The fold of every stored event, with the events that do not parse.
#[derive(Debug, Default)]
struct Fold {
    rollups: Rollups<'static>,
    events: u64,
    unreadable: Vec<Difference>,
}

impl Fold {
    /// Folds one stored event, given as its row's fields.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per column of `events`"
    )]
    fn add(
        &mut self,
        customer_id: &str,
        event_id: Uuid,
        agent_id: &str,
        run_id: Option<&str>,
        event_type: &str,
        ts: i64,
        ingested_at: i64,
        payload: &str,
    ) {
        self.events += 1;
        match Facts::of_stored(event_type, payload) {
            Ok(facts) => self.rollups.add_owned(&StoredEvent {
                customer_id,
                agent_id,
                run_id,
                event_id,
                ts,
                ingested_at,
                facts: &facts,
            }),
            Err(why) => self.unreadable.push(Difference {
                table: "events",
                key: format!("customer_id={customer_id:?}, event_id={event_id}"),
                column: "payload",
                stored: format!("unreadable ({why})"),
                expected: "a valid payload".to_owned(),
            }),
        }
    }
}

/// The differences between stored rows and expected rows of every table; with a retention
/// `horizon` (unix ms: raw events before it may be pruned), only the rows whose raw events are
/// all retained ([`covered`]).
fn compare(
    stored: &[TableRows],
    expected: &[TableRows],
    horizon: Option<i64>,
) -> (usize, Vec<Difference>) {
    let mut rows = 0;
    let mut out = Vec::new();
    let mut old_runs = Vec::new();
    for ((table, stored), expected) in TABLES.iter().zip(stored).zip(expected) {
        let values: Vec<&'static str> = table
            .columns
            .iter()
            .filter(|(_, _, agg)| *agg != Key)
            .map(|(name, _, _)| *name)
            .collect();
        let mut keys: Vec<&String> = stored.keys().chain(expected.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        if let Some(h) = horizon {
            keys.retain(|key| {
                covered(
                    table,
                    key,
                    [stored.get(*key), expected.get(*key)],
                    h,
                    &mut old_runs,
                )
            });
        }
        rows += keys.len();
        for key in keys {
            match (stored.get(key), expected.get(key)) {
                (Some(s), Some(e)) => {
                    for ((name, s), e) in values.iter().zip(s).zip(e) {
                        if !s.agrees(e) {
                            out.push(Difference {
                                table: table.name,
                                key: key.clone(),
                                column: name,
                                stored: s.to_string(),
                                expected: e.to_string(),
                            });
                        }
                    }
                }
                (s, e) => out.push(Difference {
                    table: table.name,
                    key: key.clone(),
                    column: "(row)",
                    stored: if s.is_some() { "present" } else { "absent" }.to_owned(),
                    expected: if e.is_some() { "present" } else { "absent" }.to_owned(),
                }),
            }
        }
    }
    (rows, out)
}

/// Whether the rollup row `key` of `table` (its stored and expected values) covers only
/// events at or after the retention horizon `h` (unix ms), so that it can be checked against
/// the retained events. Not covered: a time bucket starting before `h`, the all-time bucket,
/// `rollup_ingest` (bucketed by arrival, while events are pruned by `ts`), a run whose first
/// event is before `h` (recorded in `old_runs`) and its per-model rows, a latest heartbeat
/// before `h`.
fn covered(
    table: &Table,
    key: &str,
    rows: [Option<&Vec<Cell>>; 2],
    h: i64,
    old_runs: &mut Vec<String>,
) -> bool {
    let time = |name: &str| {
        let at = table
            .columns
            .iter()
            .filter(|(_, _, agg)| *agg != Key)
            .position(|(n, _, _)| *n == name);
        rows.iter().flatten().all(
            |row| matches!(at.and_then(|i| row.get(i)), Some(Cell::Time(Some(ms))) if *ms >= h),
        )
    };
    match table.name {
        "rollup_ingest" => false,
        "runs" => {
            let ok = time("first_ts");
            if !ok {
                old_runs.push(format!("{key}, "));
            }
            ok
        }
        "run_models" => !old_runs.iter().any(|r| key.starts_with(r.as_str())),
        "agent_heartbeats" => time("ts"),
        _ => {
            if key.contains(&format!("grain={ALL_TIME:?}")) {
                return false;
            }
            key.split(", ")
                .find_map(|part| part.strip_prefix("bucket_start="))
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t.timestamp_millis() >= h)
        }
    }
}

/// Rows per statement when a whole table is written (`rollups rebuild`).
const REBUILD_CHUNK_ROWS: usize = 5000;

impl Store {
    /// Recomputes every rollup table from `events` and compares it with what is stored,
    /// in one consistent snapshot (the server may keep ingesting). After a prune, only the
    /// rows whose raw events are all retained (at or after the retention horizon) are
    /// compared; older rows are the long-term record.
    ///
    /// # Errors
    /// [`DbError::Query`] when a read fails.
    pub(crate) async fn verify_rollups(&self) -> Result<Verification, DbError> {
        let (fold, stored) = match self {
            Store::Postgres(pool) => postgres::read_all(pool).await?,
            Store::Sqlite(pool) => sqlite::read_all(pool).await?,
        };
        // Read after the snapshot: a horizon newer than the snapshot only checks less.
        let horizon = self.retention_horizon().await?;
        let expected = fold.rollups.cells();
        let (rows, mut differences) =
            compare(&stored, &expected, horizon.map(|t| t.timestamp_millis()));
        differences.extend(fold.unreadable);
        Ok(Verification {
            events: fold.events,
            rows,
            differences,
            horizon,
        })
    }

    /// Replaces every rollup table with the recomputation from `events`, in one transaction
    /// (rows with `shard` 0). Ingest waits for it (Postgres: a SHARE lock on `events`;
    /// SQLite: the write lock, which a writer waits 5 s for before it answers 503).
    ///
    /// # Errors
    /// [`DbError::Query`] when a statement or the commit fails (nothing changed then).
    pub(crate) async fn rebuild_rollups(&self) -> Result<Rebuilt, DbError> {
        let (events, rollups) = match self {
            Store::Postgres(pool) => postgres::rebuild(pool).await?,
            Store::Sqlite(pool) => sqlite::rebuild(pool).await?,
        };
        let rows = rollups.cells().iter().map(BTreeMap::len).sum();
        Ok(Rebuilt { events, rows })
    }

    /// Whether `events` has rows but the rollups are empty: a database written before the
    /// rollups existed, which [`Store::rebuild_rollups`] fills.
    ///
    /// # Errors
    /// [`DbError::Query`] when the read fails.
    pub(crate) async fn rollups_missing(&self) -> Result<bool, DbError> {
        const Q: &str =
            "SELECT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM rollup_agents)";
        Ok(match self {
            Store::Postgres(pool) => sqlx::query_scalar(Q).fetch_one(pool).await?,
            Store::Sqlite(pool) => sqlx::query_scalar(Q).fetch_one(pool).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, ok: bool, ms: Option<u64>) -> Facts {
        Facts::ToolCall {
            tool_name: name.to_owned(),
            tool_source: "",
            mcp_server: String::new(),
            ok,
            duration_ms: ms,
        }
    }

    fn ev<'b>(agent: &'b str, run: Option<&'b str>, ts: i64, facts: &'b Facts) -> StoredEvent<'b> {
        StoredEvent {
            customer_id: "acme",
            agent_id: agent,
            run_id: run,
            event_id: Uuid::new_v4(),
            ts,
            ingested_at: ts + 1500,
            facts,
        }
    }

    #[test]
    fn buckets_round_down_in_utc_also_before_1970() {
        assert_eq!(hour_of(3_600_000 + 5), 3_600_000);
        assert_eq!(hour_of(-1), -3_600_000);
        assert_eq!(day_of(DAY_MS * 3 + 7), DAY_MS * 3);
    }

    #[test]
    fn a_fold_is_the_same_in_any_order_and_borrowed_or_owned() {
        let facts = [
            tool("Bash", true, Some(12)),
            tool("Bash", false, None),
            Facts::SessionStart,
            Facts::SessionEnd {
                status: "failed",
                exit_code: 1,
                duration_ms: 10,
            },
            Facts::SessionEnd {
                status: "success",
                exit_code: 0,
                duration_ms: 10,
            },
            Facts::LlmUsage {
                model: "m".to_owned(),
                tokens: [1, 2, 3, 4],
                cost_cents: 0.1,
            },
            Facts::Error {
                kind: "k".to_owned(),
                stack_hash: String::new(),
                message: "zeta".to_owned(),
            },
            Facts::Error {
                kind: "k".to_owned(),
                stack_hash: String::new(),
                message: "alpha".to_owned(),
            },
        ];
        let events: Vec<StoredEvent<'_>> = facts
            .iter()
            .enumerate()
            .map(|(i, f)| ev("agent_a", Some("run_1"), 1_000_000 + (i as i64 % 4), f))
            .collect();
        let mut forward = Rollups::default();
        for e in &events {
            forward.add(e);
        }
        let mut backward = Rollups::default();
        for e in events.iter().rev() {
            backward.add_owned(e);
        }
        assert_eq!(forward.cells(), backward.cells());

        let run = &forward.runs[&(Cow::Borrowed("acme"), Cow::Borrowed("run_1"))];
        // The failed end (index 3, ts + 3) is later than the successful one (index 4, ts + 0).
        assert_eq!(run.activity.events, 8);
        assert_eq!(run.activity.tool_failures, 1);
        let end = run.end.unwrap();
        assert_eq!(end.ended_at, 1_000_003);
        assert_eq!(end.status, "failed");
        let agent = &forward.agents[&(Cow::Borrowed("agent_a"), ALL_TIME, 0)];
        assert_eq!((agent.runs, agent.runs_failed), (1, 1));
        let fleet = forward
            .tools
            .iter()
            .find(|(k, _)| k.0.is_empty() && k.1 == DAY)
            .unwrap()
            .1;
        assert_eq!((fleet.calls, fleet.failures, fleet.timed_calls), (2, 1, 1));
        let err = forward.errors.values().next().unwrap();
        assert_eq!(err.example_message, "alpha");
    }

    #[test]
    fn compare_names_the_table_key_and_column() {
        let facts = tool("Bash", true, Some(5));
        let mut r = Rollups::default();
        r.add(&ev("agent_a", None, 0, &facts));
        let expected = r.cells();
        let mut stored = expected.clone();
        let tools = &mut stored[1];
        let key = tools.keys().next().unwrap().clone();
        tools.get_mut(&key).unwrap()[0] = Cell::Int(Some(2));
        let (_, diffs) = compare(&stored, &expected, None);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert_eq!(diffs[0].table, "rollup_tools");
        assert_eq!(diffs[0].column, "calls");
        assert_eq!(
            (diffs[0].stored.as_str(), diffs[0].expected.as_str()),
            ("2", "1")
        );
        assert!(Cell::Money(Some(1.0)).agrees(&Cell::Money(Some(1.0 + 1e-12))));
        assert!(!Cell::Money(Some(1.0)).agrees(&Cell::Money(Some(1.0001))));
    }
}
