//! Lower bounds on the number of LBs a set of claims needs: packing is judged against them.
//!
//! **The lower bound** of a set of claims is the fewest LBs any packing needs, summed over
//! sharing pools (claims that may share: the claims' own sharing rules, whatever the policy),
//! each pool needing at least the largest of
//! - by capacity: ⌈listeners / capacity⌉ (per protocol where LBs cannot mix protocols);
//! - by listener: the most claims asking for one same listener (or port number, where one
//!   port number cannot carry two protocols) — they need as many LBs;
//! - by clique: the largest set of claims that pairwise clash ([`lower_bound`] only).
//!
//! It is taken over the claims actually placed and with the most permissive profile the
//! configuration offers ([`bound_profile`]), so a packing never beats it. The allocator keeps
//! the first two as counters updated with every placement ([`crate::Allocator::lower_bound`]);
//! the clique bound costs a graph and is computed on demand.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use petgraph::graphmap::UnGraphMap;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::lb::{ByPoolKey, PoolKey, PoolKeyRef, Pooling};
use crate::model::{Claim, Protocol};
use crate::ports::{ClashKey, PortRule};
use crate::profile::LbProfile;
use rustc_hash::FxHashMap;

/// Most conflict-graph edges the clique bound builds; past it only the cheaper bounds count.
const MAX_EDGES: usize = 200_000;

/// A lower bound and the arguments behind it, summed over sharing pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowerBound {
    /// ⌈listeners / capacity⌉ (per protocol where the profile cannot mix protocols).
    pub by_capacity: u64,
    /// The most claims that need one same fixed listener.
    pub by_listener: u64,
    /// The largest clique found in the conflict graph (0 when not computed).
    pub by_clique: u64,
    /// The bound: per pool the largest of the three, summed over pools.
    pub total: u64,
}

/// The most permissive profile of a configuration: the most listeners, protocols mixed and
/// port numbers shared if any profile allows it. A bound for it holds for every profile.
pub fn bound_profile(config: &Config) -> LbProfile {
    let mut p = config.profiles[0].clone();
    for q in &config.profiles[1..] {
        p.max_listeners = p.max_listeners.max(q.max_listeners);
        p.mixed_protocols |= q.mixed_protocols;
        p.shared_port_numbers |= q.shared_port_numbers;
    }
    p
}

/// The capacity and per-listener bounds of the placed claims, kept up to date as claims
/// are placed and released.
#[derive(Clone, Debug)]
pub(crate) struct LiveBound {
    profile: LbProfile,
    rule: PortRule,
    /// Every sharing pool a kept claim body has named, by number ([`LiveBound::enter`]):
    /// a body carries its pool's number, so a count finds it without hashing the key.
    /// Kept when empty, as tenants' books are (one small entry per pool ever seen).
    pools: ByPoolKey<PoolCount>,
    /// The sum over pools of each pool's bound.
    total: u64,
    by_capacity: u64,
    by_listener: u64,
}

#[derive(Clone, Debug, Default)]
struct PoolCount {
    /// Whether its LBs hold one claim each: its bound is its claims.
    dedicated: bool,
    /// Listeners per protocol class (one class when the profile mixes protocols).
    listeners: [u64; 3],
    /// The capacity bound, Σ ⌈listeners / capacity⌉ over the classes: kept, so a count
    /// divides for the one class it changes instead of all three twice.
    by_capacity: u64,
    claims: u64,
    keys: FxHashMap<ClashKey, u64>,
    /// How many keys have each count, for the largest count.
    counts: BTreeMap<u64, u64>,
}

impl PoolCount {
    fn listener_bound(&self) -> u64 {
        self.counts.keys().next_back().copied().unwrap_or(0)
    }
}

impl LiveBound {
    pub fn new(config: &Config) -> LiveBound {
        let profile = bound_profile(config);
        LiveBound {
            rule: PortRule::of_profile(&profile),
            profile,
            pools: ByPoolKey::default(),
            total: 0,
            by_capacity: 0,
            by_listener: 0,
        }
    }

    /// The number of sharing pool `key` (a [`Pooling::BySharing`] key), given out once
    /// per key: what a kept body carries for [`LiveBound::count`].
    pub fn enter(&mut self, key: PoolKeyRef<'_>) -> u32 {
        self.pools.enter(key, || PoolCount {
            dedicated: key.is_dedicated(),
            ..PoolCount::default()
        })
    }

    /// The number of sharing pool `key`, if it has one.
    pub fn number(&self, key: PoolKeyRef<'_>) -> Option<u32> {
        self.pools.number(key)
    }

    /// Counts a placed claim in (`+1`) or out (`-1`); its body is kept by the allocator
    /// owning this bound, so it carries its pool's number from [`LiveBound::enter`].
    pub fn count(&mut self, claim: &Claim, sign: i64) {
        let no = claim.body().bound_no;
        debug_assert_eq!(
            self.pools.number(PoolKeyRef::of(claim, Pooling::BySharing)),
            Some(no),
            "a kept body carries its sharing pool's number"
        );
        let pool = self.pools.get_mut(no);
        let dedicated = pool.dedicated;
        let (old_cap, old_key) = pool_bounds(pool, dedicated);
        let class = if self.profile.mixed_protocols {
            0
        } else {
            claim.ports()[0].protocol().index()
        };
        let n = i64::from(claim.listener_count());
        let cap = u64::from(self.profile.max_listeners);
        let before = pool.listeners[class];
        let after = before.saturating_add_signed(n * sign);
        pool.listeners[class] = after;
        pool.by_capacity = pool.by_capacity - before.div_ceil(cap) + after.div_ceil(cap);
        pool.claims = pool.claims.saturating_add_signed(sign);
        // Pushed one by one: `collect` reserves by the filter's upper bound, which cost
        // more than the usual no key at all.
        let mut keys: SmallVec<[ClashKey; 8]> = SmallVec::new();
        for l in claim.fixed_listeners() {
            keys.push(self.rule.key(l));
        }
        if keys.len() > 1 {
            keys.sort_unstable();
            keys.dedup();
        }
        for k in keys {
            let c = pool.keys.entry(k).or_default();
            let old = *c;
            *c = c.saturating_add_signed(sign);
            let new = *c;
            if old > 0 {
                let e = pool.counts.entry(old).or_default();
                *e -= 1;
                if *e == 0 {
                    pool.counts.remove(&old);
                }
            }
            if new > 0 {
                *pool.counts.entry(new).or_default() += 1;
            } else {
                pool.keys.remove(&k);
            }
        }
        let (new_cap, new_key) = pool_bounds(pool, dedicated);
        self.by_capacity = self.by_capacity + new_cap - old_cap;
        self.by_listener = self.by_listener + new_key - old_key;
        self.total = self.total + new_cap.max(new_key) - old_cap.max(old_key);
    }

    pub fn get(&self) -> LowerBound {
        LowerBound {
            by_capacity: self.by_capacity,
            by_listener: self.by_listener,
            by_clique: 0,
            total: self.total,
        }
    }
}

/// A pool's (capacity, listener) bounds; a dedicated pool needs one LB per claim.
fn pool_bounds(pool: &PoolCount, dedicated: bool) -> (u64, u64) {
    if dedicated {
        (pool.claims, pool.claims)
    } else {
        (pool.by_capacity, pool.listener_bound())
    }
}

/// The capacity and per-listener bounds only (no clique): what the allocator keeps as
/// counters, recounted from scratch (for checking the counters).
pub(crate) fn counted_bound<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    profile: &LbProfile,
) -> LowerBound {
    bound_with(claims, profile, Clique::Skip)
}

/// Whether to search the conflict graph for cliques.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clique {
    Search,
    Skip,
}

/// No packing of `claims` onto LBs of `profile` uses fewer LBs than this — whatever the
/// policy (its sharing rules are those of the claims themselves). Pass the claims that are
/// actually served: a bound over claims nobody could place says nothing about a packing.
pub fn lower_bound<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    profile: &LbProfile,
) -> LowerBound {
    bound_with(claims, profile, Clique::Search)
}

fn bound_with<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    profile: &LbProfile,
    clique: Clique,
) -> LowerBound {
    let mut pools: BTreeMap<PoolKey, Vec<&Claim>> = BTreeMap::new();
    for c in claims {
        pools
            .entry(PoolKey::of(c, Pooling::BySharing))
            .or_default()
            .push(c);
    }
    let mut out = LowerBound::default();
    for (key, cs) in pools {
        let b = if key.is_dedicated() {
            let n = cs.len() as u64;
            LowerBound {
                by_capacity: n,
                by_listener: n,
                by_clique: n,
                total: n,
            }
        } else {
            pool_bound(&cs, profile, clique)
        };
        out.by_capacity += b.by_capacity;
        out.by_listener += b.by_listener;
        out.by_clique += b.by_clique;
        out.total += b.total;
    }
    out
}

fn pool_bound(cs: &[&Claim], profile: &LbProfile, clique: Clique) -> LowerBound {
    let cap = u64::from(profile.max_listeners);
    let by_capacity = if profile.mixed_protocols {
        cs.iter()
            .map(|c| u64::from(c.listener_count()))
            .sum::<u64>()
            .div_ceil(cap)
    } else {
        // Claims of different protocols never share an LB of this profile.
        let mut per: BTreeMap<Protocol, u64> = BTreeMap::new();
        for c in cs {
            *per.entry(c.ports()[0].protocol()).or_default() += u64::from(c.listener_count());
        }
        per.values().map(|n| n.div_ceil(cap)).sum()
    };
    let rule = PortRule::of_profile(profile);
    let mut by_key: BTreeMap<ClashKey, Vec<usize>> = BTreeMap::new();
    for (i, c) in cs.iter().enumerate() {
        let mut keys: Vec<_> = c.fixed_listeners().map(|l| rule.key(l)).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            by_key.entry(k).or_default().push(i);
        }
    }
    let by_listener = by_key.values().map(|v| v.len() as u64).max().unwrap_or(0);
    let by_clique = match clique {
        Clique::Search => clique_bound(&by_key).max(by_listener.min(1)),
        Clique::Skip => 0,
    };
    LowerBound {
        by_capacity,
        by_listener,
        by_clique,
        total: by_capacity.max(by_listener).max(by_clique),
    }
}

/// A greedy clique in the graph whose edges join claims that clash on a fixed listener.
/// Any clique is a valid bound (its claims need pairwise different LBs); greedy growth
/// from the highest-degree vertices finds the cliques that are not a single listener,
/// e.g. {80,443}, {443,53}, {53,80}.
fn clique_bound(by_key: &BTreeMap<ClashKey, Vec<usize>>) -> u64 {
    let edges: usize = by_key
        .values()
        .map(|v| v.len() * v.len().saturating_sub(1) / 2)
        .sum();
    if edges > MAX_EDGES {
        return 0;
    }
    let mut g: UnGraphMap<usize, ()> = UnGraphMap::new();
    for v in by_key.values() {
        for (i, &a) in v.iter().enumerate() {
            g.add_node(a);
            for &b in &v[i + 1..] {
                g.add_edge(a, b, ());
            }
        }
    }
    let mut nodes: Vec<usize> = g.nodes().collect();
    nodes.sort_unstable_by_key(|&n| (std::cmp::Reverse(g.neighbors(n).count()), n));
    let mut best = 0;
    for &start in nodes.iter().take(64) {
        let mut nbrs: Vec<usize> = g.neighbors(start).collect();
        nbrs.sort_unstable_by_key(|&n| (std::cmp::Reverse(g.neighbors(n).count()), n));
        let mut clique = vec![start];
        for n in nbrs {
            if clique.iter().all(|&c| g.contains_edge(c, n)) {
                clique.push(n);
            }
        }
        best = best.max(clique.len() as u64);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Listener;
    use crate::profile::builtin_profile;

    fn fixed(id: &str, ports: &[u16]) -> Claim {
        Claim::new(
            id,
            ports
                .iter()
                .map(|&p| crate::PortRequest::Fixed(Listener::tcp(p).unwrap()))
                .collect(),
        )
        .unwrap()
    }

    /// The kept capacity bound is per protocol class where LBs cannot mix protocols:
    /// 2 listeners per LB, so TCP 1 → 1 LB, + UDP 1 → 2, TCP 3 → 3, UDP gone → 2.
    #[test]
    fn the_live_capacity_bound_counts_each_protocol_class() {
        let mut config = Config::with_builtin("aws-nlb", "best-fit".parse().unwrap()).unwrap();
        config.profiles[0].max_listeners = 2;
        config.profiles[0].mixed_protocols = false;
        config.profiles[0].protocols = vec![Protocol::Tcp, Protocol::Udp];
        let mut live = LiveBound::new(&config);
        // As the allocator keeps a body: numbered with its sharing pool.
        let mut any = |id: &str, p: Protocol| {
            let mut c = Claim::new(id, vec![crate::PortRequest::Any(p)]).unwrap();
            let body = c.body_mut();
            body.bound_no = live.enter(PoolKeyRef::of_body(body, Pooling::BySharing));
            c
        };
        let (t1, t2, t3) = (
            any("a/t1", Protocol::Tcp),
            any("a/t2", Protocol::Tcp),
            any("a/t3", Protocol::Tcp),
        );
        let u = any("a/u", Protocol::Udp);
        let mut bounds = vec![];
        for (c, sign) in [(&t1, 1), (&u, 1), (&t2, 1), (&t3, 1), (&u, -1), (&t3, -1)] {
            live.count(c, sign);
            bounds.push(live.get().by_capacity);
        }
        assert_eq!(bounds, [1, 2, 2, 3, 2, 1]);
        assert_eq!(live.get().total, 1);
    }

    #[test]
    fn clique_of_pairwise_clashes_beats_single_listener_count() {
        let p = builtin_profile("aws-nlb").unwrap();
        let cs = vec![
            fixed("a/x", &[80, 443]),
            fixed("a/y", &[443, 53]),
            fixed("a/z", &[53, 80]),
        ];
        let b = lower_bound(&cs, &p);
        assert_eq!(b.by_listener, 2);
        assert_eq!(b.by_clique, 3);
        assert_eq!(b.total, 3);
    }

    #[test]
    fn pools_add_up() {
        let p = builtin_profile("aws-nlb").unwrap();
        let cs = vec![fixed("a/x", &[80]), fixed("b/y", &[81])];
        assert_eq!(
            lower_bound(&cs, &p).total,
            2,
            "two tenants never share by default"
        );
    }
}
