//! Claims asking for hot fixed listeners walk only the LBs those do not clash on
//! (`View::pooled`): an allocator that tracks listeners as hot from a few claims must decide
//! exactly as one that never does — every decision, every pending reason — under every
//! policy, with claims eligible for two profiles (merged walks), profiles mixing protocols
//! on an LB or not (an index per protocol class), budgets that make claims
//! wait, migrations and consolidation, and listeners that stop being hot.

use proptest::prelude::*;
use sharedlb_allocator::{
    Allocator, Budget, Claim, Config, Currency, Decision, Event, LbProfile, LbState, Listener,
    PolicyKind, Port, PortRange, PortRequest, ProfileName, Protocol, Reports, Shell, Time,
};

#[derive(Default)]
struct Log(Vec<Decision>);

impl Shell for Log {
    fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
        self.0.push(d);
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Ports (0: any TCP port, else a fixed listener by number) and a profile pin.
    Add(Vec<u8>, Option<bool>),
    Remove(usize),
    Ready(usize),
    Fail(usize),
    Advance(u64),
    Consolidate(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec(0u8..5, 1..4), prop::option::of(any::<bool>()))
            .prop_map(|(p, pin)| Op::Add(p, pin)),
        4 => any::<usize>().prop_map(Op::Remove),
        3 => any::<usize>().prop_map(Op::Ready),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => (0u64..5_000).prop_map(Op::Advance),
        1 => (0u32..4).prop_map(Op::Consolidate),
    ]
}

fn listener(n: u8) -> Option<Listener> {
    match n {
        1 => Listener::tcp(443),
        2 => Listener::tcp(80),
        3 => Listener::udp(53),
        4 => Listener::udp(443),
        _ => None,
    }
}

fn profile(name: &str, cap: u32, price: f64, shared_numbers: bool, mixed: bool) -> LbProfile {
    LbProfile {
        name: ProfileName::new(name).unwrap(),
        max_listeners: cap,
        protocols: vec![Protocol::Tcp, Protocol::Udp],
        mixed_protocols: mixed,
        shared_port_numbers: shared_numbers,
        auto_ports: PortRange {
            first: Port::new(30000).unwrap(),
            last: Port::new(30004).unwrap(),
        },
        reserved: vec![],
        hourly_price: price,
        monthly_cap: None,
        currency: Currency::Usd,
    }
}

fn run(
    policy: &str,
    shared_numbers: bool,
    mixed: bool,
    hot_from: u32,
    max_lbs: Option<u32>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let policy: PolicyKind = policy.parse().unwrap();
    let config = Config {
        profiles: vec![
            profile("small", 3, 1.0, shared_numbers, mixed),
            profile("big", 6, 1.5, shared_numbers, mixed),
        ],
        budget: Budget {
            max_lbs,
            max_cost_per_hour: None,
        },
        idle_timeout_ms: 2_000,
        ..Config::with_builtin("aws-nlb", policy).unwrap()
    };
    let mut hot = Allocator::new(config.clone()).unwrap();
    hot.track_hot_from(hot_from);
    let mut cold = Allocator::new(config).unwrap();
    cold.track_hot_from(u32::MAX);
    let (mut now, mut next) = (Time(0), 0);
    let mut live: Vec<String> = Vec::new();
    let mut lbs: Vec<(sharedlb_allocator::LbId, LbState)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let event = match op {
            Op::Add(ports, pin) => {
                next += 1;
                let id = format!("t/c{next}");
                let mut asked: Vec<PortRequest> = Vec::new();
                for &n in ports {
                    let req =
                        listener(n).map_or(PortRequest::Any(Protocol::Tcp), PortRequest::Fixed);
                    if !asked.contains(&req) || matches!(req, PortRequest::Any(_)) {
                        asked.push(req);
                    }
                }
                let profile =
                    pin.map(|big| ProfileName::new(if big { "big" } else { "small" }).unwrap());
                live.push(id.clone());
                Event::ClaimAdded(
                    Claim::new(&id, asked)
                        .unwrap()
                        .with_migration(true)
                        .with_profile(profile),
                )
            }
            Op::Remove(i) if !live.is_empty() => {
                let id = live.remove(i % live.len());
                Event::ClaimRemoved(sharedlb_allocator::ClaimId::new(&id).unwrap())
            }
            Op::Ready(i) => {
                let waiting: Vec<_> = lbs
                    .iter()
                    .filter(|l| l.1 == LbState::Provisioning)
                    .collect();
                let Some(l) = waiting.get(i % waiting.len().max(1)) else {
                    continue;
                };
                Event::LbReady(l.0)
            }
            Op::Fail(i) if !lbs.is_empty() => Event::LbFailed(lbs[i % lbs.len()].0),
            Op::Advance(dt) => {
                now = now.plus_ms(*dt);
                Event::Tick
            }
            Op::Consolidate(n) => Event::Consolidate { max_moves: *n },
            _ => continue,
        };
        let (mut a, mut b) = (Log::default(), Log::default());
        hot.drive(now, event.clone(), &mut a).unwrap();
        cold.drive(now, event.clone(), &mut b).unwrap();
        prop_assert_eq!(&a.0, &b.0, "step {}: {:?}", step, event);
        hot.check_invariants()
            .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
        prop_assert_eq!(
            hot.state_view(|_| None).pending,
            cold.state_view(|_| None).pending,
            "step {}: waiting claims or reasons differ",
            step
        );
        for d in &a.0 {
            match d {
                Decision::CreateLb { lb, .. } => lbs.push((*lb, LbState::Provisioning)),
                Decision::DeleteLb { lb } => lbs.retain(|l| l.0 != *lb),
                _ => {}
            }
        }
        match event {
            Event::LbReady(lb) => {
                if let Some(l) = lbs.iter_mut().find(|l| l.0 == lb) {
                    l.1 = LbState::Ready;
                }
            }
            Event::LbFailed(lb) => lbs.retain(|l| l.0 != lb),
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    // `PROPTEST_CASES` as the model test reads it (the test command sets 2000), else 300.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]
    #[test]
    fn hot_walks_decide_as_whole_walks(
        policy in prop::sample::select(vec![
            "first-fit", "best-fit", "worst-fit", "conflict-aware", "cost-aware", "dedicated", "seed:3",
        ]),
        shared_numbers in any::<bool>(),
        mixed in any::<bool>(),
        // From 4 claims (let go only when none asks) to 15 (let go at 3, with LBs
        // still holding the listener).
        hot_from in 4u32..16,
        max_lbs in prop::option::of(2u32..8),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        run(policy, shared_numbers, mixed, hot_from, max_lbs, &ops)?;
    }
}
