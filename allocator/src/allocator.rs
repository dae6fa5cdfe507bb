//! The allocator's state and how one event changes it. Placement, eligibility, LB
//! lifecycle and fair admission live in their own modules; this one dispatches events and
//! keeps the books (claims, tenants' usage, totals).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::claims::{ClaimKey, ClaimTable, IdHash, Place, Slot, WaitQueue};
use crate::config::Config;
use crate::decision::{Decision, Event, PendingReason};
use crate::error::Error;
use crate::index::PoolIndex;
use crate::lb::{ByPoolKey, LbState, LbTable, PoolKey, PoolKeyRef, Pooling};
use crate::lifecycle::Change;
use crate::model::{Claim, ClaimId, LbId, Listener, Listeners, ProfileName, TenantId, Time};
use crate::placement::{Outcome, Placement};
use crate::policy::{Policy, PolicyRules};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// A claim's placement (LB and listeners) or why it waits.
pub type ClaimPlace = Result<(LbId, Listeners), PendingReason>;

/// A tenant's current usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Listeners held by placed claims.
    pub listeners: u32,
    /// Placed claims.
    pub claims: u32,
    /// Live dedicated LBs.
    pub dedicated_lbs: u32,
    /// Claims waiting (any reason).
    pub waiting_claims: u32,
    /// Listeners those waiting claims ask for.
    pub waiting_listeners: u32,
}

/// A read-only view of one LB, for shells and reports.
#[derive(Clone, Debug, PartialEq)]
pub struct LbInfo {
    /// Id.
    pub id: LbId,
    /// Profile name.
    pub profile: ProfileName,
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

/// Counts kept as events happen, so shells read them in O(1).
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub lbs_per_profile: Vec<u32>,
    /// LBs billed (not draining) per profile.
    pub billed_per_profile: Vec<u32>,
    /// The baseline: placed claims per profile of the one LB each would have alone (a
    /// claim no profile can hold is in none).
    pub baseline_per_profile: Vec<u32>,
    pub provisioning: u32,
    pub draining: u32,
    pub listeners_used: u64,
    /// Listener capacity of LBs that are not draining.
    pub capacity: u64,
    pub placed: u32,
}

/// How far a change since the last retry reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Nothing changed that could help a waiting claim.
    #[default]
    Nothing,
    /// Some LBs gained room, some tenants' usage fell (listed in the [`RetryScope`]).
    /// Nothing else changed, so a waiting claim can newly fit only on those LBs, or
    /// anywhere if its tenant's usage fell (a quota may no longer bind).
    Some,
    /// Anything may have changed: an LB went, became ready or started deleting (the budget
    /// or a provisioning slot freed), time passed, or the state was restored.
    Everything,
}

/// Which waiting claims a change may have helped, gathered between retries. The lists are
/// plain vectors kept from one retry to the next, so gathering costs no allocation once
/// they have grown to their working size.
#[derive(Clone, Debug, Default)]
pub(crate) struct RetryScope {
    pub reach: Reach,
    /// (pool index, LB) of the LBs that gained room (`Reach::Some`); sorted and without
    /// repeats after [`RetryScope::settle`].
    lbs: Vec<(u32, LbId)>,
    /// Tenants whose usage fell (`Reach::Some`); sorted after [`RetryScope::settle`].
    tenants: Vec<TenantId>,
}

impl RetryScope {
    pub fn is_due(&self) -> bool {
        self.reach != Reach::Nothing
    }

    /// Anything may have changed.
    pub fn everything(&mut self) {
        self.reach = Reach::Everything;
        self.lbs.clear();
        self.tenants.clear();
    }

    /// Back to nothing due, keeping the lists' room.
    pub fn clear(&mut self) {
        self.reach = Reach::Nothing;
        self.lbs.clear();
        self.tenants.clear();
    }

    /// `lb` (in pool index `pool`) gained room or lost a listener.
    pub fn gained_room(&mut self, pool: u32, lb: LbId) {
        match self.reach {
            Reach::Nothing | Reach::Some => {
                self.reach = Reach::Some;
                self.lbs.push((pool, lb));
            }
            Reach::Everything => {}
        }
    }

    /// A tenant's usage fell.
    pub fn freed_usage(&mut self, tenant: &TenantId) {
        match self.reach {
            Reach::Nothing | Reach::Some => {
                self.reach = Reach::Some;
                if self.tenants.last() != Some(tenant) {
                    self.tenants.push(tenant.clone());
                }
            }
            Reach::Everything => {}
        }
    }

    /// Sorts the lists and drops repeats (before they are looked up).
    pub fn settle(&mut self) {
        self.lbs.sort_unstable();
        self.lbs.dedup();
        self.tenants.sort_unstable();
        self.tenants.dedup();
    }

    /// The LBs of pool index `pool` that gained room, ids ascending (after `settle`).
    pub fn lbs_of(&self, pool: u32) -> impl Iterator<Item = LbId> + '_ {
        let from = self.lbs.partition_point(|&(p, _)| p < pool);
        self.lbs[from..]
            .iter()
            .take_while(move |&&(p, _)| p == pool)
            .map(|&(_, id)| id)
    }

    /// Whether an LB of pool index `pool` gained room (after `settle`).
    pub fn has_pool(&self, pool: u32) -> bool {
        self.lbs_of(pool).next().is_some()
    }

    /// Whether `tenant`'s usage fell (after `settle`).
    pub fn has_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants.binary_search(tenant).is_ok()
    }
}

/// An event [`Allocator::handle`] has checked against the state, with what the check
/// found: a claim event's slot and id hash, looked up once.
enum Checked {
    Add(Claim, IdHash),
    Remove(u32, IdHash, ClaimId),
    Update(u32, Claim),
    LbReady(LbId),
    LbGone(LbId),
    Tick,
    Consolidate(u32),
}

/// Whether a slot's contribution goes into the books or comes out.
#[derive(Clone, Copy)]
enum Books {
    Add,
    Remove,
}

/// One pool index with what it indexes.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub key: PoolKey,
    pub profile: usize,
    pub index: PoolIndex,
}

/// Limits a restored state already exceeded (a quota or budget lowered since): kept, never
/// grown, and forgotten once back within the limit.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inherited {
    pub over_budget: bool,
    pub over_quota: BTreeSet<TenantId>,
}

/// Decides which shared load balancer and which ports every claim gets.
///
/// # The contract
///
/// The allocator is sans-IO: it never reads a clock, draws a random number or does IO. A
/// *shell* (the simulator, the controller, a test) owns it and talks to it only through
/// [`Allocator::drive`]: one [`Event`] at a time with the logical time `now`, every
/// [`Decision`] handed to the shell's [`crate::Shell::carry_out`]. No decision can be
/// dropped: there is no other way to feed an event.
///
/// **Order and time.** Events apply one at a time, in the order given, each atomically: an
/// event the allocator refuses (a `now` before the last one, an unknown claim or LB, an
/// invalid claim) changes nothing. Time matters only for idle LBs: an LB empty since `t` is
/// deleted at `t + idle_timeout`. `drive` returns the next wake-up; the shell sends
/// [`Event::Tick`] then (or earlier — a tick changes nothing that is not due).
///
/// **What each decision obliges the shell to do.**
/// - `CreateLb { lb, profile }`: create it; report `LbReady(lb)` once it serves, or
///   `LbFailed(lb)` if it cannot be made. Claims may be assigned to it before it is ready.
/// - `Assign { claim, lb, listeners }`: serve the claim on `lb` with exactly these
///   listeners, one per port request in order (once `lb` serves).
/// - `Migrate { claim, from, to, listeners }`: serve it on `to`, then stop on `from`.
/// - `Release { claim, lb }`: stop serving the claim on `lb`.
/// - `Pending { claim, reason, message }`: tell the user; the allocator retries by itself.
/// - `DeleteLb { lb }`: delete it (it holds no claim); report `LbDeleted(lb)` once gone.
///
/// An LB that vanishes unasked (a failure, an out-of-band deletion) is reported as
/// `LbFailed(lb)`; its claims are released and placed again. Outcomes the shell knows at
/// once (an LB that exists as soon as it is asked for) go into the `reports` the shell is
/// handed, and `drive` feeds them back before it returns.
///
/// **Reading while carrying out.** The `reports` also show the allocator as the event
/// left it ([`crate::Reports::allocator`]): a shell may look up a decision's claim there,
/// e.g. its [`ClaimKey`] to keep per-claim state in a vector. A claim the event removed is
/// gone by the time its `Release` is carried out.
///
/// **Waiting claims.** A claim that cannot be placed gets a `Pending` decision with a reason
/// (repeated only when the reason changes) and is retried whenever something may let it fit
/// — a claim leaves or shrinks, an LB becomes ready or goes away — weighted max-min fair
/// across tenants and in arrival order within one (see [`crate::fairness`]). The allocator
/// is work conserving: after every event no waiting claim fits on a usable LB of its pool,
/// and no LB was opened where an existing one would do.
///
/// **Consolidation** is an event ([`Event::Consolidate`]) with a move budget, so every shell
/// runs it under the same rules.
///
/// **Look-ahead (optional).** A shell that knows which claims its next events name (a
/// simulator's queue, a batch of watch events) may hint them before each event
/// ([`Allocator::prefetch`]): no state or decision changes, but at a million claims a
/// departure no longer waits on memory for the claim's index entry, slot, LB record and
/// listener-table line, one after the other.
///
/// **Restore.** [`Allocator::restore`] rebuilds the state from a [`crate::Snapshot`]; a
/// placement that breaks a rule is dropped and returned, never an error. When claims wait
/// after a restore, [`Allocator::next_wakeup`] is `now`, so the shell's first `Tick` retries
/// them without waiting for an unrelated event.
///
/// # Example: the basic loop
///
/// ```
/// use sharedlb_allocator::{
///     Allocator, Claim, Config, Decision, Event, LbId, Listener, PolicyKind, PortRequest,
///     Reports, Shell, Time,
/// };
///
/// /// A shell whose "cloud" makes LBs on request; it reports them ready later.
/// #[derive(Default)]
/// struct Cloud { provisioning: Vec<LbId>, served: Vec<String> }
///
/// impl Shell for Cloud {
///     fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports) {
///         match d {
///             Decision::CreateLb { lb, .. } => self.provisioning.push(lb),
///             Decision::Assign { claim, listeners, .. } => {
///                 self.served.push(format!("{claim} on {listeners:?}"))
///             }
///             // Deletion is instant in this cloud: report it at once.
///             Decision::DeleteLb { lb } => reports.report(Event::LbDeleted(lb)),
///             _ => {}
///         }
///     }
/// }
///
/// let mut config = Config::with_builtin("aws-nlb", "best-fit".parse()?)?;
/// config.idle_timeout_ms = 60_000;
/// let mut alloc = Allocator::new(config)?;
/// let mut cloud = Cloud::default();
/// let web = Claim::new("shop/web", vec![PortRequest::Fixed(Listener::tcp(443).unwrap())])?;
/// alloc.drive(Time(0), Event::ClaimAdded(web.clone()), &mut cloud)?;
/// // The LB finishes provisioning: report it.
/// let lb = cloud.provisioning.pop().unwrap();
/// alloc.drive(Time(30_000), Event::LbReady(lb), &mut cloud)?;
/// // The claim leaves; the LB idles and the allocator asks to be woken at its timeout.
/// let wake = alloc.drive(Time(40_000), Event::ClaimRemoved(web.id().clone()), &mut cloud)?;
/// assert_eq!(wake, Some(Time(100_000)));
/// alloc.drive(Time(100_000), Event::Tick, &mut cloud)?;
/// assert!(alloc.lbs().is_empty(), "deleted at its idle timeout");
/// # Ok::<(), sharedlb_allocator::Error>(())
/// ```
pub struct Allocator {
    pub(crate) config: Config,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) rules: PolicyRules,
    pub(crate) now: Time,
    /// The next LB id to hand out; past `u32::MAX` when every id has been handed out.
    pub(crate) next_lb: u64,
    /// The next arrival number; at `u32::MAX` the live claims are renumbered first.
    pub(crate) next_seq: u32,
    /// LBs by id. A hash table: placement looks LBs up by id for every candidate it tests;
    /// whatever shows LBs in order sorts their ids (see [`Allocator::lb_ids`]).
    pub(crate) lbs: LbTable,
    /// Per pool key (under the policy's pooling), the pool indexes made for it with
    /// their profiles ([`Allocator::pool_index`]). A kept body carries its key's number,
    /// so a placement finds its pool indexes without hashing the key.
    pub(crate) pool_keys: ByPoolKey<SmallVec<[(usize, u32); 2]>>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) claims: ClaimTable,
    /// The live claims' bodies, each kept once.
    pub(crate) bodies: crate::claims::Bodies,
    pub(crate) waiting: WaitQueue,
    pub(crate) usage: crate::tenant_books::TenantBooks,
    pub(crate) demand: FxHashMap<Listener, u32>,
    pub(crate) hot: BTreeSet<(Reverse<u32>, Listener)>,
    /// The fixed listeners each pool index keeps an index of the LBs they do not clash on
    /// for (see [`PoolIndex::clash_free`](crate::index::PoolIndex::clash_free)).
    pub(crate) hot_tracked: [Option<Listener>; crate::index::HOT_LISTENERS],
    /// Demand from which a fixed listener is tracked as hot: [`HOT_AT`](crate::lifecycle::HOT_AT)
    /// unless a test set it ([`Allocator::track_hot_from`]).
    pub(crate) hot_at: u32,
    pub(crate) idle: BTreeSet<(Time, LbId)>,
    pub(crate) totals: Totals,
    /// What changed since waiting claims were last tried: which of them to retry.
    pub(crate) retry: RetryScope,
    /// The scope a retry pass works from, kept between passes for its lists' room.
    pub(crate) retry_spare: RetryScope,
    pub(crate) inherited: Inherited,
    /// The capacity and per-listener lower bounds of the placed claims.
    pub(crate) bound: crate::bounds::LiveBound,
    /// Buffers `drive` reuses, so a decision costs no allocation in steady state.
    pub(crate) out: Vec<Decision>,
    pub(crate) reports: VecDeque<Event>,
    /// Emptied listener tables of deleted LBs, for new LBs to reuse: opening an LB then
    /// costs no allocation (one LB per claim opens one for every claim).
    pub(crate) spare_used: Vec<crate::ports::Used>,
}

/// The number in `books` of live claim `claim`'s tenant: its kept body's.
fn tenant_number(books: &crate::tenant_books::TenantBooks, claim: &Claim) -> u32 {
    let n = claim.body().tenant_no;
    debug_assert!(
        books.is_number_of(n, claim.tenant()),
        "a live claim's body carries its tenant's number"
    );
    n
}

/// Most emptied listener tables kept for reuse.
pub(crate) const SPARE_USED: usize = 32;

/// Largest table kept for reuse, in listeners: a big LB's table would hold its memory for
/// whichever LB opens next, however little that one needs.
pub(crate) const SPARE_USED_ROOM: usize = 256;

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator")
            .field("policy", &self.policy)
            .field("now", &self.now)
            .field("lbs", &self.lbs.len())
            .field("claims", &self.claims.len())
            .finish_non_exhaustive()
    }
}

impl Allocator {
    /// A new, empty allocator with the configuration's policy.
    pub fn new(config: Config) -> Result<Allocator, Error> {
        let policy = config.policy.build();
        Allocator::with_policy(config, policy)
    }

    /// A new, empty allocator with a policy of your own (the configuration's `policy`
    /// field then only names it in snapshots).
    pub fn with_policy(config: Config, policy: Arc<dyn Policy>) -> Result<Allocator, Error> {
        config.validate()?;
        let rules = policy.rules();
        if rules.max_claims_per_lb == Some(0) {
            return Err(Error::InvalidConfig(
                "a policy must allow at least one claim per LB".into(),
            ));
        }
        let n = config.profiles.len();
        let bound = crate::bounds::LiveBound::new(&config);
        Ok(Allocator {
            policy,
            rules,
            bound,
            config,
            now: Time(0),
            next_lb: 1,
            next_seq: 0,
            lbs: LbTable::default(),
            pool_keys: ByPoolKey::default(),
            pools: Vec::new(),
            claims: ClaimTable::default(),
            bodies: crate::claims::Bodies::default(),
            waiting: WaitQueue::default(),
            usage: crate::tenant_books::TenantBooks::default(),
            demand: FxHashMap::default(),
            hot: BTreeSet::new(),
            hot_tracked: [None; crate::index::HOT_LISTENERS],
            hot_at: crate::lifecycle::HOT_AT,
            idle: BTreeSet::new(),
            totals: Totals {
                lbs_per_profile: vec![0; n],
                billed_per_profile: vec![0; n],
                baseline_per_profile: vec![0; n],
                ..Totals::default()
            },
            retry: RetryScope::default(),
            retry_spare: RetryScope::default(),
            inherited: Inherited::default(),
            out: Vec::new(),
            reports: VecDeque::new(),
            spare_used: Vec::new(),
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

    /// When the allocator next wants an [`Event::Tick`]: an idle LB's timeout, or `now`
    /// when waiting claims are due a retry (after a restore). `None`: nothing is due.
    pub fn next_wakeup(&self) -> Option<Time> {
        let idle = self
            .idle
            .iter()
            .next()
            .map(|&(t, _)| t.plus_ms(self.idle_timeout_ms()));
        let retry = (self.retry.is_due() && !self.waiting.is_empty()).then_some(self.now);
        match (idle, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies one event at `now`, appending the decisions to `out`. Refused events change
    /// nothing. Only [`Allocator::drive`] calls this, so no decision goes unhandled.
    pub(crate) fn handle(
        &mut self,
        now: Time,
        event: Event,
        out: &mut Vec<Decision>,
    ) -> Result<(), Error> {
        if now < self.now {
            return Err(Error::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        // A claim event's id is looked up once, here; its handler takes what was found.
        let live = |id: &ClaimId| {
            let hash = IdHash::of(id);
            match self.claims.find_hashed(id, hash) {
                Some(k) => Ok((k, hash)),
                None => Err(Error::UnknownClaim(id.clone())),
            }
        };
        let known = |lb: LbId| {
            if self.lbs.contains_key(lb) {
                Ok(lb)
            } else {
                Err(Error::UnknownLb(lb))
            }
        };
        let checked = match event {
            Event::ClaimAdded(c) => {
                let hash = IdHash::of(c.id());
                if self.claims.find_hashed(c.id(), hash).is_some() {
                    return Err(Error::DuplicateClaim(c.id().clone()));
                }
                Checked::Add(c, hash)
            }
            Event::ClaimUpdated(c) => Checked::Update(live(c.id())?.0, c),
            Event::ClaimRemoved(id) => {
                let (k, hash) = live(&id)?;
                Checked::Remove(k, hash, id)
            }
            Event::LbReady(lb) => Checked::LbReady(known(lb)?),
            Event::LbFailed(lb) | Event::LbDeleted(lb) => Checked::LbGone(known(lb)?),
            Event::Tick => Checked::Tick,
            Event::Consolidate { max_moves } => Checked::Consolidate(max_moves),
        };
        self.now = now;
        match checked {
            Checked::Add(c, hash) => self.add_claim(c, hash, out),
            Checked::Remove(k, hash, id) => self.remove_claim(k, hash, &id, out),
            Checked::Update(k, c) => self.update_claim(k, c, out),
            Checked::LbReady(lb) => self.lb_ready(lb),
            Checked::LbGone(lb) => self.drop_lb(lb, out),
            // Time passing may have changed why claims wait (a restore, an idle LB now
            // due): retry them.
            Checked::Tick => self.retry.everything(),
            Checked::Consolidate(max_moves) => self.consolidate(max_moves as usize, out),
        }
        // Retry first, so a waiting claim takes an idle LB before it expires; deleting an
        // LB that was still provisioning frees a provisioning slot, so retry again then.
        while self.retry.is_due() {
            self.retry_waiting(out);
            self.expire_idle(out);
        }
        self.expire_idle(out);
        Ok(())
    }

    // ---------------------------------------------------------------- claims

    /// Stores a claim at `place` (add and restore); `hash` is its id's.
    pub(crate) fn insert_claim(
        &mut self,
        mut claim: Claim,
        hash: IdHash,
        seq: u32,
        place: Place,
    ) -> u32 {
        for l in claim.fixed_listeners() {
            self.bump_demand(l, 1);
        }
        self.keep_body(&mut claim);
        let k = self.claims.insert(Slot { claim, seq, place }, hash);
        self.account(k, Books::Add);
        k
    }

    /// Gives the claim the kept body of claims alike. A body kept for the first time takes
    /// its tenant's books entry (made if none) and that entry's copy of the tenant's
    /// name: a million claims of a few tenants then hold a few names, not a million.
    fn keep_body(&mut self, claim: &mut Claim) {
        let usage = &mut self.usage;
        let bound = &mut self.bound;
        let pool_keys = &mut self.pool_keys;
        let pooling = self.rules.pooling;
        let config = &self.config;
        self.bodies.intern(
            claim,
            |body| {
                let (n, name) = usage.enter(&body.tenant, || config.tenant(&body.tenant).weight);
                body.tenant = name.clone();
                body.tenant_no = n;
                body.bound_no = bound.enter(PoolKeyRef::of_body(body, Pooling::BySharing));
                body.pool_no = pool_keys.enter(PoolKeyRef::of_body(body, pooling), SmallVec::new);
            },
            |claim| config.eligible_profiles(claim).ok(),
        );
    }

    fn add_claim(&mut self, claim: Claim, hash: IdHash, out: &mut Vec<Decision>) {
        if self.next_seq == u32::MAX {
            self.renumber_arrivals();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        // In transit until placed or waiting: it need not join the retry queue first.
        let k = self.insert_claim(claim, hash, seq, Place::Transit);
        // Waiting claims failed in the current state and an arrival frees nothing, so the
        // newcomer takes no capacity any of them could use: try it alone.
        self.try_place(k, Placement::Arrive, out);
    }

    /// Numbers the live claims' arrivals afresh from 0, in the same order (claims that
    /// share a number keep sharing one), so arrival numbers fit in four bytes however many
    /// claims ever arrive: with `u32::MAX` arrivals numbered, the next arrival would have
    /// none. Waiting queues are keyed by arrival, so they are rebuilt. O(n log n) once per
    /// four billion arrivals.
    pub(crate) fn renumber_arrivals(&mut self) {
        let order: Vec<(u32, u32)> = self
            .claims
            .in_arrival_order()
            .into_iter()
            .map(|(k, s)| (k, s.seq))
            .collect();
        let mut next = 0;
        let mut last = None;
        for (k, old) in order {
            if last.is_some_and(|l| l != old) {
                next += 1;
            }
            last = Some(old);
            self.claims.get_mut(k).seq = next;
        }
        self.next_seq = if last.is_some() { next + 1 } else { 0 };
        let claims = &self.claims;
        for q in self.waiting.queues.values_mut() {
            *q = q.iter().map(|&(_, k)| (claims.get(k).seq, k)).collect();
        }
    }

    /// Removes live slot `k`, claim `id`, whose id hashes to `hash`.
    fn remove_claim(&mut self, k: u32, hash: IdHash, id: &ClaimId, out: &mut Vec<Decision>) {
        if let Place::Assigned { lb, .. } = self.claims.get(k).place {
            self.release_to(k, Place::Transit);
            out.push(Decision::Release {
                claim: id.clone(),
                lb,
            });
        }
        self.account(k, Books::Remove);
        let slot = self.claims.remove(k, hash);
        self.bodies.release(&slot.claim);
        for l in slot.claim.fixed_listeners() {
            self.bump_demand(l, -1);
        }
    }

    /// Replaces live slot `k`'s claim with `claim`, of the same id.
    fn update_claim(&mut self, k: u32, claim: Claim, out: &mut Vec<Decision>) {
        let old: Vec<Listener> = self.claims.get(k).claim.fixed_listeners().collect();
        for l in old {
            self.bump_demand(l, -1);
        }
        for l in claim.fixed_listeners() {
            self.bump_demand(l, 1);
        }
        let old_count = self.claims.get(k).claim.listener_count();
        let moved_tenant = self.claims.get(k).claim.tenant() != claim.tenant();
        // The old claim's listeners, rebuilt before it is swapped out: they are what the
        // claim may keep.
        let previous = self.claims.placement(k);
        if previous.is_some() {
            self.release(k);
        }
        // The books hold the old claim's tenant and size: take it out, swap, put it back.
        self.account(k, Books::Remove);
        let mut claim = claim;
        self.keep_body(&mut claim);
        let old = std::mem::replace(&mut self.claims.get_mut(k).claim, claim);
        self.bodies.release(&old);
        self.claims.set_place(k, Place::Unplaced);
        self.account(k, Books::Add);
        if let Some((lb, listeners)) = previous {
            // Stay where it is, keeping automatic ports, when the LB still takes it.
            let stay = Placement::Stay {
                lb,
                prefer: &listeners,
                grows: self.claims.get(k).claim.listener_count() > old_count || moved_tenant,
            };
            if self.try_place(k, stay, out) == Outcome::Placed {
                return;
            }
            out.push(Decision::Release {
                claim: self.claims.get(k).claim.id().clone(),
                lb,
            });
        }
        self.try_place(k, Placement::Arrive, out);
    }

    /// Changes a slot's place, keeping its tenant's waiting counts and the retry queue in
    /// step.
    pub(crate) fn set_place(&mut self, k: u32, place: Place) {
        self.account(k, Books::Remove);
        self.claims.set_place(k, place);
        self.account(k, Books::Add);
    }

    /// Adds or removes what a slot's current place contributes to the books: a waiting
    /// claim counts for its tenant, and a retryable one is queued.
    fn account(&mut self, k: u32, books: Books) {
        let slot = self.claims.get(k);
        let queued = match slot.place {
            Place::Assigned { .. } => return,
            Place::Pending(r) => !r.is_permanent(),
            Place::Unplaced => true,
            Place::Transit => false,
        };
        let transit = slot.place == Place::Transit;
        let (seq, n) = (slot.seq, slot.claim.listener_count());
        let tenant = slot.claim.tenant();
        let u = self
            .usage
            .by_number_mut(tenant_number(&self.usage, &slot.claim));
        match books {
            Books::Add => {
                u.waiting_claims += 1;
                u.waiting_listeners += n;
                if queued {
                    self.waiting.push(tenant, seq, k, n);
                } else if transit {
                    self.waiting.listeners = self.waiting.listeners.saturating_add(n);
                }
            }
            Books::Remove => {
                u.waiting_claims -= 1;
                u.waiting_listeners -= n;
                if queued {
                    self.waiting.remove(tenant, seq, k, n);
                } else if transit {
                    self.waiting.listeners -= n;
                }
            }
        }
    }

    /// For tests: tracks fixed listeners as hot from `claims` asking for one (at least
    /// 4, so that one is let go when none asks; `u32::MAX`: never), so a test with few
    /// claims walks the hot listeners' indexes, and a twin that never does checks that
    /// both decide alike. Call before the first event; a restored allocator tracks from
    /// the default again.
    #[doc(hidden)]
    pub fn track_hot_from(&mut self, claims: u32) {
        self.hot_at = claims.max(4);
    }

    /// Whether some fixed listener is tracked as hot (the pool indexes keep an index of
    /// the LBs it does not clash on).
    pub(crate) fn any_hot(&self) -> bool {
        self.hot_tracked.iter().any(Option::is_some)
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
        self.track_hot(l, new);
    }

    /// Records slot `k` on `lb` with `listeners`.
    pub(crate) fn assign(&mut self, k: u32, lb: LbId, listeners: &[Listener]) {
        let n = listeners.len() as u32;
        let profile_index = self.lbs[lb].profile();
        {
            let profile = &self.config.profiles[profile_index];
            let claim = &self.claims.get(k).claim;
            let l = self
                .lbs
                .get_mut(lb)
                .unwrap_or_else(|| unreachable!("assign to a live LB"));
            l.occupy(profile, claim, k, listeners);
        }
        self.unidle(lb);
        self.reindex(lb, Change::Listeners(listeners));
        let claim = &self.claims.get(k).claim;
        if let Some(p) = self.dedicated_profile_index(claim) {
            self.totals.baseline_per_profile[p] += 1;
        }
        self.bound.count(claim, 1);
        let u = self.usage.by_number_mut(tenant_number(&self.usage, claim));
        u.listeners += n;
        u.claims += 1;
        self.totals.listeners_used += u64::from(n);
        self.totals.placed += 1;
        let ports = self.claims.hold(k, listeners);
        self.set_place(k, Place::Assigned { lb, ports });
    }

    /// Requests from memory together, without waiting, what freeing `listeners` on LB `lb`
    /// is about to touch apart from its record: their listener-table lines and the LB's
    /// entries in its pool index. With a million claims each is a cache miss, and taken
    /// one after the other they would be waited for one after the other: best-fit's
    /// departure median at the issue's size (990k claims on 90k LBs), 1.30–1.43 →
    /// 1.21–1.26 µs. (An arrival's placement has read them already.) Also the last step
    /// of [`Allocator::prefetch`].
    ///
    /// Kept out of line: below [`Allocator::wants_hints`]'s size the callers skip it, and
    /// inlined, it made a decision at 1k claims 3% slower (0.379 against 0.366 µs).
    #[inline(never)]
    pub(crate) fn fetch_for_update(&self, lb: LbId, listeners: &[Listener]) {
        if let Some(l) = self.lbs.get(lb) {
            for &listener in listeners {
                l.used.prefetch(listener);
            }
            if let Some(pool) = self.pools.get(l.pool as usize) {
                pool.index.prefetch(l.pos);
            }
        }
    }

    /// Frees slot `k`'s listeners; the slot is left unplaced (the caller decides what next).
    pub(crate) fn release(&mut self, k: u32) {
        self.release_to(k, Place::Unplaced);
    }

    /// Frees slot `k`'s listeners and leaves it at `then` (unplaced, or in transit when it
    /// is leaving).
    pub(crate) fn release_to(&mut self, k: u32, then: Place) {
        let Some((lb, listeners)) = self.claims.placement(k) else {
            return;
        };
        let n = listeners.len() as u32;
        let now = self.now;
        if self.wants_hints() {
            self.fetch_for_update(lb, &listeners);
        }
        {
            let profile = &self.config.profiles[self.lbs[lb].profile()];
            let l = self
                .lbs
                .get_mut(lb)
                .unwrap_or_else(|| unreachable!("release from a live LB"));
            l.vacate(profile, &listeners);
            if l.claims == 0 && l.state != LbState::Draining {
                l.set_idle_since(Some(now));
                self.idle.insert((now, lb));
            }
        }
        self.reindex(lb, Change::Listeners(&listeners));
        let claim = &self.claims.get(k).claim;
        if let Some(p) = self.dedicated_profile_index(claim) {
            self.totals.baseline_per_profile[p] -= 1;
        }
        self.bound.count(claim, -1);
        let tenant = claim.tenant().clone();
        let u = self.usage.by_number_mut(tenant_number(&self.usage, claim));
        u.listeners -= n;
        u.claims -= 1;
        self.totals.listeners_used -= u64::from(n);
        self.totals.placed -= 1;
        self.set_place(k, then);
        let pool = self.lbs[lb].pool;
        self.retry.gained_room(pool, lb);
        let budgeted =
            self.config.budget.max_lbs.is_some() || self.config.budget.max_cost_per_hour.is_some();
        if budgeted && self.lbs[lb].idle_since().is_some() {
            // An idle LB can be deleted to make room for a claim of any pool.
            self.retry.everything();
        }
        self.retry.freed_usage(&tenant);
        self.forget_inherited_limits(&tenant);
    }

    // ---------------------------------------------------------------- queries

    /// An LB's lifecycle state; `None` when it does not exist (cheaper than
    /// [`Allocator::lb`], which copies its listeners).
    pub fn lb_state(&self, lb: LbId) -> Option<LbState> {
        self.lbs.get(lb).map(|l| l.state)
    }

    pub(crate) fn lb_free(&self, lb: LbId) -> u32 {
        self.lbs
            .get(lb)
            .map_or(0, |l| l.free(&self.config.profiles[l.profile()]))
    }

    pub(crate) fn lb_claims(&self, lb: LbId) -> u32 {
        self.lbs.get(lb).map_or(0, |l| l.claims)
    }

    pub(crate) fn lb_listener_free(&self, lb: LbId, l: Listener) -> bool {
        self.lbs
            .get(lb)
            .is_some_and(|x| !x.rule.occupied(&x.used, l))
    }

    pub(crate) fn hot_listeners(&self) -> impl Iterator<Item = (Listener, u32)> + '_ {
        self.hot.iter().map(|&(Reverse(c), l)| (l, c))
    }

    pub(crate) fn pending_listeners(&self) -> u32 {
        self.waiting.listeners
    }

    /// The LB and listeners of a placed claim; `None` if waiting or unknown.
    pub fn placement(&self, id: &ClaimId) -> Option<(LbId, Listeners)> {
        let k = self.claims.find(id)?;
        self.claims.placement(k)
    }

    /// Why a claim waits; `None` if placed or unknown.
    pub fn pending_reason(&self, id: &ClaimId) -> Option<PendingReason> {
        let k = self.claims.find(id)?;
        self.claims.get(k).pending_reason()
    }

    /// Why waiting claim `id` waits, in words, worked out afresh: the message of its last
    /// [`Decision::Pending`] is sent only when the reason changes, and its figures (what a
    /// tenant holds of its quota, an idle LB being deleted) may have moved since. `None`
    /// when the claim is placed or unknown, or when a fresh look finds another reason (a
    /// retry is due, and will say).
    ///
    /// ```
    /// use sharedlb_allocator::*;
    ///
    /// struct Nothing;
    /// impl Shell for Nothing {
    ///     fn carry_out(&mut self, _: Time, _: Decision, _: &mut Reports<'_>) {}
    /// }
    /// let mut config = Config::with_builtin("aws-nlb", "best-fit".parse()?)?;
    /// let quota = Quota { max_listeners: Some(3), ..Quota::default() };
    /// config.tenants.insert(TenantId::new("shop")?, TenantConfig { weight: 1, quota });
    /// let mut alloc = Allocator::new(config)?;
    /// let any = |n| vec![PortRequest::Any(Protocol::Tcp); n];
    /// for (name, n) in [("shop/web", 1), ("shop/api", 1), ("shop/db", 3)] {
    ///     alloc.drive(Time(0), Event::ClaimAdded(Claim::new(name, any(n))?), &mut Nothing)?;
    /// }
    /// let db: ClaimId = "shop/db".parse()?;
    /// let held = |a: &Allocator| a.waiting_message(&db).unwrap();
    /// assert_eq!(held(&alloc), "tenant shop holds 2 of its 3 listeners and asks 3 more");
    /// // api leaves: db still waits for the quota (no new Pending decision), on new figures.
    /// alloc.drive(Time(1), Event::ClaimRemoved("shop/api".parse()?), &mut Nothing)?;
    /// assert_eq!(held(&alloc), "tenant shop holds 1 of its 3 listeners and asks 3 more");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn waiting_message(&self, id: &ClaimId) -> Option<String> {
        let k = self.claims.find(id)?;
        // Only a claim told to wait: one not tried yet (restored, arriving) has no reason.
        let Place::Pending(reason) = self.claims.get(k).place else {
            return None;
        };
        match self.find_place(k, crate::placement::Placement::Arrive) {
            // An idle LB this look would delete is not being deleted: only a retry does
            // that, and says so.
            Err(crate::placement::Wait::Pending(now, why, None)) if now == reason => {
                Some(why.words(&self.config))
            }
            _ => None,
        }
    }

    /// A claim as last given.
    pub fn claim(&self, id: &ClaimId) -> Option<&Claim> {
        self.claims.find(id).map(|k| &self.claims.get(k).claim)
    }

    /// The key of a live claim; `None` if unknown. See [`ClaimKey`].
    ///
    /// ```
    /// use sharedlb_allocator::{
    ///     Allocator, Claim, Config, Decision, Event, PortRequest, Protocol, Reports, Shell, Time,
    /// };
    ///
    /// /// Whether each claim is placed, in a vector by key rather than a map by id.
    /// #[derive(Default)]
    /// struct Placed(Vec<bool>);
    /// impl Shell for Placed {
    ///     fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports<'_>) {
    ///         if let Decision::Assign { claim, .. } = d {
    ///             let key = reports.allocator().claim_key(&claim).expect("live").index();
    ///             if self.0.len() <= key {
    ///                 self.0.resize(key + 1, false);
    ///             }
    ///             self.0[key] = true;
    ///         }
    ///     }
    /// }
    ///
    /// let mut alloc = Allocator::new(Config::with_builtin("aws-nlb", "best-fit".parse()?)?)?;
    /// let mut shell = Placed::default();
    /// let web = Claim::new("shop/web", vec![PortRequest::Any(Protocol::Tcp)])?;
    /// alloc.drive(Time(0), Event::ClaimAdded(web.clone()), &mut shell)?;
    /// let key = alloc.claim_key(web.id()).expect("live");
    /// assert!(shell.0[key.index()]);
    /// assert_eq!(alloc.claim_by_key(key).map(Claim::id), Some(web.id()));
    /// alloc.drive(Time(1), Event::ClaimRemoved(web.id().clone()), &mut shell)?;
    /// assert_eq!(alloc.claim_key(web.id()), None);
    /// assert_eq!(alloc.claim_by_key(key), None, "the key is free again");
    /// # Ok::<(), sharedlb_allocator::Error>(())
    /// ```
    pub fn claim_key(&self, id: &ClaimId) -> Option<ClaimKey> {
        self.claims.find(id).map(ClaimKey::of_slot)
    }

    /// The live claim with `key`; `None` if no live claim has it.
    pub fn claim_by_key(&self, key: ClaimKey) -> Option<&Claim> {
        self.claims.try_get(key.slot()).map(|s| &s.claim)
    }

    /// Every claim in arrival order, with its LB and listeners or its pending reason.
    pub fn claims(&self) -> Vec<(&Claim, ClaimPlace)> {
        self.claims
            .in_arrival_order()
            .into_iter()
            .map(|(k, s)| {
                let p = self.claims.placement(k).ok_or_else(|| {
                    s.pending_reason()
                        .unwrap_or_else(|| unreachable!("a claim not placed waits"))
                });
                (&s.claim, p)
            })
            .collect()
    }

    /// Number of live claims (placed or waiting).
    pub fn claim_count(&self) -> usize {
        self.claims.len()
    }

    /// Number of placed claims.
    pub fn placed_count(&self) -> usize {
        self.totals.placed as usize
    }

    /// Number of claims waiting.
    pub fn pending_count(&self) -> usize {
        self.claims.len() - self.totals.placed as usize
    }

    /// Live LBs' ids, ascending.
    pub(crate) fn lb_ids(&self) -> Vec<LbId> {
        let mut ids: Vec<LbId> = self.lbs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Live LBs (any state), in id order.
    pub fn lbs(&self) -> Vec<LbInfo> {
        self.lb_ids()
            .into_iter()
            .filter_map(|id| self.lb(id))
            .collect()
    }

    /// One LB.
    pub fn lb(&self, id: LbId) -> Option<LbInfo> {
        let l = self.lbs.get(id)?;
        let p = &self.config.profiles[l.profile()];
        Some(LbInfo {
            id,
            profile: p.name.clone(),
            pool: self.pools[l.pool as usize].key.clone(),
            state: l.state,
            listeners: l
                .used
                .sorted()
                .into_iter()
                .map(|(x, k)| (x, self.claims.get(k).claim.id().clone()))
                .collect(),
            capacity: p.max_listeners,
            idle_since: l.idle_since(),
        })
    }

    /// The slots of the claims on an LB, each once, in arrival order (a claim holding
    /// several listeners is listed once; slot number breaks ties, since a restored
    /// snapshot may give two claims one arrival number).
    pub(crate) fn slots_on_by_arrival(&self, id: LbId) -> Vec<u32> {
        let mut ks: Vec<u32> = self.lbs[id].used.slots().collect();
        ks.sort_unstable_by_key(|&k| (self.claims.get(k).seq, k));
        ks.dedup();
        ks
    }

    /// The claims on an LB, in listener order, each once.
    pub fn claims_on(&self, id: LbId) -> Vec<ClaimId> {
        let Some(l) = self.lbs.get(id) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        l.used
            .sorted()
            .into_iter()
            .filter(|&(_, k)| seen.insert(k))
            .map(|(_, k)| self.claims.get(k).claim.id().clone())
            .collect()
    }

    /// Number of live LBs in each state.
    pub fn lb_counts(&self) -> BTreeMap<LbState, usize> {
        let total: u32 = self.totals.lbs_per_profile.iter().sum();
        let ready = total - self.totals.provisioning - self.totals.draining;
        [
            (LbState::Provisioning, self.totals.provisioning),
            (LbState::Ready, ready),
            (LbState::Draining, self.totals.draining),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(s, n)| (s, n as usize))
        .collect()
    }

    /// Number of live LBs in one state, in O(1) (what [`Allocator::lb_counts`] gives
    /// without building a map).
    pub fn lb_count(&self, state: LbState) -> usize {
        let total: u32 = self.totals.lbs_per_profile.iter().sum();
        (match state {
            LbState::Provisioning => self.totals.provisioning,
            LbState::Ready => total - self.totals.provisioning - self.totals.draining,
            LbState::Draining => self.totals.draining,
        }) as usize
    }

    /// Live LBs per profile, in configuration order.
    pub fn lbs_per_profile(&self) -> &[u32] {
        &self.totals.lbs_per_profile
    }

    /// Number of live LBs holding at least one claim.
    pub fn lbs_with_claims(&self) -> usize {
        self.lbs.len() - self.idle.len() - self.totals.draining as usize
    }

    /// Listeners in use over all LBs.
    pub fn listeners_used(&self) -> u64 {
        self.totals.listeners_used
    }

    /// Listener capacity over all non-draining LBs.
    pub fn listener_capacity(&self) -> u64 {
        self.totals.capacity
    }

    /// The capacity and per-listener lower bounds on LBs for the placed claims (see
    /// [`crate::bounds`]), kept as counters: O(1).
    pub fn lower_bound(&self) -> crate::bounds::LowerBound {
        self.bound.get()
    }

    /// A tenant's usage.
    pub fn usage(&self, t: &TenantId) -> Usage {
        self.usage.get(t).copied().unwrap_or_default()
    }

    /// Every tenant that has or had claims, with its usage, in name order.
    pub fn tenants(&self) -> impl Iterator<Item = (&TenantId, &Usage)> + '_ {
        self.usage.iter()
    }

    /// [`Allocator::tenants`] in the order the allocator first saw them, without a
    /// lookup by name. A tenant keeps its place in this order for the allocator's life
    /// and new tenants come last, so a shell integrating figures per tenant at every
    /// event can keep them in a vector by place. A clone or a restored allocator is
    /// another allocator: it orders the tenants of its live claims afresh, by arrival.
    ///
    /// ```
    /// use sharedlb_allocator::*;
    ///
    /// struct Nothing;
    /// impl Shell for Nothing {
    ///     fn carry_out(&mut self, _: Time, _: Decision, _: &mut Reports<'_>) {}
    /// }
    /// let mut alloc = Allocator::new(Config::with_builtin("aws-nlb", "best-fit".parse()?)?)?;
    /// for id in ["zoo/web", "app/web", "zoo/api"] {
    ///     let claim = Claim::new(id, vec![PortRequest::Any(Protocol::Tcp)])?;
    ///     alloc.drive(Time(0), Event::ClaimAdded(claim), &mut Nothing)?;
    /// }
    /// let seen: Vec<(&str, u32)> =
    ///     alloc.tenants_by_arrival().map(|(t, u)| (t.as_str(), u.claims)).collect();
    /// assert_eq!(seen, [("zoo", 2), ("app", 1)]);
    /// let named: Vec<&str> = alloc.tenants().map(|(t, _)| t.as_str()).collect();
    /// assert_eq!(named, ["app", "zoo"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tenants_by_arrival(&self) -> impl Iterator<Item = (&TenantId, &Usage)> + '_ {
        self.usage.by_number()
    }
}
