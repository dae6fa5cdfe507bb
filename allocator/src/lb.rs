//! One load balancer's state and the port logic: which listeners fit, which free port to pick.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Claim, LbId, Listener, Port, PortRequest, Protocol, Sharing, TenantId, Time};
use crate::profile::LbProfile;

/// Where a load balancer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LbState {
    /// Asked for, not serving yet; claims may already be placed on it.
    Provisioning,
    /// Serving.
    Ready,
    /// Being deleted; takes no new claims.
    Draining,
}

/// The set of claims that may share one load balancer. Each LB belongs to exactly one pool,
/// fixed by its first claim, so sharing rules hold by construction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PoolKey {
    /// Claims of one tenant with the default rule.
    Tenant(TenantId),
    /// Claims of any tenant that all opted in to cross-tenant sharing.
    Open,
    /// Claims of one tenant with one group key.
    Group(TenantId, String),
    /// Claims of any tenant with one cross-tenant group key.
    CrossTenantGroup(String),
    /// One claim at a time, of this tenant.
    Dedicated(TenantId),
}

impl PoolKey {
    /// The pool a claim belongs to: by its sharing rule, or alone when `dedicated_policy`
    /// gives every claim an LB of its own.
    pub fn of(claim: &Claim, dedicated_policy: bool) -> PoolKey {
        if dedicated_policy {
            return PoolKey::Dedicated(claim.tenant.clone());
        }
        match &claim.sharing {
            Sharing::Tenant => PoolKey::Tenant(claim.tenant.clone()),
            Sharing::Anyone => PoolKey::Open,
            Sharing::Group(g) => PoolKey::Group(claim.tenant.clone(), g.clone()),
            Sharing::CrossTenantGroup(g) => PoolKey::CrossTenantGroup(g.clone()),
            Sharing::Dedicated => PoolKey::Dedicated(claim.tenant.clone()),
        }
    }

    /// Whether LBs of this pool hold at most one claim.
    pub fn is_dedicated(&self) -> bool {
        matches!(self, PoolKey::Dedicated(_))
    }
}

/// Why a claim does not fit an LB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Misfit {
    /// Not enough free listeners.
    Capacity,
    /// A fixed listener (or the LB's single protocol) clashes.
    Conflict,
    /// No free port left in the automatic range.
    RangeFull,
}

/// A load balancer as the allocator tracks it.
#[derive(Clone, Debug)]
pub(crate) struct Lb {
    pub id: LbId,
    pub profile: usize,
    pub pool: PoolKey,
    pub state: LbState,
    /// Listener → slot of the claim holding it.
    pub used: BTreeMap<Listener, u32>,
    pub claims: u32,
    pub idle_since: Option<Time>,
}

impl Lb {
    pub fn free(&self, profile: &LbProfile) -> u32 {
        profile.max_listeners.saturating_sub(self.used.len() as u32)
    }

    /// Whether `l` clashes with a listener in use; `strict` treats any protocol on the same
    /// port number as a clash (the 2018 behaviour).
    pub fn clashes(&self, profile: &LbProfile, l: Listener, strict: bool) -> bool {
        if self.used.contains_key(&l) {
            return true;
        }
        if strict || !profile.shared_port_numbers {
            return Protocol::ALL
                .iter()
                .any(|&p| p != l.protocol && self.used.contains_key(&Listener::new(p, l.port)));
        }
        false
    }

    /// The single protocol of an LB whose profile does not mix protocols.
    fn locked_protocol(&self) -> Option<Protocol> {
        self.used.keys().next().map(|l| l.protocol)
    }

    /// The listeners `claim` would get here, in request order, or why it does not fit.
    /// `prefer` (one entry per request) keeps earlier automatic ports where still free.
    pub fn plan(
        &self,
        profile: &LbProfile,
        claim: &Claim,
        strict: bool,
        prefer: Option<&[Listener]>,
    ) -> Result<Vec<Listener>, Misfit> {
        if self.free(profile) < claim.listener_count() {
            return Err(Misfit::Capacity);
        }
        if !profile.mixed_protocols
            && let Some(p) = self.locked_protocol()
            && claim.ports.iter().any(|r| r.protocol() != p)
        {
            return Err(Misfit::Conflict);
        }
        let mut taken: BTreeSet<Listener> = BTreeSet::new();
        for l in claim.fixed_listeners() {
            if self.clashes(profile, l, strict) {
                return Err(Misfit::Conflict);
            }
            taken.insert(l);
        }
        let clash_taken = |taken: &BTreeSet<Listener>, l: Listener| {
            taken
                .iter()
                .any(|&t| t == l || ((strict || !profile.shared_port_numbers) && t.port == l.port))
        };
        let mut out = Vec::with_capacity(claim.ports.len());
        for (i, req) in claim.ports.iter().enumerate() {
            let l = match *req {
                PortRequest::Fixed(l) => l,
                PortRequest::Any(proto) => {
                    let preferred = prefer.and_then(|p| p.get(i)).copied().filter(|&l| {
                        l.protocol == proto
                            && profile.auto_ports.contains(l.port)
                            && !profile.is_reserved(l.port)
                            && !self.clashes(profile, l, strict)
                            && !clash_taken(&taken, l)
                    });
                    let chosen = match preferred {
                        Some(l) => l,
                        None => self
                            .lowest_free(profile, proto, strict, &taken, &clash_taken)
                            .ok_or(Misfit::RangeFull)?,
                    };
                    taken.insert(chosen);
                    chosen
                }
            };
            out.push(l);
        }
        Ok(out)
    }

    /// The lowest port of the automatic range free for `proto`. Each step past a port is
    /// caused by one listener in use, one reserved port or one port of this claim, so the work
    /// is bounded by the LB's capacity, not by the range's size.
    fn lowest_free(
        &self,
        profile: &LbProfile,
        proto: Protocol,
        strict: bool,
        taken: &BTreeSet<Listener>,
        clash_taken: &impl Fn(&BTreeSet<Listener>, Listener) -> bool,
    ) -> Option<Listener> {
        let mut port: Port = profile.auto_ports.first;
        loop {
            if !profile.auto_ports.contains(port) {
                return None;
            }
            let l = Listener::new(proto, port);
            if !profile.is_reserved(port)
                && !self.clashes(profile, l, strict)
                && !clash_taken(taken, l)
            {
                return Some(l);
            }
            port = port.next()?;
        }
    }
}
