//! Snapshot and restore: the controller rebuilds the allocator from what the cluster
//! records; a restored allocator decides exactly as the original would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocator::{Allocator, Place};
use crate::config::Config;
use crate::decision::PendingReason;
use crate::error::Error;
use crate::lb::{Lb, LbState, PoolKey};
use crate::model::{Claim, LbId, Listener, PortRequest, ProfileName, Time};

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
    /// Arrival order (fair retry within a tenant follows it).
    pub seq: u64,
    /// The LB and listeners (one per port request, in order), if placed.
    #[serde(default)]
    pub placement: Option<(LbId, Vec<Listener>)>,
    /// The last reported pending reason, if pending.
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
    /// Next LB number to hand out.
    pub next_lb: u64,
    /// Next arrival sequence number.
    pub next_seq: u64,
    /// LBs in id order.
    pub lbs: Vec<LbRecord>,
    /// Claims in arrival order.
    pub claims: Vec<ClaimRecord>,
}

impl Allocator {
    /// The allocator's whole state as plain data.
    pub fn snapshot(&self) -> Snapshot {
        let lbs = self
            .lbs
            .values()
            .map(|l| LbRecord {
                id: l.id,
                profile: self.config.profiles[l.profile].name.clone(),
                pool: l.pool.clone(),
                state: l.state,
                idle_since: l.idle_since,
            })
            .collect();
        let mut claims: Vec<ClaimRecord> = self
            .slots
            .iter()
            .flatten()
            .map(|s| ClaimRecord {
                claim: s.claim.clone(),
                seq: s.seq,
                placement: match &s.place {
                    Place::Assigned { lb, listeners } => Some((*lb, listeners.clone())),
                    _ => None,
                },
                pending: match s.place {
                    Place::Pending(r) => Some(r),
                    _ => None,
                },
            })
            .collect();
        claims.sort_by_key(|c| c.seq);
        Snapshot {
            config: self.config.clone(),
            now: self.now,
            next_lb: self.next_lb,
            next_seq: self.next_seq,
            lbs,
            claims,
        }
    }

    /// Rebuilds an allocator, checking that the snapshot is consistent: known profiles,
    /// no listener used twice, capacities and fixed ports respected, pools matching claims.
    pub fn restore(snapshot: Snapshot) -> Result<Allocator, Error> {
        let mut a = Allocator::new(snapshot.config)?;
        a.now = snapshot.now;
        let bad = |m: String| Err(Error::Restore(m));
        let mut max_lb = 0;
        for r in snapshot.lbs {
            let Some(profile) = a.config.profile_index(&r.profile) else {
                return bad(format!("{}: profile {} is not configured", r.id, r.profile));
            };
            if a.lbs.contains_key(&r.id) {
                return bad(format!("{} appears twice", r.id));
            }
            max_lb = max_lb.max(r.id.0);
            a.insert_lb(Lb {
                id: r.id,
                profile,
                pool: r.pool,
                state: r.state,
                used: BTreeMap::new(),
                claims: 0,
                idle_since: r.idle_since,
            });
        }
        a.next_lb = snapshot.next_lb.max(max_lb + 1);
        let mut max_seq = None;
        let strict = a.policy.strict_port_numbers();
        for r in snapshot.claims {
            r.claim.validate()?;
            if a.by_id.contains_key(&r.claim.id) {
                return bad(format!("claim {} appears twice", r.claim.id));
            }
            max_seq = max_seq.max(Some(r.seq));
            let id = r.claim.id.clone();
            let pool = a.pool_of(&r.claim);
            let k = a.insert_slot(r.claim, r.seq, Place::Unplaced);
            match (r.placement, r.pending) {
                (Some((lb, listeners)), _) => {
                    let Some(l) = a.lbs.get(&lb) else {
                        return bad(format!("claim {id} is on unknown {lb}"));
                    };
                    if l.pool != pool {
                        return bad(format!("claim {id} is on {lb} of another pool"));
                    }
                    let profile = &a.config.profiles[l.profile];
                    let claim = &a.slot(k).claim;
                    if listeners.len() != claim.ports.len() {
                        return bad(format!("claim {id}: listener count differs from its ports"));
                    }
                    if l.free(profile) < claim.listener_count() {
                        return bad(format!("claim {id}: {lb} is over capacity"));
                    }
                    for (req, got) in claim.ports.iter().zip(&listeners) {
                        let ok = match *req {
                            PortRequest::Fixed(f) => f == *got,
                            PortRequest::Any(p) => p == got.protocol,
                        };
                        if !ok {
                            return bad(format!("claim {id}: {got} does not answer {req}"));
                        }
                        if l.clashes(profile, *got, strict)
                            || listeners
                                .iter()
                                .filter(|&&x| profile.clash(x, *got))
                                .count()
                                > 1
                        {
                            return bad(format!("claim {id}: {got} on {lb} is used twice"));
                        }
                    }
                    a.assign(k, lb, listeners);
                }
                (None, Some(reason)) => {
                    a.slots[k as usize]
                        .as_mut()
                        .unwrap_or_else(|| unreachable!())
                        .place = Place::Pending(reason);
                    if !reason.is_permanent() {
                        a.enqueue(k);
                    }
                }
                (None, None) => a.enqueue(k),
            }
        }
        a.next_seq = snapshot.next_seq.max(max_seq.map_or(0, |s| s + 1));
        // An LB with no claims and no idle stamp (e.g. rebuilt from a cluster) starts idling now.
        let now = a.now;
        let empty: Vec<LbId> = a
            .lbs
            .values()
            .filter(|l| l.claims == 0 && l.idle_since.is_none() && l.state != LbState::Draining)
            .map(|l| l.id)
            .collect();
        for id in empty {
            a.mark_idle(id, now);
        }
        Ok(a)
    }
}

impl Clone for Allocator {
    fn clone(&self) -> Self {
        Allocator::restore(self.snapshot()).unwrap_or_else(|e| unreachable!("own snapshot: {e}"))
    }
}
