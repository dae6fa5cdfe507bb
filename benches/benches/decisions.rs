#![allow(missing_docs)] // criterion_group! generates an undocumented function.

//! Allocator decision cost under churn (one claim leaves, one arrives: two decisions per
//! iteration), against a naive linear scan over every LB (the 2018 controller's method):
//!
//! - `churn-any`, `churn-fixed`: the index's best case — `N` full LBs of 10 listeners,
//!   one-listener claims, churn leaves exactly one hole to find (1k, 10k, 100k LBs: 10k
//!   to 1M live claims).
//! - `churn-multi`: the partly-filled state — claims of 1–3 automatic ports on LBs of 22
//!   listeners filled to nine tenths, a random quarter of the claims replaced, so holes of
//!   every size lie everywhere (1k, 10k, 100k LBs: 10k to 1M live claims).
//!
//! Every policy at 10k LBs, best-fit and first-fit at the other sizes. The naive scan at
//! 100k LBs starts from the allocator's own state ([`NaiveScan::mirror`]): filling it by
//! scanning would take a million scans.
//!
//! `cargo bench -p sharedlb-benches --bench decisions`; set `SHAREDLB_BENCH_QUICK=1` (or
//! pass `-- --quick`) for a short run without the 100k-LB size.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sharedlb_allocator::PolicyKind;
use sharedlb_benches::{
    CAPACITY, MULTI_CAPACITY, NaiveScan, Requests, churn, filled, naive_churn, partly_filled,
    partly_filled_claims,
};

fn quick() -> bool {
    std::env::var_os("SHAREDLB_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

fn decisions(c: &mut Criterion) {
    let sizes: &[usize] = if quick() {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for requests in [Requests::Any, Requests::Fixed, Requests::Multi] {
        let mut group = c.benchmark_group(format!("churn-{}", requests.tag()));
        group.sample_size(20);
        for &lbs in sizes {
            let names: Vec<&str> = if lbs == 10_000 {
                PolicyKind::names().collect()
            } else {
                vec!["best-fit", "first-fit"]
            };
            let policies = names
                .into_iter()
                .filter_map(|n| n.parse::<PolicyKind>().ok());
            let (capacity, build) = match requests {
                Requests::Multi => (MULTI_CAPACITY, true),
                _ => (CAPACITY, false),
            };
            let mut last = None;
            for policy in policies {
                let (mut a, mut ids, mut g) = if build {
                    let n = partly_filled_claims(requests, lbs, capacity);
                    partly_filled(policy, requests, n, capacity)
                } else {
                    filled(policy, requests, lbs)
                };
                group.bench_function(BenchmarkId::new(policy.to_string(), lbs), |b| {
                    b.iter(|| churn(&mut a, &mut ids, &mut g));
                });
                if policy.name() == "first-fit" {
                    // The naive scan is first fit over a list: start it from first-fit's state.
                    last = Some((NaiveScan::mirror(&a, capacity), ids, g));
                }
            }
            if let Some((mut n, mut ids, mut g)) = last {
                group.bench_function(BenchmarkId::new("naive-scan", lbs), |b| {
                    b.iter(|| naive_churn(&mut n, &mut ids, &mut g));
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
