//! `worst-fit` (spread): the emptiest LB that fits.

use std::sync::Arc;

use super::{Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "worst-fit",
    aliases: &["spread"],
    about: "emptiest LB that fits: spreads claims, keeps headroom on every LB",
    param: None,
    build: |_| Arc::new(WorstFit),
};

/// Emptiest LB that fits (most room, then lowest id): spreads claims, leaving headroom on
/// every LB at the price of more LBs in use.
#[derive(Debug, Clone, Copy)]
pub struct WorstFit;

impl Policy for WorstFit {
    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: Walks::ByRoom,
            ..PolicyRules::default()
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.emptiest_first().find(|&lb| view.fits(lb))
    }
}
