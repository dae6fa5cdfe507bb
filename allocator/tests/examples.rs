//! Example tests: each pending reason, each policy's characteristic choice, errors, and
//! the lower bound against brute force.

use proptest::prelude::*;
use sharedlb_allocator::bounds::lower_bound;
use sharedlb_allocator::offline::plan_offline;
use sharedlb_allocator::{
    Allocator, Budget, Claim, ClaimId, Config, Decision, Error, Event, LbId, LbProfile, Listener,
    PendingReason, PolicyKind, Port, PortRange, PortRequest, ProfileName, Protocol, Quota, Sharing,
    TenantConfig, TenantId, Time, builtin_profile,
};

fn tcp(p: u16) -> PortRequest {
    PortRequest::Fixed(Listener::tcp(p).unwrap())
}
fn udp(p: u16) -> PortRequest {
    PortRequest::Fixed(Listener::udp(p).unwrap())
}
fn any_tcp() -> PortRequest {
    PortRequest::Any(Protocol::Tcp)
}

fn profile(cap: u32) -> LbProfile {
    LbProfile {
        name: ProfileName::new("p").unwrap(),
        max_listeners: cap,
        protocols: vec![Protocol::Tcp, Protocol::Udp],
        mixed_protocols: true,
        shared_port_numbers: true,
        auto_ports: PortRange {
            first: Port::new(30000).unwrap(),
            last: Port::new(30009).unwrap(),
        },
        reserved: vec![],
        hourly_price: 1.0,
    }
}

fn config(policy: PolicyKind, cap: u32) -> Config {
    Config {
        profiles: vec![profile(cap)],
        ..Config::with_builtin("aws-nlb", policy).unwrap()
    }
}

fn add(a: &mut Allocator, id: &str, ports: Vec<PortRequest>) -> Vec<Decision> {
    let now = a.now();
    a.handle(now, Event::ClaimAdded(Claim::new(id, ports).unwrap()))
        .unwrap()
}

fn lb_of(a: &Allocator, id: &str) -> LbId {
    a.placement(&ClaimId::new(id).unwrap()).unwrap().0
}

fn reason(a: &Allocator, id: &str) -> Option<PendingReason> {
    a.pending_reason(&ClaimId::new(id).unwrap())
}

fn pending_of(ds: &[Decision]) -> Option<(PendingReason, String)> {
    ds.iter().find_map(|d| match d {
        Decision::Pending {
            reason, message, ..
        } => Some((*reason, message.clone())),
        _ => None,
    })
}

// ------------------------------------------------------------------ pending reasons

#[test]
fn budget_exhausted() {
    let mut c = config(PolicyKind::BestFit, 1);
    c.budget = Budget {
        max_lbs: Some(1),
        max_cost_per_hour: None,
    };
    let mut a = Allocator::new(c).unwrap();
    add(&mut a, "t/a", vec![tcp(80)]);
    let d = add(&mut a, "t/b", vec![tcp(81)]);
    let (r, msg) = pending_of(&d).unwrap();
    assert_eq!(r, PendingReason::BudgetExhausted);
    assert!(msg.contains("budget"), "{msg}");
    // Capacity frees: the pending claim is placed on the next event.
    let d = a
        .handle(Time(5), Event::ClaimRemoved(ClaimId::new("t/a").unwrap()))
        .unwrap();
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::Assign { claim, .. } if claim.as_str() == "t/b")),
        "{d:?}"
    );
}

#[test]
fn cost_budget_binds_too() {
    let mut c = config(PolicyKind::BestFit, 1);
    c.budget.max_cost_per_hour = Some(1.5);
    let mut a = Allocator::new(c).unwrap();
    add(&mut a, "t/a", vec![tcp(80)]);
    add(&mut a, "t/b", vec![tcp(81)]);
    assert_eq!(reason(&a, "t/b"), Some(PendingReason::BudgetExhausted));
}

#[test]
fn port_conflict() {
    let mut c = config(PolicyKind::BestFit, 10);
    c.budget.max_lbs = Some(1);
    let mut a = Allocator::new(c).unwrap();
    add(&mut a, "t/a", vec![tcp(443)]);
    add(&mut a, "t/b", vec![tcp(443)]);
    assert_eq!(reason(&a, "t/b"), Some(PendingReason::PortConflict));
    // 443/UDP is another listener and shares the LB.
    add(&mut a, "t/c", vec![udp(443)]);
    assert_eq!(lb_of(&a, "t/c"), lb_of(&a, "t/a"));
}

#[test]
fn quota_exceeded() {
    let mut c = config(PolicyKind::BestFit, 10);
    c.tenants.insert(
        TenantId::new("t").unwrap(),
        TenantConfig {
            weight: 1,
            quota: Quota {
                max_listeners: Some(2),
                ..Quota::default()
            },
        },
    );
    let mut a = Allocator::new(c).unwrap();
    add(&mut a, "t/a", vec![tcp(80), tcp(81)]);
    add(&mut a, "t/b", vec![tcp(82)]);
    assert_eq!(reason(&a, "t/b"), Some(PendingReason::QuotaExceeded));
    // Another tenant is not affected.
    add(&mut a, "u/a", vec![tcp(82)]);
    assert!(reason(&a, "u/a").is_none());
}

#[test]
fn dedicated_lb_quota() {
    let mut c = config(PolicyKind::BestFit, 10);
    c.tenants.insert(
        TenantId::new("t").unwrap(),
        TenantConfig {
            weight: 1,
            quota: Quota {
                max_dedicated_lbs: Some(1),
                ..Quota::default()
            },
        },
    );
    let mut a = Allocator::new(c).unwrap();
    let ded = |id: &str| {
        Claim::new(id, vec![tcp(80)])
            .unwrap()
            .with_sharing(Sharing::Dedicated)
    };
    a.handle(Time(0), Event::ClaimAdded(ded("t/a"))).unwrap();
    a.handle(Time(0), Event::ClaimAdded(ded("t/b"))).unwrap();
    assert_eq!(reason(&a, "t/b"), Some(PendingReason::QuotaExceeded));
}

#[test]
fn port_range_full() {
    let mut c = config(PolicyKind::BestFit, 20);
    c.budget.max_lbs = Some(1);
    let mut a = Allocator::new(c).unwrap();
    for i in 0..10 {
        add(&mut a, &format!("t/c{i}"), vec![any_tcp()]);
    }
    add(&mut a, "t/late", vec![any_tcp()]);
    assert_eq!(reason(&a, "t/late"), Some(PendingReason::PortRangeFull));
}

#[test]
fn too_large_and_unsupported() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 2)).unwrap();
    add(&mut a, "t/big", vec![tcp(1), tcp(2), tcp(3)]);
    assert_eq!(reason(&a, "t/big"), Some(PendingReason::TooLarge));
    let sctp = PortRequest::Fixed(Listener::new(Protocol::Sctp, Port::new(9).unwrap()));
    add(&mut a, "t/sctp", vec![sctp]);
    assert_eq!(reason(&a, "t/sctp"), Some(PendingReason::Unsupported));
    let mut pinned = Claim::new("t/p", vec![tcp(5)]).unwrap();
    pinned.profile = Some(ProfileName::new("nope").unwrap());
    a.handle(Time(0), Event::ClaimAdded(pinned)).unwrap();
    assert_eq!(reason(&a, "t/p"), Some(PendingReason::Unsupported));
}

#[test]
fn waiting_for_capacity_while_provisioning_is_limited() {
    let mut c = config(PolicyKind::BestFit, 1);
    c.max_provisioning = Some(1);
    let mut a = Allocator::new(c).unwrap();
    let d = add(&mut a, "t/a", vec![tcp(80)]);
    let lb = d
        .iter()
        .find_map(|d| match d {
            Decision::CreateLb { lb, .. } => Some(*lb),
            _ => None,
        })
        .unwrap();
    add(&mut a, "t/b", vec![tcp(81)]);
    assert_eq!(reason(&a, "t/b"), Some(PendingReason::WaitingForCapacity));
    let d = a.handle(Time(1), Event::LbReady(lb)).unwrap();
    assert!(
        d.iter().any(|d| matches!(d, Decision::CreateLb { .. })),
        "{d:?}"
    );
    assert!(reason(&a, "t/b").is_none());
}

#[test]
fn pinned_unavailable() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 4)).unwrap();
    let mut c = Claim::new("t/a", vec![tcp(80)]).unwrap();
    c.pinned_lb = Some(LbId(42));
    a.handle(Time(0), Event::ClaimAdded(c)).unwrap();
    assert_eq!(reason(&a, "t/a"), Some(PendingReason::PinnedUnavailable));
}

#[test]
fn idle_lb_is_deleted_to_make_room_under_budget() {
    let mut c = config(PolicyKind::BestFit, 1);
    c.budget.max_lbs = Some(1);
    c.idle_timeout_ms = 60_000;
    let mut a = Allocator::new(c).unwrap();
    let a_id = Claim::new("t/a", vec![tcp(80)]).unwrap();
    a.handle(Time(0), Event::ClaimAdded(a_id)).unwrap();
    a.handle(Time(1), Event::ClaimRemoved(ClaimId::new("t/a").unwrap()))
        .unwrap();
    // Another tenant cannot use t's idle LB; it is deleted early instead of waiting a minute.
    let d = add(&mut a, "u/b", vec![tcp(80)]);
    assert!(
        d.iter().any(|d| matches!(d, Decision::DeleteLb { .. })),
        "{d:?}"
    );
    assert_eq!(reason(&a, "u/b"), Some(PendingReason::WaitingForCapacity));
    let old = a.lbs()[0].id;
    let d = a.handle(Time(2), Event::LbDeleted(old)).unwrap();
    assert!(
        d.iter().any(|d| matches!(d, Decision::Assign { .. })),
        "{d:?}"
    );
}

// ------------------------------------------------------------------ policies

/// Three LBs with 1, 3 and 2 free listeners (capacity 4); a 1-listener claim arrives.
fn three_lbs(policy: PolicyKind) -> Allocator {
    let mut a = Allocator::new(config(policy, 4)).unwrap();
    // Fill three LBs completely, then free some, so that lb-1: 1 free, lb-2: 3 free, lb-3: 2 free.
    for lb in 0..3 {
        for i in 0..4 {
            add(&mut a, &format!("t/l{lb}c{i}"), vec![tcp(100 + i)]);
        }
    }
    let rm = ["t/l0c0", "t/l1c0", "t/l1c1", "t/l1c2", "t/l2c0", "t/l2c1"];
    for id in rm {
        a.handle(Time(0), Event::ClaimRemoved(ClaimId::new(id).unwrap()))
            .unwrap();
    }
    a
}

#[test]
fn first_best_worst_fit_choose_as_named() {
    let mut a = three_lbs(PolicyKind::FirstFit);
    add(&mut a, "t/new", vec![tcp(200)]);
    assert_eq!(lb_of(&a, "t/new"), LbId(1), "first-fit: lowest id");
    let mut a = three_lbs(PolicyKind::BestFit);
    add(&mut a, "t/new", vec![tcp(200)]);
    assert_eq!(lb_of(&a, "t/new"), LbId(1), "best-fit: fullest");
    let mut a = three_lbs(PolicyKind::WorstFit);
    add(&mut a, "t/new", vec![tcp(200)]);
    assert_eq!(lb_of(&a, "t/new"), LbId(2), "worst-fit: emptiest");
    // Best fit skips the fullest when it cannot take the claim.
    let mut a = three_lbs(PolicyKind::BestFit);
    add(&mut a, "t/two", vec![tcp(200), tcp(201)]);
    assert_eq!(lb_of(&a, "t/two"), LbId(3));
}

#[test]
fn dedicated_gives_every_claim_its_own_lb() {
    let mut a = Allocator::new(config(PolicyKind::Dedicated, 50)).unwrap();
    for i in 0..5 {
        add(&mut a, &format!("t/c{i}"), vec![tcp(80 + i)]);
    }
    assert_eq!(a.lbs().len(), 5);
}

#[test]
fn seed_ignores_protocol_and_counts_claims() {
    let mut a = Allocator::new(config(PolicyKind::Seed { max_claims: 10 }, 50)).unwrap();
    add(&mut a, "t/a", vec![tcp(53)]);
    add(&mut a, "t/b", vec![udp(53)]);
    assert_ne!(
        lb_of(&a, "t/a"),
        lb_of(&a, "t/b"),
        "seed treats 53/UDP as clashing with 53/TCP"
    );
    let mut a = Allocator::new(config(PolicyKind::BestFit, 50)).unwrap();
    add(&mut a, "t/a", vec![tcp(53)]);
    add(&mut a, "t/b", vec![udp(53)]);
    assert_eq!(
        lb_of(&a, "t/a"),
        lb_of(&a, "t/b"),
        "best-fit shares 53 across protocols"
    );
    let mut a = Allocator::new(config(PolicyKind::Seed { max_claims: 2 }, 50)).unwrap();
    for i in 0..3 {
        add(&mut a, &format!("t/c{i}"), vec![tcp(80 + i)]);
    }
    assert_eq!(a.lbs().len(), 2, "seed caps claims per LB");
}

#[test]
fn conflict_aware_keeps_contended_listener_free() {
    // lb-1 holds 443 (3 free); lb-2 has 443 free (2 free). Two pending claims also want 443,
    // so 443 is contended. A claim for 8080 fits both.
    let mut c = config(PolicyKind::BestFit, 4);
    c.budget.max_lbs = Some(2);
    let mut a = Allocator::new(c).unwrap();
    add(&mut a, "t/a", vec![tcp(443)]);
    add(&mut a, "t/b", vec![tcp(443), tcp(10)]);
    add(&mut a, "t/c", vec![tcp(11), tcp(12)]);
    a.handle(Time(0), Event::ClaimRemoved(ClaimId::new("t/b").unwrap()))
        .unwrap();
    add(&mut a, "t/p1", vec![tcp(443), tcp(20), tcp(21), tcp(22)]);
    add(&mut a, "t/p2", vec![tcp(443), tcp(20), tcp(21), tcp(22)]);
    assert_eq!(reason(&a, "t/p1"), Some(PendingReason::BudgetExhausted));
    assert_eq!(lb_of(&a, "t/a"), LbId(1));
    assert_eq!(lb_of(&a, "t/c"), LbId(2));
    for (policy, expect) in [
        (PolicyKind::ConflictAware, LbId(1)),
        (PolicyKind::BestFit, LbId(2)),
    ] {
        let mut snap = a.snapshot();
        snap.config.policy = policy;
        let mut b = Allocator::restore(snap).unwrap();
        add(&mut b, "t/web", vec![tcp(8080)]);
        assert_eq!(lb_of(&b, "t/web"), expect, "{policy}");
    }
}

#[test]
fn cost_aware_opens_cheapest_profile_for_demand() {
    let small = LbProfile {
        name: ProfileName::new("small").unwrap(),
        hourly_price: 1.0,
        ..profile(5)
    };
    let big = LbProfile {
        name: ProfileName::new("big").unwrap(),
        hourly_price: 4.0,
        ..profile(30)
    };
    let c = |expected| Config {
        profiles: vec![small.clone(), big.clone()],
        ..Config::with_builtin(
            "aws-nlb",
            PolicyKind::CostAware {
                expected_listeners: expected,
            },
        )
        .unwrap()
    };
    let created = |a: &mut Allocator| {
        let d = add(a, "t/a", vec![tcp(80)]);
        d.iter()
            .find_map(|d| match d {
                Decision::CreateLb { profile, .. } => Some(profile.as_str().to_owned()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        created(&mut Allocator::new(c(3)).unwrap()),
        "small",
        "3 listeners: one small LB is cheapest"
    );
    assert_eq!(
        created(&mut Allocator::new(c(30)).unwrap()),
        "big",
        "30 listeners: one big (4) beats six small (6)"
    );
    // Best fit (the default) just opens the first profile.
    let mut bf = c(30);
    bf.policy = PolicyKind::BestFit;
    assert_eq!(created(&mut Allocator::new(bf).unwrap()), "small");
}

#[test]
fn sharing_rules() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 10)).unwrap();
    let mk =
        |id: &str, s: Sharing, port: u16| Claim::new(id, vec![tcp(port)]).unwrap().with_sharing(s);
    let ev = |c| Event::ClaimAdded(c);
    a.handle(Time(0), ev(mk("t/a", Sharing::Tenant, 1)))
        .unwrap();
    a.handle(Time(0), ev(mk("u/a", Sharing::Tenant, 2)))
        .unwrap();
    assert_ne!(
        lb_of(&a, "t/a"),
        lb_of(&a, "u/a"),
        "tenants do not share by default"
    );
    a.handle(Time(0), ev(mk("t/o", Sharing::Anyone, 3)))
        .unwrap();
    a.handle(Time(0), ev(mk("u/o", Sharing::Anyone, 4)))
        .unwrap();
    assert_eq!(lb_of(&a, "t/o"), lb_of(&a, "u/o"), "both opted in");
    a.handle(Time(0), ev(mk("t/g", Sharing::Group("k".into()), 5)))
        .unwrap();
    a.handle(Time(0), ev(mk("t/h", Sharing::Group("k".into()), 6)))
        .unwrap();
    a.handle(Time(0), ev(mk("t/i", Sharing::Group("other".into()), 7)))
        .unwrap();
    assert_eq!(lb_of(&a, "t/g"), lb_of(&a, "t/h"));
    assert_ne!(lb_of(&a, "t/g"), lb_of(&a, "t/i"));
    a.handle(
        Time(0),
        ev(mk("t/x", Sharing::CrossTenantGroup("x".into()), 8)),
    )
    .unwrap();
    a.handle(
        Time(0),
        ev(mk("u/x", Sharing::CrossTenantGroup("x".into()), 9)),
    )
    .unwrap();
    assert_eq!(lb_of(&a, "t/x"), lb_of(&a, "u/x"));
}

#[test]
fn any_ports_are_lowest_free_and_stable_across_update() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 10)).unwrap();
    add(&mut a, "t/a", vec![any_tcp(), any_tcp()]);
    let (_, ls) = a.placement(&ClaimId::new("t/a").unwrap()).unwrap();
    assert_eq!(
        ls.iter().map(|l| l.port.get()).collect::<Vec<_>>(),
        vec![30000, 30001]
    );
    add(&mut a, "t/b", vec![any_tcp()]);
    a.handle(Time(0), Event::ClaimRemoved(ClaimId::new("t/a").unwrap()))
        .unwrap();
    // b keeps its port when updated, although lower ones are now free.
    let b = Claim::new("t/b", vec![any_tcp(), tcp(80)]).unwrap();
    a.handle(Time(0), Event::ClaimUpdated(b)).unwrap();
    let (_, ls) = a.placement(&ClaimId::new("t/b").unwrap()).unwrap();
    assert_eq!(ls[0].port.get(), 30002);
}

#[test]
fn fair_retry_prefers_tenant_under_its_share() {
    let mut c = config(PolicyKind::BestFit, 2);
    c.budget.max_lbs = Some(2);
    let mut a = Allocator::new(c).unwrap();
    // Tenant big fills both LBs (its own pool), small waits; then one LB frees.
    let shared = |id: &str, p: u16| {
        Claim::new(id, vec![tcp(p)])
            .unwrap()
            .with_sharing(Sharing::Anyone)
    };
    for (i, id) in ["big/a", "big/b", "big/c", "big/d"].iter().enumerate() {
        a.handle(Time(0), Event::ClaimAdded(shared(id, 10 + i as u16)))
            .unwrap();
    }
    a.handle(Time(1), Event::ClaimAdded(shared("big/e", 20)))
        .unwrap();
    a.handle(Time(2), Event::ClaimAdded(shared("small/a", 21)))
        .unwrap();
    assert!(reason(&a, "big/e").is_some() && reason(&a, "small/a").is_some());
    // One listener frees: big/e arrived first, but small holds nothing and goes first.
    a.handle(Time(3), Event::ClaimRemoved(ClaimId::new("big/a").unwrap()))
        .unwrap();
    assert!(reason(&a, "small/a").is_none(), "small placed");
    assert!(reason(&a, "big/e").is_some(), "big still waits");
}

#[test]
fn consolidation_empties_an_lb() {
    let mut c = config(PolicyKind::WorstFit, 4);
    c.idle_timeout_ms = 0;
    let mut a = Allocator::new(c).unwrap();
    for i in 0..4 {
        a.handle(
            Time(0),
            Event::ClaimAdded(
                Claim::new(&format!("t/c{i}"), vec![tcp(80 + i)])
                    .unwrap()
                    .with_migration(true),
            ),
        )
        .unwrap();
    }
    a.handle(
        Time(0),
        Event::ClaimAdded(
            Claim::new("t/e", vec![tcp(90)])
                .unwrap()
                .with_migration(true),
        ),
    )
    .unwrap();
    // 5 claims on 2 LBs (4 + 1); remove two from the first: 2 + 1.
    for id in ["t/c0", "t/c1"] {
        a.handle(Time(1), Event::ClaimRemoved(ClaimId::new(id).unwrap()))
            .unwrap();
    }
    for lb in a.lbs() {
        a.handle(Time(1), Event::LbReady(lb.id)).unwrap();
    }
    assert_eq!(
        a.plan_consolidation(0).len(),
        0,
        "no moves without a budget"
    );
    let d = a.consolidate(Time(2), 5).unwrap();
    let moves = d
        .iter()
        .filter(|d| matches!(d, Decision::Migrate { .. }))
        .count();
    assert_eq!(moves, 1, "{d:?}");
    assert!(
        d.iter().any(|d| matches!(d, Decision::DeleteLb { .. })),
        "{d:?}"
    );
}

#[test]
fn lb_failure_replaces_claims() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 4)).unwrap();
    add(&mut a, "t/a", vec![tcp(80)]);
    let lb = lb_of(&a, "t/a");
    let d = a.handle(Time(1), Event::LbFailed(lb)).unwrap();
    assert!(matches!(d[0], Decision::Release { .. }));
    assert!(d.iter().any(|d| matches!(d, Decision::CreateLb { .. })));
    assert_ne!(lb_of(&a, "t/a"), lb);
}

// ------------------------------------------------------------------ errors

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 4)).unwrap();
    add(&mut a, "t/a", vec![tcp(80)]);
    let dup = a.handle(
        Time(1),
        Event::ClaimAdded(Claim::new("t/a", vec![tcp(81)]).unwrap()),
    );
    assert!(matches!(dup, Err(Error::DuplicateClaim(_))));
    let unknown = a.handle(Time(1), Event::ClaimRemoved(ClaimId::new("t/zz").unwrap()));
    assert!(matches!(unknown, Err(Error::UnknownClaim(_))));
    assert!(matches!(
        a.handle(Time(1), Event::LbReady(LbId(99))),
        Err(Error::UnknownLb(_))
    ));
    assert!(a.handle(Time(0), Event::Tick).is_ok());
    a.handle(Time(10), Event::Tick).unwrap();
    assert!(matches!(
        a.handle(Time(5), Event::Tick),
        Err(Error::TimeWentBackwards { .. })
    ));
    assert!(matches!(
        PortRequest::from_number(Protocol::Tcp, 70000),
        Err(Error::InvalidPort(70000))
    ));
    assert!(matches!(
        PortRequest::from_number(Protocol::Tcp, 0),
        Ok(PortRequest::Any(Protocol::Tcp))
    ));
    assert!(Claim::new("t/empty", vec![]).is_err());
    assert!(Claim::new("t/twice", vec![tcp(80), tcp(80)]).is_err());
    assert!(Claim::new("", vec![tcp(80)]).is_err());
    assert!("nope".parse::<PolicyKind>().is_err());
    assert!("seed:0".parse::<PolicyKind>().is_err());
    assert!("best-fit:3".parse::<PolicyKind>().is_err());
    let j: Result<Claim, _> = serde_json::from_str(
        r#"{"id":"a/b","tenant":"a","ports":[{"protocol":"TCP","port":70000}]}"#,
    );
    assert!(j.is_err());
    let j: Result<Claim, _> =
        serde_json::from_str(r#"{"id":"a/b","tenant":"a","ports":[{"protocol":"TCP","port":0}]}"#);
    assert_eq!(j.unwrap().ports, vec![any_tcp()]);
    let mut bad = config(PolicyKind::BestFit, 4);
    bad.profiles[0].max_listeners = 0;
    assert!(Allocator::new(bad).is_err());
}

#[test]
fn restore_rejects_double_booking() {
    let mut a = Allocator::new(config(PolicyKind::BestFit, 4)).unwrap();
    add(&mut a, "t/a", vec![tcp(80)]);
    add(&mut a, "t/b", vec![tcp(81)]);
    let mut snap = a.snapshot();
    snap.claims[1].placement.as_mut().unwrap().1 = vec![Listener::tcp(80).unwrap()];
    snap.claims[1].claim.ports = vec![tcp(80)];
    assert!(matches!(Allocator::restore(snap), Err(Error::Restore(_))));
}

#[test]
fn builtin_profiles_are_valid() {
    for p in sharedlb_allocator::builtin_profiles() {
        p.validate().unwrap();
    }
    assert_eq!(builtin_profile("aws-nlb").unwrap().max_listeners, 50);
    assert_eq!(builtin_profile("hetzner-lb21").unwrap().max_listeners, 15);
}

// ------------------------------------------------------------------ bounds

/// Exact optimum by trying every partition (restricted growth strings).
fn brute_force(claims: &[Claim], p: &LbProfile) -> usize {
    let feasible = |block: &[&Claim]| {
        let n: u32 = block.iter().map(|c| c.listener_count()).sum();
        if n > p.max_listeners {
            return false;
        }
        let ls: Vec<Listener> = block.iter().flat_map(|c| c.fixed_listeners()).collect();
        if !p.mixed_protocols && ls.iter().any(|l| l.protocol != ls[0].protocol) {
            return false;
        }
        ls.iter()
            .enumerate()
            .all(|(i, a)| ls[i + 1..].iter().all(|b| !p.clash(*a, *b)))
    };
    let n = claims.len();
    let mut best = n;
    let mut rgs = vec![0usize; n];
    loop {
        let k = rgs.iter().max().map_or(0, |m| m + 1);
        if k < best {
            let ok = (0..k).all(|b| {
                let block: Vec<&Claim> = (0..n)
                    .filter(|&i| rgs[i] == b)
                    .map(|i| &claims[i])
                    .collect();
                feasible(&block)
            });
            if ok {
                best = k;
            }
        }
        // next restricted growth string
        let mut i = n;
        loop {
            if i <= 1 {
                return best;
            }
            i -= 1;
            let max_prev = rgs[..i].iter().max().copied().unwrap_or(0);
            if rgs[i] <= max_prev {
                rgs[i] += 1;
                for r in &mut rgs[i + 1..] {
                    *r = 0;
                }
                break;
            }
        }
    }
}

fn small_claims() -> impl Strategy<Value = Vec<Claim>> {
    prop::collection::vec(
        prop::collection::btree_set((any::<bool>(), 1u16..5), 1..3),
        1..7,
    )
    .prop_map(|cs| {
        cs.into_iter()
            .enumerate()
            .map(|(i, ports)| {
                let ports = ports
                    .into_iter()
                    .map(|(u, p)| if u { udp(p) } else { tcp(p) })
                    .collect();
                Claim::new(&format!("t/c{i}"), ports).unwrap()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn lower_bound_never_exceeds_optimum(claims in small_claims(), cap in 1u32..5, mixed: bool, shared: bool) {
        let p = LbProfile { mixed_protocols: mixed, shared_port_numbers: shared, ..profile(cap) };
        // Claims the profile cannot hold at all have no optimum: leave them out.
        let claims: Vec<Claim> = claims
            .into_iter()
            .filter(|c| {
                let ls: Vec<Listener> = c.fixed_listeners().collect();
                c.listener_count() <= cap
                    && (mixed || ls.iter().all(|l| l.protocol == ls[0].protocol))
                    && ls.iter().enumerate().all(|(i, a)| ls[i + 1..].iter().all(|b| !p.clash(*a, *b)))
            })
            .collect();
        prop_assume!(!claims.is_empty());
        let opt = brute_force(&claims, &p) as u64;
        let lb = lower_bound(&claims, &p);
        prop_assert!(lb.total <= opt, "bound {:?} above optimum {}", lb, opt);
        let plan = plan_offline(&claims, &p).unwrap();
        prop_assert!(plan.unplaced.is_empty());
        prop_assert!(plan.lbs.len() as u64 >= opt, "plan {} below optimum {}", plan.lbs.len(), opt);
    }
}
