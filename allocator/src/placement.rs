//! Placement: where one claim goes — an existing LB the policy picks, or a new LB — or why
//! it must wait.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use smallvec::SmallVec;

use crate::allocator::{Allocator, RetryScope};
use crate::claims::Place;
use crate::config::Config;
use crate::decision::{Decision, PendingReason};
use crate::eligibility::{Admit, BudgetLimit, QuotaLimit};
use crate::lb::{LbState, Misfit};
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
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The claim was placed.
    Placed,
    /// It waits, for this reason; `deleted_idle` when an idle LB was deleted to make room.
    Waiting {
        reason: PendingReason,
        why: Why,
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
    /// Pending with a reason and why; optionally an idle LB to delete to make room.
    Pending(PendingReason, Why, Option<LbId>),
}

/// Why a claim waits, with the figures that say so: put in words ([`Why::words`]) only
/// when the shell is told, as a retry pass asks far more often than the reason changes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Why {
    /// No profile can hold it (worked out once per claim body, already in words).
    Ineligible(String),
    Quota(QuotaLimit),
    PinnedMissing(LbId),
    PinnedMisfit(LbId, Misfit),
    /// So many LBs are provisioning already (the configured limit).
    ProvisioningLimit(u32),
    /// The budget forbids a new LB, and what follows from that.
    Budget(BudgetLimit, OverBudget),
    /// It does not fit an empty LB of this profile (index into the configuration).
    NoFitWhenEmpty(usize, Misfit),
    /// Every LB id has been handed out: no new LB can open.
    IdsUsedUp,
}

/// What a claim meets when the budget forbids a new LB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum OverBudget {
    /// LBs being deleted will make room.
    Draining,
    /// This idle LB is deleted to make room.
    DeletingIdle(LbId),
    /// Every LB with room clashes with one of its fixed listeners.
    Conflict,
    /// LBs with room have no free automatic port.
    RangeFull,
    /// Nothing else.
    Spent,
}

impl Why {
    /// The message the shell is shown.
    pub(crate) fn words(&self, config: &Config) -> String {
        match self {
            Why::Ineligible(m) => m.clone(),
            Why::Quota(q) => q.to_string(),
            Why::PinnedMissing(pin) => {
                format!("pinned {pin} does not exist or is not in this claim's pool")
            }
            Why::PinnedMisfit(pin, m) => {
                format!("pinned {pin} cannot take the claim: {}", misfit_words(*m))
            }
            Why::ProvisioningLimit(max) => {
                format!("{max} LBs are provisioning already (the limit)")
            }
            Why::Budget(why, then) => match then {
                OverBudget::Draining => format!("{why}; waiting for LBs being deleted to go"),
                OverBudget::DeletingIdle(idle) => {
                    format!("{why}; deleting idle {idle} to make room")
                }
                OverBudget::Conflict => {
                    format!("every LB with room uses one of its fixed listeners, and {why}")
                }
                OverBudget::RangeFull => {
                    format!("LBs with room have no free automatic port left, and {why}")
                }
                OverBudget::Spent => why.to_string(),
            },
            Why::NoFitWhenEmpty(profile, m) => format!(
                "does not fit an empty {} LB: {}",
                config.profiles[*profile].name,
                misfit_words(*m)
            ),
            Why::IdsUsedUp => "every LB id has been handed out (ids are never reused), so no \
                               new LB can open; only an existing LB can take it"
                .to_owned(),
        }
    }
}

impl Allocator {
    /// The listeners `claim` would get on `lb`, or why not.
    pub(crate) fn plan_on(
        &self,
        lb: LbId,
        claim: &Claim,
        prefer: Option<&[Listener]>,
    ) -> Result<Listeners, Misfit> {
        let l = self.lbs.get(lb).ok_or(Misfit::Capacity)?;
        l.plan(&self.config.profiles[l.profile()], claim, prefer)
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
            Err(Wait::Pending(reason, why, delete)) => {
                if let Some(lb) = delete {
                    self.start_delete(lb, out);
                }
                self.wait(k, reason, &why, out);
                Outcome::Waiting {
                    reason,
                    why,
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
        why: &Why,
        out: &mut Vec<Decision>,
    ) {
        // Waiting again for the same reason changes nothing: its books and its place in
        // the queue stay as they are (a retry pass meets this for most waiting claims).
        if self.claims.get(k).place != Place::Pending(reason) {
            self.set_place(k, Place::Pending(reason));
            out.push(Decision::Pending {
                claim: self.claims.get(k).claim.id().clone(),
                reason,
                message: why.words(&self.config),
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
                Placement::Arrive | Placement::Among { .. } => {
                    Wait::Pending(r, Why::Ineligible(m), None)
                }
                Placement::Stay { .. } | Placement::Migrate { .. } => Wait::NoMove,
            })?;
        let pool = self.pool_of(claim);
        match placement {
            Placement::Stay { lb, prefer, grows } => {
                let same = self.lbs.get(lb).is_some_and(|l| {
                    self.pools[l.pool as usize].key.as_ref() == pool
                        && eligible.contains(&l.profile())
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
                if let Err(q) = self.quota_check(claim, Admit::Claim) {
                    return Err(Wait::Pending(
                        PendingReason::QuotaExceeded,
                        Why::Quota(q),
                        None,
                    ));
                }
            }
            Placement::Migrate { .. } => {}
        }
        if let Some(pin) = claim.pinned_lb() {
            if matches!(placement, Placement::Migrate { .. }) {
                return Err(Wait::NoMove);
            }
            let ok = self.lbs.get(pin).is_some_and(|l| {
                self.pools[l.pool as usize].key.as_ref() == pool && eligible.contains(&l.profile())
            });
            if !ok {
                return Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    Why::PinnedMissing(pin),
                    None,
                ));
            }
            return match self.plan_on(pin, claim, None) {
                Ok(ls) => Ok((Target::Existing(pin), ls)),
                Err(m) => Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    Why::PinnedMisfit(pin, m),
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
                    .filter_map(|&p| Some((self.claim_pool(claim, p)?, class_in(p))))
                    .flat_map(|(i, class)| {
                        scope.lbs_of(i).filter_map(move |id| {
                            let l = self.lbs.get(id)?;
                            Some((l.indexed[class], id))
                        })
                    })
                    .collect(),
            ),
            _ => Candidates::Pools(
                eligible
                    .iter()
                    .filter_map(|&p| {
                        let i = self.claim_pool(claim, p)?;
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
            && let Err(q) = self.quota_check(claim, Admit::WithDedicatedLb)
        {
            return Err(Wait::Pending(
                PendingReason::QuotaExceeded,
                Why::Quota(q),
                None,
            ));
        }
        if let Some(max) = self.config.max_provisioning
            && self.totals.provisioning >= max
        {
            return Err(Wait::Pending(
                PendingReason::WaitingForCapacity,
                Why::ProvisioningLimit(max),
                None,
            ));
        }
        if let Some(limit) = self.budget_blocks(profile) {
            let over = |then| Why::Budget(limit, then);
            if matches!(limit, BudgetLimit::Lbs { .. }) && self.totals.draining > 0 {
                // An LB is on its way out: room in the budget is coming, one at a time.
                return Err(Wait::Pending(
                    PendingReason::WaitingForCapacity,
                    over(OverBudget::Draining),
                    None,
                ));
            }
            if let Some(&(_, idle)) = self.idle.iter().next() {
                return Err(Wait::Pending(
                    PendingReason::WaitingForCapacity,
                    over(OverBudget::DeletingIdle(idle)),
                    Some(idle),
                ));
            }
            return Err(match seen {
                Some(Misfit::Conflict) => Wait::Pending(
                    PendingReason::PortConflict,
                    over(OverBudget::Conflict),
                    None,
                ),
                Some(Misfit::RangeFull) => Wait::Pending(
                    PendingReason::PortRangeFull,
                    over(OverBudget::RangeFull),
                    None,
                ),
                _ => Wait::Pending(
                    PendingReason::BudgetExhausted,
                    over(OverBudget::Spent),
                    None,
                ),
            });
        }
        let listeners = self.plan_on_empty(profile, claim).map_err(|m| {
            Wait::Pending(
                PendingReason::Unsupported,
                Why::NoFitWhenEmpty(profile, m),
                None,
            )
        })?;
        if self.next_lb_id().is_none() {
            return Err(Wait::Pending(
                PendingReason::BudgetExhausted,
                Why::IdsUsedUp,
                None,
            ));
        }
        Ok((Target::New(profile), listeners))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;
    use crate::profile::Currency;

    /// Each reason in words, as the shell (and the controller's status) shows it: written
    /// out by hand, so a change to the words is a change to this test.
    #[test]
    fn why_in_words() {
        let policy = "best-fit".parse().expect("a policy");
        let config = Config::with_builtin("aws-nlb", policy).expect("built in");
        let tenant = TenantId::new("checkout").expect("a tenant name");
        let lbs = BudgetLimit::Lbs {
            max: 400,
            live: 400,
        };
        let cost = BudgetLimit::Cost {
            max: 10.0,
            now: 9.9,
            add: 0.0225,
            currency: Currency::default(),
        };
        let cases = [
            (Why::Ineligible("as given".into()), "as given"),
            (
                Why::Quota(QuotaLimit::Listeners {
                    tenant: tenant.clone(),
                    max: 600,
                    held: 599,
                    asks: 2,
                }),
                "tenant checkout holds 599 of its 600 listeners and asks 2 more",
            ),
            (
                Why::Quota(QuotaLimit::Claims {
                    tenant: tenant.clone(),
                    max: 200,
                    placed: 200,
                }),
                "tenant checkout has 200 of its 200 claims placed",
            ),
            (
                Why::Quota(QuotaLimit::DedicatedLbs {
                    tenant,
                    max: 40,
                    held: 40,
                }),
                "tenant checkout has 40 of its 40 dedicated LBs",
            ),
            (
                Why::PinnedMissing(LbId(7)),
                "pinned lb-7 does not exist or is not in this claim's pool",
            ),
            (
                Why::PinnedMisfit(LbId(7), Misfit::Conflict),
                "pinned lb-7 cannot take the claim: a fixed listener or the protocol clashes",
            ),
            (
                Why::ProvisioningLimit(20),
                "20 LBs are provisioning already (the limit)",
            ),
            (
                Why::Budget(lbs, OverBudget::Draining),
                "the budget of 400 LBs is spent (400 live); waiting for LBs being deleted to go",
            ),
            (
                Why::Budget(lbs, OverBudget::DeletingIdle(LbId(3))),
                "the budget of 400 LBs is spent (400 live); deleting idle lb-3 to make room",
            ),
            (
                Why::Budget(lbs, OverBudget::Conflict),
                "every LB with room uses one of its fixed listeners, and the budget of 400 LBs \
                 is spent (400 live)",
            ),
            (
                Why::Budget(lbs, OverBudget::RangeFull),
                "LBs with room have no free automatic port left, and the budget of 400 LBs is \
                 spent (400 live)",
            ),
            (
                Why::Budget(cost, OverBudget::Spent),
                "the budget of 10 USD/h is spent (9.9000 USD/h in use, a new LB costs 0.0225 \
                 USD/h)",
            ),
            (
                Why::NoFitWhenEmpty(0, Misfit::RangeFull),
                "does not fit an empty aws-nlb LB: no free automatic port left",
            ),
        ];
        for (why, words) in cases {
            assert_eq!(why.words(&config), words, "{why:?}");
        }
    }
}
