//! Model-based property test: random event sequences (claims coming, changing and going,
//! LBs becoming ready, failing and being deleted, time passing, restarts from a snapshot,
//! consolidation) run against the allocator while a plain reference model — the shell —
//! carries out its decisions. After every step the invariants are checked, and a twin
//! allocator that never restarts must have made byte-identical decisions.
//!
//! Cases: `PROPTEST_CASES` (default 256; CI runs 2000).

#![allow(clippy::many_single_char_names)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sharedlb_allocator::{
    Allocator, Budget, Claim, ClaimId, Config, Decision, Event, LbId, LbProfile, LbState, Listener,
    PendingReason, PolicyKind, PoolKey, Port, PortRange, PortRequest, ProfileName, Protocol, Quota,
    Sharing, TenantConfig, TenantId, Time,
};

#[derive(Clone, Debug)]
struct ClaimSpec {
    tenant: u8,
    ports: Vec<(bool, u8, u16)>, // (udp, kind, port): kind 0 = Any
    sharing: u8,
    migrate: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Add(ClaimSpec),
    Remove(usize),
    Update(usize, ClaimSpec),
    Ready(usize),
    Fail(usize),
    Deleted(usize),
    Advance(u64),
    Restart,
    Consolidate(usize),
    RemoveUnknown,
}

#[derive(Clone, Debug)]
struct Setup {
    capacity: u32,
    mixed: bool,
    shared_numbers: bool,
    second_profile: bool,
    policy: PolicyKind,
    max_lbs: Option<u32>,
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
                any::<bool>(),
                0u8..3,
                prop::sample::select(vec![53u16, 80, 443, 5432, 6379]),
            ),
            1..4,
        ),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(|(tenant, ports, sharing, migrate)| ClaimSpec {
            tenant,
            ports,
            sharing,
            migrate,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => claim_spec().prop_map(Op::Add),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => (any::<usize>(), claim_spec()).prop_map(|(i, s)| Op::Update(i, s)),
        3 => any::<usize>().prop_map(Op::Ready),
        1 => any::<usize>().prop_map(Op::Fail),
        2 => any::<usize>().prop_map(Op::Deleted),
        2 => (0u64..3_000).prop_map(Op::Advance),
        1 => Just(Op::Restart),
        1 => (0usize..6).prop_map(Op::Consolidate),
        1 => Just(Op::RemoveUnknown),
    ]
}

fn policy() -> impl Strategy<Value = PolicyKind> {
    prop_oneof![
        Just(PolicyKind::Dedicated),
        (1u32..4).prop_map(|n| PolicyKind::Seed { max_claims: n }),
        Just(PolicyKind::FirstFit),
        Just(PolicyKind::BestFit),
        Just(PolicyKind::WorstFit),
        Just(PolicyKind::ConflictAware),
        (0u32..8).prop_map(|n| PolicyKind::CostAware {
            expected_listeners: n
        }),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        (
            2u32..7,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            policy(),
        ),
        (
            prop::option::of(1u32..6),
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
                (capacity, mixed, shared_numbers, second_profile, policy),
                (max_lbs, ql, qc, qd, idle, maxp, wb),
            )| Setup {
                capacity,
                mixed,
                shared_numbers,
                second_profile,
                policy,
                max_lbs,
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

fn config(s: &Setup) -> Config {
    let profile = |name: &str, cap: u32, price: f64| LbProfile {
        name: ProfileName::new(name).unwrap(),
        max_listeners: cap,
        protocols: vec![Protocol::Tcp, Protocol::Udp],
        mixed_protocols: s.mixed,
        shared_port_numbers: s.shared_numbers,
        // A tiny automatic range so that "range full" happens.
        auto_ports: PortRange {
            first: Port::new(30000).unwrap(),
            last: Port::new(30002).unwrap(),
        },
        reserved: vec![Port::new(30001).unwrap()],
        hourly_price: price,
    };
    let mut profiles = vec![profile("small", s.capacity, 1.0)];
    if s.second_profile {
        profiles.push(profile("big", s.capacity * 2, 1.5));
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
            max_cost_per_hour: None,
        },
        idle_timeout_ms: s.idle_timeout,
        max_provisioning: s.max_provisioning,
    }
}

fn build_claim(id: &str, spec: &ClaimSpec) -> Claim {
    let mut seen = BTreeSet::new();
    let ports = spec
        .ports
        .iter()
        .map(|&(udp, kind, port)| {
            let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
            let l = Listener::new(proto, Port::new(port).unwrap());
            // A listener asked twice is an invalid claim (tested elsewhere): ask any port instead.
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
        3 => Sharing::Group("g".into()),
        _ => Sharing::Dedicated,
    };
    Claim {
        id: ClaimId::new(id).unwrap(),
        tenant: tenant(spec.tenant),
        ports,
        sharing,
        allow_migration: spec.migrate,
        pinned_lb: None,
        profile: None,
    }
}

/// A claim as the shell sees it: the claim, its placement, its last pending reason.
type Entry = (Claim, Option<(LbId, Vec<Listener>)>, Option<PendingReason>);

/// The shell's view, built only from decisions.
#[derive(Default, Debug)]
struct Model {
    claims: BTreeMap<ClaimId, Entry>,
    lbs: BTreeMap<LbId, (ProfileName, LbState)>,
}

impl Model {
    fn apply(&mut self, d: &Decision) -> Result<(), String> {
        match d {
            Decision::CreateLb { lb, profile } => {
                if self
                    .lbs
                    .insert(*lb, (profile.clone(), LbState::Provisioning))
                    .is_some()
                {
                    return Err(format!("{lb} created twice"));
                }
            }
            Decision::Assign {
                claim,
                lb,
                listeners,
            } => {
                let st = self.lbs.get(lb).ok_or(format!("assign to unknown {lb}"))?.1;
                if st == LbState::Draining {
                    return Err(format!("assign to draining {lb}"));
                }
                let c = self
                    .claims
                    .get_mut(claim)
                    .ok_or(format!("assign unknown {claim}"))?;
                if let Some((old, _)) = &c.1
                    && old != lb
                {
                    return Err(format!("{claim} assigned to {lb} while on {old}"));
                }
                c.1 = Some((*lb, listeners.clone()));
                c.2 = None;
            }
            Decision::Migrate {
                claim,
                from,
                to,
                listeners,
            } => {
                let c = self
                    .claims
                    .get_mut(claim)
                    .ok_or(format!("migrate unknown {claim}"))?;
                if c.1.as_ref().map(|p| p.0) != Some(*from) {
                    return Err(format!("{claim} migrated from {from} but is elsewhere"));
                }
                if !c.0.allow_migration {
                    return Err(format!("{claim} migrated without allowing it"));
                }
                if self.lbs.get(to).map(|x| x.1) != Some(LbState::Ready) {
                    return Err(format!("{claim} migrated to {to}, which is not ready"));
                }
                c.1 = Some((*to, listeners.clone()));
            }
            Decision::Release { claim, lb } => {
                if let Some(c) = self.claims.get_mut(claim) {
                    if c.1.as_ref().map(|p| p.0) != Some(*lb) {
                        return Err(format!("{claim} released from {lb} but is elsewhere"));
                    }
                    c.1 = None;
                }
            }
            Decision::Pending {
                claim,
                reason,
                message,
            } => {
                let c = self
                    .claims
                    .get_mut(claim)
                    .ok_or(format!("pending unknown {claim}"))?;
                if c.1.is_some() {
                    return Err(format!("{claim} pending while placed"));
                }
                if message.is_empty() {
                    return Err("pending without message".into());
                }
                c.2 = Some(*reason);
            }
            Decision::DeleteLb { lb } => {
                let x = self.lbs.get_mut(lb).ok_or(format!("delete unknown {lb}"))?;
                x.1 = LbState::Draining;
                if self
                    .claims
                    .values()
                    .any(|c| c.1.as_ref().is_some_and(|p| p.0 == *lb))
                {
                    return Err(format!("{lb} deleted with claims on it"));
                }
            }
        }
        Ok(())
    }
}

fn expected_pool(policy: PolicyKind, c: &Claim) -> PoolKey {
    if policy == PolicyKind::Dedicated {
        return PoolKey::Dedicated(c.tenant.clone());
    }
    match &c.sharing {
        Sharing::Tenant => PoolKey::Tenant(c.tenant.clone()),
        Sharing::Anyone => PoolKey::Open,
        Sharing::Group(g) => PoolKey::Group(c.tenant.clone(), g.clone()),
        Sharing::CrossTenantGroup(g) => PoolKey::CrossTenantGroup(g.clone()),
        Sharing::Dedicated => PoolKey::Dedicated(c.tenant.clone()),
    }
}

fn check(s: &Setup, cfg: &Config, a: &Allocator, m: &Model) -> Result<(), String> {
    a.check_invariants()?;
    // The model and the allocator agree on every claim.
    if a.claim_count() != m.claims.len() {
        return Err(format!(
            "allocator has {} claims, model {}",
            a.claim_count(),
            m.claims.len()
        ));
    }
    for (id, (_, place, reason)) in &m.claims {
        let got = a.placement(id).map(|(lb, ls)| (lb, ls.to_vec()));
        if &got != place {
            return Err(format!("{id}: allocator says {got:?}, model {place:?}"));
        }
        if place.is_none() && a.pending_reason(id) != *reason {
            return Err(format!(
                "{id}: reason {:?} vs model {reason:?}",
                a.pending_reason(id)
            ));
        }
        if place.is_none() && reason.is_none() {
            return Err(format!("{id}: neither placed nor reported pending"));
        }
    }
    let lbs: BTreeSet<LbId> = a.lbs().iter().map(|l| l.id).collect();
    if lbs != m.lbs.keys().copied().collect() {
        return Err(format!("LB sets differ: {lbs:?} vs {:?}", m.lbs.keys()));
    }
    // Per LB: capacity, clashes, protocols, pools, states.
    let mut used_total = 0u64;
    for info in a.lbs() {
        let profile = cfg
            .profiles
            .iter()
            .find(|p| p.name == info.profile)
            .unwrap();
        if m.lbs[&info.id].1 != info.state {
            return Err(format!(
                "{}: state {:?} vs model {:?}",
                info.id, info.state, m.lbs[&info.id].1
            ));
        }
        let on: Vec<&Entry> = m
            .claims
            .values()
            .filter(|c| c.1.as_ref().is_some_and(|p| p.0 == info.id))
            .collect();
        let owned: Vec<(usize, Listener)> = on
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.1.as_ref().unwrap().1.iter().map(move |&l| (i, l)))
            .collect();
        let ls: Vec<Listener> = owned.iter().map(|&(_, l)| l).collect();
        used_total += ls.len() as u64;
        if ls.len() as u32 > profile.max_listeners {
            return Err(format!(
                "{} over capacity: {} > {}",
                info.id,
                ls.len(),
                profile.max_listeners
            ));
        }
        let strict = matches!(s.policy, PolicyKind::Seed { .. });
        for (i, &(cx, x)) in owned.iter().enumerate() {
            for &(cy, y) in &owned[i + 1..] {
                // The seed policy treats a port number as taken whatever the protocol,
                // between claims (a claim may still ask 53/TCP and 53/UDP itself).
                let strict = strict && cx != cy;
                if x == y || ((strict || !profile.shared_port_numbers) && x.port == y.port) {
                    return Err(format!("{} uses {x} and {y}", info.id));
                }
            }
        }
        if !profile.mixed_protocols && ls.iter().any(|l| l.protocol != ls[0].protocol) {
            return Err(format!("{} mixes protocols", info.id));
        }
        for c in &on {
            if expected_pool(s.policy, &c.0) != info.pool {
                return Err(format!("{} on {} of pool {:?}", c.0.id, info.id, info.pool));
            }
        }
        if info.pool.is_dedicated() && on.len() > 1 {
            return Err(format!("dedicated {} holds {} claims", info.id, on.len()));
        }
        if info.state == LbState::Draining && !on.is_empty() {
            return Err(format!("draining {} holds claims", info.id));
        }
        if let PolicyKind::Seed { max_claims } = s.policy
            && on.len() as u32 > max_claims
        {
            return Err(format!(
                "seed LB {} holds {} > {max_claims} claims",
                info.id,
                on.len()
            ));
        }
    }
    if a.listeners_used() != used_total {
        return Err(format!(
            "listeners used {} vs model {used_total}",
            a.listeners_used()
        ));
    }
    // Every placed claim got what it asked for.
    for (claim, place, _) in m.claims.values() {
        let Some((lb, ls)) = place else { continue };
        let profile = cfg.profiles.iter().find(|p| p.name == m.lbs[lb].0).unwrap();
        if ls.len() != claim.ports.len() {
            return Err(format!(
                "{}: {} listeners for {} ports",
                claim.id,
                ls.len(),
                claim.ports.len()
            ));
        }
        for (req, got) in claim.ports.iter().zip(ls) {
            match *req {
                PortRequest::Fixed(f) if f != *got => {
                    return Err(format!("{}: asked {f}, got {got}", claim.id));
                }
                PortRequest::Any(p)
                    if p != got.protocol
                        || !profile.auto_ports.contains(got.port)
                        || profile.is_reserved(got.port) =>
                {
                    return Err(format!("{}: automatic {got} outside the rules", claim.id));
                }
                _ => {}
            }
        }
    }
    // Quotas and budget.
    let t0 = tenant(0);
    let placed: Vec<&Claim> = m
        .claims
        .values()
        .filter(|c| c.1.is_some() && c.0.tenant == t0)
        .map(|c| &c.0)
        .collect();
    let listeners: u32 = placed.iter().map(|c| c.listener_count()).sum();
    if s.quota_listeners.is_some_and(|q| listeners > q) {
        return Err(format!("t0 holds {listeners} listeners over quota"));
    }
    if s.quota_claims.is_some_and(|q| placed.len() as u32 > q) {
        return Err(format!("t0 holds {} claims over quota", placed.len()));
    }
    let dedicated = a
        .lbs()
        .iter()
        .filter(|l| l.pool == PoolKey::Dedicated(t0.clone()))
        .count() as u32;
    if s.quota_dedicated.is_some_and(|q| dedicated > q) {
        return Err(format!("t0 holds {dedicated} dedicated LBs over quota"));
    }
    if s.max_lbs.is_some_and(|b| m.lbs.len() as u32 > b) {
        return Err(format!("{} LBs over the budget", m.lbs.len()));
    }
    let provisioning = m
        .lbs
        .values()
        .filter(|x| x.1 == LbState::Provisioning)
        .count() as u32;
    if s.max_provisioning.is_some_and(|p| provisioning > p) {
        return Err(format!("{provisioning} LBs provisioning over the limit"));
    }
    for (id, (_, place, reason)) in &m.claims {
        if place.is_none()
            && matches!(
                reason,
                Some(PendingReason::BudgetExhausted | PendingReason::PortConflict)
            )
            && s.max_lbs.is_none()
        {
            return Err(format!("{id} pending for budget without a budget"));
        }
    }
    Ok(())
}

fn run(s: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = config(s);
    let mut a = Allocator::new(cfg.clone()).unwrap();
    let mut twin = Allocator::new(cfg.clone()).unwrap();
    let mut m = Model::default();
    let mut now = Time(0);
    let mut next_id = 0;
    for (step, op) in ops.iter().enumerate() {
        let ids: Vec<ClaimId> = m.claims.keys().cloned().collect();
        let lbs_in = |st: Option<LbState>| -> Vec<LbId> {
            m.lbs
                .iter()
                .filter(|(_, x)| st.is_none_or(|s| x.1 == s))
                .map(|(id, _)| *id)
                .collect()
        };
        let pick = |v: &[LbId], i: usize| (!v.is_empty()).then(|| v[i % v.len()]);
        let event = match op {
            Op::Add(spec) => {
                next_id += 1;
                let c = build_claim(&format!("ns/c{next_id}"), spec);
                m.claims.insert(c.id.clone(), (c.clone(), None, None));
                Some(Event::ClaimAdded(c))
            }
            Op::Remove(i) if !ids.is_empty() => {
                let id = ids[i % ids.len()].clone();
                m.claims.remove(&id);
                Some(Event::ClaimRemoved(id))
            }
            Op::Update(i, spec) if !ids.is_empty() => {
                let id = &ids[i % ids.len()];
                let c = build_claim(id.as_str(), spec);
                m.claims.get_mut(id).unwrap().0 = c.clone();
                Some(Event::ClaimUpdated(c))
            }
            Op::Ready(i) => pick(&lbs_in(Some(LbState::Provisioning)), *i).map(|lb| {
                m.lbs.get_mut(&lb).unwrap().1 = LbState::Ready;
                Event::LbReady(lb)
            }),
            Op::Fail(i) => pick(&lbs_in(None), *i).map(|lb| {
                m.lbs.remove(&lb);
                Event::LbFailed(lb)
            }),
            Op::Deleted(i) => pick(&lbs_in(Some(LbState::Draining)), *i).map(|lb| {
                m.lbs.remove(&lb);
                Event::LbDeleted(lb)
            }),
            Op::Advance(dt) => {
                now = now.plus_ms(*dt);
                Some(Event::Tick)
            }
            Op::Restart => {
                let snap = a.snapshot();
                let json = serde_json::to_string(&snap).unwrap();
                let back = serde_json::from_str(&json).unwrap();
                a = Allocator::restore(back)
                    .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
                prop_assert_eq!(a.snapshot(), snap, "snapshot round trip");
                None
            }
            Op::Consolidate(n) => {
                let planned = a.plan_consolidation(*n);
                let d1 = a.consolidate(now, *n).unwrap();
                let d2 = twin.consolidate(now, *n).unwrap();
                prop_assert_eq!(
                    &d1,
                    &d2,
                    "step {}: consolidation differs after restart",
                    step
                );
                let moved = d1
                    .iter()
                    .filter(|d| matches!(d, Decision::Migrate { .. }))
                    .count();
                prop_assert!(moved <= *n, "{} moves over budget {}", moved, n);
                prop_assert_eq!(planned.len(), moved, "plan and consolidation disagree");
                for d in &d1 {
                    m.apply(d)
                        .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                }
                check(s, &cfg, &a, &m)
                    .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
                continue;
            }
            Op::RemoveUnknown => {
                let before = a.snapshot();
                let err = a.handle(now, Event::ClaimRemoved(ClaimId::new("nope/none").unwrap()));
                prop_assert!(err.is_err());
                prop_assert_eq!(a.snapshot(), before, "a rejected event changed state");
                None
            }
            _ => None,
        };
        let Some(event) = event else { continue };
        let d1 = a
            .handle(now, event.clone())
            .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
        let d2 = twin.handle(now, event).unwrap();
        prop_assert_eq!(
            &d1,
            &d2,
            "step {}: decisions differ from the never-restarted twin",
            step
        );
        for d in &d1 {
            m.apply(d)
                .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}\n{d1:?}")))?;
        }
        check(s, &cfg, &a, &m)
            .map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}\n{d1:?}")))?;
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
}
