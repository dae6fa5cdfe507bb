//! Offline planning: a good packing of a static set of claims (e.g. today's Services).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::allocator::Allocator;
use crate::config::Config;
use crate::decision::{Event, PendingReason};
use crate::error::Error;
use crate::model::{Claim, ClaimId, LbId, Listener, Time};
use crate::policy::PolicyKind;
use crate::profile::LbProfile;

/// A claim and its listeners in a plan.
pub type PlannedClaim = (ClaimId, Vec<Listener>);

/// A packing of a static set of claims.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OfflinePlan {
    /// Each LB with its claims and their listeners, in LB order.
    pub lbs: Vec<(LbId, Vec<PlannedClaim>)>,
    /// Claims that cannot be placed at all, with why.
    pub unplaced: Vec<(ClaimId, PendingReason)>,
}

/// Packs `claims` onto as few LBs of `profile` as it can: claims with the most contended
/// fixed listeners first (like DSatur colouring the conflict graph), then the largest,
/// each onto the fullest LB that takes it (best fit decreasing).
pub fn plan_offline(claims: &[Claim], profile: &LbProfile) -> Result<OfflinePlan, Error> {
    let mut demand: HashMap<Listener, usize> = HashMap::new();
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
            c.id.clone(),
        )
    });
    let mut config = Config {
        profiles: vec![profile.clone()],
        ..Config::with_builtin("aws-nlb", PolicyKind::BestFit)?
    };
    config.idle_timeout_ms = u64::MAX;
    let mut a = Allocator::new(config)?;
    for c in order {
        a.handle(Time(0), Event::ClaimAdded(c.clone()))?;
    }
    let mut plan = OfflinePlan::default();
    for lb in a.lbs() {
        let mut cs: Vec<PlannedClaim> = Vec::new();
        for (_, id) in &lb.listeners {
            if !cs.iter().any(|(c, _)| c == id)
                && let Some((_, ls)) = a.placement(id)
            {
                cs.push((id.clone(), ls.to_vec()));
            }
        }
        cs.sort_by(|x, y| x.0.cmp(&y.0));
        plan.lbs.push((lb.id, cs));
    }
    for (c, p) in a.claims() {
        if let Err(r) = p {
            plan.unplaced.push((c.id.clone(), r));
        }
    }
    Ok(plan)
}
