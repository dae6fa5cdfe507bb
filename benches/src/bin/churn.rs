//! One churn workload at one size, for instruction counts under callgrind and for perf:
//! fills an allocator (or the naive scan) to a steady state, draws the churn steps ahead,
//! then plays them.
//!
//! ```sh
//! churn --policy best-fit --requests multi --lbs 100000 --capacity 22 --steps 20000 [--full] [--naive] [--each] [--look-ahead] [--wait FILE]
//! ```
//!
//! With `--look-ahead` it hints the allocator, before each departure, of the next ones
//! (`Allocator::prefetch`), as a shell that knows its next events can.
//!
//! With `--each` every decision is timed on its own as well, and the distribution printed
//! (median, p90, p99 per decision and per kind, and the clock's own cost per reading, which
//! each figure includes once): the issue's target is a median, the plain run's figure a
//! mean.
//!
//! With `--wait FILE` it prints `READY` on stderr once filled and waits for FILE to exist
//! before playing the steps: `scripts`-free callgrind runs start with instrumentation off
//! (`valgrind --tool=callgrind --instr-atstart=no`) and switch it on at READY
//! (`callgrind_control -i on`), so only the churn is counted.

use std::time::Instant;

use sharedlb_allocator::{Allocator, Claim, ClaimId, Event, PolicyKind};
use sharedlb_benches::{
    CAPACITY, NaiveScan, Requests, feed, filled, naive_play, partly_filled, partly_filled_claims,
    play, play_looking_ahead, script, upcoming,
};

struct Args {
    policy: PolicyKind,
    requests: Requests,
    lbs: usize,
    capacity: u32,
    steps: usize,
    full: bool,
    naive: bool,
    each: bool,
    hints: Hints,
    wait: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        policy: "best-fit".parse().unwrap_or_else(|e| unreachable!("{e}")),
        requests: Requests::Multi,
        lbs: 10_000,
        capacity: sharedlb_benches::MULTI_CAPACITY,
        steps: 20_000,
        full: false,
        naive: false,
        each: false,
        hints: Hints::None,
        wait: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--policy" => a.policy = v().parse().unwrap_or_else(|e| panic!("{e}")),
            "--requests" => {
                a.requests = match v().as_str() {
                    "any" => Requests::Any,
                    "fixed" => Requests::Fixed,
                    _ => Requests::Multi,
                }
            }
            "--lbs" => a.lbs = v().parse().unwrap_or_else(|e| panic!("{e}")),
            "--capacity" => a.capacity = v().parse().unwrap_or_else(|e| panic!("{e}")),
            "--steps" => a.steps = v().parse().unwrap_or_else(|e| panic!("{e}")),
            "--wait" => a.wait = Some(v()),
            "--full" => a.full = true,
            "--naive" => a.naive = true,
            "--each" => a.each = true,
            "--look-ahead" => a.hints = Hints::Upcoming,
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

#[allow(clippy::disallowed_methods)] // A benchmark reads the wall clock.
fn main() {
    let a = args();
    let (alloc, mut ids, mut g) = if a.full {
        filled(a.policy, a.requests, a.lbs)
    } else {
        let n = partly_filled_claims(a.requests, a.lbs, a.capacity);
        partly_filled(a.policy, a.requests, n, a.capacity)
    };
    let capacity = if a.full { CAPACITY } else { a.capacity };
    eprintln!(
        "filled: {} live claims on {} LBs ({} listeners in use, capacity {capacity})",
        alloc.claim_count(),
        alloc.lbs().len(),
        alloc.listeners_used()
    );
    let mut naive = a.naive.then(|| NaiveScan::mirror(&alloc, capacity));
    let mut alloc = Some(alloc);
    if naive.is_some() {
        alloc = None;
    }
    let plan = script(&mut ids, &mut g, a.steps);
    if let Some(f) = &a.wait {
        eprintln!("READY");
        while !std::path::Path::new(f).exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let start = Instant::now();
    let mut each = None;
    if let Some(n) = naive.as_mut() {
        naive_play(n, plan);
    } else if let Some(al) = alloc.as_mut() {
        match (a.each, a.hints) {
            (true, hints) => each = Some(play_each(al, plan, hints)),
            (false, Hints::None) => play(al, plan),
            (false, Hints::Upcoming) => play_looking_ahead(al, plan),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "DONE {} steps ({} decisions) in {secs:.3} s: {:.3} µs per decision (wall, under load)",
        a.steps,
        2 * a.steps,
        secs * 1e6 / (2 * a.steps) as f64
    );
    if let Some((mut leave, mut arrive)) = each {
        let mut all: Vec<u32> = leave.iter().chain(&arrive).copied().collect();
        eprintln!(
            "EACH decision {}; departure {}; arrival {}; a clock reading {} ns (median)",
            spread(&mut all),
            spread(&mut leave),
            spread(&mut arrive),
            clock_cost()
        );
    }
}

/// Whether the player hints the allocator of the departures to come.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hints {
    None,
    /// The next departures, before each departure ([`Allocator::prefetch`]).
    Upcoming,
}

/// Plays a script timing each decision on its own: nanoseconds per departure and per
/// arrival, in step order. A departure's time includes its hint.
#[allow(clippy::disallowed_methods)] // A benchmark reads the wall clock.
fn play_each(
    a: &mut Allocator,
    script: Vec<(ClaimId, Claim)>,
    hints: Hints,
) -> (Vec<u32>, Vec<u32>) {
    let mut leave = Vec::with_capacity(script.len());
    let mut arrive = Vec::with_capacity(script.len());
    let gone: Vec<ClaimId> = match hints {
        Hints::None => Vec::new(),
        Hints::Upcoming => script.iter().map(|(g, _)| g.clone()).collect(),
    };
    for (i, (g, c)) in script.into_iter().enumerate() {
        let t0 = Instant::now();
        if hints == Hints::Upcoming {
            a.prefetch(upcoming(&gone, i));
        }
        feed(a, Event::ClaimRemoved(g));
        let t1 = Instant::now();
        feed(a, Event::ClaimAdded(c));
        let t2 = Instant::now();
        leave.push(nanos(t0, t1));
        arrive.push(nanos(t1, t2));
    }
    (leave, arrive)
}

/// Nanoseconds between two clock readings (saturating at `u32::MAX`, ~4 s).
fn nanos(from: Instant, to: Instant) -> u32 {
    u32::try_from((to - from).as_nanos()).unwrap_or(u32::MAX)
}

/// Median, p90, p99 and mean of nanosecond samples, in µs.
fn spread(ns: &mut [u32]) -> String {
    ns.sort_unstable();
    let at = |q: f64| f64::from(ns[((ns.len() - 1) as f64 * q) as usize]) / 1e3;
    let mean = ns.iter().map(|&x| f64::from(x)).sum::<f64>() / ns.len() as f64 / 1e3;
    format!(
        "median {:.3} µs, p90 {:.3}, p99 {:.3}, mean {mean:.3}",
        at(0.5),
        at(0.9),
        at(0.99)
    )
}

/// The median time between two clock readings, in ns: what each timed decision carries
/// beside its own cost.
#[allow(clippy::disallowed_methods)] // A benchmark reads the wall clock.
fn clock_cost() -> u32 {
    let mut v: Vec<u32> = (0..100_000)
        .map(|_| nanos(Instant::now(), Instant::now()))
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}
