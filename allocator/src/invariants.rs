//! The allocator's invariants, checkable at any time: the simulator checks them after every
//! event in its tests, and the example tests after every step.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocator::Allocator;
use crate::claims::Place;
use crate::lb::{LbState, PoolKey, PoolKeyRef, Pooling};
use crate::model::{Listener, PortRequest, TenantId};
use crate::ports::ClashKey;

impl Allocator {
    /// Checks every invariant of the state; the first broken one is returned. Placements:
    /// fixed ports as asked, automatic ports in range and not reserved, each recorded on its
    /// LB, the LB of the claim's pool. LBs: capacity, claims per LB (dedicated LBs alone),
    /// the port-clash rule, one protocol where the profile cannot mix, draining LBs empty,
    /// idle stamps. Books: tenants' usage, totals, the retry queue, the capacity indexes and
    /// automatic-port cursors agree with what they summarise. Limits: quotas, the budget
    /// and the provisioning limit hold (limits a restored state already exceeded are kept,
    /// never grown).
    pub fn check_invariants(&self) -> Result<(), String> {
        #[derive(Default)]
        struct Recount {
            listeners: u32,
            claims: u32,
            dedicated: u32,
            waiting: u32,
            waiting_listeners: u32,
        }
        let mut per: BTreeMap<TenantId, Recount> = BTreeMap::new();
        // Queued slots with their arrival numbers: a queue keyed by a stale number would
        // retry out of order.
        let mut queued: BTreeSet<(u32, u32)> = BTreeSet::new();
        let mut queued_listeners = 0u32;
        let mut placed = 0u32;
        for (k, slot) in self.claims.iter() {
            let c = &slot.claim;
            let books = per.entry(c.tenant().clone()).or_default();
            let (lb, listeners, held) = match &slot.place {
                Place::Assigned { lb, .. } => {
                    let held = self.claims.ports(k).len();
                    let (_, listeners) = self.claims.placement(k).ok_or("placed, no placement")?;
                    (lb, listeners, held)
                }
                Place::Pending(reason) => {
                    books.waiting += 1;
                    books.waiting_listeners += c.listener_count();
                    if !reason.is_permanent() {
                        queued.insert((slot.seq, k));
                        queued_listeners += c.listener_count();
                    }
                    continue;
                }
                Place::Transit => {
                    return Err(format!("claim {} left in transit after an event", c.id()));
                }
                Place::Unplaced => {
                    books.waiting += 1;
                    books.waiting_listeners += c.listener_count();
                    queued.insert((slot.seq, k));
                    queued_listeners += c.listener_count();
                    continue;
                }
            };
            placed += 1;
            books.listeners += c.listener_count();
            books.claims += 1;
            let l = self
                .lbs
                .get(*lb)
                .ok_or_else(|| format!("{} is on unknown {lb}", c.id()))?;
            let p = &self.config.profiles[l.profile()];
            if self.pools[l.pool as usize].key.as_ref() != self.pool_of(c) {
                return Err(format!("{} is on {lb} of another pool", c.id()));
            }
            if held != c.ports().len() {
                return Err(format!(
                    "{}: {held} listeners for {} ports",
                    c.id(),
                    c.ports().len()
                ));
            }
            for (i, (req, got)) in c.ports().iter().zip(listeners.iter()).enumerate() {
                let ok = match *req {
                    PortRequest::Fixed(f) => f == *got,
                    PortRequest::Any(proto) => {
                        proto == got.protocol
                            && p.auto_ports.contains(got.port)
                            && !p.is_reserved(got.port)
                    }
                };
                if !ok {
                    return Err(format!("{}: {got} does not answer {req}", c.id()));
                }
                if l.used.get(*got) != Some(k) {
                    return Err(format!("{}: {got} is not recorded on {lb}", c.id()));
                }
                if listeners[i + 1..]
                    .iter()
                    .any(|&b| l.rule.clash(*got, b, true))
                {
                    return Err(format!("{}: {got} clashes within the claim", c.id()));
                }
            }
        }
        for k in self.claims.spilled_slots() {
            let spilled = self.claims.try_get(k).is_some_and(|s| {
                matches!(
                    s.place,
                    Place::Assigned {
                        ports: crate::claims::HeldPorts::Spilled,
                        ..
                    }
                )
            });
            if !spilled {
                return Err(format!("slot {k} keeps spilled ports it does not hold"));
            }
        }
        if placed != self.totals.placed {
            return Err(format!("placed count {} vs {placed}", self.totals.placed));
        }
        for (_, s) in self.claims.iter() {
            let kept = self.bodies.eligible(&s.claim);
            let fresh = self.config.eligible_profiles(&s.claim).ok();
            if kept != fresh.as_ref() {
                return Err(format!(
                    "{}: eligible profiles kept {kept:?}, worked out {fresh:?}",
                    s.claim.id()
                ));
            }
        }
        let mut baseline = vec![0u32; self.config.profiles.len()];
        for (_, s) in self.claims.iter() {
            if matches!(s.place, Place::Assigned { .. })
                && let Some(p) = self.config.dedicated_profile_index(&s.claim)
            {
                baseline[p] += 1;
            }
        }
        let placed_claims: Vec<&crate::model::Claim> = self
            .claims
            .iter()
            .filter(|(_, s)| matches!(s.place, Place::Assigned { .. }))
            .map(|(_, s)| &s.claim)
            .collect();
        let full = crate::bounds::counted_bound(
            placed_claims.iter().copied(),
            &crate::bounds::bound_profile(&self.config),
        );
        let live = self.lower_bound();
        if (live.by_capacity, live.by_listener, live.total)
            != (full.by_capacity, full.by_listener, full.total)
        {
            return Err(format!(
                "the kept lower bound {live:?} disagrees with {full:?}"
            ));
        }
        if baseline != self.totals.baseline_per_profile {
            return Err("the baseline disagrees with a recount".into());
        }
        let mut lbs_per_profile = vec![0u32; self.config.profiles.len()];
        let mut billed_per_profile = vec![0u32; self.config.profiles.len()];
        let (mut provisioning, mut draining, mut capacity, mut used_total) = (0, 0, 0u64, 0u64);
        let mut indexed_entries = vec![0usize; self.pools.len()];
        // Each tracked hot listener once, and only one asked for.
        for (h, t) in self.hot_tracked.iter().enumerate() {
            if let Some(l) = t {
                if self.hot_tracked[..h].contains(t) {
                    return Err(format!("hot listener {l} tracked twice"));
                }
                if !self.demand.contains_key(l) {
                    return Err(format!(
                        "hot listener {l} tracked with no claim asking for it"
                    ));
                }
            }
        }
        for l in self.lbs.values() {
            let p = &self.config.profiles[l.profile()];
            lbs_per_profile[l.profile()] += 1;
            used_total += l.used.len() as u64;
            if l.used.len() as u32 > p.max_listeners {
                return Err(format!(
                    "{} holds {} listeners, capacity {}",
                    l.id,
                    l.used.len(),
                    p.max_listeners
                ));
            }
            let owners: BTreeSet<u32> = l.used.slots().collect();
            if owners.len() as u32 != l.claims {
                return Err(format!(
                    "{} counts {} claims, holds {}",
                    l.id,
                    l.claims,
                    owners.len()
                ));
            }
            if let Some(&k) = owners.iter().find(|&&k| !self.is_on(k, l.id)) {
                return Err(format!(
                    "{} records a listener for slot {k}, not placed there",
                    l.id
                ));
            }
            if l.claims > l.claim_cap {
                return Err(format!(
                    "{} holds {} claims, at most {}",
                    l.id, l.claims, l.claim_cap
                ));
            }
            let mut by_key: BTreeMap<ClashKey, Vec<(Listener, u32)>> = BTreeMap::new();
            for (x, k) in l.used.iter() {
                by_key
                    .entry(l.rule.between_claims.key(x))
                    .or_default()
                    .push((x, k));
            }
            for group in by_key.values() {
                for (i, &(a, ka)) in group.iter().enumerate() {
                    for &(b, kb) in &group[i + 1..] {
                        if l.rule.clash(a, b, ka == kb) {
                            return Err(format!("{} uses {a} and {b}, which clash", l.id));
                        }
                    }
                }
            }
            if !p.mixed_protocols && l.used.protocols().count() > 1 {
                return Err(format!("{} mixes protocols", l.id));
            }
            let pool = &self.pools[l.pool as usize];
            if pool.key.is_dedicated() && l.claim_cap != 1 {
                return Err(format!(
                    "dedicated {} may hold {} claims",
                    l.id, l.claim_cap
                ));
            }
            match l.state {
                LbState::Draining => {
                    draining += 1;
                    if l.claims > 0 {
                        return Err(format!("draining {} holds claims", l.id));
                    }
                }
                LbState::Provisioning => {
                    provisioning += 1;
                    capacity += u64::from(p.max_listeners);
                    billed_per_profile[l.profile()] += 1;
                }
                LbState::Ready => {
                    capacity += u64::from(p.max_listeners);
                    billed_per_profile[l.profile()] += 1;
                }
            }
            let idle_expected = l.claims == 0 && l.state != LbState::Draining;
            if idle_expected != l.idle_since().is_some() {
                return Err(format!(
                    "{} idle stamp {:?} with {} claims",
                    l.id,
                    l.idle_since(),
                    l.claims
                ));
            }
            if let Some(t) = l.idle_since()
                && !self.idle.contains(&(t, l.id))
            {
                return Err(format!("{} idle but not in the idle set", l.id));
            }
            let rooms = l.rooms(p);
            if rooms != l.indexed
                || pool.index.tree.rooms_at(l.pos) != rooms
                || pool.index.tree.id(l.pos as usize) != Some(l.id)
                || pool.profile != l.profile()
            {
                return Err(format!(
                    "{} index entry {:?} at {} vs room {rooms:?}",
                    l.id, l.indexed, l.pos
                ));
            }
            let mask = crate::lifecycle::hot_mask_of(&self.hot_tracked, l);
            if mask != l.hot_mask {
                return Err(format!(
                    "{} hot mask {:#b}, its listeners say {mask:#b}",
                    l.id, l.hot_mask
                ));
            }
            // Each hot listener's index holds the LB's room in the listener's class where
            // it does not clash, and nothing else.
            for (h, t) in self.hot_tracked.iter().enumerate() {
                let sub = pool.index.clash_free(h);
                // Kept while tracked, from the pool's size on; never when not tracked.
                let due = t.is_some() && pool.index.lb_count() >= self.hot_at as usize;
                if (due && sub.is_none()) || (t.is_none() && sub.is_some()) {
                    return Err(format!(
                        "pool {:?} of {} LBs: hot listener {h} tracked {t:?}, its index kept: {}",
                        pool.key,
                        pool.index.lb_count(),
                        sub.is_some()
                    ));
                }
                let (Some((sub, class)), Some(hot)) = (sub, t) else {
                    continue;
                };
                if class != self.class_of(pool.profile, *hot) {
                    return Err(format!(
                        "pool {:?}: hot listener {hot}'s index keeps class {class}",
                        pool.key
                    ));
                }
                let mut want = [0; 3];
                if mask & (1 << h) == 0 {
                    want[class] = rooms[class];
                }
                if sub.tree.rooms_at(l.pos) != want || sub.tree.id(l.pos as usize) != Some(l.id) {
                    return Err(format!(
                        "{} in hot listener {h}'s index: {:?}, want {want:?}",
                        l.id,
                        sub.tree.rooms_at(l.pos)
                    ));
                }
                for (c, &r) in want.iter().enumerate() {
                    if r > 0 && sub.keeps_room_orders() && !sub.ordered_at(c, r, l.pos) {
                        return Err(format!(
                            "{} missing from hot listener {h}'s room order",
                            l.id
                        ));
                    }
                }
            }
            for (c, &r) in rooms.iter().enumerate() {
                // Orders by room are kept only for a policy that walks them.
                if r > 0 && pool.index.keeps_room_orders() {
                    indexed_entries[l.pool as usize] += 1;
                    if !pool.index.ordered_at(c, r, l.pos) {
                        return Err(format!("{} missing from the room order", l.id));
                    }
                }
            }
            l.auto
                .check(p, l.rule, &l.used)
                .map_err(|e| format!("{}: {e}", l.id))?;
        }
        for (i, pool) in self.pools.iter().enumerate() {
            let subs = (0..crate::index::HOT_LISTENERS)
                .filter_map(|h| pool.index.clash_free(h).map(|(sub, _)| sub));
            for index in std::iter::once(&pool.index).chain(subs) {
                let open = [0, 1, 2].map(|c| index.open(c));
                if open != index.recount_open() {
                    return Err(format!(
                        "pool {:?}: LBs with room {open:?}, its positions say {:?}",
                        pool.key,
                        index.recount_open()
                    ));
                }
                if index.tree.len() != pool.index.tree.len() {
                    return Err(format!(
                        "pool {:?}: a hot listener's index is not aligned",
                        pool.key
                    ));
                }
                if index.keeps_room_orders()
                    && index.ordered_len() != open.iter().sum::<u32>() as usize
                {
                    return Err(format!("pool {:?}: stale room entries", pool.key));
                }
                if let Some((level, entry)) = index.tree.stale_node() {
                    return Err(format!(
                        "pool {:?}: room tree entry {entry} of level {level} is stale",
                        pool.key
                    ));
                }
            }
            let n = pool.index.ordered_len();
            if n != indexed_entries[i] {
                return Err(format!("pool {:?}: stale room entries", pool.key));
            }
            if !pool.index.tree.ids_ascend() {
                return Err(format!("pool {:?}: positions not in id order", pool.key));
            }
        }
        if self.idle.len()
            != self
                .lbs
                .values()
                .filter(|l| l.idle_since().is_some())
                .count()
        {
            return Err("stale idle entries".into());
        }
        if (
            lbs_per_profile.as_slice(),
            billed_per_profile.as_slice(),
            provisioning,
            draining,
            capacity,
            used_total,
        ) != (
            self.totals.lbs_per_profile.as_slice(),
            self.totals.billed_per_profile.as_slice(),
            self.totals.provisioning,
            self.totals.draining,
            self.totals.capacity,
            self.totals.listeners_used,
        ) {
            return Err("LB totals disagree with a recount".into());
        }
        let waiting_now: BTreeSet<(u32, u32)> = self
            .waiting
            .queues
            .values()
            .flat_map(|q| q.iter().copied())
            .collect();
        if waiting_now != queued || self.waiting.listeners != queued_listeners {
            return Err("the retry queue disagrees with the claims".into());
        }
        if let Some((_, s)) = self.claims.iter().find(|(_, s)| s.seq >= self.next_seq) {
            return Err(format!(
                "claim {} arrived as number {}, not before the next, {}",
                s.claim.id(),
                s.seq,
                self.next_seq
            ));
        }
        if let Some(m) = self.config.max_provisioning
            && provisioning > m
        {
            return Err(format!("{provisioning} LBs provisioning, limit {m}"));
        }
        for l in self.lbs.values() {
            if let PoolKey::Dedicated(t) = &self.pools[l.pool as usize].key {
                per.entry(t.clone()).or_default().dedicated += 1;
            }
        }
        for (t, u) in self.usage.iter() {
            let r = per.remove(t).unwrap_or_default();
            let got = (
                u.listeners,
                u.claims,
                u.dedicated_lbs,
                u.waiting_claims,
                u.waiting_listeners,
            );
            let want = (
                r.listeners,
                r.claims,
                r.dedicated,
                r.waiting,
                r.waiting_listeners,
            );
            if got != want {
                return Err(format!("tenant {t}: usage {got:?} vs recount {want:?}"));
            }
            if self.over_quota(t) && !self.inherited.over_quota.contains(t) {
                return Err(format!("tenant {t} is over its quota: {u:?}"));
            }
        }
        if let Some((t, _)) = per.into_iter().next() {
            return Err(format!("tenant {t} has claims but no usage record"));
        }
        // Every live claim holds a kept body, and each kept body counts its claims.
        let mut holders: std::collections::HashMap<*const crate::model::ClaimBody, u32> =
            std::collections::HashMap::new();
        for (_, s) in self.claims.iter() {
            *holders
                .entry(std::sync::Arc::as_ptr(s.claim.body()))
                .or_default() += 1;
        }
        let (kept, indexed) = self.bodies.counts();
        let kept: std::collections::HashMap<_, _> = kept.into_iter().collect();
        if holders != kept || !indexed {
            return Err(format!(
                "the kept claim bodies' counts disagree with a recount of the live claims \
                 ({} bodies kept, {} in use)",
                kept.len(),
                holders.len()
            ));
        }
        // The numbers a kept body carries name its own tenant's books, sharing pool and
        // pool key here, and the books weigh each tenant as configured.
        for (_, s) in self.claims.iter() {
            let (c, body) = (&s.claim, s.claim.body());
            let sharing_pool = self.bound.number(PoolKeyRef::of(c, Pooling::BySharing));
            let pool_key = self.pool_keys.number(self.pool_of(c));
            if !self.usage.is_number_of(body.tenant_no, c.tenant())
                || sharing_pool != Some(body.bound_no)
                || pool_key != Some(body.pool_no)
            {
                return Err(format!(
                    "{}: its body carries tenant {}, sharing pool {}, pool key {}; \
                     here they are {:?}, {sharing_pool:?}, {pool_key:?}",
                    c.id(),
                    body.tenant_no,
                    body.bound_no,
                    body.pool_no,
                    self.usage.number_of(c.tenant()),
                ));
            }
        }
        for (n, (t, _)) in self.usage.by_number().enumerate() {
            let (_, w) = self.usage.weighted_by_number(n);
            if w != self.config.tenant(t).weight {
                return Err(format!(
                    "tenant {t}'s books weigh it {w}, configured {}",
                    self.config.tenant(t).weight
                ));
            }
        }
        if self.over_budget() && !self.inherited.over_budget {
            return Err(format!(
                "{} LBs costing {:.4}/h are over the budget",
                self.lbs.len(),
                self.cost_per_hour()
            ));
        }
        Ok(())
    }
}
