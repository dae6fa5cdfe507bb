//! `dedicated`: one LB per claim — what Kubernetes does today; the baseline for savings.

use std::sync::Arc;

use super::{IdleLbs, Policy, PolicyRules, Registration, View, Walks};
use crate::lb::Pooling;
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "dedicated",
    aliases: &[],
    about: "one LB per claim, as Kubernetes does today: the savings baseline",
    param: None,
    build: |_| Arc::new(Dedicated),
};

/// One LB per claim, deleted as soon as its claim goes — what Kubernetes does for Services
/// of type LoadBalancer, so its cost is exactly the savings baseline (see [`crate::cost`]).
#[derive(Debug, Clone, Copy)]
pub struct Dedicated;

impl Policy for Dedicated {
    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        // Every LB holds one claim at most and empty ones are deleted at once: nothing is
        // offered but an LB that emptied in this very event.
        view.emptiest_first().find(|&lb| view.fits(lb))
    }

    fn rules(&self) -> PolicyRules {
        PolicyRules {
            pooling: Pooling::EveryClaimAlone,
            idle_lbs: IdleLbs::DeleteAtOnce,
            walks: Walks::ByRoom,
            ..PolicyRules::default()
        }
    }
}
