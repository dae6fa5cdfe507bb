//! Fairness measures: weighted max-min fair shares and Jain's index.

use std::collections::BTreeMap;

use crate::model::TenantId;

/// Weighted max-min fair shares of `capacity` among tenants with `(weight, demand)`:
/// water-filling — no tenant gets more than it asks, and what one cannot use is split
/// among the others by weight.
pub fn fair_shares(
    capacity: f64,
    demands: &BTreeMap<TenantId, (u32, f64)>,
) -> BTreeMap<TenantId, f64> {
    let mut share: BTreeMap<TenantId, f64> = demands.keys().map(|t| (t.clone(), 0.0)).collect();
    let mut left = capacity.max(0.0);
    let mut open: Vec<&TenantId> = demands.keys().filter(|t| demands[*t].1 > 0.0).collect();
    while left > 1e-12 && !open.is_empty() {
        let weights: f64 = open.iter().map(|t| f64::from(demands[*t].0.max(1))).sum();
        let per_weight = left / weights;
        let mut next = Vec::new();
        let mut used = 0.0;
        for t in open {
            let (w, d) = demands[t];
            let give = (per_weight * f64::from(w.max(1))).min(d - share[t]);
            *share.get_mut(t).unwrap_or_else(|| unreachable!()) += give;
            used += give;
            if d - share[t] > 1e-12 {
                next.push(t);
            }
        }
        left -= used;
        if used <= 1e-12 {
            break;
        }
        open = next;
    }
    share
}

/// Jain's fairness index of `xs`: 1 when all equal, 1/n when one has everything.
/// Returns 1 for an empty or all-zero input.
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        1.0
    } else {
        sum * sum / (xs.len() as f64 * sq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn water_filling_gives_unused_share_to_others() {
        let d: BTreeMap<_, _> = [
            (t("a"), (1, 2.0)),
            (t("b"), (1, 100.0)),
            (t("c"), (2, 100.0)),
        ]
        .into();
        let s = fair_shares(32.0, &d);
        assert!((s[&t("a")] - 2.0).abs() < 1e-9);
        assert!((s[&t("b")] - 10.0).abs() < 1e-9);
        assert!((s[&t("c")] - 20.0).abs() < 1e-9);
    }

    #[test]
    fn jain_bounds() {
        assert!((jain_index(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain_index(&[3.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}
