//! The allocator's invariants, checkable at any time: used by the property tests and by
//! the simulator after every event when checking is on.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocator::{Allocator, Place};
use crate::lb::LbState;
use crate::model::{Listener, PortRequest, TenantId};

impl Allocator {
    /// Checks every invariant of the allocator's state; the first broken one is returned:
    /// no listener used twice on an LB (per the profile's port-number rule), capacities,
    /// single-protocol LBs, fixed ports as asked and automatic ports in range, one pool per
    /// LB (sharing rules), dedicated LBs alone, draining LBs empty, quotas, budget, the
    /// provisioning limit, and the indexes agreeing with the state they index.
    pub fn check_invariants(&self) -> Result<(), String> {
        let strict = self.policy.strict_port_numbers();
        let mut listeners_of: BTreeMap<TenantId, u32> = BTreeMap::new();
        let mut claims_of: BTreeMap<TenantId, u32> = BTreeMap::new();
        for (k, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let Place::Assigned { lb, listeners } = &slot.place else {
                continue;
            };
            let c = &slot.claim;
            let l = self
                .lbs
                .get(lb)
                .ok_or_else(|| format!("{} is on unknown {lb}", c.id))?;
            let p = &self.config.profiles[l.profile];
            if l.pool != self.pool_of(c) {
                return Err(format!("{} is on {lb} of pool {:?}", c.id, l.pool));
            }
            if listeners.len() != c.ports.len() {
                return Err(format!(
                    "{}: {} listeners for {} ports",
                    c.id,
                    listeners.len(),
                    c.ports.len()
                ));
            }
            for (req, got) in c.ports.iter().zip(listeners) {
                let ok = match *req {
                    PortRequest::Fixed(f) => f == *got,
                    PortRequest::Any(proto) => {
                        proto == got.protocol
                            && p.auto_ports.contains(got.port)
                            && !p.is_reserved(got.port)
                    }
                };
                if !ok {
                    return Err(format!("{}: {got} does not answer {req}", c.id));
                }
                if l.used.get(got) != Some(&(k as u32)) {
                    return Err(format!("{}: {got} is not recorded on {lb}", c.id));
                }
            }
            *listeners_of.entry(c.tenant.clone()).or_default() += c.listener_count();
            *claims_of.entry(c.tenant.clone()).or_default() += 1;
        }
        let mut provisioning = 0;
        let mut dedicated: BTreeMap<TenantId, u32> = BTreeMap::new();
        for l in self.lbs.values() {
            let p = &self.config.profiles[l.profile];
            if l.used.len() as u32 > p.max_listeners {
                return Err(format!(
                    "{} holds {} listeners, capacity {}",
                    l.id,
                    l.used.len(),
                    p.max_listeners
                ));
            }
            let owners: BTreeSet<u32> = l.used.values().copied().collect();
            if owners.len() as u32 != l.claims {
                return Err(format!(
                    "{} counts {} claims, holds {}",
                    l.id,
                    l.claims,
                    owners.len()
                ));
            }
            let used: Vec<(&Listener, &u32)> = l.used.iter().collect();
            for (i, (a, ka)) in used.iter().enumerate() {
                for (b, kb) in &used[i + 1..] {
                    let port_rule =
                        (!p.shared_port_numbers || (strict && ka != kb)) && a.port == b.port;
                    if port_rule {
                        return Err(format!("{} uses {a} and {b}", l.id));
                    }
                }
                if !p.mixed_protocols && a.protocol != used[0].0.protocol {
                    return Err(format!("{} mixes protocols", l.id));
                }
                let owner = self.slots.get(**ka as usize).and_then(Option::as_ref);
                let placed_here = owner
                    .is_some_and(|s| matches!(&s.place, Place::Assigned { lb, .. } if *lb == l.id));
                if !placed_here {
                    return Err(format!("{} records {a} for a claim not placed there", l.id));
                }
            }
            if l.pool.is_dedicated() && l.claims > 1 {
                return Err(format!("dedicated {} holds {} claims", l.id, l.claims));
            }
            if l.state == LbState::Draining && l.claims > 0 {
                return Err(format!("draining {} holds claims", l.id));
            }
            if l.state == LbState::Provisioning {
                provisioning += 1;
            }
            if let crate::lb::PoolKey::Dedicated(t) = &l.pool {
                *dedicated.entry(t.clone()).or_default() += 1;
            }
            let idle_expected = l.claims == 0 && l.state != LbState::Draining;
            if idle_expected != l.idle_since.is_some() {
                return Err(format!(
                    "{} idle stamp {:?} with {} claims",
                    l.id, l.idle_since, l.claims
                ));
            }
            if let Some(t) = l.idle_since
                && !self.idle.contains(&(t, l.id))
            {
                return Err(format!("{} idle but not in the idle set", l.id));
            }
            let free = l.free(p);
            let listed = l.state != LbState::Draining
                && free > 0
                && !(l.pool.is_dedicated() && l.claims > 0);
            let idx = self.pools.get(&(l.pool.clone(), l.profile));
            let in_index =
                idx.is_some_and(|i| i.by_id.contains(&l.id) && i.by_free.contains(&(free, l.id)));
            if listed != in_index {
                return Err(format!(
                    "{} index entry is {in_index}, expected {listed}",
                    l.id
                ));
            }
        }
        let indexed: usize = self.pools.values().map(|i| i.by_id.len()).sum();
        let by_free: usize = self.pools.values().map(|i| i.by_free.len()).sum();
        if indexed != by_free
            || self.idle.len() != self.lbs.values().filter(|l| l.idle_since.is_some()).count()
        {
            return Err("stale index entries".into());
        }
        if provisioning != self.provisioning {
            return Err(format!(
                "provisioning count {} vs {provisioning}",
                self.provisioning
            ));
        }
        if let Some(m) = self.config.max_provisioning
            && provisioning > m
        {
            return Err(format!("{provisioning} LBs provisioning, limit {m}"));
        }
        for (t, u) in &self.usage {
            let (l, c, d) = (
                listeners_of.get(t).copied().unwrap_or(0),
                claims_of.get(t).copied().unwrap_or(0),
                dedicated.get(t).copied().unwrap_or(0),
            );
            if (u.listeners, u.claims, u.dedicated_lbs) != (l, c, d) {
                return Err(format!(
                    "tenant {t}: usage {u:?} vs recount ({l}, {c}, {d})"
                ));
            }
            let q = self.config.tenant(t).quota;
            if q.max_listeners.is_some_and(|m| l > m)
                || q.max_claims.is_some_and(|m| c > m)
                || q.max_dedicated_lbs.is_some_and(|m| d > m)
            {
                return Err(format!("tenant {t} is over its quota: {u:?}"));
            }
        }
        if self
            .config
            .budget
            .max_lbs
            .is_some_and(|m| self.lbs.len() as u32 > m)
        {
            return Err(format!("{} LBs over the budget", self.lbs.len()));
        }
        if self
            .config
            .budget
            .max_cost_per_hour
            .is_some_and(|m| self.cost_per_hour() > m + 1e-9)
        {
            return Err(format!("cost {}/h over the budget", self.cost_per_hour()));
        }
        Ok(())
    }
}
