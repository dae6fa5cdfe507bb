//! `best-fit`: the fullest LB that fits.

use std::sync::Arc;

use super::{Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "best-fit",
    aliases: &[],
    about: "fullest LB that fits: packs tightly, leaves the emptiest LBs to drain",
    param: None,
    build: |_| Arc::new(BestFit),
};

/// Fullest LB that fits (least room, then lowest id): packs tightly and leaves the
/// emptiest LBs to drain.
#[derive(Debug, Clone, Copy)]
pub struct BestFit;

impl Policy for BestFit {
    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: Walks::ByRoom,
            ..PolicyRules::default()
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.fullest_first().find(|&lb| view.fits(lb))
    }
}
