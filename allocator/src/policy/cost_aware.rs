//! `cost-aware`: opens the LB type that is cheapest for the expected demand.

use std::sync::Arc;

use super::{Param, Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "cost-aware",
    aliases: &[],
    about: "best fit; new LBs of the profile cheapest for the expected demand",
    param: Some(Param {
        name: "expected listeners (0 = estimate from waiting claims)",
        default: 0,
        min: 0,
        max: u32::MAX,
    }),
    build: |n| {
        Arc::new(CostAware {
            expected_listeners: n.unwrap_or(0),
        })
    },
};

/// Best fit among existing LBs; a new LB gets the profile minimising the cost of serving
/// the expected demand (`ceil(demand / capacity) * price`), ties to the lower price per
/// listener, then to configuration order. Prices are compared in the configuration's one
/// currency.
#[derive(Debug, Clone, Copy)]
pub struct CostAware {
    /// Listeners expected in the pool; 0 = this claim plus the waiting ones.
    pub expected_listeners: u32,
}

impl Policy for CostAware {
    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: Walks::ByRoom,
            ..PolicyRules::default()
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.fullest_first().find(|&lb| view.fits(lb))
    }

    fn new_lb_profile(&self, view: &View<'_>, eligible: &[usize]) -> usize {
        let own = view.claim().listener_count();
        let demand = if self.expected_listeners > 0 {
            self.expected_listeners.max(own)
        } else {
            own.saturating_add(view.pending_listeners())
        };
        let profiles = view.profiles();
        let cost = |i: usize| {
            let p = &profiles[i];
            let n = demand.div_ceil(p.max_listeners).max(1);
            (f64::from(n) * p.price_per_hour(), p.price_per_listener(), i)
        };
        eligible
            .iter()
            .map(|&i| cost(i))
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .map_or(eligible[0], |(_, _, i)| i)
    }
}
