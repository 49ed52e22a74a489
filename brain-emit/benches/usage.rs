//! Transcript-reading benchmark: median wall time of [`SessionLedger::read_transcript`] over
//! the largest fixture transcript (a first read: the whole file, as a `SessionEnd` hook on a
//! session it never saw, or `brain-emit import`), against two baselines measured in the same
//! run on the same file:
//!
//! - `lines`: `BufRead::read_until` over the file, counting lines (the floor of reading it);
//! - `json`: the same, plus `serde_json::from_slice::<serde_json::Value>` of every line (what
//!   parsing each line without a typed record costs).
//!
//! Run with `cargo bench -p brain-emit --bench usage`. The figure replaces a unit test that
//! asserted a wall-clock bound (100 ms in release), which a loaded CI machine can break and a
//! slow reader can pass in debug builds; the ratios are comparable across machines. No goal
//! is enforced: a ratio to `json` well above 1 means the reader does more than parse.

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark binary: it reports on stdout and a failed setup is a failed run"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use brain_emit::usage::SessionLedger;

const WARMUP: usize = 3;
const RUNS: usize = 25;

/// The largest transcript of the fixtures (3.2 MB, 1512 lines).
const SESSION: &str = "4d5611e5-241a-462a-8d15-5122611a9569";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median of `RUNS` timed calls of `f` after `WARMUP` untimed ones; `f` returns a figure
/// that is checked to be the same every call (so the work cannot be skipped).
fn time(mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let expected = f();
    for _ in 1..WARMUP {
        assert_eq!(f(), expected);
    }
    let times = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let got = f();
            let elapsed = t.elapsed();
            assert_eq!(got, expected);
            elapsed
        })
        .collect();
    (median(times), expected)
}

/// Calls `each` on every line of `path` (without its `'\n'`).
fn for_each_line(path: &Path, mut each: impl FnMut(&[u8])) {
    let mut reader = BufReader::new(std::fs::File::open(path).unwrap());
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        each(line.strip_suffix(b"\n").unwrap_or(&line));
    }
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/claude-code/transcripts")
        .join(format!("{SESSION}.jsonl"));
    let size = std::fs::metadata(&path).unwrap().len();

    let (lines, line_count) = time(|| {
        let mut n = 0;
        for_each_line(&path, |_| n += 1);
        n
    });
    let (json, parsed) = time(|| {
        let mut n = 0;
        for_each_line(&path, |l| {
            if serde_json::from_slice::<serde_json::Value>(l).is_ok() {
                n += 1;
            }
        });
        n
    });
    let (ledger, read) = time(|| {
        let mut ledger = SessionLedger::new();
        let stats = ledger.read_transcript(&path).unwrap();
        assert!(!ledger.take_unreported().is_empty());
        stats.lines
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "transcript: {SESSION}.jsonl, {size} bytes, {line_count} lines ({parsed} parse, {read} read by the ledger)"
    );
    println!("lines (BufRead)          median {:>8.3} ms", ms(lines));
    println!("json  (serde Value)      median {:>8.3} ms", ms(json));
    println!("SessionLedger::read      median {:>8.3} ms", ms(ledger));
    println!(
        "ratio to lines           {:>8.2}x",
        ledger.as_secs_f64() / lines.as_secs_f64()
    );
    println!(
        "ratio to json            {:>8.2}x",
        ledger.as_secs_f64() / json.as_secs_f64()
    );
}
