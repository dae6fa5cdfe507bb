//! Model-based property test. Random event sequences — claims coming, changing and going,
//! LBs becoming ready, failing and being deleted, time passing, restarts from a snapshot
//! (some with arrival numbers moved up so they run out and the allocator renumbers),
//! consolidation — drive the allocator through its one entry point, with a plain reference
//! model as the shell. The model is independent of the implementation: it never calls
//! `check_invariants` and has its own fit function. After every step it checks
//!
//! - safety: capacity, the port-clash rule, protocols, pools, claims per LB, fixed and
//!   automatic ports, quotas, the budget and the provisioning limit;
//! - liveness: every waiting claim's reason is true (no usable LB of its pool fits it and no
//!   new LB may open, or its quota really binds, ...), and no LB is opened while an existing
//!   one would take the claim;
//! - determinism: a twin allocator that never restarts makes identical decisions.
//!
//! A second property checks fairness: under a binding budget, the listeners each tenant is
//! admitted match its weighted max-min (water-filling) share within one claim.
//!
//! Cases: `PROPTEST_CASES` (default 256; the test command runs 2000).

#![allow(clippy::many_single_char_names, clippy::struct_excessive_bools)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sharedlb_allocator::fairness::fair_shares;
use sharedlb_allocator::{
    Allocator, Budget, Claim, ClaimId, Config, Currency, Decision, Event, GroupKey, LbId,
    LbProfile, LbState, Listener, PendingReason, PolicyKind, PoolKey, Port, PortRange, PortRequest,
    ProfileName, Protocol, Quota, Reports, Sharing, Shell, TenantConfig, TenantId, Time,
};

// ------------------------------------------------------------------ generated inputs

#[derive(Clone, Debug)]
struct ClaimSpec {
    tenant: u8,
    ports: Vec<(u8, u8, u16)>, // (protocol 0..3, kind: 0 = Any, port)
    sharing: u8,
    migrate: bool,
    pin: Option<usize>,
    profile: Option<u8>,
}

#[derive(Clone, Debug)]
enum Op {
    Add(ClaimSpec),
    /// Many one-port claims of one tenant at once: pools larger than any cut-off.
    Bulk(u8, u8),
    Remove(usize),
    Update(usize, ClaimSpec),
    Ready(usize),
    Fail(usize),
    Deleted(usize),
    Advance(u64),
    Restart(Numbers),
    Consolidate(u32),
    RemoveUnknown,
}

/// The arrival numbers a restart's snapshot carries.
#[derive(Clone, Copy, Debug)]
enum Numbers {
    /// As the allocator wrote them.
    Kept,
    /// Moved up, in the same order, so the numbers run out within a few arrivals and
    /// the allocator renumbers its claims.
    NearTheEnd,
}

#[derive(Clone, Copy, Debug)]
enum Range {
    /// Three ports, one reserved: ranges fill.
    Tiny,
    /// The top of the port space.
    HighEnd,
    /// Wide enough never to fill.
    Wide,
}

#[derive(Clone, Debug)]
struct Setup {
    capacity: u32,
    mixed: bool,
    shared_numbers: bool,
    sctp: bool,
    second_profile: bool,
    range: Range,
    policy: PolicyKind,
    max_lbs: Option<u32>,
    max_cost: Option<u32>,
    quota_listeners: Option<u32>,
    quota_claims: Option<u32>,
    quota_dedicated: Option<u32>,
    idle_timeout: u64,
    max_provisioning: Option<u32>,
    weight_b: u32,
}

fn claim_spec() -> impl Strategy<Value = ClaimSpec> {
    (
        0u8..3,
        prop::collection::vec(
            (
                0u8..3,
                0u8..3,
                prop::sample::select(vec![53u16, 80, 443, 5432, 6379, 30000, 65535]),
            ),
            1..4,
        ),
        0u8..7,
        any::<bool>(),
        prop::option::weighted(0.1, 0usize..8),
        prop::option::weighted(0.15, 0u8..3),
    )
        .prop_map(
            |(tenant, ports, sharing, migrate, pin, profile)| ClaimSpec {
                tenant,
                ports,
                sharing,
                migrate,
                pin,
                profile,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => claim_spec().prop_map(Op::Add),
        1 => (20u8..50, 0u8..3).prop_map(|(n, t)| Op::Bulk(n, t)),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => (any::<usize>(), claim_spec()).prop_map(|(i, s)| Op::Update(i, s)),
        3 => any::<usize>().prop_map(Op::Ready),
        1 => any::<usize>().prop_map(Op::Fail),
        2 => any::<usize>().prop_map(Op::Deleted),
        2 => (0u64..3_000).prop_map(Op::Advance),
        1 => prop_oneof![Just(Numbers::Kept), Just(Numbers::NearTheEnd)].prop_map(Op::Restart),
        1 => (0u32..6).prop_map(Op::Consolidate),
        1 => Just(Op::RemoveUnknown),
    ]
}

fn policy() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        Just("dedicated".to_owned()),
        (1u32..4).prop_map(|n| format!("seed:{n}")),
        Just("first-fit".to_owned()),
        Just("best-fit".to_owned()),
        Just("worst-fit".to_owned()),
        Just("conflict-aware".to_owned()),
        (0u32..8).prop_map(|n| format!("cost-aware:{n}")),
    ]
    .prop_map(|s| s.parse().unwrap())
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        (
            prop_oneof![4 => 1u32..7, 1 => 30u32..70],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(Range::Tiny), Just(Range::HighEnd), Just(Range::Wide)],
            policy(),
        ),
        (
            prop::option::of(1u32..6),
            prop::option::weighted(0.2, 1u32..8),
            prop::option::of(2u32..8),
            prop::option::of(1u32..4),
            prop::option::of(0u32..3),
            0u64..2_000,
            prop::option::of(1u32..3),
            1u32..4,
        ),
    )
        .prop_map(
            |(
                (capacity, mixed, shared_numbers, sctp, second_profile, range, policy),
                (max_lbs, max_cost, ql, qc, qd, idle, maxp, wb),
            )| Setup {
                capacity,
                mixed,
                shared_numbers,
                sctp,
                second_profile,
                range,
                policy,
                max_lbs,
                max_cost,
                quota_listeners: ql,
                quota_claims: qc,
                quota_dedicated: qd,
                idle_timeout: idle,
                max_provisioning: maxp,
                weight_b: wb,
            },
        )
}

fn tenant(i: u8) -> TenantId {
    TenantId::new(format!("t{i}")).unwrap()
}

fn port(n: u16) -> Port {
    Port::new(n).unwrap()
}

fn config(s: &Setup) -> Config {
    let (auto_ports, reserved) = match s.range {
        Range::Tiny => ((30000, 30002), vec![port(30001)]),
        Range::HighEnd => ((65533, 65535), vec![port(65534)]),
        Range::Wide => ((30000, 30099), vec![port(30050)]),
    };
    let mut protocols = vec![Protocol::Tcp, Protocol::Udp];
    if s.sctp {
        protocols.push(Protocol::Sctp);
    }
    let profile = |name: &str, cap: u32, price: f64, protocols: Vec<Protocol>| LbProfile {
        name: ProfileName::new(name).unwrap(),
        max_listeners: cap,
        protocols,
        mixed_protocols: s.mixed,
        shared_port_numbers: s.shared_numbers,
        auto_ports: PortRange {
            first: port(auto_ports.0),
            last: port(auto_ports.1),
        },
        reserved: reserved.clone(),
        hourly_price: price,
        monthly_cap: None,
        currency: Currency::Usd,
    };
    let mut profiles = vec![profile("small", s.capacity, 1.0, protocols.clone())];
    if s.second_profile {
        profiles.push(profile("big", s.capacity * 2, 1.5, vec![Protocol::Tcp]));
    }
    let mut tenants = BTreeMap::new();
    tenants.insert(
        tenant(0),
        TenantConfig {
            weight: 1,
            quota: Quota {
                max_listeners: s.quota_listeners,
                max_claims: s.quota_claims,
                max_dedicated_lbs: s.quota_dedicated,
            },
        },
    );
    tenants.insert(
        tenant(1),
        TenantConfig {
            weight: s.weight_b,
            quota: Quota::default(),
        },
    );
    Config {
        profiles,
        policy: s.policy,
        tenants,
        budget: Budget {
            max_lbs: s.max_lbs,
            max_cost_per_hour: s.max_cost.map(f64::from),
        },
        idle_timeout_ms: s.idle_timeout,
        max_provisioning: s.max_provisioning,
    }
}

fn build_claim(id: &str, spec: &ClaimSpec, lbs: &[LbId]) -> Claim {
    let mut seen = BTreeSet::new();
    let ports = spec
        .ports
        .iter()
        .map(|&(proto, kind, port)| {
            let proto = Protocol::ALL[proto as usize];
            let l = Listener::new(proto, Port::new(port).unwrap());
            // A listener asked twice is an invalid claim (tested elsewhere): ask any port.
            if kind == 0 || !seen.insert(l) {
                PortRequest::Any(proto)
            } else {
                PortRequest::Fixed(l)
            }
        })
        .collect();
    let sharing = match spec.sharing {
        0 | 1 => Sharing::Tenant,
        2 => Sharing::Anyone,
        3 => Sharing::Group(GroupKey::new("g").unwrap()),
        4 => Sharing::CrossTenantGroup(GroupKey::new("x").unwrap()),
        5 => Sharing::CrossTenantGroup(GroupKey::new("y").unwrap()),
        _ => Sharing::Dedicated,
    };
    let pin = spec.pin.map(|i| {
        if lbs.is_empty() || i >= 6 {
            LbId(1000 + i as u32)
        } else {
            lbs[i % lbs.len()]
        }
    });
    let profile = spec
        .profile
        .map(|i| ProfileName::new(["small", "big", "missing"][i as usize]).unwrap());
    Claim::new(id, ports)
        .unwrap()
        .with_tenant(tenant(spec.tenant))
        .with_sharing(sharing)
        .with_migration(spec.migrate)
        .with_pinned_lb(pin)
        .with_profile(profile)
}

// ------------------------------------------------------------------ the reference model

/// A claim as the shell sees it: the claim, its placement, its last pending reason.
#[derive(Clone, Debug)]
struct Entry {
    claim: Claim,
    place: Option<(LbId, Vec<Listener>)>,
    reason: Option<PendingReason>,
}

#[derive(Clone, Debug)]
struct ModelLb {
    profile: usize,
    state: LbState,
    /// Fixed by its first claim.
    pool: Option<PoolKey>,
}

/// The shell: built only from decisions, checking each as it is carried out.
struct Model<'s> {
    s: &'s Setup,
    cfg: Config,
    claims: BTreeMap<ClaimId, Entry>,
    lbs: BTreeMap<LbId, ModelLb>,
    /// Decisions of the current step, for the twin.
    log: Vec<Decision>,
    error: Option<String>,
    just_created: Option<LbId>,
    evacuated: BTreeSet<LbId>,
    /// Claims assigned in the current step: a waiting claim may take an LB consolidation
    /// has just emptied (a claim pinned to it must, by liveness), which leaves it no less
    /// evacuated.
    assigned: BTreeSet<ClaimId>,
}

impl Shell for Model<'_> {
    fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
        if let Err(e) = self.apply(&d)
            && self.error.is_none()
        {
            self.error = Some(format!("{e} (decision {d:?})"));
        }
        self.log.push(d);
    }
}

/// Records the twin's decisions.
#[derive(Default)]
struct Log(Vec<Decision>);

impl Shell for Log {
    fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
        self.0.push(d);
    }
}

fn expected_pool(policy: PolicyKind, c: &Claim) -> PoolKey {
    if policy.name() == "dedicated" {
        return PoolKey::Dedicated(c.tenant().clone());
    }
    match c.sharing() {
        Sharing::Tenant => PoolKey::Tenant(c.tenant().clone()),
        Sharing::Anyone => PoolKey::Open,
        Sharing::Group(g) => PoolKey::Group(c.tenant().clone(), g.clone()),
        Sharing::CrossTenantGroup(g) => PoolKey::CrossTenantGroup(g.clone()),
        Sharing::Dedicated => PoolKey::Dedicated(c.tenant().clone()),
    }
}

impl Model<'_> {
    fn seed_cap(&self) -> Option<u32> {
        (self.s.policy.name() == "seed").then(|| self.s.policy.param().unwrap())
    }

    /// Two listeners of different claims clash: the profile's rule, or any shared port
    /// number under the 2018 rule.
    fn clash_between(&self, p: &LbProfile, a: Listener, b: Listener) -> bool {
        let by_number = !p.shared_port_numbers || self.s.policy.name() == "seed";
        a == b || (by_number && a.port == b.port)
    }

    fn clash_within(p: &LbProfile, a: Listener, b: Listener) -> bool {
        a == b || (!p.shared_port_numbers && a.port == b.port)
    }

    /// Profiles (indexes) that can hold the claim at all.
    fn eligible(&self, c: &Claim) -> Vec<usize> {
        (0..self.cfg.profiles.len())
            .filter(|&i| {
                let p = &self.cfg.profiles[i];
                if c.profile().is_some_and(|n| *n != p.name) {
                    return false;
                }
                let fixed: Vec<Listener> = c.fixed_listeners().collect();
                // Automatic ports: every request gets a port of the range that is not
                // reserved and not one of the claim's own (its protocol's, or any when port
                // numbers clash across protocols).
                let room = |proto: Protocol| {
                    (p.auto_ports.first.get()..=p.auto_ports.last.get())
                        .filter(|&q| {
                            !p.reserved.contains(&port(q))
                                && !fixed.iter().any(|l| {
                                    l.port.get() == q
                                        && (l.protocol == proto || !p.shared_port_numbers)
                                })
                        })
                        .count()
                };
                let asked = |proto: Option<Protocol>| {
                    c.ports()
                        .iter()
                        .filter(|r| r.fixed().is_none() && proto.is_none_or(|x| x == r.protocol()))
                        .count()
                };
                let autos_fit = if p.shared_port_numbers {
                    Protocol::ALL.iter().all(|&x| asked(Some(x)) <= room(x))
                } else {
                    asked(None) <= room(Protocol::Tcp)
                };
                c.ports()
                    .iter()
                    .all(|r| p.protocols.contains(&r.protocol()))
                    && (p.mixed_protocols
                        || c.ports()
                            .iter()
                            .all(|r| r.protocol() == c.ports()[0].protocol()))
                    && fixed.iter().all(|l| !p.reserved.contains(&l.port))
                    && fixed.iter().enumerate().all(|(j, a)| {
                        fixed[j + 1..]
                            .iter()
                            .all(|b| !Self::clash_within(p, *a, *b))
                    })
                    && c.listener_count() <= p.max_listeners
                    && autos_fit
            })
            .collect()
    }

    fn on(&self, lb: LbId) -> Vec<&Entry> {
        self.claims
            .values()
            .filter(|e| e.place.as_ref().is_some_and(|p| p.0 == lb))
            .collect()
    }

    /// The model's own fit: whether claim `c` could go on `lb` now, with listeners picked
    /// lowest first. `ignore` is a claim whose own listeners do not count (it is moving).
    fn fits(&self, lb: LbId, c: &Claim, ready_only: bool) -> bool {
        let Some(m) = self.lbs.get(&lb) else {
            return false;
        };
        if m.state == LbState::Draining || (ready_only && m.state != LbState::Ready) {
            return false;
        }
        let pool = expected_pool(self.s.policy, c);
        if m.pool.as_ref().is_some_and(|p| *p != pool) || !self.eligible(c).contains(&m.profile) {
            return false;
        }
        let p = &self.cfg.profiles[m.profile];
        let on = self.on(lb);
        let cap = if pool.is_dedicated() {
            1
        } else {
            self.seed_cap().unwrap_or(u32::MAX)
        };
        let used: Vec<Listener> = on
            .iter()
            .flat_map(|e| e.place.as_ref().unwrap().1.iter().copied())
            .collect();
        if on.len() as u32 >= cap || used.len() as u32 + c.listener_count() > p.max_listeners {
            return false;
        }
        if !p.mixed_protocols
            && let Some(u) = used.first()
            && c.ports().iter().any(|r| r.protocol() != u.protocol)
        {
            return false;
        }
        let mut mine: Vec<Listener> = c.fixed_listeners().collect();
        if mine
            .iter()
            .any(|&l| used.iter().any(|&u| self.clash_between(p, u, l)))
        {
            return false;
        }
        for r in c.ports() {
            let PortRequest::Any(proto) = *r else {
                continue;
            };
            let free = (p.auto_ports.first.get()..=p.auto_ports.last.get())
                .map(|q| Listener::new(proto, port(q)))
                .find(|&l| {
                    !p.reserved.contains(&l.port)
                        && !used.iter().any(|&u| self.clash_between(p, u, l))
                        && !mine.iter().any(|&o| Self::clash_within(p, o, l))
                });
            match free {
                Some(l) => mine.push(l),
                None => return false,
            }
        }
        true
    }

    fn billed_cost(&self) -> f64 {
        self.lbs
            .values()
            .filter(|m| m.state != LbState::Draining)
            .map(|m| self.cfg.profiles[m.profile].hourly_price)
            .sum()
    }

    /// Whether the budget forbids a new LB of profile `i`.
    fn budget_blocks(&self, i: usize) -> bool {
        self.s.max_lbs.is_some_and(|m| self.lbs.len() as u32 >= m)
            || self.s.max_cost.is_some_and(|m| {
                self.billed_cost() + self.cfg.profiles[i].hourly_price > f64::from(m) + 1e-9
            })
    }

    fn dedicated_lbs(&self, t: &TenantId) -> u32 {
        self.lbs
            .values()
            .filter(|m| m.pool == Some(PoolKey::Dedicated(t.clone())))
            .count() as u32
    }

    /// (listeners, claims) placed for a tenant.
    fn held(&self, t: &TenantId) -> (u32, u32) {
        self.claims
            .values()
            .filter(|e| e.place.is_some() && e.claim.tenant() == t)
            .fold((0, 0), |(l, c), e| (l + e.claim.listener_count(), c + 1))
    }

    fn quota_binds(&self, c: &Claim) -> bool {
        if *c.tenant() != tenant(0) {
            return false;
        }
        let (l, n) = self.held(c.tenant());
        self.s
            .quota_listeners
            .is_some_and(|q| l + c.listener_count() > q)
            || self.s.quota_claims.is_some_and(|q| n >= q)
    }

    /// Whether no new LB may open for `c` (the allocator would have to wait).
    fn opening_blocked(&self, c: &Claim) -> bool {
        let provisioning = self
            .lbs
            .values()
            .filter(|m| m.state == LbState::Provisioning)
            .count() as u32;
        let dedicated_quota = expected_pool(self.s.policy, c).is_dedicated()
            && *c.tenant() == tenant(0)
            && self
                .s
                .quota_dedicated
                .is_some_and(|q| self.dedicated_lbs(c.tenant()) >= q);
        self.s.max_provisioning.is_some_and(|m| provisioning >= m)
            || dedicated_quota
            || self.eligible(c).iter().all(|&i| self.budget_blocks(i))
    }

    fn usable_fit(&self, c: &Claim) -> Option<LbId> {
        self.lbs.keys().copied().find(|&lb| self.fits(lb, c, false))
    }

    fn apply(&mut self, d: &Decision) -> Result<(), String> {
        match d {
            Decision::CreateLb { lb, profile } => {
                let i = self
                    .cfg
                    .profile_index(profile)
                    .ok_or(format!("unknown profile {profile}"))?;
                let m = ModelLb {
                    profile: i,
                    state: LbState::Provisioning,
                    pool: None,
                };
                if self.lbs.insert(*lb, m).is_some() {
                    return Err(format!("{lb} created twice"));
                }
                self.just_created = Some(*lb);
            }
            Decision::Assign {
                claim,
                lb,
                listeners,
            } => {
                let c = self
                    .claims
                    .get(claim)
                    .ok_or(format!("assign unknown {claim}"))?
                    .claim
                    .clone();
                if self.just_created.take() == Some(*lb) {
                    // Packing liveness: a new LB only when no existing one would do.
                    let others: Vec<LbId> = self.lbs.keys().copied().filter(|x| x != lb).collect();
                    if let Some(x) = others.into_iter().find(|&x| self.fits(x, &c, false)) {
                        return Err(format!("opened {lb} for {claim} although {x} fits it"));
                    }
                    if self.s.max_lbs.is_some_and(|m| self.lbs.len() as u32 > m) {
                        return Err(format!("{lb} opened over the LB budget"));
                    }
                    if self
                        .s
                        .max_cost
                        .is_some_and(|m| self.billed_cost() > f64::from(m) + 1e-9)
                    {
                        return Err(format!("{lb} opened over the cost budget"));
                    }
                } else if !self.fits(*lb, &c, false) {
                    // Existing LB (or the claim stays where it is: it was released first).
                    let staying = self.claims[claim]
                        .place
                        .as_ref()
                        .is_some_and(|p| p.0 == *lb);
                    if !staying {
                        return Err(format!("{claim} assigned to {lb}, where it does not fit"));
                    }
                }
                let pool = expected_pool(self.s.policy, &c);
                let m = self
                    .lbs
                    .get_mut(lb)
                    .ok_or(format!("assign to unknown {lb}"))?;
                if m.state == LbState::Draining {
                    return Err(format!("assign to draining {lb}"));
                }
                if m.pool.get_or_insert_with(|| pool.clone()) != &pool {
                    return Err(format!("{claim} assigned to {lb} of another pool"));
                }
                let e = self.claims.get_mut(claim).unwrap();
                if let Some((old, _)) = &e.place
                    && old != lb
                {
                    return Err(format!("{claim} assigned to {lb} while on {old}"));
                }
                e.place = Some((*lb, listeners.to_vec()));
                e.reason = None;
                self.assigned.insert(claim.clone());
            }
            Decision::Migrate {
                claim,
                from,
                to,
                listeners,
            } => {
                let c = self
                    .claims
                    .get(claim)
                    .ok_or(format!("migrate unknown {claim}"))?
                    .clone();
                if c.place.as_ref().map(|p| p.0) != Some(*from) {
                    return Err(format!("{claim} migrated from {from} but is elsewhere"));
                }
                if !c.claim.allow_migration() || c.claim.pinned_lb().is_some() {
                    return Err(format!("{claim} migrated without allowing it"));
                }
                if !self.fits(*to, &c.claim, true) {
                    return Err(format!("{claim} migrated to {to}, which cannot take it"));
                }
                self.claims.get_mut(claim).unwrap().place = Some((*to, listeners.to_vec()));
                self.evacuated.insert(*from);
            }
            Decision::Release { claim, lb } => {
                if let Some(e) = self.claims.get_mut(claim) {
                    if e.place.as_ref().map(|p| p.0) != Some(*lb) {
                        return Err(format!("{claim} released from {lb} but is elsewhere"));
                    }
                    e.place = None;
                }
            }
            Decision::Pending {
                claim,
                reason,
                message,
            } => {
                let e = self
                    .claims
                    .get_mut(claim)
                    .ok_or(format!("pending unknown {claim}"))?;
                if e.place.is_some() {
                    return Err(format!("{claim} pending while placed"));
                }
                if message.is_empty() {
                    return Err("pending without message".into());
                }
                e.reason = Some(*reason);
            }
            Decision::DeleteLb { lb } => {
                if !self.on(*lb).is_empty() {
                    return Err(format!("{lb} deleted with claims on it"));
                }
                let m = self.lbs.get_mut(lb).ok_or(format!("delete unknown {lb}"))?;
                m.state = LbState::Draining;
            }
        }
        Ok(())
    }

    /// Every check of one step, against the allocator's public answers.
    fn check(&self, a: &Allocator) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if a.claim_count() != self.claims.len() {
            return Err(format!(
                "allocator has {} claims, model {}",
                a.claim_count(),
                self.claims.len()
            ));
        }
        let lbs: BTreeSet<LbId> = a.lbs().iter().map(|l| l.id).collect();
        if lbs != self.lbs.keys().copied().collect() {
            return Err(format!("LB sets differ: {lbs:?} vs {:?}", self.lbs.keys()));
        }
        for info in a.lbs() {
            if self.lbs[&info.id].state != info.state {
                return Err(format!("{}: state differs", info.id));
            }
        }
        for (id, e) in &self.claims {
            let got = a.placement(id).map(|(lb, ls)| (lb, ls.to_vec()));
            if got != e.place {
                return Err(format!("{id}: allocator says {got:?}, model {:?}", e.place));
            }
            if e.place.is_none() {
                if e.reason.is_none() {
                    return Err(format!("{id}: neither placed nor reported waiting"));
                }
                if a.pending_reason(id) != e.reason {
                    return Err(format!("{id}: reason differs from the model's"));
                }
            }
        }
        self.check_safety()?;
        self.check_liveness()
    }

    fn check_safety(&self) -> Result<(), String> {
        let mut provisioning = 0;
        for (&lb, m) in &self.lbs {
            let p = &self.cfg.profiles[m.profile];
            let on = self.on(lb);
            if m.state == LbState::Provisioning {
                provisioning += 1;
            }
            if m.state == LbState::Draining && !on.is_empty() {
                return Err(format!("draining {lb} holds claims"));
            }
            if self.evacuated.contains(&lb)
                && on.iter().any(|e| !self.assigned.contains(e.claim.id()))
            {
                return Err(format!("consolidation left {lb} half evacuated"));
            }
            let owned: Vec<(usize, Listener)> = on
                .iter()
                .enumerate()
                .flat_map(|(i, e)| e.place.as_ref().unwrap().1.iter().map(move |&l| (i, l)))
                .collect();
            if owned.len() as u32 > p.max_listeners {
                return Err(format!("{lb} over capacity"));
            }
            for (i, &(cx, x)) in owned.iter().enumerate() {
                for &(cy, y) in &owned[i + 1..] {
                    let clash = if cx == cy {
                        Self::clash_within(p, x, y)
                    } else {
                        self.clash_between(p, x, y)
                    };
                    if clash {
                        return Err(format!("{lb} uses {x} and {y}"));
                    }
                }
            }
            if !p.mixed_protocols && owned.iter().any(|(_, l)| l.protocol != owned[0].1.protocol) {
                return Err(format!("{lb} mixes protocols"));
            }
            for e in &on {
                if m.pool.as_ref() != Some(&expected_pool(self.s.policy, &e.claim)) {
                    return Err(format!("{} on {lb} of another pool", e.claim.id()));
                }
                if !self.eligible(&e.claim).contains(&m.profile) {
                    return Err(format!(
                        "{} on {lb} whose profile cannot hold it",
                        e.claim.id()
                    ));
                }
                if e.claim.pinned_lb().is_some_and(|x| x != lb) {
                    return Err(format!("{} is pinned elsewhere", e.claim.id()));
                }
                let ls = &e.place.as_ref().unwrap().1;
                for (req, got) in e.claim.ports().iter().zip(ls) {
                    let ok = match *req {
                        PortRequest::Fixed(f) => f == *got,
                        PortRequest::Any(proto) => {
                            proto == got.protocol
                                && p.auto_ports.contains(got.port)
                                && !p.reserved.contains(&got.port)
                        }
                    };
                    if !ok || ls.len() != e.claim.ports().len() {
                        return Err(format!("{}: {got} does not answer {req}", e.claim.id()));
                    }
                }
            }
            let pool_dedicated = m.pool.as_ref().is_some_and(PoolKey::is_dedicated);
            if pool_dedicated && on.len() > 1 {
                return Err(format!("dedicated {lb} holds {} claims", on.len()));
            }
            if let Some(cap) = self.seed_cap()
                && on.len() as u32 > cap
            {
                return Err(format!("seed {lb} holds {} > {cap} claims", on.len()));
            }
        }
        let (l0, c0) = self.held(&tenant(0));
        if self.s.quota_listeners.is_some_and(|q| l0 > q)
            || self.s.quota_claims.is_some_and(|q| c0 > q)
            || self
                .s
                .quota_dedicated
                .is_some_and(|q| self.dedicated_lbs(&tenant(0)) > q)
        {
            return Err("t0 is over its quota".into());
        }
        if self.s.max_lbs.is_some_and(|b| self.lbs.len() as u32 > b) {
            return Err(format!("{} LBs over the budget", self.lbs.len()));
        }
        if self
            .s
            .max_cost
            .is_some_and(|b| self.billed_cost() > f64::from(b) + 1e-9)
        {
            return Err("cost over the budget".into());
        }
        if self.s.max_provisioning.is_some_and(|p| provisioning > p) {
            return Err(format!("{provisioning} LBs provisioning over the limit"));
        }
        Ok(())
    }

    /// Every waiting claim's reason is true, by the model's own fit function.
    fn check_liveness(&self) -> Result<(), String> {
        for (id, e) in &self.claims {
            if e.place.is_some() {
                continue;
            }
            let c = &e.claim;
            let reason = e.reason.unwrap_or(PendingReason::WaitingForCapacity);
            let eligible = self.eligible(c);
            let truth = match reason {
                PendingReason::TooLarge | PendingReason::Unsupported => eligible.is_empty(),
                _ if eligible.is_empty() => false,
                PendingReason::QuotaExceeded => {
                    self.quota_binds(c) || (self.opening_blocked(c) && self.usable_fit(c).is_none())
                }
                PendingReason::PinnedUnavailable => {
                    c.pinned_lb().is_some_and(|lb| !self.fits(lb, c, false))
                }
                PendingReason::WaitingForCapacity => {
                    c.pinned_lb().is_none()
                        && self.usable_fit(c).is_none()
                        && self.opening_blocked(c)
                }
                // Nothing is on its way: no idle LB that could be deleted to make room.
                PendingReason::PortConflict
                | PendingReason::PortRangeFull
                | PendingReason::BudgetExhausted => {
                    c.pinned_lb().is_none()
                        && self.usable_fit(c).is_none()
                        && self.opening_blocked(c)
                        && !self
                            .lbs
                            .iter()
                            .any(|(&lb, m)| m.state != LbState::Draining && self.on(lb).is_empty())
                }
            };
            if !truth {
                return Err(format!(
                    "{id} waits with {reason} but that is not true: {c:?}, usable fit {:?}",
                    self.usable_fit(c)
                ));
            }
        }
        Ok(())
    }
}

fn run(s: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = config(s);
    let mut a = Allocator::new(cfg.clone()).unwrap();
    let mut twin = Allocator::new(cfg.clone()).unwrap();
    // Twins that track fixed listeners as hot from 4 claims (a walk then steps only over
    // the LBs a hot listener does not clash on, and its slots fill and free) and never:
    // they must decide alike, and as the never-restarted twin does.
    let mut hot = Allocator::new(cfg.clone()).unwrap();
    hot.track_hot_from(4);
    let mut cold = Allocator::new(cfg.clone()).unwrap();
    cold.track_hot_from(u32::MAX);
    let mut m = Model {
        s,
        cfg: cfg.clone(),
        claims: BTreeMap::new(),
        lbs: BTreeMap::new(),
        log: Vec::new(),
        error: None,
        just_created: None,
        evacuated: BTreeSet::new(),
        assigned: BTreeSet::new(),
    };
    let mut now = Time(0);
    let mut next_id = 0;
    for (step, op) in ops.iter().enumerate() {
        let ids: Vec<ClaimId> = m.claims.keys().cloned().collect();
        let lb_ids: Vec<LbId> = m.lbs.keys().copied().collect();
        let lbs_in = |st: Option<LbState>| -> Vec<LbId> {
            m.lbs
                .iter()
                .filter(|(_, x)| st.is_none_or(|s| x.state == s))
                .map(|(id, _)| *id)
                .collect()
        };
        let pick = |v: &[LbId], i: usize| (!v.is_empty()).then(|| v[i % v.len()]);
        let mut events: Vec<Event> = Vec::new();
        match op {
            Op::Add(spec) => {
                next_id += 1;
                let c = build_claim(&format!("ns/c{next_id}"), spec, &lb_ids);
                events.push(Event::ClaimAdded(c));
            }
            Op::Bulk(n, t) => {
                for _ in 0..*n {
                    next_id += 1;
                    let spec = ClaimSpec {
                        tenant: *t,
                        ports: vec![(0, 0, 80)],
                        sharing: 0,
                        migrate: true,
                        pin: None,
                        profile: None,
                    };
                    events.push(Event::ClaimAdded(build_claim(
                        &format!("ns/c{next_id}"),
                        &spec,
                        &lb_ids,
                    )));
                }
            }
            Op::Remove(i) if !ids.is_empty() => {
                events.push(Event::ClaimRemoved(ids[i % ids.len()].clone()));
            }
            Op::Update(i, spec) if !ids.is_empty() => {
                let id = &ids[i % ids.len()];
                events.push(Event::ClaimUpdated(build_claim(id.as_str(), spec, &lb_ids)));
            }
            Op::Ready(i) => {
                events.extend(pick(&lbs_in(Some(LbState::Provisioning)), *i).map(Event::LbReady));
            }
            Op::Fail(i) => events.extend(pick(&lbs_in(None), *i).map(Event::LbFailed)),
            Op::Deleted(i) => {
                events.extend(pick(&lbs_in(Some(LbState::Draining)), *i).map(Event::LbDeleted));
            }
            Op::Advance(dt) => {
                now = now.plus_ms(*dt);
                events.push(Event::Tick);
            }
            Op::Restart(numbers) => {
                let mut snap = a.snapshot();
                if let Numbers::NearTheEnd = numbers {
                    // Three more arrivals take the last numbers; the fourth renumbers.
                    let up = (u64::from(u32::MAX) - 3).saturating_sub(snap.next_seq);
                    for r in &mut snap.claims {
                        r.seq += up;
                    }
                    snap.next_seq += up;
                }
                let json = serde_json::to_string(&snap).unwrap();
                let back = serde_json::from_str(&json).unwrap();
                let r = Allocator::restore(back)
                    .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
                prop_assert!(r.dropped.is_empty(), "own snapshot dropped {:?}", r.dropped);
                a = r.allocator;
                prop_assert_eq!(a.snapshot(), snap, "snapshot round trip");
                // The contract: tick at the wake-up, which is now when claims wait.
                if a.next_wakeup().is_some_and(|w| w <= now) {
                    events.push(Event::Tick);
                }
            }
            Op::Consolidate(n) => {
                let planned = a.plan_consolidation(*n as usize);
                let moves = planned.len();
                prop_assert!(moves <= *n as usize, "{} moves over budget {}", moves, n);
                events.push(Event::Consolidate { max_moves: *n });
            }
            Op::RemoveUnknown => {
                let before = a.snapshot();
                m.log.clear();
                let err = a.drive(
                    now,
                    Event::ClaimRemoved(ClaimId::new("nope/none").unwrap()),
                    &mut m,
                );
                prop_assert!(err.is_err());
                prop_assert_eq!(a.snapshot(), before, "a refused event changed state");
                prop_assert!(m.log.is_empty());
            }
            _ => {}
        }
        for event in events {
            // The model learns of claims from the events it sends.
            match &event {
                Event::ClaimAdded(c) => {
                    m.claims.insert(
                        c.id().clone(),
                        Entry {
                            claim: c.clone(),
                            place: None,
                            reason: None,
                        },
                    );
                }
                Event::ClaimUpdated(c) => m.claims.get_mut(c.id()).unwrap().claim = c.clone(),
                Event::LbReady(lb) => m.lbs.get_mut(lb).unwrap().state = LbState::Ready,
                _ => {}
            }
            let removed = match &event {
                Event::ClaimRemoved(id) => Some(id.clone()),
                _ => None,
            };
            let gone = match &event {
                Event::LbFailed(lb) | Event::LbDeleted(lb) => Some(*lb),
                _ => None,
            };
            if let Some(lb) = gone {
                // Gone for the shell at once; its claims' Release decisions follow.
                m.lbs.remove(&lb);
            }
            m.log.clear();
            m.evacuated.clear();
            m.assigned.clear();
            a.drive(now, event.clone(), &mut m)
                .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
            if let Some(id) = removed {
                m.claims.remove(&id);
            }
            let mut log = Log::default();
            twin.drive(now, event.clone(), &mut log).unwrap();
            prop_assert_eq!(
                &m.log,
                &log.0,
                "step {}: decisions differ from the never-restarted twin",
                step
            );
            for (x, name) in [(&mut hot, "hot"), (&mut cold, "cold")] {
                let mut log = Log::default();
                x.drive(now, event.clone(), &mut log).unwrap();
                prop_assert_eq!(
                    &m.log,
                    &log.0,
                    "step {}: decisions differ from the twin tracking {} listeners",
                    step,
                    name
                );
                x.check_invariants()
                    .map_err(|e| TestCaseError::fail(format!("step {step}: {name} twin: {e}")))?;
            }
            prop_assert_eq!(
                hot.state_view(|_| None).pending,
                cold.state_view(|_| None).pending,
                "step {}: waiting claims or their reasons differ",
                step
            );
            m.check(&a).map_err(|e| {
                TestCaseError::fail(format!("step {step} {op:?}: {e}\n{:?}", m.log))
            })?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ fairness

#[derive(Clone, Debug)]
struct FairCase {
    /// Claims of one listener each (no fragmentation): the strict bound applies.
    unit: bool,
    capacity: u32,
    lbs: u32,
    weights: Vec<u32>,
    /// Claims per tenant, each a number of listeners.
    demands: Vec<Vec<u32>>,
}

fn fair_case() -> impl Strategy<Value = FairCase> {
    (any::<bool>(), 2u32..8, 1u32..4, 2usize..5).prop_flat_map(|(unit, capacity, lbs, tenants)| {
        let size = if unit { 1 } else { capacity.min(3) };
        (
            Just(unit),
            Just(capacity),
            Just(lbs),
            prop::collection::vec(1u32..5, tenants),
            prop::collection::vec(prop::collection::vec(1u32..=size, 0..12), tenants),
        )
            .prop_map(|(unit, capacity, lbs, weights, demands)| FairCase {
                unit,
                capacity,
                lbs,
                weights,
                demands,
            })
    })
}

/// Under a budget that binds, each tenant's admitted listeners are within one claim of its
/// weighted max-min fair (water-filling) share of what was admitted. With claims of one
/// listener that is exact; with larger claims a tenant may fall further behind only while
/// none of its waiting claims fits in the room left (indivisible claims on full LBs), and
/// then others may run ahead by what it could not use.
fn fairness(f: &FairCase) -> Result<(), TestCaseError> {
    let p = LbProfile {
        name: ProfileName::new("p").unwrap(),
        max_listeners: f.capacity,
        protocols: vec![Protocol::Tcp],
        mixed_protocols: true,
        shared_port_numbers: true,
        auto_ports: PortRange {
            first: port(20000),
            last: port(29999),
        },
        reserved: vec![],
        hourly_price: 1.0,
        monthly_cap: None,
        currency: Currency::Usd,
    };
    let tenants: BTreeMap<TenantId, TenantConfig> = f
        .weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            (
                tenant(i as u8),
                TenantConfig {
                    weight: w,
                    quota: Quota::default(),
                },
            )
        })
        .collect();
    let cfg = Config {
        profiles: vec![p],
        policy: "best-fit".parse().unwrap(),
        tenants,
        budget: Budget {
            max_lbs: Some(f.lbs),
            max_cost_per_hour: None,
        },
        idle_timeout_ms: 1_000_000,
        max_provisioning: None,
    };
    let mut a = Allocator::new(cfg).unwrap();
    let mut log = Log::default();
    let any = |n: u32| vec![PortRequest::Any(Protocol::Tcp); n as usize];
    let open = |c: Claim| c.with_sharing(Sharing::Anyone);
    // Blockers fill the budget, then every tenant's claims arrive and wait.
    for b in 0..f.lbs {
        let c = open(Claim::new(&format!("z/block{b}"), any(f.capacity)).unwrap());
        a.drive(Time(0), Event::ClaimAdded(c), &mut log).unwrap();
    }
    let mut max_claim = 1;
    for (t, claims) in f.demands.iter().enumerate() {
        for (i, &n) in claims.iter().enumerate() {
            max_claim = max_claim.max(n);
            let c = open(Claim::new(&format!("t{t}/c{i}"), any(n)).unwrap());
            a.drive(Time(1), Event::ClaimAdded(c), &mut log).unwrap();
        }
    }
    prop_assert_eq!(
        a.placed_count() as u32,
        f.lbs,
        "only the blockers are placed"
    );
    // The blockers leave one by one; each departure admits waiting claims fairly.
    for b in 0..f.lbs {
        let id = ClaimId::new(format!("z/block{b}")).unwrap();
        a.drive(Time(2 + u64::from(b)), Event::ClaimRemoved(id), &mut log)
            .unwrap();
    }
    let held: Vec<f64> = (0..f.weights.len())
        .map(|t| f64::from(a.usage(&tenant(t as u8)).listeners))
        .collect();
    let total: f64 = held.iter().sum();
    let demands: BTreeMap<TenantId, (u32, f64)> = f
        .weights
        .iter()
        .zip(&f.demands)
        .enumerate()
        .map(|(t, (&w, d))| (tenant(t as u8), (w, f64::from(d.iter().sum::<u32>()))))
        .collect();
    let fair = fair_shares(total, &demands);
    let room = a
        .lbs()
        .iter()
        .map(|l| l.capacity - l.listeners.len() as u32)
        .max()
        .unwrap_or(0);
    for (t, &h) in held.iter().enumerate() {
        let t_id = tenant(t as u8);
        let share = fair[&t_id];
        let own_max = f.demands[t].iter().copied().max().unwrap_or(0);
        let waiting_min = a
            .claims()
            .iter()
            .filter(|(c, p)| *c.tenant() == t_id && p.is_err())
            .map(|(c, _)| c.listener_count())
            .min();
        let blocked = waiting_min.is_some_and(|n| n > room);
        let why = format!(
            "tenant t{t} holds {h} listeners, fair share {share:.2} (weights {:?}, demands {:?}, held {held:?}, free room {room})",
            f.weights, f.demands
        );
        if f.unit {
            prop_assert!((h - share).abs() <= 1.0 + 1e-9, "{}", why);
        } else {
            prop_assert!(h >= share - f64::from(own_max) - 1e-9 || blocked, "{}", why);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn allocator_matches_model(s in setup(), ops in prop::collection::vec(op(), 1..60)) {
        run(&s, &ops)?;
    }

    #[test]
    fn admission_is_weighted_max_min_fair(f in fair_case()) {
        fairness(&f)?;
    }
}
