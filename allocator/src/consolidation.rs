//! Consolidation: move claims that allow it so that whole LBs empty and can be deleted.
//! It runs as an event ([`crate::Event::Consolidate`]) under the same rules for every shell.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::allocator::Allocator;
use crate::decision::Decision;
use crate::lb::LbState;
use crate::model::{ClaimId, LbId, Listeners};
use crate::placement::{Placement, Target};

/// One planned move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The claim.
    pub claim: ClaimId,
    /// The LB it leaves.
    pub from: LbId,
    /// The LB it goes to.
    pub to: LbId,
    /// Its listeners on the new LB (fixed ports unchanged; automatic ones may change).
    pub listeners: Listeners,
}

impl Allocator {
    /// The moves [`crate::Event::Consolidate`] with this budget would make now, without
    /// making them.
    pub fn plan_consolidation(&self, max_moves: usize) -> Vec<Migration> {
        let mut scratch = self.clone();
        scratch.empty_lbs(max_moves)
    }

    /// Runs consolidation: the moves become `Migrate` decisions.
    pub(crate) fn consolidate(&mut self, max_moves: usize, out: &mut Vec<Decision>) {
        out.extend(
            self.empty_lbs(max_moves)
                .into_iter()
                .map(|m| Decision::Migrate {
                    claim: m.claim,
                    from: m.from,
                    to: m.to,
                    listeners: m.listeners,
                }),
        );
    }

    /// Empties whole LBs by moving at most `max_moves` claims that allow migration (and are
    /// not pinned) onto other ready LBs of the same pool, emptiest sources first. Only
    /// complete evacuations are made: an LB whose claims cannot all move is left as it was.
    /// No LB is created and no LB that received a claim is emptied in the same run.
    fn empty_lbs(&mut self, max_moves: usize) -> Vec<Migration> {
        let movable = |a: &Allocator, k: u32| {
            let c = &a.claims.get(k).claim;
            c.allow_migration() && c.pinned_lb().is_none()
        };
        let mut sources: Vec<(usize, u32, LbId)> = self
            .lbs
            .values()
            .filter(|l| {
                l.state != LbState::Draining
                    && l.claims > 0
                    && !self.pools[l.pool as usize].key.is_dedicated()
                    && l.used.slots().all(|k| movable(self, k))
            })
            .map(|l| (l.used.len(), l.claims, l.id))
            .collect();
        sources.sort_unstable();
        let mut moves: Vec<Migration> = Vec::new();
        let mut exclude: BTreeSet<LbId> = BTreeSet::new();
        let mut targets: BTreeSet<LbId> = BTreeSet::new();
        for (_, n, src) in sources {
            if moves.len() + n as usize > max_moves || targets.contains(&src) {
                continue;
            }
            let ks = self.slots_on_by_arrival(src);
            exclude.insert(src);
            let mut done: Vec<(u32, Listeners, LbId)> = Vec::new();
            let mut failed = false;
            for k in ks {
                let Some((_, old)) = self.claims.placement(k) else {
                    unreachable!("claims on an LB are assigned")
                };
                self.release(k);
                if let Ok((Target::Existing(to), ls)) =
                    self.find_place(k, Placement::Migrate { exclude: &exclude })
                {
                    self.assign(k, to, &ls);
                    done.push((k, old, to));
                } else {
                    self.assign(k, src, &old);
                    failed = true;
                    break;
                }
            }
            if failed {
                for (k, old, _) in done.into_iter().rev() {
                    self.release(k);
                    self.assign(k, src, &old);
                }
                exclude.remove(&src);
                continue;
            }
            for (k, _, to) in done {
                targets.insert(to);
                let Some((_, listeners)) = self.claims.placement(k) else {
                    unreachable!("just assigned")
                };
                moves.push(Migration {
                    claim: self.claims.get(k).claim.id().clone(),
                    from: src,
                    to,
                    listeners,
                });
            }
        }
        moves
    }
}
