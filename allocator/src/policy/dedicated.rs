//! `dedicated`: one LB per claim — what Kubernetes does today; the baseline for savings.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// One LB per claim. An idle LB of the same tenant is reused rather than deleted and
/// re-created, as a cloud controller with a warm pool would.
#[derive(Debug, Clone, Copy)]
pub struct Dedicated;

impl Policy for Dedicated {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Dedicated
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        // Dedicated pools only index empty LBs as candidates that fit, so the first that
        // fits is an idle one.
        view.emptiest_first()
            .find(|&lb| view.claims_on(lb) == 0 && view.fits(lb))
    }

    fn dedicated(&self) -> bool {
        true
    }
}
