//! The discrete-event engine: a shell around the allocator. It turns workload events into
//! allocator events, carries out the allocator's decisions (LBs take a provisioning delay,
//! fail, are deleted) and measures everything.
//!
//! Two seeded random streams keep policies comparable: the workload stream (arrivals,
//! claims, lifetimes) is drawn only at arrivals, so every policy sees the same claims at
//! the same times (common random numbers); the infrastructure stream draws provisioning
//! delays and failures.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use sharedlb_allocator::bounds::lower_bound;
use sharedlb_allocator::fairness::{fair_shares, jain_index};
use sharedlb_allocator::{
    Allocator, Claim, ClaimId, Decision, Event, LbId, LbProfile, ProfileName, TenantId, Time,
};

use crate::metrics::{Sample, Summary, TenantSummary, Waits};
use crate::queue::EventQueue;
use crate::scenario::{ProfileSpec, Scenario};
use crate::trace::TraceEvent;
use crate::workload::{WorkloadGen, sample_duration};

/// How long a cloud takes to delete an LB once asked.
const DELETE_DELAY_MS: u64 = 30_000;
const MS_PER_HOUR: f64 = 3_600_000.0;

#[derive(Debug, Clone)]
enum Ev {
    Arrival,
    Burst,
    Departure(ClaimId),
    LbReady(LbId),
    LbFail(LbId),
    LbGone(LbId),
    Wakeup,
    Sample,
    Consolidate,
    // Boxed: keeps every queued event small (a claim is ~150 bytes).
    TraceAdd(Box<Claim>),
    TraceRemove(ClaimId),
}

#[derive(Debug, Clone)]
struct ClaimTrack {
    tenant: TenantId,
    arrived: u64,
    listeners: u64,
    lb: Option<LbId>,
    served: bool,
}

#[derive(Debug, Clone)]
struct LbTrack {
    profile: usize,
    claims: u32,
    ready: bool,
    draining: bool,
    waiters: Vec<ClaimId>,
}

#[derive(Debug, Clone, Default)]
struct TenantAcc {
    live: u64,
    placed: u64,
    live_listeners: u64,
    used_listeners: u64,
    arrivals: u64,
    int_live: f64,
    int_placed: f64,
    int_live_listeners: f64,
    int_used_listeners: f64,
}

/// A simulation run, steppable in chunks (the dashboard runs it a slice at a time).
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    alloc: Allocator,
    profiles: Vec<ProfileSpec>,
    caps: Vec<u64>,
    prices: Vec<f64>,
    profile_index: HashMap<ProfileName, usize>,
    bound_profile: LbProfile,
    workload_rng: Pcg64Mcg,
    infra_rng: Pcg64Mcg,
    workload: Option<WorkloadGen>,
    queue: EventQueue<Ev>,
    now: u64,
    end: u64,
    warmup: u64,
    wakeup_at: Option<u64>,
    claims: HashMap<ClaimId, ClaimTrack>,
    lbs: BTreeMap<LbId, LbTrack>,
    lbs_per_profile: Vec<u64>,
    live: u64,
    placed: u64,
    used: u64,
    capacity: u64,
    tenants: BTreeMap<TenantId, TenantAcc>,
    // Integrals over the measured period, in units × hours.
    last_t: u64,
    int_lbs: f64,
    int_cost: f64,
    int_live: f64,
    int_placed: f64,
    int_used: f64,
    int_capacity: f64,
    lbs_max: u64,
    samples: Vec<Sample>,
    waits: Vec<u64>,
    pending_reasons: BTreeMap<String, u64>,
    arrivals: u64,
    departures: u64,
    rejections: u64,
    lbs_created: u64,
    lb_failures: u64,
    migrations: u64,
    events: u64,
    check: bool,
    violation: Option<String>,
}

impl Simulation {
    /// A run of the scenario's generated workload with its seed.
    pub fn new(scenario: &Scenario) -> Result<Simulation, sharedlb_allocator::Error> {
        let mut sim = Simulation::base(scenario)?;
        let generator = WorkloadGen::new(scenario);
        if let Some(t) = generator.next_arrival(0, &mut sim.workload_rng) {
            sim.queue.push(t, Ev::Arrival);
        }
        if let Some(b) = &scenario.workload.arrival.bursts
            && b.size > 0
        {
            sim.queue.push(b.every.ms(), Ev::Burst);
        }
        sim.workload = Some(generator);
        Ok(sim)
    }

    /// A replay of a trace, with the scenario's allocator and profiles; runs until the
    /// last trace event (or the scenario's duration, if later).
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
        for e in trace {
            match e {
                TraceEvent::Add { t, claim } => sim.queue.push(t, Ev::TraceAdd(Box::new(claim))),
                TraceEvent::Remove { t, id } => sim.queue.push(t, Ev::TraceRemove(id)),
            }
        }
        Ok(sim)
    }

    fn base(scenario: &Scenario) -> Result<Simulation, sharedlb_allocator::Error> {
        let config = scenario.allocator_config()?;
        let alloc = Allocator::new(config.clone())?;
        let profiles = scenario.profile_specs();
        let caps = config
            .profiles
            .iter()
            .map(|p| u64::from(p.max_listeners))
            .collect();
        let prices = config.profiles.iter().map(|p| p.hourly_price).collect();
        let profile_index = config
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        // The bound must hold whichever profile is used: the most permissive one.
        let mut bound_profile = config.profiles[0].clone();
        for p in &config.profiles[1..] {
            bound_profile.max_listeners = bound_profile.max_listeners.max(p.max_listeners);
            bound_profile.mixed_protocols |= p.mixed_protocols;
            bound_profile.shared_port_numbers |= p.shared_port_numbers;
        }
        let mut queue = EventQueue::new();
        queue.push(0, Ev::Sample);
        if let Some(c) = &scenario.consolidation {
            queue.push(c.every.ms(), Ev::Consolidate);
        }
        let mut tenants = BTreeMap::new();
        for t in scenario.tenant_specs() {
            tenants.insert(TenantId::new(&t.name)?, TenantAcc::default());
        }
        let n = profiles.len();
        Ok(Simulation {
            scenario: scenario.clone(),
            alloc,
            profiles,
            caps,
            prices,
            profile_index,
            bound_profile,
            workload_rng: Pcg64Mcg::seed_from_u64(scenario.seed),
            infra_rng: Pcg64Mcg::seed_from_u64(scenario.seed ^ 0x9E37_79B9_7F4A_7C15),
            workload: None,
            queue,
            now: 0,
            end: scenario.duration.ms(),
            warmup: scenario.warmup.ms(),
            wakeup_at: None,
            claims: HashMap::new(),
            lbs: BTreeMap::new(),
            lbs_per_profile: vec![0; n],
            live: 0,
            placed: 0,
            used: 0,
            capacity: 0,
            tenants,
            last_t: 0,
            int_lbs: 0.0,
            int_cost: 0.0,
            int_live: 0.0,
            int_placed: 0.0,
            int_used: 0.0,
            int_capacity: 0.0,
            lbs_max: 0,
            samples: Vec::new(),
            waits: Vec::new(),
            pending_reasons: BTreeMap::new(),
            arrivals: 0,
            departures: 0,
            rejections: 0,
            lbs_created: 0,
            lb_failures: 0,
            migrations: 0,
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
        self.now
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
            (self.now as f64 / self.end as f64).min(1.0)
        }
    }

    /// Whether the run has reached its end.
    pub fn is_done(&self) -> bool {
        self.queue.peek_time().is_none_or(|t| t > self.end)
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
            match self.queue.peek_time() {
                Some(t) if t <= until => {}
                _ => break,
            }
            let Some((t, ev)) = self.queue.pop() else {
                break;
            };
            self.integrate(t);
            self.now = t;
            self.events += 1;
            n += 1;
            self.step(ev);
        }
        if self.is_done() {
            self.integrate(self.end);
            self.now = self.end;
        } else if n < max_events {
            // Nothing happens before `until`: simulated time still passes.
            self.now = self.now.max(until);
        }
    }

    /// Runs to the end and summarises.
    pub fn run(mut self) -> (Summary, Vec<Sample>) {
        self.run_until(u64::MAX, u64::MAX);
        self.finish()
    }

    fn handle(&mut self, event: Event) {
        // The shell only sends events it knows to be valid; an error here is a bug in the
        // shell, reported loudly rather than hidden.
        match self.alloc.handle(Time(self.now), event) {
            Ok(ds) => self.apply(ds),
            Err(e) => unreachable!("simulator sent an invalid event: {e}"),
        }
        self.verify();
    }

    fn verify(&mut self) {
        if self.check
            && self.violation.is_none()
            && let Err(e) = self.alloc.check_invariants()
        {
            self.violation = Some(format!("at {} ms: {e}", self.now));
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => {
                let Some(g) = self.workload.as_mut() else {
                    return;
                };
                let claim = g.claim(&mut self.workload_rng);
                let life = g.lifetime(&mut self.workload_rng);
                if let Some(next) = g.next_arrival(self.now, &mut self.workload_rng) {
                    self.queue.push(next, Ev::Arrival);
                }
                self.queue.push(
                    self.now.saturating_add(life),
                    Ev::Departure(claim.id.clone()),
                );
                self.add(claim);
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
                    self.queue.push(
                        self.now.saturating_add(life),
                        Ev::Departure(claim.id.clone()),
                    );
                    self.add(claim);
                }
                self.queue.push(self.now + b.every.ms(), Ev::Burst);
            }
            Ev::Departure(id) | Ev::TraceRemove(id) => self.remove(&id),
            Ev::TraceAdd(claim) => {
                if !self.claims.contains_key(&claim.id) {
                    self.add(*claim);
                }
            }
            Ev::LbReady(lb) => {
                let Some(track) = self.lbs.get_mut(&lb) else {
                    return;
                };
                track.ready = true;
                let waiters = std::mem::take(&mut track.waiters);
                for c in waiters {
                    if self.claims.get(&c).is_some_and(|t| t.lb == Some(lb)) {
                        self.serve(&c);
                    }
                }
                self.handle(Event::LbReady(lb));
            }
            Ev::LbFail(lb) => {
                let Some(track) = self.lbs.remove(&lb) else {
                    return;
                };
                self.lb_failures += 1;
                self.lb_gone(&track);
                self.handle(Event::LbFailed(lb));
            }
            Ev::LbGone(lb) => {
                let Some(track) = self.lbs.remove(&lb) else {
                    return;
                };
                self.lb_gone(&track);
                self.handle(Event::LbDeleted(lb));
            }
            Ev::Wakeup => {
                self.wakeup_at = None;
                self.handle(Event::Tick);
            }
            Ev::Sample => {
                self.sample();
                let next = self.now + self.scenario.sample_every.ms();
                if next <= self.end {
                    self.queue.push(next, Ev::Sample);
                }
            }
            Ev::Consolidate => {
                let Some(c) = self.scenario.consolidation.clone() else {
                    return;
                };
                match self.alloc.consolidate(Time(self.now), c.max_moves) {
                    Ok(ds) => self.apply(ds),
                    Err(e) => unreachable!("consolidation at a valid time: {e}"),
                }
                self.verify();
                self.queue.push(self.now + c.every.ms(), Ev::Consolidate);
            }
        }
        if let Some(w) = self.alloc.next_wakeup() {
            let w = w.0.max(self.now);
            if self.wakeup_at.is_none_or(|s| w < s) {
                self.wakeup_at = Some(w);
                self.queue.push(w, Ev::Wakeup);
            }
        }
    }

    fn add(&mut self, claim: Claim) {
        self.arrivals += 1;
        let n = u64::from(claim.listener_count());
        let t = match self.tenants.get_mut(&claim.tenant) {
            Some(t) => t,
            None => self.tenants.entry(claim.tenant.clone()).or_default(),
        };
        t.live += 1;
        t.live_listeners += n;
        t.arrivals += 1;
        self.live += 1;
        self.claims.insert(
            claim.id.clone(),
            ClaimTrack {
                tenant: claim.tenant.clone(),
                arrived: self.now,
                listeners: n,
                lb: None,
                served: false,
            },
        );
        self.handle(Event::ClaimAdded(claim));
    }

    fn remove(&mut self, id: &ClaimId) {
        if !self.claims.contains_key(id) {
            return;
        }
        self.handle(Event::ClaimRemoved(id.clone()));
        let Some(track) = self.claims.remove(id) else {
            return;
        };
        self.departures += 1;
        if !track.served && track.arrived >= self.warmup {
            self.rejections += 1;
        }
        self.live -= 1;
        if let Some(t) = self.tenants.get_mut(&track.tenant) {
            t.live -= 1;
            t.live_listeners -= track.listeners;
        }
    }

    fn serve(&mut self, id: &ClaimId) {
        let Some(t) = self.claims.get_mut(id) else {
            return;
        };
        if !t.served {
            t.served = true;
            if t.arrived >= self.warmup {
                self.waits.push(self.now - t.arrived);
            }
        }
    }

    fn lb_gone(&mut self, track: &LbTrack) {
        self.lbs_per_profile[track.profile] -= 1;
        if !track.draining {
            self.capacity -= self.caps[track.profile];
        }
    }

    fn set_placed(&mut self, id: &ClaimId, lb: Option<LbId>) {
        let Some(t) = self.claims.get_mut(id) else {
            return;
        };
        let was = t.lb.is_some();
        let old = std::mem::replace(&mut t.lb, lb);
        if old != lb {
            if let Some(x) = old.and_then(|o| self.lbs.get_mut(&o)) {
                x.claims -= 1;
            }
            if let Some(x) = lb.and_then(|n| self.lbs.get_mut(&n)) {
                x.claims += 1;
            }
        }
        let n = t.listeners;
        let Some(acc) = self.tenants.get_mut(&t.tenant) else {
            return;
        };
        match (was, lb.is_some()) {
            (false, true) => {
                self.placed += 1;
                self.used += n;
                acc.placed += 1;
                acc.used_listeners += n;
            }
            (true, false) => {
                self.placed -= 1;
                self.used -= n;
                acc.placed -= 1;
                acc.used_listeners -= n;
            }
            _ => {}
        }
    }

    fn apply(&mut self, ds: Vec<Decision>) {
        for d in ds {
            match d {
                Decision::CreateLb { lb, profile } => {
                    let p = self.profile_index[&profile];
                    let delay =
                        sample_duration(&self.profiles[p].provisioning, &mut self.infra_rng);
                    self.queue.push(self.now + delay, Ev::LbReady(lb));
                    let rate = self.profiles[p].failures_per_day;
                    if rate > 0.0
                        && let Ok(exp) = Exp::new(rate / 86_400_000.0)
                    {
                        let t = exp.sample(&mut self.infra_rng).min(1e15) as u64;
                        self.queue
                            .push(self.now.saturating_add(t.max(1)), Ev::LbFail(lb));
                    }
                    self.lbs.insert(
                        lb,
                        LbTrack {
                            profile: p,
                            claims: 0,
                            ready: false,
                            draining: false,
                            waiters: Vec::new(),
                        },
                    );
                    self.lbs_per_profile[p] += 1;
                    self.capacity += self.caps[p];
                    self.lbs_created += 1;
                    self.lbs_max = self.lbs_max.max(self.lbs.len() as u64);
                }
                Decision::Assign { claim, lb, .. } => {
                    self.set_placed(&claim, Some(lb));
                    self.placed_on(claim, lb);
                }
                Decision::Migrate { claim, to, .. } => {
                    self.migrations += 1;
                    self.set_placed(&claim, Some(to));
                    self.placed_on(claim, to);
                }
                Decision::Release { claim, .. } => self.set_placed(&claim, None),
                Decision::Pending { reason, .. } => {
                    *self
                        .pending_reasons
                        .entry(reason.as_str().to_owned())
                        .or_default() += 1;
                }
                Decision::DeleteLb { lb } => {
                    if let Some(t) = self.lbs.get_mut(&lb)
                        && !t.draining
                    {
                        t.draining = true;
                        self.capacity -= self.caps[t.profile];
                        self.queue.push(self.now + DELETE_DELAY_MS, Ev::LbGone(lb));
                    }
                }
            }
        }
    }

    fn placed_on(&mut self, claim: ClaimId, lb: LbId) {
        match self.lbs.get_mut(&lb) {
            Some(t) if t.ready => self.serve(&claim),
            Some(t) => t.waiters.push(claim),
            None => {}
        }
    }

    fn cost_rate(&self) -> f64 {
        self.lbs_per_profile
            .iter()
            .zip(&self.prices)
            .map(|(&n, &p)| n as f64 * p)
            .sum()
    }

    fn integrate(&mut self, t: u64) {
        let a = self.last_t.max(self.warmup);
        let b = t.min(self.end);
        self.last_t = self.last_t.max(t);
        if b <= a {
            return;
        }
        let dt = (b - a) as f64 / MS_PER_HOUR;
        self.int_lbs += self.lbs.len() as f64 * dt;
        self.int_cost += self.cost_rate() * dt;
        self.int_live += self.live as f64 * dt;
        self.int_placed += self.placed as f64 * dt;
        self.int_used += self.used as f64 * dt;
        self.int_capacity += self.capacity as f64 * dt;
        for acc in self.tenants.values_mut() {
            acc.int_live += acc.live as f64 * dt;
            acc.int_placed += acc.placed as f64 * dt;
            acc.int_live_listeners += acc.live_listeners as f64 * dt;
            acc.int_used_listeners += acc.used_listeners as f64 * dt;
        }
    }

    fn sample(&mut self) {
        let (mut ready, mut prov, mut draining) = (0, 0, 0);
        let with_claims = self.lbs.values().filter(|t| t.claims > 0).count() as u64;
        for t in self.lbs.values() {
            if t.draining {
                draining += 1;
            } else if t.ready {
                ready += 1;
            } else {
                prov += 1;
            }
        }
        let live: Vec<Claim> = self
            .alloc
            .claims()
            .into_iter()
            .map(|(c, _)| c.clone())
            .collect();
        let bound = lower_bound(&live, &self.bound_profile).total;
        self.samples.push(Sample {
            t_hours: self.now as f64 / MS_PER_HOUR,
            lbs_ready: ready,
            lbs_provisioning: prov,
            lbs_draining: draining,
            lower_bound: bound,
            lbs_with_claims: with_claims,
            dedicated_lbs: self.live,
            listeners_used: self.used,
            listener_capacity: self.capacity,
            claims_live: self.live,
            claims_pending: self.live - self.placed,
            cost_per_hour: self.cost_rate(),
        });
    }

    /// The summary and the time series.
    pub fn finish(self) -> (Summary, Vec<Sample>) {
        let hours = self.end.saturating_sub(self.warmup) as f64 / MS_PER_HOUR;
        let per_h = |x: f64| if hours > 0.0 { x / hours } else { 0.0 };
        let measured: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.t_hours * MS_PER_HOUR >= self.warmup as f64)
            .collect();
        let lb_mean = if measured.is_empty() {
            0.0
        } else {
            measured.iter().map(|s| s.lower_bound as f64).sum::<f64>() / measured.len() as f64
        };
        let ratios: Vec<f64> = measured
            .iter()
            .filter(|s| s.lower_bound > 0)
            .map(|s| (s.lbs_ready + s.lbs_provisioning) as f64 / s.lower_bound as f64)
            .collect();
        let ratio = if ratios.is_empty() {
            1.0
        } else {
            ratios.iter().sum::<f64>() / ratios.len() as f64
        };
        let packing: Vec<f64> = measured
            .iter()
            .filter(|s| s.lower_bound > 0)
            .map(|s| s.lbs_with_claims as f64 / s.lower_bound as f64)
            .collect();
        let packing = if packing.is_empty() {
            1.0
        } else {
            packing.iter().sum::<f64>() / packing.len() as f64
        };
        let baseline_price = self.prices.first().copied().unwrap_or(0.0);
        let dedicated_cost = self.int_live * baseline_price;
        let served: Vec<f64> = self
            .tenants
            .values()
            .filter(|t| t.int_live > 0.0)
            .map(|t| t.int_placed / t.int_live)
            .collect();
        let weights: BTreeMap<TenantId, u32> = self
            .scenario
            .tenant_specs()
            .into_iter()
            .filter_map(|t| TenantId::new(&t.name).ok().map(|id| (id, t.weight)))
            .collect();
        let demands: BTreeMap<TenantId, (u32, f64)> = self
            .tenants
            .iter()
            .map(|(id, t)| {
                (
                    id.clone(),
                    (
                        weights.get(id).copied().unwrap_or(1),
                        per_h(t.int_live_listeners),
                    ),
                )
            })
            .collect();
        let fair = fair_shares(per_h(self.int_used), &demands);
        let tenants = self
            .tenants
            .iter()
            .map(|(id, t)| {
                let used_mean = per_h(self.int_used);
                (
                    id.to_string(),
                    TenantSummary {
                        weight: weights.get(id).copied().unwrap_or(1),
                        served_fraction: if t.int_live > 0.0 {
                            t.int_placed / t.int_live
                        } else {
                            1.0
                        },
                        listener_share: if self.int_used > 0.0 {
                            t.int_used_listeners / self.int_used
                        } else {
                            0.0
                        },
                        fair_share: if used_mean > 0.0 {
                            fair.get(id).copied().unwrap_or(0.0) / used_mean
                        } else {
                            0.0
                        },
                        arrivals: t.arrivals,
                    },
                )
            })
            .collect();
        let summary = Summary {
            scenario: self.scenario.name.clone(),
            policy: self.scenario.allocator.policy.to_string(),
            seed: self.scenario.seed,
            duration_h: self.end as f64 / MS_PER_HOUR,
            measured_h: hours,
            arrivals: self.arrivals,
            departures: self.departures,
            lbs_mean: per_h(self.int_lbs),
            lbs_max: self.lbs_max,
            lbs_created: self.lbs_created,
            lb_failures: self.lb_failures,
            lb_hours: self.int_lbs,
            cost_total: self.int_cost,
            cost_per_hour: per_h(self.int_cost),
            dedicated_cost_total: dedicated_cost,
            savings_fraction: if dedicated_cost > 0.0 {
                1.0 - self.int_cost / dedicated_cost
            } else {
                0.0
            },
            listeners_used_mean: per_h(self.int_used),
            listener_capacity_mean: per_h(self.int_capacity),
            utilisation: if self.int_capacity > 0.0 {
                self.int_used / self.int_capacity
            } else {
                0.0
            },
            claims_live_mean: per_h(self.int_live),
            claims_pending_mean: per_h(self.int_live - self.int_placed),
            waits: Waits::from_ms(self.waits),
            pending_reasons: self.pending_reasons,
            rejections: self.rejections,
            pending_at_end: self.live - self.placed,
            lower_bound_mean: lb_mean,
            lbs_over_lower_bound: ratio,
            packing_ratio: packing,
            jain_index: jain_index(&served),
            tenants,
            migrations: self.migrations,
        };
        (summary, self.samples)
    }
}
