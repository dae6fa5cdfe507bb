//! Snapshot and restore: a shell rebuilds the allocator from what it recorded (the
//! controller: claims' statuses and LB Services). A restore never fails on the recorded
//! state: a placement that breaks a rule — written by an older policy, under another sharing
//! rule, or on a profile that no longer allows it — is dropped and returned with the
//! reason, and the claim waits to be placed again.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::allocator::Allocator;
use crate::claims::{IdHash, Place};
use crate::config::Config;
use crate::decision::PendingReason;
use crate::error::Error;
use crate::lb::{LbState, PoolKey};
use crate::model::{Claim, ClaimId, LbId, Listeners, PortRequest, ProfileName, Time};
use crate::policy::Policy;

/// One load balancer in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbRecord {
    /// Id.
    pub id: LbId,
    /// Profile name (must be in the configuration).
    pub profile: ProfileName,
    /// Who may share it.
    pub pool: PoolKey,
    /// Lifecycle state.
    pub state: LbState,
    /// Since when it has been empty, if it is.
    #[serde(default)]
    pub idle_since: Option<Time>,
}

/// One claim in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRecord {
    /// The claim.
    pub claim: Claim,
    /// Arrival order (fair admission keeps it within a tenant). Only the order counts: the
    /// allocator keeps numbers below `u32::MAX`, and a restore where a number or
    /// [`Snapshot::next_seq`] does not fit numbers them all afresh, in the same order.
    pub seq: u64,
    /// The LB and listeners (one per port request, in order), if placed.
    #[serde(default)]
    pub placement: Option<(LbId, Listeners)>,
    /// The last reported pending reason, if waiting.
    #[serde(default)]
    pub pending: Option<PendingReason>,
}

/// Everything needed to rebuild an allocator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Logical time of the snapshot.
    pub now: Time,
    /// Next LB number to hand out; past `u32::MAX` once every LB id has been handed out.
    pub next_lb: u64,
    /// Next arrival sequence number (at most `u32::MAX` from an allocator; see
    /// [`ClaimRecord::seq`]).
    pub next_seq: u64,
    /// LBs in id order (a restore takes them in any order).
    pub lbs: Vec<LbRecord>,
    /// Claims in arrival order.
    pub claims: Vec<ClaimRecord>,
}

/// A recorded placement (or claim, or LB) the restore could not keep, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The claim whose placement was dropped (`None` for a dropped LB record).
    pub claim: Option<ClaimId>,
    /// The LB involved, if any.
    pub lb: Option<LbId>,
    /// Why, in words.
    pub reason: String,
}

/// The result of a restore: the allocator, and what it had to drop.
#[derive(Debug)]
pub struct Restored {
    /// The rebuilt allocator. Claims whose placements were dropped wait; its
    /// [`Allocator::next_wakeup`] is `now` so the shell's first `Tick` places them.
    pub allocator: Allocator,
    /// Placements, duplicate claims and LB records dropped, each with its reason.
    pub dropped: Vec<Dropped>,
}

impl Allocator {
    /// The allocator's whole state as plain data.
    pub fn snapshot(&self) -> Snapshot {
        let lbs = self
            .lb_ids()
            .into_iter()
            .map(|id| &self.lbs[id])
            .map(|l| LbRecord {
                id: l.id,
                profile: self.config.profiles[l.profile()].name.clone(),
                pool: self.pools[l.pool as usize].key.clone(),
                state: l.state,
                idle_since: l.idle_since(),
            })
            .collect();
        let claims = self
            .claims
            .in_arrival_order()
            .into_iter()
            .map(|(k, s)| ClaimRecord {
                claim: s.claim.clone(),
                seq: u64::from(s.seq),
                placement: self.claims.placement(k),
                pending: match s.place {
                    Place::Pending(r) => Some(r),
                    _ => None,
                },
            })
            .collect();
        Snapshot {
            config: self.config.clone(),
            now: self.now,
            next_lb: self.next_lb,
            next_seq: u64::from(self.next_seq),
            lbs,
            claims,
        }
    }

    /// Rebuilds an allocator with the configuration's policy. Fails only when the
    /// configuration itself is invalid; see [`Restored`].
    pub fn restore(snapshot: Snapshot) -> Result<Restored, Error> {
        let policy = snapshot.config.policy.build();
        Allocator::restore_with_policy(snapshot, policy)
    }

    /// [`Allocator::restore`] with a policy of your own.
    pub fn restore_with_policy(
        snapshot: Snapshot,
        policy: Arc<dyn Policy>,
    ) -> Result<Restored, Error> {
        let mut a = Allocator::with_policy(snapshot.config, policy)?;
        a.now = snapshot.now;
        let mut dropped = Vec::new();
        let mut max_lb = 0;
        // In id order, whatever the record's: a pool's index keeps its LBs' positions in id
        // order (first-fit's walk). Stable, so of two records of one id the first is kept.
        let mut lbs = snapshot.lbs;
        lbs.sort_by_key(|r| r.id);
        for r in lbs {
            let lb_dropped = |reason: String| Dropped {
                claim: None,
                lb: Some(r.id),
                reason,
            };
            let Some(profile) = a.config.profile_index(&r.profile) else {
                dropped.push(lb_dropped(format!(
                    "its profile {} is not configured",
                    r.profile
                )));
                continue;
            };
            if a.lbs.contains_key(r.id) {
                dropped.push(lb_dropped("it is recorded twice".into()));
                continue;
            }
            max_lb = max_lb.max(u64::from(r.id.0));
            a.insert_lb(r.id, profile, &r.pool, r.state, r.idle_since);
            if let Some(l) = a.lbs.get_mut(r.id) {
                l.auto.suspend();
            }
        }
        a.next_lb = snapshot.next_lb.max(max_lb + 1);
        let mut records = snapshot.claims;
        records.sort_by_key(|r| r.seq);
        // The allocator keeps arrival numbers in four bytes: numbers that do not fit are
        // given afresh, in the same order, claims sharing a number still sharing one.
        let fits = u32::try_from(snapshot.next_seq).is_ok()
            && records.iter().all(|r| r.seq < u64::from(u32::MAX));
        let mut fresh = (0u32, None);
        let mut seen = BTreeSet::new();
        let mut max_seq = None;
        for r in records {
            if !seen.insert(r.claim.id().clone()) {
                dropped.push(Dropped {
                    claim: Some(r.claim.id().clone()),
                    lb: None,
                    reason: "the claim is recorded twice; the later record is ignored".into(),
                });
                continue;
            }
            let seq = match u32::try_from(r.seq) {
                Ok(seq) if fits => seq,
                _ => {
                    let (n, last) = &mut fresh;
                    if last.is_some_and(|l| l != r.seq) {
                        *n += 1;
                    }
                    *last = Some(r.seq);
                    *n
                }
            };
            max_seq = max_seq.max(Some(seq));
            let hash = IdHash::of(r.claim.id());
            let k = a.insert_claim(r.claim, hash, seq, Place::Unplaced);
            if let Some((lb, listeners)) = r.placement {
                match a.check_placement(k, lb, &listeners) {
                    Ok(()) => a.assign(k, lb, &listeners),
                    Err(reason) => dropped.push(Dropped {
                        claim: Some(a.claims.get(k).claim.id().clone()),
                        lb: Some(lb),
                        reason,
                    }),
                }
            } else if let Some(reason) = r.pending {
                a.set_place(k, Place::Pending(reason));
            }
        }
        let after = max_seq.map_or(0, |s| s + 1);
        a.next_seq = match u32::try_from(snapshot.next_seq) {
            Ok(n) if fits => n.max(after),
            _ => after,
        };
        let now = a.now;
        let ids = a.lb_ids();
        for id in ids {
            let Some(l) = a.lbs.get_mut(id) else {
                continue;
            };
            l.auto.restart(&a.config.profiles[l.profile()]);
            // An LB with no claims and no idle stamp (e.g. rebuilt from a cluster) starts
            // idling now; one with claims is not idle.
            let stamp = match (l.claims, l.state, l.idle_since()) {
                (0, LbState::Draining, _) => None,
                (0, _, Some(t)) => Some(t.min(now)),
                (0, _, None) => Some(now),
                _ => None,
            };
            if stamp != l.idle_since() {
                if let Some(t) = l.idle_since() {
                    a.idle.remove(&(t, id));
                }
                l.set_idle_since(stamp);
                if let Some(t) = stamp {
                    a.idle.insert((t, id));
                }
            }
        }
        a.inherited.over_budget = a.over_budget();
        let over: BTreeSet<_> = a
            .usage
            .keys()
            .filter(|t| a.over_quota(t))
            .cloned()
            .collect();
        a.inherited.over_quota = over;
        if a.waiting.is_empty() {
            a.retry.clear();
        } else {
            a.retry.everything();
        }
        Ok(Restored {
            allocator: a,
            dropped,
        })
    }

    /// Whether slot `k` may hold `listeners` on `lb` given what is placed already: every
    /// rule `check_invariants` checks for a placement, with the reason when one fails.
    fn check_placement(&self, k: u32, lb: LbId, listeners: &Listeners) -> Result<(), String> {
        let claim = &self.claims.get(k).claim;
        let l = self
            .lbs
            .get(lb)
            .ok_or_else(|| format!("{lb} is not recorded"))?;
        let profile = &self.config.profiles[l.profile()];
        if l.state == LbState::Draining {
            return Err(format!("{lb} is being deleted"));
        }
        if self.pools[l.pool as usize].key.as_ref() != self.pool_of(claim) {
            return Err(format!(
                "{lb} belongs to another sharing pool than the claim's sharing rule allows"
            ));
        }
        let eligible = self
            .eligible_profiles(claim)
            .map_err(|(_, m)| format!("no profile can hold the claim now: {m}"))?;
        if !eligible.contains(&l.profile()) {
            return Err(format!(
                "{lb} is a {} LB, which cannot hold this claim",
                profile.name
            ));
        }
        if claim.pinned_lb().is_some_and(|p| p != lb) {
            return Err(format!("the claim is pinned to another LB than {lb}"));
        }
        if listeners.len() != claim.ports().len() {
            return Err(format!(
                "{} listeners recorded for {} ports",
                listeners.len(),
                claim.ports().len()
            ));
        }
        for (req, got) in claim.ports().iter().zip(listeners.iter()) {
            let ok = match *req {
                PortRequest::Fixed(f) => f == *got,
                PortRequest::Any(p) => {
                    p == got.protocol
                        && profile.auto_ports.contains(got.port)
                        && !profile.is_reserved(got.port)
                }
            };
            if !ok {
                return Err(format!("{got} does not answer the request {req}"));
            }
        }
        for (i, a) in listeners.iter().enumerate() {
            if listeners[i + 1..]
                .iter()
                .any(|&b| l.rule.clash(*a, b, true))
            {
                return Err(format!("{a} clashes with another listener of the claim"));
            }
        }
        if l.room(profile) < claim.listener_count() {
            return Err(format!("{lb} has no room left for it"));
        }
        if !profile.mixed_protocols
            && let Some(x) = l.used.protocol()
            && listeners.iter().any(|y| y.protocol != x)
        {
            return Err(format!("{lb} already serves another protocol"));
        }
        if let Some(x) = listeners.iter().find(|&&x| l.rule.occupied(&l.used, x)) {
            return Err(format!("{x} on {lb} is already used by another claim"));
        }
        Ok(())
    }
}

impl Clone for Allocator {
    fn clone(&self) -> Self {
        let r = Allocator::restore_with_policy(self.snapshot(), self.policy.clone())
            .unwrap_or_else(|e| unreachable!("own configuration: {e}"));
        debug_assert!(r.dropped.is_empty(), "own snapshot: {:?}", r.dropped);
        let mut a = r.allocator;
        a.retry = self.retry.clone();
        a.inherited = self.inherited.clone();
        a
    }
}
