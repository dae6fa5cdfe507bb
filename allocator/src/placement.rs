//! Placement: where one claim goes — an existing LB the policy picks, or a new LB — or why
//! it must wait.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use smallvec::SmallVec;

use crate::allocator::{Allocator, RetryScope};
use crate::claims::Place;
use crate::decision::{Decision, PendingReason};
use crate::eligibility::{Admit, BudgetLimit};
use crate::lb::{LbState, Misfit, PoolRef};
use crate::model::{Claim, LbId, Listener, Listeners};
use crate::policy::{Candidates, View};

/// What kind of placement is asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Placement<'a> {
    /// A new or waiting claim: any usable LB of its pool, or a new LB.
    Arrive,
    /// A changed claim: only the LB it is on, keeping its automatic ports where it can.
    /// `grows` when it asks for more than before (then its quota is checked again).
    Stay {
        lb: LbId,
        prefer: &'a [Listener],
        grows: bool,
    },
    /// Consolidation: a ready LB of its pool outside `exclude`; never a new LB, and quotas
    /// are not checked again (the claim holds what it held).
    Migrate { exclude: &'a BTreeSet<LbId> },
    /// A waiting claim retried after only the LBs listed in `scope` gained room: as
    /// `Arrive`, but only those LBs are candidates — no other LB can fit it now if none
    /// could before.
    Among { scope: &'a RetryScope },
}

/// What [`Allocator::try_place`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The claim was placed.
    Placed,
    /// It waits, for this reason; `deleted_idle` when an idle LB was deleted to make room.
    Waiting {
        reason: PendingReason,
        message: String,
        deleted_idle: bool,
    },
    /// A change could not stay where it was, or a move found no place: nothing recorded.
    NotMoved,
}

/// Where a claim would go.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// This existing LB.
    Existing(LbId),
    /// A new LB of this profile (index into the configuration).
    New(usize),
}

/// Why no place was found.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Staying put (update) or migrating was not possible; nothing to report.
    NoMove,
    /// Pending with a reason and message; optionally an idle LB to delete to make room.
    Pending(PendingReason, String, Option<LbId>),
}

impl Allocator {
    /// The listeners `claim` would get on `lb`, or why not.
    pub(crate) fn plan_on(
        &self,
        lb: LbId,
        claim: &Claim,
        prefer: Option<&[Listener]>,
    ) -> Result<Listeners, Misfit> {
        let l = self.lbs.get(&lb).ok_or(Misfit::Capacity)?;
        l.plan(&self.config.profiles[l.profile], claim, prefer)
    }

    /// Places slot `k` if it can: records the outcome, emits the decisions, queues the
    /// claim for retry when it must wait.
    pub(crate) fn try_place(
        &mut self,
        k: u32,
        placement: Placement<'_>,
        out: &mut Vec<Decision>,
    ) -> Outcome {
        match self.find_place(k, placement) {
            Ok((target, listeners)) => {
                let lb = match target {
                    Target::Existing(lb) => lb,
                    Target::New(profile) => {
                        let pool = self.pool_of(&self.claims.get(k).claim).to_owned();
                        let lb = self.open_lb(profile, &pool);
                        out.push(Decision::CreateLb {
                            lb,
                            profile: self.config.profiles[profile].name.clone(),
                        });
                        lb
                    }
                };
                let claim = self.claims.get(k).claim.id().clone();
                self.assign(k, lb, &listeners);
                out.push(Decision::Assign {
                    claim,
                    lb,
                    listeners,
                });
                Outcome::Placed
            }
            Err(Wait::NoMove) => Outcome::NotMoved,
            Err(Wait::Pending(reason, message, delete)) => {
                if let Some(lb) = delete {
                    self.start_delete(lb, out);
                }
                self.wait(k, reason, &message, out);
                Outcome::Waiting {
                    reason,
                    message,
                    deleted_idle: delete.is_some(),
                }
            }
        }
    }

    /// Records that slot `k` waits for `reason`; tells the shell when the reason changed.
    pub(crate) fn wait(
        &mut self,
        k: u32,
        reason: PendingReason,
        message: &str,
        out: &mut Vec<Decision>,
    ) {
        // Waiting again for the same reason changes nothing: its books and its place in
        // the queue stay as they are (a retry pass meets this for most waiting claims).
        if self.claims.get(k).place != Place::Pending(reason) {
            self.set_place(k, Place::Pending(reason));
            out.push(Decision::Pending {
                claim: self.claims.get(k).claim.id().clone(),
                reason,
                message: message.to_owned(),
            });
        }
    }

    /// Where slot `k` would go and with which listeners. Pure: changes nothing.
    pub(crate) fn find_place(
        &self,
        k: u32,
        placement: Placement<'_>,
    ) -> Result<(Target, Listeners), Wait> {
        let claim = &self.claims.get(k).claim;
        let eligible = self
            .eligible_profiles(claim)
            .map_err(|(r, m)| match placement {
                Placement::Arrive | Placement::Among { .. } => Wait::Pending(r, m, None),
                Placement::Stay { .. } | Placement::Migrate { .. } => Wait::NoMove,
            })?;
        let pool = self.pool_of(claim);
        match placement {
            Placement::Stay { lb, prefer, grows } => {
                let same = self.lbs.get(&lb).is_some_and(|l| {
                    self.pools[l.pool as usize].key.as_ref() == pool
                        && eligible.contains(&l.profile)
                        && claim.pinned_lb().is_none_or(|p| p == lb)
                });
                if !same || (grows && self.quota_check(claim, Admit::Claim).is_err()) {
                    return Err(Wait::NoMove);
                }
                return self
                    .plan_on(lb, claim, Some(prefer))
                    .map(|ls| (Target::Existing(lb), ls))
                    .map_err(|_| Wait::NoMove);
            }
            Placement::Arrive | Placement::Among { .. } => {
                if let Err(m) = self.quota_check(claim, Admit::Claim) {
                    return Err(Wait::Pending(PendingReason::QuotaExceeded, m, None));
                }
            }
            Placement::Migrate { .. } => {}
        }
        if let Some(pin) = claim.pinned_lb() {
            if matches!(placement, Placement::Migrate { .. }) {
                return Err(Wait::NoMove);
            }
            let ok = self.lbs.get(&pin).is_some_and(|l| {
                self.pools[l.pool as usize].key.as_ref() == pool && eligible.contains(&l.profile)
            });
            if !ok {
                return Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    format!("pinned {pin} does not exist or is not in this claim's pool"),
                    None,
                ));
            }
            return match self.plan_on(pin, claim, None) {
                Ok(ls) => Ok((Target::Existing(pin), ls)),
                Err(m) => Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    format!("pinned {pin} cannot take the claim: {}", misfit_words(m)),
                    None,
                )),
            };
        }
        let class_in = |p: usize| {
            if self.config.profiles[p].mixed_protocols {
                0
            } else {
                claim.ports()[0].protocol().index()
            }
        };
        let source = match placement {
            Placement::Among { scope } => Candidates::Listed(
                eligible
                    .iter()
                    .filter_map(|&p| {
                        let i = *self.pool_ids.get(&PoolRef(pool, p))?;
                        Some((i, class_in(p)))
                    })
                    .flat_map(|(i, class)| {
                        scope.lbs_of(i).filter_map(move |id| {
                            let l = self.lbs.get(&id)?;
                            Some((l.indexed[class], id))
                        })
                    })
                    .collect(),
            ),
            _ => Candidates::Pools(
                eligible
                    .iter()
                    .filter_map(|&p| {
                        let i = *self.pool_ids.get(&PoolRef(pool, p))?;
                        Some((&self.pools[i as usize].index, class_in(p)))
                    })
                    .collect(),
            ),
        };
        let view = View {
            alloc: self,
            claim,
            source,
            exclude: match placement {
                Placement::Migrate { exclude } => Some(exclude),
                _ => None,
            },
            ready_only: matches!(placement, Placement::Migrate { .. }),
            seen: Cell::new(None),
            last_fit: RefCell::new(None),
        };
        if let Some(lb) = self.policy.choose(&view) {
            let cached = view.last_fit.borrow_mut().take().filter(|(l, _)| *l == lb);
            if let Some((_, ls)) = cached {
                return Ok((Target::Existing(lb), ls));
            }
            if view.exclude.is_none_or(|e| !e.contains(&lb))
                && (!view.ready_only || self.lb_state(lb) == Some(LbState::Ready))
                && let Ok(ls) = self.plan_on(lb, claim, None)
            {
                return Ok((Target::Existing(lb), ls));
            }
        }
        if matches!(placement, Placement::Migrate { .. }) {
            return Err(Wait::NoMove);
        }
        let seen = view.seen.get();
        // A new LB is needed.
        let profile = self.policy.new_lb_profile(&view, &eligible);
        drop(view);
        let chosen = if eligible.contains(&profile) {
            profile
        } else {
            eligible[0]
        };
        // The policy's choice first; when the budget cannot pay for it, the first other
        // eligible profile it can pay for.
        let profile = std::iter::once(chosen)
            .chain(eligible.iter().copied().filter(|&p| p != chosen))
            .find(|&p| self.budget_blocks(p).is_none())
            .unwrap_or(chosen);
        self.new_lb_for(claim, profile, seen)
    }

    /// Whether a new LB of `profile` may open for `claim`, and its listeners there.
    fn new_lb_for(
        &self,
        claim: &Claim,
        profile: usize,
        seen: Option<Misfit>,
    ) -> Result<(Target, Listeners), Wait> {
        if self.pool_of(claim).is_dedicated()
            && let Err(m) = self.quota_check(claim, Admit::WithDedicatedLb)
        {
            return Err(Wait::Pending(PendingReason::QuotaExceeded, m, None));
        }
        if let Some(max) = self.config.max_provisioning
            && self.totals.provisioning >= max
        {
            return Err(Wait::Pending(
                PendingReason::WaitingForCapacity,
                format!("{max} LBs are provisioning already (the limit)"),
                None,
            ));
        }
        if let Some(limit) = self.budget_blocks(profile) {
            let why = limit.to_string();
            if matches!(limit, BudgetLimit::Lbs { .. }) && self.totals.draining > 0 {
                // An LB is on its way out: room in the budget is coming, one at a time.
                return Err(Wait::Pending(
                    PendingReason::WaitingForCapacity,
                    format!("{why}; waiting for LBs being deleted to go"),
                    None,
                ));
            }
            if let Some(&(_, idle)) = self.idle.iter().next() {
                return Err(Wait::Pending(
                    PendingReason::WaitingForCapacity,
                    format!("{why}; deleting idle {idle} to make room"),
                    Some(idle),
                ));
            }
            return Err(match seen {
                Some(Misfit::Conflict) => Wait::Pending(
                    PendingReason::PortConflict,
                    format!("every LB with room uses one of its fixed listeners, and {why}"),
                    None,
                ),
                Some(Misfit::RangeFull) => Wait::Pending(
                    PendingReason::PortRangeFull,
                    format!("LBs with room have no free automatic port left, and {why}"),
                    None,
                ),
                _ => Wait::Pending(PendingReason::BudgetExhausted, why, None),
            });
        }
        self.plan_on_empty(profile, claim)
            .map(|ls| (Target::New(profile), ls))
            .map_err(|m| {
                Wait::Pending(
                    PendingReason::Unsupported,
                    format!(
                        "does not fit an empty {} LB: {}",
                        self.config.profiles[profile].name,
                        misfit_words(m)
                    ),
                    None,
                )
            })
    }
}

/// A misfit in words, for pending messages.
pub(crate) fn misfit_words(m: Misfit) -> &'static str {
    match m {
        Misfit::Capacity => "not enough room",
        Misfit::Conflict => "a fixed listener or the protocol clashes",
        Misfit::RangeFull => "no free automatic port left",
    }
}

/// Profile indexes a claim may use (at most 64 profiles in a configuration).
pub(crate) type Eligible = SmallVec<[usize; 4]>;
