//! `first-fit`: the lowest-numbered LB that fits.

use std::sync::Arc;

use super::{Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "first-fit",
    aliases: &[],
    about: "lowest-numbered LB that fits: older LBs fill first, newer ones drain",
    param: None,
    build: |_| Arc::new(FirstFit),
};

/// Lowest-numbered LB that fits; older LBs fill first, so newer ones drain and can go.
#[derive(Debug, Clone, Copy)]
pub struct FirstFit;

impl Policy for FirstFit {
    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: Walks::LowestIdFirst,
            ..PolicyRules::default()
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.by_id().find(|&lb| view.fits(lb))
    }
}
