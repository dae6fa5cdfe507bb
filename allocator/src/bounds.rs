//! Lower bounds on the number of LBs a set of claims needs: packing is judged against them.

use std::collections::BTreeMap;

use petgraph::graphmap::UnGraphMap;
use serde::{Deserialize, Serialize};

use crate::lb::PoolKey;
use crate::model::{Claim, Listener, Port, Protocol};
use crate::profile::LbProfile;

/// Most conflict-graph edges the clique bound builds; past it only the cheaper bounds count.
const MAX_EDGES: usize = 200_000;

/// A lower bound and the arguments behind it, summed over sharing pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowerBound {
    /// ⌈listeners / capacity⌉ (per protocol where the profile cannot mix protocols).
    pub by_capacity: u64,
    /// The most claims that need one same fixed listener.
    pub by_listener: u64,
    /// The largest clique found in the conflict graph.
    pub by_clique: u64,
    /// The bound: per pool the largest of the three, summed over pools.
    pub total: u64,
}

/// The key two clashing listeners share under the profile's rules.
fn clash_key(p: &LbProfile, l: Listener) -> (Option<Protocol>, Port) {
    if p.shared_port_numbers {
        (Some(l.protocol), l.port)
    } else {
        (None, l.port)
    }
}

/// No packing of `claims` onto LBs of `profile` uses fewer LBs than this.
pub fn lower_bound(claims: &[Claim], profile: &LbProfile) -> LowerBound {
    let mut pools: BTreeMap<PoolKey, Vec<&Claim>> = BTreeMap::new();
    for c in claims {
        pools.entry(PoolKey::of(c, false)).or_default().push(c);
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
            pool_bound(&cs, profile)
        };
        out.by_capacity += b.by_capacity;
        out.by_listener += b.by_listener;
        out.by_clique += b.by_clique;
        out.total += b.total;
    }
    out
}

fn pool_bound(cs: &[&Claim], profile: &LbProfile) -> LowerBound {
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
            *per.entry(c.ports[0].protocol()).or_default() += u64::from(c.listener_count());
        }
        per.values().map(|n| n.div_ceil(cap)).sum()
    };
    let mut by_key: BTreeMap<(Option<Protocol>, Port), Vec<usize>> = BTreeMap::new();
    for (i, c) in cs.iter().enumerate() {
        let mut keys: Vec<_> = c.fixed_listeners().map(|l| clash_key(profile, l)).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            by_key.entry(k).or_default().push(i);
        }
    }
    let by_listener = by_key.values().map(|v| v.len() as u64).max().unwrap_or(0);
    let by_clique = clique_bound(&by_key).max(by_listener.min(1));
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
fn clique_bound(by_key: &BTreeMap<(Option<Protocol>, Port), Vec<usize>>) -> u64 {
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
