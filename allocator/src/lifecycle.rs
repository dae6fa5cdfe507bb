//! LB lifecycle: opening an LB, ready, deletion (asked for or not), idle expiry, and the
//! bookkeeping that keeps the pool indexes and totals true as LBs change.

use crate::allocator::{Allocator, Pool};
use crate::claims::Place;
use crate::decision::Decision;
use crate::index::HOT_LISTENERS;
use crate::lb::{Lb, LbState, Misfit, PoolKey, PoolKeyRef, Pooling};
use crate::model::{Claim, LbId, Listener, Listeners, Time};
use crate::policy::IdleLbs;
use crate::ports::ClashRule;
use smallvec::SmallVec;

impl Allocator {
    /// The index of the pool index for `(key, profile)`, made on first use (the key is
    /// copied only then).
    pub(crate) fn pool_index(&mut self, key: &PoolKey, profile: usize) -> u32 {
        let no = self.pool_keys.enter(key.as_ref(), SmallVec::new);
        if let Some(i) = self.pool_of_profile(no, profile) {
            return i;
        }
        let i = self.pools.len() as u32;
        let top = self.config.profiles[profile].max_listeners;
        // No hot listener's index yet: the pool has no LB (see `index_hot_in`).
        let index = crate::index::PoolIndex::new(self.rules.walks, top);
        self.pools.push(Pool {
            key: key.clone(),
            profile,
            index,
        });
        self.pool_keys.get_mut(no).push((profile, i));
        i
    }

    /// The pool index for pool key number `no` (from [`Allocator::pool_keys`], as a kept
    /// body carries it) and `profile`, if one was made.
    pub(crate) fn pool_of_profile(&self, no: u32, profile: usize) -> Option<u32> {
        self.pool_keys
            .get(no)
            .iter()
            .find(|&&(p, _)| p == profile)
            .map(|&(_, i)| i)
    }

    /// [`Allocator::pool_of_profile`] for a kept claim (its body carries its key's number).
    pub(crate) fn claim_pool(&self, claim: &Claim, profile: usize) -> Option<u32> {
        let no = claim.body().pool_no;
        debug_assert_eq!(
            self.pool_keys.number(self.pool_of(claim)),
            Some(no),
            "a kept body carries its pool key's number"
        );
        self.pool_of_profile(no, profile)
    }

    /// The protocol class of `profile`'s pool indexes a claim asking for `l` walks: one
    /// class when the profile mixes protocols, else `l`'s protocol.
    pub(crate) fn class_of(&self, profile: usize, l: Listener) -> usize {
        if self.config.profiles[profile].mixed_protocols {
            0
        } else {
            l.protocol.index()
        }
    }

    /// The clash rule and claim cap of an LB of `profile` in `pool`.
    fn lb_rules(&self, profile: usize, pool: PoolKeyRef<'_>) -> (ClashRule, u32) {
        let rule = ClashRule::new(&self.config.profiles[profile], self.rules.port_rule);
        let cap = if pool.is_dedicated() {
            1
        } else {
            self.rules.max_claims_per_lb.unwrap_or(u32::MAX)
        };
        (rule, cap)
    }

    /// The listeners `claim` would get on a new, empty LB of `profile`.
    pub(crate) fn plan_on_empty(&self, profile: usize, claim: &Claim) -> Result<Listeners, Misfit> {
        let pool = self.pool_of(claim);
        let (rule, cap) = self.lb_rules(profile, pool);
        let p = &self.config.profiles[profile];
        Lb::fresh(LbId(0), profile, p, 0, cap, rule, LbState::Provisioning).plan(p, claim, None)
    }

    /// The id the next new LB gets, if one is left. Ids are never reused: the shell may
    /// still be tearing down the LB an old id named (a Service being deleted), so a new LB
    /// under it could be taken for the old one. They run out after four billion LBs, or at
    /// once when a restore records an LB with the last id (until a restore without it).
    pub(crate) fn next_lb_id(&self) -> Option<LbId> {
        u32::try_from(self.next_lb).ok().map(LbId)
    }

    /// Opens a new LB (provisioning) and returns its id; placement has checked that an id
    /// is left ([`Allocator::next_lb_id`]).
    pub(crate) fn open_lb(&mut self, profile: usize, pool: &PoolKey) -> LbId {
        let Some(id) = self.next_lb_id() else {
            unreachable!("placement opens an LB only while an id is left")
        };
        self.next_lb += 1;
        self.insert_lb(id, profile, pool, LbState::Provisioning, None);
        id
    }

    /// Adds an LB record with its index entries and totals (open and restore).
    pub(crate) fn insert_lb(
        &mut self,
        id: LbId,
        profile: usize,
        pool: &PoolKey,
        state: LbState,
        idle_since: Option<Time>,
    ) {
        let (rule, cap) = self.lb_rules(profile, pool.as_ref());
        let pi = self.pool_index(pool, profile);
        let p = &self.config.profiles[profile];
        let mut lb = Lb::fresh(id, profile, p, pi, cap, rule, state);
        if let Some(used) = self.spare_used.pop() {
            lb.used = used;
        }
        lb.set_idle_since(idle_since.filter(|_| state != LbState::Draining));
        let rooms = lb.rooms(p);
        lb.pos = self.pools[pi as usize].index.insert(id, rooms);
        self.retry.gained_room(pi, id);
        lb.indexed = rooms;
        self.totals.lbs_per_profile[profile] += 1;
        match state {
            LbState::Provisioning => self.totals.provisioning += 1,
            LbState::Draining => self.totals.draining += 1,
            LbState::Ready => {}
        }
        if state != LbState::Draining {
            self.totals.capacity += u64::from(p.max_listeners);
            self.totals.billed_per_profile[profile] += 1;
        }
        if let PoolKey::Dedicated(t) = pool {
            let config = &self.config;
            self.usage
                .entry(t, || config.tenant(t).weight)
                .dedicated_lbs += 1;
        }
        if let Some(t) = lb.idle_since() {
            self.idle.insert((t, id));
        }
        self.lbs.insert(lb);
        if self.any_hot() {
            self.index_hot_in(pi);
        }
    }

    /// Whether pool `pi` is large enough to keep hot listeners' indexes: it holds as many
    /// LBs as the demand that makes a listener hot. A walk in a smaller pool passes fewer
    /// clashes than that, and the indexes would cost every room change in it (1,000
    /// tenants' pools of a few LBs each held 8 each, a third of the allocator's memory).
    fn keeps_hot_indexes(&self, pi: usize) -> bool {
        self.pools[pi].index.lb_count() >= self.hot_at as usize
    }

    /// Starts, in pool `pi` once it keeps them, the index of each tracked hot listener it
    /// lacks, entering its LBs. A pool keeps them until its listener is let go, however
    /// few LBs it then holds.
    fn index_hot_in(&mut self, pi: u32) {
        let pi = pi as usize;
        if !self.keeps_hot_indexes(pi) {
            return;
        }
        for h in 0..HOT_LISTENERS {
            let Some(l) = self.hot_tracked[h] else {
                continue;
            };
            if self.pools[pi].index.clash_free(h).is_some() {
                continue;
            }
            let class = self.class_of(self.pools[pi].profile, l);
            let pool = &mut self.pools[pi].index;
            pool.start_clash_free(h, class);
            let ids: Vec<LbId> = pool.lbs().collect();
            for id in ids {
                if let Some(lb) = self.lbs.get(id)
                    && lb.hot_mask & (1 << h) == 0
                {
                    self.pools[pi].index.enter_clash_free(h, lb.pos, lb.indexed);
                }
            }
        }
    }

    /// Brings an LB's index entries up to date after its room, protocol or state changed
    /// (`change` says how).
    pub(crate) fn reindex(&mut self, id: LbId, change: Change<'_>) {
        let Some(l) = self.lbs.get_mut(id) else {
            return;
        };
        let rooms = l.rooms(&self.config.profiles[l.profile()]);
        let mask = match change {
            // Listeners that clash with no tracked one leave every tracked one as occupied
            // as it was: the mask stands, and no listener table is probed.
            Change::Listeners(ls) if !clashes_with_tracked(&self.hot_tracked, l, ls) => l.hot_mask,
            _ => hot_mask_of(&self.hot_tracked, l),
        };
        if rooms != l.indexed || mask != l.hot_mask {
            self.pools[l.pool as usize]
                .index
                .update(l.pos, (l.indexed, l.hot_mask), (rooms, mask));
            l.indexed = rooms;
            l.hot_mask = mask;
        }
    }

    /// Starts or stops tracking fixed listener `l` as hot, after its demand changed to
    /// `demand`: tracked from [`HOT_AT`] claims asking for it (see
    /// [`Allocator::track_hot_from`]) and from the lesser of a quarter of the LBs and
    /// √(8 × live claims), while a slot is free; let go below a quarter of that (so a
    /// listener near the mark is not recounted at every claim). Starting or stopping sets
    /// every LB's bit for it, and makes or drops the index of the LBs it does not clash
    /// on in each pool of at least as many LBs as [`HOT_AT`] (a smaller pool makes its own
    /// once it grows, `index_hot_in`).
    ///
    /// Why those marks: an index costs every room change a few steps, and saves a walk
    /// at most the LBs holding the listener, fewer than the `d` claims asking for it. A
    /// share `d / c` of arrivals ask for it, so walks pass at most `d² / c` of its
    /// clashes per arrival: it is indexed from 8 per arrival. A listener held by a
    /// quarter of the LBs is indexed whatever its share (the default scenario at 1000
    /// arrivals/h needs it). Below both, an index costs more than it saves: 8 ports asked
    /// by 3% of 20,000 claims took +41% instructions with an index each from 32 claims.
    /// With only the quarter of the LBs, 20 popular ports each fixed, where few claims
    /// share an LB, left the fifth and later ones unindexed and best-fit twice as slow
    /// (see `BENCHMARKS.md`).
    pub(crate) fn track_hot(&mut self, l: Listener, demand: u32) {
        if self.rules.pooling == Pooling::EveryClaimAlone {
            // An LB holds one claim: a non-empty one has no room, so nothing to step over.
            return;
        }
        let quarter = self.lbs.len() / 4;
        let walked = self.claims.len().saturating_mul(8).isqrt();
        let at = self
            .hot_at
            .max(u32::try_from(quarter.min(walked)).unwrap_or(u32::MAX));
        let slot = self.hot_tracked.iter().position(|t| *t == Some(l));
        let started = match slot {
            None if demand >= at => {
                let Some(h) = self.hot_tracked.iter().position(Option::is_none) else {
                    return;
                };
                self.hot_tracked[h] = Some(l);
                true
            }
            Some(h) if demand < at / 4 => {
                self.hot_tracked[h] = None;
                for pool in &mut self.pools {
                    pool.index.stop_clash_free(h);
                }
                false
            }
            _ => return,
        };
        // Only bit `h` changes, while no index of `h` is kept: the other hot listeners'
        // indexes see the same rooms.
        let ids: Vec<LbId> = self.lbs.keys().copied().collect();
        for id in ids {
            let Some(lb) = self.lbs.get_mut(id) else {
                continue;
            };
            let mask = hot_mask_of(&self.hot_tracked, lb);
            if mask != lb.hot_mask {
                self.pools[lb.pool as usize].index.update(
                    lb.pos,
                    (lb.indexed, lb.hot_mask),
                    (lb.indexed, mask),
                );
                lb.hot_mask = mask;
            }
        }
        if started {
            // Each pool large enough makes the new listener's index, with its LBs.
            for i in 0..self.pools.len() {
                self.index_hot_in(i as u32);
            }
        }
    }

    /// An LB is no longer idle (it got a claim).
    pub(crate) fn unidle(&mut self, id: LbId) {
        if let Some(l) = self.lbs.get_mut(id)
            && let Some(t) = l.take_idle_since()
        {
            self.idle.remove(&(t, id));
        }
    }

    /// The shell reports an LB serving.
    pub(crate) fn lb_ready(&mut self, id: LbId) {
        if let Some(l) = self.lbs.get_mut(id)
            && l.state == LbState::Provisioning
        {
            l.state = LbState::Ready;
            self.totals.provisioning -= 1;
            // A provisioning slot freed: claims waiting on the provisioning limit may go.
            if self.config.max_provisioning.is_some() {
                self.retry.everything();
            }
        }
    }

    /// Asks for an (empty) LB's deletion.
    pub(crate) fn start_delete(&mut self, id: LbId, out: &mut Vec<Decision>) {
        self.unidle(id);
        let l = self
            .lbs
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("deleting a live LB"));
        debug_assert_eq!(l.claims, 0, "only empty LBs are deleted");
        match l.state {
            LbState::Provisioning => self.totals.provisioning -= 1,
            LbState::Ready => {}
            LbState::Draining => return,
        }
        // A draining LB is no longer billed (and no longer provisioning): claims waiting on
        // the cost budget or the provisioning limit may go.
        self.retry.everything();
        l.state = LbState::Draining;
        self.totals.draining += 1;
        self.totals.capacity -= u64::from(self.config.profiles[l.profile()].max_listeners);
        self.totals.billed_per_profile[l.profile()] -= 1;
        self.reindex(id, Change::State);
        out.push(Decision::DeleteLb { lb: id });
    }

    /// An LB is gone (deleted as asked, failed, or deleted by someone else): its claims
    /// are released (with `Release` decisions) and wait to be placed again.
    pub(crate) fn drop_lb(&mut self, id: LbId, out: &mut Vec<Decision>) {
        for k in self.slots_on_by_arrival(id) {
            self.release(k);
            out.push(Decision::Release {
                claim: self.claims.get(k).claim.id().clone(),
                lb: id,
            });
        }
        self.unidle(id);
        let l = self
            .lbs
            .remove(id)
            .unwrap_or_else(|| unreachable!("dropping a live LB"));
        let moved = self.pools[l.pool as usize]
            .index
            .remove(l.pos, l.indexed, l.hot_mask);
        for (lb, pos) in moved {
            if let Some(x) = self.lbs.get_mut(lb) {
                x.pos = pos;
            }
        }
        let p = &self.config.profiles[l.profile()];
        self.totals.lbs_per_profile[l.profile()] -= 1;
        match l.state {
            LbState::Provisioning => self.totals.provisioning -= 1,
            LbState::Draining => self.totals.draining -= 1,
            LbState::Ready => {}
        }
        if l.state != LbState::Draining {
            self.totals.capacity -= u64::from(p.max_listeners);
            self.totals.billed_per_profile[l.profile()] -= 1;
        }
        if let PoolKey::Dedicated(t) = &self.pools[l.pool as usize].key {
            let t = t.clone();
            if let Some(u) = self.usage.get_mut(&t) {
                u.dedicated_lbs -= 1;
            }
            self.forget_inherited_limits(&t);
        }
        if self.inherited.over_budget && !self.over_budget() {
            self.inherited.over_budget = false;
        }
        if self.spare_used.len() < crate::allocator::SPARE_USED
            && l.used.room() <= crate::allocator::SPARE_USED_ROOM
        {
            let mut used = l.used;
            used.clear();
            self.spare_used.push(used);
        }
        // Budget or a provisioning slot freed.
        self.retry.everything();
    }

    /// Deletes LBs idle past the timeout.
    pub(crate) fn expire_idle(&mut self, out: &mut Vec<Decision>) {
        let timeout = self.idle_timeout_ms();
        while let Some(&(t, lb)) = self.idle.iter().next() {
            if t.plus_ms(timeout) > self.now {
                break;
            }
            self.start_delete(lb, out);
        }
    }

    /// How long an empty LB is kept: the configured timeout, or none under a policy that
    /// deletes empty LBs at once (one LB per Service, as Kubernetes does).
    pub(crate) fn idle_timeout_ms(&self) -> u64 {
        match self.rules.idle_lbs {
            IdleLbs::KeepForTimeout => self.config.idle_timeout_ms,
            IdleLbs::DeleteAtOnce => 0,
        }
    }

    /// Whether slot `k` sits on `lb` (for assertions and restore).
    pub(crate) fn is_on(&self, k: u32, lb: LbId) -> bool {
        matches!(&self.claims.get(k).place, Place::Assigned { lb: x, .. } if *x == lb)
    }
}

/// Demand (claims asking for it, placed or waiting) from which a fixed listener is
/// tracked as hot, when that is also a quarter of the LBs or √(8 × live claims)
/// ([`Allocator::track_hot`]).
pub(crate) const HOT_AT: u32 = 32;

/// What changed on an LB, for [`Allocator::reindex`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    /// It took or gave back these listeners (its room changed, and its hot mask only if
    /// one of them clashes with a tracked hot listener).
    Listeners(&'a [Listener]),
    /// Its state changed.
    State,
}

/// Whether any of `listeners` clashes, on `lb`, with a tracked hot listener.
fn clashes_with_tracked(
    tracked: &[Option<Listener>; HOT_LISTENERS],
    lb: &Lb,
    listeners: &[Listener],
) -> bool {
    let rule = lb.rule.between_claims;
    tracked
        .iter()
        .flatten()
        .any(|&t| listeners.iter().any(|&l| rule.clash(l, t)))
}

/// Which tracked hot listeners clash on `lb`.
#[inline]
pub(crate) fn hot_mask_of(tracked: &[Option<Listener>; HOT_LISTENERS], lb: &Lb) -> u8 {
    // No listener is hot (no fixed ports asked for by many): nothing to look up.
    if lb.hot_mask == 0 && tracked == &[None; HOT_LISTENERS] {
        return 0;
    }
    hot_mask_looked_up(tracked, lb)
}

fn hot_mask_looked_up(tracked: &[Option<Listener>; HOT_LISTENERS], lb: &Lb) -> u8 {
    let mut mask = 0;
    for (h, l) in tracked.iter().enumerate() {
        if let Some(l) = *l
            && lb.rule.occupied(&lb.used, l)
        {
            mask |= 1 << h;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::decision::Event;
    use crate::model::PortRequest;

    /// The pools holding a hot listener's index of the LBs it does not clash on.
    fn pools_indexing(a: &Allocator, l: Listener) -> Vec<String> {
        let Some(h) = a.hot_tracked.iter().position(|t| *t == Some(l)) else {
            return Vec::new();
        };
        a.pools
            .iter()
            .filter(|p| p.index.clash_free(h).is_some())
            .map(|p| format!("{:?}", p.key))
            .collect()
    }

    /// A pool keeps a hot listener's index only once it holds as many LBs as the demand
    /// that made the listener hot: tenant `big`'s six claims on port 443 take six LBs and
    /// get one, tenant `small`'s single LB does not, until it grows to four.
    #[test]
    fn only_pools_of_enough_lbs_index_a_hot_listener() {
        let config =
            Config::with_builtin("aws-nlb", "best-fit".parse().expect("policy")).expect("built in");
        let mut a = Allocator::new(config).expect("allocator");
        a.track_hot_from(4);
        let https = Listener::tcp(443).expect("port");
        let mut out = Vec::new();
        let mut add = |a: &mut Allocator, id: &str| {
            let c = Claim::new(id, vec![PortRequest::Fixed(https)]).expect("claim");
            a.handle(Time(0), Event::ClaimAdded(c), &mut out)
                .expect("handled");
        };
        for i in 0..6 {
            add(&mut a, &format!("big/c{i}"));
        }
        add(&mut a, "small/c0");
        a.check_invariants().expect("consistent");
        assert_eq!(pools_indexing(&a, https), ["Tenant(TenantId(\"big\"))"]);
        for i in 1..3 {
            add(&mut a, &format!("small/c{i}"));
        }
        assert_eq!(pools_indexing(&a, https), ["Tenant(TenantId(\"big\"))"]);
        add(&mut a, "small/c3");
        a.check_invariants().expect("consistent");
        assert_eq!(
            pools_indexing(&a, https),
            ["Tenant(TenantId(\"big\"))", "Tenant(TenantId(\"small\"))"]
        );
    }
}
