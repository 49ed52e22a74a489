//! Transcripts read while they grow: any cut, any order of reads, sums to one read.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use super::{MULTI_MODEL, assistant, golden, main_transcript, u, write_lines};
use crate::usage::*;

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
        let path = main_transcript(session);
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
    let main = main_transcript(MULTI_MODEL);
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
    let golden = golden(MULTI_MODEL);
    for expected in golden["modelBreakdowns"].as_array().unwrap() {
        let sum = &sums[expected["modelName"].as_str().unwrap()];
        assert_eq!(sum.tokens[1], u(&expected["outputTokens"]));
        assert!((sum.cost_cents / 100.0 - expected["cost"].as_f64().unwrap()).abs() < 1e-6);
    }
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
    let bytes = std::fs::read(main_transcript("short")).unwrap();
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
