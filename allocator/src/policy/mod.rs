//! Packing policies: which existing load balancer a claim goes to, and which profile a new
//! one gets.
//!
//! Adding a policy means one file here (the [`Policy`] and its `REGISTRATION`) plus its name
//! in the `policies!` line below: the name, how its parameter parses and is checked, and how
//! it is built live in the file. Every policy is deterministic: it sees only the [`View`],
//! whose orders are fixed. [`Policy`] is public, so a policy can also live outside the crate
//! (see [`crate::Allocator::with_policy`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::iter::Peekable;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::allocator::Allocator;
use crate::error::Error;
use crate::index::PoolIndex;
use crate::lb::{LbState, Misfit, Pooling};
use crate::model::{Claim, LbId, Listener, Listeners};
use crate::ports::PortRule;
use crate::profile::LbProfile;

macro_rules! policies {
    ($($m:ident),* $(,)?) => {
        $(mod $m;)*
        /// Every policy, in the order tables list them.
        pub static REGISTRY: &[&Registration] = &[$(&$m::REGISTRATION),*];
    };
}

policies!(
    dedicated,
    seed,
    first_fit,
    best_fit,
    worst_fit,
    conflict_aware,
    cost_aware
);

/// What the allocator must know of a policy beyond its choices: rules it imposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyRules {
    /// How claims group into pools (one LB per claim, or by sharing rule).
    pub pooling: Pooling,
    /// A port rule between claims stricter than the profile's, if any.
    pub port_rule: Option<PortRule>,
    /// Most claims one LB may hold, if limited.
    pub max_claims_per_lb: Option<u32>,
    /// What happens to an LB that empties.
    pub idle_lbs: IdleLbs,
    /// The candidate orders [`Policy::choose`] walks: the allocator keeps only these up to
    /// date as LBs gain and lose room.
    pub walks: Walks,
}

/// The candidate orders a policy walks, so the allocator keeps only those up to date.
///
/// Keeping an order costs every decision that changes an LB's room: keeping those it
/// never read cost first-fit and best-fit 10% more instructions per decision at a million
/// claims, and first-fit 12–16% more time at 1k (BENCHMARKS.md). An order a policy walks
/// without naming it here is still right, only slow: it is rebuilt from the LBs' rooms
/// for that walk.
///
/// ```
/// use sharedlb_allocator::{PolicyKind, Walks};
/// let best_fit: PolicyKind = "best-fit".parse()?;
/// assert_eq!(best_fit.build().rules().walks, Walks::ByRoom);
/// # Ok::<(), sharedlb_allocator::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Walks {
    /// [`View::by_id`] only.
    LowestIdFirst,
    /// [`View::fullest_first`] and [`View::emptiest_first`] only.
    ByRoom,
    /// Any order (what a policy that does not say gets).
    #[default]
    Every,
}

impl Walks {
    /// Whether [`View::by_id`] is kept.
    pub(crate) fn by_id(self) -> bool {
        matches!(self, Walks::LowestIdFirst | Walks::Every)
    }

    /// Whether [`View::fullest_first`] and [`View::emptiest_first`] are kept.
    pub(crate) fn by_room(self) -> bool {
        matches!(self, Walks::ByRoom | Walks::Every)
    }
}

/// What happens to an LB that empties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleLbs {
    /// Kept for the configured idle timeout, for claims to come.
    KeepForTimeout,
    /// Deleted at once (one LB per Service: the LB goes with its Service).
    DeleteAtOnce,
}

impl Default for PolicyRules {
    fn default() -> Self {
        PolicyRules {
            pooling: Pooling::BySharing,
            port_rule: None,
            max_claims_per_lb: None,
            idle_lbs: IdleLbs::KeepForTimeout,
            walks: Walks::Every,
        }
    }
}

/// A packing policy.
///
/// Contract: [`Policy::choose`] returns only an LB the view offered and [`View::fits`]
/// accepted, and returns `None` only when no offered LB fits — a claim that fits on a usable
/// LB is placed there (the model test checks this for every built-in policy).
pub trait Policy: fmt::Debug + Send + Sync {
    /// The existing LB the claim goes to, or `None` when none of the candidates fits.
    fn choose(&self, view: &View<'_>) -> Option<LbId>;

    /// Which of the `eligible` profiles (indexes into the configuration, never empty) a new
    /// LB for this claim gets.
    fn new_lb_profile(&self, _view: &View<'_>, eligible: &[usize]) -> usize {
        eligible[0]
    }

    /// Rules the policy imposes (pooling, port rule, claims per LB).
    fn rules(&self) -> PolicyRules {
        PolicyRules::default()
    }
}

/// A policy's numeric parameter, written `name:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// What it means.
    pub name: &'static str,
    /// Its value when not written.
    pub default: u32,
    /// Smallest value accepted.
    pub min: u32,
    /// Largest value accepted.
    pub max: u32,
}

/// One policy's entry in the registry.
#[derive(Debug)]
pub struct Registration {
    /// Its name, as written in configurations.
    pub name: &'static str,
    /// Other names it is known by.
    pub aliases: &'static [&'static str],
    /// One line on what it does.
    pub about: &'static str,
    /// Its parameter, if it takes one.
    pub param: Option<Param>,
    /// Builds it with its parameter's value (`None` when it takes none).
    pub build: fn(Option<u32>) -> Arc<dyn Policy>,
}

/// Every policy name, in registry order.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|r| r.name)
}

/// A registered policy with its parameter: what configurations name.
///
/// ```
/// use sharedlb_allocator::PolicyKind;
/// let seed: PolicyKind = "seed:4".parse()?;
/// assert_eq!((seed.name(), seed.param()), ("seed", Some(4)));
/// assert!("seed:0".parse::<PolicyKind>().is_err());
/// assert!("best-fit:3".parse::<PolicyKind>().is_err());
/// # Ok::<(), sharedlb_allocator::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct PolicyKind {
    reg: &'static Registration,
    param: Option<u32>,
}

impl PolicyKind {
    /// Every policy name, in registry order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        names()
    }

    /// The policy's name without parameters.
    pub fn name(self) -> &'static str {
        self.reg.name
    }

    /// Its parameter's value (the default when not written), if it takes one.
    pub fn param(self) -> Option<u32> {
        self.param
    }

    /// Its registry entry.
    pub fn registration(self) -> &'static Registration {
        self.reg
    }

    /// The policy object.
    pub fn build(self) -> Arc<dyn Policy> {
        (self.reg.build)(self.param)
    }

    /// Whether this is the one-LB-per-claim policy (the savings baseline).
    pub fn is_dedicated(self) -> bool {
        self.build().rules().pooling == Pooling::EveryClaimAlone
    }
}

impl PartialEq for PolicyKind {
    fn eq(&self, other: &Self) -> bool {
        self.reg.name == other.reg.name && self.param == other.param
    }
}

impl Eq for PolicyKind {}

impl std::hash::Hash for PolicyKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.reg.name.hash(state);
        self.param.hash(state);
    }
}

impl fmt::Debug for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyKind({self})")
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.param, self.reg.param) {
            (Some(v), Some(p)) if v != p.default => write!(f, "{}:{v}", self.reg.name),
            _ => f.write_str(self.reg.name),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let reg = REGISTRY
            .iter()
            .find(|r| r.name == name || r.aliases.contains(&name))
            .ok_or_else(|| Error::UnknownPolicy(s.to_owned()))?;
        let bad = |reason: String| Error::PolicyParameter {
            policy: s.to_owned(),
            reason,
        };
        let param = match (reg.param, arg) {
            (None, None) => None,
            (None, Some(_)) => return Err(bad("this policy takes no parameter".into())),
            (Some(p), None) => Some(p.default),
            (Some(p), Some(a)) => {
                let v: u32 = a
                    .parse()
                    .map_err(|_| bad(format!("{} must be a whole number, not {a:?}", p.name)))?;
                if !(p.min..=p.max).contains(&v) {
                    return Err(bad(format!(
                        "{} must be between {} and {}, not {v}",
                        p.name, p.min, p.max
                    )));
                }
                Some(v)
            }
        };
        Ok(PolicyKind { reg, param })
    }
}

impl Serialize for PolicyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a view's candidates come from.
pub(crate) enum Candidates<'a> {
    /// The pool index of each eligible profile, with the claim's protocol class in it.
    Pools(SmallVec<[(&'a PoolIndex, usize); 2]>),
    /// Only these LBs, with their room for the claim's class (a retry after they gained
    /// room).
    Listed(Vec<(u32, LbId)>),
}

/// A pool's candidates when the claim asks for a hot listener (see [`View::pooled`]): the
/// first usable candidate of the whole walk, then the walk over the LBs the hot listener
/// does not clash on (its usable ones come after that first, in the order a merge of
/// pools needs; the others the merge drops); the whole walk where the pool keeps no such
/// index.
struct Walked<'v, 'a, I> {
    whole: I,
    clash_free: Option<I>,
    /// The whole walk's first usable candidate, once given.
    first: Option<LbId>,
    view: &'v View<'a>,
}

impl<K, I: Iterator<Item = (K, LbId)>> Iterator for Walked<'_, '_, I> {
    type Item = (K, LbId);
    #[inline]
    fn next(&mut self) -> Option<(K, LbId)> {
        let Some(clash_free) = self.clash_free.as_mut() else {
            return self.whole.next();
        };
        let Some(first) = self.first else {
            let first = self.whole.by_ref().find(|&(_, id)| self.view.usable(id))?;
            self.first = Some(first.1);
            return Some(first);
        };
        clash_free.find(|&(_, id)| id != first)
    }
}

/// One of two iterators.
enum Either<A, B> {
    A(A),
    B(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            Either::A(a) => a.next(),
            Either::B(b) => b.next(),
        }
    }
}

/// What a policy sees of the allocator while placing one claim: the candidate LBs of the
/// claim's pool in fixed orders (each with room for the claim), and a `fits` test that also
/// records why LBs did not fit.
///
/// When the claim asks for a hot fixed listener, the walks leave out the LBs it clashes on
/// (all but the first), which fail `fits` all the same: a policy that tries candidates in
/// order chooses, and records why none fit, as if it had met them. One that skips
/// candidates without trying them may see fewer than it would have.
pub struct View<'a> {
    pub(crate) alloc: &'a Allocator,
    pub(crate) claim: &'a Claim,
    pub(crate) source: Candidates<'a>,
    pub(crate) exclude: Option<&'a BTreeSet<LbId>>,
    pub(crate) ready_only: bool,
    pub(crate) seen: Cell<Option<Misfit>>,
    /// The listeners of the last LB that fitted, so the winner is not planned twice.
    pub(crate) last_fit: RefCell<Option<(LbId, Listeners)>>,
}

impl<'a> View<'a> {
    /// The claim being placed.
    pub fn claim(&self) -> &Claim {
        self.claim
    }

    fn usable(&self, lb: LbId) -> bool {
        !self.exclude.is_some_and(|e| e.contains(&lb))
            && (!self.ready_only || self.alloc.lb_state(lb) == Some(LbState::Ready))
    }

    /// Whether the claim fits on `lb` (records why not).
    pub fn fits(&self, lb: LbId) -> bool {
        match self.alloc.plan_on(lb, self.claim, None) {
            Ok(ls) => {
                *self.last_fit.borrow_mut() = Some((lb, ls));
                true
            }
            Err(m) => {
                // Remember the most telling misfit: a conflict or a full range says more
                // than lack of room.
                if self.seen.get().is_none_or(|s| m > s) {
                    self.seen.set(Some(m));
                }
                false
            }
        }
    }

    /// Free listener slots on `lb`.
    pub fn free(&self, lb: LbId) -> u32 {
        self.alloc.lb_free(lb)
    }

    /// Claims on `lb`.
    pub fn claims_on(&self, lb: LbId) -> u32 {
        self.alloc.lb_claims(lb)
    }

    /// Whether `l` is free on `lb` (no clash under the LB's rule).
    pub fn listener_free(&self, lb: LbId, l: Listener) -> bool {
        self.alloc.lb_listener_free(lb, l)
    }

    /// The fixed listeners most asked for among live and pending claims, with counts, most
    /// asked first.
    pub fn hot_listeners(&self) -> impl Iterator<Item = (Listener, u32)> + '_ {
        self.alloc.hot_listeners()
    }

    /// Listeners asked for by retryable pending claims (for demand estimates).
    pub fn pending_listeners(&self) -> u32 {
        self.alloc.pending_listeners()
    }

    /// The configured profiles.
    pub fn profiles(&self) -> &[LbProfile] {
        &self.alloc.config().profiles
    }

    fn merged<'s, K: Ord + Copy, I: Iterator<Item = (K, LbId)> + 's>(
        &'s self,
        mut iters: SmallVec<[I; 2]>,
    ) -> impl Iterator<Item = LbId> + 's {
        // One pool (the common case): its own order, no merge.
        if iters.len() == 1
            && let Some(only) = iters.pop()
        {
            return Either::A(only.map(|(_, id)| id).filter(move |&id| self.usable(id)));
        }
        let mut iters: SmallVec<[Peekable<I>; 2]> =
            iters.into_iter().map(Iterator::peekable).collect();
        Either::B(
            std::iter::from_fn(move || {
                let mut best: Option<(usize, K)> = None;
                for (i, it) in iters.iter_mut().enumerate() {
                    if let Some(&(k, _)) = it.peek()
                        && best.is_none_or(|(_, b)| k < b)
                    {
                        best = Some((i, k));
                    }
                }
                best.and_then(|(i, _)| iters[i].next()).map(|(_, id)| id)
            })
            .filter(move |&id| self.usable(id)),
        )
    }

    /// Listed candidates with room for the claim, in the order `key` gives.
    fn listed<K: Ord>(&self, key: impl Fn(u32, LbId) -> K) -> impl Iterator<Item = LbId> + '_ {
        let need = self.claim.listener_count();
        let mut v: Vec<(K, LbId)> = match &self.source {
            Candidates::Listed(v) => v
                .iter()
                .filter(|&&(room, _)| room >= need)
                .map(|&(room, id)| (key(room, id), id))
                .collect(),
            Candidates::Pools(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let ids: Vec<LbId> = v.into_iter().map(|(_, id)| id).collect();
        ids.into_iter().filter(move |&id| self.usable(id))
    }

    /// The index of `pool`'s LBs that one of the claim's fixed listeners does not clash
    /// on, if one of them is hot: the one with the fewest LBs with room in `class`.
    fn clash_free(&self, pool: &'a PoolIndex, class: usize) -> Option<&'a PoolIndex> {
        let tracked = &self.alloc.hot_tracked;
        self.claim
            .fixed_listeners()
            .filter_map(|l| tracked.iter().position(|t| *t == Some(l)))
            .filter_map(|h| pool.clash_free(h))
            .map(|(sub, kept)| {
                // An index keeps the rooms of its listener's class, and a claim asking for
                // the listener walks that class: on a profile that does not mix protocols,
                // eligibility leaves only claims of one protocol.
                debug_assert_eq!(kept, class, "a claim walks its hot listener's class");
                sub
            })
            .min_by_key(|sub| sub.open(class))
    }

    /// The pools' candidates as a walk sees them (`walk` builds a pool's order from a
    /// least room): when the claim asks for a hot listener, per pool the whole walk's
    /// first usable candidate and then, in the same order, the LBs that listener does not
    /// clash on; else the whole walks. Pools are merged by their keys.
    ///
    /// The LBs passed over all fail `fits` with a clash, so the policy's choice is the
    /// whole walk's. So is the reason a claim waits when none fits: each pool's first
    /// candidate is tried, and if it clashes it records the clash every LB passed over
    /// would; if it does not, it is tried as the first of the LBs that listener does not
    /// clash on, and a clash (the least telling misfit a candidate with room can give)
    /// then changes nothing.
    fn pooled<'s, I: Iterator<Item = (K, LbId)> + 's, K: Ord + Copy>(
        &'s self,
        pools: &[(&'a PoolIndex, usize)],
        walk: impl Fn(&'a PoolIndex, usize, u32) -> I,
    ) -> impl Iterator<Item = LbId> + 's {
        let need = self.claim.listener_count();
        if self.alloc.any_hot() {
            let subs: SmallVec<[Option<&'a PoolIndex>; 2]> = pools
                .iter()
                .map(|&(pool, class)| self.clash_free(pool, class))
                .collect();
            if subs.iter().any(Option::is_some) {
                return Either::B(
                    self.merged(
                        pools
                            .iter()
                            .zip(subs)
                            .map(|(&(pool, class), sub)| Walked {
                                whole: walk(pool, class, need),
                                clash_free: sub.map(|sub| walk(sub, class, need)),
                                first: None,
                                view: self,
                            })
                            .collect(),
                    ),
                );
            }
        }
        Either::A(
            self.merged(
                pools
                    .iter()
                    .map(|&(p, class)| walk(p, class, need))
                    .collect(),
            ),
        )
    }

    /// Candidates with room for the claim, lowest id first.
    pub fn by_id(&self) -> impl Iterator<Item = LbId> + '_ {
        match &self.source {
            Candidates::Pools(pools) => {
                Either::A(self.pooled(pools, |p, class, k| p.lowest_id(class, k)))
            }
            Candidates::Listed(_) => Either::B(self.listed(|_, id| id)),
        }
    }

    /// Candidates with room for the claim, fullest (least room) first, then lowest id.
    pub fn fullest_first(&self) -> impl Iterator<Item = LbId> + '_ {
        match &self.source {
            Candidates::Pools(pools) => {
                Either::A(self.pooled(pools, |p, class, k| p.fullest(class, k)))
            }
            Candidates::Listed(_) => Either::B(self.listed(|room, id| (room, id))),
        }
    }

    /// Candidates with room for the claim, emptiest (most room) first, then lowest id.
    pub fn emptiest_first(&self) -> impl Iterator<Item = LbId> + '_ {
        match &self.source {
            Candidates::Pools(pools) => {
                Either::A(self.pooled(pools, |p, class, k| p.emptiest(class, k)))
            }
            Candidates::Listed(_) => {
                Either::B(self.listed(|room, id| (std::cmp::Reverse(room), id)))
            }
        }
    }
}
