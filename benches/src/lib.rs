//! Shared pieces of the benchmarks: workloads at scale and the naive baselines they are
//! measured against (a linear scan over every LB per claim, as the 2018 controller did;
//! a bare `BinaryHeap` event loop).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use sharedlb_allocator::{
    Allocator, Claim, ClaimId, Config, Decision, Event, LbProfile, Listener, PolicyKind, Port,
    PortRange, PortRequest, ProfileName, Protocol, Reports, Sharing, Shell, Time,
};

/// Listeners per LB in the "full" benchmarks: 100k LBs hold 1M one-listener claims.
pub const CAPACITY: u32 = 10;
/// Listeners per LB in the partly-filled multi-listener benchmarks: 100k LBs, filled to
/// about nine tenths, hold about 1M claims of 1–3 listeners each.
pub const MULTI_CAPACITY: u32 = 22;
/// Fixed ports are drawn from 1..=PORTS.
pub const PORTS: u16 = 1000;

/// Which requests a workload makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requests {
    /// One `Any` TCP port per claim.
    Any,
    /// One fixed TCP port per claim, uniform over 1..=PORTS.
    Fixed,
    /// 1–3 `Any` TCP ports per claim (uniform): the multi-listener churn of issue #12.
    Multi,
}

impl Requests {
    /// Mean listeners per claim.
    pub fn mean_listeners(self) -> f64 {
        match self {
            Requests::Any | Requests::Fixed => 1.0,
            Requests::Multi => 2.0,
        }
    }

    /// A short name for tables.
    pub fn tag(self) -> &'static str {
        match self {
            Requests::Any => "any",
            Requests::Fixed => "fixed",
            Requests::Multi => "multi",
        }
    }
}

/// The profile used at scale.
pub fn profile() -> LbProfile {
    profile_with(CAPACITY)
}

/// The profile used at scale with `capacity` listeners per LB. Up to 10,000 listeners the
/// automatic range is the usual 30000–39999; above, 1024–65535 (a wider range is a
/// profile setting, `auto_ports`).
pub fn profile_with(capacity: u32) -> LbProfile {
    let (first, last) = if capacity <= 10_000 {
        (30000, 39999)
    } else {
        (1024, 65535)
    };
    LbProfile {
        name: ProfileName::new("bench").unwrap_or_else(|_| unreachable!()),
        max_listeners: capacity,
        protocols: vec![Protocol::Tcp, Protocol::Udp],
        mixed_protocols: true,
        shared_port_numbers: true,
        auto_ports: PortRange {
            first: Port::new(first).unwrap_or(Port::MIN),
            last: Port::new(last).unwrap_or(Port::MAX),
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
    allocator_with(policy, CAPACITY)
}

/// [`allocator`] with `capacity` listeners per LB.
pub fn allocator_with(policy: PolicyKind, capacity: u32) -> Allocator {
    let config = Config {
        profiles: vec![profile_with(capacity)],
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
        let reqs = match self.requests {
            Requests::Any => vec![PortRequest::Any(Protocol::Tcp)],
            Requests::Fixed => {
                let p = self.rng.random_range(1..=PORTS);
                vec![PortRequest::Fixed(Listener::new(
                    Protocol::Tcp,
                    Port::new(p).unwrap_or(Port::MIN),
                ))]
            }
            Requests::Multi => {
                let n = self.rng.random_range(1..=3);
                vec![PortRequest::Any(Protocol::Tcp); n]
            }
        };
        Claim::new(&format!("t/c{}", self.next), reqs)
            .unwrap_or_else(|e| unreachable!("{e}"))
            .with_sharing(Sharing::Anyone)
    }

    /// A random index below `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }
}

/// Fills a placer with `lbs × CAPACITY` claims from a fresh generator; the live ids.
fn fill(requests: Requests, lbs: usize, add: impl FnMut(Claim)) -> (Vec<ClaimId>, ClaimGen) {
    fill_n(requests, lbs * CAPACITY as usize, add)
}

/// Fills a placer with `n` claims from a fresh generator; the live ids.
fn fill_n(requests: Requests, n: usize, mut add: impl FnMut(Claim)) -> (Vec<ClaimId>, ClaimGen) {
    let mut g = ClaimGen::new(requests, 7);
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

/// Live claims that fill `lbs` LBs of `capacity` to about nine tenths with `requests`.
pub fn partly_filled_claims(requests: Requests, lbs: usize, capacity: u32) -> usize {
    (lbs as f64 * f64::from(capacity) * 0.9 / requests.mean_listeners()).round() as usize
}

/// The partly-filled steady state: `n` claims placed, then a random quarter of them
/// replaced by new ones (a quarter of the LBs' listeners freed at random and taken
/// again by claims of other sizes). LBs hold claims of 1–3 listeners with holes of every
/// size spread over them, as churn leaves them — not the index's best case of full LBs
/// and one hole.
pub fn partly_filled(
    policy: PolicyKind,
    requests: Requests,
    n: usize,
    capacity: u32,
) -> (Allocator, Vec<ClaimId>, ClaimGen) {
    let mut a = allocator_with(policy, capacity);
    let (mut ids, mut g) = fill_n(requests, n, |c| {
        feed(&mut a, Event::ClaimAdded(c));
    });
    let mut kept = Vec::with_capacity(n);
    let mut gone = 0;
    for id in ids.drain(..) {
        if g.index(4) == 0 {
            feed(&mut a, Event::ClaimRemoved(id));
            gone += 1;
        } else {
            kept.push(id);
        }
    }
    for _ in 0..gone {
        let c = g.claim();
        kept.push(c.id().clone());
        feed(&mut a, Event::ClaimAdded(c));
    }
    (a, kept, g)
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

/// `steps` churn steps drawn ahead of time (the claim that leaves, the claim that
/// arrives), so that a measured loop does nothing but drive the allocator: no id is
/// formatted and no claim built inside it.
///
/// Each arriving claim is a template of its kind under a new name ([`Claim::renamed`]),
/// as the simulator makes them: the claims a shell hands over were built just before, or
/// share a body it keeps, so their bodies are in cache. Claims drawn with bodies of their
/// own ahead of time would put a cache miss on every arrival that no shell causes.
pub fn script(ids: &mut Vec<ClaimId>, g: &mut ClaimGen, steps: usize) -> Vec<(ClaimId, Claim)> {
    let mut out = Vec::with_capacity(steps);
    // A generated claim's kind is its port requests (tenant and sharing never vary).
    let mut templates: HashMap<Vec<PortRequest>, Claim> = HashMap::new();
    for _ in 0..steps {
        let i = g.index(ids.len());
        let gone = ids.swap_remove(i);
        let c = g.claim();
        let c = templates
            .entry(c.ports().to_vec())
            .or_insert_with(|| c.clone())
            .renamed(c.id().clone());
        ids.push(c.id().clone());
        out.push((gone, c));
    }
    out
}

/// Plays a script on the allocator: two decisions per step.
pub fn play(a: &mut Allocator, script: Vec<(ClaimId, Claim)>) {
    for (gone, c) in script {
        feed(a, Event::ClaimRemoved(gone));
        feed(a, Event::ClaimAdded(c));
    }
}

/// Plays a script as [`play`] does, hinting before each departure the next ones
/// ([`Allocator::prefetch`]), as a shell that knows its next events can.
pub fn play_looking_ahead(a: &mut Allocator, script: Vec<(ClaimId, Claim)>) {
    let gone: Vec<ClaimId> = script.iter().map(|(g, _)| g.clone()).collect();
    for (i, (g, c)) in script.into_iter().enumerate() {
        a.prefetch(upcoming(&gone, i));
        feed(a, Event::ClaimRemoved(g));
        feed(a, Event::ClaimAdded(c));
    }
}

/// The departures after step `i`'s, nearest first, as many as a hint takes.
pub fn upcoming(gone: &[ClaimId], i: usize) -> impl Iterator<Item = &ClaimId> {
    gone.iter().skip(i + 1).take(sharedlb_allocator::LOOK_AHEAD)
}

/// Plays a script on the naive scan.
pub fn naive_play(a: &mut NaiveScan, script: Vec<(ClaimId, Claim)>) {
    for (gone, c) in script {
        a.remove(&gone);
        a.add(&c);
    }
}

/// The 2018 controller's way: a list of LBs scanned from the first for one that fits.
#[derive(Default)]
pub struct NaiveScan {
    lbs: Vec<NaiveLb>,
    claims: std::collections::HashMap<ClaimId, (usize, Vec<Listener>)>,
    /// Listeners per LB; 0 means [`CAPACITY`].
    capacity: u32,
}

#[derive(Default)]
struct NaiveLb {
    used: HashSet<Listener>,
}

impl NaiveLb {
    /// The claim's listeners here, or `None` on a clash or a full range.
    fn plan(&self, c: &Claim) -> Option<Vec<Listener>> {
        let mut out: Vec<Listener> = Vec::with_capacity(c.ports().len());
        for &req in c.ports() {
            let l = match req {
                PortRequest::Fixed(l) => (!self.used.contains(&l)).then_some(l)?,
                PortRequest::Any(p) => (30000..40000)
                    .map(|n| Listener::new(p, Port::new(n).unwrap_or(Port::MIN)))
                    .find(|l| !self.used.contains(l) && !out.contains(l))?,
            };
            out.push(l);
        }
        Some(out)
    }
}

impl NaiveScan {
    /// Places a claim: the first LB with room for all its listeners and no clash (the
    /// lowest free automatic ports, found by walking the range), else a new LB.
    pub fn add(&mut self, c: &Claim) {
        let need = c.ports().len();
        let mut chosen = None;
        for (i, lb) in self.lbs.iter().enumerate() {
            if lb.used.len() + need > self.capacity() {
                continue;
            }
            if let Some(ls) = lb.plan(c) {
                chosen = Some((i, ls));
                break;
            }
        }
        let (i, ls) = chosen.unwrap_or_else(|| {
            self.lbs.push(NaiveLb::default());
            let i = self.lbs.len() - 1;
            let ls = self.lbs[i].plan(c).unwrap_or_default();
            (i, ls)
        });
        for &l in &ls {
            self.lbs[i].used.insert(l);
        }
        self.claims.insert(c.id().clone(), (i, ls));
    }

    fn capacity(&self) -> usize {
        if self.capacity == 0 {
            CAPACITY as usize
        } else {
            self.capacity as usize
        }
    }

    /// A naive placer holding exactly the allocator's placements (LBs in id order), with
    /// `capacity` listeners per LB: the same state for both, without a million scans to
    /// fill it.
    pub fn mirror(a: &Allocator, capacity: u32) -> NaiveScan {
        let mut n = NaiveScan {
            capacity,
            ..NaiveScan::default()
        };
        let mut at = std::collections::HashMap::new();
        for info in a.lbs() {
            at.insert(info.id, n.lbs.len());
            n.lbs.push(NaiveLb {
                used: info.listeners.iter().map(|&(l, _)| l).collect(),
            });
        }
        for (c, place) in a.claims() {
            if let Ok((lb, ls)) = place {
                n.claims.insert(c.id().clone(), (at[&lb], ls.to_vec()));
            }
        }
        n
    }

    /// Releases a claim.
    pub fn remove(&mut self, id: &ClaimId) {
        if let Some((i, ls)) = self.claims.remove(id) {
            for l in ls {
                self.lbs[i].used.remove(&l);
            }
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
    // Arrivals run on exact times, rounded up to whole milliseconds only as events (as
    // the simulator's generator does): intervals drawn from the rounded times would each
    // grow by half a millisecond.
    let mut clock = 0.0f64;
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
                clock += arrive.sample(&mut g.rng);
                let next = clock.ceil() as u64;
                push(
                    &mut heap,
                    &mut payload,
                    &mut free,
                    t + l,
                    Ev::Leave(c.id().clone()),
                );
                push(&mut heap, &mut payload, &mut free, next.max(t), Ev::Arrive);
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
