//! Tests of the ledger on the real Claude Code fixtures against ccusage's golden figures.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

const TRANSCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/claude-code/transcripts"
);
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/claude-code/golden/ccusage-20.0.24-session-offline.json"
);
/// The team's full fixture set (six sessions); tests using it skip when it is absent.
const SHARED_TRANSCRIPTS: &str = "/work/shared/fixtures/claude-code/transcripts";

const LOCAL_SESSIONS: [&str; 4] = [
    "short",
    "subagent",
    "tool_heavy",
    "ae4a77f8-aedd-4bc1-888f-c94edc91af04",
];

fn main_transcript(dir: &str, session: &str) -> PathBuf {
    Path::new(dir).join(format!("{session}.jsonl"))
}

/// The golden session entry named `session`.
fn golden(session: &str) -> Value {
    let text = std::fs::read_to_string(GOLDEN).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    golden["session"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["period"] == session)
        .unwrap_or_else(|| panic!("{session} not in golden"))
        .clone()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Reads one whole session and compares every model's figures with ccusage's.
fn assert_session_matches_golden(dir: &str, session: &str) {
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_session(&main_transcript(dir, session)).unwrap();
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
fn local_sessions_match_ccusage_golden() {
    for session in LOCAL_SESSIONS {
        assert_session_matches_golden(TRANSCRIPTS, session);
    }
}

#[test]
fn all_shared_sessions_match_ccusage_golden() {
    if !Path::new(SHARED_TRANSCRIPTS).is_dir() {
        return;
    }
    let text = std::fs::read_to_string(GOLDEN).unwrap();
    let golden: Value = serde_json::from_str(&text).unwrap();
    let sessions = golden["session"].as_array().unwrap();
    assert_eq!(sessions.len(), 6);
    for session in sessions {
        assert_session_matches_golden(SHARED_TRANSCRIPTS, session["period"].as_str().unwrap());
    }
}

#[test]
fn per_model_breakdown_of_the_multi_model_session() {
    // ae4a77f8 (main + 2 subagents): the figures ccusage printed, written out.
    let mut ledger = SessionLedger::new();
    ledger
        .read_session(&main_transcript(TRANSCRIPTS, LOCAL_SESSIONS[3]))
        .unwrap();
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
    ledger
        .read_transcript(&main_transcript(TRANSCRIPTS, "short"))
        .unwrap();
    let report = ledger.take_unreported();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].cache_write_1h_tokens, 13_835);
    assert_eq!(report[0].cache_write_5m_tokens, 0);
    assert_eq!(report[0].turns, 1, "five lines, one response");
    assert!((report[0].cost_cents - 14.444_75).abs() < 1e-12);
}

#[test]
fn second_read_reports_nothing() {
    let main = main_transcript(TRANSCRIPTS, LOCAL_SESSIONS[3]);
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

/// Sums reports per model.
#[derive(Debug, Default, PartialEq)]
struct Sum {
    tokens: [u64; 5],
    turns: u64,
    cost_cents: f64,
    reports: u64,
    delta_only_reports: u64,
}

fn add_reports(sums: &mut BTreeMap<String, Sum>, reports: Vec<ModelUsage>) {
    for r in reports {
        let s = sums.entry(r.model.clone()).or_default();
        s.tokens[0] += r.input_tokens;
        s.tokens[1] += r.output_tokens;
        s.tokens[2] += r.cache_read_tokens;
        s.tokens[3] += r.cache_write_5m_tokens;
        s.tokens[4] += r.cache_write_1h_tokens;
        s.turns += r.turns;
        s.cost_cents += r.cost_cents;
        s.reports += 1;
        if r.turns == 0 {
            s.delta_only_reports += 1;
        }
    }
}

/// Deterministic pseudo-random numbers (64-bit LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % n.max(1)
    }
}

/// Grows copies of `sources` in a temp dir through `cuts[i]` (one cut list per source, same
/// length), reading and reporting after each step with a serde round trip of the ledger in
/// between; then checks the sums against a one-shot read. Returns the per-model sums.
fn replay(sources: &[PathBuf], cuts: &[Vec<usize>]) -> BTreeMap<String, Sum> {
    let dir = tempfile::tempdir().unwrap();
    let copies: Vec<PathBuf> = sources
        .iter()
        .enumerate()
        .map(|(i, _)| dir.path().join(format!("copy-{i}.jsonl")))
        .collect();
    let contents: Vec<Vec<u8>> = sources.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for copy in &copies {
        std::fs::write(copy, b"").unwrap();
    }
    let steps = cuts[0].len();
    assert!(cuts.iter().all(|c| c.len() == steps));
    let schedule: Vec<Vec<usize>> = (0..steps)
        .map(|step| cuts.iter().map(|c| c[step]).collect())
        .collect();
    let mut written = vec![0_usize; sources.len()];
    let mut ledger = SessionLedger::new();
    let mut sums = BTreeMap::new();
    for step_cuts in &schedule {
        // The spool stores the ledger as JSON between hook runs.
        let json = serde_json::to_string(&ledger).unwrap();
        let restored = SessionLedger::from_json(&json).unwrap();
        assert_eq!(restored, ledger);
        ledger = restored;
        for (i, copy) in copies.iter().enumerate() {
            let cut = step_cuts[i].min(contents[i].len()).max(written[i]);
            let mut file = OpenOptions::new().append(true).open(copy).unwrap();
            file.write_all(&contents[i][written[i]..cut]).unwrap();
            written[i] = cut;
            let stats = ledger.read_transcript(copy).unwrap();
            assert_eq!(stats.malformed, 0, "a cut line must never be parsed");
            assert_eq!(
                ledger.offset(copy),
                contents[i][..cut]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p as u64 + 1)
            );
        }
        add_reports(&mut sums, ledger.take_unreported());
    }
    assert!(ledger.take_unreported().is_empty());

    let mut once = SessionLedger::new();
    for source in sources {
        once.read_transcript(source).unwrap();
    }
    let totals = once.totals();
    assert_eq!(sums.len(), totals.len());
    for total in &totals {
        let sum = &sums[&total.model];
        assert_eq!(
            sum.tokens,
            [
                total.input_tokens,
                total.output_tokens,
                total.cache_read_tokens,
                total.cache_write_5m_tokens,
                total.cache_write_1h_tokens
            ],
            "{}",
            total.model
        );
        assert_eq!(sum.turns, total.turns, "{}", total.model);
        assert!((sum.cost_cents - total.cost_cents).abs() < 1e-9 * total.cost_cents.max(1.0));
        // The ledger's own cumulative record is exact (integer nano-USD inside).
        assert_eq!(ledger.reported(&total.model).as_ref(), Some(total));
    }
    sums
}

/// Cut points: every line end and the middle of every line, in order.
fn every_line_cuts(bytes: &[u8]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            cuts.push(start + (i - start) / 2);
            cuts.push(i + 1);
            start = i + 1;
        }
    }
    cuts.push(bytes.len());
    cuts
}

/// `n` increasing random cut points in `0..=len`, ending at `len`.
fn random_cuts(len: usize, n: usize, rng: &mut Lcg) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..n - 1).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts.push(len);
    cuts
}

#[test]
fn chunked_reads_of_small_transcripts_sum_to_one_read() {
    for session in ["short", "tool_heavy", "subagent"] {
        let path = main_transcript(TRANSCRIPTS, session);
        let bytes = std::fs::read(&path).unwrap();
        let sums = replay(std::slice::from_ref(&path), &[every_line_cuts(&bytes)]);
        if session != "short" {
            // These files hold responses whose later copies grow output_tokens, and the
            // line-by-line replay reports those growths as deltas (no new turn).
            assert!(
                sums.values().any(|s| s.delta_only_reports > 0),
                "{session}: no delta report"
            );
        }
    }
}

#[test]
fn chunked_reads_of_a_session_with_subagents_sum_to_one_read() {
    let main = main_transcript(TRANSCRIPTS, LOCAL_SESSIONS[3]);
    let mut sources = vec![main.clone()];
    sources.extend(subagent_transcripts(&main).unwrap());
    assert_eq!(sources.len(), 3);
    let mut rng = Lcg(0x5eed);
    let cuts: Vec<Vec<usize>> = sources
        .iter()
        .map(|p| random_cuts(std::fs::read(p).unwrap().len(), 120, &mut rng))
        .collect();
    let sums = replay(&sources, &cuts);
    assert_eq!(sums.len(), 3);
    // And the sums are ccusage's figures.
    let golden = golden(LOCAL_SESSIONS[3]);
    for expected in golden["modelBreakdowns"].as_array().unwrap() {
        let sum = &sums[expected["modelName"].as_str().unwrap()];
        assert_eq!(sum.tokens[1], u(&expected["outputTokens"]));
        assert!((sum.cost_cents / 100.0 - expected["cost"].as_f64().unwrap()).abs() < 1e-6);
    }
}

#[test]
fn keep_first_would_undercount_output_but_we_keep_the_largest_copy() {
    // The pitfall of SOURCES.md: early copies of a response hold a partial output_tokens.
    let main = main_transcript(TRANSCRIPTS, LOCAL_SESSIONS[3]);
    let mut first_output: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(&main).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] != "assistant" {
            continue;
        }
        let key = format!("{} {}", v["message"]["id"], v["requestId"]);
        let output = v["message"]["usage"]["output_tokens"].as_u64().unwrap();
        first_output.entry(key).or_insert(output);
    }
    let keep_first: u64 = first_output.values().sum();

    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main).unwrap();
    let ours: u64 = ledger.totals().iter().map(|m| m.output_tokens).sum();
    // ccusage's figure for the main file alone is the golden minus the subagents' outputs.
    let mut subagents = SessionLedger::new();
    for path in subagent_transcripts(&main).unwrap() {
        subagents.read_transcript(&path).unwrap();
    }
    let sub_output: u64 = subagents.totals().iter().map(|m| m.output_tokens).sum();
    let golden_output = u(&golden(LOCAL_SESSIONS[3])["outputTokens"]);
    assert_eq!(ours + sub_output, golden_output);
    assert!(
        keep_first < ours,
        "keep-first {keep_first} should undercount {ours}"
    );
}

#[test]
fn keep_first_pitfall_on_the_big_shared_session() {
    // SOURCES.md: 258c7280 main file alone — keep-first gives output 10,458 and $11.14;
    // max (ours) gives output 38,899 and $11.85.
    let main = main_transcript(SHARED_TRANSCRIPTS, "258c7280-ae70-4798-800f-63464d01a85d");
    if !main.is_file() {
        return;
    }
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&main).unwrap();
    let totals = ledger.totals();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].output_tokens, 38_899);
    assert_eq!((totals[0].cost_cents).round(), 1185.0);
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
fn a_growing_response_is_reported_as_a_delta() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let model = "claude-haiku-4-5-20251001";
    write_lines(&path, &[assistant("a", 5, false, model)]);
    let mut ledger = SessionLedger::new();
    ledger.read_transcript(&path).unwrap();
    let first = ledger.take_unreported();
    assert_eq!((first[0].output_tokens, first[0].turns), (5, 1));
    assert_eq!(first[0].input_tokens, 10);

    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(file, "{}", assistant("a", 12, false, model)).unwrap();
    writeln!(file, "{}", assistant("a", 8, false, model)).unwrap();
    drop(file);
    ledger.read_transcript(&path).unwrap();
    let delta = ledger.take_unreported();
    assert_eq!(delta.len(), 1);
    assert_eq!(
        (
            delta[0].output_tokens,
            delta[0].turns,
            delta[0].input_tokens,
            delta[0].cache_read_tokens
        ),
        (7, 0, 0, 0)
    );
    // 7 output tokens at $5/M = 0.0035 cents.
    assert!((delta[0].cost_cents - 0.0035).abs() < 1e-12);
    let reported = ledger.reported(model).unwrap();
    assert_eq!((reported.output_tokens, reported.turns), (12, 1));
    assert!(ledger.reported("claude-opus-4-6").is_none());
}

#[test]
fn partial_last_line_is_consumed_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.jsonl");
    let bytes = std::fs::read(main_transcript(TRANSCRIPTS, "short")).unwrap();
    let cut = bytes.len() - 40;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let mut ledger = SessionLedger::new();
    let stats = ledger.read_transcript(&path).unwrap();
    let last_nl = bytes[..cut].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    assert_eq!(stats.bytes_consumed, last_nl as u64);
    assert_eq!(stats.malformed, 0);
    ledger.take_unreported();

    std::fs::write(&path, &bytes).unwrap();
    let stats = ledger.read_transcript(&path).unwrap();
    assert_eq!(stats.bytes_consumed, (bytes.len() - last_nl) as u64);
    assert_eq!(stats.lines, 1);
    assert_eq!(ledger.offset(&path), bytes.len() as u64);
}

#[test]
fn malformed_lines_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let real = std::fs::read_to_string(main_transcript(TRANSCRIPTS, "short")).unwrap();
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
fn large_transcript_reads_fast() {
    // 2.7 MB; SPEC wants well under 100 ms in release.
    let main = main_transcript(TRANSCRIPTS, LOCAL_SESSIONS[3]);
    let mut ledger = SessionLedger::new();
    let started = std::time::Instant::now();
    ledger.read_transcript(&main).unwrap();
    let elapsed = started.elapsed();
    let limit_ms = if cfg!(debug_assertions) { 3_000 } else { 100 };
    assert!(
        elapsed.as_millis() < limit_ms,
        "{elapsed:?} for a 2.7 MB transcript"
    );
}

#[test]
fn stored_ledgers_are_versioned() {
    let mut ledger = SessionLedger::new();
    ledger
        .read_transcript(&main_transcript(TRANSCRIPTS, "short"))
        .unwrap();
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
    let path = main_transcript(TRANSCRIPTS, "short");
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
