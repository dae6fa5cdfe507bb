//! `conflict-aware`: keeps scarce fixed listeners available.

use std::sync::Arc;

use super::{Policy, PolicyRules, Registration, View, Walks};
use crate::model::LbId;

/// The registry entry.
pub(super) const REGISTRATION: Registration = Registration {
    name: "conflict-aware",
    aliases: &[],
    about: "keeps contended fixed listeners free where they still are",
    param: None,
    build: |_| Arc::new(ConflictAware),
};

/// How many of the most-asked fixed listeners the score looks at.
const HOT: usize = 16;
/// How many fitting candidates are scored; the best of them wins.
const SCORED: usize = 32;

/// Among the LBs that fit, prefer the one whose still-free contended listeners are worth
/// least: a claim for 8080 goes where 443/TCP is already taken, keeping the LBs with 443
/// free for the many claims that need exactly 443. Ties go to the fullest LB. Only the
/// first fitting candidates are scored, so a decision stays cheap; the claim is always
/// placed when any candidate fits.
#[derive(Debug, Clone, Copy)]
pub struct ConflictAware;

impl Policy for ConflictAware {
    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: Walks::ByRoom,
            ..PolicyRules::default()
        }
    }

    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        let mut hot = [None; HOT];
        for (slot, (l, n)) in hot.iter_mut().zip(
            view.hot_listeners()
                .filter(|&(l, n)| n >= 2 && !view.claim().fixed_listeners().any(|f| f == l)),
        ) {
            *slot = Some((l, n));
        }
        let mut best: Option<(u64, u32, LbId)> = None;
        let mut scored = 0;
        for lb in view.fullest_first() {
            if !view.fits(lb) {
                continue;
            }
            let value: u64 = hot
                .iter()
                .flatten()
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
        best.map(|(_, _, lb)| lb)
    }
}
