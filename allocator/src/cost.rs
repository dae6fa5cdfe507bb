//! Cost: the one definition of what LBs cost and of the one-LB-per-Service baseline.
//!
//! **Cost.** An LB is billed at its profile's [`LbProfile::price_per_hour`] from the moment
//! it is asked for until its deletion is asked for (a draining LB is no longer billed).
//! For a profile with a monthly cap that rate is the cap spread over the month, what an LB
//! kept all month costs: the rate budgets and cost-aware packing decide by. A shell that
//! reports a bill meters capped LBs one by one with [`LbProfile::month_bill`] and takes
//! only [`Allocator::uncapped_cost_per_hour`] as a rate (the simulator does).
//!
//! **Baseline.** What one LB per Service would cost: for every placed claim, one LB of the
//! first profile that can hold it (the LB the `dedicated` policy opens), billed while the
//! claim is placed. Savings compare like with like — only what was served counts on both
//! sides, so a policy gains nothing by leaving claims waiting — and the `dedicated` policy
//! itself saves exactly nothing.
//!
//! Both are kept as counts per profile (LBs billed; placed claims whose one LB would be of
//! that profile), so adding and removing the same claims leaves no rounding drift, and both
//! are priced by the one formula (`Allocator::price_per_hour`, private): where the LBs are
//! the baseline's (the `dedicated` policy) the two are the same number.

use crate::allocator::Allocator;
use crate::config::Config;
use crate::model::Claim;
use crate::profile::LbProfile;

impl Config {
    /// The profile one LB per Service would give this claim: the first that can hold it.
    pub fn dedicated_profile(&self, claim: &Claim) -> Option<&LbProfile> {
        self.dedicated_profile_index(claim)
            .map(|i| &self.profiles[i])
    }

    /// [`Config::dedicated_profile`] as an index into the profiles.
    pub(crate) fn dedicated_profile_index(&self, claim: &Claim) -> Option<usize> {
        dedicated_of(&self.eligible_profiles(claim).ok()?)
    }

    /// What one LB per Service costs per hour for this claim (0 when no profile can hold
    /// it: a claim nobody can serve costs nothing on either side).
    pub fn dedicated_price_per_hour(&self, claim: &Claim) -> f64 {
        self.dedicated_profile(claim)
            .map_or(0.0, LbProfile::price_per_hour)
    }
}

/// Which profiles' LBs a price per hour covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Priced {
    All,
    /// Those without a monthly cap.
    Uncapped,
}

/// The baseline's profile among those that can hold a claim (in configuration order):
/// the first, the one the `dedicated` policy opens.
fn dedicated_of(eligible: &[usize]) -> Option<usize> {
    eligible.first().copied()
}

impl Allocator {
    /// [`Config::dedicated_profile_index`], from the eligible profiles the claim's kept
    /// body records.
    pub(crate) fn dedicated_profile_index(&self, claim: &Claim) -> Option<usize> {
        dedicated_of(&self.eligible_profiles(claim).ok()?)
    }

    /// Cost per hour of the billed LBs (provisioning or ready), in the configuration's
    /// currency.
    pub fn cost_per_hour(&self) -> f64 {
        self.price_per_hour(&self.totals.billed_per_profile, Priced::All)
    }

    /// What one LB per placed claim would cost per hour (the baseline savings are measured
    /// against), in the configuration's currency.
    pub fn baseline_per_hour(&self) -> f64 {
        self.price_per_hour(&self.totals.baseline_per_profile, Priced::All)
    }

    /// [`Allocator::cost_per_hour`] of the LBs of profiles without a monthly cap only: a
    /// shell that bills capped LBs one by one ([`LbProfile::month_bill`]) adds those.
    pub fn uncapped_cost_per_hour(&self) -> f64 {
        self.price_per_hour(&self.totals.billed_per_profile, Priced::Uncapped)
    }

    /// [`Allocator::baseline_per_hour`] of the placed claims whose baseline profile has no
    /// monthly cap only (see [`Allocator::uncapped_cost_per_hour`]).
    pub fn uncapped_baseline_per_hour(&self) -> f64 {
        self.price_per_hour(&self.totals.baseline_per_profile, Priced::Uncapped)
    }

    /// The price per hour of so many LBs of each profile: the one formula cost and
    /// baseline share, so equal counts give equal figures to the last bit.
    fn price_per_hour(&self, per_profile: &[u32], priced: Priced) -> f64 {
        per_profile
            .iter()
            .zip(&self.config.profiles)
            .filter(|(_, p)| priced == Priced::All || p.monthly_cap.is_none())
            .map(|(&n, p)| f64::from(n) * p.price_per_hour())
            .sum()
    }
}
