//! The fixed log-linear latency buckets of `rollup_tool_latency` and `rollup_ingest`
//! (docs/rollups.md, "Latency buckets"): 4 significant bits, as HdrHistogram, so a percentile
//! read from the buckets is within 1/32 (≈ 3.1 %) of the exact nearest-rank value, and exact
//! below 32 ms.

/// Values below this are their own bucket (exact).
const EXACT_BELOW: u64 = 32;

/// The bucket index of a duration of `ms` milliseconds: `0..=975`.
pub(crate) fn bucket_of(ms: u64) -> i32 {
    if ms < EXACT_BELOW {
        // Lossless: under 32.
        return ms as i32;
    }
    let e = 63 - ms.leading_zeros(); // ⌊log2 ms⌋, 5..=63
    let sub = (ms >> (e - 4)) & 15;
    // At most 32 + 58 × 16 + 15 = 975.
    (EXACT_BELOW + u64::from(e - 5) * 16 + sub) as i32
}

/// The half-open range `[lo, hi)` of milliseconds that bucket `index` holds, or `None` for an
/// index [`bucket_of`] never gives.
pub(crate) fn bucket_range(index: i32) -> Option<(u64, u64)> {
    let i = u64::try_from(index).ok()?;
    if i < EXACT_BELOW {
        return Some((i, i + 1));
    }
    let e = (i - EXACT_BELOW) / 16 + 5;
    if e > 63 {
        return None;
    }
    let sub = (i - EXACT_BELOW) % 16;
    let width = 1u64 << (e - 4);
    let lo = (16 + sub) << (e - 4);
    Some((lo, lo.saturating_add(width)))
}

/// The `p`-quantile (`0 < p ≤ 1`) of a histogram given as `(bucket, count)` pairs in any
/// order (repeated buckets are summed), in ms: the midpoint of the bucket that holds the
/// nearest-rank value (`rank = ⌈p × n⌉`), exact below 32 ms. `None` when the histogram is
/// empty.
pub(crate) fn quantile(histogram: &[(i32, i64)], p: f64) -> Option<f64> {
    let mut buckets: Vec<(i32, u64)> = histogram
        .iter()
        .filter(|&&(_, n)| n > 0)
        .map(|&(b, n)| (b, n.unsigned_abs()))
        .collect();
    buckets.sort_unstable_by_key(|&(b, _)| b);
    let total: u64 = buckets.iter().map(|&(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    // Nearest rank, 1-based; at least 1 and at most `total`.
    let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (bucket, n) in buckets {
        seen += n;
        if seen >= rank {
            let (lo, hi) = bucket_range(bucket)?;
            if hi - lo == 1 {
                return Some(lo as f64);
            }
            return Some(lo as f64 + (hi - lo) as f64 / 2.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn small_values_are_exact_and_boundaries_are_where_documented() {
        for v in 0..32 {
            assert_eq!(bucket_of(v), v as i32);
            assert_eq!(bucket_range(v as i32), Some((v, v + 1)));
        }
        assert_eq!(bucket_of(32), 32);
        assert_eq!(bucket_range(32), Some((32, 34)));
        assert_eq!(bucket_of(63), 47);
        assert_eq!(bucket_of(64), 48);
        assert_eq!(bucket_of(u64::MAX), 975);
        assert_eq!(bucket_range(976), None);
        assert_eq!(bucket_range(-1), None);
    }

    #[test]
    fn quantile_of_a_known_histogram() {
        assert_eq!(quantile(&[], 0.5), None);
        // 1..=100 ms, one call each: the exact p50 is 50, p95 95, p99 99.
        let h: Vec<(i32, i64)> = (1..=100).map(|v| (bucket_of(v), 1)).collect();
        for (p, exact) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = quantile(&h, p).unwrap();
            assert!(
                (got - exact).abs() / exact <= 1.0 / 32.0,
                "p{p}: {got} vs {exact}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_value_lies_in_its_bucket(v in any::<u64>()) {
            let (lo, hi) = bucket_range(bucket_of(v)).unwrap();
            prop_assert!(lo <= v && (v < hi || hi == u64::MAX));
        }

        #[test]
        fn quantiles_are_within_the_stated_bound(
            mut values in prop::collection::vec(0u64..10_000_000, 1..400),
            p in 0.01f64..=1.0,
        ) {
            values.sort_unstable();
            let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1] as f64;
            let h: Vec<(i32, i64)> = values.iter().map(|&v| (bucket_of(v), 1)).collect();
            let got = quantile(&h, p).unwrap();
            prop_assert!((got - exact).abs() <= exact / 32.0 + 1e-9, "{got} vs {exact}");
        }
    }
}
