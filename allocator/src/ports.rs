//! The port-clash rule — the one definition placement, invariants, restore and bounds all
//! use — and the search for the lowest free automatic port.

use serde::{Deserialize, Serialize};

use crate::model::{Listener, Port, Protocol};
use crate::profile::LbProfile;

mod holes;
mod table;

use holes::HoleSet;
use table::PortTable;

/// The listeners in use on one LB, each with the slot of the claim holding it: a hash
/// table (constant time at any LB size, one cache line per lookup, and no allocation once
/// it has grown to its working size, as a B-tree's node splits and merges would) plus a
/// count per protocol, so the protocol an LB is locked to is known without walking the
/// table. Iteration is in no particular order; [`Used::sorted`] gives listener order for
/// the few callers that show it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Used {
    map: PortTable,
    /// Listeners per protocol: at most 65,535 each, one per port number.
    per_protocol: [u16; 3],
}

fn pack(l: Listener) -> u32 {
    ((l.protocol.index() as u32) << 16) | u32::from(l.port.get())
}

fn unpack(k: u32) -> Listener {
    Listener::new(
        Protocol::ALL[(k >> 16) as usize],
        Port::new(k as u16).unwrap_or(Port::MIN),
    )
}

impl Used {
    /// Empties the table, keeping its room.
    pub fn clear(&mut self) {
        self.map.clear();
        self.per_protocol = [0; 3];
    }

    /// Listeners the table holds without growing.
    pub fn room(&self) -> usize {
        self.map.capacity()
    }

    /// Listeners in use.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The slot holding `l`, if it is in use.
    pub fn get(&self, l: Listener) -> Option<u32> {
        self.map.get(pack(l))
    }

    /// Requests from memory, without waiting, the table line where `l` is looked up.
    pub fn prefetch(&self, l: Listener) {
        self.map.prefetch(pack(l));
    }

    /// Whether `l` itself is in use.
    pub fn contains(&self, l: Listener) -> bool {
        self.map.get(pack(l)).is_some()
    }

    /// Records `l` as held by slot `k`.
    pub fn insert(&mut self, l: Listener, k: u32) {
        if self.map.insert(pack(l), k).is_none() {
            self.per_protocol[l.protocol.index()] += 1;
        }
    }

    /// Frees `l`.
    pub fn remove(&mut self, l: Listener) {
        if self.map.remove(pack(l)).is_some() {
            self.per_protocol[l.protocol.index()] -= 1;
        }
    }

    /// A protocol in use here, the lowest if several (an LB of a profile that cannot mix
    /// protocols is locked to it).
    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| self.per_protocol[p.index()] > 0)
    }

    /// Every protocol in use here.
    pub fn protocols(&self) -> impl Iterator<Item = Protocol> + '_ {
        Protocol::ALL
            .into_iter()
            .filter(|p| self.per_protocol[p.index()] > 0)
    }

    /// Listeners in use with their slots, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Listener, u32)> + '_ {
        self.map.iter().map(|(l, k)| (unpack(l), k))
    }

    /// The slots holding listeners, in no particular order (once per listener).
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.map.iter().map(|(_, k)| k)
    }

    /// Listeners in use with their slots, in listener order.
    pub fn sorted(&self) -> Vec<(Listener, u32)> {
        let mut v: Vec<(u32, u32)> = self.map.iter().collect();
        v.sort_unstable();
        v.into_iter().map(|(l, k)| (unpack(l), k)).collect()
    }
}

/// When two listeners on one load balancer clash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PortRule {
    /// Only the same listener clashes: `53/TCP` and `53/UDP` may share an LB.
    PerListener,
    /// Two listeners on one port number clash, whatever their protocols.
    PerPortNumber,
}

/// What two clashing listeners have in common under a [`PortRule`]: the listener itself, or
/// only its port number.
pub type ClashKey = (Option<Protocol>, Port);

impl PortRule {
    /// The rule an LB of this profile enforces.
    pub fn of_profile(profile: &LbProfile) -> PortRule {
        if profile.shared_port_numbers {
            PortRule::PerListener
        } else {
            PortRule::PerPortNumber
        }
    }

    /// Whether `a` and `b` clash under this rule.
    ///
    /// ```
    /// use sharedlb_allocator::{Listener, PortRule};
    /// let (t, u) = (Listener::tcp(53).unwrap(), Listener::udp(53).unwrap());
    /// assert!(!PortRule::PerListener.clash(t, u));
    /// assert!(PortRule::PerPortNumber.clash(t, u));
    /// ```
    pub fn clash(self, a: Listener, b: Listener) -> bool {
        a == b || (self == PortRule::PerPortNumber && a.port == b.port)
    }

    /// The key clashing listeners share: two listeners clash exactly when their keys are equal.
    pub fn key(self, l: Listener) -> ClashKey {
        match self {
            PortRule::PerListener => (Some(l.protocol), l.port),
            PortRule::PerPortNumber => (None, l.port),
        }
    }

    /// Which automatic-port space a listener of this protocol draws from.
    fn space(self, p: Protocol) -> usize {
        match self {
            PortRule::PerListener => p.index(),
            PortRule::PerPortNumber => 0,
        }
    }
}

/// The rules that hold on one LB: between listeners of different claims, and among one
/// claim's own listeners. A policy may make the first stricter than the profile (the 2018
/// rule treated a port number as taken whatever its protocol), never looser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClashRule {
    /// Between listeners of different claims.
    pub between_claims: PortRule,
    /// Among one claim's listeners: the profile's own rule.
    pub within_claim: PortRule,
}

impl ClashRule {
    /// The rule on an LB of `profile` under a policy that may ask for `policy_rule`.
    pub fn new(profile: &LbProfile, policy_rule: Option<PortRule>) -> ClashRule {
        let within_claim = PortRule::of_profile(profile);
        let between_claims = policy_rule.map_or(within_claim, |p| p.max(within_claim));
        ClashRule {
            between_claims,
            within_claim,
        }
    }

    /// Whether `l` clashes with a listener in use (`used`) held by another claim.
    pub(crate) fn occupied(self, used: &Used, l: Listener) -> bool {
        match self.between_claims {
            PortRule::PerListener => used.contains(l),
            PortRule::PerPortNumber => used
                .protocols()
                .any(|p| used.contains(Listener::new(p, l.port))),
        }
    }

    /// Whether two listeners clash, given whether they belong to the same claim.
    pub(crate) fn clash(self, a: Listener, b: Listener, same_claim: bool) -> bool {
        if same_claim {
            self.within_claim.clash(a, b)
        } else {
            self.between_claims.clash(a, b)
        }
    }
}

/// The lowest free automatic ports of one LB, found without walking the ports in use: a
/// cursor per port space (a protocol, or every protocol when port numbers clash across
/// protocols).
///
/// Invariant, per space: every port of the automatic range below the space's `next` that
/// is free (not reserved, no clashing listener) is one of its holes. So the lowest free port
/// is the first hole, or the first free port from `next` on; every port a search steps over
/// there is in use or reserved, and `next` moves past it when an automatic port above it is
/// taken.
///
/// The three spaces' holes are bits by offset from the range's first port, one word per
/// space inside the record while they stay below offset 64 ([`HoleSet`]).
#[derive(Clone, Debug)]
pub(crate) struct AutoPorts {
    next: [u32; 3],
    holes: HoleSet,
    /// While a snapshot is being restored the cursors are not kept; they restart afterwards.
    suspended: bool,
}

impl AutoPorts {
    /// Cursors at the start of `profile`'s automatic range.
    pub fn new(profile: &LbProfile) -> AutoPorts {
        let first = u32::from(profile.auto_ports.first.get());
        AutoPorts {
            next: [first; 3],
            holes: HoleSet::default(),
            suspended: false,
        }
    }

    /// Stops keeping the cursors (bulk restore); [`AutoPorts::restart`] resumes.
    pub fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Restarts every cursor at the range's start: trivially true to the invariant (no port
    /// below `next`), and the first search steps over the ports in use once.
    pub fn restart(&mut self, profile: &LbProfile) {
        *self = AutoPorts::new(profile);
    }

    /// The lowest automatic port for `proto` that is free on the LB (`used`, clash rule
    /// `rule`), not reserved, and clashes with none of `own` (the claim's other listeners).
    pub fn lowest_free(
        &self,
        profile: &LbProfile,
        rule: ClashRule,
        used: &Used,
        proto: Protocol,
        own: &[Listener],
    ) -> Option<Listener> {
        let space = rule.between_claims.space(proto);
        let mine = |port: Port| {
            let l = Listener::new(proto, port);
            own.iter().any(|&o| rule.within_claim.clash(o, l))
        };
        let first = u32::from(profile.auto_ports.first.get());
        for h in self.holes.iter(space) {
            let port = Port::new((first + h) as u16)?;
            if !mine(port) {
                return Some(Listener::new(proto, port));
            }
        }
        let last = u32::from(profile.auto_ports.last.get());
        let mut p = self.next[space];
        while p <= last {
            let port = Port::new(p as u16)?;
            let l = Listener::new(proto, port);
            if !profile.is_reserved(port) && !rule.occupied(used, l) && !mine(port) {
                return Some(l);
            }
            p += 1;
        }
        None
    }

    /// Records that `l` is now in use; `automatic` when the allocator picked it (a fixed
    /// port never moves the cursor, so a fixed port high in the range costs nothing).
    /// `used` already holds `l`.
    pub fn take(
        &mut self,
        profile: &LbProfile,
        rule: ClashRule,
        used: &Used,
        l: Listener,
        automatic: bool,
    ) {
        if self.suspended || !profile.auto_ports.contains(l.port) {
            return;
        }
        let space = rule.between_claims.space(l.protocol);
        let p = u32::from(l.port.get());
        let first = u32::from(profile.auto_ports.first.get());
        if p < self.next[space] {
            self.holes.remove(space, p - first);
        } else if automatic {
            // Ports stepped over on the way are in use or reserved when `l` was the lowest
            // free one; any other free port met is kept as a hole, so none is lost.
            for q in self.next[space]..p {
                let port = Port::new(q as u16).unwrap_or(Port::MIN);
                if !profile.is_reserved(port)
                    && !rule.occupied(used, Listener::new(l.protocol, port))
                {
                    self.holes.insert(space, q - first);
                }
            }
            self.next[space] = p + 1;
        }
    }

    /// Records that `l` was freed. `used` no longer holds it.
    pub fn give_back(&mut self, profile: &LbProfile, rule: ClashRule, used: &Used, l: Listener) {
        if self.suspended || !profile.auto_ports.contains(l.port) || profile.is_reserved(l.port) {
            return;
        }
        let space = rule.between_claims.space(l.protocol);
        let p = u32::from(l.port.get());
        let first = u32::from(profile.auto_ports.first.get());
        if p >= self.next[space] || rule.occupied(used, l) {
            return;
        }
        if p + 1 == self.next[space] {
            // The cursor steps back over it, and over the holes and reserved ports just
            // below, rather than keep them: fewer holes, and an LB that empties keeps none.
            self.next[space] = p;
            while self.next[space] > first {
                let below = self.next[space] - 1;
                let reserved = Port::new(below as u16).is_some_and(|q| profile.is_reserved(q));
                if !reserved && !self.holes.remove(space, below - first) {
                    break;
                }
                self.next[space] = below;
            }
            self.holes.shrink();
        } else {
            self.holes.insert(space, p - first);
        }
    }

    /// Checks the invariant against the ports in use (for `check_invariants`).
    pub fn check(&self, profile: &LbProfile, rule: ClashRule, used: &Used) -> Result<(), String> {
        if self.suspended {
            return Err("automatic-port cursors left suspended".into());
        }
        let spaces: &[Protocol] = match rule.between_claims {
            PortRule::PerListener => &Protocol::ALL,
            PortRule::PerPortNumber => &[Protocol::Tcp],
        };
        let first = u32::from(profile.auto_ports.first.get());
        for &proto in spaces {
            let space = rule.between_claims.space(proto);
            let next = self.next[space];
            for q in first..next.min(u32::from(profile.auto_ports.last.get()) + 1) {
                let port = Port::new(q as u16).unwrap_or(Port::MIN);
                let free =
                    !profile.is_reserved(port) && !rule.occupied(used, Listener::new(proto, port));
                let hole = self.holes.contains(space, q - first);
                if free != hole {
                    return Err(format!(
                        "automatic port {q}/{proto}: free {free}, recorded as a hole {hole}"
                    ));
                }
            }
            if self.holes.last(space).is_some_and(|h| first + h >= next) {
                return Err(format!("a {proto} hole lies above the cursor"));
            }
        }
        let in_use: Vec<usize> = spaces
            .iter()
            .map(|&p| rule.between_claims.space(p))
            .collect();
        if let Some(s) = (0..3).find(|s| !in_use.contains(s) && self.holes.last(*s).is_some()) {
            return Err(format!(
                "holes kept in port space {s}, which this LB's rule does not use"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin_profile;

    /// A protocol's count is 16 bits: every port of one protocol in use fills it exactly,
    /// and it counts back down to none.
    #[test]
    fn every_port_of_a_protocol_in_use_is_counted() {
        let mut used = Used::default();
        let tcp = |p: u16| Listener::new(Protocol::Tcp, Port::new(p).unwrap());
        for p in 1..=u16::MAX {
            used.insert(tcp(p), u32::from(p));
        }
        used.insert(Listener::new(Protocol::Udp, Port::new(53).unwrap()), 0);
        assert_eq!(used.len(), 65_536);
        assert_eq!(
            used.protocols().collect::<Vec<_>>(),
            [Protocol::Tcp, Protocol::Udp]
        );
        used.insert(tcp(80), 7);
        assert_eq!(
            used.get(tcp(80)),
            Some(7),
            "a listener held again is not counted twice"
        );
        for p in 1..=u16::MAX {
            used.remove(tcp(p));
        }
        assert_eq!(used.protocols().collect::<Vec<_>>(), [Protocol::Udp]);
        assert_eq!(used.protocol(), Some(Protocol::Udp));
    }

    /// Takes the lowest free automatic port of `proto`, as placement does.
    fn take_of(
        auto: &mut AutoPorts,
        p: &LbProfile,
        rule: ClashRule,
        used: &mut Used,
        proto: Protocol,
    ) -> Listener {
        let l = auto
            .lowest_free(p, rule, used, proto, &[])
            .expect("a free port");
        used.insert(l, 0);
        auto.take(p, rule, used, l, true);
        l
    }

    /// Takes the lowest free automatic TCP port.
    fn take_one(auto: &mut AutoPorts, p: &LbProfile, rule: ClashRule, used: &mut Used) -> Listener {
        take_of(auto, p, rule, used, Protocol::Tcp)
    }

    /// Each port space keeps its own holes in the shared hole set: a TCP port freed low in
    /// the range is offered to TCP, never to UDP, and the other way round.
    #[test]
    fn holes_of_one_protocol_are_not_offered_to_another() {
        let p = builtin_profile("aws-nlb").expect("built in");
        let rule = ClashRule::new(&p, None);
        assert_eq!(
            rule.between_claims,
            PortRule::PerListener,
            "53/TCP and 53/UDP coexist"
        );
        let first = p.auto_ports.first.get();
        let mut auto = AutoPorts::new(&p);
        let mut used = Used::default();
        let take =
            |proto, used: &mut Used, auto: &mut AutoPorts| take_of(auto, &p, rule, used, proto);
        let tcp: Vec<Listener> = (0..3)
            .map(|_| take(Protocol::Tcp, &mut used, &mut auto))
            .collect();
        let udp: Vec<Listener> = (0..3)
            .map(|_| take(Protocol::Udp, &mut used, &mut auto))
            .collect();
        assert_eq!(
            udp[0].port.get(),
            first,
            "UDP numbers its ports apart from TCP"
        );
        used.remove(tcp[1]);
        auto.give_back(&p, rule, &used, tcp[1]);
        used.remove(udp[0]);
        auto.give_back(&p, rule, &used, udp[0]);
        auto.check(&p, rule, &used).expect("cursor invariant");
        let lowest = |proto| {
            auto.lowest_free(&p, rule, &used, proto, &[])
                .map(|l| l.port.get())
        };
        assert_eq!(lowest(Protocol::Tcp), Some(first + 1), "TCP's own hole");
        assert_eq!(lowest(Protocol::Udp), Some(first), "UDP's own hole");
        assert_eq!(take(Protocol::Tcp, &mut used, &mut auto), tcp[1]);
        assert_eq!(take(Protocol::Udp, &mut used, &mut auto), udp[0]);
        assert_eq!(
            take(Protocol::Udp, &mut used, &mut auto).port.get(),
            first + 3
        );
        auto.check(&p, rule, &used).expect("cursor invariant");
        assert!(auto.holes.is_empty(), "holes left: {:?}", auto.holes);
        // With a UDP hole kept (the lowest UDP port freed), TCP given back from the top
        // steps its own cursor back over its own holes, to the start, and keeps none.
        used.remove(udp[0]);
        auto.give_back(&p, rule, &used, udp[0]);
        let mut tcp_held: Vec<Listener> = used
            .sorted()
            .into_iter()
            .map(|(l, _)| l)
            .filter(|l| l.protocol == Protocol::Tcp)
            .collect();
        tcp_held.reverse();
        for &l in tcp_held.iter().skip(1).chain(&tcp_held[..1]) {
            used.remove(l);
            auto.give_back(&p, rule, &used, l);
        }
        auto.check(&p, rule, &used).expect("cursor invariant");
        let tcp_space = rule.between_claims.space(Protocol::Tcp);
        assert_eq!(
            auto.next[tcp_space],
            u32::from(first),
            "TCP's cursor back at the start"
        );
        let udp_space = rule.between_claims.space(Protocol::Udp);
        assert_eq!(
            (0..3)
                .map(|s| auto.holes.iter(s).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            (0..3)
                .map(|s| if s == udp_space { vec![0] } else { vec![] })
                .collect::<Vec<_>>(),
            "only UDP's hole is kept, at the range's first port"
        );
    }

    /// A space without holes of its own steps its cursor back over nothing, even when the
    /// hole just below it belongs to another space.
    #[test]
    fn a_cursor_steps_back_over_its_own_holes_only() {
        let p = builtin_profile("aws-nlb").expect("built in");
        let rule = ClashRule::new(&p, None);
        let first = u32::from(p.auto_ports.first.get());
        let mut auto = AutoPorts::new(&p);
        let mut used = Used::default();
        let mut take = |proto, used: &mut Used| take_of(&mut auto, &p, rule, used, proto);
        let tcp: Vec<Listener> = (0..3).map(|_| take(Protocol::Tcp, &mut used)).collect();
        let udp: Vec<Listener> = (0..3).map(|_| take(Protocol::Udp, &mut used)).collect();
        // A TCP hole at first + 1, just below where UDP's cursor will stand.
        used.remove(tcp[1]);
        auto.give_back(&p, rule, &used, tcp[1]);
        used.remove(udp[2]);
        auto.give_back(&p, rule, &used, udp[2]);
        auto.check(&p, rule, &used).expect("cursor invariant");
        let udp_space = rule.between_claims.space(Protocol::Udp);
        assert_eq!(
            auto.next[udp_space],
            first + 2,
            "UDP's first + 1 is still in use"
        );
        let lowest = auto.lowest_free(&p, rule, &used, Protocol::Udp, &[]);
        assert_eq!(lowest.map(|l| u32::from(l.port.get())), Some(first + 2));
    }

    /// Ports given back in any order leave the cursor true to its invariant and the
    /// same lowest free port; given back from the top, they leave no hole behind.
    #[test]
    fn giving_back_from_the_top_steps_the_cursor_back() {
        let p = builtin_profile("aws-nlb").expect("built in");
        let rule = ClashRule::new(&p, None);
        let first = p.auto_ports.first.get();
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]] {
            let mut auto = AutoPorts::new(&p);
            let mut used = Used::default();
            let ls: Vec<Listener> = (0..3)
                .map(|_| take_one(&mut auto, &p, rule, &mut used))
                .collect();
            assert_eq!(ls[2].port.get(), first + 2);
            for i in order {
                used.remove(ls[i]);
                auto.give_back(&p, rule, &used, ls[i]);
                auto.check(&p, rule, &used).expect("cursor invariant");
            }
            let space = rule.between_claims.space(Protocol::Tcp);
            // Whatever the order, the last port given back was the cursor's top or joined
            // holes below it: all three are back in the range, none kept as a hole.
            assert!(
                auto.holes.is_empty(),
                "order {order:?}: holes {:?}",
                auto.holes
            );
            assert_eq!(auto.next[space], u32::from(first), "order {order:?}");
            assert_eq!(take_one(&mut auto, &p, rule, &mut used).port.get(), first);
        }
        // A port freed below others still in use stays a hole and is found first.
        let mut auto = AutoPorts::new(&p);
        let mut used = Used::default();
        let ls: Vec<Listener> = (0..3)
            .map(|_| take_one(&mut auto, &p, rule, &mut used))
            .collect();
        used.remove(ls[0]);
        auto.give_back(&p, rule, &used, ls[0]);
        auto.check(&p, rule, &used).expect("cursor invariant");
        assert_eq!(take_one(&mut auto, &p, rule, &mut used), ls[0]);
    }

    /// The cursor invariant's check finds each way a hole set can go wrong: a hole in use,
    /// a free port below the cursor not kept, a hole at or above the cursor, a hole in a
    /// space the LB's rule does not use; below and above offset 64.
    #[test]
    fn check_finds_broken_holes() {
        let p = builtin_profile("aws-nlb").expect("built in");
        let first = u32::from(p.auto_ports.first.get());
        for rule in [PortRule::PerListener, PortRule::PerPortNumber] {
            let rule = ClashRule {
                between_claims: rule,
                ..ClashRule::new(&p, None)
            };
            for n in [5, 80] {
                let grown = || {
                    let mut auto = AutoPorts::new(&p);
                    let mut used = Used::default();
                    for _ in 0..n {
                        take_one(&mut auto, &p, rule, &mut used);
                    }
                    (auto, used)
                };
                let (auto, used) = grown();
                assert_eq!(auto.check(&p, rule, &used), Ok(()));
                let tcp = rule.between_claims.space(Protocol::Tcp);
                let below = n - 2;
                // A hole whose port is in use.
                let (mut auto, used) = grown();
                auto.holes.insert(tcp, below);
                let err = auto.check(&p, rule, &used).expect_err("a hole in use");
                assert!(err.contains("free false, recorded as a hole true"), "{err}");
                // A free port below the cursor that is not a hole.
                let (auto, mut used) = grown();
                used.remove(Listener::new(
                    Protocol::Tcp,
                    Port::new((first + below) as u16).expect("a port"),
                ));
                let err = auto.check(&p, rule, &used).expect_err("a lost hole");
                assert!(err.contains("free true, recorded as a hole false"), "{err}");
                // A hole at the cursor.
                let (mut auto, used) = grown();
                auto.holes.insert(tcp, n);
                let err = auto
                    .check(&p, rule, &used)
                    .expect_err("a hole at the cursor");
                assert!(err.contains("lies above the cursor"), "{err}");
                // A hole in a space the rule does not use.
                if rule.between_claims == PortRule::PerPortNumber {
                    let (mut auto, used) = grown();
                    auto.holes.insert(1, 0);
                    let err = auto.check(&p, rule, &used).expect_err("a hole of no space");
                    assert!(err.contains("port space 1"), "{err}");
                }
            }
        }
    }

    /// Takes and gives back in any order on an LB that grows past 64 automatic ports per
    /// space (where the holes leave the record for bitmaps) and drains again: after every
    /// step the cursor invariant holds and the lowest free port found is the lowest free
    /// port a scan of the whole range finds.
    mod grown {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Take(Protocol),
            /// Gives back the held listener at this index (modulo the count held).
            Give(usize),
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            let proto = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)];
            // Grow first, then churn, then drain: each phase long enough to cross 64.
            (
                proptest::collection::vec(proto.clone().prop_map(Op::Take), 60..140),
                proptest::collection::vec(
                    prop_oneof![proto.prop_map(Op::Take), any::<usize>().prop_map(Op::Give),],
                    0..200,
                ),
                proptest::collection::vec(any::<usize>().prop_map(Op::Give), 0..200),
            )
                .prop_map(|(a, b, c)| a.into_iter().chain(b).chain(c).collect())
        }

        proptest! {
            #[test]
            fn lowest_free_is_the_lowest_free_port(
                ops in ops(),
                shared_numbers in any::<bool>(),
            ) {
                let mut p = builtin_profile("aws-nlb").expect("built in");
                p.max_listeners = 1_000;
                p.shared_port_numbers = shared_numbers;
                let first = p.auto_ports.first.get();
                p.reserved = vec![Port::new(first + 3).expect("a port")];
                let rule = ClashRule::new(&p, None);
                let mut auto = AutoPorts::new(&p);
                let mut used = Used::default();
                let mut held: Vec<Listener> = Vec::new();
                for op in ops {
                    match op {
                        Op::Take(proto) => {
                            held.push(take_of(&mut auto, &p, rule, &mut used, proto));
                        }
                        Op::Give(i) if !held.is_empty() => {
                            let l = held.swap_remove(i % held.len());
                            used.remove(l);
                            auto.give_back(&p, rule, &used, l);
                        }
                        Op::Give(_) => {}
                    }
                    prop_assert_eq!(auto.check(&p, rule, &used), Ok(()));
                    for proto in [Protocol::Tcp, Protocol::Udp] {
                        let scan = (first..=p.auto_ports.last.get())
                            .map(|n| Listener::new(proto, Port::new(n).expect("a port")))
                            .find(|&l| !p.is_reserved(l.port) && !rule.occupied(&used, l));
                        prop_assert_eq!(auto.lowest_free(&p, rule, &used, proto, &[]), scan);
                    }
                }
                if held.is_empty() {
                    let none = HoleSet::default();
                    prop_assert_eq!(&auto.holes, &none, "a drained LB keeps no holes");
                }
            }
        }
    }
}
