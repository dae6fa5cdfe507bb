//! `best-fit`: the fullest LB that fits.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// Fullest LB that fits (least free listeners, then lowest id): packs tightly and leaves
/// the emptiest LBs to drain.
#[derive(Debug, Clone, Copy)]
pub struct BestFit;

impl Policy for BestFit {
    fn kind(&self) -> PolicyKind {
        PolicyKind::BestFit
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.fullest_first().find(|&lb| view.fits(lb))
    }
}
