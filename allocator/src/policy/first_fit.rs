//! `first-fit`: the lowest-numbered LB that fits.

use super::{Policy, PolicyKind, View};
use crate::model::LbId;

/// Lowest-numbered LB that fits; older LBs fill first, so newer ones drain and can go.
#[derive(Debug, Clone, Copy)]
pub struct FirstFit;

impl Policy for FirstFit {
    fn kind(&self) -> PolicyKind {
        PolicyKind::FirstFit
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        view.by_id().find(|&lb| view.fits(lb))
    }
}
