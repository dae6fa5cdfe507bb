//! What a run measures: a sampled time series and a summary. Every figure is defined once,
//! here and in the glossary ([`GLOSSARY`]), and both the terminal and the HTML report show
//! the same figures.

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
    /// LBs being deleted (no longer billed).
    pub lbs_draining: u64,
    /// The lower bound on LBs for the placed claims (capacity and per-listener bounds).
    pub lower_bound: u64,
    /// LBs holding at least one claim.
    pub lbs_with_claims: u64,
    /// What one LB per Service would use: the placed claims.
    pub dedicated_lbs: u64,
    /// Listeners in use.
    pub listeners_used: u64,
    /// Listener capacity of billed LBs.
    pub listener_capacity: u64,
    /// Claims live (placed or waiting).
    pub claims_live: u64,
    /// Claims served (on a ready LB).
    pub claims_served: u64,
    /// Claims waiting (not placed).
    pub claims_waiting: u64,
    /// What the billed LBs cost per hour now: their hourly prices, nothing for an LB whose
    /// bill this month has reached its profile's cap.
    pub cost_per_hour: f64,
    /// What one LB per placed claim would cost per hour now, billed alike.
    pub baseline_per_hour: f64,
}

impl Sample {
    /// The CSV header matching [`Sample::csv_row`].
    pub const CSV_HEADER: &'static str = "t_hours,lbs_ready,lbs_provisioning,lbs_draining,lower_bound,lbs_with_claims,dedicated_lbs,listeners_used,listener_capacity,claims_live,claims_served,claims_waiting,cost_per_hour,baseline_per_hour";

    /// Billed LBs (provisioning or ready).
    pub fn lbs(&self) -> u64 {
        self.lbs_ready + self.lbs_provisioning
    }

    /// One CSV row.
    pub fn csv_row(&self) -> String {
        format!(
            "{:.4},{},{},{},{},{},{},{},{},{},{},{},{:.6},{:.6}",
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
            self.claims_served,
            self.claims_waiting,
            self.cost_per_hour,
            self.baseline_per_hour
        )
    }
}

/// Wait percentiles in seconds, from arrival until the claim is first served (placed on a
/// ready LB), over claims that arrived after the warm-up and were served. In JSON, each
/// figure is null when no wait was measured (as n/a in tables), not 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "WaitsJson", from = "WaitsJson")]
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

/// [`Waits`] as written: a figure of no wait measured is null.
#[derive(Serialize, Deserialize)]
struct WaitsJson {
    count: u64,
    p50_s: Option<f64>,
    p95_s: Option<f64>,
    p99_s: Option<f64>,
    max_s: Option<f64>,
    mean_s: Option<f64>,
    quantiles_s: Vec<f64>,
}

impl From<Waits> for WaitsJson {
    fn from(w: Waits) -> WaitsJson {
        let m = |x| w.measured(x);
        WaitsJson {
            count: w.count,
            p50_s: m(w.p50_s),
            p95_s: m(w.p95_s),
            p99_s: m(w.p99_s),
            max_s: m(w.max_s),
            mean_s: m(w.mean_s),
            quantiles_s: w.quantiles_s,
        }
    }
}

impl From<WaitsJson> for Waits {
    fn from(w: WaitsJson) -> Waits {
        Waits {
            count: w.count,
            p50_s: w.p50_s.unwrap_or(0.0),
            p95_s: w.p95_s.unwrap_or(0.0),
            p99_s: w.p99_s.unwrap_or(0.0),
            max_s: w.max_s.unwrap_or(0.0),
            mean_s: w.mean_s.unwrap_or(0.0),
            quantiles_s: w.quantiles_s,
        }
    }
}

impl Waits {
    /// `x` if any wait was measured: with no claim served there is no wait figure.
    pub fn measured(&self, x: f64) -> Option<f64> {
        (self.count > 0).then_some(x)
    }
}

/// Waits kept as a histogram of exact values (ms → count): exact percentiles in memory that
/// grows with the number of distinct waits, not with the number of claims.
#[derive(Clone, Debug, Default)]
pub struct WaitHistogram {
    counts: BTreeMap<u64, u64>,
    n: u64,
    sum_ms: u128,
}

impl WaitHistogram {
    /// Records one wait.
    pub fn record(&mut self, ms: u64) {
        *self.counts.entry(ms).or_default() += 1;
        self.n += 1;
        self.sum_ms += u128::from(ms);
    }

    /// The percentiles (nearest rank).
    pub fn waits(&self) -> Waits {
        if self.n == 0 {
            return Waits::default();
        }
        let q = |p: f64| {
            let rank = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
            let mut seen = 0;
            for (&ms, &c) in &self.counts {
                seen += c;
                if seen >= rank {
                    return ms as f64 / 1000.0;
                }
            }
            0.0
        };
        Waits {
            count: self.n,
            p50_s: q(0.50),
            p95_s: q(0.95),
            p99_s: q(0.99),
            max_s: q(1.0),
            mean_s: self.sum_ms as f64 / self.n as f64 / 1000.0,
            quantiles_s: (0..=20).map(|i| q(f64::from(i) / 20.0)).collect(),
        }
    }
}

/// Per-tenant results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantSummary {
    /// Weight.
    pub weight: u32,
    /// Claim-hours served / claim-hours live over the measured period; `None` when it had
    /// no claim live then (nothing to serve is not 100% served).
    pub served_fraction: Option<f64>,
    /// Its share of the listeners in use, time-averaged over the measured hours with
    /// listeners in use; `None` if there were none.
    pub listener_share: Option<f64>,
    /// Its weighted max-min fair share of the listeners in use (the allocator's one
    /// definition), averaged as `listener_share`.
    pub fair_share: Option<f64>,
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
    /// The currency of every cost.
    pub currency: String,
    /// Simulated hours.
    pub duration_h: f64,
    /// Hours measured (after warm-up).
    pub measured_h: f64,
    /// Claims that arrived (all of the run).
    pub arrivals: u64,
    /// Claims that arrived after the warm-up: what `rejections` is out of.
    #[serde(default)]
    pub arrivals_measured: u64,
    /// Claims that left.
    pub departures: u64,
    /// Claim-hours served / claim-hours live, over the measured period; `None` when no
    /// claim was live then.
    pub served_fraction: Option<f64>,
    /// Time-averaged live claims.
    pub claims_live_mean: f64,
    /// Time-averaged served claims.
    pub claims_served_mean: f64,
    /// Time-averaged waiting (unplaced) claims.
    pub claims_waiting_mean: f64,
    /// Claims that arrived after the warm-up and left without ever being served (a claim
    /// that left at the instant it came was never live, and is not counted).
    pub rejections: u64,
    /// Claims waiting at the end.
    pub pending_at_end: u64,
    /// Waits.
    pub waits: Waits,
    /// Times a claim was told to wait during the measured period, by reason: a claim is
    /// told again each time its reason changes, so this counts tellings, not claims (see
    /// `claims_waited`).
    pub pending_reasons: BTreeMap<String, u64>,
    /// Claims told to wait during the measured period, by reason: each claim once per
    /// reason it waited for, so one claim may count under several reasons.
    #[serde(default)]
    pub claims_waited: BTreeMap<String, u64>,
    /// Time-averaged billed LBs (provisioning or ready).
    pub lbs_mean: f64,
    /// Most billed LBs at once during the measured period.
    pub lbs_max: u64,
    /// LBs created during the measured period.
    pub lbs_created: u64,
    /// LB failures during the measured period.
    pub lb_failures: u64,
    /// Billed LB-hours.
    pub lb_hours: f64,
    /// Total cost over the measured period.
    pub cost_total: f64,
    /// Mean cost per hour.
    pub cost_per_hour: f64,
    /// Mean cost per month (per hour × the hours of an average month).
    pub cost_per_month: f64,
    /// What one LB per placed claim would have cost over the measured period.
    pub baseline_cost_total: f64,
    /// 1 − cost / baseline cost; `None` when nothing was placed.
    pub savings_fraction: Option<f64>,
    /// Time-averaged listeners in use.
    pub listeners_used_mean: f64,
    /// Time-averaged listener capacity of billed LBs.
    pub listener_capacity_mean: f64,
    /// Listeners used / capacity (ratio of time integrals); `None` when no LB had capacity.
    pub utilisation: Option<f64>,
    /// Time-averaged lower bound on LBs for the placed claims.
    pub lower_bound_mean: f64,
    /// Billed LBs / lower bound (ratio of time integrals; 1 is perfect packing); `None`
    /// when the bound was 0 throughout (nothing placed): a ratio over nothing.
    pub lbs_over_lower_bound: Option<f64>,
    /// LBs holding claims / lower bound (idle LBs waiting for their timeout excluded);
    /// `None` as above.
    pub packing_ratio: Option<f64>,
    /// Jain's index of the tenants' served fractions; `None` when no tenant had a claim
    /// live in the measured period.
    pub jain_index: Option<f64>,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantSummary>,
    /// Claims moved by consolidation during the measured period.
    pub migrations: u64,
    /// What a reader must know to read the figures right (printed under the header).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Summary {
    /// Whether service was (nearly) complete: at least 99% of claim-hours served and at most
    /// 1% of the claims left unserved (some leave while their LB is still provisioning).
    /// Otherwise the report says so before anything else: the other figures describe only
    /// what was served.
    pub fn all_served(&self) -> bool {
        self.served_fraction.is_none_or(|f| f >= 0.99)
            && self.rejections as f64 <= 0.01 * self.arrivals_measured as f64
    }
}

/// Reads one metric off a summary; `None` when it does not apply.
pub type Metric = fn(&Summary) -> Option<f64>;

/// How a metric is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count or plain number.
    Number,
    /// A fraction, shown as a percentage.
    Percent,
    /// Money per hour in the run's currency.
    PerHour,
    /// Money per month.
    PerMonth,
    /// Money over the measured period.
    Money,
    /// Seconds.
    Seconds,
    /// A ratio to 1.
    Ratio,
}

/// The metrics shown in tables and compared across runs, in order: service first.
pub const METRICS: &[(&str, Unit, Metric)] = &[
    ("served", Unit::Percent, |s| s.served_fraction),
    ("claims waiting (mean)", Unit::Number, |s| {
        Some(s.claims_waiting_mean)
    }),
    ("rejections", Unit::Number, |s| Some(s.rejections as f64)),
    ("wait p50", Unit::Seconds, |s| {
        s.waits.measured(s.waits.p50_s)
    }),
    ("wait p95", Unit::Seconds, |s| {
        s.waits.measured(s.waits.p95_s)
    }),
    ("wait max", Unit::Seconds, |s| {
        s.waits.measured(s.waits.max_s)
    }),
    ("LBs (mean)", Unit::Number, |s| Some(s.lbs_mean)),
    ("LBs (max)", Unit::Number, |s| Some(s.lbs_max as f64)),
    ("lower bound (mean)", Unit::Number, |s| {
        Some(s.lower_bound_mean)
    }),
    // Ratios over nothing (no LB was needed, none had capacity) are n/a (`None`), not 1.
    ("LBs / lower bound", Unit::Ratio, |s| s.lbs_over_lower_bound),
    ("packing ratio", Unit::Ratio, |s| s.packing_ratio),
    ("utilisation", Unit::Percent, |s| s.utilisation),
    ("cost", Unit::PerMonth, |s| Some(s.cost_per_month)),
    ("savings vs one LB per Service", Unit::Percent, |s| {
        s.savings_fraction
    }),
    ("Jain's index", Unit::Ratio, |s| s.jain_index),
    ("migrations", Unit::Number, |s| Some(s.migrations as f64)),
];

/// What each figure means: printed by `sharedlb-sim glossary`, at the foot of every
/// report.html, and in the README.
pub const GLOSSARY: &[(&str, &str)] = &[
    (
        "served",
        "claim-hours on a ready LB / claim-hours live, after the warm-up. Below 100%, claims waited: every other figure describes only what was served.",
    ),
    (
        "claims waiting",
        "claims not placed on any LB (quota, budget, port conflicts, the limit on LBs provisioning at once), time-averaged. A claim placed on an LB still provisioning is not counted here, though it is not served yet (see served).",
    ),
    (
        "rejections",
        "claims that arrived after the warm-up and left without ever being served.",
    ),
    (
        "wait",
        "seconds from a claim's arrival until it is first served (placed on a ready LB), over served claims.",
    ),
    (
        "LBs",
        "load balancers billed: provisioning or ready (an LB being deleted is no longer billed), time-averaged.",
    ),
    (
        "lower bound",
        "the fewest LBs any packing of the placed claims needs: per sharing pool the larger of ⌈listeners / capacity⌉ and the most claims asking for one same listener, summed over pools, with the most permissive profile. `plan` also uses the clique bound (claims that pairwise clash).",
    ),
    (
        "LBs / lower bound",
        "∫ billed LBs dt / ∫ lower bound dt: 1 is perfect packing; idle LBs kept for their timeout count against it.",
    ),
    (
        "packing ratio",
        "∫ LBs holding claims dt / ∫ lower bound dt: packing quality without the idle timeout.",
    ),
    (
        "utilisation",
        "listeners in use / listener capacity of billed LBs (ratio of time integrals).",
    ),
    (
        "cost",
        "what the billed LBs cost, per month of 730.5 h, in the run's currency: the hourly price, and for a profile with a monthly cap each LB's hours up to the cap in each billing month (730.5 h from the end of the warm-up; hours before it are not billed).",
    ),
    (
        "savings vs one LB per Service",
        "1 − cost / baseline, where the baseline is one LB per placed claim, of the first profile that can hold it, for as long as the claim is placed, billed as cost is. Both sides count what is billed: the cost every billed LB, the baseline every placed claim (on a ready LB or on one still provisioning); the `dedicated` policy saves exactly 0, except that with a monthly cap it may save a little: an LB it empties and gives at once to a waiting claim goes on with its month's bill, where one LB per Service would start another.",
    ),
    (
        "Jain's index",
        "fairness of the tenants' served fractions: 1 when all are served alike, 1/n when one tenant gets everything.",
    ),
    (
        "fair share",
        "a tenant's weighted max-min (water-filling) share of the listeners in use, given what it holds and waits for; like its listener share (what it holds / listeners in use), time-averaged over the measured hours with listeners in use.",
    ),
    (
        "currency",
        "every cost is in the currency of the profiles; profiles in different currencies need a conversion rate in the scenario ([currency] rates).",
    ),
];
