//! `worst-fit` (spread): the emptiest LB that fits.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// Emptiest LB that fits (most free listeners, then lowest id): spreads claims, leaving
/// headroom on every LB at the price of more LBs in use.
#[derive(Debug, Clone, Copy)]
pub struct WorstFit;

impl Policy for WorstFit {
    fn kind(&self) -> PolicyKind {
        PolicyKind::WorstFit
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.emptiest_first().find(|&lb| view.fits(lb))
    }
}
