//! The counting rule, malformed input, errors and the stored format, on hand-written lines.

use serde_json::Value;

use super::{assistant, main_transcript, write_lines};
use crate::usage::*;

#[test]
fn largest_copy_wins_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let model = "claude-sonnet-4-5-20250929";
    write_lines(
        &path,
        &[
            assistant("a", 50, false, model),
            assistant("a", 1, false, model),
            assistant("b", 1, false, model),
            assistant("b", 7, false, model),
        ],
    );
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_transcript(&path).unwrap();
    assert_eq!(stats.lines, 4);
    let report = ledger.take_unreported();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].output_tokens, 57);
    assert_eq!(report[0].turns, 2);
    assert_eq!(report[0].input_tokens, 20);
}

#[test]
fn subagent_copies_are_deduped_across_files_and_main_chain_wins_ties() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("sess.jsonl");
    let agent_dir = dir.path().join("sess").join("subagents");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let agent = agent_dir.join("agent-a1.jsonl");
    let model = "claude-opus-4-6";
    // The subagent file repeats response x (same size) and holds a bigger copy of y.
    write_lines(
        &agent,
        &[
            assistant("x", 9, true, model),
            assistant("y", 30, true, model),
        ],
    );
    write_lines(
        &main,
        &[
            assistant("x", 9, false, model),
            assistant("y", 3, false, model),
        ],
    );
    assert_eq!(subagent_transcripts(&main).unwrap(), vec![agent.clone()]);

    // Subagent first: the main-chain copy of x replaces the sidechain one on the tie.
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&agent).unwrap();
    let first = ledger.take_unreported();
    assert_eq!((first[0].output_tokens, first[0].turns), (39, 2));
    ledger.read_transcript(&main).unwrap();
    assert!(!ledger.responses["msg_x req_x"].sidechain);
    assert!(
        ledger.responses["msg_y req_y"].sidechain,
        "bigger copy stays"
    );
    assert!(
        ledger.take_unreported().is_empty(),
        "the main file adds nothing"
    );

    // Main first, via read_session: same totals.
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_session(&main).unwrap();
    assert_eq!(stats.lines, 4);
    let report = ledger.take_unreported();
    assert_eq!((report[0].output_tokens, report[0].turns), (39, 2));
    assert!(!ledger.responses["msg_x req_x"].sidechain);
}

#[test]
fn malformed_lines_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let real = std::fs::read_to_string(main_transcript("short")).unwrap();
    let mut lines: Vec<String> = real.lines().map(str::to_owned).collect();
    let cut_line = lines[3][..lines[3].len() / 2].to_owned();
    lines.insert(2, "garbage {".to_owned());
    lines.insert(5, cut_line);
    lines.insert(6, String::new());
    lines.insert(
        7,
        r#"{"type":"assistant","message":{"id":"m","model":"<synthetic>","usage":{"input_tokens":0,"output_tokens":0}}}"#
            .to_owned(),
    );
    write_lines(&path, &lines);
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_transcript(&path).unwrap();
    assert_eq!(stats.malformed, 2);
    assert_eq!(stats.lines, 15 + 3, "blank lines are not counted");
    let report = ledger.take_unreported();
    assert_eq!(report.len(), 1, "synthetic model skipped");
    assert!((report[0].cost_cents - 14.444_75).abs() < 1e-12);
}

#[test]
fn unknown_models_are_counted_unpriced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.jsonl");
    write_lines(
        &path,
        &[
            assistant("a", 5, false, "claude-future-9"),
            assistant("b", 5, false, "claude-opus-4-5-20251101"),
        ],
    );
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&path).unwrap();
    let report = ledger.take_unreported();
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].model, "claude-future-9");
    assert!(!report[0].priced);
    assert_eq!(report[0].cost_cents, 0.0);
    assert_eq!((report[0].output_tokens, report[0].turns), (5, 1));
    assert!(report[1].priced);
    assert!(report[1].cost_cents > 0.0);
}

#[test]
fn missing_transcript_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = SessionLedger::new();
    let err = ledger
        .read_transcript(&dir.path().join("nope.jsonl"))
        .unwrap_err();
    assert!(matches!(err, UsageError::Read { .. }));
    assert!(err.to_string().contains("nope.jsonl"));
    assert_eq!(ledger, SessionLedger::new());
    // A session without subagents directory is fine.
    assert!(
        subagent_transcripts(&dir.path().join("nope.jsonl"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn stored_ledgers_are_versioned() {
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main_transcript("short")).unwrap();
    let json = serde_json::to_string(&ledger).unwrap();
    assert!(json.starts_with(r#"{"v":1,"#), "{json}");
    // A ledger stored before the version field existed reads as version 1.
    let mut legacy: Value = serde_json::from_str(&json).unwrap();
    legacy.as_object_mut().unwrap().remove("v");
    assert_eq!(
        SessionLedger::from_json(&legacy.to_string()).unwrap(),
        ledger
    );
    let newer = json.replacen(r#""v":1"#, r#""v":2"#, 1);
    assert!(matches!(
        SessionLedger::from_json(&newer),
        Err(LedgerError::UnknownFormat { found: 2 })
    ));
    assert!(matches!(
        SessionLedger::from_json("{\"offsets\": 3}"),
        Err(LedgerError::Parse(_))
    ));
}

#[test]
fn a_ledger_started_after_a_recovery_ignores_older_responses() {
    let path = main_transcript("short");
    let mut all = SessionLedger::new();
    all.read_transcript(&path).unwrap();
    assert!(!all.totals().is_empty());
    // A cut-off before every line counts everything; after every line, nothing.
    let mut early = SessionLedger::ignoring_before(0);
    early.read_transcript(&path).unwrap();
    assert_eq!(early.totals(), all.totals());
    let mut late = SessionLedger::ignoring_before(chrono::Utc::now().timestamp_millis());
    late.read_transcript(&path).unwrap();
    assert!(late.take_unreported().is_empty());
    // The cut-off survives the round trip through the spool.
    let restored = SessionLedger::from_json(&serde_json::to_string(&late).unwrap()).unwrap();
    assert_eq!(restored, late);
}
