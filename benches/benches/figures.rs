//! The figures criterion cannot give: memory per live claim and heap allocations per
//! decision (a counting global allocator), simulator throughput against a bare
//! `BinaryHeap` loop on a small and a large event population, and packing quality against
//! the lower bound (also at a million live claims).
//!
//! `cargo bench -p sharedlb-benches --bench figures [-- SECTION]` with SECTION one of
//! `memory`, `allocs`, `simulator`, `quality`, `scale-quality`; `SHAREDLB_BENCH_QUICK=1`
//! (or `-- --quick`) for smaller sizes.

use std::alloc::System;
use std::time::Instant;

use sharedlb_allocator::{PolicyKind, Time};
use sharedlb_benches::{
    ClaimGen, MULTI_CAPACITY, Requests, bare_loop, filled, partly_filled, partly_filled_claims,
    play, script,
};
use sharedlb_simulator::scenario::{Consolidation, Dur, DurationDist, PopularPort};
use sharedlb_simulator::{Scenario, Simulation};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn quick() -> bool {
    std::env::var_os("SHAREDLB_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects sections.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let want = |s: &str| filter.as_deref().is_none_or(|f| s.contains(f));
    if want("memory") {
        memory();
    }
    if want("allocs") {
        allocs();
    }
    if want("simulator") {
        simulator();
    }
    if filter.as_deref().is_none_or(|f| f == "quality") {
        quality();
    }
    if want("scale-quality") {
        scale_quality();
    }
}

#[allow(clippy::disallowed_methods)] // A benchmark reads the wall clock.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

fn memory() {
    let lbs = if quick() { 10_000 } else { 100_000 };
    println!("## memory per live claim (best-fit, one shared pool)");
    let report = |label: &str,
                  f: &dyn Fn() -> (
        sharedlb_allocator::Allocator,
        Vec<sharedlb_allocator::ClaimId>,
    )| {
        let region = Region::new(GLOBAL);
        let (a, ids) = f();
        let change = region.change();
        let live = ids.len();
        // The caller's copy of the ids (the `ids` vector) is not allocator state. The id
        // text is: an id of up to 23 bytes is held inline in the claim's slot (no heap of
        // its own), a longer one in a shared heap chunk the allocator counts here.
        let id_bytes: usize = ids.iter().map(|i| i.as_str().len()).sum();
        let caller = ids.capacity() * std::mem::size_of::<sharedlb_allocator::ClaimId>();
        let net = change.bytes_allocated as f64 - change.bytes_deallocated as f64 - caller as f64;
        let per_claim = net / live as f64;
        println!(
            "{label}: live claims {live}, LBs {}, listeners {}, allocator bytes {net:.0}, per live claim {per_claim:.1} B, its id ({:.1} B of text) included",
            a.lbs().len(),
            a.listeners_used(),
            id_bytes as f64 / live as f64
        );
        drop(a);
    };
    report("full, one Any port", &|| {
        let (a, ids, _) = filled(best_fit(), Requests::Any, lbs);
        (a, ids)
    });
    report("partly filled, 1-3 Any ports", &|| {
        let n = partly_filled_claims(Requests::Multi, lbs, MULTI_CAPACITY);
        let (a, ids, _) = partly_filled(best_fit(), Requests::Multi, n, MULTI_CAPACITY);
        (a, ids)
    });
}

/// Heap allocations per decision in steady-state churn, counted by the global allocator
/// around a loop that only drives the allocator (the churn steps are drawn before it).
fn allocs() {
    const WINDOWS: usize = 5;
    let lbs = if quick() { 1_000 } else { 10_000 };
    let steps = 20_000;
    println!(
        "## heap allocations per decision (churn on {lbs} LBs after {steps} warm-up steps, then {WINDOWS} windows of {steps} steps = {} decisions)",
        2 * steps
    );
    for requests in [Requests::Any, Requests::Multi] {
        for name in PolicyKind::names() {
            let policy: PolicyKind = name.parse().unwrap_or_else(|_| best_fit());
            let (mut a, mut ids, mut g) = match requests {
                Requests::Multi => {
                    let n = partly_filled_claims(requests, lbs, MULTI_CAPACITY);
                    partly_filled(policy, requests, n, MULTI_CAPACITY)
                }
                _ => filled(policy, requests, lbs),
            };
            // Warm up: the state settles and every buffer reaches its working size.
            let warm = script(&mut ids, &mut g, steps);
            play(&mut a, warm);
            // Then consecutive windows: whether what is left is the tail of the warm-up
            // (per-LB tables growing once, on LBs the warm-up did not reach) or a cost of
            // every decision shows in whether the count falls from window to window.
            // LBs opened in a window (counted outside the measured region) tell allocations
            // of new LBs from those of decisions on existing ones.
            let mut per_window = Vec::new();
            let mut last = (0, 0, 0);
            for _ in 0..WINDOWS {
                let plan = script(&mut ids, &mut g, steps);
                let before = a.lbs().len();
                let region = Region::new(GLOBAL);
                play(&mut a, plan);
                let c = region.change();
                per_window.push((c.allocations + c.reallocations) as f64 / (2 * steps) as f64);
                last = (c.allocations, c.reallocations, a.lbs().len() - before);
            }
            let windows: Vec<String> = per_window.iter().map(|x| format!("{x:.4}")).collect();
            println!(
                "{} {name}: {} allocations per decision in the last window ({} allocations, {} reallocations, {} LBs opened); windows of {steps} steps: {}",
                requests.tag(),
                windows.last().map_or("-", String::as_str),
                last.0,
                last.1,
                last.2,
                windows.join(", ")
            );
        }
    }
}

fn churn_scenario(rate_per_hour: f64, mean_life: Dur, duration: Dur) -> Scenario {
    let mut s = Scenario::default_scenario();
    s.name = "churn".into();
    s.tenants.clear();
    s.profiles.clear();
    s.consolidation = None;
    s.duration = duration;
    s.warmup = Dur(0);
    s.sample_every = duration;
    s.allocator.idle_timeout = Dur(600_000);
    s.workload.arrival.rate_per_hour = rate_per_hour;
    s.workload.arrival.diurnal_amplitude = 0.0;
    s.workload.arrival.bursts = None;
    s.workload.lifetime = DurationDist::Exponential { mean: mean_life };
    s.workload.min_listeners = 1;
    s.workload.max_listeners = 1;
    s.workload.any_fraction = 1.0;
    s.workload.udp_fraction = 0.0;
    s
}

fn simulator() {
    println!("## simulator throughput (claim events per second) vs a bare BinaryHeap loop");
    let big = if quick() { 100_000.0 } else { 1_000_000.0 };
    for (shape, live, hours) in [("S", 1_000.0, 300), ("L", big, 3)] {
        // λ·L = live claims; each pending departure is one queued event. Both shapes
        // process a few hundred thousand claim events or more.
        let mean_life = Dur(3_600_000);
        let rate = live; // per hour, with a one-hour mean lifetime
        let duration = Dur(hours * 3_600_000);
        let mut s = churn_scenario(rate, mean_life, duration);
        s.workload.arrival.rate_per_hour = rate;
        let mut sim = Simulation::new(&s).unwrap_or_else(|e| unreachable!("{e}"));
        let ((), secs_sim) = timed(|| sim.run_until(u64::MAX, u64::MAX));
        let (summary, _) = sim.finish();
        let sim_events = summary.arrivals + summary.departures;
        let config = s.allocator_config().unwrap_or_else(|e| unreachable!("{e}"));
        let mut a =
            sharedlb_allocator::Allocator::new(config).unwrap_or_else(|e| unreachable!("{e}"));
        let mut g = ClaimGen::new(Requests::Any, 1);
        let ((bare_events, bare_live), secs_bare) = timed(|| {
            bare_loop(
                &mut a,
                &mut g,
                rate / 3_600_000.0,
                mean_life.ms() as f64,
                duration.ms(),
            )
        });
        let (r_sim, r_bare) = (sim_events as f64 / secs_sim, bare_events as f64 / secs_bare);
        println!(
            "{shape}: ~{live:.0} live claims (bare loop ends with {bare_live}); simulator {r_sim:.0} ev/s ({sim_events} in {secs_sim:.2} s), bare loop {r_bare:.0} ev/s ({bare_events} in {secs_bare:.2} s): ratio {:.2}",
            r_sim / r_bare
        );
    }
}

fn quality() {
    println!(
        "## packing quality: time-averaged (LBs holding claims / lower bound) and, in brackets, (all live LBs incl. idle / lower bound)"
    );
    let mut default = Scenario::default_scenario();
    if quick() {
        default.duration = Dur::parse("10d").unwrap_or(Dur(864_000_000));
    }
    // One fixed port per claim from a few ports: max(ceil(n/C), most claims per port) is
    // the exact optimum here.
    let mut single = churn_scenario(
        60.0,
        Dur(10 * 3_600_000),
        Dur::parse("10d").unwrap_or(Dur(1)),
    );
    single.name = "single fixed port".into();
    single.warmup = Dur::parse("2d").unwrap_or(Dur(0));
    single.sample_every = Dur(3_600_000);
    single.workload.any_fraction = 0.0;
    single.workload.zipf_exponent = 0.0;
    single.workload.migration_fraction = 1.0;
    single.workload.popular_ports = [
        443u16, 80, 5432, 6379, 9092, 1883, 3306, 5672, 8080, 8443, 22, 25565,
    ]
    .iter()
    .map(|&port| PopularPort {
        port,
        protocol: sharedlb_allocator::Protocol::Tcp,
    })
    .collect();
    let policies: Vec<&str> = PolicyKind::names().filter(|p| *p != "dedicated").collect();
    for base in [default, single] {
        for consolidate in [false, true] {
            let mut row = Vec::new();
            for p in policies.clone() {
                let mut s = base.clone();
                s.allocator.policy = p.parse().unwrap_or_else(|_| best_fit());
                s.workload.migration_fraction = if consolidate {
                    1.0
                } else {
                    s.workload.migration_fraction
                };
                s.consolidation = consolidate.then_some(Consolidation {
                    every: Dur(900_000),
                    max_moves: 200,
                });
                let (sum, _) = sharedlb_simulator::run(&s).unwrap_or_else(|e| unreachable!("{e}"));
                row.push(format!(
                    "{p} {:.3} ({:.3})",
                    sum.packing_ratio.unwrap_or(f64::NAN),
                    sum.lbs_over_lower_bound.unwrap_or(f64::NAN)
                ));
            }
            println!(
                "{} {}: {}",
                base.name,
                if consolidate {
                    "with consolidation"
                } else {
                    "without migrations"
                },
                row.join(", ")
            );
        }
    }
    let _ = Time(0);
}

/// Packing at scale: about a million live claims of 1–3 automatic ports each, every
/// policy, LBs holding claims against the lower bound (time-averaged after warm-up).
fn scale_quality() {
    let live = if quick() { 100_000.0 } else { 1_000_000.0 };
    println!(
        "## packing at scale: ~{live:.0} live claims of 1-3 automatic ports, LBs holding claims / lower bound (all live LBs / bound)"
    );
    let mut s = churn_scenario(live, Dur(3_600_000), Dur(4 * 3_600_000));
    s.name = "scale".into();
    s.warmup = Dur(2 * 3_600_000);
    s.sample_every = Dur(600_000);
    s.workload.min_listeners = 1;
    s.workload.max_listeners = 3;
    let mut row = Vec::new();
    for p in PolicyKind::names().filter(|p| *p != "dedicated") {
        let mut x = s.clone();
        x.allocator.policy = p.parse().unwrap_or_else(|_| best_fit());
        let (sum, secs) = timed(|| {
            sharedlb_simulator::run(&x)
                .unwrap_or_else(|e| unreachable!("{e}"))
                .0
        });
        println!(
            "{p}: {:.4} ({:.4}), bound mean {:.0}, live mean {:.0}, {} events in {secs:.1} s",
            sum.packing_ratio.unwrap_or(f64::NAN),
            sum.lbs_over_lower_bound.unwrap_or(f64::NAN),
            sum.lower_bound_mean,
            sum.claims_live_mean,
            sum.arrivals + sum.departures
        );
        row.push(format!("{p} {:.4}", sum.packing_ratio.unwrap_or(f64::NAN)));
    }
    println!("scale: {}", row.join(", "));
}

fn best_fit() -> PolicyKind {
    "best-fit"
        .parse()
        .unwrap_or_else(|e| unreachable!("a registered policy: {e}"))
}
