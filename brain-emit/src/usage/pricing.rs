//! The per-model price table and the cost of one API response.
//!
//! Owns the prices (versioned here, in code) and the arithmetic that turns a response's token
//! counts into money. The rule is the one `ccusage session --offline` (version 20.0.24) applies,
//! because SPEC §7 requires our totals to equal ccusage's over a whole session:
//!
//! - each of the five token buckets (input, output, 5-minute cache write, 1-hour cache write,
//!   cache read) is priced at its own rate;
//! - the 1-hour cache write is priced at 2 × the input rate (ccusage's
//!   `CACHE_CREATE_1H_INPUT_MULTIPLIER`; it ignores LiteLLM's `…_above_1hr` fields);
//! - a model whose LiteLLM entry carries `*_above_200k_tokens` rates is priced marginally per
//!   bucket and per response: the first 200,000 tokens of a bucket at the base rate, the rest at
//!   the higher rate (ccusage's `tiered_cost`). In the LiteLLM table only the Sonnet 4 and
//!   Sonnet 4.5 entries carry such rates; Opus 4.6 does not, so ccusage bills its 1M-context
//!   requests at the base rate and so do we.
//!
//! # Source
//!
//! Rates come from LiteLLM's `model_prices_and_context_window.json` (`BerriAI/litellm`, commit
//! `00035b69f416be24e2e323c13198d9b7d2d1bdf9`, read on 2026-11-20), the table ccusage embeds
//! in its binary and uses with `--offline`. Claude Haiku 3.5 is not in that revision of the
//! file; its rates are Anthropic's published prompt-caching price table (docs retrieved
//! 2025-11-08), which matches LiteLLM's former `claude-3-5-haiku-20241022` entry.
//! The golden file `fixtures/claude-code/golden/ccusage-20.0.24-session-offline.json` checks the
//! Opus 4.6, Sonnet 4.5 and Haiku 4.5 rows to the last digit (see the module tests of
//! [`crate::usage`]); no fixture response reaches 200,000 tokens in one bucket, so the tiered
//! branch is checked only by unit tests here.

use serde::{Deserialize, Serialize};

/// Date the table was last checked against its source (ISO 8601), and where the rates come
/// from (for logs and status output). They live in `shared-proto`, so the server's cost read
/// names the table the emitter prices with.
pub use shared_proto::dashboard::{PRICES_AS_OF, PRICES_SOURCE};

/// Bucket size, in tokens per response, above which the `above_200k` rates apply.
pub const LONG_CONTEXT_THRESHOLD_TOKENS: u64 = 200_000;

/// Rates of one model, each in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Uncached input, USD per million tokens.
    pub input: f64,
    /// Output, USD per million tokens.
    pub output: f64,
    /// Prompt-cache write with the default 5-minute lifetime, USD per million tokens.
    pub cache_write_5m: f64,
    /// Prompt-cache write with the 1-hour lifetime, USD per million tokens.
    pub cache_write_1h: f64,
    /// Prompt-cache read, USD per million tokens.
    pub cache_read: f64,
}

/// One row of the price table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// Model id without a date suffix, e.g. `claude-sonnet-4-5`.
    pub model: &'static str,
    /// Rates for the first [`LONG_CONTEXT_THRESHOLD_TOKENS`] tokens of each bucket.
    pub base: Rates,
    /// Rates for the tokens of a bucket beyond [`LONG_CONTEXT_THRESHOLD_TOKENS`], when the
    /// source publishes them; `None` means the base rates apply to every token.
    pub above_200k: Option<Rates>,
}

/// Token counts of one response (or a sum of responses), per bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Uncached input tokens.
    #[serde(rename = "i")]
    pub input: u64,
    /// Output tokens.
    #[serde(rename = "o")]
    pub output: u64,
    /// Tokens read from the prompt cache.
    #[serde(rename = "r")]
    pub cache_read: u64,
    /// Tokens written to the prompt cache with the 5-minute lifetime.
    #[serde(rename = "w5")]
    pub cache_write_5m: u64,
    /// Tokens written to the prompt cache with the 1-hour lifetime.
    #[serde(rename = "w1")]
    pub cache_write_1h: u64,
}

impl TokenCounts {
    /// Adds `other` bucket by bucket (saturating).
    pub(crate) fn add(&mut self, other: &Self) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write_5m = self.cache_write_5m.saturating_add(other.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
    }

    /// Subtracts `other` bucket by bucket, stopping at 0.
    pub(crate) fn sub(&mut self, other: &Self) {
        self.input = self.input.saturating_sub(other.input);
        self.output = self.output.saturating_sub(other.output);
        self.cache_read = self.cache_read.saturating_sub(other.cache_read);
        self.cache_write_5m = self.cache_write_5m.saturating_sub(other.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_sub(other.cache_write_1h);
    }

    /// `self - other` bucket by bucket, each stopping at 0.
    pub(crate) fn saturating_diff(&self, other: &Self) -> Self {
        let mut out = *self;
        out.sub(other);
        out
    }

    /// True when every bucket is 0.
    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

const fn rates(input: f64, output: f64, cache_write_5m: f64, cache_read: f64) -> Rates {
    Rates {
        input,
        output,
        cache_write_5m,
        // ccusage: 1-hour cache write = 2 × input.
        cache_write_1h: input * 2.0,
        cache_read,
    }
}

/// The table, USD per million tokens: (input, output, 5-minute cache write, cache read);
/// the 1-hour cache write is derived as 2 × input.
static PRICES: &[ModelPrice] = &[
    // LiteLLM `claude-opus-4-7`: 5e-06 / 2.5e-05 / 6.25e-06 / 5e-07.
    ModelPrice {
        model: "claude-opus-4-7",
        base: rates(5.0, 25.0, 6.25, 0.5),
        above_200k: None,
    },
    // LiteLLM `claude-opus-4-6` (and `-20260205`): 5e-06 / 2.5e-05 / 6.25e-06 / 5e-07;
    // no `above_200k` fields although the model has a 1M context.
    ModelPrice {
        model: "claude-opus-4-6",
        base: rates(5.0, 25.0, 6.25, 0.5),
        above_200k: None,
    },
    // LiteLLM `claude-opus-4-5` / `-20251101`.
    ModelPrice {
        model: "claude-opus-4-5",
        base: rates(5.0, 25.0, 6.25, 0.5),
        above_200k: None,
    },
    // LiteLLM `claude-opus-4-1` / `-20250805`: 1.5e-05 / 7.5e-05 / 1.875e-05 / 1.5e-06.
    ModelPrice {
        model: "claude-opus-4-1",
        base: rates(15.0, 75.0, 18.75, 1.5),
        above_200k: None,
    },
    // LiteLLM `claude-opus-4-20250514` (alias `claude-4-opus-20250514`).
    ModelPrice {
        model: "claude-opus-4",
        base: rates(15.0, 75.0, 18.75, 1.5),
        above_200k: None,
    },
    // LiteLLM `claude-sonnet-4-6`: 3e-06 / 1.5e-05 / 3.75e-06 / 3e-07; no `above_200k` fields.
    ModelPrice {
        model: "claude-sonnet-4-6",
        base: rates(3.0, 15.0, 3.75, 0.3),
        above_200k: None,
    },
    // LiteLLM `claude-sonnet-4-5` / `-20250929`: base 3e-06 / 1.5e-05 / 3.75e-06 / 3e-07;
    // above 200k: 6e-06 / 2.25e-05 / 7.5e-06 / 6e-07 (1h write above 200k: 1.2e-05 = 2 × 6e-06).
    ModelPrice {
        model: "claude-sonnet-4-5",
        base: rates(3.0, 15.0, 3.75, 0.3),
        above_200k: Some(rates(6.0, 22.5, 7.5, 0.6)),
    },
    // LiteLLM `claude-sonnet-4-20250514` (alias `claude-4-sonnet-20250514`): as Sonnet 4.5.
    ModelPrice {
        model: "claude-sonnet-4",
        base: rates(3.0, 15.0, 3.75, 0.3),
        above_200k: Some(rates(6.0, 22.5, 7.5, 0.6)),
    },
    // LiteLLM `claude-3-7-sonnet-20250219`.
    ModelPrice {
        model: "claude-3-7-sonnet",
        base: rates(3.0, 15.0, 3.75, 0.3),
        above_200k: None,
    },
    // LiteLLM `claude-haiku-4-5` / `-20251001`: 1e-06 / 5e-06 / 1.25e-06 / 1e-07.
    ModelPrice {
        model: "claude-haiku-4-5",
        base: rates(1.0, 5.0, 1.25, 0.1),
        above_200k: None,
    },
    // Anthropic's published table (Haiku 3.5: $0.80 / $4 / $1 / $0.08; 1h write $1.60).
    ModelPrice {
        model: "claude-3-5-haiku",
        base: rates(0.8, 4.0, 1.0, 0.08),
        above_200k: None,
    },
];

/// Every row of the price table.
pub fn table() -> &'static [ModelPrice] {
    PRICES
}

/// Finds the price of `model`, as Claude Code records it in a transcript.
///
/// A trailing release date (`-YYYYMMDD`, or `@YYYYMMDD` as Vertex spells it) is ignored, so
/// `claude-sonnet-4-5-20250929` is priced as `claude-sonnet-4-5`; the rest must match a row
/// exactly (`claude-opus-4-1` is never priced as `claude-opus-4`). Returns `None` for a model
/// the table does not know.
pub fn lookup(model: &str) -> Option<&'static ModelPrice> {
    let base = strip_date_suffix(model);
    PRICES.iter().find(|price| price.model == base)
}

/// `model` without a trailing `-YYYYMMDD` / `@YYYYMMDD` (8 ASCII digits).
fn strip_date_suffix(model: &str) -> &str {
    let bytes = model.as_bytes();
    if bytes.len() > 9 {
        let (head, tail) = bytes.split_at(bytes.len() - 9);
        if matches!(tail[0], b'-' | b'@') && tail[1..].iter().all(u8::is_ascii_digit) {
            // The split is on an ASCII byte, so it is a char boundary.
            return model.get(..head.len()).unwrap_or(model);
        }
    }
    model
}

/// Cost of one response, in billionths of a US dollar (nano-USD), rounded to the nearest.
///
/// Every rate in the table is a whole number of cents per million tokens, so the cost of any
/// token count is a whole number of nano-USD (1 token at $0.01/M = 10 nano-USD) and sums of
/// these values are exact.
pub fn cost_nano_usd(price: &ModelPrice, tokens: &TokenCounts) -> u64 {
    let base = &price.base;
    let above = price.above_200k.as_ref();
    let usd_per_million = tiered(tokens.input, base.input, above.map(|a| a.input))
        + tiered(tokens.output, base.output, above.map(|a| a.output))
        + tiered(
            tokens.cache_write_5m,
            base.cache_write_5m,
            above.map(|a| a.cache_write_5m),
        )
        + tiered(
            tokens.cache_write_1h,
            base.cache_write_1h,
            above.map(|a| a.cache_write_1h),
        )
        + tiered(
            tokens.cache_read,
            base.cache_read,
            above.map(|a| a.cache_read),
        );
    // tokens × (USD per million tokens) = micro-USD; × 1000 = nano-USD.
    let nano = (usd_per_million * 1000.0).round();
    if nano.is_finite() && nano > 0.0 {
        // Finite, positive and rounded; `as` saturates only beyond 1.8e10 USD.
        nano as u64
    } else {
        0
    }
}

/// `tokens` priced marginally: up to the threshold at `base`, the rest at `above` when known.
/// Result in tokens × USD per million tokens (micro-USD); token counts stay far below 2^53.
fn tiered(tokens: u64, base: f64, above: Option<f64>) -> f64 {
    match above {
        Some(above) if tokens > LONG_CONTEXT_THRESHOLD_TOKENS => {
            LONG_CONTEXT_THRESHOLD_TOKENS as f64 * base
                + (tokens - LONG_CONTEXT_THRESHOLD_TOKENS) as f64 * above
        }
        _ => tokens as f64 * base,
    }
}

/// Converts nano-USD to US cents (1 cent = 10,000,000 nano-USD); exact below 2^53 nano-USD
/// (about 90 million USD).
pub fn nano_usd_to_cents(nano: u64) -> f64 {
    nano as f64 / 10_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, output: u64, w5: u64, w1: u64, read: u64) -> TokenCounts {
        TokenCounts {
            input,
            output,
            cache_read: read,
            cache_write_5m: w5,
            cache_write_1h: w1,
        }
    }

    #[test]
    fn dated_ids_match_their_family_and_nothing_else() {
        assert_eq!(
            lookup("claude-sonnet-4-5-20250929").map(|p| p.model),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            lookup("claude-haiku-4-5-20251001").map(|p| p.model),
            Some("claude-haiku-4-5")
        );
        assert_eq!(
            lookup("claude-opus-4-20250514").map(|p| p.model),
            Some("claude-opus-4")
        );
        assert_eq!(
            lookup("claude-opus-4-1-20250805").map(|p| p.model),
            Some("claude-opus-4-1")
        );
        assert_eq!(
            lookup("claude-opus-4-5-20251101").map(|p| p.model),
            Some("claude-opus-4-5")
        );
        assert_eq!(
            lookup("claude-sonnet-4-20250514").map(|p| p.model),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            lookup("claude-3-5-haiku-20241022").map(|p| p.model),
            Some("claude-3-5-haiku")
        );
        assert_eq!(
            lookup("claude-opus-4-1@20250805").map(|p| p.model),
            Some("claude-opus-4-1")
        );
        assert_eq!(
            lookup("claude-opus-4-6").map(|p| p.model),
            Some("claude-opus-4-6")
        );
        // Prefixes and near misses stay unknown rather than borrowing a sibling's price.
        assert!(lookup("claude-opus-4-9").is_none());
        assert!(lookup("claude-opus").is_none());
        assert!(lookup("<synthetic>").is_none());
        assert!(lookup("gpt-5").is_none());
        assert!(lookup("claude-opus-4-6-2026").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn required_models_are_in_the_table_with_1h_write_twice_input() {
        for model in [
            "claude-opus-4-6",
            "claude-opus-4-5",
            "claude-opus-4-1",
            "claude-opus-4",
            "claude-sonnet-4-5",
            "claude-sonnet-4",
            "claude-haiku-4-5",
            "claude-3-5-haiku",
        ] {
            let price = lookup(model).unwrap_or_else(|| panic!("{model} missing"));
            assert!((price.base.cache_write_1h - 2.0 * price.base.input).abs() < 1e-12);
            // Every rate is a whole number of cents per million tokens (exact nano-USD sums).
            for rate in [
                price.base.input,
                price.base.output,
                price.base.cache_write_5m,
                price.base.cache_write_1h,
                price.base.cache_read,
            ] {
                assert!(
                    ((rate * 100.0).round() - rate * 100.0).abs() < 1e-9,
                    "{model} {rate}"
                );
            }
        }
    }

    #[test]
    fn short_fixture_response_costs_what_ccusage_says() {
        // short.jsonl's one response: ccusage reports $0.1444475.
        let price = lookup("claude-opus-4-6").unwrap();
        let cost = cost_nano_usd(price, &tokens(3, 13, 0, 13_835, 11_515));
        assert_eq!(cost, 144_447_500);
        assert!((nano_usd_to_cents(cost) - 14.444_75).abs() < 1e-12);
    }

    #[test]
    fn sonnet_buckets_above_200k_are_priced_marginally() {
        let price = lookup("claude-sonnet-4-5-20250929").unwrap();
        // 250k input: 200k × $3/M + 50k × $6/M = $0.60 + $0.30.
        assert_eq!(
            cost_nano_usd(price, &tokens(250_000, 0, 0, 0, 0)),
            900_000_000
        );
        // Exactly at the threshold: base rate only.
        assert_eq!(
            cost_nano_usd(price, &tokens(200_000, 0, 0, 0, 0)),
            600_000_000
        );
        // 1h writes above 200k at 2 × $6/M; cache reads at $0.60/M.
        assert_eq!(
            cost_nano_usd(price, &tokens(0, 0, 0, 300_000, 300_000)),
            // 200k×6 + 100k×12 = 2.4 USD; 200k×0.3 + 100k×0.6 = 0.12 USD.
            2_520_000_000
        );
        // The threshold is per bucket: 150k input + 150k cache read stays at base rates.
        assert_eq!(
            cost_nano_usd(price, &tokens(150_000, 0, 0, 0, 150_000)),
            450_000_000 + 45_000_000
        );
    }

    #[test]
    fn opus_4_6_has_no_long_context_tier() {
        let price = lookup("claude-opus-4-6").unwrap();
        assert_eq!(
            cost_nano_usd(price, &tokens(300_000, 0, 0, 0, 0)),
            1_500_000_000
        );
    }

    #[test]
    fn sub_cent_rates_are_exact() {
        let price = lookup("claude-3-5-haiku").unwrap();
        // 1 token read at $0.08/M = 80 nano-USD; 1 token 1h write at $1.60/M = 1600.
        assert_eq!(cost_nano_usd(price, &tokens(0, 0, 0, 0, 1)), 80);
        assert_eq!(cost_nano_usd(price, &tokens(0, 0, 0, 1, 0)), 1_600);
        assert_eq!(cost_nano_usd(price, &TokenCounts::default()), 0);
    }

    #[test]
    fn token_count_arithmetic_saturates() {
        let mut a = tokens(1, 2, 3, 4, 5);
        a.add(&tokens(1, 1, 1, 1, 1));
        assert_eq!(a, tokens(2, 3, 4, 5, 6));
        assert_eq!(
            tokens(1, 5, 0, 0, 0).saturating_diff(&tokens(3, 2, 0, 0, 0)),
            tokens(0, 3, 0, 0, 0)
        );
        assert!(TokenCounts::default().is_zero());
    }
}
