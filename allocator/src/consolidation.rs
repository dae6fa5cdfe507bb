//! Consolidation: move claims that allow it so that whole LBs empty and can be deleted.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::allocator::{Allocator, Place};
use crate::decision::Decision;
use crate::error::Error;
use crate::lb::LbState;
use crate::model::{ClaimId, LbId, Listener, Time};

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
    pub listeners: Vec<Listener>,
}

impl Allocator {
    /// The moves [`Allocator::consolidate`] would make, without making them.
    pub fn plan_consolidation(&self, max_moves: usize) -> Vec<Migration> {
        let mut scratch = self.clone();
        scratch.empty_lbs(max_moves)
    }

    /// Empties whole LBs by moving at most `max_moves` claims that allow migration onto
    /// other ready LBs of the same pool. Only complete evacuations are made: an LB whose
    /// claims cannot all move is left untouched. Sharing rules, fixed ports, capacities and
    /// quotas hold throughout; no LB is created. Emptied LBs are deleted after the idle
    /// timeout like any other.
    pub fn consolidate(&mut self, now: Time, max_moves: usize) -> Result<Vec<Decision>, Error> {
        if now < self.now {
            return Err(Error::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        self.now = now;
        let mut out: Vec<Decision> = self
            .empty_lbs(max_moves)
            .into_iter()
            .map(|m| Decision::Migrate {
                claim: m.claim,
                from: m.from,
                to: m.to,
                listeners: m.listeners,
            })
            .collect();
        self.expire_idle(&mut out);
        Ok(out)
    }

    fn empty_lbs(&mut self, max_moves: usize) -> Vec<Migration> {
        let movable = |a: &Allocator, k: u32| {
            let c = &a.slot(k).claim;
            c.allow_migration && c.pinned_lb.is_none()
        };
        let mut sources: Vec<(usize, u32, LbId)> = self
            .lbs
            .values()
            .filter(|l| {
                l.state != LbState::Draining
                    && l.claims > 0
                    && !l.pool.is_dedicated()
                    && l.used.values().all(|&k| movable(self, k))
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
            let mut ks: Vec<u32> = self.lbs[&src].used.values().copied().collect();
            ks.sort_unstable_by_key(|&k| self.slot(k).seq);
            ks.dedup();
            exclude.insert(src);
            let mut done: Vec<(u32, Vec<Listener>, LbId)> = Vec::new();
            let mut failed = false;
            for k in ks {
                let Place::Assigned { listeners: old, .. } = self.slot(k).place.clone() else {
                    unreachable!("claims on an LB are assigned")
                };
                self.release(k);
                if let Ok((to, ls, None)) = self.find_place(k, None, Some(&exclude), true) {
                    self.assign(k, to, ls);
                    done.push((k, old, to));
                } else {
                    self.assign(k, src, old);
                    failed = true;
                    break;
                }
            }
            if failed {
                for (k, old, _) in done.into_iter().rev() {
                    self.release(k);
                    self.assign(k, src, old);
                }
                exclude.remove(&src);
                continue;
            }
            for (k, _, to) in done {
                targets.insert(to);
                let Place::Assigned { listeners, .. } = self.slot(k).place.clone() else {
                    unreachable!("just assigned")
                };
                moves.push(Migration {
                    claim: self.slot(k).claim.id.clone(),
                    from: src,
                    to,
                    listeners,
                });
            }
        }
        moves
    }
}
