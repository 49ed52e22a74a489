//! Fuzzing of `POST /v1/events` (issue 6, "Also build"): hostile bodies through the real server
//! (real HTTP, the real router, a real SQLite file and, when available, a real Postgres
//! database), checked against a small independent model of what the body holds.
//!
//! cargo-fuzz needs a nightly toolchain, which the build machines do not have, so this is a
//! property-based driver ([`proptest`]) with a case budget:
//!
//! ```text
//! cargo test -p brain-server --test it fuzz                      # CI: 300 cases per backend, ~15 s
//! BRAIN_FUZZ_CASES=6000 cargo test -p brain-server --test it fuzz::ingest -- --nocapture
//! ```
//!
//! `BRAIN_FUZZ_CASES` is the number of random cases per backend (default
//! [`DEFAULT_CASES`]); the driver prints how many ran and the statuses seen. The second command
//! runs for minutes (4 to 5 on two cores, both backends at once). Postgres is skipped when
//! unusable unless `BRAIN_REQUIRE_POSTGRES=1`.
//!
//! Bodies are structured (valid envelopes of every event type with mutated fields: huge,
//! negative and non-finite-looking numbers, unicode, NULs, lone surrogates, deep nesting,
//! wrong types, duplicate keys, strings around the 16 KiB payload limit, padding around the
//! 1 MiB body limit, arrays of 0/1/500/501 elements) or unstructured (random bytes, byte-level
//! mutations of a recorded emitter body), sent plain, gzipped, gzipped in several members,
//! gzipped and truncated, or with trailing garbage, under right and wrong content types.
//!
//! Every answer is checked: no 5xx but 503 (and no dropped connection, which is how a handler
//! panic shows); a body the model says is acceptable gets 200 (422 for a single rejected
//! event) with one result per element and `accepted + duplicate + rejected` equal to the
//! counts of the results; any other body gets a 4xx in the error envelope; every rejected
//! element is in `dead_letters` (its raw JSON, or a prefix of it when capped) under its code;
//! the accepted events were stored. Failures are shrunk and their seeds kept in
//! `tests/proptest-regressions/fuzz.txt` (replayed first on every run); [`corpus`] holds
//! hand-picked nasty bodies as a plain test.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shared_proto::limits::{MAX_BATCH_EVENTS, MAX_BODY_BYTES, MAX_PAYLOAD_BYTES};

use crate::helpers::{Backend, Options, TestApp, limits, spawn_app_with};

/// Random cases per backend when `BRAIN_FUZZ_CASES` is unset: small enough for CI.
const DEFAULT_CASES: u32 = 300;

/// The agent id the generated bodies use; each case replaces it with an agent of its own
/// customer, so that agent ownership does not reject every case after the first.
const AGENT: &str = "fuzz_agent";

/// A body as the emitter sends it (one event of each type), the seed of the mutated bodies.
const RECORDED: &str = r#"[{"event_id":"0b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:52.636Z","event_type":"session.start","agent_id":"fuzz_agent","run_id":"run_1","payload":{"paperclip_run_id":"run_1","agent_kind":"claude-code","source":"isolate"}},{"event_id":"1b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:53.001Z","event_type":"tool_call","agent_id":"fuzz_agent","run_id":"run_1","payload":{"tool_name":"mcp__github__create_issue","duration_ms":412,"ok":true,"args_size_bytes":118,"output_size_bytes":2048,"tool_use_id":"toolu_01","tool_source":"mcp","mcp_server":"github"}},{"event_id":"2b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:54.500Z","event_type":"llm_usage","agent_id":"fuzz_agent","run_id":"run_1","payload":{"model":"claude-opus-4-6","input_tokens":1200,"output_tokens":340,"cache_read_tokens":50000,"cache_write_tokens":800,"cost_cents":3.75,"total_turns":4}},{"event_id":"3b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:55.000Z","event_type":"error","agent_id":"fuzz_agent","run_id":"run_1","payload":{"kind":"hook_failed","message_120c":"stdin is not JSON","stack_hash":"ab12"}},{"event_id":"4b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:56.000Z","event_type":"heartbeat","agent_id":"fuzz_agent","payload":{"paperclip_uptime_s":3600,"agent_runtime_count":2,"host_load_1m":0.42,"agent_versions":{"fuzz_agent":"2.1.0"},"spool_depth":0,"spool_dropped":0}},{"event_id":"5b6c5a8e-1111-4222-8333-444455556666","ts":"2026-11-20T22:52:57.000Z","event_type":"session.end","agent_id":"fuzz_agent","run_id":"run_1","payload":{"status":"success","exit_code":0,"duration_ms":5000}}]"#;

// ---------------------------------------------------------------------------------------
// The tests.

mod ingest {
    #[test]
    fn sqlite() {
        super::drive(super::Backend::Sqlite);
    }

    #[test]
    fn postgres() {
        super::drive(super::Backend::Postgres);
    }
}

mod corpus {
    #[test]
    fn sqlite() {
        super::run_corpus(super::Backend::Sqlite);
    }

    #[test]
    fn postgres() {
        super::run_corpus(super::Backend::Postgres);
    }
}

// ---------------------------------------------------------------------------------------
// What a case is.

/// How the body is encoded on the wire.
#[derive(Debug, Clone)]
enum Encoding {
    /// No `Content-Encoding`.
    Plain,
    /// `Content-Encoding: identity`.
    Identity,
    /// Gzip in `members` members (the body cut in that many pieces).
    Gzip { members: usize },
    /// Gzip cut to `keep` per mille of its bytes.
    TruncatedGzip { keep: u16 },
    /// Gzip followed by bytes that are not a gzip member.
    GzipThenGarbage(Vec<u8>),
    /// `Content-Encoding: gzip` over bytes that are not gzip at all.
    FakeGzip,
    /// Another (refused) encoding, body sent as is.
    Other(&'static str),
}

/// One request.
#[derive(Clone)]
struct Case {
    content_type: &'static str,
    encoding: Encoding,
    /// The body before encoding; `fuzz_agent` in it is replaced per case.
    body: Vec<u8>,
}

/// The body as (lossy) text, long runs of one byte and the middle of a long body elided, so
/// that a failure report (and its line in the regressions file) stays readable.
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::new();
        let mut i = 0;
        while i < self.body.len() {
            let run = self.body[i..]
                .iter()
                .take_while(|b| **b == self.body[i])
                .count();
            if run > 16 {
                text.push_str(&format!("<{run} x {:?}>", char::from(self.body[i])));
            } else {
                text.push_str(&String::from_utf8_lossy(&self.body[i..i + run]));
            }
            i += run;
        }
        if text.chars().count() > 1200 {
            let head: String = text.chars().take(900).collect();
            let tail: String = text.chars().skip(text.chars().count() - 200).collect();
            text = format!("{head}<…>{tail}");
        }
        f.debug_struct("Case")
            .field("content_type", &self.content_type)
            .field("encoding", &self.encoding)
            .field("body_len", &self.body.len())
            .field("body", &text)
            .finish()
    }
}

const CONTENT_TYPES: [&str; 9] = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    " application/json ;x=1",
    "application/json;",
    "text/plain",
    "application/jsonx",
    "application/x-www-form-urlencoded",
    "",
];

// ---------------------------------------------------------------------------------------
// Strategies.

fn content_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => Just(CONTENT_TYPES[0]),
        3 => prop::sample::select(&CONTENT_TYPES[1..5]),
        1 => prop::sample::select(&CONTENT_TYPES[5..]),
    ]
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        10 => Just(Encoding::Plain),
        1 => Just(Encoding::Identity),
        5 => (1_usize..4).prop_map(|members| Encoding::Gzip { members }),
        1 => (0_u16..1000).prop_map(|keep| Encoding::TruncatedGzip { keep }),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Encoding::GzipThenGarbage),
        1 => Just(Encoding::FakeGzip),
        1 => prop::sample::select(&["br", "deflate", "gzip, gzip", "x-gzip", "GZIP ", ""][..])
            .prop_map(Encoding::Other),
    ]
}

/// A hostile JSON value; `Raw` is JSON text that no [`Value`] can hold (spliced in as text).
#[derive(Debug, Clone)]
enum Hostile {
    Json(Value),
    Raw(&'static str),
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(100_000_000_000_u64),
            json!(100_000_000_001_u64),
            json!(100_000_000),
            json!(100_000_000.01),
            json!(1e308),
            json!(-1e308),
            json!(f64::MIN_POSITIVE),
            json!(0.5),
            json!(-0.0),
            json!(1_000_000.5),
        ]),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)), // NaN and infinities become null
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            String::new(),
            " ".to_owned(),
            "\0".to_owned(),
            "a\0b".to_owned(),
            "é😀\u{202e}\u{feff}".to_owned(),
            "../../etc/passwd".to_owned(),
            "'; DROP TABLE events; --".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
            "{0B6C5A8E-1111-4222-8333-444455556666}".to_owned(),
            "urn:uuid:0b6c5a8e-1111-4222-8333-444455556666".to_owned(),
            "0000-01-01T00:00:00Z".to_owned(),
            "9999-12-31T23:59:59.999999999Z".to_owned(),
            "2026-11-20T22:52:52+23:59".to_owned(),
            "2026-02-30T00:00:00Z".to_owned(),
            "1970-01-01T00:00:00Z".to_owned(),
            "tool_call".to_owned(),
            "TOOL_CALL".to_owned(),
            "heartbeat\0".to_owned(),
            "success".to_owned(),
            "mcp".to_owned(),
        ]),
        ".{0,40}",
        (
            0_usize..5,
            prop::sample::select(vec![127_usize, 128, 129, 255, 256, 257, 4096])
        )
            .prop_map(|(c, n)| ["a", "é", "😀", "\0", "x"][c].repeat(n)),
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        4 => hostile_number().prop_map(Hostile::Json),
        4 => hostile_string().prop_map(|s| Hostile::Json(json!(s))),
        1 => prop::sample::select(vec![
            json!(null), json!(true), json!(false), json!([]), json!({}),
            json!([1, "a", null]), json!({"": {"": []}}),
        ]).prop_map(Hostile::Json),
        1 => (1_usize..140).prop_map(|d| Hostile::Json(nested(d))),
        1 => (1_usize..2000).prop_map(|n| Hostile::Json(Value::Object(
            (0..n).map(|i| (format!("k{i}"), json!(i))).collect()
        ))),
        // Strings around the 16 KiB payload limit (the payload's other fields add ~100 bytes).
        1 => (MAX_PAYLOAD_BYTES - 300..MAX_PAYLOAD_BYTES + 50)
            .prop_map(|n| Hostile::Json(json!("p".repeat(n)))),
        2 => prop::sample::select(vec![
            "1e999", "-1e999", "1E400", "123456789012345678901234567890", "-0",
            "0.0000000000000000000000000000000000000000001", "1.7976931348623157e308",
            "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\u0000\"", "\"a\\u0000\"",
            "\"\\uDBFF\\uDFFF\"", "[[[[[[[[[[]]]]]]]]]]",
        ]).prop_map(Hostile::Raw),
    ]
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

/// A field of an envelope: an envelope field, a payload field (`payload.x`), or a new one.
fn field() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "event_id",
        "ts",
        "event_type",
        "agent_id",
        "run_id",
        "payload",
        "extra_envelope_field",
        "payload.tool_name",
        "payload.duration_ms",
        "payload.ok",
        "payload.args_size_bytes",
        "payload.tool_source",
        "payload.model",
        "payload.input_tokens",
        "payload.output_tokens",
        "payload.cache_read_tokens",
        "payload.cost_cents",
        "payload.total_turns",
        "payload.kind",
        "payload.message_120c",
        "payload.paperclip_uptime_s",
        "payload.host_load_1m",
        "payload.agent_versions",
        "payload.spool_depth",
        "payload.status",
        "payload.exit_code",
        "payload.paperclip_run_id",
        "payload.extra_payload_field",
    ])
    .prop_map(str::to_owned)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(String, Hostile),
    Remove(String),
    /// A second copy of a key, first or last in the object (which one wins is the parser's).
    DuplicateKey {
        key: &'static str,
        value: Hostile,
        first: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (field(), hostile()).prop_map(|(f, h)| Mutation::Set(f, h)),
        2 => field().prop_map(Mutation::Remove),
        1 => (
            prop::sample::select(vec!["event_id", "event_type", "agent_id", "payload", "ts"]),
            hostile(),
            any::<bool>()
        )
            .prop_map(|(key, value, first)| Mutation::DuplicateKey { key, value, first }),
    ]
}

/// A valid envelope of each type (`ts` a minute ago, the id from `id`).
fn template(kind: usize, id: u128) -> Value {
    let ts = crate::helpers::ts_ago(chrono::TimeDelta::minutes(1));
    let (event_type, payload) = match kind % 6 {
        0 => (
            "tool_call",
            json!({"tool_name": "Bash", "duration_ms": 12, "ok": true, "args_size_bytes": 10,
                   "output_size_bytes": 20, "tool_source": "builtin"}),
        ),
        1 => (
            "llm_usage",
            json!({"model": "claude-opus-4-6", "input_tokens": 10, "output_tokens": 5,
                   "cache_read_tokens": 1, "cache_write_tokens": 2, "cost_cents": 0.25,
                   "total_turns": 1}),
        ),
        2 => (
            "heartbeat",
            json!({"paperclip_uptime_s": 1, "agent_runtime_count": 1, "host_load_1m": 0.1,
                   "agent_versions": {AGENT: "2.1.0"}, "spool_depth": 0}),
        ),
        3 => (
            "error",
            json!({"kind": "hook_failed", "message_120c": "boom"}),
        ),
        4 => ("session.start", json!({"paperclip_run_id": "run_1"})),
        _ => (
            "session.end",
            json!({"status": "success", "exit_code": 0, "duration_ms": 5}),
        ),
    };
    json!({
        "event_id": uuid::Uuid::from_u128(id).to_string(),
        "ts": ts,
        "event_type": event_type,
        "agent_id": AGENT,
        "run_id": "run_1",
        "payload": payload,
    })
}

/// Marker strings standing for raw JSON text in a serialized element.
fn marker(i: usize) -> String {
    format!("\u{e000}RAW{i}\u{e000}")
}

/// Applies `mutations` to `v`, returning the element's JSON text.
fn mutate(mut v: Value, mutations: &[Mutation]) -> String {
    let mut raws: Vec<String> = Vec::new();
    let splice = |h: &Hostile, raws: &mut Vec<String>| -> Value {
        match h {
            Hostile::Json(v) => v.clone(),
            Hostile::Raw(text) => {
                raws.push((*text).to_owned());
                json!(marker(raws.len() - 1))
            }
        }
    };
    let mut dups: Vec<(String, bool)> = Vec::new();
    for m in mutations {
        match m {
            Mutation::Set(path, h) => {
                let value = splice(h, &mut raws);
                set(&mut v, path, Some(value));
            }
            Mutation::Remove(path) => set(&mut v, path, None),
            Mutation::DuplicateKey { key, value, first } => {
                let value = splice(value, &mut raws);
                dups.push((format!("{}:{value}", json!(key)), *first));
            }
        }
    }
    let mut text = v.to_string();
    for (pair, first) in dups {
        if !text.starts_with('{') {
            break;
        }
        text = if first || text == "{}" {
            let sep = if text == "{}" { "" } else { "," };
            format!("{{{pair}{sep}{}", &text[1..])
        } else {
            format!("{},{pair}}}", &text[..text.len() - 1])
        };
    }
    for (i, raw) in raws.iter().enumerate() {
        text = text.replace(&json!(marker(i)).to_string(), raw);
    }
    text
}

fn set(v: &mut Value, path: &str, value: Option<Value>) {
    let (obj, key) = match path.split_once('.') {
        Some((outer, inner)) => (v.get_mut(outer), inner),
        None => (Some(&mut *v), path),
    };
    if let Some(Value::Object(obj)) = obj {
        match value {
            Some(value) => {
                obj.insert(key.to_owned(), value);
            }
            None => {
                obj.remove(key);
            }
        }
    }
}

/// How many elements a structured body has, and whether it is one bare object.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Single,
    Array(usize),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => Just(Shape::Single),
        8 => (0_usize..6).prop_map(Shape::Array),
        1 => prop::sample::select(vec![MAX_BATCH_EVENTS - 1, MAX_BATCH_EVENTS, MAX_BATCH_EVENTS + 1])
            .prop_map(Shape::Array),
    ]
}

/// Whitespace padding after the JSON to bring the body to about the size limit.
fn padding() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        12 => Just(None),
        1 => prop::sample::select(vec![
            MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1, 3 * MAX_BODY_BYTES,
        ]).prop_map(Some),
    ]
}

fn structured_body() -> impl Strategy<Value = Vec<u8>> {
    (
        shape(),
        any::<u128>(),
        prop::collection::vec((0_usize..6, prop::collection::vec(mutation(), 0..4)), 1..6),
        padding(),
    )
        .prop_map(|(shape, id, elements, pad)| {
            let element = |i: usize| {
                let (kind, mutations) = &elements[i % elements.len()];
                mutate(template(*kind, id.wrapping_add(i as u128)), mutations)
            };
            let mut body = match shape {
                Shape::Single => element(0),
                Shape::Array(n) => {
                    let items: Vec<String> = (0..n).map(element).collect();
                    format!("[{}]", items.join(","))
                }
            };
            if let Some(target) = pad
                && body.len() < target
            {
                body.push_str(&" ".repeat(target - body.len()));
            }
            body.into_bytes()
        })
}

/// A byte-level edit of a body.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:\\0e-. \x00\xff".to_vec())
        )
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1_usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1_usize..200).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(body: &mut Vec<u8>, edit: &Edit) {
    if body.is_empty() {
        return;
    }
    let len = body.len();
    match *edit {
        Edit::Flip(at, b) => body[at % len] ^= b.max(1),
        Edit::Insert(at, b) => body.insert(at % (len + 1), b),
        Edit::Delete(at, n) => {
            let at = at % len;
            body.drain(at..(at + n).min(len));
        }
        Edit::Truncate(at) => body.truncate(at % len),
        Edit::Duplicate(at, n) => {
            let at = at % len;
            let piece = body[at..(at + n).min(len)].to_vec();
            body.splice(at..at, piece);
        }
    }
}

fn unstructured_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        prop::collection::vec(edit(), 1..8).prop_map(|edits| {
            let mut body = RECORDED.as_bytes().to_vec();
            for e in &edits {
                apply(&mut body, e);
            }
            body
        }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        content_type(),
        encoding(),
        prop_oneof![3 => structured_body(), 2 => unstructured_body()],
    )
        .prop_map(|(content_type, encoding, body)| Case {
            content_type,
            encoding,
            body,
        })
}

// ---------------------------------------------------------------------------------------
// Encoding and the model.

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The wire form of `body`: (Content-Encoding, bytes).
fn encode(encoding: &Encoding, body: &[u8]) -> (Option<&'static str>, Vec<u8>) {
    match encoding {
        Encoding::Plain => (None, body.to_vec()),
        Encoding::Identity => (Some("identity"), body.to_vec()),
        Encoding::Gzip { members } => {
            let size = body.len().div_ceil((*members).max(1)).max(1);
            let mut out: Vec<u8> = body.chunks(size).flat_map(gzip).collect();
            if body.is_empty() {
                out = gzip(body);
            }
            (Some("gzip"), out)
        }
        Encoding::TruncatedGzip { keep } => {
            let mut out = gzip(body);
            out.truncate(out.len() * usize::from(*keep) / 1000);
            (Some("gzip"), out)
        }
        Encoding::GzipThenGarbage(garbage) => {
            let mut out = gzip(body);
            out.extend_from_slice(garbage);
            (Some("gzip"), out)
        }
        Encoding::FakeGzip => (Some("gzip"), body.to_vec()),
        Encoding::Other(enc) => (Some(enc), body.to_vec()),
    }
}

/// What the model says the server must do with a request.
#[derive(Debug)]
enum Expect {
    /// 200 (or 422): one result per element; the elements' JSON texts.
    Elements { items: Vec<String>, single: bool },
    /// A 4xx (`why` says which rule).
    Refused(&'static str),
}

/// An independent reading of the contract (docs/api.md): headers, gzip (every member), the
/// 1 MiB cap, UTF-8, JSON, object or array of at most 500.
fn model(content_type: &str, encoding: Option<&str>, wire: &[u8]) -> Expect {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Expect::Refused("content type");
    }
    let gzip = match encoding.map(str::trim) {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(_) => return Expect::Refused("content encoding"),
    };
    if wire.len() > MAX_BODY_BYTES {
        return Expect::Refused("body too large");
    }
    let plain = if gzip {
        let mut out = Vec::new();
        let read = MultiGzDecoder::new(wire)
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut out);
        if read.is_err() {
            return Expect::Refused("invalid gzip");
        }
        if out.len() > MAX_BODY_BYTES {
            return Expect::Refused("inflated body too large");
        }
        out
    } else {
        wire.to_vec()
    };
    let Ok(text) = std::str::from_utf8(&plain) else {
        return Expect::Refused("not UTF-8");
    };
    let (items, single) = match serde_json::from_str::<Vec<&RawValue>>(text) {
        Ok(items) => (items, false),
        Err(_) => match serde_json::from_str::<&RawValue>(text) {
            Ok(one) if one.get().starts_with('{') => (vec![one], true),
            Ok(_) => return Expect::Refused("not an object or array"),
            Err(_) => return Expect::Refused("not JSON"),
        },
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Expect::Refused("too many events");
    }
    Expect::Elements {
        items: items.iter().map(|i| i.get().to_owned()).collect(),
        single,
    }
}

// ---------------------------------------------------------------------------------------
// The driver.

/// Statuses seen, for the summary (0: the connection was reset under an oversized body).
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    elements: u64,
    accepted: u64,
    rejected: u64,
}

/// Numbers customers and agents apart across cases.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(
        backend,
        Options {
            limits: limits(1_000_000, 1_000_000),
            ..Options::default()
        },
    )
    .await
}

#[expect(
    clippy::disallowed_methods,
    reason = "the test's own case budget comes from the environment"
)]
fn cases() -> u32 {
    std::env::var("BRAIN_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[expect(clippy::print_stderr, reason = "the summary of a fuzz run")]
fn drive(backend: Backend) {
    let rt = runtime();
    let Some(app) = rt.block_on(app(backend)) else {
        return;
    };
    let tally = std::sync::Mutex::new(Tally::default());
    let config = Config {
        cases: cases(),
        source_file: Some(file!()),
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let result =
        TestRunner::new(config).run(&case(), |case| rt.block_on(check(&app, &case, &tally)));
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "fuzz::ingest {backend:?}: {} requests in {:.1?}, statuses {:?}, {} elements ({} accepted, {} rejected)",
        tally.statuses.values().sum::<u64>(),
        started.elapsed(),
        tally.statuses,
        tally.elements,
        tally.accepted,
        tally.rejected,
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(async {
        assert_alive(&app).await;
        app.stop().await;
    });
}

/// After everything, the server still stores a plain event (a panicked writer would answer
/// 503 forever).
async fn assert_alive(app: &TestApp) {
    let key = app.mint("fz_alive").await;
    let (status, body) = app
        .ingest(
            &key,
            &crate::helpers::tool_call("fz_alive_agent", "Bash", true, 1),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
}

fn fail(what: String) -> TestCaseError {
    TestCaseError::fail(what)
}

/// Sends `case` as a fresh customer and checks the answer against [`model`].
async fn check(
    app: &TestApp,
    case: &Case,
    tally: &std::sync::Mutex<Tally>,
) -> Result<(), TestCaseError> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let customer = format!("fz{n}");
    let agent = format!("fz_agent_{n}");
    let body = replace(&case.body, AGENT.as_bytes(), agent.as_bytes());
    let (encoding, wire) = encode(&case.encoding, &body);
    let expect = model(case.content_type, encoding, &wire);
    let wire_len = wire.len();

    let key = app.mint(&customer).await;
    let events_before = app.store().count_events().await.unwrap();
    let mut req = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&key)
        .header("content-type", case.content_type)
        .body(wire);
    if let Some(enc) = encoding {
        req = req.header("content-encoding", enc);
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        // A body over the cap is answered 413 as soon as the cap is passed, and the connection
        // closed: the client, still sending, may see the reset instead of the answer.
        Err(_) if wire_len > MAX_BODY_BYTES => {
            *tally.lock().unwrap().statuses.entry(0).or_default() += 1;
            return Ok(());
        }
        Err(e) => {
            return Err(fail(format!(
                "no answer (a panicked handler drops the connection): {e:#}"
            )));
        }
    };
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| fail(format!("{status}: the answer was cut: {e:#}")))?;
    *tally
        .lock()
        .unwrap()
        .statuses
        .entry(status.as_u16())
        .or_default() += 1;
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("{status}: the answer is not JSON ({e}): {text}")))?;

    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        return Err(fail(format!("{status} (expected {expect:?}): {answer}")));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Allowed (backpressure), counted in the summary; nothing to check further.
        return Ok(());
    }
    match expect {
        Expect::Refused(why) => {
            if !status.is_client_error() || answer["error"]["code"].as_str().is_none() {
                return Err(fail(format!(
                    "{status} for a body the model refuses ({why}); expected a 4xx in the \
                     error envelope: {answer}"
                )));
            }
            Ok(())
        }
        Expect::Elements { items, single } => {
            let results = answer["results"].as_array().ok_or_else(|| {
                fail(format!(
                    "{status} without results for {} elements: {answer}",
                    items.len()
                ))
            })?;
            let statuses: Vec<&str> = results
                .iter()
                .map(|r| r["status"].as_str().unwrap_or("?"))
                .collect();
            let count = |s: &str| statuses.iter().filter(|x| **x == s).count();
            let (accepted, duplicate, rejected) =
                (count("accepted"), count("duplicate"), count("rejected"));
            let rejected_single = single && statuses == ["rejected"];
            let expected_status = if rejected_single {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            if status != expected_status
                || results.len() != items.len()
                || accepted + duplicate + rejected != results.len()
                || answer["accepted"] != json!(accepted)
                || answer["duplicate"] != json!(duplicate)
                || answer["rejected"] != json!(rejected)
            {
                return Err(fail(format!(
                    "{status} (expected {expected_status}) for {} elements: {answer}",
                    items.len()
                )));
            }
            {
                let mut t = tally.lock().unwrap();
                t.elements += items.len() as u64;
                t.accepted += accepted as u64;
                t.rejected += rejected as u64;
            }
            let events_after = app.store().count_events().await.unwrap();
            if events_after - events_before != accepted as i64 {
                return Err(fail(format!(
                    "{accepted} accepted but {} events stored: {answer}",
                    events_after - events_before
                )));
            }
            check_dead_letters(app, &customer, &items, results).await
        }
    }
}

/// Every rejected element is dead-lettered under its code: its raw JSON, or a prefix of it
/// when the server caps dead letters; one row per distinct (code, element).
async fn check_dead_letters(
    app: &TestApp,
    customer: &str,
    items: &[String],
    results: &[Value],
) -> Result<(), TestCaseError> {
    let rejected: Vec<(&str, &str)> = results
        .iter()
        .zip(items)
        .filter(|(r, _)| r["status"] == "rejected")
        .map(|(r, item)| (r["error"]["code"].as_str().unwrap_or("?"), item.as_str()))
        .collect();
    if rejected.is_empty() {
        return Ok(());
    }
    let dead = app
        .store()
        .dead_letters(customer, MAX_BATCH_EVENTS as i64 * 2)
        .await
        .unwrap();
    let distinct: HashSet<(&str, &str)> = rejected.iter().copied().collect();
    if dead.len() != distinct.len() {
        return Err(fail(format!(
            "{} distinct rejected elements but {} dead letters",
            distinct.len(),
            dead.len()
        )));
    }
    for (code, item) in distinct {
        let found = dead
            .iter()
            .any(|d| d.reason == code && !d.raw.is_empty() && item.starts_with(&d.raw));
        if !found {
            return Err(fail(format!(
                "rejected element ({code}) not dead-lettered: {}",
                item.chars().take(300).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The corpus: hand-picked nasty bodies, checked like the random ones.

fn corpus_cases() -> Vec<(&'static str, Case)> {
    let plain = |body: Vec<u8>| Case {
        content_type: "application/json",
        encoding: Encoding::Plain,
        body,
    };
    let gz = |body: Vec<u8>, encoding: Encoding| Case {
        content_type: "application/json",
        encoding,
        body,
    };
    let one = |mutations: Vec<Mutation>| mutate(template(0, 7), &mutations).into_bytes();
    let set = |f: &str, h: Hostile| Mutation::Set(f.to_owned(), h);
    let valid = |n: usize, kind: usize| -> Vec<u8> {
        let items: Vec<String> = (0..n)
            .map(|i| template(kind + i, 1_000 + i as u128).to_string())
            .collect();
        format!("[{}]", items.join(",")).into_bytes()
    };
    let padded = |len: usize| {
        let mut b = valid(1, 0);
        b.resize(len, b' ');
        b
    };
    let mut pad_payload = template(0, 9);
    pad_payload["payload"]["pad"] = json!("");
    let base = serde_json::to_string(&pad_payload["payload"])
        .unwrap()
        .len();
    let payload_of = |len: usize| {
        let mut v = pad_payload.clone();
        v["payload"]["pad"] = json!("p".repeat(len - base));
        v.to_string().into_bytes()
    };
    let bomb = {
        let mut b = b"[".to_vec();
        b.resize(4 * MAX_BODY_BYTES, b' ');
        b.push(b']');
        b
    };
    vec![
        ("empty body", plain(Vec::new())),
        ("whitespace", plain(b" \n\t ".to_vec())),
        ("null", plain(b"null".to_vec())),
        ("empty array", plain(b"[]".to_vec())),
        ("array of scalars", plain(b"[1,\"a\",null,true,[],{}]".to_vec())),
        ("BOM", plain([&b"\xef\xbb\xbf"[..], &valid(1, 0)].concat())),
        ("recorded body", plain(RECORDED.as_bytes().to_vec())),
        ("NUL in event_id", plain(one(vec![set("event_id", Hostile::Raw("\"a\\u0000\""))]))),
        ("NUL in ts", plain(one(vec![set("ts", Hostile::Raw("\"\\u0000\""))]))),
        ("NUL in event_type", plain(one(vec![set("event_type", Hostile::Raw("\"tool_call\\u0000\""))]))),
        ("NUL in a payload key", plain(b"{\"event_id\":\"0b6c5a8e-1111-4222-8333-444455556666\",\"ts\":\"2026-11-20T22:52:52.636Z\",\"event_type\":\"tool_call\",\"agent_id\":\"fuzz_agent\",\"payload\":{\"tool_name\":\"Bash\",\"ok\":true,\"a\\u0000\":1}}".to_vec())),
        ("lone surrogate", plain(one(vec![set("payload.tool_name", Hostile::Raw("\"\\ud800\""))]))),
        ("1e999", plain(one(vec![set("payload.duration_ms", Hostile::Raw("1e999"))]))),
        ("cost 1e308", plain(mutate(template(1, 8), &[set("payload.cost_cents", Hostile::Json(json!(1e308)))]).into_bytes())),
        ("u64::MAX tokens", plain(mutate(template(1, 8), &[set("payload.input_tokens", Hostile::Json(json!(u64::MAX)))]).into_bytes())),
        ("huge integer literal", plain(one(vec![set("payload.duration_ms", Hostile::Raw("123456789012345678901234567890"))]))),
        ("duplicate event_id key", plain(one(vec![Mutation::DuplicateKey { key: "event_id", value: Hostile::Json(json!("x")), first: false }]))),
        ("duplicate payload key", plain(one(vec![Mutation::DuplicateKey { key: "payload", value: Hostile::Json(json!(7)), first: true }]))),
        ("nesting 126", plain(one(vec![set("payload.extra", Hostile::Json(nested(126)))]))),
        ("nesting 127", plain(one(vec![set("payload.extra", Hostile::Json(nested(127)))]))),
        ("nesting 200", plain(one(vec![set("payload.extra", Hostile::Json(nested(200)))]))),
        ("payload 16384", plain(payload_of(MAX_PAYLOAD_BYTES))),
        ("payload 16385", plain(payload_of(MAX_PAYLOAD_BYTES + 1))),
        ("500 events", plain(valid(MAX_BATCH_EVENTS, 0))),
        ("501 events", plain(valid(MAX_BATCH_EVENTS + 1, 0))),
        ("500 copies of one event", plain(format!("[{}]", vec![template(0, 77).to_string(); MAX_BATCH_EVENTS].join(",")).into_bytes())),
        ("body of 1 MiB", plain(padded(MAX_BODY_BYTES))),
        ("body of 1 MiB + 1", plain(padded(MAX_BODY_BYTES + 1))),
        ("gzip of 1 MiB", gz(padded(MAX_BODY_BYTES), Encoding::Gzip { members: 1 })),
        ("gzip of 1 MiB + 1", gz(padded(MAX_BODY_BYTES + 1), Encoding::Gzip { members: 1 })),
        ("gzip bomb", gz(bomb, Encoding::Gzip { members: 1 })),
        ("two gzip members", gz(valid(2, 0), Encoding::Gzip { members: 2 })),
        ("three gzip members", gz(valid(6, 0), Encoding::Gzip { members: 3 })),
        ("gzip of nothing", gz(Vec::new(), Encoding::Gzip { members: 1 })),
        ("truncated gzip", gz(valid(3, 0), Encoding::TruncatedGzip { keep: 900 })),
        ("gzip header only", gz(valid(3, 0), Encoding::TruncatedGzip { keep: 1 })),
        ("gzip then garbage", gz(valid(1, 0), Encoding::GzipThenGarbage(b"\x1f\x8bjunk".to_vec()))),
        ("fake gzip", gz(valid(1, 0), Encoding::FakeGzip)),
        ("brotli claimed", gz(valid(1, 0), Encoding::Other("br"))),
        ("text/plain", Case { content_type: "text/plain", encoding: Encoding::Plain, body: valid(1, 0) }),
        ("no content type", Case { content_type: "", encoding: Encoding::Plain, body: valid(1, 0) }),
        ("invalid UTF-8", plain(b"[{\"event_id\":\"\xff\xfe\"}]".to_vec())),
        ("ts year 0", plain(one(vec![set("ts", Hostile::Json(json!("0000-01-01T00:00:00Z")))]))),
        ("ts year 9999", plain(one(vec![set("ts", Hostile::Json(json!("9999-12-31T23:59:59Z")))]))),
        ("ts of 16 KiB", plain(one(vec![set("ts", Hostile::Json(json!("p".repeat(16_000))))]))),
        ("agent id of 129", plain(one(vec![set("agent_id", Hostile::Json(json!("a".repeat(129))))]))),
        ("4096 keys", plain(one(vec![set("payload", Hostile::Json(Value::Object((0..4096).map(|i| (format!("k{i}"), json!(i))).collect())))]))),
    ]
}

fn run_corpus(backend: Backend) {
    let rt = runtime();
    let Some(app) = rt.block_on(app(backend)) else {
        return;
    };
    let tally = std::sync::Mutex::new(Tally::default());
    rt.block_on(async {
        for (name, case) in corpus_cases() {
            if let Err(e) = check(&app, &case, &tally).await {
                panic!("{name}: {e}");
            }
        }
        assert_alive(&app).await;
        app.stop().await;
    });
}
