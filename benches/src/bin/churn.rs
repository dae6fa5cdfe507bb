//! One churn workload at one size, for instruction counts under callgrind and for perf:
//! fills an allocator (or the naive scan) to a steady state, draws the churn steps ahead,
//! then plays them.
//!
//! ```sh
//! churn --policy best-fit --requests multi --lbs 100000 --capacity 22 --steps 20000 [--full] [--naive] [--wait FILE]
//! ```
//!
//! With `--wait FILE` it prints `READY` on stderr once filled and waits for FILE to exist
//! before playing the steps: `scripts`-free callgrind runs start with instrumentation off
//! (`valgrind --tool=callgrind --instr-atstart=no`) and switch it on at READY
//! (`callgrind_control -i on`), so only the churn is counted.

use std::time::Instant;

use sharedlb_allocator::PolicyKind;
use sharedlb_benches::{
    CAPACITY, NaiveScan, Requests, filled, naive_play, partly_filled, partly_filled_claims, play,
    script,
};

struct Args {
    policy: PolicyKind,
    requests: Requests,
    lbs: usize,
    capacity: u32,
    steps: usize,
    full: bool,
    naive: bool,
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
    if let Some(n) = naive.as_mut() {
        naive_play(n, plan);
    } else if let Some(al) = alloc.as_mut() {
        play(al, plan);
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "DONE {} steps ({} decisions) in {secs:.3} s: {:.3} µs per decision (wall, under load)",
        a.steps,
        2 * a.steps,
        secs * 1e6 / (2 * a.steps) as f64
    );
}
