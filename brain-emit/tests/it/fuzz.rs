//! Fuzzing of the hook stdin parser (issue 6, "Also build"): hostile stdin for the real
//! `brain-emit tool-call`, `tool-start` and `llm-usage`, each run as a process with a
//! throwaway spool and no server configured.
//!
//! cargo-fuzz needs a nightly toolchain, which the build machines do not have, so this is a
//! property-based driver ([`proptest`]) with a case budget:
//!
//! ```text
//! cargo test -p brain-emit --test it fuzz                         # CI: 200 processes, ~7 s
//! BRAIN_FUZZ_CASES=30000 cargo test -p brain-emit --test it fuzz::hooks -- --nocapture
//! ```
//!
//! `BRAIN_FUZZ_CASES` is the number of random cases (default [`DEFAULT_CASES`]); the second
//! command runs for minutes (about 5 on two cores) and prints how many ran.
//!
//! Stdin is random bytes, a byte-level mutation of a real hook payload
//! (`fixtures/claude-code/hook-payloads/`), or a real payload with mutated fields (wrong types,
//! huge strings, deep nesting, NULs, other hook event names) whose transcript paths point at
//! odd files: missing, a directory, empty, a small garbage file, one huge line with and without
//! its newline, usage lines with counters at `u64::MAX`, `/dev/null`, an over-long path, a NUL
//! in the path, a real transcript. (Never `/dev/zero` or a FIFO: a hook reads its transcript to
//! the end.)
//!
//! Every run must keep the hook contract: exit code 0, nothing on stdout, and no panic (none on
//! stderr, none recorded in the hook log). Failures are shrunk and their seeds kept in
//! `tests/proptest-regressions/fuzz.txt` (replayed first on every run); [`corpus`] runs
//! hand-picked nasty inputs as a plain test.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{Sandbox, fixture, payloads};

/// Random cases when `BRAIN_FUZZ_CASES` is unset (each one a process): small enough for CI.
const DEFAULT_CASES: u32 = 200;

/// The stdin-reading hook subcommands.
const COMMANDS: [&str; 3] = ["tool-call", "tool-start", "llm-usage"];

/// The session whose subagent directory [`Odd::prepare`] fills with odd files.
const SESSION: &str = "fuzz-session";

/// Odd transcript files, made once per sandbox.
#[derive(Debug)]
struct Odd {
    paths: Vec<PathBuf>,
}

impl Odd {
    fn prepare(dir: &Path) -> Odd {
        let t = dir.join("transcripts");
        std::fs::create_dir_all(t.join(SESSION).join("subagents")).unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = t.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let garbage: Vec<u8> = (0..4096_u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut huge_line = vec![b'x'; 8 << 20];
        let huge_no_newline = write("huge-no-newline.jsonl", &huge_line);
        huge_line.push(b'\n');
        // Counters at u64::MAX, and a 5m/1h cache-write split whose sum overflows u64 (see
        // `cache_write_split_overflow`).
        let max = u64::MAX;
        let half = 1_u64 << 63;
        let split = json!({"type": "assistant", "requestId": "r3", "message": {
            "id": "m3", "model": "claude-opus-4-6", "usage": {"cache_creation": {
                "ephemeral_5m_input_tokens": half, "ephemeral_1h_input_tokens": half}}}});
        let overflow = format!(
            "{}\n{}\n",
            json!({"type": "assistant", "requestId": "r1", "timestamp": "2026-01-01T00:00:00Z",
                   "message": {"id": "m1", "model": "claude-opus-4-6", "usage": {
                       "input_tokens": max, "output_tokens": max,
                       "cache_creation_input_tokens": max, "cache_read_input_tokens": max}}}),
            json!({"type": "assistant", "requestId": "r2",
                   "message": {"id": "m2", "model": "claude-sonnet-4-5", "usage": {
                       "input_tokens": max, "output_tokens": max}}}),
        );
        let wrong_shapes = concat!(
            "{\"type\":\"assistant\",\"message\":{\"id\":7,\"usage\":{\"input_tokens\":-1}}}\n",
            "{\"type\":\"assistant\",\"message\":\"text\"}\n",
            "{\"type\":\"assistant\",\"message\":{\"id\":\"m\",\"model\":\"\\u0000\",\"usage\":{\"input_tokens\":1e999}}}\n",
            "[1,2,3]\n\n\n   \n\u{feff}{}\n",
        );
        // Subagent transcripts of SESSION: garbage, a directory named like a transcript, and
        // usage at the counters' limits.
        let sub = t.join(SESSION).join("subagents");
        std::fs::write(sub.join("agent-garbage.jsonl"), &garbage).unwrap();
        std::fs::create_dir_all(sub.join("agent-dir.jsonl")).unwrap();
        std::fs::write(sub.join("agent-overflow.jsonl"), &overflow).unwrap();
        let main = write(&format!("{SESSION}.jsonl"), wrong_shapes.as_bytes());
        let paths = vec![
            t.join("missing.jsonl"),
            t.clone(),
            write("empty.jsonl", b""),
            write("garbage.jsonl", &garbage),
            write("huge-line.jsonl", &huge_line),
            huge_no_newline,
            write("overflow.jsonl", overflow.as_bytes()),
            main,
            PathBuf::from("/dev/null"),
            PathBuf::from("relative/missing.jsonl"),
            t.join("x".repeat(5000)),
            fixture("transcripts/short.jsonl"),
            fixture("transcripts/subagent.jsonl"),
            write("split-overflow.jsonl", format!("{split}\n").as_bytes()),
        ];
        Odd { paths }
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

mod hooks {
    #[test]
    fn random_stdin_keeps_the_hook_contract() {
        super::drive();
    }
}

/// Found by this driver: a transcript whose 5-minute and 1-hour cache writes of one model add
/// up to more than `u64::MAX` made `llm-usage` panic (the hook still exited 0, but it recorded
/// `panicked: attempt to add with overflow`). The sum now saturates, and the absurd total is
/// refused by the payload's upper bound instead.
#[test]
fn cache_write_split_overflow() {
    let sb = Sandbox::new();
    let transcript = sb.dir.path().join("split.jsonl");
    let half = 1_u64 << 63;
    let line = json!({"type": "assistant", "requestId": "r", "message": {
        "id": "m", "model": "claude-opus-4-6", "usage": {"cache_creation": {
            "ephemeral_5m_input_tokens": half, "ephemeral_1h_input_tokens": half}}}});
    std::fs::write(&transcript, format!("{line}\n")).unwrap();
    let stdin = json!({"session_id": "s", "hook_event_name": "Stop",
                       "transcript_path": transcript.to_string_lossy()});
    let mut log = LogTail::default();
    let result = run_hook(&sb, &mut log, "llm-usage", stdin.to_string().as_bytes());
    assert_eq!(result, Ok(()));
}

#[test]
fn corpus() {
    let (sb, odd) = sandbox();
    let base = crate::helpers::payloads("post_tool_use.json").remove(0);
    let stop = crate::helpers::payloads("stop.json").remove(0);
    let with = |mut v: Value, k: &str, x: Value| {
        v[k] = x;
        serde_json::to_vec(&v).unwrap()
    };
    let path = |i: usize| json!(odd.paths[i].to_string_lossy());
    let mut inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("NUL byte", b"\0".to_vec()),
        ("bare string", b"\"tool_name\"".to_vec()),
        ("array", b"[{\"tool_name\":\"Bash\"}]".to_vec()),
        ("nesting 200", [b"[".repeat(200), b"]".repeat(200)].concat()),
        (
            "lone surrogate",
            b"{\"tool_name\":\"\\ud800\",\"tool_use_id\":\"\\udfff\"}".to_vec(),
        ),
        (
            "1e999 duration",
            b"{\"tool_name\":\"Bash\",\"duration_ms\":1e999}".to_vec(),
        ),
        (
            "duplicate keys",
            b"{\"tool_name\":\"Bash\",\"tool_name\":7}".to_vec(),
        ),
        ("invalid UTF-8", b"{\"tool_name\":\"\xff\xfe\"}".to_vec()),
        (
            "NUL in tool_use_id",
            with(base.clone(), "tool_use_id", json!("a\0b")),
        ),
        (
            "huge tool_name",
            with(base.clone(), "tool_name", json!("x".repeat(4 << 20))),
        ),
        (
            "huge tool_use_id",
            with(base.clone(), "tool_use_id", json!("x".repeat(1 << 20))),
        ),
        (
            "negative duration",
            with(base.clone(), "duration_ms", json!(-5)),
        ),
        (
            "u64::MAX duration",
            with(base.clone(), "duration_ms", json!(u64::MAX)),
        ),
        (
            "1e308 duration",
            with(base.clone(), "duration_ms", json!(1e308)),
        ),
        (
            "deep tool_response",
            with(base.clone(), "tool_response", nested(126)),
        ),
        (
            "tool_input of 8 MiB",
            with(base.clone(), "tool_input", json!("i".repeat(8 << 20))),
        ),
        (
            "transcript a number",
            with(stop.clone(), "transcript_path", json!(7)),
        ),
        (
            "session_id a number",
            with(stop.clone(), "session_id", json!(7)),
        ),
    ];
    for i in 0..odd.paths.len() {
        for event in ["Stop", "SubagentStop", "SessionEnd"] {
            let mut v = stop.clone();
            v["hook_event_name"] = json!(event);
            v["session_id"] = json!(SESSION);
            v["transcript_path"] = path(i);
            v["agent_transcript_path"] = path(i);
            inputs.push(("transcript", serde_json::to_vec(&v).unwrap()));
        }
    }
    let mut log = LogTail::default();
    for (name, stdin) in &inputs {
        for command in COMMANDS {
            if let Err(e) = run_hook(&sb, &mut log, command, stdin) {
                panic!("{name} ({command}): {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// A hook's stdin: bytes as they are, or a payload with fields to set before serializing.
#[derive(Debug, Clone)]
enum Stdin {
    Bytes(Vec<u8>),
    Payload {
        base: Value,
        sets: Vec<(&'static str, Field)>,
    },
}

/// A value for one field of a payload.
#[derive(Debug, Clone)]
enum Field {
    Json(Value),
    /// One of [`Odd`]'s paths.
    Transcript(usize),
    /// A string of this many bytes.
    Huge(usize),
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e308),
            json!(-1e308),
            json!(0.5),
            json!(""),
            json!(" "),
            json!("\0"),
            json!("a\0b"),
            json!(".."),
            json!("/"),
            json!("Error: boom"),
            json!("<tool_use_error>x</tool_use_error>"),
            json!("mcp__"),
            json!("mcp____"),
            json!("mcp__plugin___x"),
            json!("é😀\u{202e}"),
            json!([]),
            json!({}),
            json!({"is_error": true}),
            json!({"error": {"x": 1}}),
            json!([{"is_error": true}, 1, null]),
        ]),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,64}".prop_map(|s| json!(s)),
        (1_usize..140).prop_map(nested),
        (1_usize..500).prop_map(|n| json!((0..n).map(|i| json!({"k": i})).collect::<Vec<_>>())),
    ]
}

fn field() -> impl Strategy<Value = (&'static str, Field)> {
    let name = prop::sample::select(vec![
        "session_id",
        "hook_event_name",
        "tool_name",
        "tool_use_id",
        "tool_input",
        "tool_response",
        "duration_ms",
        "transcript_path",
        "agent_transcript_path",
        "cwd",
    ]);
    prop_oneof![
        6 => (name.clone(), hostile().prop_map(Field::Json)),
        3 => (
            prop::sample::select(vec!["transcript_path", "agent_transcript_path"]),
            (0_usize..14).prop_map(Field::Transcript)
        ),
        2 => (
            Just("hook_event_name"),
            prop::sample::select(vec![
                "Stop", "SubagentStop", "SessionEnd", "PostToolUse", "PostToolUseFailure",
                "PreToolUse", "stop", "",
            ])
            .prop_map(|s| Field::Json(json!(s)))
        ),
        2 => (
            Just("session_id"),
            prop::sample::select(vec![SESSION, "", "..", "/", "a/b", "\0", "s\u{feff}"])
                .prop_map(|s| Field::Json(json!(s)))
        ),
        1 => (name, prop::sample::select(vec![256_usize, 257, 64 << 10, 2 << 20]).prop_map(Field::Huge)),
    ]
}

/// A byte-level edit.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Truncate(usize),
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
    }
}

/// Every real hook payload of the fixtures.
fn real_payloads() -> Vec<Value> {
    [
        "post_tool_use.json",
        "pre_tool_use.json",
        "session_end.json",
        "stop.json",
        "subagent_stop.json",
    ]
    .into_iter()
    .flat_map(payloads)
    .collect()
}

fn stdin() -> impl Strategy<Value = Stdin> {
    let real = real_payloads();
    let texts: Vec<Vec<u8>> = real
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..1024).prop_map(Stdin::Bytes),
        3 => (prop::sample::select(texts), prop::collection::vec(edit(), 1..6)).prop_map(
            |(mut text, edits)| {
                for e in &edits {
                    apply(&mut text, e);
                }
                Stdin::Bytes(text)
            }
        ),
        6 => (prop::sample::select(real), prop::collection::vec(field(), 0..5))
            .prop_map(|(base, sets)| Stdin::Payload { base, sets }),
    ]
}

// ---------------------------------------------------------------------------------------
// The driver.

fn sandbox() -> (Sandbox, Odd) {
    let sb = Sandbox::new();
    let odd = Odd::prepare(sb.dir.path());
    (sb, odd)
}

fn bytes_of(stdin: &Stdin, odd: &Odd) -> Vec<u8> {
    match stdin {
        Stdin::Bytes(b) => b.clone(),
        Stdin::Payload { base, sets } => {
            let mut v = base.clone();
            for (name, field) in sets {
                let value = match field {
                    Field::Json(v) => v.clone(),
                    Field::Transcript(i) => json!(odd.paths[i % odd.paths.len()].to_string_lossy()),
                    Field::Huge(n) => json!("h".repeat(*n)),
                };
                if let Value::Object(obj) = &mut v {
                    obj.insert((*name).to_owned(), value);
                }
            }
            serde_json::to_vec(&v).unwrap()
        }
    }
}

/// Where the previous check stopped reading the hook log.
#[derive(Debug, Default)]
struct LogTail {
    offset: u64,
}

impl LogTail {
    /// What the hook log gained since the last call.
    fn new_text(&mut self, sb: &Sandbox) -> String {
        let path = sb.spool.with_file_name("brain-emit.log");
        let Ok(mut file) = std::fs::File::open(&path) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0; // rotated or replaced
        }
        let mut buf = Vec::new();
        let _ = file.seek(SeekFrom::Start(self.offset));
        let _ = file.read_to_end(&mut buf);
        self.offset += buf.len() as u64;
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Runs one hook with `stdin` and checks the contract.
fn run_hook(sb: &Sandbox, log: &mut LogTail, command: &str, stdin: &[u8]) -> Result<(), String> {
    let out = sb.run(&[command], stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(0) {
        return Err(format!("exit {:?}; stderr: {stderr}", out.status));
    }
    if !out.stdout.is_empty() {
        return Err(format!(
            "printed on stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    if stderr.contains("panicked") {
        return Err(format!("panicked; stderr: {stderr}"));
    }
    let logged = log.new_text(sb);
    if logged.contains("panicked") {
        return Err(format!("panicked; hook log: {logged}"));
    }
    Ok(())
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
fn drive() {
    let (sb, odd) = sandbox();
    let log = std::sync::Mutex::new(LogTail::default());
    let runs = std::sync::atomic::AtomicU64::new(0);
    let config = Config {
        cases: cases(),
        source_file: Some(file!()),
        max_shrink_iters: 500,
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let strategy = (prop::sample::select(COMMANDS.to_vec()), stdin());
    let result = TestRunner::new(config).run(&strategy, |(command, stdin)| {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = bytes_of(&stdin, &odd);
        run_hook(&sb, &mut log.lock().unwrap(), command, &bytes).map_err(TestCaseError::fail)
    });
    eprintln!(
        "fuzz::hooks: {} hook runs in {:.1?}",
        runs.into_inner(),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
