//! Fairness: the one definition of a tenant's fair share, and Jain's index.
//!
//! **A tenant's fair share** is its weighted max-min fair share of the listeners in use
//! ([`fair_shares`], water-filling): every tenant asks for what it holds plus what its
//! waiting claims ask; no tenant gets more than it asks, and what one does not use is split
//! among the others in proportion to their weights.
//!
//! Admission realises it by progressive filling: when waiting claims are retried, the
//! next is the claim that leaves its tenant holding the fewest listeners per unit of weight
//! ([`goes_before`]: the smallest finish tag of weighted fair queueing, D'Hondt's rule for
//! seats). Under a binding budget a tenant never falls more than one claim below its fair
//! share, unless none of its claims fits in the room left (the model test checks it). The
//! simulator reports each tenant's time-averaged fair share beside what it held, and the
//! dashboard shows [`crate::Allocator::fair_shares`].

use std::collections::BTreeMap;

use crate::Usage;
use crate::allocator::Allocator;
use crate::model::TenantId;

/// Whether a claim asking `a.1` listeners of a tenant holding `a.0` with weight `a.2` is
/// admitted before one asking `b.1` of a tenant holding `b.0` with weight `b.2`: the one
/// that leaves its tenant holding fewer listeners per unit of weight first; ties keep order.
///
/// ```
/// use sharedlb_allocator::fairness::goes_before;
/// assert!(goes_before((0, 1, 3), (0, 2, 1)));   // 1/3 < 2/1: the heavier tenant first
/// assert!(goes_before((2, 1, 1), (6, 1, 2)));   // 3/1 < 7/2
/// assert!(!goes_before((4, 2, 2), (2, 1, 1)));  // 6/2 = 3/1: the first in order stays
/// ```
pub fn goes_before(a: (u32, u32, u32), b: (u32, u32, u32)) -> bool {
    let finish = |held: u32, ask: u32| u128::from(u64::from(held) + u64::from(ask));
    // x/wx < y/wy  ⇔  x·wy < y·wx
    finish(a.0, a.1) * u128::from(b.2) < finish(b.0, b.1) * u128::from(a.2)
}

/// The water level of the fair shares at one moment: a tenant's fair share is the least
/// of its demand and its weight times the level ([`Allocator::fair_share`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FairLevel(f64);

/// What a tenant asks for: what it holds plus what its waiting claims ask.
fn demand(u: &Usage) -> f64 {
    f64::from(u.listeners) + f64::from(u.waiting_listeners)
}

impl Allocator {
    /// Each tenant's fair share of the listeners in use now (see the module docs): demand
    /// is what it holds plus what its waiting claims ask for.
    pub fn fair_shares(&self) -> BTreeMap<TenantId, f64> {
        let level = self.fair_level();
        self.tenants()
            .map(|(t, u)| (t.clone(), self.fair_share(level, t, u)))
            .collect()
    }

    /// The water level of the listeners in use now, worked out once for every tenant's
    /// [`Allocator::fair_share`]: a shell taking shares at every event need not build
    /// [`Allocator::fair_shares`]' map. Tenants asking for nothing take no part (they
    /// would take nothing).
    pub fn fair_level(&self) -> FairLevel {
        let capacity = self.listeners_used() as f64;
        // When the listeners in use cover every demand, the water never stops: what
        // `WaterFill::level` finds, without its sort. Demands are whole numbers, so their
        // sum is exact in any order.
        let asked: f64 = self.usage.weighted().map(|(_, u, _)| demand(u)).sum();
        if capacity >= asked {
            return FairLevel(f64::INFINITY);
        }
        // In name order, as the level was always summed; weights kept by tenant number.
        let fill = WaterFill::new(self.usage.weighted().filter_map(|(_, u, w)| {
            let d = demand(u);
            (d > 0.0).then_some((w, d))
        }));
        FairLevel(fill.level(capacity))
    }

    /// Tenant `t`'s fair share at `level`, given its usage `u` (as [`Allocator::tenants`]
    /// gives it).
    pub fn fair_share(&self, level: FairLevel, t: &TenantId, u: &Usage) -> f64 {
        share_at(level, self.config().tenant(t).weight, u)
    }

    /// [`Allocator::fair_share`] of the tenant at `place` in
    /// [`Allocator::tenants_by_arrival`], without looking its name up: what a shell
    /// taking every tenant's share at every event calls.
    ///
    /// ```
    /// use sharedlb_allocator::*;
    ///
    /// struct Nothing;
    /// impl Shell for Nothing {
    ///     fn carry_out(&mut self, _: Time, _: Decision, _: &mut Reports<'_>) {}
    /// }
    /// // One LB of 4 listeners at most; "big" weighs 3.
    /// let mut config = Config::with_builtin("aws-nlb", "best-fit".parse()?)?;
    /// config.profiles[0].max_listeners = 4;
    /// config.budget.max_lbs = Some(1);
    /// let heavy = TenantConfig { weight: 3, quota: Quota::default() };
    /// config.tenants.insert(TenantId::new("big")?, heavy);
    /// let mut alloc = Allocator::new(config)?;
    /// for id in ["small/a", "big/b"] {
    ///     let claim = Claim::new(id, vec![PortRequest::Any(Protocol::Tcp); 4])?;
    ///     alloc.drive(Time(0), Event::ClaimAdded(claim), &mut Nothing)?;
    /// }
    /// // small's claim holds the LB's 4 listeners, big's waits: both ask 4, and the 4 in
    /// // use are shared 1 : 3 by weight.
    /// let level = alloc.fair_level();
    /// let shares: Vec<f64> =
    ///     (0..2).map(|place| alloc.fair_share_by_arrival(level, place)).collect();
    /// assert_eq!(shares, [1.0, 3.0]);
    /// for (place, (t, u)) in alloc.tenants_by_arrival().enumerate() {
    ///     assert_eq!(alloc.fair_share_by_arrival(level, place), alloc.fair_share(level, t, u));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fair_share_by_arrival(&self, level: FairLevel, place: usize) -> f64 {
        let (u, w) = self.usage.weighted_by_number(place);
        share_at(level, w, u)
    }
}

/// A tenant's share at `level`, of `weight` (0 counts as 1) and usage `u`: the one rule
/// [`Allocator::fair_share`] and [`Allocator::fair_share_by_arrival`] both apply.
fn share_at(level: FairLevel, weight: u32, u: &Usage) -> f64 {
    demand(u).min(f64::from(weight.max(1)) * level.0)
}

/// Weighted max-min fair shares of `capacity` among tenants with `(weight, demand)`:
/// water-filling — no tenant gets more than it asks, and what one cannot use is split
/// among the others by weight.
///
/// ```
/// use std::collections::BTreeMap;
/// use sharedlb_allocator::{TenantId, fairness::fair_shares};
/// let t = |s: &str| TenantId::new(s).unwrap();
/// let d: BTreeMap<_, _> = [(t("a"), (1, 2.0)), (t("b"), (1, 100.0)), (t("c"), (2, 100.0))].into();
/// let s = fair_shares(32.0, &d);
/// assert_eq!((s[&t("a")], s[&t("b")], s[&t("c")]), (2.0, 10.0, 20.0));
/// ```
pub fn fair_shares(
    capacity: f64,
    demands: &BTreeMap<TenantId, (u32, f64)>,
) -> BTreeMap<TenantId, f64> {
    let fill = WaterFill::new(demands.values().copied());
    demands
        .keys()
        .enumerate()
        .map(|(i, t)| (t.clone(), fill.share(i, capacity)))
        .collect()
}

/// Water-filling over fixed demands, answering "what is tenant i's share of capacity C"
/// in logarithmic time for any C: the one implementation of the fair share.
#[derive(Clone, Debug)]
pub(crate) struct WaterFill {
    /// (weight, demand) per tenant, in the order given.
    tenants: Vec<(f64, f64)>,
    /// The demand and weight sums below and above each breakpoint (demand/weight,
    /// ascending).
    demand_below: Vec<f64>,
    weight_above: Vec<f64>,
    /// What is handed out when the water reaches each breakpoint (non-decreasing).
    filled_at: Vec<f64>,
    total: f64,
}

impl WaterFill {
    /// Precomputes the breakpoints of `(weight, demand)` pairs (weights of 0 count as 1).
    pub fn new(tenants: impl Iterator<Item = (u32, f64)>) -> WaterFill {
        let tenants: Vec<(f64, f64)> = tenants
            .map(|(w, d)| (f64::from(w.max(1)), d.max(0.0)))
            .collect();
        let mut order: Vec<(f64, f64)> = tenants.iter().map(|&(w, d)| (d / w, w)).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = order.len();
        let mut demand_below = vec![0.0; n + 1];
        let mut weight_above = vec![0.0; n + 1];
        for k in 0..n {
            demand_below[k + 1] = demand_below[k] + order[k].0 * order[k].1;
        }
        for k in (0..n).rev() {
            weight_above[k] = weight_above[k + 1] + order[k].1;
        }
        let filled_at = (0..n)
            .map(|k| demand_below[k] + order[k].0 * weight_above[k])
            .collect();
        WaterFill {
            total: demand_below[n],
            demand_below,
            weight_above,
            filled_at,
            tenants,
        }
    }

    /// The water level λ for `capacity`: each tenant gets min(demand, weight·λ).
    pub fn level(&self, capacity: f64) -> f64 {
        if capacity >= self.total {
            return f64::INFINITY;
        }
        let capacity = capacity.max(0.0);
        // The breakpoints the water reaches: those tenants are fully served.
        let k = self.filled_at.partition_point(|&f| f <= capacity);
        if self.weight_above[k] <= 0.0 {
            return f64::INFINITY;
        }
        (capacity - self.demand_below[k]) / self.weight_above[k]
    }

    /// Tenant `i`'s share of `capacity`.
    pub fn share(&self, i: usize, capacity: f64) -> f64 {
        let (w, d) = self.tenants[i];
        d.min(w * self.level(capacity))
    }
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
    use proptest::prelude::*;

    /// Water-filling the slow way, as the reference: raise everyone's level in rounds.
    fn by_rounds(capacity: f64, tenants: &[(u32, f64)]) -> Vec<f64> {
        let mut share = vec![0.0; tenants.len()];
        let mut left = capacity.max(0.0);
        let mut open: Vec<usize> = (0..tenants.len()).filter(|&i| tenants[i].1 > 0.0).collect();
        while left > 1e-12 && !open.is_empty() {
            let weights: f64 = open.iter().map(|&i| f64::from(tenants[i].0.max(1))).sum();
            let per_weight = left / weights;
            let mut next = Vec::new();
            let mut used = 0.0;
            for i in open {
                let (w, d) = tenants[i];
                let give = (per_weight * f64::from(w.max(1))).min(d - share[i]);
                share[i] += give;
                used += give;
                if d - share[i] > 1e-12 {
                    next.push(i);
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

    proptest! {
        #[test]
        fn water_fill_matches_the_rounds(
            tenants in prop::collection::vec((1u32..6, 0u32..40), 0..8),
            capacity in 0u32..200,
        ) {
            let t: Vec<(u32, f64)> = tenants.iter().map(|&(w, d)| (w, f64::from(d))).collect();
            let fill = WaterFill::new(t.iter().copied());
            let want = by_rounds(f64::from(capacity), &t);
            for (i, w) in want.iter().enumerate() {
                let got = fill.share(i, f64::from(capacity));
                prop_assert!((got - w).abs() < 1e-6, "tenant {i}: {got} vs {w} ({t:?}, {capacity})");
            }
        }
    }

    #[test]
    fn jain_bounds() {
        assert!((jain_index(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain_index(&[3.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}
