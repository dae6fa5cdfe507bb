#![allow(missing_docs)] // criterion_group! generates an undocumented function.

//! Allocator decision cost under churn (one claim leaves, one arrives: two decisions per
//! iteration) at 1k, 10k and 100k LBs (10k to 1M live claims), per policy, for `Any` and
//! fixed-port requests, against a naive linear scan over every LB.
//!
//! `cargo bench -p sharedlb-benches --bench decisions`; set `SHAREDLB_BENCH_QUICK=1` (or
//! pass `-- --quick`) for a short run without the 100k-LB size.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sharedlb_allocator::PolicyKind;
use sharedlb_benches::{Requests, churn, filled, naive_churn, naive_filled};

fn quick() -> bool {
    std::env::var_os("SHAREDLB_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

fn decisions(c: &mut Criterion) {
    let sizes: &[usize] = if quick() {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for requests in [Requests::Any, Requests::Fixed] {
        let tag = match requests {
            Requests::Any => "any",
            Requests::Fixed => "fixed",
        };
        let mut group = c.benchmark_group(format!("churn-{tag}"));
        group.sample_size(20);
        for &lbs in sizes {
            let names: Vec<&str> = if lbs == 10_000 {
                PolicyKind::names().collect()
            } else {
                vec!["best-fit"]
            };
            let policies = names
                .into_iter()
                .filter_map(|n| n.parse::<PolicyKind>().ok());
            for policy in policies {
                let (mut a, mut ids, mut g) = filled(policy, requests, lbs);
                group.bench_function(BenchmarkId::new(policy.to_string(), lbs), |b| {
                    b.iter(|| churn(&mut a, &mut ids, &mut g));
                });
            }
            if lbs <= 10_000 {
                let (mut a, mut ids, mut g) = naive_filled(requests, lbs);
                group.bench_function(BenchmarkId::new("naive-scan", lbs), |b| {
                    b.iter(|| naive_churn(&mut a, &mut ids, &mut g));
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
