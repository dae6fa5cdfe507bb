//! The allocator: state, event handling, placement, fair retry of pending claims.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::config::Config;
use crate::decision::{Decision, Event, PendingReason};
use crate::error::Error;
use crate::lb::{Lb, LbState, Misfit, PoolKey};
use crate::model::{Claim, ClaimId, LbId, Listener, TenantId, Time};
use crate::policy::{Policy, View};

/// Index of one pool's LBs that can take claims (not draining, some room left).
#[derive(Debug, Default, Clone)]
pub(crate) struct PoolIndex {
    pub by_id: BTreeSet<LbId>,
    pub by_free: BTreeSet<(u32, LbId)>,
}

/// Where a claim stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Not placed and no pending reason reported yet (new, released, or changed).
    Unplaced,
    /// Waiting; the reason last reported.
    Pending(PendingReason),
    Assigned {
        lb: LbId,
        listeners: Vec<Listener>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub claim: Claim,
    pub seq: u64,
    pub place: Place,
}

/// A claim's placement (LB and listeners) or why it waits.
pub type ClaimPlace<'a> = Result<(LbId, &'a [Listener]), PendingReason>;

/// A tenant's current usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Listeners held by placed claims.
    pub listeners: u32,
    /// Placed claims.
    pub claims: u32,
    /// Live dedicated LBs.
    pub dedicated_lbs: u32,
}

/// A read-only view of one LB, for shells and reports.
#[derive(Clone, Debug, PartialEq)]
pub struct LbInfo {
    /// Id.
    pub id: LbId,
    /// Profile name.
    pub profile: crate::model::ProfileName,
    /// Pool (who may share it).
    pub pool: PoolKey,
    /// Lifecycle state.
    pub state: LbState,
    /// Listeners in use with the claim holding each, in listener order.
    pub listeners: Vec<(Listener, ClaimId)>,
    /// Capacity in listeners.
    pub capacity: u32,
    /// Since when it has been empty.
    pub idle_since: Option<Time>,
}

/// Decides which shared load balancer and which ports every claim gets.
///
/// Sans-IO: feed it [`Event`]s with the logical time, carry out the [`Decision`]s it
/// returns, report back what happened. It never reads a clock or draws a random number.
#[derive(Debug)]
pub struct Allocator {
    pub(crate) config: Config,
    pub(crate) policy: Box<dyn Policy>,
    pub(crate) now: Time,
    pub(crate) next_lb: u64,
    pub(crate) next_seq: u64,
    pub(crate) lbs: BTreeMap<LbId, Lb>,
    pub(crate) pools: BTreeMap<(PoolKey, usize), PoolIndex>,
    pub(crate) slots: Vec<Option<Slot>>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) by_id: HashMap<ClaimId, u32>,
    /// Retryable pending claims per tenant, in arrival order.
    pub(crate) pending: BTreeMap<TenantId, BTreeSet<(u64, u32)>>,
    pending_listeners: u32,
    pub(crate) usage: BTreeMap<TenantId, Usage>,
    demand: HashMap<Listener, u32>,
    hot: BTreeSet<(Reverse<u32>, Listener)>,
    pub(crate) idle: BTreeSet<(Time, LbId)>,
    lbs_per_profile: Vec<u32>,
    pub(crate) provisioning: u32,
}

impl Allocator {
    /// A new, empty allocator.
    pub fn new(config: Config) -> Result<Allocator, Error> {
        config.validate()?;
        let n = config.profiles.len();
        Ok(Allocator {
            policy: config.policy.build(),
            config,
            now: Time(0),
            next_lb: 1,
            next_seq: 0,
            lbs: BTreeMap::new(),
            pools: BTreeMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            pending: BTreeMap::new(),
            pending_listeners: 0,
            usage: BTreeMap::new(),
            demand: HashMap::new(),
            hot: BTreeSet::new(),
            idle: BTreeSet::new(),
            lbs_per_profile: vec![0; n],
            provisioning: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest logical time seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Applies one event at logical time `now` and returns what to do.
    pub fn handle(&mut self, now: Time, event: Event) -> Result<Vec<Decision>, Error> {
        if now < self.now {
            return Err(Error::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        // Check before mutating anything, so a rejected event leaves no trace.
        match &event {
            Event::ClaimAdded(c) => {
                c.validate()?;
                if self.by_id.contains_key(&c.id) {
                    return Err(Error::DuplicateClaim(c.id.clone()));
                }
            }
            Event::ClaimUpdated(c) => {
                c.validate()?;
                if !self.by_id.contains_key(&c.id) {
                    return Err(Error::UnknownClaim(c.id.clone()));
                }
            }
            Event::ClaimRemoved(id) => {
                if !self.by_id.contains_key(id) {
                    return Err(Error::UnknownClaim(id.clone()));
                }
            }
            Event::LbReady(lb) | Event::LbFailed(lb) | Event::LbDeleted(lb) => {
                if !self.lbs.contains_key(lb) {
                    return Err(Error::UnknownLb(*lb));
                }
            }
            Event::Tick => {}
        }
        self.now = now;
        let mut out = Vec::new();
        match event {
            Event::ClaimAdded(c) => self.add_claim(c, &mut out),
            Event::ClaimRemoved(id) => {
                self.remove_claim(&id, &mut out);
                self.retry_pending(&mut out);
            }
            Event::ClaimUpdated(c) => {
                self.update_claim(c, &mut out);
                self.retry_pending(&mut out);
            }
            Event::LbReady(lb) => {
                if let Some(l) = self.lbs.get_mut(&lb)
                    && l.state == LbState::Provisioning
                {
                    l.state = LbState::Ready;
                    self.provisioning -= 1;
                    self.retry_pending(&mut out);
                }
            }
            Event::LbFailed(lb) | Event::LbDeleted(lb) => {
                self.drop_lb(lb, &mut out);
                self.retry_pending(&mut out);
            }
            Event::Tick => {}
        }
        self.expire_idle(&mut out);
        Ok(out)
    }

    /// When the allocator next wants a [`Event::Tick`] (an idle LB's timeout), if ever.
    pub fn next_wakeup(&self) -> Option<Time> {
        self.idle
            .iter()
            .next()
            .map(|&(t, _)| t.plus_ms(self.config.idle_timeout_ms))
    }

    // ---------------------------------------------------------------- claims

    fn alloc_slot(&mut self, slot: Slot) -> u32 {
        if let Some(k) = self.free_slots.pop() {
            self.slots[k as usize] = Some(slot);
            k
        } else {
            self.slots.push(Some(slot));
            (self.slots.len() - 1) as u32
        }
    }

    pub(crate) fn slot(&self, k: u32) -> &Slot {
        self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"))
    }

    fn slot_mut(&mut self, k: u32) -> &mut Slot {
        self.slots[k as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("live slot index"))
    }

    /// Inserts a claim record without placing it (used by add and restore).
    pub(crate) fn insert_slot(&mut self, claim: Claim, seq: u64, place: Place) -> u32 {
        for l in claim.fixed_listeners() {
            self.bump_demand(l, 1);
        }
        let id = claim.id.clone();
        let k = self.alloc_slot(Slot { claim, seq, place });
        self.by_id.insert(id, k);
        k
    }

    fn add_claim(&mut self, claim: Claim, out: &mut Vec<Decision>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let k = self.insert_slot(claim, seq, Place::Unplaced);
        // Pending claims failed in the current state and an arrival frees nothing, so the
        // newcomer takes no capacity any of them could use: try it alone.
        self.try_place(k, None, true, out);
    }

    fn remove_claim(&mut self, id: &ClaimId, out: &mut Vec<Decision>) {
        let Some(k) = self.by_id.remove(id) else {
            return;
        };
        self.unqueue(k);
        if let Place::Assigned { lb, .. } = self.slot(k).place {
            self.release(k);
            out.push(Decision::Release {
                claim: id.clone(),
                lb,
            });
        }
        let slot = self.slots[k as usize]
            .take()
            .unwrap_or_else(|| unreachable!());
        for l in slot.claim.fixed_listeners() {
            self.bump_demand(l, -1);
        }
        self.free_slots.push(k);
    }

    fn update_claim(&mut self, claim: Claim, out: &mut Vec<Decision>) {
        let k = self.by_id[&claim.id];
        self.unqueue(k);
        let old = self.slot(k).claim.clone();
        for l in old.fixed_listeners() {
            self.bump_demand(l, -1);
        }
        for l in claim.fixed_listeners() {
            self.bump_demand(l, 1);
        }
        let previous = match self.slot(k).place.clone() {
            Place::Assigned { lb, listeners } => {
                self.release(k);
                Some((lb, listeners))
            }
            Place::Pending(_) | Place::Unplaced => None,
        };
        self.slot_mut(k).claim = claim;
        if let Some((lb, listeners)) = previous {
            // Stay where it is, keeping automatic ports, when the LB still takes it.
            if self.try_place(k, Some((lb, &listeners)), false, out) {
                return;
            }
            out.push(Decision::Release {
                claim: self.slot(k).claim.id.clone(),
                lb,
            });
            self.try_place(k, None, true, out);
        } else {
            self.slot_mut(k).place = Place::Unplaced;
            self.try_place(k, None, true, out);
        }
    }

    fn unqueue(&mut self, k: u32) {
        if self.pending.is_empty() {
            return;
        }
        let slot = self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"));
        let (seq, n) = (slot.seq, slot.claim.listener_count());
        if let Some(q) = self.pending.get_mut(&slot.claim.tenant)
            && q.remove(&(seq, k))
        {
            self.pending_listeners -= n;
            if q.is_empty() {
                self.pending.remove(&slot.claim.tenant);
            }
        }
    }

    pub(crate) fn enqueue(&mut self, k: u32) {
        let slot = self.slot(k);
        let (tenant, seq, n) = (
            slot.claim.tenant.clone(),
            slot.seq,
            slot.claim.listener_count(),
        );
        if self.pending.entry(tenant).or_default().insert((seq, k)) {
            self.pending_listeners += n;
        }
    }

    fn bump_demand(&mut self, l: Listener, delta: i32) {
        let old = self.demand.get(&l).copied().unwrap_or(0);
        let new = old.saturating_add_signed(delta);
        if old > 0 {
            self.hot.remove(&(Reverse(old), l));
        }
        if new > 0 {
            self.hot.insert((Reverse(new), l));
            self.demand.insert(l, new);
        } else {
            self.demand.remove(&l);
        }
    }

    // ---------------------------------------------------------------- placement

    /// The pool a claim belongs to under the current policy.
    pub(crate) fn pool_of(&self, claim: &Claim) -> PoolKey {
        PoolKey::of(claim, self.policy.dedicated())
    }

    /// Profiles that can hold the claim at all, or why none can.
    fn eligible_profiles(&self, claim: &Claim) -> Result<Vec<usize>, (PendingReason, String)> {
        let candidates: Vec<usize> = match &claim.profile {
            Some(name) => match self.config.profile_index(name) {
                Some(i) => vec![i],
                None => {
                    return Err((
                        PendingReason::Unsupported,
                        format!("profile {name} is not configured"),
                    ));
                }
            },
            None => (0..self.config.profiles.len()).collect(),
        };
        let mut too_large = None;
        let mut unsupported = None;
        let mut ok = Vec::new();
        for i in candidates {
            let p = &self.config.profiles[i];
            if let Some(r) = claim.ports.iter().find(|r| !p.supports(r.protocol())) {
                unsupported.get_or_insert(format!("{} does not support {}", p.name, r.protocol()));
                continue;
            }
            if !p.mixed_protocols
                && claim
                    .ports
                    .iter()
                    .any(|r| r.protocol() != claim.ports[0].protocol())
            {
                unsupported.get_or_insert(format!("{} cannot mix protocols on one LB", p.name));
                continue;
            }
            if let Some(l) = claim.fixed_listeners().find(|l| p.is_reserved(l.port)) {
                unsupported.get_or_insert(format!("{} reserves port {}", p.name, l.port));
                continue;
            }
            if !p.shared_port_numbers {
                let mut ports: Vec<_> = claim.fixed_listeners().map(|l| l.port).collect();
                ports.sort_unstable();
                if ports.windows(2).any(|w| w[0] == w[1]) {
                    unsupported.get_or_insert(format!(
                        "{} cannot hold one port number for two protocols",
                        p.name
                    ));
                    continue;
                }
            }
            let any = claim.ports.iter().filter(|r| r.fixed().is_none()).count() as u32;
            if claim.listener_count() > p.max_listeners || any > p.auto_ports.len() {
                too_large.get_or_insert(format!(
                    "{} listeners asked, {} holds {}",
                    claim.listener_count(),
                    p.name,
                    p.max_listeners
                ));
                continue;
            }
            ok.push(i);
        }
        if !ok.is_empty() {
            return Ok(ok);
        }
        Err(match (unsupported, too_large) {
            (_, Some(m)) => (PendingReason::TooLarge, m),
            (Some(m), None) => (PendingReason::Unsupported, m),
            (None, None) => (PendingReason::Unsupported, "no profile".into()),
        })
    }

    fn quota_check(&self, claim: &Claim, new_dedicated: bool) -> Result<(), String> {
        let q = self.config.tenant(&claim.tenant).quota;
        let u = self.usage.get(&claim.tenant).copied().unwrap_or_default();
        if let Some(m) = q.max_listeners
            && u.listeners + claim.listener_count() > m
        {
            return Err(format!(
                "tenant {} holds {} of {m} listeners, asks {} more",
                claim.tenant,
                u.listeners,
                claim.listener_count()
            ));
        }
        if let Some(m) = q.max_claims
            && u.claims + 1 > m
        {
            return Err(format!("tenant {} has {m} of {m} claims", claim.tenant));
        }
        if new_dedicated
            && let Some(m) = q.max_dedicated_lbs
            && u.dedicated_lbs + 1 > m
        {
            return Err(format!(
                "tenant {} has {m} of {m} dedicated LBs",
                claim.tenant
            ));
        }
        Ok(())
    }

    /// The listeners `claim` would get on `lb`, or why not.
    pub(crate) fn plan_on(
        &self,
        lb: LbId,
        claim: &Claim,
        strict: bool,
        prefer: Option<&[Listener]>,
    ) -> Result<Vec<Listener>, Misfit> {
        let l = &self.lbs[&lb];
        if l.state == LbState::Draining || (l.pool.is_dedicated() && l.claims > 0) {
            return Err(Misfit::Capacity);
        }
        l.plan(&self.config.profiles[l.profile], claim, strict, prefer)
    }

    /// Tries to place slot `k`. `stay` = only try this LB (claim update). Records the
    /// outcome in the slot, emits decisions, and queues the claim when it must wait
    /// (`queue`). Returns whether it was placed.
    fn try_place(
        &mut self,
        k: u32,
        stay: Option<(LbId, &[Listener])>,
        queue: bool,
        out: &mut Vec<Decision>,
    ) -> bool {
        match self.find_place(k, stay, None, false) {
            Ok((lb, listeners, created)) => {
                if let Some(profile) = created {
                    let pool = self.pool_of(&self.slot(k).claim);
                    let lb_id = self.create_lb(profile, pool);
                    debug_assert_eq!(lb_id, lb);
                    out.push(Decision::CreateLb {
                        lb,
                        profile: self.config.profiles[profile].name.clone(),
                    });
                }
                self.assign(k, lb, listeners.clone());
                out.push(Decision::Assign {
                    claim: self.slot(k).claim.id.clone(),
                    lb,
                    listeners,
                });
                true
            }
            Err(Wait::Stay) => false,
            Err(Wait::Pending(reason, message, delete)) => {
                if let Some(lb) = delete {
                    self.start_delete(lb, out);
                }
                let changed = self.slot(k).place != Place::Pending(reason);
                self.slot_mut(k).place = Place::Pending(reason);
                if queue && !reason.is_permanent() {
                    self.enqueue(k);
                }
                if changed {
                    out.push(Decision::Pending {
                        claim: self.slot(k).claim.id.clone(),
                        reason,
                        message,
                    });
                }
                false
            }
        }
    }

    /// Where slot `k` would go: `(lb, listeners, Some(profile) if a new LB is needed)`.
    /// Pure: changes nothing. `exclude` and `migrating` serve consolidation (no new LBs,
    /// ready targets only).
    pub(crate) fn find_place(
        &self,
        k: u32,
        stay: Option<(LbId, &[Listener])>,
        exclude: Option<&BTreeSet<LbId>>,
        migrating: bool,
    ) -> Result<(LbId, Vec<Listener>, Option<usize>), Wait> {
        let claim = &self.slot(k).claim;
        let strict = self.policy.strict_port_numbers();
        let eligible = self.eligible_profiles(claim).map_err(|(r, m)| {
            if stay.is_some() {
                Wait::Stay
            } else {
                Wait::Pending(r, m, None)
            }
        })?;
        let pool = self.pool_of(claim);
        if let Some((lb, prefer)) = stay {
            let same = self.lbs.get(&lb).is_some_and(|l| {
                l.pool == pool
                    && eligible.contains(&l.profile)
                    && claim.pinned_lb.is_none_or(|p| p == lb)
            });
            if !same || self.quota_check(claim, false).is_err() {
                return Err(Wait::Stay);
            }
            return self
                .plan_on(lb, claim, strict, Some(prefer))
                .map(|ls| (lb, ls, None))
                .map_err(|_| Wait::Stay);
        }
        if !migrating && let Err(m) = self.quota_check(claim, false) {
            return Err(Wait::Pending(PendingReason::QuotaExceeded, m, None));
        }
        if let Some(pin) = claim.pinned_lb {
            let ok = self
                .lbs
                .get(&pin)
                .is_some_and(|l| l.pool == pool && eligible.contains(&l.profile));
            if !ok {
                return Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    format!("pinned LB {pin} does not exist or is not in this claim's pool"),
                    None,
                ));
            }
            return match self.plan_on(pin, claim, strict, None) {
                Ok(ls) => Ok((pin, ls, None)),
                Err(m) => Err(Wait::Pending(
                    PendingReason::PinnedUnavailable,
                    format!("pinned LB {pin} cannot take the claim: {m:?}"),
                    None,
                )),
            };
        }
        let pools: Vec<&PoolIndex> = eligible
            .iter()
            .filter_map(|&p| self.pools.get(&(pool.clone(), p)))
            .collect();
        let view = View {
            alloc: self,
            claim,
            pools,
            exclude,
            ready_only: migrating,
            strict,
            probes: Cell::new(0),
            seen: Cell::new(None),
            last_fit: std::cell::RefCell::new(None),
        };
        if let Some(lb) = self.policy.choose(&view) {
            let cached = view.last_fit.borrow_mut().take().filter(|(l, _)| *l == lb);
            if let Some((_, ls)) = cached {
                return Ok((lb, ls, None));
            }
            if let Ok(ls) = self.plan_on(lb, claim, strict, None) {
                return Ok((lb, ls, None));
            }
        }
        let seen = view.seen.get();
        if migrating {
            return Err(Wait::Stay);
        }
        // A new LB is needed.
        let profile = self.policy.new_lb_profile(&view, &eligible);
        drop(view);
        if pool.is_dedicated()
            && let Err(m) = self.quota_check(claim, true)
        {
            return Err(Wait::Pending(PendingReason::QuotaExceeded, m, None));
        }
        if let Some(max) = self.config.max_provisioning
            && self.provisioning >= max
        {
            return Err(Wait::Pending(
                PendingReason::WaitingForCapacity,
                format!("{max} LBs are provisioning already (limit)"),
                None,
            ));
        }
        if let Some(why) = self.budget_blocks(profile) {
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
                    format!("every LB with room clashes with a fixed port, and {why}"),
                    None,
                ),
                Some(Misfit::RangeFull) => Wait::Pending(
                    PendingReason::PortRangeFull,
                    format!("LBs with room have no free automatic port, and {why}"),
                    None,
                ),
                _ => Wait::Pending(PendingReason::BudgetExhausted, why, None),
            });
        }
        let lb = LbId(self.next_lb);
        let fresh = Lb {
            id: lb,
            profile,
            pool,
            state: LbState::Provisioning,
            used: BTreeMap::new(),
            claims: 0,
            idle_since: None,
        };
        match fresh.plan(&self.config.profiles[profile], claim, strict, None) {
            Ok(ls) => Ok((lb, ls, Some(profile))),
            Err(m) => Err(Wait::Pending(
                PendingReason::Unsupported,
                format!(
                    "does not fit an empty {} LB: {m:?}",
                    self.config.profiles[profile].name
                ),
                None,
            )),
        }
    }

    fn budget_blocks(&self, profile: usize) -> Option<String> {
        let b = &self.config.budget;
        if let Some(m) = b.max_lbs
            && self.lbs.len() as u32 >= m
        {
            return Some(format!("the budget of {m} LBs is spent"));
        }
        if let Some(m) = b.max_cost_per_hour {
            let now = self.cost_per_hour();
            let add = self.config.profiles[profile].hourly_price;
            if now + add > m + 1e-9 {
                return Some(format!(
                    "the budget of {m}/h is spent ({now:.4}/h in use, a new LB costs {add:.4}/h)"
                ));
            }
        }
        None
    }

    /// Cost per hour of all live LBs.
    pub fn cost_per_hour(&self) -> f64 {
        self.lbs_per_profile
            .iter()
            .zip(&self.config.profiles)
            .map(|(&n, p)| f64::from(n) * p.hourly_price)
            .sum()
    }

    pub(crate) fn create_lb(&mut self, profile: usize, pool: PoolKey) -> LbId {
        let id = LbId(self.next_lb);
        self.next_lb += 1;
        self.insert_lb(Lb {
            id,
            profile,
            pool,
            state: LbState::Provisioning,
            used: BTreeMap::new(),
            claims: 0,
            idle_since: None,
        });
        id
    }

    /// Adds an LB record and its index entries (used by create and restore).
    pub(crate) fn insert_lb(&mut self, lb: Lb) {
        self.lbs_per_profile[lb.profile] += 1;
        if lb.state == LbState::Provisioning {
            self.provisioning += 1;
        }
        if let PoolKey::Dedicated(t) = &lb.pool {
            self.usage.entry(t.clone()).or_default().dedicated_lbs += 1;
        }
        if let Some(t) = lb.idle_since {
            self.idle.insert((t, lb.id));
        }
        let id = lb.id;
        self.lbs.insert(id, lb);
        self.reindex(id, None);
    }

    /// Updates the pool index after `lb` changed; `before` is its free count before.
    fn reindex(&mut self, id: LbId, before: Option<u32>) {
        let l = &self.lbs[&id];
        let free = l.free(&self.config.profiles[l.profile]);
        let listed =
            l.state != LbState::Draining && free > 0 && !(l.pool.is_dedicated() && l.claims > 0);
        let key = (l.pool.clone(), l.profile);
        let idx = self.pools.entry(key.clone()).or_default();
        if let Some(b) = before {
            idx.by_free.remove(&(b, id));
        }
        idx.by_id.remove(&id);
        if listed {
            idx.by_free.insert((free, id));
            idx.by_id.insert(id);
        }
        if idx.by_id.is_empty() && idx.by_free.is_empty() {
            self.pools.remove(&key);
        }
    }

    fn free_of(&self, id: LbId) -> u32 {
        let l = &self.lbs[&id];
        l.free(&self.config.profiles[l.profile])
    }

    /// Records slot `k` on `lb` with `listeners`.
    pub(crate) fn assign(&mut self, k: u32, lb: LbId, listeners: Vec<Listener>) {
        self.unqueue(k);
        let before = self.free_of(lb);
        let l = self.lbs.get_mut(&lb).unwrap_or_else(|| unreachable!());
        for &x in &listeners {
            l.used.insert(x, k);
        }
        l.claims += 1;
        if let Some(t) = l.idle_since.take() {
            self.idle.remove(&(t, lb));
        }
        self.reindex(lb, Some(before));
        let tenant = &self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"))
            .claim
            .tenant;
        let u = match self.usage.get_mut(tenant) {
            Some(u) => u,
            None => self.usage.entry(tenant.clone()).or_default(),
        };
        u.listeners += listeners.len() as u32;
        u.claims += 1;
        self.slot_mut(k).place = Place::Assigned { lb, listeners };
    }

    /// Frees slot `k`'s listeners; the slot is left pending (caller decides what next).
    pub(crate) fn release(&mut self, k: u32) {
        let Place::Assigned { lb, listeners } = self.slot(k).place.clone() else {
            return;
        };
        let before = self.free_of(lb);
        let now = self.now;
        let l = self.lbs.get_mut(&lb).unwrap_or_else(|| unreachable!());
        for x in &listeners {
            l.used.remove(x);
        }
        l.claims -= 1;
        if l.claims == 0 && l.state != LbState::Draining {
            l.idle_since = Some(now);
            self.idle.insert((now, lb));
        }
        self.reindex(lb, Some(before));
        let tenant = &self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"))
            .claim
            .tenant;
        let u = self
            .usage
            .get_mut(tenant)
            .unwrap_or_else(|| unreachable!("a placed claim's tenant has usage"));
        u.listeners -= listeners.len() as u32;
        u.claims -= 1;
        self.slot_mut(k).place = Place::Unplaced;
    }

    /// Removes an LB; its claims are released (with `Release` decisions) and queued again.
    fn drop_lb(&mut self, id: LbId, out: &mut Vec<Decision>) {
        let mut on: Vec<u32> = self.lbs[&id].used.values().copied().collect();
        on.sort_unstable_by_key(|&k| self.slot(k).seq);
        on.dedup();
        for k in on {
            self.release(k);
            out.push(Decision::Release {
                claim: self.slot(k).claim.id.clone(),
                lb: id,
            });
            self.enqueue(k);
        }
        let before = self.free_of(id);
        let l = self.lbs.remove(&id).unwrap_or_else(|| unreachable!());
        if let Some(idx) = self.pools.get_mut(&(l.pool.clone(), l.profile)) {
            idx.by_free.remove(&(before, id));
            idx.by_id.remove(&id);
            if idx.by_id.is_empty() && idx.by_free.is_empty() {
                self.pools.remove(&(l.pool.clone(), l.profile));
            }
        }
        if let Some(t) = l.idle_since {
            self.idle.remove(&(t, id));
        }
        self.lbs_per_profile[l.profile] -= 1;
        if l.state == LbState::Provisioning {
            self.provisioning -= 1;
        }
        if let PoolKey::Dedicated(t) = &l.pool
            && let Some(u) = self.usage.get_mut(t)
        {
            u.dedicated_lbs -= 1;
        }
    }

    pub(crate) fn mark_idle(&mut self, id: LbId, now: Time) {
        if let Some(l) = self.lbs.get_mut(&id) {
            l.idle_since = Some(now);
            self.idle.insert((now, id));
        }
    }

    fn start_delete(&mut self, id: LbId, out: &mut Vec<Decision>) {
        let before = self.free_of(id);
        let l = self.lbs.get_mut(&id).unwrap_or_else(|| unreachable!());
        if l.state == LbState::Provisioning {
            self.provisioning -= 1;
        }
        l.state = LbState::Draining;
        if let Some(t) = l.idle_since.take() {
            self.idle.remove(&(t, id));
        }
        self.reindex(id, Some(before));
        out.push(Decision::DeleteLb { lb: id });
    }

    pub(crate) fn expire_idle(&mut self, out: &mut Vec<Decision>) {
        let timeout = self.config.idle_timeout_ms;
        while let Some(&(t, lb)) = self.idle.iter().next() {
            if t.plus_ms(timeout) > self.now {
                break;
            }
            self.start_delete(lb, out);
        }
    }

    /// Tries pending claims again, weighted max-min fair: the tenant with the least
    /// listeners per unit of weight goes first; within a tenant, arrival order.
    fn retry_pending(&mut self, out: &mut Vec<Decision>) {
        let mut queues: BTreeMap<TenantId, VecDeque<u32>> = self
            .pending
            .iter()
            .map(|(t, q)| (t.clone(), q.iter().map(|&(_, k)| k).collect()))
            .collect();
        loop {
            let mut best: Option<(&TenantId, u64, u64)> = None;
            for (t, q) in &queues {
                if q.is_empty() {
                    continue;
                }
                let used = u64::from(self.usage.get(t).map_or(0, |u| u.listeners));
                let w = u64::from(self.config.tenant(t).weight);
                // used/w < bu/bw  <=>  used*bw < bu*w
                if best.is_none_or(|(_, bu, bw)| used * bw < bu * w) {
                    best = Some((t, used, w));
                }
            }
            let Some((t, _, _)) = best else { break };
            let t = t.clone();
            let k = queues
                .get_mut(&t)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| unreachable!());
            self.unqueue(k);
            self.try_place(k, None, true, out);
        }
    }

    // ---------------------------------------------------------------- queries

    pub(crate) fn lb_state(&self, lb: LbId) -> Option<LbState> {
        self.lbs.get(&lb).map(|l| l.state)
    }

    pub(crate) fn lb_free(&self, lb: LbId) -> u32 {
        self.free_of(lb)
    }

    pub(crate) fn lb_claims(&self, lb: LbId) -> u32 {
        self.lbs[&lb].claims
    }

    pub(crate) fn lb_listener_free(&self, lb: LbId, l: Listener) -> bool {
        let x = &self.lbs[&lb];
        !x.clashes(&self.config.profiles[x.profile], l, false)
    }

    pub(crate) fn hot_listeners(&self, n: usize) -> Vec<(Listener, u32)> {
        self.hot
            .iter()
            .take(n)
            .map(|&(Reverse(c), l)| (l, c))
            .collect()
    }

    pub(crate) fn pending_listeners(&self) -> u32 {
        self.pending_listeners
    }

    /// The LB and listeners of a placed claim; `None` if pending or unknown.
    pub fn placement(&self, id: &ClaimId) -> Option<(LbId, &[Listener])> {
        let k = *self.by_id.get(id)?;
        match &self.slot(k).place {
            Place::Assigned { lb, listeners } => Some((*lb, listeners)),
            Place::Pending(_) | Place::Unplaced => None,
        }
    }

    /// Why a claim waits; `None` if placed or unknown.
    pub fn pending_reason(&self, id: &ClaimId) -> Option<PendingReason> {
        let k = *self.by_id.get(id)?;
        match self.slot(k).place {
            Place::Pending(r) => Some(r),
            Place::Unplaced => Some(PendingReason::WaitingForCapacity),
            Place::Assigned { .. } => None,
        }
    }

    /// A claim as last given.
    pub fn claim(&self, id: &ClaimId) -> Option<&Claim> {
        self.by_id.get(id).map(|&k| &self.slot(k).claim)
    }

    /// Every claim in arrival order, with its LB and listeners or its pending reason.
    pub fn claims(&self) -> Vec<(&Claim, ClaimPlace<'_>)> {
        let mut v: Vec<&Slot> = self.slots.iter().flatten().collect();
        v.sort_by_key(|s| s.seq);
        v.into_iter()
            .map(|s| {
                let p = match &s.place {
                    Place::Assigned { lb, listeners } => Ok((*lb, listeners.as_slice())),
                    Place::Pending(r) => Err(*r),
                    Place::Unplaced => Err(PendingReason::WaitingForCapacity),
                };
                (&s.claim, p)
            })
            .collect()
    }

    /// Number of live claims (placed or pending).
    pub fn claim_count(&self) -> usize {
        self.by_id.len()
    }

    /// Number of claims waiting.
    pub fn pending_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !matches!(s.place, Place::Assigned { .. }))
            .count()
    }

    /// Live LBs (any state), in id order.
    pub fn lbs(&self) -> Vec<LbInfo> {
        self.lbs.keys().filter_map(|&id| self.lb(id)).collect()
    }

    /// One LB.
    pub fn lb(&self, id: LbId) -> Option<LbInfo> {
        let l = self.lbs.get(&id)?;
        let p = &self.config.profiles[l.profile];
        Some(LbInfo {
            id,
            profile: p.name.clone(),
            pool: l.pool.clone(),
            state: l.state,
            listeners: l
                .used
                .iter()
                .map(|(&x, &k)| (x, self.slot(k).claim.id.clone()))
                .collect(),
            capacity: p.max_listeners,
            idle_since: l.idle_since,
        })
    }

    /// Number of live LBs and how many are in each state.
    pub fn lb_counts(&self) -> BTreeMap<LbState, usize> {
        let mut m = BTreeMap::new();
        for l in self.lbs.values() {
            *m.entry(l.state).or_insert(0) += 1;
        }
        m
    }

    /// Listeners in use over all LBs.
    pub fn listeners_used(&self) -> u64 {
        self.lbs.values().map(|l| l.used.len() as u64).sum()
    }

    /// Listener capacity over all non-draining LBs.
    pub fn listener_capacity(&self) -> u64 {
        self.lbs
            .values()
            .filter(|l| l.state != LbState::Draining)
            .map(|l| u64::from(self.config.profiles[l.profile].max_listeners))
            .sum()
    }

    /// A tenant's usage.
    pub fn usage(&self, t: &TenantId) -> Usage {
        self.usage.get(t).copied().unwrap_or_default()
    }

    /// Every tenant with usage or claims, with its usage.
    pub fn tenants(&self) -> BTreeMap<TenantId, Usage> {
        let mut m = self.usage.clone();
        for s in self.slots.iter().flatten() {
            m.entry(s.claim.tenant.clone()).or_default();
        }
        m
    }
}

/// Why `find_place` found nothing.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Staying put (update) or migrating was not possible; no pending state implied.
    Stay,
    /// Pending with a reason and message; optionally an idle LB to delete to make room.
    Pending(PendingReason, String, Option<LbId>),
}
