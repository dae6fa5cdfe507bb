//! `seed`: the 2018 demo's rule — the baseline to beat.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// First LB (lowest id) with fewer than `max_claims` claims and no clashing port number,
/// protocol ignored: 53/TCP blocks 53/UDP even where the LB could hold both.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// Claims per LB.
    pub max_claims: u32,
}

impl Policy for Seed {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Seed {
            max_claims: self.max_claims,
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.by_id()
            .find(|&lb| view.claims_on(lb) < self.max_claims && view.fits(lb))
    }

    fn strict_port_numbers(&self) -> bool {
        true
    }
}
