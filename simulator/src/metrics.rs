//! What a run measures: a sampled time series and a summary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One point of the time series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Simulated time in hours.
    pub t_hours: f64,
    /// LBs serving.
    pub lbs_ready: u64,
    /// LBs provisioning.
    pub lbs_provisioning: u64,
    /// LBs being deleted.
    pub lbs_draining: u64,
    /// The allocator's lower bound on LBs for the live claims.
    pub lower_bound: u64,
    /// LBs holding at least one claim (idle ones waiting for deletion excluded).
    pub lbs_with_claims: u64,
    /// What one LB per Service would use (live claims).
    pub dedicated_lbs: u64,
    /// Listeners in use.
    pub listeners_used: u64,
    /// Listener capacity of non-draining LBs.
    pub listener_capacity: u64,
    /// Claims live (placed or waiting).
    pub claims_live: u64,
    /// Claims waiting.
    pub claims_pending: u64,
    /// Cost per hour of all live LBs.
    pub cost_per_hour: f64,
}

impl Sample {
    /// The CSV header matching [`Sample::csv_row`].
    pub const CSV_HEADER: &'static str = "t_hours,lbs_ready,lbs_provisioning,lbs_draining,lower_bound,lbs_with_claims,dedicated_lbs,listeners_used,listener_capacity,claims_live,claims_pending,cost_per_hour";

    /// LBs alive in any state.
    pub fn lbs(&self) -> u64 {
        self.lbs_ready + self.lbs_provisioning + self.lbs_draining
    }

    /// One CSV row.
    pub fn csv_row(&self) -> String {
        format!(
            "{:.4},{},{},{},{},{},{},{},{},{},{},{:.6}",
            self.t_hours,
            self.lbs_ready,
            self.lbs_provisioning,
            self.lbs_draining,
            self.lower_bound,
            self.lbs_with_claims,
            self.dedicated_lbs,
            self.listeners_used,
            self.listener_capacity,
            self.claims_live,
            self.claims_pending,
            self.cost_per_hour
        )
    }
}

/// Wait percentiles in seconds, from arrival until the claim is served (assigned to a ready LB).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Waits {
    /// Claims measured.
    pub count: u64,
    /// Median.
    pub p50_s: f64,
    /// 95th percentile.
    pub p95_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Maximum.
    pub max_s: f64,
    /// Mean.
    pub mean_s: f64,
    /// The distribution: percentiles 0, 5, ..., 100.
    pub quantiles_s: Vec<f64>,
}

impl Waits {
    /// Percentiles of `ms` (nearest rank).
    pub fn from_ms(mut ms: Vec<u64>) -> Waits {
        if ms.is_empty() {
            return Waits::default();
        }
        ms.sort_unstable();
        let q = |p: f64| {
            let rank = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1] as f64 / 1000.0
        };
        Waits {
            count: ms.len() as u64,
            p50_s: q(0.50),
            p95_s: q(0.95),
            p99_s: q(0.99),
            max_s: q(1.0),
            mean_s: ms.iter().sum::<u64>() as f64 / ms.len() as f64 / 1000.0,
            quantiles_s: (0..=20).map(|i| q(f64::from(i) / 20.0)).collect(),
        }
    }
}

/// Per-tenant results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantSummary {
    /// Weight.
    pub weight: u32,
    /// Time-average of placed claims / live claims.
    pub served_fraction: f64,
    /// Share of all listeners in use (time-averaged).
    pub listener_share: f64,
    /// Weighted max-min fair share of the listeners in use, for comparison.
    pub fair_share: f64,
    /// Claims that arrived.
    pub arrivals: u64,
}

/// A run's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Policy.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Simulated hours.
    pub duration_h: f64,
    /// Hours measured (after warm-up).
    pub measured_h: f64,
    /// Claims that arrived.
    pub arrivals: u64,
    /// Claims that left.
    pub departures: u64,
    /// Time-averaged LBs alive.
    pub lbs_mean: f64,
    /// Most LBs alive at once.
    pub lbs_max: u64,
    /// LBs created.
    pub lbs_created: u64,
    /// LB failures.
    pub lb_failures: u64,
    /// LB-hours.
    pub lb_hours: f64,
    /// Total cost over the measured period.
    pub cost_total: f64,
    /// Mean cost per hour.
    pub cost_per_hour: f64,
    /// What one LB per Service (of the first profile) would have cost.
    pub dedicated_cost_total: f64,
    /// 1 − cost / dedicated cost.
    pub savings_fraction: f64,
    /// Time-averaged listeners in use.
    pub listeners_used_mean: f64,
    /// Time-averaged listener capacity.
    pub listener_capacity_mean: f64,
    /// listeners used / capacity (time-averaged ratio of integrals).
    pub utilisation: f64,
    /// Time-averaged live claims.
    pub claims_live_mean: f64,
    /// Time-averaged waiting claims.
    pub claims_pending_mean: f64,
    /// Waits.
    pub waits: Waits,
    /// Pending decisions by reason.
    pub pending_reasons: BTreeMap<String, u64>,
    /// Claims that left without ever being served.
    pub rejections: u64,
    /// Claims waiting at the end.
    pub pending_at_end: u64,
    /// Mean lower bound on LBs over samples.
    pub lower_bound_mean: f64,
    /// Mean of LBs (ready or provisioning, idle ones included) / lower bound over samples
    /// with a non-zero bound.
    pub lbs_over_lower_bound: f64,
    /// Mean of LBs holding claims / lower bound: packing quality without the idle-timeout
    /// hysteresis.
    pub packing_ratio: f64,
    /// Jain's index of per-tenant served fractions.
    pub jain_index: f64,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantSummary>,
    /// Claims moved by consolidation.
    pub migrations: u64,
}

/// Reads one metric off a summary.
pub type Metric = fn(&Summary) -> f64;

/// Metric names and getters shown in tables and compared across runs.
pub const METRICS: &[(&str, Metric)] = &[
    ("LBs (mean)", |s| s.lbs_mean),
    ("LBs (max)", |s| s.lbs_max as f64),
    ("LBs / lower bound", |s| s.lbs_over_lower_bound),
    ("packing ratio", |s| s.packing_ratio),
    ("lower bound (mean)", |s| s.lower_bound_mean),
    ("utilisation", |s| s.utilisation),
    ("cost per hour", |s| s.cost_per_hour),
    ("cost total", |s| s.cost_total),
    ("savings vs dedicated", |s| s.savings_fraction),
    ("claims live (mean)", |s| s.claims_live_mean),
    ("claims pending (mean)", |s| s.claims_pending_mean),
    ("wait p50 (s)", |s| s.waits.p50_s),
    ("wait p95 (s)", |s| s.waits.p95_s),
    ("wait p99 (s)", |s| s.waits.p99_s),
    ("wait max (s)", |s| s.waits.max_s),
    ("rejections", |s| s.rejections as f64),
    ("Jain's index", |s| s.jain_index),
    ("migrations", |s| s.migrations as f64),
];
