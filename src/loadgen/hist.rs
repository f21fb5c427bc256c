//! A fixed-size latency histogram with ~1% relative precision: recording is an index computation
//! and an increment, so measuring does not disturb what is measured, and per-worker histograms
//! merge exactly.

use std::time::Duration;

/// Sub-buckets per power of two, as a bit count: 2^7 = 128 values below the first doubling are
/// exact, and above it each bucket spans 1/64 of its octave (< 1.6% error).
const PRECISION: u32 = 7;
const SUB: u64 = 1 << PRECISION;
const HALF: u64 = SUB / 2;
/// Enough buckets for any `u64` nanosecond value.
const BUCKETS: usize = (SUB + (64 - PRECISION as u64) * HALF) as usize;

/// Latencies in nanoseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as u64; // >= PRECISION
    let shift = msb - (PRECISION as u64 - 1);
    let top = v >> shift; // in [HALF, SUB)
    (SUB + (msb - PRECISION as u64) * HALF + (top - HALF)) as usize
}

/// The largest value that falls in bucket `i`, so percentiles never under-report.
///
/// Computed in `u128`: the last bucket's bound is 2^64 - 1, and `(top + 1) << shift` is 2^64
/// there, which a `u64` shift would silently truncate to zero.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let octave = (i - SUB) / HALF;
    let top = u128::from((i - SUB) % HALF + HALF);
    let shift = octave + 1;
    let bound = ((top + 1) << shift) - 1;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

impl Histogram {
    /// Counts one latency (saturating at `u64::MAX` nanoseconds).
    pub fn record(&mut self, d: Duration) {
        let v = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Adds `other`'s counts to these, exactly (same buckets).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency at percentile `p` (0–100), or zero when nothing was recorded.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(upper(i).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_two_percent() {
        let mut last = 0;
        for v in (0..2_000_000u64)
            .step_by(997)
            .chain([u64::MAX / 3, u64::MAX])
        {
            let i = index(v);
            assert!(i >= last && i < BUCKETS, "{v}");
            last = i;
            let up = upper(i);
            assert!(up >= v, "{v} -> {up}");
            assert!((up - v) as f64 <= v as f64 * 0.02 + 1.0, "{v} -> {up}");
        }
    }

    #[test]
    fn buckets_tile_the_whole_range_without_gaps() {
        for i in 0..BUCKETS {
            let up = upper(i);
            assert_eq!(index(up), i, "bucket {i} ends at {up}");
            if i + 1 < BUCKETS {
                assert_eq!(index(up + 1), i + 1, "bucket {} starts after {up}", i + 1);
            }
        }
        assert_eq!(upper(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.percentile(50.0).as_micros() as i64;
        let p99 = h.percentile(99.0).as_micros() as i64;
        assert!((p50 - 500).abs() <= 10, "{p50}");
        assert!((p99 - 990).abs() <= 20, "{p99}");
        assert_eq!(h.percentile(100.0), Duration::from_micros(1000));
    }
}
