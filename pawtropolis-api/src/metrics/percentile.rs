/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method: the smallest
/// value such that at least p % of the values are at or below it, i.e. the value at rank
/// ⌈p/100 · n⌉ (1-based). `None` for no values.
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    // Integer ceiling keeps 95 % of 20 values at rank 19 exactly (no float rounding).
    let rank = (u64::from(p) * n).div_ceil(100).clamp(1, n);
    sorted.get(rank as usize - 1).copied()
}

/// Arithmetic mean in whole seconds, as the contract shows it (`avg_response_time_s: 1250`,
/// like the percentiles beside it), rounded to the nearest, halves up; `None` for no values.
pub fn mean(values: &[i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
    let n = values.len() as i128;
    // Exact integer rounding: (2·sum + n) / 2n, floored (also for negative sums).
    i64::try_from((2 * sum + n).div_euclid(2 * n)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_by_hand() {
        let v = [15, 20, 35, 40, 50];
        assert_eq!(nearest_rank(&v, 50), Some(35));
        assert_eq!(nearest_rank(&v, 95), Some(50));
        assert_eq!(nearest_rank(&v, 30), Some(20));
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        assert_eq!(nearest_rank(&[], 50), None);
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(nearest_rank(&twenty, 95), Some(19));
        assert_eq!(nearest_rank(&twenty, 50), Some(10));
    }

    #[test]
    fn mean_by_hand() {
        assert_eq!(mean(&[1, 2, 4]), Some(2)); // 2.33
        assert_eq!(mean(&[1, 2]), Some(2)); // 1.5, halves up
        assert_eq!(mean(&[1, 2, 2]), Some(2)); // 1.67
        assert_eq!(mean(&[1000, 2000, 10000]), Some(4333));
        assert_eq!(mean(&[i64::MAX, i64::MAX]), Some(i64::MAX));
        assert_eq!(mean(&[]), None);
    }
}
