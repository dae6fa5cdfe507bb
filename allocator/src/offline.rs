//! Offline planning: a good packing of a static set of claims (e.g. today's Services).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::allocator::Allocator;
use crate::config::{Budget, Config};
use crate::decision::{Decision, Event, PendingReason};
use crate::error::Error;
use crate::model::{Claim, ClaimId, LbId, Listeners, Time};
use crate::profile::LbProfile;
use crate::shell::{Reports, Shell};

/// A claim and its listeners in a plan.
pub type PlannedClaim = (ClaimId, Listeners);

/// A claim the plan cannot place, with why in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    /// The claim.
    pub claim: ClaimId,
    /// Why, machine-readable.
    pub reason: PendingReason,
    /// Why, for people.
    pub message: String,
}

/// A packing of a static set of claims.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OfflinePlan {
    /// Each LB with its claims and their listeners, in LB order.
    pub lbs: Vec<(LbId, Vec<PlannedClaim>)>,
    /// Claims that cannot be placed at all, in input order.
    pub unplaced: Vec<Unplaced>,
}

/// The planning shell: LBs are ready at once; it keeps the last reason each claim waits.
#[derive(Default)]
struct Planner {
    waiting: BTreeMap<ClaimId, (PendingReason, String)>,
}

impl Shell for Planner {
    fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports<'_>) {
        match d {
            Decision::CreateLb { lb, .. } => reports.report(Event::LbReady(lb)),
            Decision::Pending {
                claim,
                reason,
                message,
            } => {
                self.waiting.insert(claim, (reason, message));
            }
            Decision::Assign { claim, .. } => {
                self.waiting.remove(&claim);
            }
            Decision::Migrate { .. } | Decision::Release { .. } | Decision::DeleteLb { .. } => {}
        }
    }
}

/// Packs `claims` onto as few LBs of `profile` as it can: claims with the most contended
/// fixed listeners first (like DSatur colouring the conflict graph), then the largest,
/// each onto the fullest LB that takes it (best fit decreasing).
pub fn plan_offline(claims: &[Claim], profile: &LbProfile) -> Result<OfflinePlan, Error> {
    let mut demand: HashMap<_, usize> = HashMap::new();
    for c in claims {
        for l in c.fixed_listeners() {
            *demand.entry(l).or_default() += 1;
        }
    }
    let mut order: Vec<&Claim> = claims.iter().collect();
    order.sort_by_cached_key(|c| {
        let contention = c.fixed_listeners().map(|l| demand[&l]).max().unwrap_or(0);
        (
            std::cmp::Reverse(contention),
            std::cmp::Reverse(c.listener_count()),
            c.id().clone(),
        )
    });
    let config = Config {
        profiles: vec![profile.clone()],
        policy: "best-fit".parse()?,
        tenants: BTreeMap::new(),
        budget: Budget::default(),
        idle_timeout_ms: u64::MAX,
        max_provisioning: None,
    };
    let mut a = Allocator::new(config)?;
    let mut planner = Planner::default();
    for c in order {
        a.drive(Time(0), Event::ClaimAdded(c.clone()), &mut planner)?;
    }
    let mut plan = OfflinePlan::default();
    for lb in a.lbs() {
        let mut cs: Vec<PlannedClaim> = a
            .claims_on(lb.id)
            .into_iter()
            .filter_map(|id| a.placement(&id).map(|(_, ls)| (id.clone(), ls)))
            .collect();
        cs.sort_by(|x, y| x.0.cmp(&y.0));
        plan.lbs.push((lb.id, cs));
    }
    for c in claims {
        if let Some((reason, message)) = planner.waiting.get(c.id()) {
            plan.unplaced.push(Unplaced {
                claim: c.id().clone(),
                reason: *reason,
                message: message.clone(),
            });
        }
    }
    Ok(plan)
}
