//! The discrete-event engine. A [`Simulation`] owns the allocator and a model of the cloud,
//! the [`Cloud`]: the shell that carries out the allocator's decisions (LBs take a
//! provisioning delay, fail, take time to delete) through the allocator's one entry point,
//! [`Allocator::drive`]. Capacity, cost, the baseline and the lower bound are read from the
//! allocator; the engine only integrates them over time.
//!
//! Two seeded random streams keep policies comparable: the workload stream (arrivals,
//! claims, lifetimes) is drawn only at arrivals, so every policy sees the same claims at
//! the same times (common random numbers); the infrastructure stream draws provisioning
//! delays and failures.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use sharedlb_allocator::fairness::jain_index;
use sharedlb_allocator::profile::HOURS_PER_MONTH;
use sharedlb_allocator::{
    Allocator, Claim, ClaimId, Decision, Event, LbId, LbState, ProfileName, Reports, Sharing,
    Shell, TenantId, Time,
};

use crate::billing::{Bill, Meters};
use crate::metrics::{Sample, Summary, TenantSummary, WaitHistogram};
use crate::queue::{EventQueue, Payload};
use crate::scenario::{ProfileSpec, Scenario, parse_sharing};
use crate::trace::TraceEvent;
use crate::tracks::{ClaimTrack, Tracks};
use crate::workload::{WorkloadGen, sample_duration};

/// The engine's maps are keyed by claim and LB ids the engine made itself and are never
/// iterated into a result, so they need no keyed (SipHash) hashing.
type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// How long a cloud takes to delete an LB once asked.
const DELETE_DELAY_MS: u64 = 30_000;
const MS_PER_HOUR: f64 = 3_600_000.0;

#[derive(Debug, Clone)]
enum Ev {
    Arrival,
    Burst,
    /// A generated claim leaves: its track's handle (the departure is the only remover).
    Departure(u32),
    LbReady(LbId),
    LbFail(LbId),
    LbGone(LbId),
    Wakeup,
    Sample,
    Consolidate,
    // Boxed, as the id below: keeps every queued event 16 bytes.
    TraceAdd(Box<Claim>),
    TraceRemove(Box<ClaimId>),
}

/// A departure travels in its heap entry (its track handle is the word), so a million
/// pending departures need no slab slots.
impl Payload for Ev {
    fn to_word(&self) -> Option<u32> {
        match self {
            Ev::Departure(k) => Some(*k),
            _ => None,
        }
    }

    fn from_word(word: u32) -> Ev {
        Ev::Departure(word)
    }
}

/// Tenants numbered in order of first arrival, so a claim's track holds a number, not
/// a name; with each tenant's claims on a ready LB.
#[derive(Debug, Default)]
struct TenantNumbers {
    numbers: FxMap<TenantId, u32>,
    /// The name and number found last: claims made from one template share their
    /// tenant's name, so a run of them is numbered without hashing it.
    last: Option<(TenantId, u32)>,
    /// Claims on a ready LB, by tenant number.
    serving: Vec<u64>,
    /// Claims arrived, by tenant number.
    arrivals: Vec<u64>,
}

impl TenantNumbers {
    /// The tenant's number, given one if it has none.
    fn number(&mut self, tenant: &TenantId) -> u32 {
        if let Some((name, n)) = &self.last
            && std::ptr::eq(name.as_str(), tenant.as_str())
        {
            return *n;
        }
        let n = if let Some(&n) = self.numbers.get(tenant) {
            n
        } else {
            let n = u32::try_from(self.numbers.len()).unwrap_or(u32::MAX);
            self.numbers.insert(tenant.clone(), n);
            self.serving.push(0);
            self.arrivals.push(0);
            n
        };
        self.last = Some((tenant.clone(), n));
        n
    }
}

/// An LB as the cloud sees it. The claims on it are the allocator's to say: when it
/// becomes ready, those it holds then are served.
#[derive(Debug, Clone, Default)]
struct LbTrack {
    ready: bool,
}

/// The simulated cloud: the shell that carries out the allocator's decisions.
#[derive(Debug)]
struct Cloud {
    now: u64,
    warmup: u64,
    queue: EventQueue<Ev>,
    rng: Pcg64Mcg,
    profiles: Vec<ProfileSpec>,
    profile_index: HashMap<ProfileName, usize>,
    claims: Tracks,
    /// The track and id of the claim whose arrival the allocator is handling, until the
    /// track is bound to the claim's key (at the first decision naming it, or after).
    arriving: Option<(u32, ClaimId)>,
    /// The claim whose removal the allocator is handling: it has no track to find.
    leaving: Option<ClaimId>,
    lbs: FxMap<LbId, LbTrack>,
    serving: u64,
    /// Tenants by number, with their claims on a ready LB.
    tenants: TenantNumbers,
    waits: WaitHistogram,
    pending_reasons: BTreeMap<String, u64>,
    /// Claims told to wait, each counted once per reason.
    claims_waited: BTreeMap<String, u64>,
    /// The end of the run, for billing.
    end: u64,
    /// Whether any profile has a monthly cap (else nothing is metered).
    any_capped: bool,
    /// Billed LBs of capped profiles, metered one by one (see [`crate::billing`]).
    lb_meters: Meters<LbId>,
    /// Placed claims whose one-LB-per-Service baseline profile is capped, by track.
    claim_meters: Meters<u32>,
    lbs_created: u64,
    migrations: u64,
}

impl Cloud {
    fn set_serving(&mut self, k: u32, on: bool) {
        let Some(t) = self.claims.get_mut(k) else {
            return;
        };
        if t.serving == on {
            return;
        }
        t.serving = on;
        let per = &mut self.tenants.serving[t.tenant as usize];
        if on {
            self.serving += 1;
            *per += 1;
            if let Some(arrived) = self.claims.first_served(k)
                && arrived >= self.warmup
            {
                self.waits.record(self.now.saturating_sub(arrived));
            }
        } else {
            self.serving -= 1;
            *per -= 1;
        }
    }

    /// The track of live claim `id`, in `alloc`; binds the arriving claim's track to its
    /// key (every other live claim's track is bound).
    fn track_of(&mut self, alloc: &Allocator, id: &ClaimId) -> Option<u32> {
        if self.leaving.as_ref() == Some(id) {
            return None;
        }
        let key = alloc.claim_key(id)?;
        if let Some(k) = self.claims.of_key(key) {
            return Some(k);
        }
        match self.arriving.take() {
            Some((k, arriving)) if arriving == *id => {
                self.claims.bind(k, key);
                Some(k)
            }
            _ => unreachable!("a live claim with no track: {id}"),
        }
    }

    /// The claim is now on `lb` (or nowhere): served if that LB is ready. A claim the
    /// allocator no longer has is leaving: [`Simulation::remove`] ends its service.
    fn place(&mut self, alloc: &Allocator, id: &ClaimId, lb: Option<LbId>) {
        let Some(k) = self.track_of(alloc, id) else {
            return;
        };
        if self.any_capped {
            let bill = self.bill(alloc);
            match lb
                .and_then(|_| alloc.claim(id))
                .and_then(|c| capped_baseline(alloc, c))
            {
                Some(p) => self.claim_meters.start(k, p, self.now, &bill),
                None => self.claim_meters.stop(k, self.now, &bill),
            }
        }
        let ready = lb
            .and_then(|l| self.lbs.get(&l))
            .is_some_and(|track| track.ready);
        self.set_serving(k, ready);
    }

    /// How `alloc`'s profiles are billed over the measured period.
    fn bill<'a>(&self, alloc: &'a Allocator) -> Bill<'a> {
        Bill {
            profiles: &alloc.config().profiles,
            warmup: self.warmup,
            end: self.end,
        }
    }

    /// `lb` is ready: `on_it`, the claims `alloc` has placed on it, are served.
    fn lb_ready(&mut self, alloc: &Allocator, lb: LbId, on_it: &[ClaimId]) {
        let Some(track) = self.lbs.get_mut(&lb) else {
            return;
        };
        track.ready = true;
        for id in on_it {
            if let Some(k) = self.track_of(alloc, id) {
                self.set_serving(k, true);
            }
        }
    }
}

impl Shell for Cloud {
    fn carry_out(&mut self, now: Time, d: Decision, reports: &mut Reports<'_>) {
        self.now = now.0;
        match d {
            Decision::CreateLb { lb, profile } => {
                let p = self.profile_index.get(&profile).copied().unwrap_or(0);
                let delay = sample_duration(&self.profiles[p].provisioning, &mut self.rng);
                self.queue
                    .push(self.now.saturating_add(delay), Ev::LbReady(lb));
                let rate = self.profiles[p].failures_per_day;
                if rate > 0.0
                    && let Ok(exp) = Exp::new(rate / 86_400_000.0)
                {
                    let t = exp.sample(&mut self.rng).min(1e15) as u64;
                    self.queue
                        .push(self.now.saturating_add(t.max(1)), Ev::LbFail(lb));
                }
                self.lbs.insert(lb, LbTrack::default());
                let alloc = reports.allocator();
                if alloc.config().profiles[p].monthly_cap.is_some() {
                    let bill = self.bill(alloc);
                    self.lb_meters.start(lb, p, self.now, &bill);
                }
                if self.now >= self.warmup {
                    self.lbs_created += 1;
                }
            }
            Decision::Assign { claim, lb, .. } => {
                self.place(reports.allocator(), &claim, Some(lb));
            }
            Decision::Migrate { claim, to, .. } => {
                if self.now >= self.warmup {
                    self.migrations += 1;
                }
                self.place(reports.allocator(), &claim, Some(to));
            }
            Decision::Release { claim, .. } => self.place(reports.allocator(), &claim, None),
            Decision::Pending { claim, reason, .. } if self.now >= self.warmup => {
                *self
                    .pending_reasons
                    .entry(reason.as_str().to_owned())
                    .or_default() += 1;
                if let Some(k) = self.track_of(reports.allocator(), &claim)
                    && self.claims.get_mut(k).is_some_and(|t| t.waits_for(reason))
                {
                    *self
                        .claims_waited
                        .entry(reason.as_str().to_owned())
                        .or_default() += 1;
                }
            }
            Decision::Pending { .. } => {}
            Decision::DeleteLb { lb } => {
                // No longer billed (see `billed_lbs`).
                let bill = self.bill(reports.allocator());
                self.lb_meters.stop(lb, self.now, &bill);
                self.queue
                    .push(self.now.saturating_add(DELETE_DELAY_MS), Ev::LbGone(lb));
            }
        }
    }
}

/// The number of `claim`'s one-LB-per-Service profile in `alloc`, if that profile has a
/// monthly cap (and so is metered claim by claim).
fn capped_baseline(alloc: &Allocator, claim: &sharedlb_allocator::Claim) -> Option<usize> {
    let profiles = &alloc.config().profiles;
    let d = alloc.config().dedicated_profile(claim)?;
    d.monthly_cap?;
    profiles.iter().position(|p| std::ptr::eq(p, d))
}

/// Time integrals over the measured period, in units × hours.
#[derive(Debug, Default, Clone)]
struct Integrals {
    lbs: f64,
    lbs_with_claims: f64,
    bound: f64,
    cost: f64,
    baseline: f64,
    live: f64,
    placed: f64,
    served: f64,
    used: f64,
    capacity: f64,
    /// Per tenant, in the allocator's order of tenants ([`Allocator::tenants_by_arrival`]):
    /// its integrals (none until it first has live claims in the measured period) and
    /// its number in the cloud's books, looked up by name once.
    tenants: Vec<(Option<TenantIntegrals>, u32)>,
    /// Hours with listeners in use: what the tenants' shares are averaged over.
    in_use: f64,
}

/// One tenant's time integrals over the measured period.
#[derive(Debug, Default, Clone, Copy)]
struct TenantIntegrals {
    /// Its claims live, and served.
    live: f64,
    served: f64,
    /// ∫ (its listeners / listeners in use) and ∫ (its fair share / listeners in use),
    /// over the hours with listeners in use.
    held: f64,
    fair: f64,
}

/// A simulation run, steppable in chunks (the dashboard runs it a slice at a time).
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    alloc: Allocator,
    cloud: Cloud,
    workload_rng: Pcg64Mcg,
    workload: Option<WorkloadGen>,
    end: u64,
    warmup: u64,
    wakeup_at: Option<u64>,
    last_t: u64,
    int: Integrals,
    lbs_max: u64,
    samples: Vec<Sample>,
    arrivals: u64,
    /// Claims that arrived after the warm-up.
    arrivals_measured: u64,
    departures: u64,
    rejections: u64,
    lb_failures: u64,
    /// The scenario's tenants: reported even if none of their claims arrives (arrivals
    /// are counted by tenant number, [`TenantNumbers`]).
    named_tenants: Vec<TenantId>,
    events: u64,
    check: bool,
    violation: Option<String>,
}

impl Simulation {
    /// A run of the scenario's generated workload with its seed.
    pub fn new(scenario: &Scenario) -> Result<Simulation, sharedlb_allocator::Error> {
        let mut sim = Simulation::base(scenario)?;
        let mut generator = WorkloadGen::new(scenario)?;
        if let Some(t) = generator.next_arrival(0, &mut sim.workload_rng) {
            sim.cloud.queue.push(t, Ev::Arrival);
        }
        if let Some(b) = &scenario.workload.arrival.bursts
            && b.size > 0
        {
            sim.cloud.queue.push(b.every.ms(), Ev::Burst);
        }
        sim.workload = Some(generator);
        Ok(sim)
    }

    /// A replay of a trace, with the scenario's allocator, profiles and tenants (weights,
    /// quotas, sharing rules); runs from 0 to the last trace event, whatever the
    /// scenario's duration, with no warm-up (claims never removed count until then).
    pub fn replay(
        scenario: &Scenario,
        trace: Vec<TraceEvent>,
    ) -> Result<Simulation, sharedlb_allocator::Error> {
        let mut s = scenario.clone();
        let last = trace.iter().map(TraceEvent::time).max().unwrap_or(0);
        s.duration = crate::scenario::Dur(last.max(1));
        s.warmup = crate::scenario::Dur(0);
        s.sample_every = crate::scenario::Dur((last / 200).max(1_000));
        let mut sim = Simulation::base(&s)?;
        // A line naming no sharing rule gets its tenant's, as a generated claim does.
        let rules: BTreeMap<String, Sharing> = s
            .tenant_specs()
            .iter()
            .filter_map(|t| Some((t.name.clone(), parse_sharing(&t.sharing).ok()?)))
            .collect();
        for e in trace {
            match e {
                TraceEvent::Add { t, claim, sharing } => {
                    let sharing = sharing.or_else(|| rules.get(claim.tenant().as_str()).cloned());
                    let claim = match sharing {
                        Some(rule) => claim.with_sharing(rule),
                        None => claim,
                    };
                    sim.cloud.queue.push(t, Ev::TraceAdd(Box::new(claim)));
                }
                TraceEvent::Remove { t, id } => {
                    sim.cloud.queue.push(t, Ev::TraceRemove(Box::new(id)));
                }
            }
        }
        Ok(sim)
    }

    fn base(scenario: &Scenario) -> Result<Simulation, sharedlb_allocator::Error> {
        let config = scenario.allocator_config()?;
        let alloc = Allocator::new(config.clone())?;
        let profiles = scenario.profile_specs();
        let profile_index = config
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let mut queue = EventQueue::new();
        queue.push(0, Ev::Sample);
        if let Some(c) = &scenario.consolidation {
            queue.push(c.every.ms(), Ev::Consolidate);
        }
        let named_tenants = scenario
            .tenant_specs()
            .iter()
            .map(|t| TenantId::new(&t.name))
            .collect::<Result<_, sharedlb_allocator::Error>>()?;
        Ok(Simulation {
            scenario: scenario.clone(),
            alloc,
            cloud: Cloud {
                now: 0,
                warmup: scenario.warmup.ms(),
                queue,
                rng: Pcg64Mcg::seed_from_u64(scenario.seed ^ 0x9E37_79B9_7F4A_7C15),
                profiles,
                profile_index,
                claims: Tracks::default(),
                arriving: None,
                leaving: None,
                lbs: FxMap::default(),
                serving: 0,
                tenants: TenantNumbers::default(),
                waits: WaitHistogram::default(),
                pending_reasons: BTreeMap::new(),
                claims_waited: BTreeMap::new(),
                end: scenario.duration.ms(),
                any_capped: config.profiles.iter().any(|p| p.monthly_cap.is_some()),
                lb_meters: Meters::default(),
                claim_meters: Meters::default(),
                lbs_created: 0,
                migrations: 0,
            },
            workload_rng: Pcg64Mcg::seed_from_u64(scenario.seed),
            workload: None,
            end: scenario.duration.ms(),
            warmup: scenario.warmup.ms(),
            wakeup_at: None,
            last_t: 0,
            int: Integrals::default(),
            lbs_max: 0,
            samples: Vec::new(),
            arrivals: 0,
            arrivals_measured: 0,
            departures: 0,
            rejections: 0,
            lb_failures: 0,
            named_tenants,
            events: 0,
            check: false,
            violation: None,
        })
    }

    /// Checks the allocator's invariants after every event (slow: for tests).
    pub fn check_invariants(&mut self, on: bool) {
        self.check = on;
    }

    /// The first invariant violation seen while checking, with the time it happened.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// Simulated time reached, in ms.
    pub fn now_ms(&self) -> u64 {
        self.cloud.now
    }

    /// Simulated end, in ms.
    pub fn end_ms(&self) -> u64 {
        self.end
    }

    /// Fraction of the run done.
    pub fn progress(&self) -> f64 {
        if self.end == 0 {
            1.0
        } else {
            (self.cloud.now as f64 / self.end as f64).min(1.0)
        }
    }

    /// Whether the run has reached its end.
    pub fn is_done(&self) -> bool {
        self.cloud.queue.peek_time().is_none_or(|t| t > self.end)
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Samples taken so far.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The allocator (for live views).
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }

    /// Processes every event up to simulated time `until` (ms), or at most `max_events`.
    pub fn run_until(&mut self, until: u64, max_events: u64) {
        let until = until.min(self.end);
        let mut n = 0;
        while n < max_events {
            match self.cloud.queue.peek_time() {
                Some(t) if t <= until => {}
                _ => break,
            }
            let Some((t, ev)) = self.cloud.queue.pop() else {
                break;
            };
            self.integrate(t);
            self.cloud.now = t;
            self.events += 1;
            n += 1;
            self.step(ev);
        }
        if self.is_done() {
            self.integrate(self.end);
            self.cloud.now = self.end;
        } else if n < max_events {
            // Nothing happens before `until`: simulated time still passes.
            self.cloud.now = self.cloud.now.max(until);
        }
    }

    /// Runs to the end and summarises.
    pub fn run(mut self) -> (Summary, Vec<Sample>) {
        self.run_until(u64::MAX, u64::MAX);
        self.finish()
    }

    /// Feeds one event to the allocator through the cloud.
    fn drive(&mut self, event: Event) {
        // The engine only sends events it knows to be valid; an error is a bug in the
        // engine, reported loudly rather than hidden.
        if let Err(e) = self
            .alloc
            .drive(Time(self.cloud.now), event, &mut self.cloud)
        {
            unreachable!("the simulator sent an invalid event: {e}");
        }
        if self.check
            && self.violation.is_none()
            && let Err(e) = self.alloc.check_invariants()
        {
            self.violation = Some(format!("at {} ms: {e}", self.cloud.now));
        }
    }

    fn billed_lbs(&self) -> u64 {
        (self.alloc.lb_count(LbState::Ready) + self.alloc.lb_count(LbState::Provisioning)) as u64
    }

    fn step(&mut self, ev: Ev) {
        let now = self.cloud.now;
        match ev {
            Ev::Arrival => {
                let Some(g) = self.workload.as_mut() else {
                    return;
                };
                let claim = g.claim(&mut self.workload_rng);
                let life = g.lifetime(&mut self.workload_rng);
                if let Some(next) = g.next_arrival(now, &mut self.workload_rng) {
                    self.cloud.queue.push(next, Ev::Arrival);
                }
                let k = self.add_generated(claim, now.saturating_add(life));
                self.adopt_kept(k);
            }
            Ev::Burst => {
                let Some(b) = self.scenario.workload.arrival.bursts.clone() else {
                    return;
                };
                for _ in 0..b.size {
                    let Some(g) = self.workload.as_mut() else {
                        return;
                    };
                    let claim = g.claim(&mut self.workload_rng);
                    let life = g.lifetime(&mut self.workload_rng);
                    let k = self.add_generated(claim, now.saturating_add(life));
                    self.adopt_kept(k);
                }
                let next = now.saturating_add(b.every.ms());
                // `next > now`: a saturated clock must not schedule the same instant forever.
                if next <= self.end && next > now {
                    self.cloud.queue.push(next, Ev::Burst);
                }
            }
            Ev::Departure(k) => {
                self.hint_departures();
                self.remove(k);
            }
            Ev::TraceRemove(id) => {
                if let Some(k) = self
                    .alloc
                    .claim_key(&id)
                    .and_then(|key| self.cloud.claims.of_key(key))
                {
                    self.remove(k);
                }
            }
            Ev::TraceAdd(claim) => {
                // A trace may add an id that is live: the repeat is ignored.
                if self.alloc.claim_key(claim.id()).is_none() {
                    let k = self.track(&claim);
                    self.arrive(k, *claim);
                }
            }
            Ev::LbReady(lb) => {
                if self.alloc.lb_state(lb) == Some(LbState::Provisioning) {
                    let on_it = self.alloc.claims_on(lb);
                    self.cloud.lb_ready(&self.alloc, lb, &on_it);
                    self.drive(Event::LbReady(lb));
                }
            }
            Ev::LbFail(lb) => {
                if self.cloud.lbs.remove(&lb).is_some() && self.alloc.lb_state(lb).is_some() {
                    if now >= self.warmup {
                        self.lb_failures += 1;
                    }
                    let bill = self.cloud.bill(&self.alloc);
                    self.cloud.lb_meters.stop(lb, now, &bill);
                    self.drive(Event::LbFailed(lb));
                }
            }
            Ev::LbGone(lb) => {
                if self.cloud.lbs.remove(&lb).is_some() && self.alloc.lb_state(lb).is_some() {
                    self.drive(Event::LbDeleted(lb));
                }
            }
            Ev::Wakeup => {
                self.wakeup_at = None;
                self.drive(Event::Tick);
            }
            Ev::Sample => {
                self.sample();
                let next = now.saturating_add(self.scenario.sample_every.ms());
                if next <= self.end && next > now {
                    self.cloud.queue.push(next, Ev::Sample);
                }
            }
            Ev::Consolidate => {
                let Some(c) = self.scenario.consolidation.clone() else {
                    return;
                };
                self.drive(Event::Consolidate {
                    max_moves: u32::try_from(c.max_moves).unwrap_or(u32::MAX),
                });
                let next = now.saturating_add(c.every.ms());
                if next <= self.end && next > now {
                    self.cloud.queue.push(next, Ev::Consolidate);
                }
            }
        }
        // The contract: tick at the allocator's wake-up.
        if let Some(w) = self.alloc.next_wakeup() {
            let w = w.0.max(now);
            if self.wakeup_at.is_none_or(|s| w < s) && w <= self.end {
                self.wakeup_at = Some(w);
                self.cloud.queue.push(w, Ev::Wakeup);
            }
        }
    }

    /// A generated claim arrives and leaves at `departs`. Generated ids are unique (the
    /// allocator would refuse a live one, and `drive` says so loudly), so its track is
    /// new, and its departure event is the one remover of its handle.
    fn add_generated(&mut self, claim: Claim, departs: u64) -> u32 {
        let k = self.track(&claim);
        // Queued before the allocator sees the claim, as the events its decisions queue
        // come after it at the same instant.
        self.cloud.queue.push(departs, Ev::Departure(k));
        self.arrive(k, claim);
        k
    }

    /// Gives the generator the allocator's copy of the claim of track `k`, just
    /// generated, for the template of its kind ([`WorkloadGen::adopt`]).
    fn adopt_kept(&mut self, k: u32) {
        let kept = self
            .cloud
            .claims
            .get(k)
            .and_then(ClaimTrack::key)
            .and_then(|key| self.alloc.claim_by_key(key));
        if let (Some(g), Some(kept)) = (self.workload.as_mut(), kept) {
            g.adopt(kept);
        }
    }

    /// Hands a tracked claim to the allocator, and binds track `k` to its key.
    fn arrive(&mut self, k: u32, claim: Claim) {
        let id = claim.id().clone();
        self.cloud.arriving = Some((k, id.clone()));
        self.drive(Event::ClaimAdded(claim));
        // Bound already if a decision named the claim.
        if self.cloud.arriving.take().is_some() {
            let key = self
                .alloc
                .claim_key(&id)
                .unwrap_or_else(|| unreachable!("the allocator keeps every claim: {id}"));
            self.cloud.claims.bind(k, key);
        }
    }

    /// Counts an arriving claim, whose id no live claim has, and starts its track.
    fn track(&mut self, claim: &Claim) -> u32 {
        let tenant = self.cloud.tenants.number(claim.tenant());
        let k = self
            .cloud
            .claims
            .insert(ClaimTrack::new(tenant), self.cloud.now);
        self.arrivals += 1;
        if self.cloud.now >= self.warmup {
            self.arrivals_measured += 1;
        }
        self.cloud.tenants.arrivals[tenant as usize] += 1;
        k
    }

    /// Hints the allocator of the departures after this one ([`Allocator::prefetch`]),
    /// once its state outgrows the caches: the fifth one's track is requested from
    /// memory, and the keys of the first four, read from their tracks (requested by
    /// earlier hints), go to the allocator. Changes nothing but what is in cache.
    fn hint_departures(&self) {
        const AHEAD: usize = sharedlb_allocator::LOOK_AHEAD;
        if !self.alloc.wants_hints() {
            return;
        }
        let next = self.cloud.queue.upcoming_inline(AHEAD + 1, 4 * AHEAD);
        if let Some(&k) = next.get(AHEAD) {
            self.cloud.claims.prefetch(k);
        }
        self.alloc.prefetch(
            next.iter()
                .take(AHEAD)
                .filter_map(|&k| self.cloud.claims.get(k).and_then(ClaimTrack::key)),
        );
    }

    /// A claim leaves: the allocator releases it, then its service and its track end.
    fn remove(&mut self, k: u32) {
        let Some(id) = self
            .cloud
            .claims
            .get(k)
            .and_then(ClaimTrack::key)
            .and_then(|key| self.alloc.claim_by_key(key))
            .map(|c| c.id().clone())
        else {
            return;
        };
        self.cloud.leaving = Some(id.clone());
        self.drive(Event::ClaimRemoved(id));
        self.cloud.leaving = None;
        // The allocator's release named a claim it no longer has, which the cloud passed
        // over: its service ends here.
        self.cloud.set_serving(k, false);
        let bill = self.cloud.bill(&self.alloc);
        self.cloud.claim_meters.stop(k, self.cloud.now, &bill);
        let Some((_, never_served)) = self.cloud.claims.remove(k) else {
            return;
        };
        self.departures += 1;
        // A claim added and removed at one instant was never live, so never refused.
        if never_served.is_some_and(|arrived| arrived >= self.warmup && arrived < self.cloud.now) {
            self.rejections += 1;
        }
    }

    fn integrate(&mut self, t: u64) {
        let from = self.last_t.max(self.warmup);
        let to = t.min(self.end);
        self.last_t = self.last_t.max(t);
        if to <= from {
            return;
        }
        let dt = (to - from) as f64 / MS_PER_HOUR;
        // The state is constant from the last event until `t`: what was billed in it was
        // billed during the measured period (an LB opened and closed at one instant, or
        // only in the warm-up, never was).
        let billed = self.billed_lbs();
        self.lbs_max = self.lbs_max.max(billed);
        let billed = billed as f64;
        let al = &self.alloc;
        let i = &mut self.int;
        i.lbs += billed * dt;
        i.lbs_with_claims += al.lbs_with_claims() as f64 * dt;
        i.bound += al.lower_bound().total as f64 * dt;
        // Capped profiles are metered LB by LB instead (see `crate::billing`).
        i.cost += al.uncapped_cost_per_hour() * dt;
        i.baseline += al.uncapped_baseline_per_hour() * dt;
        i.live += al.claim_count() as f64 * dt;
        i.placed += al.placed_count() as f64 * dt;
        i.served += self.cloud.serving as f64 * dt;
        i.used += al.listeners_used() as f64 * dt;
        i.capacity += al.listener_capacity() as f64 * dt;
        let used = al.listeners_used() as f64;
        let asking = al
            .tenants_by_arrival()
            .filter(|(_, u)| u.claims + u.waiting_claims > 0)
            .take(2)
            .count();
        let level = (used > 0.0 && asking > 1).then(|| al.fair_level());
        for (place, (tenant, u)) in al.tenants_by_arrival().enumerate() {
            // New tenants come last.
            if place == i.tenants.len() {
                i.tenants.push((None, self.cloud.tenants.number(tenant)));
            }
            let live = f64::from(u.claims) + f64::from(u.waiting_claims);
            if live == 0.0 {
                continue;
            }
            let (e, cloud_no) = &mut i.tenants[place];
            let served = self.cloud.tenants.serving[*cloud_no as usize] as f64;
            let e = e.get_or_insert_default();
            e.live += live * dt;
            e.served += served * dt;
            if used > 0.0 {
                let held = f64::from(u.listeners) / used * dt;
                e.held += held;
                e.fair += match level {
                    Some(level) => al.fair_share_by_arrival(level, place) / used * dt,
                    // The one tenant with claims holds every listener in use and is due
                    // them all (what the water-filling gives, without working it out
                    // at every event).
                    None => held,
                };
            }
        }
        if used > 0.0 {
            i.in_use += dt;
        }
    }

    fn sample(&mut self) {
        let c = self.alloc.lb_counts();
        let count = |s| c.get(&s).copied().unwrap_or(0) as u64;
        let a = &self.alloc;
        let bill = self.cloud.bill(a);
        self.samples.push(Sample {
            t_hours: self.cloud.now as f64 / MS_PER_HOUR,
            lbs_ready: count(LbState::Ready),
            lbs_provisioning: count(LbState::Provisioning),
            lbs_draining: count(LbState::Draining),
            lower_bound: a.lower_bound().total,
            lbs_with_claims: a.lbs_with_claims() as u64,
            dedicated_lbs: a.placed_count() as u64,
            listeners_used: a.listeners_used(),
            listener_capacity: a.listener_capacity(),
            claims_live: a.claim_count() as u64,
            claims_served: self.cloud.serving,
            claims_waiting: a.pending_count() as u64,
            cost_per_hour: a.uncapped_cost_per_hour()
                + self.cloud.lb_meters.rate(self.cloud.now, &bill),
            baseline_per_hour: a.uncapped_baseline_per_hour()
                + self.cloud.claim_meters.rate(self.cloud.now, &bill),
        });
    }

    /// The summary and the time series.
    pub fn finish(mut self) -> (Summary, Vec<Sample>) {
        let bill = self.cloud.bill(&self.alloc);
        let metered = std::mem::take(&mut self.cloud.lb_meters).close_all(self.end, &bill);
        let metered_baseline =
            std::mem::take(&mut self.cloud.claim_meters).close_all(self.end, &bill);
        let (cost, baseline) = (
            self.int.cost + metered,
            self.int.baseline + metered_baseline,
        );
        let hours = self.end.saturating_sub(self.warmup) as f64 / MS_PER_HOUR;
        let mut notes = Vec::new();
        if (metered > 0.0 || metered_baseline > 0.0) && hours < HOURS_PER_MONTH {
            notes.push(format!(
                "monthly caps apply per billing month of 730.5 h and only {} was measured: \
                 capped LBs were billed by the hour, and the /month figures extrapolate \
                 that (an LB kept all month costs at most its cap)",
                crate::report::fmt_hours(hours)
            ));
        }
        if let Some((fell, drawn)) = self.workload.as_ref().map(WorkloadGen::fell_back)
            && fell > 0
        {
            notes.push(format!(
                "{fell} of the {drawn} listeners drawn as popular ports were automatic ports \
                 instead: their claim already held every one of the {} popular ports \
                 (claims ask up to {} listeners), so fewer fixed ports were asked than \
                 any_fraction says",
                self.scenario.workload.popular_ports.len(),
                self.scenario.workload.max_listeners
            ));
        }
        let per_h = |x: f64| if hours > 0.0 { x / hours } else { 0.0 };
        // A ratio over nothing is no figure at all (JSON null, n/a in tables).
        let over = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let i = &self.int;
        let weights: BTreeMap<TenantId, u32> = self
            .scenario
            .tenant_specs()
            .into_iter()
            .filter_map(|t| TenantId::new(&t.name).ok().map(|id| (id, t.weight)))
            .collect();
        // By name, as every figure per tenant is reported.
        let by_name: BTreeMap<&TenantId, TenantIntegrals> = self
            .alloc
            .tenants_by_arrival()
            .zip(&i.tenants)
            .filter_map(|((name, _), &(t, _))| Some((name, t?)))
            .collect();
        let served_fractions: Vec<f64> = by_name
            .values()
            .filter(|t| t.live > 0.0)
            .map(|t| t.served / t.live)
            .collect();
        // The scenario's tenants, those without arrivals too, and every tenant arrived.
        let mut arrived: BTreeMap<TenantId, u64> =
            self.named_tenants.iter().map(|t| (t.clone(), 0)).collect();
        for (name, &n) in &self.cloud.tenants.numbers {
            let a = self.cloud.tenants.arrivals[n as usize];
            if a > 0 {
                *arrived.entry(name.clone()).or_default() += a;
            }
        }
        let tenants = arrived
            .iter()
            .map(|(id, &arrivals)| {
                let t = by_name.get(id).copied().unwrap_or_default();
                let mean = |x: f64| over(x, i.in_use);
                (
                    id.to_string(),
                    TenantSummary {
                        weight: weights.get(id).copied().unwrap_or(1),
                        served_fraction: over(t.served, t.live),
                        listener_share: mean(t.held),
                        fair_share: mean(t.fair),
                        arrivals,
                    },
                )
            })
            .collect();
        let cost_per_hour = per_h(cost);
        let summary = Summary {
            scenario: self.scenario.name.clone(),
            policy: self.scenario.allocator.policy.to_string(),
            seed: self.scenario.seed,
            currency: self.alloc.config().currency().to_string(),
            duration_h: self.end as f64 / MS_PER_HOUR,
            measured_h: hours,
            arrivals: self.arrivals,
            arrivals_measured: self.arrivals_measured,
            departures: self.departures,
            served_fraction: over(i.served, i.live),
            claims_live_mean: per_h(i.live),
            claims_served_mean: per_h(i.served),
            claims_waiting_mean: per_h(i.live - i.placed),
            rejections: self.rejections,
            pending_at_end: self.alloc.pending_count() as u64,
            waits: self.cloud.waits.waits(),
            pending_reasons: self.cloud.pending_reasons,
            claims_waited: self.cloud.claims_waited,
            lbs_mean: per_h(i.lbs),
            lbs_max: self.lbs_max,
            lbs_created: self.cloud.lbs_created,
            lb_failures: self.lb_failures,
            lb_hours: i.lbs,
            cost_total: cost,
            cost_per_hour,
            cost_per_month: cost_per_hour * HOURS_PER_MONTH,
            baseline_cost_total: baseline,
            savings_fraction: (baseline > 0.0).then(|| 1.0 - cost / baseline),
            listeners_used_mean: per_h(i.used),
            listener_capacity_mean: per_h(i.capacity),
            utilisation: over(i.used, i.capacity),
            lower_bound_mean: per_h(i.bound),
            lbs_over_lower_bound: over(i.lbs, i.bound),
            packing_ratio: over(i.lbs_with_claims, i.bound),
            jain_index: (!served_fractions.is_empty()).then(|| jain_index(&served_fractions)),
            tenants,
            migrations: self.cloud.migrations,
            notes,
        };
        (summary, self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After an arrival the generator's template of its kind is the allocator's own copy
    /// of what such claims ask, so the next claims of the kind are found without hashing:
    /// every template with live claims of its kind shares their copy.
    #[test]
    fn a_template_becomes_the_allocators_copy_of_its_kind() {
        let mut sim = Simulation::new(&Scenario::default_scenario()).unwrap();
        sim.run_until(12 * 3_600_000, u64::MAX);
        let g = sim.workload.as_ref().unwrap();
        let live: Vec<&Claim> = sim.alloc.claims().into_iter().map(|(c, _)| c).collect();
        let alike = |t: &Claim, c: &Claim| {
            (c.tenant(), c.ports(), c.sharing(), c.allow_migration())
                == (t.tenant(), t.ports(), t.sharing(), t.allow_migration())
        };
        let mut kinds_live = 0;
        for t in g.templates() {
            let of_kind: Vec<&&Claim> = live.iter().filter(|c| alike(t, c)).collect();
            if of_kind.is_empty() {
                continue;
            }
            kinds_live += 1;
            for c in of_kind {
                assert!(
                    t.shares_body_with(c),
                    "{} does not share its template",
                    c.id()
                );
            }
        }
        assert!(
            kinds_live > 3,
            "{kinds_live} kinds live: too few to show anything"
        );
    }
}
