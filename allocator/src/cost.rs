//! Cost: the one definition of what LBs cost and of the one-LB-per-Service baseline.
//!
//! **Cost.** An LB is billed at its profile's [`LbProfile::price_per_hour`] from the moment
//! it is asked for until its deletion is asked for (a draining LB is no longer billed).
//!
//! **Baseline.** What one LB per Service would cost: for every placed claim, one LB of the
//! first profile that can hold it (the LB the `dedicated` policy opens), billed while the
//! claim is placed. Savings compare like with like — only what was served counts on both
//! sides, so a policy gains nothing by leaving claims waiting — and the `dedicated` policy
//! itself saves exactly nothing.
//!
//! Both are kept as exact integer sums (nano-units of the currency per hour), so adding and
//! removing the same claims leaves no rounding drift.

use crate::allocator::Allocator;
use crate::config::Config;
use crate::model::Claim;
use crate::profile::LbProfile;

/// A price per hour in nano-units of its currency.
pub(crate) fn nanos(price_per_hour: f64) -> u128 {
    (price_per_hour * 1e9).round().max(0.0) as u128
}

impl Config {
    /// The profile one LB per Service would give this claim: the first that can hold it.
    pub fn dedicated_profile(&self, claim: &Claim) -> Option<&LbProfile> {
        let eligible = self.eligible_profiles(claim).ok()?;
        eligible.first().map(|&i| &self.profiles[i])
    }

    /// What one LB per Service costs per hour for this claim (0 when no profile can hold
    /// it: a claim nobody can serve costs nothing on either side).
    pub fn dedicated_price_per_hour(&self, claim: &Claim) -> f64 {
        self.dedicated_profile(claim)
            .map_or(0.0, LbProfile::price_per_hour)
    }
}

impl Allocator {
    /// Cost per hour of the billed LBs (provisioning or ready), in the configuration's
    /// currency. Priced in the baseline's nano-units, so that where the LBs are the
    /// baseline's (the `dedicated` policy) the two are the same number, not two roundings
    /// of it.
    pub fn cost_per_hour(&self) -> f64 {
        let nanos: u128 = self
            .totals
            .billed_per_profile
            .iter()
            .zip(&self.config.profiles)
            .map(|(&n, p)| u128::from(n) * nanos(p.price_per_hour()))
            .sum();
        nanos as f64 / 1e9
    }

    /// What one LB per placed claim would cost per hour (the baseline savings are measured
    /// against), in the configuration's currency.
    pub fn baseline_per_hour(&self) -> f64 {
        self.totals.baseline_nanos as f64 / 1e9
    }
}
