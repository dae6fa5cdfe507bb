//! `conflict-aware`: keeps scarce fixed listeners available.

use super::{MAX_PROBES, Policy, PolicyKind, View};
use crate::model::LbId;

/// How many of the most-asked fixed listeners the score looks at.
const HOT: usize = 16;
/// How many fitting candidates are scored.
const SCORED: usize = 32;

/// Among the LBs that fit, prefer the one whose still-free contended listeners are worth
/// least: a claim for 8080 goes where 443/TCP is already taken, keeping the LBs with 443
/// free for the many claims that need exactly 443. Ties go to the fullest LB.
#[derive(Debug, Clone, Copy)]
pub struct ConflictAware;

impl Policy for ConflictAware {
    fn kind(&self) -> PolicyKind {
        PolicyKind::ConflictAware
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        let hot: Vec<_> = view
            .hot_listeners(HOT)
            .into_iter()
            .filter(|&(l, n)| n >= 2 && !view.claim().fixed_listeners().any(|f| f == l))
            .collect();
        let mut best: Option<(u64, u32, LbId)> = None;
        let mut scored = 0;
        for lb in view.fullest_first() {
            if !view.fits(lb) {
                continue;
            }
            let value: u64 = hot
                .iter()
                .filter(|&&(l, _)| view.listener_free(lb, l))
                .map(|&(_, n)| u64::from(n))
                .sum();
            let key = (value, view.free(lb), lb);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
            scored += 1;
            if scored >= SCORED || value == 0 {
                // Nothing beats a candidate that blocks no contended listener (and it is
                // the fullest such one seen so far).
                break;
            }
        }
        debug_assert!(SCORED as u32 <= MAX_PROBES);
        best.map(|(_, _, lb)| lb)
    }
}
