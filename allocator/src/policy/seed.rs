//! `seed`: the 2018 demo's rule — the baseline to beat.

use std::sync::Arc;

use super::{Param, Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;
use crate::ports::PortRule;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "seed",
    aliases: &[],
    about: "the 2018 demo: first LB with fewer than N claims and no clashing port number",
    param: Some(Param {
        name: "claims per LB",
        default: 10,
        min: 1,
        max: 1_000_000,
    }),
    build: |n| {
        Arc::new(Seed {
            max_claims: n.unwrap_or(10),
        })
    },
};

/// First LB (lowest id) with fewer than `max_claims` claims and no clashing port number,
/// protocol ignored: 53/TCP blocks 53/UDP even where the LB could hold both.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// Claims per LB.
    pub max_claims: u32,
}

impl Policy for Seed {
    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.by_id().find(|&lb| view.fits(lb))
    }

    fn rules(&self) -> PolicyRules {
        PolicyRules {
            port_rule: Some(PortRule::PerPortNumber),
            max_claims_per_lb: Some(self.max_claims),
            walks: Walks::LowestIdFirst,
            ..PolicyRules::default()
        }
    }
}
