//! Shared pieces of the benchmarks: workloads at scale and the naive baselines they are
//! measured against (a linear scan over every LB per claim, as the 2018 controller did;
//! a bare `BinaryHeap` event loop).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use sharedlb_allocator::{
    Allocator, Claim, ClaimId, Config, Decision, Event, LbProfile, Listener, PolicyKind, Port,
    PortRange, PortRequest, ProfileName, Protocol, Reports, Sharing, Shell, Time,
};

/// Listeners per LB in the scale benchmarks: 100k LBs hold 1M one-listener claims.
pub const CAPACITY: u32 = 10;
/// Fixed ports are drawn from 1..=PORTS.
pub const PORTS: u16 = 1000;

/// Which requests a workload makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requests {
    /// One `Any` TCP port per claim.
    Any,
    /// One fixed TCP port per claim, uniform over 1..=PORTS.
    Fixed,
}

/// The profile used at scale.
pub fn profile() -> LbProfile {
    LbProfile {
        name: ProfileName::new("bench").unwrap_or_else(|_| unreachable!()),
        max_listeners: CAPACITY,
        protocols: vec![Protocol::Tcp, Protocol::Udp],
        mixed_protocols: true,
        shared_port_numbers: true,
        auto_ports: PortRange {
            first: Port::new(30000).unwrap_or(Port::MIN),
            last: Port::new(39999).unwrap_or(Port::MAX),
        },
        reserved: vec![],
        hourly_price: 0.02,
        monthly_cap: None,
        currency: sharedlb_allocator::Currency::Usd,
    }
}

/// The benchmarks' cloud: LBs are ready as soon as they are asked for and gone as soon as
/// their deletion is; everything else needs no action.
#[derive(Debug, Default)]
pub struct InstantCloud;

impl Shell for InstantCloud {
    fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports<'_>) {
        match d {
            Decision::CreateLb { lb, .. } => reports.report(Event::LbReady(lb)),
            Decision::DeleteLb { lb } => reports.report(Event::LbDeleted(lb)),
            _ => {}
        }
    }
}

/// Feeds one event through [`InstantCloud`].
pub fn feed(a: &mut Allocator, event: Event) {
    if let Err(e) = a.drive(Time(0), event, &mut InstantCloud) {
        unreachable!("benchmark events are valid: {e}");
    }
}

/// An allocator with one shared pool (every claim may share with every other: the worst
/// case for scanning) and `policy`.
pub fn allocator(policy: PolicyKind) -> Allocator {
    let config = Config {
        profiles: vec![profile()],
        idle_timeout_ms: u64::MAX / 4,
        ..Config::with_builtin("aws-nlb", policy).unwrap_or_else(|_| unreachable!())
    };
    Allocator::new(config).unwrap_or_else(|e| unreachable!("{e}"))
}

/// Generates claims deterministically.
pub struct ClaimGen {
    /// The generator's random stream (also drawn by the bare loop).
    pub rng: Pcg64Mcg,
    next: u64,
    requests: Requests,
}

impl ClaimGen {
    /// A generator with a seed.
    pub fn new(requests: Requests, seed: u64) -> ClaimGen {
        ClaimGen {
            rng: Pcg64Mcg::seed_from_u64(seed),
            next: 0,
            requests,
        }
    }

    /// The next claim.
    pub fn claim(&mut self) -> Claim {
        self.next += 1;
        let req = match self.requests {
            Requests::Any => PortRequest::Any(Protocol::Tcp),
            Requests::Fixed => {
                let p = self.rng.random_range(1..=PORTS);
                PortRequest::Fixed(Listener::new(
                    Protocol::Tcp,
                    Port::new(p).unwrap_or(Port::MIN),
                ))
            }
        };
        Claim::new(&format!("t/c{}", self.next), vec![req])
            .unwrap_or_else(|e| unreachable!("{e}"))
            .with_sharing(Sharing::Anyone)
    }

    /// A random index below `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// Fills a placer with `lbs × CAPACITY` claims from a fresh generator; the live ids.
fn fill(requests: Requests, lbs: usize, mut add: impl FnMut(Claim)) -> (Vec<ClaimId>, ClaimGen) {
    let mut g = ClaimGen::new(requests, 7);
    let n = lbs * CAPACITY as usize;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let c = g.claim();
        ids.push(c.id().clone());
        add(c);
    }
    (ids, g)
}

/// One churn step on any placer: a random claim leaves, a new one arrives.
fn churn_step(
    ids: &mut Vec<ClaimId>,
    g: &mut ClaimGen,
    remove: impl FnOnce(ClaimId),
    add: impl FnOnce(Claim),
) {
    let i = g.index(ids.len());
    remove(ids.swap_remove(i));
    let c = g.claim();
    ids.push(c.id().clone());
    add(c);
}

/// An allocator filled with `lbs × CAPACITY` claims (every LB full: the packed steady
/// state where a scan must walk far to find the one hole churn leaves), and the live ids.
pub fn filled(
    policy: PolicyKind,
    requests: Requests,
    lbs: usize,
) -> (Allocator, Vec<ClaimId>, ClaimGen) {
    let mut a = allocator(policy);
    let (ids, g) = fill(requests, lbs, |c| {
        feed(&mut a, Event::ClaimAdded(c));
    });
    (a, ids, g)
}

/// One churn step: a claim leaves, a new one arrives (two decisions).
pub fn churn(a: &mut Allocator, ids: &mut Vec<ClaimId>, g: &mut ClaimGen) {
    let a = std::cell::RefCell::new(a);
    churn_step(
        ids,
        g,
        |id| {
            feed(&mut a.borrow_mut(), Event::ClaimRemoved(id));
        },
        |c| {
            feed(&mut a.borrow_mut(), Event::ClaimAdded(c));
        },
    );
}

/// The 2018 controller's way: a list of LBs scanned from the first for one that fits.
#[derive(Default)]
pub struct NaiveScan {
    lbs: Vec<NaiveLb>,
    claims: std::collections::HashMap<ClaimId, (usize, Listener)>,
}

#[derive(Default)]
struct NaiveLb {
    used: HashSet<Listener>,
}

impl NaiveScan {
    /// Places a one-port claim: first LB with room and no clash, else a new LB.
    pub fn add(&mut self, c: &Claim) {
        let req = c.ports()[0];
        let mut chosen = None;
        for (i, lb) in self.lbs.iter().enumerate() {
            if lb.used.len() as u32 >= CAPACITY {
                continue;
            }
            let l = match req {
                PortRequest::Fixed(l) if !lb.used.contains(&l) => Some(l),
                PortRequest::Fixed(_) => None,
                PortRequest::Any(p) => (30000..40000)
                    .map(|n| Listener::new(p, Port::new(n).unwrap_or(Port::MIN)))
                    .find(|l| !lb.used.contains(l)),
            };
            if let Some(l) = l {
                chosen = Some((i, l));
                break;
            }
        }
        let (i, l) = chosen.unwrap_or_else(|| {
            self.lbs.push(NaiveLb::default());
            let l = req.fixed().unwrap_or(Listener::new(
                req.protocol(),
                Port::new(30000).unwrap_or(Port::MIN),
            ));
            (self.lbs.len() - 1, l)
        });
        self.lbs[i].used.insert(l);
        self.claims.insert(c.id().clone(), (i, l));
    }

    /// Releases a claim.
    pub fn remove(&mut self, id: &ClaimId) {
        if let Some((i, l)) = self.claims.remove(id) {
            self.lbs[i].used.remove(&l);
        }
    }

    /// LBs opened.
    pub fn lb_count(&self) -> usize {
        self.lbs.len()
    }
}

/// The naive baseline filled like [`filled`].
pub fn naive_filled(requests: Requests, lbs: usize) -> (NaiveScan, Vec<ClaimId>, ClaimGen) {
    let mut a = NaiveScan::default();
    let (ids, g) = fill(requests, lbs, |c| a.add(&c));
    (a, ids, g)
}

/// One naive churn step.
pub fn naive_churn(a: &mut NaiveScan, ids: &mut Vec<ClaimId>, g: &mut ClaimGen) {
    let a = std::cell::RefCell::new(a);
    churn_step(
        ids,
        g,
        |id| a.borrow_mut().remove(&id),
        |c| a.borrow_mut().add(&c),
    );
}

/// The bare event loop the simulator is measured against: a `std::collections::BinaryHeap`
/// of (time, sequence) with Poisson arrivals and exponential lifetimes, the same allocator
/// work per event, no metrics and no LB lifecycle. Returns (claim events processed, live
/// claims at the end).
#[allow(clippy::many_single_char_names)]
pub fn bare_loop(
    a: &mut Allocator,
    g: &mut ClaimGen,
    rate_per_ms: f64,
    mean_life_ms: f64,
    until_ms: u64,
) -> (u64, usize) {
    use rand_distr::{Distribution, Exp};
    enum Ev {
        Arrive,
        Leave(ClaimId),
    }
    let arrive = Exp::new(rate_per_ms).unwrap_or_else(|_| unreachable!());
    let life = Exp::new(1.0 / mean_life_ms).unwrap_or_else(|_| unreachable!());
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut payload: Vec<Option<Ev>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut seq = 0;
    let mut push = |heap: &mut BinaryHeap<_>,
                    payload: &mut Vec<Option<Ev>>,
                    free: &mut Vec<usize>,
                    t: u64,
                    e: Ev| {
        let i = if let Some(i) = free.pop() {
            payload[i] = Some(e);
            i
        } else {
            payload.push(Some(e));
            payload.len() - 1
        };
        heap.push(Reverse((t, seq, i)));
        seq += 1;
    };
    push(&mut heap, &mut payload, &mut free, 0, Ev::Arrive);
    let mut n = 0;
    let mut live = 0usize;
    while let Some(Reverse((t, _, i))) = heap.pop() {
        if t > until_ms {
            break;
        }
        let ev = payload[i].take();
        free.push(i);
        match ev {
            Some(Ev::Arrive) => {
                n += 1;
                live += 1;
                let c = g.claim();
                let l = life.sample(&mut g.rng) as u64;
                let next = arrive.sample(&mut g.rng).ceil() as u64;
                push(
                    &mut heap,
                    &mut payload,
                    &mut free,
                    t + l,
                    Ev::Leave(c.id().clone()),
                );
                push(&mut heap, &mut payload, &mut free, t + next, Ev::Arrive);
                if let Err(e) = a.drive(Time(t), Event::ClaimAdded(c), &mut InstantCloud) {
                    unreachable!("benchmark events are valid: {e}");
                }
            }
            Some(Ev::Leave(id)) => {
                n += 1;
                live -= 1;
                if let Err(e) = a.drive(Time(t), Event::ClaimRemoved(id), &mut InstantCloud) {
                    unreachable!("benchmark events are valid: {e}");
                }
            }
            None => {}
        }
    }
    (n, live)
}
