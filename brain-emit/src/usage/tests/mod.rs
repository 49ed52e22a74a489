//! Tests of the ledger, on the real Claude Code fixtures (checked against ccusage's golden
//! figures) and on small synthetic transcripts.
//!
//! - [`golden`]: whole sessions from `fixtures/claude-code/transcripts` against
//!   `ccusage session --offline`.
//! - [`incremental`]: transcripts read as they grow, cut anywhere, add up to one read.
//! - [`synthetic`]: the counting rule, malformed input, errors and the stored format on
//!   hand-written lines.

mod golden;
mod incremental;
mod synthetic;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The transcripts every test reads; all six sessions of the golden file are there.
const TRANSCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/claude-code/transcripts"
);
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/claude-code/golden/ccusage-20.0.24-session-offline.json"
);

/// The session with three models (main transcript + 2 subagents).
const MULTI_MODEL: &str = "ae4a77f8-aedd-4bc1-888f-c94edc91af04";

/// The biggest session: 1h cache writes and responses whose early copies undercount output.
const BIG: &str = "258c7280-ae70-4798-800f-63464d01a85d";

fn main_transcript(session: &str) -> PathBuf {
    Path::new(TRANSCRIPTS).join(format!("{session}.jsonl"))
}

/// The golden file's session entries.
fn golden_sessions() -> Vec<Value> {
    let text = std::fs::read_to_string(GOLDEN).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    golden["session"].as_array().unwrap().clone()
}

/// The golden session entry named `session`.
fn golden(session: &str) -> Value {
    golden_sessions()
        .into_iter()
        .find(|s| s["period"] == session)
        .unwrap_or_else(|| panic!("{session} not in golden"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn assistant(id: &str, output: u64, sidechain: bool, model: &str) -> String {
    serde_json::json!({
        "type": "assistant",
        "isSidechain": sidechain,
        "requestId": format!("req_{id}"),
        "message": {
            "id": format!("msg_{id}"),
            "model": model,
            "content": [{"type": "text", "text": "private words that must not matter"}],
            "usage": {
                "input_tokens": 10,
                "output_tokens": output,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 0}
            }
        }
    })
    .to_string()
}
