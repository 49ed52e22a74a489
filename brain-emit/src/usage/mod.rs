//! Token and cost accounting of Claude Code sessions, for `llm_usage` events (SPEC §7).
//!
//! Owns the [`SessionLedger`]: the state that lets a hook read a session's transcripts
//! incrementally (each file from the byte where the previous run stopped), count every API
//! response exactly once, and report only what was not reported before. The spool keeps the
//! ledger as JSON between hook runs.
//!
//! # Counting rule (ccusage's)
//!
//! Claude Code writes one API response as several assistant lines (one per content block) that
//! repeat `message.id` + `requestId`; the early copies hold a partial `output_tokens`. Subagent
//! transcripts (`<session>/subagents/agent-*.jsonl`) can repeat responses of the main file.
//! Per session, each response (key `message.id` + `requestId`) is counted once, by the copy with
//! the largest token total (input + output + cache creation + cache read); on a tie the
//! non-sidechain copy wins. When a later line grows a response that was already counted, the
//! difference is counted then (a delta), so the reports of a session add up to the one-shot
//! figure. Lines that are not assistant lines, have no `message.usage`, or have model
//! `<synthetic>` are skipped; lines that are not valid JSON are skipped and counted in
//! [`ReadStats::malformed`]. Over the real fixtures this reproduces
//! `ccusage session --offline` 20.0.24 token for token and to the last cent (see the tests).
//!
//! Prices live in [`pricing`]; the loop that turns a ledger's new usage into queued
//! `llm_usage` events (for the hook and `import`) is `sweep`; reading transcript lines is
//! `transcript`'s.

pub mod pricing;
pub(crate) mod sweep;
mod transcript;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pricing::{TokenCounts, cost_nano_usd, lookup, nano_usd_to_cents};
use transcript::{Line, UsageLine, parse_line, read_complete_lines};

/// Failure of a ledger operation.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A transcript could not be opened, positioned or read.
    #[error("reading transcript {}", path.display())]
    Read {
        /// The transcript's path.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A subagent transcript directory could not be listed.
    #[error("listing subagent transcripts in {}", path.display())]
    ListSubagents {
        /// The `subagents` directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// Version of the ledger's JSON format this code writes and reads. Ledgers stored before the
/// field existed have no `v` and read as version 1 (the same shape).
pub const LEDGER_FORMAT: u32 = 1;

/// Why a stored ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The stored text is not a ledger (damaged or foreign JSON).
    #[error("the stored ledger is not valid ledger JSON")]
    Parse(#[source] serde_json::Error),
    /// The ledger was written by a brain-emit with a format this one does not know.
    #[error("the stored ledger has format version {found}; this brain-emit reads {LEDGER_FORMAT}")]
    UnknownFormat {
        /// The stored `v`.
        found: u32,
    },
}

fn legacy_format() -> u32 {
    1
}

/// Usage of one model: either a report (what was counted since the previous report) or a
/// cumulative total, depending on the method that returned it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// Model id as the transcript records it, e.g. `claude-sonnet-4-5-20250929`.
    pub model: String,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache with the 5-minute lifetime.
    pub cache_write_5m_tokens: u64,
    /// Tokens written to the prompt cache with the 1-hour lifetime.
    pub cache_write_1h_tokens: u64,
    /// Cost in US cents (US dollars × 100), fractional; 0 when the model is not priced.
    pub cost_cents: f64,
    /// API responses newly counted (a response that only grew adds tokens, not a turn).
    pub turns: u64,
    /// False when the price table does not know the model (its cost is then 0).
    pub priced: bool,
}

impl ModelUsage {
    /// All cache writes, 5-minute and 1-hour together, in tokens.
    pub fn cache_write_tokens(&self) -> u64 {
        self.cache_write_5m_tokens
            .saturating_add(self.cache_write_1h_tokens)
    }
}

/// What one [`SessionLedger::read_transcript`] call consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Complete, non-empty lines read.
    pub lines: u64,
    /// Lines skipped because they are not valid JSON or have a misshapen assistant record.
    pub malformed: u64,
    /// Bytes consumed (complete lines only; a trailing partial line is left for next time).
    pub bytes_consumed: u64,
}

impl ReadStats {
    fn add(&mut self, other: Self) {
        self.lines += other.lines;
        self.malformed += other.malformed;
        self.bytes_consumed += other.bytes_consumed;
    }
}

/// Running figures of one model: tokens, cost in nano-USD, responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Totals {
    #[serde(flatten)]
    tokens: TokenCounts,
    /// Cost in billionths of a US dollar.
    #[serde(rename = "c")]
    cost_nano_usd: u64,
    /// Responses.
    #[serde(rename = "n")]
    turns: u64,
}

impl Totals {
    fn is_zero(&self) -> bool {
        self.tokens.is_zero() && self.cost_nano_usd == 0 && self.turns == 0
    }

    fn to_model_usage(self, model: &str) -> ModelUsage {
        ModelUsage {
            model: model.to_owned(),
            input_tokens: self.tokens.input,
            output_tokens: self.tokens.output,
            cache_read_tokens: self.tokens.cache_read,
            cache_write_5m_tokens: self.tokens.cache_write_5m,
            cache_write_1h_tokens: self.tokens.cache_write_1h,
            cost_cents: nano_usd_to_cents(self.cost_nano_usd),
            turns: self.turns,
            priced: lookup(model).is_some(),
        }
    }
}

/// The copy of a response currently counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Response {
    #[serde(rename = "m")]
    model: String,
    #[serde(rename = "t")]
    tokens: TokenCounts,
    /// ccusage's dedupe measure (input + output + cache creation + cache read).
    #[serde(rename = "n")]
    total: u64,
    #[serde(rename = "s", default, skip_serializing_if = "std::ops::Not::not")]
    sidechain: bool,
    /// Cost as added to the model's totals, in nano-USD (kept so a later price table change
    /// cannot make the subtraction on replacement disagree with the addition).
    #[serde(rename = "c")]
    cost_nano_usd: u64,
}

impl Response {
    fn from_line(line: UsageLine) -> Self {
        let cost_nano_usd =
            lookup(&line.model).map_or(0, |price| cost_nano_usd(price, &line.tokens));
        Self {
            model: line.model,
            tokens: line.tokens,
            total: line.total,
            sidechain: line.sidechain,
            cost_nano_usd,
        }
    }

    /// ccusage's choice between two copies: the larger total; on a tie, the main-chain copy.
    fn beats(&self, counted: &Self) -> bool {
        self.total > counted.total
            || (self.total == counted.total && counted.sidechain && !self.sidechain)
    }
}

/// Per-session accounting state; serde `Serialize` + `Deserialize` (the spool stores it as
/// JSON text between hook runs).
///
/// One ledger per Claude Code session: feed it the main transcript and the session's subagent
/// transcripts (dedupe spans all of them), then [`take_unreported`](Self::take_unreported)
/// to get what to emit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionLedger {
    /// Format version ([`LEDGER_FORMAT`]); a ledger of an unknown version is never used.
    #[serde(rename = "v", default = "legacy_format")]
    format: u32,
    /// Responses whose line `timestamp` is older than this (Unix ms), or that have no
    /// timestamp, are ignored. Set on ledgers created after the spool was recovered from a
    /// corrupt file: usage from before the recovery was either delivered already (under
    /// event ids derived from the lost ledger) or lost with the corrupt file, and counting it
    /// again would double count it on the server.
    #[serde(rename = "since", default, skip_serializing_if = "Option::is_none")]
    ignore_before_ms: Option<i64>,
    /// Bytes consumed so far, per transcript path.
    #[serde(default)]
    offsets: BTreeMap<String, u64>,
    /// The counted copy of every response seen, by `message.id` + `requestId`.
    #[serde(default)]
    responses: BTreeMap<String, Response>,
    /// Everything counted, per model.
    #[serde(default)]
    counted: BTreeMap<String, Totals>,
    /// Everything reported by [`take_unreported`](Self::take_unreported), per model.
    #[serde(default)]
    reported: BTreeMap<String, Totals>,
}

impl Default for SessionLedger {
    fn default() -> Self {
        SessionLedger {
            format: LEDGER_FORMAT,
            ignore_before_ms: None,
            offsets: BTreeMap::new(),
            responses: BTreeMap::new(),
            counted: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }
}

impl SessionLedger {
    /// An empty ledger: nothing read, nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger that ignores responses logged before `ms` (Unix ms) and responses
    /// without a timestamp; see the field's documentation for when this is used.
    pub fn ignoring_before(ms: i64) -> Self {
        SessionLedger {
            ignore_before_ms: Some(ms),
            ..Self::default()
        }
    }

    /// Reads a ledger stored as JSON.
    ///
    /// # Errors
    /// [`LedgerError::Parse`] for text that is not a ledger, [`LedgerError::UnknownFormat`]
    /// for a ledger of another format version. Callers must not replace such a ledger with a
    /// fresh one: event ids derive from the cumulative totals it holds, so starting over
    /// would report the whole session again under new ids.
    pub fn from_json(text: &str) -> Result<Self, LedgerError> {
        let ledger: SessionLedger = serde_json::from_str(text).map_err(LedgerError::Parse)?;
        if ledger.format != LEDGER_FORMAT {
            return Err(LedgerError::UnknownFormat {
                found: ledger.format,
            });
        }
        Ok(ledger)
    }

    /// Folds in the complete lines of `path` added since the last call for that path.
    ///
    /// Sidechain-ness is taken from each line's `isSidechain`, so main and subagent
    /// transcripts are read the same way. A trailing line without its `'\n'` is left for the
    /// next call. A file that shrank below the stored offset is read again from its start.
    ///
    /// # Errors
    ///
    /// [`UsageError::Read`] when the file cannot be opened or read; the ledger is unchanged.
    pub fn read_transcript(&mut self, path: &Path) -> Result<ReadStats, UsageError> {
        let key = path.to_string_lossy().into_owned();
        let offset = self.offsets.get(&key).copied().unwrap_or(0);
        let chunk = read_complete_lines(path, offset)?;
        let mut stats = ReadStats {
            bytes_consumed: chunk.bytes.len() as u64,
            ..ReadStats::default()
        };
        for line in chunk.bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            stats.lines += 1;
            match parse_line(line) {
                Line::Skip => {}
                Line::Malformed => stats.malformed += 1,
                Line::Usage(usage) => self.count(usage),
            }
        }
        self.offsets
            .insert(key, chunk.start + chunk.bytes.len() as u64);
        Ok(stats)
    }

    /// Reads a session's main transcript and then every subagent transcript of the session
    /// (`<dir>/<session>/subagents/agent-*.jsonl` next to `<dir>/<session>.jsonl`, in name order),
    /// each incrementally as [`read_transcript`](Self::read_transcript) does; returns the summed
    /// stats. A session without a `subagents` directory is just its main transcript.
    ///
    /// # Errors
    ///
    /// [`UsageError::Read`] for an unreadable transcript, [`UsageError::ListSubagents`] when the
    /// `subagents` directory exists but cannot be listed. Files read before the failure stay
    /// folded in.
    pub fn read_session(&mut self, main_transcript: &Path) -> Result<ReadStats, UsageError> {
        let mut stats = self.read_transcript(main_transcript)?;
        for path in subagent_transcripts(main_transcript)? {
            stats.add(self.read_transcript(&path)?);
        }
        Ok(stats)
    }

    /// Per-model usage counted but not yet reported; marks it reported. Models with nothing
    /// new are omitted; the list is sorted by model id.
    ///
    /// Each field is the growth since the previous report (never negative: if a response was
    /// replaced by a copy with fewer tokens in some bucket, that bucket reports 0 until the
    /// count passes what was already reported).
    pub fn take_unreported(&mut self) -> Vec<ModelUsage> {
        let mut out = Vec::new();
        for (model, counted) in &self.counted {
            let reported = self.reported.entry(model.clone()).or_default();
            let new = Totals {
                tokens: counted.tokens.saturating_diff(&reported.tokens),
                cost_nano_usd: counted.cost_nano_usd.saturating_sub(reported.cost_nano_usd),
                turns: counted.turns.saturating_sub(reported.turns),
            };
            if new.is_zero() {
                continue;
            }
            reported.tokens.add(&new.tokens);
            reported.cost_nano_usd = reported.cost_nano_usd.saturating_add(new.cost_nano_usd);
            reported.turns = reported.turns.saturating_add(new.turns);
            out.push(new.to_model_usage(model));
        }
        out
    }

    /// Cumulative reported totals of `model` (for stable UUIDv5 event ids); `None` when nothing
    /// of that model was ever reported.
    pub fn reported(&self, model: &str) -> Option<ModelUsage> {
        self.reported
            .get(model)
            .filter(|totals| !totals.is_zero())
            .map(|totals| totals.to_model_usage(model))
    }

    /// Cumulative counted totals per model, reported or not, sorted by model id (what
    /// `ccusage session` would show for the transcripts read so far).
    pub fn totals(&self) -> Vec<ModelUsage> {
        self.counted
            .iter()
            .map(|(model, totals)| totals.to_model_usage(model))
            .collect()
    }

    /// Bytes of `path` consumed so far (0 for a path never read).
    pub fn offset(&self, path: &Path) -> u64 {
        self.offsets
            .get(path.to_string_lossy().as_ref())
            .copied()
            .unwrap_or(0)
    }

    /// Folds one copy of a response in.
    fn count(&mut self, mut line: UsageLine) {
        if let Some(cut) = self.ignore_before_ms
            && line.timestamp_ms.is_none_or(|t| t < cut)
        {
            return;
        }
        let Some(key) = line.key.take() else {
            // No `message.id`: nothing to dedupe on, so every such line counts (as in ccusage).
            let response = Response::from_line(line);
            self.add(&response, 1);
            return;
        };
        let candidate = Response::from_line(line);
        match self.responses.get(&key) {
            None => {
                self.add(&candidate, 1);
                self.responses.insert(key, candidate);
            }
            Some(counted) if candidate.beats(counted) => {
                let counted = counted.clone();
                // Swap the copies; the response stays one turn (of the winning copy's model).
                self.remove(&counted, 1);
                self.add(&candidate, 1);
                self.responses.insert(key, candidate);
            }
            Some(_) => {}
        }
    }

    fn add(&mut self, response: &Response, turns: u64) {
        let totals = self.counted.entry(response.model.clone()).or_default();
        totals.tokens.add(&response.tokens);
        totals.cost_nano_usd = totals.cost_nano_usd.saturating_add(response.cost_nano_usd);
        totals.turns = totals.turns.saturating_add(turns);
    }

    fn remove(&mut self, response: &Response, turns: u64) {
        if let Some(totals) = self.counted.get_mut(&response.model) {
            totals.tokens.sub(&response.tokens);
            totals.cost_nano_usd = totals.cost_nano_usd.saturating_sub(response.cost_nano_usd);
            totals.turns = totals.turns.saturating_sub(turns);
        }
    }
}

/// The subagent transcripts of the session whose main transcript is `main_transcript`:
/// `agent-*.jsonl` in `<dir>/<stem>/subagents/`, sorted by file name; empty when the directory
/// does not exist.
///
/// # Errors
///
/// [`UsageError::ListSubagents`] when the directory exists but cannot be listed.
pub fn subagent_transcripts(main_transcript: &Path) -> Result<Vec<PathBuf>, UsageError> {
    let Some(stem) = main_transcript.file_stem() else {
        return Ok(Vec::new());
    };
    let dir = main_transcript.with_file_name(stem).join("subagents");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(UsageError::ListSubagents { path: dir, source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| UsageError::ListSubagents {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("agent-") && name.ends_with(".jsonl") {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests;
