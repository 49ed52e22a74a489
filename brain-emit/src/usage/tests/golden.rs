//! Whole fixture sessions against ccusage's golden figures.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{BIG, MULTI_MODEL, TRANSCRIPTS, golden, golden_sessions, main_transcript, u};
use crate::usage::*;

/// Reads one whole session and compares every model's figures with ccusage's.
fn assert_session_matches_golden(session: &str) {
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_session(&main_transcript(session)).unwrap();
    assert_eq!(stats.malformed, 0, "{session}");
    assert!(stats.lines > 0, "{session}");
    let ours: BTreeMap<String, ModelUsage> = ledger
        .totals()
        .into_iter()
        .map(|m| (m.model.clone(), m))
        .collect();

    let golden = golden(session);
    let breakdowns = golden["modelBreakdowns"].as_array().unwrap();
    assert_eq!(ours.len(), breakdowns.len(), "{session}: models {ours:?}");
    let mut total_usd = 0.0;
    for expected in breakdowns {
        let name = expected["modelName"].as_str().unwrap();
        let got = ours
            .get(name)
            .unwrap_or_else(|| panic!("{session}: {name} missing"));
        assert_eq!(
            got.input_tokens,
            u(&expected["inputTokens"]),
            "{session} {name}"
        );
        assert_eq!(
            got.output_tokens,
            u(&expected["outputTokens"]),
            "{session} {name}"
        );
        assert_eq!(
            got.cache_write_tokens(),
            u(&expected["cacheCreationTokens"]),
            "{session} {name}"
        );
        assert_eq!(
            got.cache_read_tokens,
            u(&expected["cacheReadTokens"]),
            "{session} {name}"
        );
        assert!(got.priced, "{session} {name}");
        let want_usd = expected["cost"].as_f64().unwrap();
        let got_usd = got.cost_cents / 100.0;
        assert!(
            (got_usd - want_usd).abs() <= want_usd * 1e-4,
            "{session} {name}: {got_usd} vs {want_usd}"
        );
        // In fact the match is exact up to ccusage's float summation noise.
        assert!(
            (got_usd - want_usd).abs() < 1e-6,
            "{session} {name}: {got_usd} vs {want_usd}"
        );
        total_usd += got_usd;
    }
    let want_total = golden["totalCost"].as_f64().unwrap();
    assert!(
        (total_usd - want_total).abs() <= want_total * 1e-4,
        "{session}: {total_usd} vs {want_total}"
    );
    let turns: u64 = ours.values().map(|m| m.turns).sum();
    assert!(turns > 0);
}

#[test]
fn every_fixture_session_matches_ccusage_golden() {
    let sessions: Vec<String> = golden_sessions()
        .iter()
        .map(|s| s["period"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sessions.len(), 6);
    // The golden covers exactly the main transcripts the fixtures carry.
    let mut on_disk: Vec<String> = std::fs::read_dir(TRANSCRIPTS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut named = sessions.clone();
    named.sort();
    assert_eq!(on_disk, named);
    for session in &sessions {
        assert_session_matches_golden(session);
    }
}

#[test]
fn per_model_breakdown_of_the_multi_model_session() {
    // ae4a77f8 (main + 2 subagents): the figures ccusage printed, written out.
    let mut ledger = SessionLedger::new();
    ledger.read_session(&main_transcript(MULTI_MODEL)).unwrap();
    let totals = ledger.totals();
    let names: Vec<&str> = totals.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(
        names,
        [
            "claude-haiku-4-5-20251001",
            "claude-opus-4-6",
            "claude-sonnet-4-5-20250929"
        ]
    );
    let row = |m: &ModelUsage| {
        (
            m.input_tokens,
            m.output_tokens,
            m.cache_write_tokens(),
            m.cache_read_tokens,
        )
    };
    assert_eq!(row(&totals[0]), (150, 29_879, 141_785, 10_933_461));
    assert_eq!(row(&totals[1]), (95, 19_596, 217_025, 5_638_009));
    assert_eq!(row(&totals[2]), (2_408, 7, 18_814, 29_274));
    // Every cache write in this session is a 5-minute write.
    assert!(totals.iter().all(|m| m.cache_write_1h_tokens == 0));
    assert!((totals[0].cost_cents - 142.012_235).abs() < 1e-9);
    assert!((totals[1].cost_cents - 466.578_575).abs() < 1e-9);
    assert!((totals[2].cost_cents - 8.666_37).abs() < 1e-9);
    let total: f64 = totals.iter().map(|m| m.cost_cents).sum();
    assert!((total - 617.257_18).abs() < 1e-9);
    // 217 distinct responses in the main file, 3 + 1 in the subagents.
    assert_eq!(totals.iter().map(|m| m.turns).sum::<u64>(), 221);
}

#[test]
fn one_hour_cache_writes_are_priced_at_twice_input() {
    // short.jsonl writes its cache with the 1-hour lifetime: ccusage says $0.1444475.
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main_transcript("short")).unwrap();
    let report = ledger.take_unreported();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].cache_write_1h_tokens, 13_835);
    assert_eq!(report[0].cache_write_5m_tokens, 0);
    assert_eq!(report[0].turns, 1, "five lines, one response");
    assert!((report[0].cost_cents - 14.444_75).abs() < 1e-12);
}

#[test]
fn second_read_reports_nothing() {
    let main = main_transcript(MULTI_MODEL);
    let mut ledger = SessionLedger::new();
    let first = ledger.read_session(&main).unwrap();
    assert!(first.bytes_consumed > 2_000_000);
    assert!(!ledger.take_unreported().is_empty());
    let again = ledger.read_session(&main).unwrap();
    assert_eq!(again, ReadStats::default());
    assert!(ledger.take_unreported().is_empty());
    // Even a fresh read of the same files into the same ledger (offsets forgotten) adds
    // nothing: every response is already counted.
    let mut restarted = ledger.clone();
    restarted.offsets.clear();
    restarted.read_session(&main).unwrap();
    assert!(restarted.take_unreported().is_empty());
}

/// Output tokens of `path` when each response is counted by its first copy (the pitfall).
fn keep_first_output(path: &std::path::Path) -> u64 {
    let mut first_output: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] != "assistant" {
            continue;
        }
        let key = format!("{} {}", v["message"]["id"], v["requestId"]);
        let output = v["message"]["usage"]["output_tokens"].as_u64().unwrap();
        first_output.entry(key).or_insert(output);
    }
    first_output.values().sum()
}

#[test]
fn keep_first_would_undercount_output_but_we_keep_the_largest_copy() {
    // The pitfall of SOURCES.md: early copies of a response hold a partial output_tokens.
    let main = main_transcript(MULTI_MODEL);
    let keep_first = keep_first_output(&main);

    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main).unwrap();
    let ours: u64 = ledger.totals().iter().map(|m| m.output_tokens).sum();
    // ccusage's figure for the main file alone is the golden minus the subagents' outputs.
    let mut subagents = SessionLedger::new();
    for path in subagent_transcripts(&main).unwrap() {
        subagents.read_transcript(&path).unwrap();
    }
    let sub_output: u64 = subagents.totals().iter().map(|m| m.output_tokens).sum();
    let golden_output = u(&golden(MULTI_MODEL)["outputTokens"]);
    assert_eq!(ours + sub_output, golden_output);
    assert!(
        keep_first < ours,
        "keep-first {keep_first} should undercount {ours}"
    );
}

#[test]
fn keep_first_pitfall_on_the_big_session() {
    // SOURCES.md: 258c7280 main file alone — keep-first gives output 10,458 and $11.14;
    // max (ours) gives output 38,899 and $11.85.
    let main = main_transcript(BIG);
    assert_eq!(keep_first_output(&main), 10_458);
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main).unwrap();
    let totals = ledger.totals();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].output_tokens, 38_899);
    assert_eq!((totals[0].cost_cents).round(), 1185.0);
}
