//! Example tests: each pending reason, each policy's characteristic choice, the shell
//! contract (wake-ups, restore, consolidation as an event), each rule a restore enforces,
//! errors, and the lower bound against brute force.

use proptest::prelude::*;
use sharedlb_allocator::bounds::lower_bound;
use sharedlb_allocator::offline::plan_offline;
use sharedlb_allocator::{
    Allocator, Budget, Claim, ClaimId, Config, Currency, Decision, Error, Event, GroupKey, LbId,
    LbProfile, LbState, Listener, Listeners, PendingReason, Policy, PolicyKind, PolicyRules, Port,
    PortRange, PortRequest, PortRule, ProfileName, Protocol, Quota, Reports, Sharing, Shell,
    Snapshot, TenantConfig, TenantId, Time, Upcoming, View, Walks, builtin_profile,
};
use std::sync::Arc;

fn tcp(p: u16) -> PortRequest {
    PortRequest::Fixed(Listener::tcp(p).unwrap())
}
fn udp(p: u16) -> PortRequest {
    PortRequest::Fixed(Listener::udp(p).unwrap())
}
fn any_tcp() -> PortRequest {
    PortRequest::Any(Protocol::Tcp)
}
fn policy(s: &str) -> PolicyKind {
    s.parse().unwrap()
}
fn id(s: &str) -> ClaimId {
    ClaimId::new(s).unwrap()
}
fn key(s: &str) -> GroupKey {
    GroupKey::new(s).unwrap()
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
        monthly_cap: None,
        currency: Currency::Usd,
    }
}

fn config(p: &str, cap: u32) -> Config {
    Config {
        profiles: vec![profile(cap)],
        ..Config::with_builtin("aws-nlb", policy(p)).unwrap()
    }
}

/// A shell that records every decision and carries out nothing: LB outcomes are sent by
/// the test itself.
#[derive(Default)]
struct Log(Vec<Decision>);

impl Shell for Log {
    fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
        self.0.push(d);
    }
}

/// An allocator with its clock, driven through the one shell entry point.
struct Harness {
    a: Allocator,
    now: Time,
}

impl Harness {
    fn new(c: Config) -> Harness {
        Harness {
            a: Allocator::new(c).unwrap(),
            now: Time(0),
        }
    }

    fn at(&mut self, t: u64) -> &mut Self {
        self.now = Time(t);
        self
    }

    fn try_ev(&mut self, e: Event) -> Result<Vec<Decision>, Error> {
        let mut log = Log::default();
        self.a.drive(self.now, e, &mut log)?;
        self.a.check_invariants().unwrap();
        Ok(log.0)
    }

    fn ev(&mut self, e: Event) -> Vec<Decision> {
        self.try_ev(e).unwrap()
    }

    fn add(&mut self, id: &str, ports: Vec<PortRequest>) -> Vec<Decision> {
        self.ev(Event::ClaimAdded(Claim::new(id, ports).unwrap()))
    }

    fn remove(&mut self, c: &str) -> Vec<Decision> {
        self.ev(Event::ClaimRemoved(id(c)))
    }

    fn lb_of(&self, c: &str) -> LbId {
        self.a.placement(&id(c)).unwrap().0
    }

    fn reason(&self, c: &str) -> Option<PendingReason> {
        self.a.pending_reason(&id(c))
    }
}

fn pending_of(ds: &[Decision]) -> Option<(PendingReason, String)> {
    ds.iter().find_map(|d| match d {
        Decision::Pending {
            reason, message, ..
        } => Some((*reason, message.clone())),
        _ => None,
    })
}

fn created(ds: &[Decision]) -> Option<LbId> {
    ds.iter().find_map(|d| match d {
        Decision::CreateLb { lb, .. } => Some(*lb),
        _ => None,
    })
}

fn assigned(ds: &[Decision], c: &str) -> bool {
    ds.iter()
        .any(|d| matches!(d, Decision::Assign { claim, .. } if claim.as_str() == c))
}

// ------------------------------------------------------------------ pending reasons

#[test]
fn budget_exhausted() {
    let mut c = config("best-fit", 1);
    c.budget = Budget {
        max_lbs: Some(1),
        max_cost_per_hour: None,
    };
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(80)]);
    let d = h.add("t/b", vec![tcp(81)]);
    let (r, msg) = pending_of(&d).unwrap();
    assert_eq!(r, PendingReason::BudgetExhausted);
    assert!(msg.contains("budget of 1 LBs"), "{msg}");
    // Capacity frees: the waiting claim is placed within the same event.
    let d = h.at(5).remove("t/a");
    assert!(assigned(&d, "t/b"), "{d:?}");
}

#[test]
fn cost_budget_binds_too_and_names_the_currency() {
    let mut c = config("best-fit", 1);
    c.budget.max_cost_per_hour = Some(1.5);
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(80)]);
    let d = h.add("t/b", vec![tcp(81)]);
    assert_eq!(h.reason("t/b"), Some(PendingReason::BudgetExhausted));
    assert!(pending_of(&d).unwrap().1.contains("USD/h"), "{d:?}");
}

#[test]
fn port_conflict() {
    let mut c = config("best-fit", 10);
    c.budget.max_lbs = Some(1);
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(443)]);
    h.add("t/b", vec![tcp(443)]);
    assert_eq!(h.reason("t/b"), Some(PendingReason::PortConflict));
    // 443/UDP is another listener and shares the LB.
    h.add("t/c", vec![udp(443)]);
    assert_eq!(h.lb_of("t/c"), h.lb_of("t/a"));
}

#[test]
fn quota_exceeded() {
    let mut c = config("best-fit", 10);
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
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(80), tcp(81)]);
    h.add("t/b", vec![tcp(82)]);
    assert_eq!(h.reason("t/b"), Some(PendingReason::QuotaExceeded));
    // Another tenant is not affected.
    h.add("u/a", vec![tcp(82)]);
    assert!(h.reason("u/a").is_none());
}

#[test]
fn dedicated_lb_quota() {
    let mut c = config("best-fit", 10);
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
    let mut h = Harness::new(c);
    let ded = |c: &str| {
        Claim::new(c, vec![tcp(80)])
            .unwrap()
            .with_sharing(Sharing::Dedicated)
    };
    h.ev(Event::ClaimAdded(ded("t/a")));
    h.ev(Event::ClaimAdded(ded("t/b")));
    assert_eq!(h.reason("t/b"), Some(PendingReason::QuotaExceeded));
}

#[test]
fn port_range_full() {
    let mut c = config("best-fit", 20);
    c.budget.max_lbs = Some(1);
    let mut h = Harness::new(c);
    for i in 0..10 {
        h.add(&format!("t/c{i}"), vec![any_tcp()]);
    }
    h.add("t/late", vec![any_tcp()]);
    assert_eq!(h.reason("t/late"), Some(PendingReason::PortRangeFull));
}

#[test]
fn too_large_and_unsupported() {
    let mut h = Harness::new(config("best-fit", 2));
    h.add("t/big", vec![tcp(1), tcp(2), tcp(3)]);
    assert_eq!(h.reason("t/big"), Some(PendingReason::TooLarge));
    let sctp = PortRequest::Fixed(Listener::new(Protocol::Sctp, Port::new(9).unwrap()));
    h.add("t/sctp", vec![sctp]);
    assert_eq!(h.reason("t/sctp"), Some(PendingReason::Unsupported));
    let other = Claim::new("t/p", vec![tcp(5)])
        .unwrap()
        .with_profile(Some(ProfileName::new("nope").unwrap()));
    h.ev(Event::ClaimAdded(other));
    assert_eq!(h.reason("t/p"), Some(PendingReason::Unsupported));
    // More automatic ports than the range holds is too large, not a range that is full.
    h.add("t/many", vec![any_tcp(); 11]);
    assert_eq!(h.reason("t/many"), Some(PendingReason::TooLarge));
}

#[test]
fn waiting_for_capacity_while_provisioning_is_limited() {
    let mut c = config("best-fit", 1);
    c.max_provisioning = Some(1);
    let mut h = Harness::new(c);
    let lb = created(&h.add("t/a", vec![tcp(80)])).unwrap();
    h.add("t/b", vec![tcp(81)]);
    assert_eq!(h.reason("t/b"), Some(PendingReason::WaitingForCapacity));
    let d = h.at(1).ev(Event::LbReady(lb));
    assert!(created(&d).is_some(), "{d:?}");
    assert!(h.reason("t/b").is_none());
}

#[test]
fn pinned_unavailable() {
    let mut h = Harness::new(config("best-fit", 4));
    let c = Claim::new("t/a", vec![tcp(80)])
        .unwrap()
        .with_pinned_lb(Some(LbId(42)));
    h.ev(Event::ClaimAdded(c));
    assert_eq!(h.reason("t/a"), Some(PendingReason::PinnedUnavailable));
}

#[test]
fn idle_lb_is_deleted_to_make_room_under_budget() {
    let mut c = config("best-fit", 1);
    c.budget.max_lbs = Some(1);
    c.idle_timeout_ms = 60_000;
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(80)]);
    h.at(1).remove("t/a");
    // Another tenant cannot use t's idle LB; it is deleted early instead of waiting a minute.
    let d = h.add("u/b", vec![tcp(80)]);
    assert!(
        d.iter().any(|d| matches!(d, Decision::DeleteLb { .. })),
        "{d:?}"
    );
    assert_eq!(h.reason("u/b"), Some(PendingReason::WaitingForCapacity));
    let old = h.a.lbs()[0].id;
    let d = h.at(2).ev(Event::LbDeleted(old));
    assert!(assigned(&d, "u/b"), "{d:?}");
}

// ------------------------------------------------------------------ the shell contract

#[test]
fn idle_lbs_go_at_their_timeout_and_drive_says_when() {
    let mut c = config("best-fit", 4);
    c.idle_timeout_ms = 60_000;
    let mut a = Allocator::new(c).unwrap();
    let mut log = Log::default();
    let w = a
        .drive(
            Time(0),
            Event::ClaimAdded(Claim::new("t/a", vec![tcp(80)]).unwrap()),
            &mut log,
        )
        .unwrap();
    assert_eq!(w, None, "nothing idle, nothing waiting");
    let w = a
        .drive(Time(1_000), Event::ClaimRemoved(id("t/a")), &mut log)
        .unwrap();
    assert_eq!(w, Some(Time(61_000)));
    // A tick before the timeout changes nothing; at it, the LB goes.
    log.0.clear();
    a.drive(Time(60_999), Event::Tick, &mut log).unwrap();
    assert!(log.0.is_empty(), "{:?}", log.0);
    a.drive(Time(61_000), Event::Tick, &mut log).unwrap();
    assert!(
        matches!(log.0[..], [Decision::DeleteLb { lb: LbId(1) }]),
        "{:?}",
        log.0
    );
}

#[test]
fn reports_from_the_shell_are_fed_back_in_the_same_drive() {
    /// LBs exist as soon as they are asked for (a shared IP).
    #[derive(Default)]
    struct Instant(Vec<Decision>);
    impl Shell for Instant {
        fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports<'_>) {
            if let Decision::CreateLb { lb, .. } = &d {
                reports.report(Event::LbReady(*lb));
            }
            self.0.push(d);
        }
    }
    let mut c = config("best-fit", 1);
    c.max_provisioning = Some(1);
    let mut a = Allocator::new(c).unwrap();
    let mut s = Instant::default();
    for (i, p) in [80, 81, 82].into_iter().enumerate() {
        let c = Claim::new(&format!("t/c{i}"), vec![tcp(p)]).unwrap();
        a.drive(Time(0), Event::ClaimAdded(c), &mut s).unwrap();
    }
    // With every LB ready at once, the provisioning limit never holds a claim back.
    assert_eq!(a.placed_count(), 3);
    assert!(a.lbs().iter().all(|l| l.state == LbState::Ready));
}

#[test]
fn restore_wakes_at_once_and_the_tick_places_waiting_claims() {
    let mut c = config("best-fit", 1);
    c.budget.max_lbs = Some(1);
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(80)]);
    h.add("t/b", vec![tcp(81)]);
    assert_eq!(h.reason("t/b"), Some(PendingReason::BudgetExhausted));
    // The controller restarts after t/a went and its LB was deleted while it was down.
    let mut snap = h.a.snapshot();
    snap.claims.retain(|r| r.claim.id().as_str() != "t/a");
    snap.lbs.clear();
    snap.now = Time(10);
    let r = Allocator::restore(snap).unwrap();
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    let mut a = r.allocator;
    assert_eq!(
        a.next_wakeup(),
        Some(Time(10)),
        "a claim waits: wake at once"
    );
    let mut log = Log::default();
    a.drive(Time(10), Event::Tick, &mut log).unwrap();
    assert!(assigned(&log.0, "t/b"), "{:?}", log.0);
    assert_eq!(a.next_wakeup(), None);
}

#[test]
fn consolidation_is_an_event_with_a_move_budget() {
    let mut c = config("worst-fit", 4);
    c.idle_timeout_ms = 0;
    let mut h = Harness::new(c);
    for i in 0..5 {
        h.ev(Event::ClaimAdded(
            Claim::new(&format!("t/c{i}"), vec![tcp(80 + i)])
                .unwrap()
                .with_migration(true),
        ));
    }
    // 5 claims on 2 LBs (4 + 1); two leave the first: 2 + 1.
    h.at(1).remove("t/c0");
    h.remove("t/c1");
    for lb in h.a.lbs() {
        h.ev(Event::LbReady(lb.id));
    }
    assert_eq!(h.a.lbs().len(), 2);
    assert!(
        h.a.plan_consolidation(0).is_empty(),
        "no moves without a budget"
    );
    let planned = h.a.plan_consolidation(5);
    let d = h.at(2).ev(Event::Consolidate { max_moves: 5 });
    let moves: Vec<_> = d
        .iter()
        .filter(|d| matches!(d, Decision::Migrate { .. }))
        .collect();
    assert_eq!(moves.len(), planned.len());
    assert_eq!(moves.len(), 1, "the emptier LB's one claim moves: {d:?}");
    assert!(
        d.iter().any(|d| matches!(d, Decision::DeleteLb { .. })),
        "{d:?}"
    );
    // Not allowed to move: nothing moves.
    let mut h = Harness::new(config("worst-fit", 4));
    h.add("t/a", vec![tcp(1)]);
    h.add("t/b", vec![tcp(2)]);
    assert!(h.ev(Event::Consolidate { max_moves: 9 }).is_empty());
}

#[test]
fn lb_failure_replaces_claims() {
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/a", vec![tcp(80)]);
    let lb = h.lb_of("t/a");
    let d = h.at(1).ev(Event::LbFailed(lb));
    assert!(matches!(d[0], Decision::Release { .. }));
    assert!(created(&d).is_some());
    assert_ne!(h.lb_of("t/a"), lb);
}

// ------------------------------------------------------------------ policies

/// Three LBs with 1, 3 and 2 free listeners (capacity 4); a 1-listener claim arrives.
fn three_lbs(p: &str) -> Harness {
    let mut h = Harness::new(config(p, 4));
    // Fill three LBs completely, then free some: lb-1 1 free, lb-2 3 free, lb-3 2 free.
    for lb in 0..3 {
        for i in 0..4 {
            h.add(&format!("t/l{lb}c{i}"), vec![tcp(100 + i)]);
        }
    }
    for c in ["t/l0c0", "t/l1c0", "t/l1c1", "t/l1c2", "t/l2c0", "t/l2c1"] {
        h.remove(c);
    }
    h
}

#[test]
fn first_best_worst_fit_choose_as_named() {
    let mut h = three_lbs("first-fit");
    h.add("t/new", vec![tcp(200)]);
    assert_eq!(h.lb_of("t/new"), LbId(1), "first-fit: lowest id");
    let mut h = three_lbs("best-fit");
    h.add("t/new", vec![tcp(200)]);
    assert_eq!(h.lb_of("t/new"), LbId(1), "best-fit: fullest");
    let mut h = three_lbs("worst-fit");
    h.add("t/new", vec![tcp(200)]);
    assert_eq!(h.lb_of("t/new"), LbId(2), "worst-fit: emptiest");
    // First and best fit skip an LB with too little room.
    let mut h = three_lbs("best-fit");
    h.add("t/two", vec![tcp(200), tcp(201)]);
    assert_eq!(h.lb_of("t/two"), LbId(3));
    let mut h = three_lbs("first-fit");
    h.add("t/two", vec![tcp(200), tcp(201)]);
    assert_eq!(h.lb_of("t/two"), LbId(2));
}

/// A policy walking one order while its rules name another (or every) order.
#[derive(Debug)]
struct Walker {
    names: Walks,
    walk: fn(&View<'_>) -> Option<LbId>,
}

impl Policy for Walker {
    fn choose(&self, view: &View<'_>) -> Option<LbId> {
        (self.walk)(view)
    }

    fn rules(&self) -> PolicyRules {
        PolicyRules {
            walks: self.names,
            ..PolicyRules::default()
        }
    }
}

#[test]
fn an_order_walked_without_being_named_is_still_right() {
    let lowest: fn(&View<'_>) -> Option<LbId> = |v| v.by_id().find(|&lb| v.fits(lb));
    let fullest: fn(&View<'_>) -> Option<LbId> = |v| v.fullest_first().find(|&lb| v.fits(lb));
    let emptiest: fn(&View<'_>) -> Option<LbId> = |v| v.emptiest_first().find(|&lb| v.fits(lb));
    // Room 1, 3 and 2 on LBs 1 to 3 (as `three_lbs`) and none on LB 4: a walk that saw
    // no LB would open LB 5.
    for names in [Walks::LowestIdFirst, Walks::ByRoom, Walks::Every] {
        for (walk, want, what) in [
            (lowest, LbId(1), "lowest id"),
            (fullest, LbId(1), "fullest"),
            (emptiest, LbId(2), "emptiest"),
        ] {
            let mut h = Harness {
                a: Allocator::with_policy(config("first-fit", 4), Arc::new(Walker { names, walk }))
                    .unwrap(),
                now: Time(0),
            };
            for lb in 0..4 {
                for i in 0..4 {
                    h.add(&format!("t/l{lb}c{i}"), vec![tcp(100 + i)]);
                }
            }
            for c in ["t/l0c0", "t/l1c0", "t/l1c1", "t/l1c2", "t/l2c0", "t/l2c1"] {
                h.remove(c);
            }
            h.add("t/new", vec![tcp(200)]);
            assert_eq!(h.lb_of("t/new"), want, "{what} named as {names:?}");
            h.add("t/two", vec![tcp(200), tcp(201)]);
            // Two more ports, 200 among them: by lowest id LB 2 (room 3); the fullest
            // with room for two is LB 3; the emptiest LB 2 holds 200 now, so LB 3.
            let two = if what == "lowest id" {
                LbId(2)
            } else {
                LbId(3)
            };
            assert_eq!(h.lb_of("t/two"), two, "{what} for two named as {names:?}");
        }
    }
}

#[test]
fn hints_of_upcoming_claims_change_no_decision() {
    // Two allocators fed the same events; one is also hinted before each event, with
    // ids live, gone, never seen, and its own claim's. Hints act from 65,536 live
    // claims on, so both are filled past that first.
    const FILL: usize = 66_000;
    let mut plain = Allocator::new(config("best-fit", 4)).unwrap();
    let mut hinted = Allocator::new(config("best-fit", 4)).unwrap();
    let name = |i: usize| format!("t/c{i}");
    let never = id("t/never");
    let feed = |a: &mut Allocator, e: Event| {
        let mut log = Log::default();
        a.drive(Time(0), e, &mut log).unwrap();
        log.0
    };
    for i in 0..FILL {
        let c = Claim::new(&name(i), vec![any_tcp()]).unwrap();
        feed(&mut plain, Event::ClaimAdded(c.clone()));
        feed(&mut hinted, Event::ClaimAdded(c));
    }
    let mut departures = 0;
    let mut stale = None;
    for i in FILL..FILL + 300 {
        // An arrival, and a departure of an earlier claim, in a scrambled order, so
        // slots are freed and reused.
        let gone = id(&name((i * 7919) % (i - 10)));
        let upcoming: Vec<ClaimId> = [i + 1, (i * 31) % i, i / 2, i - 3]
            .iter()
            .map(|&j| id(&name(j)))
            .collect();
        hinted.prefetch(upcoming.iter().chain([&never]));
        hinted.prefetch([&never, &id(&name(i))]);
        hinted.prefetch::<&ClaimId>([]);
        // By key too: keys of live claims, and a key whose claim left (its slot may hold
        // another claim by now).
        let keys: Vec<Upcoming<'_>> = upcoming
            .iter()
            .filter_map(|c| hinted.claim_key(c))
            .chain(stale)
            .map(Upcoming::Key)
            .collect();
        hinted.prefetch(keys);
        let c = Claim::new(&name(i), vec![any_tcp(), tcp(100 + (i % 3) as u16)]).unwrap();
        assert_eq!(
            feed(&mut plain, Event::ClaimAdded(c.clone())),
            feed(&mut hinted, Event::ClaimAdded(c)),
            "arrival {i}"
        );
        if plain.placement(&gone).is_some() {
            hinted.prefetch([&gone, &id(&name(i))]);
            stale = hinted.claim_key(&gone);
            assert_eq!(
                feed(&mut plain, Event::ClaimRemoved(gone.clone())),
                feed(&mut hinted, Event::ClaimRemoved(gone.clone())),
                "departure of {gone}"
            );
            departures += 1;
        }
    }
    assert!(departures > 250, "{departures} departures");
    hinted.check_invariants().unwrap();
    assert_eq!(
        plain.claims(),
        hinted.claims(),
        "the same claims, placed alike"
    );
    assert_eq!(plain.lbs(), hinted.lbs());
}

#[test]
fn first_fit_finds_the_one_lb_with_room_among_thousands() {
    // 3000 full LBs and one with room at the far end: no probe limit may open a new LB.
    let mut h = Harness::new(config("first-fit", 2));
    for i in 0..6001 {
        h.a.drive(
            Time(0),
            Event::ClaimAdded(Claim::new(&format!("t/c{i}"), vec![any_tcp()]).unwrap()),
            &mut Log::default(),
        )
        .unwrap();
    }
    assert_eq!(h.a.lbs().len(), 3001);
    h.remove("t/c3");
    let before = h.a.lbs().len();
    let d = h.add("t/new", vec![any_tcp()]);
    assert!(created(&d).is_none(), "{d:?}");
    assert_eq!(h.a.lbs().len(), before);
    assert_eq!(h.lb_of("t/new"), LbId(2));
}

#[test]
fn dedicated_gives_every_claim_its_own_lb_and_deletes_it_with_the_claim() {
    let mut c = config("dedicated", 50);
    c.idle_timeout_ms = 600_000;
    let mut h = Harness::new(c);
    for i in 0..5 {
        h.add(&format!("t/c{i}"), vec![tcp(80 + i)]);
    }
    assert_eq!(h.a.lbs().len(), 5);
    let d = h.at(1).remove("t/c0");
    assert!(
        d.iter().any(|d| matches!(d, Decision::DeleteLb { .. })),
        "one LB per Service goes with its Service: {d:?}"
    );
    assert!((h.a.cost_per_hour() - h.a.baseline_per_hour()).abs() < 1e-12);
}

#[test]
fn seed_ignores_protocol_and_counts_claims() {
    let mut h = Harness::new(config("seed:10", 50));
    h.add("t/a", vec![tcp(53)]);
    h.add("t/b", vec![udp(53)]);
    assert_ne!(
        h.lb_of("t/a"),
        h.lb_of("t/b"),
        "seed treats 53/UDP as clashing with 53/TCP"
    );
    let mut h = Harness::new(config("best-fit", 50));
    h.add("t/a", vec![tcp(53)]);
    h.add("t/b", vec![udp(53)]);
    assert_eq!(
        h.lb_of("t/a"),
        h.lb_of("t/b"),
        "best-fit shares 53 across protocols"
    );
    let mut h = Harness::new(config("seed:2", 50));
    for i in 0..3 {
        h.add(&format!("t/c{i}"), vec![tcp(80 + i)]);
    }
    assert_eq!(h.a.lbs().len(), 2, "seed caps claims per LB");
}

#[test]
fn conflict_aware_keeps_contended_listener_free() {
    // lb-1 holds 443 (3 free); lb-2 has 443 free (2 free). Two waiting claims also want
    // 443, so 443 is contended. A claim for 8080 fits both.
    let mut c = config("best-fit", 4);
    c.budget.max_lbs = Some(2);
    let mut h = Harness::new(c);
    h.add("t/a", vec![tcp(443)]);
    h.add("t/b", vec![tcp(443), tcp(10)]);
    h.add("t/c", vec![tcp(11), tcp(12)]);
    h.remove("t/b");
    h.add("t/p1", vec![tcp(443), tcp(20), tcp(21), tcp(22)]);
    h.add("t/p2", vec![tcp(443), tcp(20), tcp(21), tcp(22)]);
    assert_eq!(h.reason("t/p1"), Some(PendingReason::BudgetExhausted));
    assert_eq!(h.lb_of("t/a"), LbId(1));
    assert_eq!(h.lb_of("t/c"), LbId(2));
    for (p, expect) in [("conflict-aware", LbId(1)), ("best-fit", LbId(2))] {
        let mut snap = h.a.snapshot();
        snap.config.policy = policy(p);
        let mut b = Harness {
            a: Allocator::restore(snap).unwrap().allocator,
            now: h.now,
        };
        b.ev(Event::Tick);
        b.add("t/web", vec![tcp(8080)]);
        assert_eq!(b.lb_of("t/web"), expect, "{p}");
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
    let c = |p: &str| Config {
        profiles: vec![small.clone(), big.clone()],
        ..Config::with_builtin("aws-nlb", policy(p)).unwrap()
    };
    let opened = |c: Config| {
        let mut h = Harness::new(c);
        let d = h.add("t/a", vec![tcp(80)]);
        d.iter()
            .find_map(|d| match d {
                Decision::CreateLb { profile, .. } => Some(profile.as_str().to_owned()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        opened(c("cost-aware:3")),
        "small",
        "3 listeners: one small LB"
    );
    assert_eq!(
        opened(c("cost-aware:30")),
        "big",
        "30 listeners: one big (4) beats six small (6)"
    );
    // Best fit just opens the first profile.
    assert_eq!(opened(c("best-fit")), "small");
}

#[test]
fn monthly_caps_set_the_price_per_hour() {
    let lb11 = builtin_profile("hetzner-lb11").unwrap();
    assert_eq!(lb11.currency, Currency::Eur);
    assert!(
        (lb11.price_per_month() - 5.39).abs() < 1e-9,
        "{}",
        lb11.price_per_month()
    );
    assert!(lb11.price_per_hour() < lb11.hourly_price);
    // Mixed currencies are refused, not compared as equal numbers.
    let c = Config {
        profiles: vec![builtin_profile("aws-nlb").unwrap(), lb11],
        ..Config::with_builtin("aws-nlb", policy("cost-aware")).unwrap()
    };
    let e = Allocator::new(c).unwrap_err().to_string();
    assert!(e.contains("USD") && e.contains("EUR"), "{e}");
}

#[test]
fn a_budget_of_exactly_n_monthly_capped_lbs_admits_n() {
    // 1461 LB11s at their monthly cap (5.39 EUR over 730.5 h) cost exactly 2 × 5.39 =
    // 10.78 EUR/h. The price has no exact nano-unit form: rounding each LB's price to
    // nano-units once made the 1461st claim wait for the budget.
    let mut c = Config::with_builtin("hetzner-lb11", policy("dedicated")).unwrap();
    c.budget.max_cost_per_hour = Some(10.78);
    let mut a = Allocator::new(c).unwrap();
    let mut log = Log(Vec::new());
    for i in 0..1462 {
        let claim = Claim::new(&format!("t/c{i}"), vec![tcp(80)]).unwrap();
        a.drive(Time(0), Event::ClaimAdded(claim), &mut log)
            .unwrap();
    }
    let id = |i: u32| ClaimId::new(format!("t/c{i}")).unwrap();
    assert_eq!(
        a.pending_reason(&id(1460)),
        None,
        "the 1461st fits the budget"
    );
    assert_eq!(
        a.pending_reason(&id(1461)),
        Some(PendingReason::BudgetExhausted),
        "the 1462nd does not"
    );
    assert_eq!(a.lbs().len(), 1461);
    // The dedicated policy's LBs are its baseline: equal to the last bit.
    assert_eq!(a.cost_per_hour().to_bits(), a.baseline_per_hour().to_bits());
}

#[test]
fn sharing_rules() {
    let mut h = Harness::new(config("best-fit", 10));
    let mk =
        |c: &str, s: Sharing, port: u16| Claim::new(c, vec![tcp(port)]).unwrap().with_sharing(s);
    h.ev(Event::ClaimAdded(mk("t/a", Sharing::Tenant, 1)));
    h.ev(Event::ClaimAdded(mk("u/a", Sharing::Tenant, 2)));
    assert_ne!(
        h.lb_of("t/a"),
        h.lb_of("u/a"),
        "tenants do not share by default"
    );
    h.ev(Event::ClaimAdded(mk("t/o", Sharing::Anyone, 3)));
    h.ev(Event::ClaimAdded(mk("u/o", Sharing::Anyone, 4)));
    assert_eq!(h.lb_of("t/o"), h.lb_of("u/o"), "both opted in");
    h.ev(Event::ClaimAdded(mk("t/g", Sharing::Group(key("k")), 5)));
    h.ev(Event::ClaimAdded(mk("t/h", Sharing::Group(key("k")), 6)));
    h.ev(Event::ClaimAdded(mk(
        "t/i",
        Sharing::Group(key("other")),
        7,
    )));
    assert_eq!(h.lb_of("t/g"), h.lb_of("t/h"));
    assert_ne!(h.lb_of("t/g"), h.lb_of("t/i"));
    h.ev(Event::ClaimAdded(mk(
        "t/x",
        Sharing::CrossTenantGroup(key("x")),
        8,
    )));
    h.ev(Event::ClaimAdded(mk(
        "u/x",
        Sharing::CrossTenantGroup(key("x")),
        9,
    )));
    assert_eq!(h.lb_of("t/x"), h.lb_of("u/x"));
}

#[test]
fn claims_alike_that_change_and_go_keep_the_books_of_their_shared_settings() {
    // Claims alike share one kept copy of their settings; every step's invariant check
    // counts each kept copy's claims.
    let mut h = Harness::new(config("best-fit", 10));
    h.add("t/a", vec![any_tcp()]);
    h.add("t/b", vec![any_tcp()]);
    h.add("u/c", vec![any_tcp()]);
    h.ev(Event::ClaimUpdated(
        Claim::new("t/b", vec![any_tcp(), tcp(80)]).unwrap(),
    ));
    h.ev(Event::ClaimUpdated(
        Claim::new("t/a", vec![any_tcp(), tcp(80)]).unwrap(),
    ));
    h.ev(Event::ClaimUpdated(
        Claim::new("t/b", vec![any_tcp()]).unwrap(),
    ));
    let a = h.a.claim(&id("t/a")).unwrap().clone();
    assert_eq!(a.ports(), [any_tcp(), tcp(80)]);
    h.remove("t/a");
    h.remove("t/b");
    // The copy kept above outlives its claim; a newcomer alike is unaffected by it.
    h.ev(Event::ClaimAdded(a.clone()));
    assert_eq!(h.a.claim(&id("t/a")), Some(&a));
    h.remove("t/a");
    h.remove("u/c");
    assert_eq!(h.a.claim_count(), 0);
}

#[test]
fn a_copy_of_a_gone_claim_comes_back_to_the_settings_kept_for_a_newcomer_alike() {
    // `t/a`'s kept settings go with it and their place is reused by `t/b`'s, equal but
    // another copy; the copy of `t/a` a caller kept still names that place. Coming back,
    // it must share `t/b`'s copy, not count as it: the invariant check recounts.
    let mut h = Harness::new(config("best-fit", 10));
    h.add("t/a", vec![any_tcp()]);
    let a = h.a.claim(&id("t/a")).unwrap().clone();
    h.remove("t/a");
    h.add("t/b", vec![any_tcp()]);
    h.ev(Event::ClaimAdded(a));
    h.remove("t/b");
    h.remove("t/a");
    assert_eq!(h.a.claim_count(), 0);
}

#[test]
fn two_allocators_fed_the_same_claims_from_one_template_keep_their_books_apart() {
    // A shell may hand the very same claim values to two allocators (comparing
    // policies), made from one template, so every claim shares one body. Each allocator
    // keeps its own account of that body: claims leaving and coming back in a different
    // order on each side must leave both consistent (the invariant check recounts).
    let template = Claim::new("t/template", vec![any_tcp()]).unwrap();
    let claims: Vec<Claim> = (0..6)
        .map(|i| template.renamed(id(&format!("t/c{i}"))))
        .collect();
    let mut a = Harness::new(config("best-fit", 2));
    let mut b = Harness::new(config("first-fit", 2));
    for c in &claims {
        a.ev(Event::ClaimAdded(c.clone()));
        b.ev(Event::ClaimAdded(c.clone()));
    }
    // All leave from `a`, then one comes back; only half leave from `b`.
    for c in &claims {
        a.remove(c.id().as_str());
    }
    for c in &claims[..3] {
        b.remove(c.id().as_str());
    }
    a.ev(Event::ClaimAdded(claims[0].clone()));
    b.ev(Event::ClaimAdded(claims[0].clone()));
    assert_eq!((a.a.claim_count(), b.a.claim_count()), (1, 4));
    a.a.check_invariants().unwrap();
    for c in &claims[3..] {
        b.remove(c.id().as_str());
    }
    a.remove("t/c0");
    b.remove("t/c0");
    assert_eq!((a.a.claim_count(), b.a.claim_count()), (0, 0));
}

#[test]
fn a_claim_read_from_one_allocator_is_kept_apart_in_another() {
    // The claim `a` hands out carries `a`'s kept body, whose place number means nothing
    // to another allocator: there the same place may hold an equal body (another copy)
    // or another body altogether. Each must find its own equal body, count it and
    // release it; the invariant check recounts bodies by address.
    let mut a = Harness::new(config("best-fit", 10));
    a.add("t/y", vec![any_tcp()]);
    let from_a = a.a.claim(&id("t/y")).unwrap().clone();
    // `b` keeps the same kind first: an equal body at the same place number.
    let mut b = Harness::new(config("best-fit", 10));
    b.add("t/x", vec![any_tcp()]);
    b.ev(Event::ClaimAdded(from_a.clone()));
    // `c` keeps a UDP body first: another body at that place number.
    let mut c = Harness::new(config("best-fit", 10));
    c.add("t/u", vec![PortRequest::Any(Protocol::Udp)]);
    c.add("t/x", vec![any_tcp()]);
    c.ev(Event::ClaimAdded(from_a));
    a.a.check_invariants().unwrap();
    for h in [&mut b, &mut c] {
        h.remove("t/x");
        h.remove("t/y");
    }
    c.remove("t/u");
    a.remove("t/y");
    let counts = [&a, &b, &c].map(|h| h.a.claim_count());
    assert_eq!(counts, [0, 0, 0]);
}

#[test]
fn an_update_that_changes_a_ports_protocol_does_not_keep_the_old_port_number() {
    // The port kept on an update is the old listener's, protocol and all: a TCP port
    // turned UDP takes the lowest free UDP port, not the same number.
    let mut h = Harness::new(config("best-fit", 10));
    h.add("t/f", vec![any_tcp()]);
    h.add("t/x", vec![any_tcp()]);
    let (lb, ls) = h.a.placement(&id("t/x")).unwrap();
    assert_eq!(ls[..], [Listener::tcp(30001).unwrap()]);
    let udp_any = PortRequest::Any(Protocol::Udp);
    h.ev(Event::ClaimUpdated(
        Claim::new("t/x", vec![udp_any]).unwrap(),
    ));
    let (lb2, ls) = h.a.placement(&id("t/x")).unwrap();
    assert_eq!(lb2, lb, "it stays on its LB");
    assert_eq!(ls[..], [Listener::udp(30000).unwrap()]);
}

#[test]
fn any_ports_are_lowest_free_and_stable_across_update() {
    let mut h = Harness::new(config("best-fit", 10));
    h.add("t/a", vec![any_tcp(), any_tcp()]);
    let (_, ls) = h.a.placement(&id("t/a")).unwrap();
    assert_eq!(
        ls.iter().map(|l| l.port.get()).collect::<Vec<_>>(),
        vec![30000, 30001]
    );
    h.add("t/b", vec![any_tcp()]);
    h.remove("t/a");
    // b keeps its port when updated, although lower ones are now free.
    let b = Claim::new("t/b", vec![any_tcp(), tcp(80)]).unwrap();
    h.ev(Event::ClaimUpdated(b));
    let (_, ls) = h.a.placement(&id("t/b")).unwrap();
    assert_eq!(ls[0].port.get(), 30002);
    // The freed ports are found again, lowest first, and a fixed port in the range is
    // stepped over.
    h.add("t/c", vec![tcp(30000), any_tcp(), any_tcp()]);
    let (_, ls) = h.a.placement(&id("t/c")).unwrap();
    assert_eq!(
        ls.iter().map(|l| l.port.get()).collect::<Vec<_>>(),
        vec![30000, 30001, 30003]
    );
}

#[test]
fn automatic_range_ending_at_65535() {
    let mut p = profile(10);
    p.auto_ports = PortRange {
        first: Port::new(65533).unwrap(),
        last: Port::MAX,
    };
    p.reserved = vec![Port::new(65534).unwrap()];
    let mut h = Harness::new(Config {
        profiles: vec![p],
        ..config("first-fit", 10)
    });
    h.add("t/a", vec![any_tcp(), any_tcp()]);
    let (_, ls) = h.a.placement(&id("t/a")).unwrap();
    assert_eq!(
        ls.iter().map(|l| l.port.get()).collect::<Vec<_>>(),
        vec![65533, 65535]
    );
    h.add("t/b", vec![any_tcp()]);
    // The only LB's range is full: a second LB opens.
    assert_eq!(h.a.lbs().len(), 2);
}

/// Claim `c` asking TCP port `p`, shared with anyone: tenants' claims in one pool.
fn shared(c: &str, p: u16) -> Claim {
    Claim::new(c, vec![tcp(p)])
        .unwrap()
        .with_sharing(Sharing::Anyone)
}

#[test]
fn fair_retry_prefers_tenant_under_its_share() {
    let mut c = config("best-fit", 2);
    c.budget.max_lbs = Some(2);
    let mut h = Harness::new(c);
    // Tenant big fills both LBs (a shared pool), small waits; then one listener frees.
    for (i, c) in ["big/a", "big/b", "big/c", "big/d"].iter().enumerate() {
        h.ev(Event::ClaimAdded(shared(c, 10 + i as u16)));
    }
    h.at(1).ev(Event::ClaimAdded(shared("big/e", 20)));
    h.at(2).ev(Event::ClaimAdded(shared("small/a", 21)));
    assert!(h.reason("big/e").is_some() && h.reason("small/a").is_some());
    // big/e arrived first, but small holds nothing and goes first.
    h.at(3).remove("big/a");
    assert!(h.reason("small/a").is_none(), "small placed");
    assert!(h.reason("big/e").is_some(), "big still waits");
}

#[test]
fn fair_retry_breaks_a_tie_between_tenants_by_name() {
    let mut c = config("best-fit", 2);
    c.budget.max_lbs = Some(1);
    let mut h = Harness::new(c);
    h.ev(Event::ClaimAdded(shared("hold/a", 10)));
    h.ev(Event::ClaimAdded(shared("hold/b", 11)));
    // Two tenants holding nothing, of one weight, each asking one listener: a tie.
    // "zed" waits longer, but the turns go in name order, so "abe" takes the room.
    h.at(1).ev(Event::ClaimAdded(shared("zed/x", 20)));
    h.at(2).ev(Event::ClaimAdded(shared("abe/x", 21)));
    assert!(h.reason("zed/x").is_some() && h.reason("abe/x").is_some());
    let d = h.at(3).remove("hold/a");
    assert!(assigned(&d, "abe/x"), "{d:?}");
    assert!(h.reason("zed/x").is_some(), "zed still waits");
}

/// One LB of two listeners, a budget of one LB: `t/a` and `t/b` fill it, `t/c` and `t/d`
/// wait in that order.
fn two_waiting() -> Harness {
    let mut c = config("best-fit", 2);
    c.budget.max_lbs = Some(1);
    let mut h = Harness::new(c);
    for (i, c) in ["t/a", "t/b", "t/c", "t/d"].iter().enumerate() {
        h.at(i as u64).add(c, vec![tcp(80 + i as u16)]);
    }
    assert_eq!(h.reason("t/d"), Some(PendingReason::BudgetExhausted));
    h
}

/// `t/e` and `t/f` arrive, then the claims on the LB leave one by one: each frees room
/// for the oldest waiting claim. Returns who took each freed room.
fn oldest_first(h: &mut Harness) -> Vec<String> {
    h.at(10).add("t/e", vec![tcp(90)]);
    then_f_and_leave(h)
}

fn then_f_and_leave(h: &mut Harness) -> Vec<String> {
    h.at(11).add("t/f", vec![tcp(91)]);
    let mut took = vec![];
    for (i, c) in ["t/a", "t/b", "t/c", "t/d"].iter().enumerate() {
        let d = h.at(20 + i as u64).remove(c);
        took.extend(d.iter().filter_map(|d| match d {
            Decision::Assign { claim, .. } => Some(claim.to_string()),
            _ => None,
        }));
    }
    took
}

fn arrival_number(h: &Harness, claim: &str) -> Option<u64> {
    let snap = h.a.snapshot();
    snap.claims
        .into_iter()
        .find(|r| r.claim.id().as_str() == claim)
        .map(|r| r.seq)
}

#[test]
fn arrival_numbers_that_run_out_are_given_afresh_in_the_same_order() {
    let mut h = two_waiting();
    // The same claims, as if four billion had arrived before them: t/e takes the last
    // number there is, and t/f's arrival renumbers every live claim.
    let mut snap = h.a.snapshot();
    for r in &mut snap.claims {
        r.seq += u64::from(u32::MAX) - 10;
    }
    snap.next_seq = u64::from(u32::MAX) - 1;
    let mut late = Harness {
        a: Allocator::restore(snap).unwrap().allocator,
        now: Time(0),
    };
    let expected = ["t/c", "t/d", "t/e", "t/f"];
    assert_eq!(oldest_first(&mut h), expected);
    late.at(10).add("t/e", vec![tcp(90)]);
    assert_eq!(arrival_number(&late, "t/e"), Some(u64::from(u32::MAX) - 1));
    assert_eq!(then_f_and_leave(&mut late), expected);
    // Renumbered from 0: t/e and t/f are left, the fifth and sixth to arrive.
    assert_eq!(arrival_number(&late, "t/f"), Some(5));
    assert_eq!(late.a.snapshot().next_seq, 6);
}

#[test]
fn a_snapshot_with_a_claim_numbered_at_the_top_keeps_the_order() {
    let mut h = two_waiting();
    let mut snap = h.a.snapshot();
    // t/d carries the one number a live claim can never have; the rest fit.
    for r in &mut snap.claims {
        if r.claim.id().as_str() == "t/d" {
            r.seq = u64::from(u32::MAX);
        }
    }
    snap.next_seq = 5;
    let mut late = Harness {
        a: Allocator::restore(snap).unwrap().allocator,
        now: Time(0),
    };
    late.a.check_invariants().unwrap();
    assert_eq!(oldest_first(&mut late), oldest_first(&mut h));
}

#[test]
fn a_snapshot_with_some_numbers_that_fit_and_some_not_keeps_the_order() {
    let h = two_waiting();
    let mut snap = h.a.snapshot();
    // t/d now arrived first and t/c last.
    for r in &mut snap.claims {
        match r.claim.id().as_str() {
            "t/d" => r.seq = 7,
            "t/c" => r.seq = 1 << 40,
            _ => {}
        }
    }
    snap.next_seq = (1 << 40) + 2;
    let mut late = Harness {
        a: Allocator::restore(snap).unwrap().allocator,
        now: Time(0),
    };
    late.a.check_invariants().unwrap();
    assert_eq!(oldest_first(&mut late), ["t/d", "t/c", "t/e", "t/f"]);
}

#[test]
fn a_snapshot_whose_arrival_numbers_do_not_fit_keeps_their_order() {
    let mut h = two_waiting();
    let mut snap = h.a.snapshot();
    // Numbers from an older allocator that kept eight bytes, in reverse record order.
    for r in &mut snap.claims {
        r.seq = (r.seq + 1) << 40;
    }
    snap.claims.reverse();
    snap.next_seq = 1 << 50;
    let mut late = Harness {
        a: Allocator::restore(snap).unwrap().allocator,
        now: Time(0),
    };
    late.a.check_invariants().unwrap();
    assert_eq!(late.a.snapshot().next_seq, 4, "numbered afresh from 0");
    assert_eq!(oldest_first(&mut late), oldest_first(&mut h));
}

#[test]
fn once_every_lb_id_is_handed_out_only_existing_lbs_take_claims() {
    let mut h = Harness::new(config("best-fit", 1));
    h.add("t/x", vec![tcp(79)]);
    assert_eq!(h.lb_of("t/x"), LbId(1));
    // A restore whose next id is the last there is (as when a controller reads an LB of
    // that id from its Services).
    let mut snap = h.a.snapshot();
    snap.next_lb = u64::from(u32::MAX);
    let mut c = snap.config.clone();
    c.idle_timeout_ms = 0;
    snap.config = c;
    h.a = Allocator::restore(snap).unwrap().allocator;
    assert_eq!(
        created(&h.at(1).add("t/a", vec![tcp(80)])),
        Some(LbId(u32::MAX))
    );
    let d = h.at(2).add("t/b", vec![tcp(81)]);
    let (r, msg) = pending_of(&d).unwrap();
    assert_eq!(r, PendingReason::BudgetExhausted);
    assert!(msg.contains("every LB id has been handed out"), "{msg}");
    // No id is reused, not even one whose LB is gone: lb-1 empties, is deleted, and t/b
    // still waits.
    h.at(3).remove("t/x");
    h.at(4).ev(Event::Tick);
    h.at(5).ev(Event::LbDeleted(LbId(1)));
    assert!(h.a.lb_state(LbId(1)).is_none(), "lb-1 is gone");
    h.at(6).ev(Event::Tick);
    assert_eq!(h.reason("t/b"), Some(PendingReason::BudgetExhausted));
    // The last LB still serves: t/a leaves and t/b takes its place.
    let d = h.at(7).remove("t/a");
    assert!(assigned(&d, "t/b"), "{d:?}");
    assert_eq!(h.lb_of("t/b"), LbId(u32::MAX));
}

// ------------------------------------------------------------------ restore

/// A restore of `snap` keeps everything but the placement of `dropped`, for `why`.
fn drops(snap: Snapshot, dropped: &str, why: &str) {
    let r = Allocator::restore(snap).unwrap();
    r.allocator.check_invariants().unwrap();
    assert_eq!(r.dropped.len(), 1, "{:?}", r.dropped);
    assert_eq!(
        r.dropped[0].claim.as_ref().map(ClaimId::as_str),
        Some(dropped)
    );
    assert!(
        r.dropped[0].reason.contains(why),
        "{:?} should say {why:?}",
        r.dropped[0].reason
    );
    assert!(r.allocator.placement(&id(dropped)).is_none());
    assert_eq!(r.allocator.next_wakeup(), Some(r.allocator.now()));
}

fn two_claims(p: &str) -> Harness {
    let mut h = Harness::new(config(p, 4));
    h.add("t/a", vec![tcp(80)]);
    h.add("t/b", vec![tcp(81)]);
    h
}

#[test]
fn restore_takes_lbs_recorded_out_of_id_order() {
    let mut h = three_lbs("first-fit");
    let mut snap = h.a.snapshot();
    snap.lbs.reverse();
    let r = Allocator::restore(snap).unwrap();
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    r.allocator.check_invariants().unwrap();
    // First-fit still finds the lowest id with room: lb-1, with one listener free.
    h.a = r.allocator;
    let d = h.at(100).add("t/new", vec![tcp(9)]);
    assert!(assigned(&d, "t/new"), "{d:?}");
    assert_eq!(h.lb_of("t/new"), LbId(1));
}

#[test]
fn restore_drops_a_double_booking() {
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].claim = Claim::new("t/b", vec![tcp(80)]).unwrap();
    snap.claims[1].placement.as_mut().unwrap().1 = vec![Listener::tcp(80).unwrap()].into();
    drops(snap, "t/b", "already used by another claim");
}

#[test]
fn restore_drops_what_an_older_policy_allowed() {
    // best-fit put 53/TCP and 53/UDP of two claims on one LB; seed forbids it.
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/a", vec![tcp(53)]);
    h.add("t/b", vec![udp(53)]);
    let mut snap = h.a.snapshot();
    snap.config.policy = policy("seed");
    drops(snap, "t/b", "already used by another claim");
    // seed:1 allows one claim per LB.
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.config.policy = policy("seed:1");
    drops(snap, "t/b", "no room");
}

#[test]
fn restore_drops_a_profile_that_forbids_one_port_for_two_protocols() {
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/dns", vec![tcp(53), udp(53)]);
    let mut snap = h.a.snapshot();
    snap.config.profiles[0].shared_port_numbers = false;
    drops(
        snap,
        "t/dns",
        "cannot hold one port number for two protocols",
    );
}

#[test]
fn restore_drops_a_changed_sharing_rule() {
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].claim = snap.claims[1].claim.clone().with_sharing(Sharing::Anyone);
    drops(snap, "t/b", "another sharing pool");
    // A dedicated claim on a shared LB, and two claims on a dedicated LB.
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[0].claim = snap.claims[0]
        .claim
        .clone()
        .with_sharing(Sharing::Dedicated);
    drops(snap, "t/a", "another sharing pool");
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.config.policy = policy("dedicated");
    snap.lbs[0].pool = sharedlb_allocator::PoolKey::Dedicated(TenantId::new("t").unwrap());
    drops(snap, "t/b", "no room");
}

#[test]
fn restore_drops_mixed_protocols_on_a_single_protocol_profile() {
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/a", vec![tcp(80)]);
    h.add("t/b", vec![udp(81)]);
    let mut snap = h.a.snapshot();
    snap.config.profiles[0].mixed_protocols = false;
    drops(snap, "t/b", "another protocol");
}

#[test]
fn restore_drops_automatic_ports_outside_the_range_or_reserved() {
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/a", vec![tcp(80)]);
    h.add("t/b", vec![any_tcp()]);
    let mut snap = h.a.snapshot();
    snap.config.profiles[0].auto_ports.first = Port::new(31000).unwrap();
    snap.config.profiles[0].auto_ports.last = Port::new(31009).unwrap();
    drops(snap, "t/b", "does not answer");
    let mut snap = h.a.snapshot();
    snap.config.profiles[0].reserved = vec![Port::new(30000).unwrap()];
    drops(snap, "t/b", "does not answer");
}

#[test]
fn restore_drops_wrong_listeners_and_missing_or_draining_lbs() {
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].placement.as_mut().unwrap().1 = vec![Listener::tcp(82).unwrap()].into();
    drops(snap, "t/b", "does not answer");
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].placement.as_mut().unwrap().1 = Listeners::default();
    drops(snap, "t/b", "0 listeners recorded for 1 ports");
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].placement.as_mut().unwrap().0 = LbId(9);
    drops(snap, "t/b", "lb-9 is not recorded");
    let mut h = two_claims("best-fit");
    let mut snap = h.a.snapshot();
    snap.lbs[0].state = LbState::Draining;
    let r = Allocator::restore(snap).unwrap();
    assert_eq!(r.dropped.len(), 2, "{:?}", r.dropped);
    assert!(r.dropped.iter().all(|d| d.reason.contains("being deleted")));
    // Over capacity: the first claims in arrival order keep their places.
    h.add("t/c", vec![tcp(82)]);
    let mut snap = h.a.snapshot();
    snap.config.profiles[0].max_listeners = 2;
    drops(snap, "t/c", "no room");
}

#[test]
fn restore_drops_pins_lb_records_and_duplicates() {
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.claims[1].claim = snap.claims[1].claim.clone().with_pinned_lb(Some(LbId(7)));
    drops(snap, "t/b", "pinned to another LB");
    let mut snap = two_claims("best-fit").a.snapshot();
    snap.lbs[0].profile = ProfileName::new("gone").unwrap();
    let r = Allocator::restore(snap).unwrap();
    r.allocator.check_invariants().unwrap();
    assert_eq!(
        r.dropped.len(),
        3,
        "the LB and both placements: {:?}",
        r.dropped
    );
    assert!(
        r.dropped[0]
            .reason
            .contains("profile gone is not configured")
    );
    let mut snap = two_claims("best-fit").a.snapshot();
    let dup = snap.claims[0].clone();
    snap.claims.push(dup);
    let r = Allocator::restore(snap).unwrap();
    assert_eq!(r.dropped.len(), 1);
    assert!(r.dropped[0].reason.contains("recorded twice"));
    assert_eq!(r.allocator.placed_count(), 2);
}

#[test]
fn restore_keeps_placements_over_a_lowered_quota_or_budget_but_admits_no_more() {
    let mut h = two_claims("best-fit");
    h.add("t/c", vec![tcp(82)]);
    let mut snap = h.a.snapshot();
    snap.config.tenants.insert(
        TenantId::new("t").unwrap(),
        TenantConfig {
            weight: 1,
            quota: Quota {
                max_claims: Some(1),
                ..Quota::default()
            },
        },
    );
    snap.config.budget.max_lbs = Some(0);
    let r = Allocator::restore(snap).unwrap();
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    let mut h = Harness {
        a: r.allocator,
        now: Time(0),
    };
    assert_eq!(h.a.placed_count(), 3, "running claims are not evicted");
    h.add("t/d", vec![tcp(83)]);
    assert_eq!(h.reason("t/d"), Some(PendingReason::QuotaExceeded));
}

// ------------------------------------------------------------------ errors

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut h = Harness::new(config("best-fit", 4));
    h.add("t/a", vec![tcp(80)]);
    let before = h.a.snapshot();
    let dup = h.try_ev(Event::ClaimAdded(Claim::new("t/a", vec![tcp(81)]).unwrap()));
    assert!(matches!(dup, Err(Error::DuplicateClaim(_))));
    let unknown = h.try_ev(Event::ClaimRemoved(id("t/zz")));
    assert!(matches!(unknown, Err(Error::UnknownClaim(_))));
    let unknown = h.try_ev(Event::ClaimUpdated(
        Claim::new("t/zz", vec![tcp(81)]).unwrap(),
    ));
    assert!(matches!(unknown, Err(Error::UnknownClaim(_))));
    for e in [Event::LbReady, Event::LbFailed, Event::LbDeleted] {
        assert!(matches!(h.try_ev(e(LbId(99))), Err(Error::UnknownLb(_))));
    }
    assert_eq!(h.a.snapshot(), before, "refused events change nothing");
    h.at(10).ev(Event::Tick);
    assert!(matches!(
        h.at(5).try_ev(Event::Tick),
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
    assert!(Claim::new(&"x".repeat(600), vec![tcp(80)]).is_err());
    assert!(
        GroupKey::new("   ").is_err(),
        "a blank group key is not a key"
    );
    assert!("nope".parse::<PolicyKind>().is_err());
    assert!("seed:0".parse::<PolicyKind>().is_err());
    assert!("best-fit:3".parse::<PolicyKind>().is_err());
    let j: Result<Claim, _> = serde_json::from_str(
        r#"{"id":"a/b","tenant":"a","ports":[{"protocol":"TCP","port":70000}]}"#,
    );
    assert!(j.is_err());
    let j: Result<Claim, _> = serde_json::from_str(
        r#"{"id":"a/b","tenant":"a","ports":[{"protocol":"TCP","port":80},{"protocol":"TCP","port":80}]}"#,
    );
    assert!(j.is_err(), "deserializing checks the claim too");
    let j: Result<Claim, _> = serde_json::from_str(
        r#"{"id":"a/b","tenant":"a","ports":[],"sharing":{"kind":"group","key":" "}}"#,
    );
    assert!(j.is_err());
    let j: Claim =
        serde_json::from_str(r#"{"id":"a/b","tenant":"a","ports":[{"protocol":"TCP","port":0}]}"#)
            .unwrap();
    assert_eq!(j.ports(), &[any_tcp()]);
    let mut bad = config("best-fit", 4);
    bad.profiles[0].max_listeners = 0;
    assert!(Allocator::new(bad).is_err());
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
    let rule = PortRule::of_profile(p);
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
            .all(|(i, a)| ls[i + 1..].iter().all(|b| !rule.clash(*a, *b)))
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
        let rule = PortRule::of_profile(&p);
        // Claims the profile cannot hold at all have no optimum: leave them out.
        let claims: Vec<Claim> = claims
            .into_iter()
            .filter(|c| {
                let ls: Vec<Listener> = c.fixed_listeners().collect();
                c.listener_count() <= cap
                    && (mixed || ls.iter().all(|l| l.protocol == ls[0].protocol))
                    && ls.iter().enumerate().all(|(i, a)| ls[i + 1..].iter().all(|b| !rule.clash(*a, *b)))
            })
            .collect();
        if claims.is_empty() {
            return Ok(());
        }
        let opt = brute_force(&claims, &p) as u64;
        let lb = lower_bound(&claims, &p);
        prop_assert!(lb.total <= opt, "bound {:?} above optimum {}", lb, opt);
        let plan = plan_offline(&claims, &p).unwrap();
        prop_assert!(plan.unplaced.is_empty());
        prop_assert!(plan.lbs.len() as u64 >= opt, "plan {} below optimum {}", plan.lbs.len(), opt);
    }
}

#[test]
fn a_claim_keeps_its_key_through_updates_and_frees_it_when_it_leaves() {
    // Five ports: held beside the claim table; two: inline. Updates move the claim
    // between the two and to another tenant's LB; its key must not change.
    let mut h = Harness::new(config("best-fit", 10));
    let five: Vec<PortRequest> = (0..5).map(|_| any_tcp()).collect();
    h.add("t/a", vec![any_tcp()]);
    h.add("t/big", five.clone());
    h.add("t/c", vec![any_tcp()]);
    let key = h.a.claim_key(&id("t/big")).unwrap();
    let others = [
        h.a.claim_key(&id("t/a")).unwrap(),
        h.a.claim_key(&id("t/c")).unwrap(),
    ];
    assert!(!others.contains(&key));
    let updates = [
        Claim::new("t/big", vec![any_tcp(), tcp(80)]).unwrap(),
        Claim::new("t/big", five.clone()).unwrap(),
        Claim::new("t/big", five)
            .unwrap()
            .with_tenant(TenantId::new("u").unwrap()),
        Claim::new("t/big", vec![udp(53)]).unwrap(),
    ];
    for c in updates {
        let ports = c.ports().len();
        h.ev(Event::ClaimUpdated(c));
        assert_eq!(h.a.claim_key(&id("t/big")), Some(key), "{ports} ports");
        assert_eq!(h.a.claim_by_key(key).map(|c| c.ports().len()), Some(ports));
        assert_eq!(h.a.placement(&id("t/big")).unwrap().1.len(), ports);
    }
    h.remove("t/big");
    assert_eq!(h.a.claim_key(&id("t/big")), None);
    assert_eq!(h.a.claim_by_key(key), None);
    // The freed key goes to the next claim; the others' keys stay theirs.
    h.add("t/d", vec![any_tcp()]);
    assert_eq!(h.a.claim_key(&id("t/d")), Some(key));
    assert_eq!(h.a.claim_key(&id("t/a")), Some(others[0]));
    assert_eq!(h.a.claim_key(&id("t/c")), Some(others[1]));
}

/// A snapshot may give two claims one arrival number (the restore keeps both). When their
/// LB fails, each claim is still released once: the claims on an LB are put in order by
/// (arrival, slot), so one claim's listeners stay together and repeats are dropped.
#[test]
fn claims_sharing_an_arrival_number_are_released_once_each() {
    let names = ["t/a", "t/b", "t/c", "t/d"];
    let mut h = Harness::new(config("best-fit", 8));
    for (i, c) in (0u16..).zip(names) {
        h.add(c, vec![tcp(80 + i), tcp(84 + i)]);
    }
    let lb = h.lb_of("t/a");
    assert!(
        names.iter().all(|c| h.lb_of(c) == lb),
        "all fit one LB of eight"
    );
    let mut snap = h.a.snapshot();
    for r in &mut snap.claims {
        r.seq = 0;
    }
    let r = Allocator::restore(snap).unwrap();
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    let mut h = Harness {
        a: r.allocator,
        now: Time(0),
    };
    let ds = h.ev(Event::LbFailed(lb));
    for c in names {
        let releases = ds
            .iter()
            .filter(|d| matches!(d, Decision::Release { claim, .. } if claim.as_str() == c))
            .count();
        assert_eq!(releases, 1, "{c}: {ds:?}");
    }
}

/// Claims on one hot fixed listener (443/TCP, asked by more than 32 claims, so the pool
/// index counts the LBs it clashes on): each takes an LB of its own, a claim goes
/// straight to an empty LB when every other LB with room holds 443, waits for a clash
/// (not the budget) when there is none, and the counts stay right as the listener
/// cools down and its LBs go. Every policy that walks candidates alike.
#[test]
fn a_hot_fixed_listener_takes_empty_lbs_and_waits_for_a_clash() {
    for p in [
        "best-fit",
        "first-fit",
        "worst-fit",
        "conflict-aware",
        "cost-aware",
    ] {
        let mut c = config(p, 4);
        c.idle_timeout_ms = 600_000;
        c.budget.max_lbs = Some(40);
        let mut h = Harness::new(c);
        for i in 0..40 {
            h.add(&format!("t/c{i}"), vec![tcp(443), any_tcp()]);
            assert_eq!(h.lb_of(&format!("t/c{i}")), LbId(i + 1), "{p}: c{i}");
        }
        // Two LBs emptied (kept for their idle timeout): the next two 443 claims take
        // them, lowest id first, whichever order the policy walks.
        h.remove("t/c5");
        h.remove("t/c20");
        h.add("t/n1", vec![tcp(443)]);
        assert_eq!(h.lb_of("t/n1"), LbId(6), "{p}");
        h.add("t/n2", vec![tcp(443), any_tcp()]);
        assert_eq!(h.lb_of("t/n2"), LbId(21), "{p}");
        // No empty LB, no LB left in the budget: it waits, and for the clash.
        h.add("t/n3", vec![tcp(443)]);
        assert_eq!(
            h.a.pending_reason(&id("t/n3")),
            Some(PendingReason::PortConflict),
            "{p}"
        );
        // A claim without 443 still shares an LB.
        h.add("t/x", vec![any_tcp()]);
        assert!(h.a.placement(&id("t/x")).is_some(), "{p}");
        // The listener cools down (fewer than 8 claims ask for it) and its LBs go at
        // their idle timeout; the harness checks the counts after every event.
        for i in (0..40).filter(|&i| i != 5 && i != 20) {
            h.remove(&format!("t/c{i}"));
        }
        h.at(3_600_000).ev(Event::Tick);
        assert!(
            h.a.placement(&id("t/n3")).is_some(),
            "{p}: placed once LBs freed"
        );
    }
}
