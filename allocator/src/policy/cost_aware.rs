//! `cost-aware`: opens the LB type that is cheapest for the expected demand.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// Best fit among existing LBs; a new LB gets the profile minimising the cost of serving
/// the expected demand (`ceil(demand / capacity) * price`), ties to the lower price per
/// listener, then to configuration order.
#[derive(Debug, Clone, Copy)]
pub struct CostAware {
    /// Listeners expected in the pool; 0 = this claim plus the pending ones.
    pub expected_listeners: u32,
}

impl Policy for CostAware {
    fn kind(&self) -> PolicyKind {
        PolicyKind::CostAware {
            expected_listeners: self.expected_listeners,
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
            own + view.pending_listeners()
        };
        let profiles = &view.alloc.config().profiles;
        let cost = |i: usize| {
            let p = &profiles[i];
            let n = demand.div_ceil(p.max_listeners).max(1);
            (f64::from(n) * p.hourly_price, p.price_per_listener(), i)
        };
        eligible
            .iter()
            .map(|&i| cost(i))
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .map_or(eligible[0], |(_, _, i)| i)
    }
}
