//! Small statistics for benchmark samples.

use std::time::Duration;

/// The median of `samples` (the mean of the middle two for an even count); zero when empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The 90th percentile of `samples` (nearest rank: the smallest sample at least 90% of them do
/// not exceed); zero when empty.
pub fn p90(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[(n * 9).div_ceil(10) - 1],
    }
}

/// Milliseconds with one decimal, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = Duration::from_millis;
        assert_eq!(median(&[d(5), d(1), d(3)]), d(3));
        assert_eq!(
            median(&[d(4), d(1), d(3), d(2)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let d = Duration::from_millis;
        let ten: Vec<Duration> = (1..=10).rev().map(d).collect();
        assert_eq!(p90(&ten), d(9));
        assert_eq!(p90(&[d(7)]), d(7));
        assert_eq!(p90(&(1..=20).map(d).collect::<Vec<_>>()), d(18));
        assert_eq!(p90(&[]), Duration::ZERO);
    }
}
