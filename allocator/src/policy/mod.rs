//! Packing policies: which existing load balancer a claim goes to, and which profile a new
//! one gets. One trait, one file per policy. Every policy is deterministic: it sees only the
//! [`View`], whose iteration orders are fixed.

mod best_fit;
mod conflict_aware;
mod cost_aware;
mod dedicated;
mod first_fit;
mod seed;
mod worst_fit;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use best_fit::BestFit;
pub use conflict_aware::ConflictAware;
pub use cost_aware::CostAware;
pub use dedicated::Dedicated;
pub use first_fit::FirstFit;
pub use seed::Seed;
pub use worst_fit::WorstFit;

use crate::allocator::{Allocator, PoolIndex};
use crate::error::Error;
use crate::lb::Misfit;
use crate::model::{Claim, LbId, Listener};

/// Most candidate LBs one decision looks at. Keeps a decision's work bounded when many LBs
/// of a pool clash with a claim's fixed ports; past it a new LB is opened.
pub const MAX_PROBES: u32 = 256;

/// A packing policy.
pub trait Policy: fmt::Debug + Send + Sync {
    /// Which policy this is.
    fn kind(&self) -> PolicyKind;

    /// The existing LB the claim should go to, or `None` to open a new one.
    fn choose(&self, view: &View<'_>) -> Option<LbId>;

    /// Which of the `eligible` profiles (indexes into the configuration, never empty) a new
    /// LB for this claim gets.
    fn new_lb_profile(&self, _view: &View<'_>, eligible: &[usize]) -> usize {
        eligible[0]
    }

    /// Whether every claim gets an LB of its own, whatever its sharing rule.
    fn dedicated(&self) -> bool {
        false
    }

    /// Whether a port number clashes across protocols (the 2018 controller ignored protocol).
    fn strict_port_numbers(&self) -> bool {
        false
    }
}

/// The policies by name, with their parameters. Written as `name` or `name:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// One LB per claim: what Kubernetes does today, the baseline for savings.
    Dedicated,
    /// The 2018 demo: first LB with fewer than `max_claims` claims and no clashing port number.
    Seed {
        /// Claims per LB.
        max_claims: u32,
    },
    /// Lowest-numbered LB that fits.
    FirstFit,
    /// Fullest LB that fits.
    BestFit,
    /// Emptiest LB that fits (spreads load).
    WorstFit,
    /// Keeps contended fixed listeners free where they are still free.
    ConflictAware,
    /// Best fit, and new LBs of the profile cheapest for the expected demand.
    CostAware {
        /// Listeners expected in the pool; 0 = estimate from pending claims.
        expected_listeners: u32,
    },
}

impl PolicyKind {
    /// Every policy name.
    pub const NAMES: [&'static str; 7] = [
        "dedicated",
        "seed",
        "first-fit",
        "best-fit",
        "worst-fit",
        "conflict-aware",
        "cost-aware",
    ];

    /// The policy's name without parameters.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Dedicated => "dedicated",
            PolicyKind::Seed { .. } => "seed",
            PolicyKind::FirstFit => "first-fit",
            PolicyKind::BestFit => "best-fit",
            PolicyKind::WorstFit => "worst-fit",
            PolicyKind::ConflictAware => "conflict-aware",
            PolicyKind::CostAware { .. } => "cost-aware",
        }
    }

    /// Checks the parameters.
    pub fn validate(self) -> Result<(), Error> {
        if let PolicyKind::Seed { max_claims: 0 } = self {
            return Err(Error::InvalidConfig("seed:N needs N >= 1".into()));
        }
        Ok(())
    }

    /// The policy object.
    pub fn build(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::Dedicated => Box::new(Dedicated),
            PolicyKind::Seed { max_claims } => Box::new(Seed { max_claims }),
            PolicyKind::FirstFit => Box::new(FirstFit),
            PolicyKind::BestFit => Box::new(BestFit),
            PolicyKind::WorstFit => Box::new(WorstFit),
            PolicyKind::ConflictAware => Box::new(ConflictAware),
            PolicyKind::CostAware { expected_listeners } => {
                Box::new(CostAware { expected_listeners })
            }
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyKind::Seed { max_claims } => write!(f, "seed:{max_claims}"),
            PolicyKind::CostAware { expected_listeners } if *expected_listeners > 0 => {
                write!(f, "cost-aware:{expected_listeners}")
            }
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |default: u32| -> Result<u32, Error> {
            arg.map_or(Ok(default), |a| {
                a.parse()
                    .map_err(|_| Error::UnknownPolicy(format!("{s} (parameter must be a number)")))
            })
        };
        let kind = match name {
            "dedicated" => PolicyKind::Dedicated,
            "seed" => PolicyKind::Seed {
                max_claims: num(10)?,
            },
            "first-fit" => PolicyKind::FirstFit,
            "best-fit" => PolicyKind::BestFit,
            "worst-fit" | "spread" => PolicyKind::WorstFit,
            "conflict-aware" => PolicyKind::ConflictAware,
            "cost-aware" => PolicyKind::CostAware {
                expected_listeners: num(0)?,
            },
            _ => return Err(Error::UnknownPolicy(s.to_owned())),
        };
        if arg.is_some() && !matches!(kind, PolicyKind::Seed { .. } | PolicyKind::CostAware { .. })
        {
            return Err(Error::UnknownPolicy(format!(
                "{s} (this policy takes no parameter)"
            )));
        }
        kind.validate()?;
        Ok(kind)
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

/// What a policy sees of the allocator while placing one claim: the candidate LBs of the
/// claim's pool in fixed orders, and a `fits` test that also records why LBs did not fit.
pub struct View<'a> {
    pub(crate) alloc: &'a Allocator,
    pub(crate) claim: &'a Claim,
    pub(crate) pools: Vec<&'a PoolIndex>,
    pub(crate) exclude: Option<&'a BTreeSet<LbId>>,
    pub(crate) ready_only: bool,
    pub(crate) strict: bool,
    pub(crate) probes: Cell<u32>,
    pub(crate) seen: Cell<Option<Misfit>>,
    /// The listeners of the last LB that fitted, so the winner is not planned twice.
    pub(crate) last_fit: std::cell::RefCell<Option<(LbId, Vec<Listener>)>>,
}

impl View<'_> {
    /// The claim being placed.
    pub fn claim(&self) -> &Claim {
        self.claim
    }

    fn exhausted(&self) -> bool {
        self.probes.get() >= MAX_PROBES
    }

    fn usable(&self, lb: LbId) -> bool {
        !self.exclude.is_some_and(|e| e.contains(&lb))
            && (!self.ready_only || self.alloc.lb_state(lb) == Some(crate::lb::LbState::Ready))
    }

    /// Whether the claim fits on `lb` (counts one probe; records the misfit).
    pub fn fits(&self, lb: LbId) -> bool {
        self.probes.set(self.probes.get() + 1);
        match self.alloc.plan_on(lb, self.claim, self.strict, None) {
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

    /// Whether `l` is free on `lb` (no clash under the profile's rules).
    pub fn listener_free(&self, lb: LbId, l: Listener) -> bool {
        self.alloc.lb_listener_free(lb, l)
    }

    /// The `n` fixed listeners most asked for among live and pending claims, with counts.
    pub fn hot_listeners(&self, n: usize) -> Vec<(Listener, u32)> {
        self.alloc.hot_listeners(n)
    }

    /// Listeners asked for by pending claims of the same pool (for demand estimates).
    pub fn pending_listeners(&self) -> u32 {
        self.alloc.pending_listeners()
    }

    fn merged<'s, K: Ord + Copy + 's>(
        &'s self,
        iters: Vec<Box<dyn Iterator<Item = (K, LbId)> + 's>>,
    ) -> impl Iterator<Item = LbId> + 's {
        let mut iters: Vec<std::iter::Peekable<_>> =
            iters.into_iter().map(Iterator::peekable).collect();
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
        .filter(move |&id| self.usable(id))
        .take_while(move |_| !self.exhausted())
    }

    /// Candidates with room, lowest id first.
    pub fn by_id(&self) -> impl Iterator<Item = LbId> + '_ {
        let iters = self
            .pools
            .iter()
            .map(|p| Box::new(p.by_id.iter().map(|&id| (id, id))) as Box<dyn Iterator<Item = _>>)
            .collect();
        self.merged(iters)
    }

    /// Candidates with enough room, fullest (least free) first.
    pub fn fullest_first(&self) -> impl Iterator<Item = LbId> + '_ {
        let need = self.claim.listener_count();
        let iters = self
            .pools
            .iter()
            .map(|p| {
                Box::new(
                    p.by_free
                        .range((need, LbId(0))..)
                        .map(|&(f, id)| ((f, id), id)),
                ) as Box<dyn Iterator<Item = _>>
            })
            .collect();
        self.merged(iters)
    }

    /// Candidates with enough room, emptiest (most free) first.
    pub fn emptiest_first(&self) -> impl Iterator<Item = LbId> + '_ {
        let need = self.claim.listener_count();
        let iters = self
            .pools
            .iter()
            .map(|p| {
                Box::new(
                    p.by_free
                        .range((need, LbId(0))..)
                        .rev()
                        .map(|&(f, id)| ((std::cmp::Reverse(f), id), id)),
                ) as Box<dyn Iterator<Item = _>>
            })
            .collect();
        self.merged(iters)
    }
}
