//! Fair admission of waiting claims: when something changes that may let them fit, they are
//! tried again in weighted max-min fair order (see [`crate::fairness`]).

use std::collections::BTreeMap;

use crate::allocator::{Allocator, Reach, RetryScope};
use crate::claims::Place;
use crate::decision::{Decision, PendingReason};
use crate::fairness::{WaterFill, goes_before};
use crate::model::{Claim, LbId, PortRequest, ProfileName, Sharing, TenantId};
use crate::placement::{Outcome, Placement, Why};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Everything placement looks at in a claim but its id: claims of one shape fit exactly
/// the same places.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    tenant: TenantId,
    sharing: Sharing,
    /// Inline up to four ports, as in a claim: a retry pass makes one per claim it tries.
    ports: SmallVec<[PortRequest; 4]>,
    pinned: Option<LbId>,
    profile: Option<ProfileName>,
}

impl Shape {
    fn of(c: &Claim) -> Shape {
        Shape {
            tenant: c.tenant().clone(),
            sharing: c.sharing().clone(),
            ports: SmallVec::from_slice(c.ports()),
            pinned: c.pinned_lb(),
            profile: c.profile().cloned(),
        }
    }
}

/// A turn's standing for the next pick: whether its next claim keeps its tenant within
/// its fair share, and `(held, ask, weight)` for [`goes_before`]; `None` when it is done.
type Standing = Option<(bool, (u32, u32, u32))>;

/// A turn in the order of picks: first a turn whose next claim keeps its tenant within
/// its fair share, then by [`goes_before`], then the earlier turn (the order a scan of
/// the turns by index picks in). Greater picks first, for `BinaryHeap`.
#[derive(Clone, Copy, Debug)]
struct Pick {
    within: bool,
    key: (u32, u32, u32),
    turn: usize,
}

impl Pick {
    fn before(&self, other: &Pick) -> bool {
        if self.within != other.within {
            return self.within;
        }
        goes_before(self.key, other.key)
            || (!goes_before(other.key, self.key) && self.turn < other.turn)
    }
}

impl PartialEq for Pick {
    fn eq(&self, other: &Pick) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Pick {}

impl PartialOrd for Pick {
    fn partial_cmp(&self, other: &Pick) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pick {
    fn cmp(&self, other: &Pick) -> std::cmp::Ordering {
        if self.before(other) {
            std::cmp::Ordering::Greater
        } else if other.before(self) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Equal
        }
    }
}

/// One tenant's turn in a retry pass.
struct Turn {
    tenant: TenantId,
    /// Its tenant's number in the books, where its holding and weight are read.
    no: u32,
    /// Its waiting claims in arrival order, and the next to try.
    claims: Vec<u32>,
    next: usize,
}

impl Allocator {
    /// Tries the waiting claims a change may have helped (see [`RetryScope`]) once each, in
    /// fair order. Next is the claim that leaves its tenant holding the fewest listeners
    /// per unit of weight, among tenants not yet above their fair share of what will then
    /// be held (the quota rule that keeps every tenant within one claim of its share);
    /// within a tenant, arrival order. When no tenant is below its share, the next claim is
    /// tried anyway: a claim that fits is never left waiting. A pass frees nothing, so one
    /// pass places every claim that can be placed.
    pub(crate) fn retry_waiting(&mut self, out: &mut Vec<Decision>) {
        let spare = std::mem::take(&mut self.retry_spare);
        let mut scope = std::mem::replace(&mut self.retry, spare);
        if !self.waiting.is_empty() {
            scope.settle();
            self.retry_pass(&scope, out);
        }
        scope.clear();
        self.retry_spare = scope;
    }

    fn retry_pass(&mut self, scope: &RetryScope, out: &mut Vec<Decision>) {
        let mut turns: Vec<Turn> = self
            .waiting
            .queues
            .iter()
            .map(|(t, q)| {
                let no = self
                    .usage
                    .number_of(t)
                    .unwrap_or_else(|| unreachable!("a waiting claim's tenant has books"));
                Turn {
                    tenant: t.clone(),
                    no,
                    claims: q.iter().map(|&(_, k)| k).collect(),
                    next: 0,
                }
            })
            .collect();
        // Each tenant asks for what it holds plus what its queued claims ask: constant over
        // the pass, as claims only move from waiting to held. Tenants without waiting
        // claims take part with what they hold.
        let mut demands: BTreeMap<TenantId, (u32, f64)> = self
            .usage
            .weighted()
            .map(|(t, u, w)| (t.clone(), (w, f64::from(u.listeners))))
            .collect();
        for turn in &turns {
            let asked: u32 = turn
                .claims
                .iter()
                .map(|&k| self.claims.get(k).claim.listener_count())
                .sum();
            if let Some(d) = demands.get_mut(&turn.tenant) {
                d.1 += f64::from(asked);
            }
        }
        let index: BTreeMap<&TenantId, usize> =
            demands.keys().enumerate().map(|(i, t)| (t, i)).collect();
        let at: Vec<usize> = turns
            .iter()
            .map(|t| index.get(&t.tenant).copied().unwrap_or(0))
            .collect();
        let fill = WaterFill::new(demands.values().copied());
        let mut failed: FxHashMap<Shape, (PendingReason, Why)> = FxHashMap::default();
        // Each turn's standing, `(within its share, (held, ask, weight))`, depends only on
        // its next claim and on what is held: kept per turn, and worked out again for one
        // turn when its next claim changes, for all when a claim was placed.
        let standing = |me: &Allocator, i: usize, turn: &Turn| -> Standing {
            let &k = turn.claims.get(turn.next)?;
            let ask = me.claims.get(k).claim.listener_count();
            let (books, weight) = me.usage.weighted_by_number(turn.no as usize);
            let held = books.listeners;
            let share = fill.share(at[i], me.totals.listeners_used as f64 + f64::from(ask));
            Some((f64::from(held) <= share + 1e-9, (held, ask, weight)))
        };
        let pick = |turn: usize, s: Standing| s.map(|(within, key)| Pick { within, key, turn });
        // Every turn with a claim left, once, at its current standing: the top is the
        // next pick. A failed try changes its own turn's standing only; a placement
        // changes every share, so the picks are made again.
        let mut picks: std::collections::BinaryHeap<Pick> = turns
            .iter()
            .enumerate()
            .filter_map(|(i, t)| pick(i, standing(self, i, t)))
            .collect();
        while let Some(Pick { turn: i, .. }) = picks.pop() {
            let k = turns[i].claims[turns[i].next];
            turns[i].next += 1;
            let before = (self.totals.placed, self.totals.listeners_used);
            self.retry_one(k, scope, &mut failed, out);
            if (self.totals.placed, self.totals.listeners_used) == before {
                picks.extend(pick(i, standing(self, i, &turns[i])));
            } else {
                picks.clear();
                picks.extend(
                    turns
                        .iter()
                        .enumerate()
                        .filter_map(|(j, t)| pick(j, standing(self, j, t))),
                );
            }
        }
    }

    /// Tries one waiting claim of a retry pass, if the change may have helped it.
    fn retry_one(
        &mut self,
        k: u32,
        scope: &RetryScope,
        failed: &mut FxHashMap<Shape, (PendingReason, Why)>,
        out: &mut Vec<Decision>,
    ) {
        let retryable = match self.claims.get(k).place {
            Place::Unplaced => true,
            Place::Pending(r) => !r.is_permanent(),
            Place::Assigned { .. } | Place::Transit => false,
        };
        if !retryable {
            return;
        }
        let claim = &self.claims.get(k).claim;
        let placement = match scope.reach {
            Reach::Nothing => return,
            Reach::Everything => Placement::Arrive,
            // Never tried in this state, or its tenant's quota may no longer bind.
            Reach::Some
                if self.claims.get(k).place == Place::Unplaced
                    || scope.has_tenant(claim.tenant()) =>
            {
                Placement::Arrive
            }
            Reach::Some => {
                // Only LBs that gained room can newly fit it.
                let mine = (0..self.config.profiles.len())
                    .filter_map(|p| self.claim_pool(claim, p))
                    .any(|i| scope.has_pool(i));
                if !mine {
                    return;
                }
                Placement::Among { scope }
            }
        };
        // A claim of the same shape as one that just failed fails the same way: a pass
        // frees nothing, so the state it failed in still holds.
        let shape = Shape::of(claim);
        if let Some((reason, why)) = failed.get(&shape) {
            self.wait(k, *reason, why, out);
            return;
        }
        if let Outcome::Waiting {
            reason,
            why,
            deleted_idle: false,
        } = self.try_place(k, placement, out)
        {
            failed.insert(shape, (reason, why));
        }
    }
}
