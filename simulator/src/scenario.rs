//! Scenarios: a TOML description of a cluster's workload, its tenants and the allocator's
//! settings. Unknown keys are rejected, every value is validated, and errors name the file,
//! the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sharedlb_allocator::{
    Budget, Config, Currency, LbProfile, PolicyKind, ProfileName, Protocol, Quota, TenantConfig,
    TenantId, builtin_profile,
};

use crate::error::InputError;

/// The scenario embedded in the binary, run when no file is given.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// A duration written as a number of seconds or as text with a unit: `90s`, `15m`, `2h`, `30d`, `250ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "DurationRepr", into = "String")]
pub struct Dur(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Secs(f64),
    Text(String),
}

impl Dur {
    /// Milliseconds.
    pub fn ms(self) -> u64 {
        self.0
    }

    /// Hours, as a float.
    pub fn hours(self) -> f64 {
        self.0 as f64 / 3_600_000.0
    }

    /// Parses `250ms`, `90s`, `15m`, `2h`, `30d` or a bare number of seconds.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 15m, 2h, 30d)"))?;
        let scale = match unit.trim() {
            "ms" => 1.0,
            "" | "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 7.0 * 86_400_000.0,
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (ms, s, m, h, d, w)"
                ));
            }
        };
        Dur::from_f64_ms(n * scale).ok_or_else(|| format!("{s:?} is out of range"))
    }

    fn from_f64_ms(ms: f64) -> Option<Dur> {
        (0.0..1e15).contains(&ms).then(|| Dur(ms.round() as u64))
    }
}

impl TryFrom<DurationRepr> for Dur {
    type Error = String;
    fn try_from(r: DurationRepr) -> Result<Self, String> {
        match r {
            DurationRepr::Secs(s) => {
                Dur::from_f64_ms(s * 1000.0).ok_or_else(|| format!("{s} s is not a valid duration"))
            }
            DurationRepr::Text(t) => Dur::parse(&t),
        }
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        d.to_string()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, n) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= n && ms.is_multiple_of(n) {
                return write!(f, "{}{unit}", ms / n);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A distribution of durations (lifetimes, provisioning delays).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DurationDist {
    /// Always the same.
    Fixed {
        /// The value.
        value: Dur,
    },
    /// Exponential with this mean (memoryless departures).
    Exponential {
        /// Mean.
        mean: Dur,
    },
    /// Log-normal with this median and shape `sigma`.
    Lognormal {
        /// Median.
        median: Dur,
        /// Shape (standard deviation of the log).
        sigma: f64,
    },
    /// Pareto (heavy-tailed) with this minimum and tail index `shape`.
    Pareto {
        /// Minimum (scale).
        scale: Dur,
        /// Tail index; mean is finite for shape > 1.
        shape: f64,
    },
    /// A two-class mix: short-lived services with probability `short_fraction`, else long-lived.
    Mix {
        /// Probability of drawing from `short`.
        short_fraction: f64,
        /// The short-lived class.
        short: Box<DurationDist>,
        /// The long-lived class.
        long: Box<DurationDist>,
    },
}

impl DurationDist {
    /// The distribution's mean in ms (infinite for Pareto with shape ≤ 1).
    pub fn mean_ms(&self) -> f64 {
        match self {
            DurationDist::Fixed { value } => value.ms() as f64,
            DurationDist::Exponential { mean } => mean.ms() as f64,
            DurationDist::Lognormal { median, sigma } => {
                median.ms() as f64 * (sigma * sigma / 2.0).exp()
            }
            DurationDist::Pareto { scale, shape } => {
                if *shape > 1.0 {
                    scale.ms() as f64 * shape / (shape - 1.0)
                } else {
                    f64::INFINITY
                }
            }
            DurationDist::Mix {
                short_fraction,
                short,
                long,
            } => short_fraction * short.mean_ms() + (1.0 - short_fraction) * long.mean_ms(),
        }
    }

    fn validate(&self, field: &str) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((format!("{field}.{f}"), m.to_owned()));
        match self {
            DurationDist::Exponential { mean } if mean.ms() == 0 => err("mean", "must be > 0"),
            DurationDist::Lognormal { median, .. } if median.ms() == 0 => {
                err("median", "must be > 0")
            }
            DurationDist::Lognormal { sigma, .. } if !(sigma.is_finite() && *sigma >= 0.0) => {
                err("sigma", "must be a finite number >= 0")
            }
            DurationDist::Pareto { scale, .. } if scale.ms() == 0 => err("scale", "must be > 0"),
            DurationDist::Pareto { shape, .. } if !(shape.is_finite() && *shape > 0.0) => {
                err("shape", "must be a finite number > 0")
            }
            DurationDist::Mix {
                short_fraction,
                short,
                long,
            } => {
                if !(0.0..=1.0).contains(short_fraction) {
                    return err("short_fraction", "must be between 0 and 1");
                }
                short.validate(&format!("{field}.short"))?;
                long.validate(&format!("{field}.long"))
            }
            _ => Ok(()),
        }
    }
}

/// Periodic bursts of arrivals (a batch deploy, a game launch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    /// Time between bursts.
    pub every: Dur,
    /// Claims per burst.
    pub size: u32,
}

/// How claims arrive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// Mean Poisson arrivals per hour.
    pub rate_per_hour: f64,
    /// Daily variation: rate × (1 + A·sin(2πt/day)), 0 ≤ A ≤ 1.
    #[serde(default)]
    pub diurnal_amplitude: f64,
    /// Optional bursts on top.
    #[serde(default)]
    pub bursts: Option<Bursts>,
}

/// A popular port and its protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopularPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// The default popular ports, most popular first.
pub fn default_popular_ports() -> Vec<PopularPort> {
    use Protocol::{Tcp, Udp};
    let p = |port, protocol| PopularPort { port, protocol };
    vec![
        p(443, Tcp),
        p(80, Tcp),
        p(53, Udp),
        p(5432, Tcp),
        p(6379, Tcp),
        p(3306, Tcp),
        p(9092, Tcp),
        p(1883, Tcp),
        p(5672, Tcp),
        p(25565, Tcp),
        p(27017, Tcp),
        p(8080, Tcp),
        p(53, Tcp),
        p(22, Tcp),
        p(8443, Tcp),
        p(3478, Udp),
        p(51820, Udp),
        p(27015, Udp),
        p(1194, Udp),
        p(123, Udp),
    ]
}

/// The claims a cluster generates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Arrival process.
    pub arrival: Arrival,
    /// Lifetime distribution.
    pub lifetime: DurationDist,
    /// Fewest listeners per claim.
    #[serde(default = "one")]
    pub min_listeners: u32,
    /// Most listeners per claim (uniform between).
    #[serde(default = "one")]
    pub max_listeners: u32,
    /// Probability that a port is `Any` (port 0: "pick one").
    #[serde(default)]
    pub any_fraction: f64,
    /// Probability that an `Any` port is UDP.
    #[serde(default)]
    pub udp_fraction: f64,
    /// Zipf exponent over the popular ports (0 = uniform).
    #[serde(default = "zipf_default")]
    pub zipf_exponent: f64,
    /// Fixed ports to choose from, most popular first.
    #[serde(default = "default_popular_ports")]
    pub popular_ports: Vec<PopularPort>,
    /// Fraction of claims that allow migration.
    #[serde(default)]
    pub migration_fraction: f64,
}

fn one() -> u32 {
    1
}
fn zipf_default() -> f64 {
    1.0
}

/// A tenant of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Name (used as namespace).
    pub name: String,
    /// Weight for fair admission.
    #[serde(default = "one")]
    pub weight: u32,
    /// Relative share of arrivals.
    #[serde(default = "one_f")]
    pub share: f64,
    /// Limits.
    #[serde(default)]
    pub quota: Quota,
    /// Sharing rule for its claims: `tenant` (default), `anyone`, `dedicated`, `group:KEY`, `cross-group:KEY`.
    #[serde(default = "tenant_sharing")]
    pub sharing: String,
}

fn one_f() -> f64 {
    1.0
}
fn tenant_sharing() -> String {
    "tenant".into()
}

/// An LB profile in a scenario: a built-in one by name, with optional overrides, plus its
/// simulated behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Built-in profile name (`aws-nlb`, `hetzner-lb11`, ...).
    pub name: String,
    /// Override: listeners per LB.
    #[serde(default)]
    pub max_listeners: Option<u32>,
    /// Override: price per hour.
    #[serde(default)]
    pub hourly_price: Option<f64>,
    /// Provisioning delay.
    #[serde(default = "default_provisioning")]
    pub provisioning: DurationDist,
    /// Failures per LB per day (Poisson); a failed LB's claims are placed again.
    #[serde(default)]
    pub failures_per_day: f64,
}

fn default_provisioning() -> DurationDist {
    DurationDist::Fixed { value: Dur(60_000) }
}

/// Periodic consolidation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consolidation {
    /// Period.
    pub every: Dur,
    /// Most moves per run.
    pub max_moves: usize,
}

/// The allocator's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocatorSpec {
    /// Packing policy (`best-fit`, `seed:10`, ...).
    #[serde(default = "best_fit")]
    pub policy: PolicyKind,
    /// How long an empty LB lives before deletion.
    #[serde(default = "ten_minutes")]
    pub idle_timeout: Dur,
    /// Most LBs provisioning at once.
    #[serde(default)]
    pub max_provisioning: Option<u32>,
    /// Global budget.
    #[serde(default)]
    pub budget: Budget,
}

fn best_fit() -> PolicyKind {
    "best-fit"
        .parse()
        .unwrap_or_else(|e| unreachable!("a registered policy: {e}"))
}
fn ten_minutes() -> Dur {
    Dur(600_000)
}

impl Default for AllocatorSpec {
    fn default() -> Self {
        AllocatorSpec {
            policy: best_fit(),
            idle_timeout: ten_minutes(),
            max_provisioning: None,
            budget: Budget::default(),
        }
    }
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name for reports.
    #[serde(default = "unnamed")]
    pub name: String,
    /// Random seed.
    #[serde(default)]
    pub seed: u64,
    /// Simulated time.
    pub duration: Dur,
    /// Time excluded from statistics at the start.
    #[serde(default)]
    pub warmup: Dur,
    /// Sampling period of the time series.
    #[serde(default = "one_hour")]
    pub sample_every: Dur,
    /// Allocator settings.
    #[serde(default)]
    pub allocator: AllocatorSpec,
    /// Tenants (default: one tenant `default`).
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    /// Profiles (default: `aws-nlb`). The first is the baseline for savings.
    #[serde(default)]
    pub profiles: Vec<ProfileSpec>,
    /// The workload.
    pub workload: Workload,
    /// Consolidation, off when absent.
    #[serde(default)]
    pub consolidation: Option<Consolidation>,
    /// The currency of the report and conversion rates for profiles priced in others.
    #[serde(default)]
    pub currency: Option<CurrencySpec>,
}

/// Which currency costs are reported in, and how other currencies convert to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencySpec {
    /// The report's currency (default: that of the first profile).
    #[serde(default)]
    pub report: Option<Currency>,
    /// Units of the report's currency per unit of each other currency, e.g. `EUR = 1.08`
    /// when reporting in USD. Say where the rate is from: prices move.
    #[serde(default)]
    pub rates: BTreeMap<Currency, f64>,
}

fn unnamed() -> String {
    "scenario".into()
}
fn one_hour() -> Dur {
    Dur(3_600_000)
}

impl Scenario {
    /// Parses and validates a scenario; `origin` names the file in errors.
    pub fn from_toml(src: &str, origin: &str) -> Result<Scenario, InputError> {
        // Straight from the text, so that type errors and unknown keys carry a line.
        let s: Scenario = toml::from_str(src).map_err(|e| InputError::toml(origin, src, &e))?;
        s.checked(src, origin)
    }

    /// Reads a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, InputError> {
        let origin = path.display().to_string();
        let src = std::fs::read_to_string(path)
            .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
        Scenario::from_toml(&src, &origin)
    }

    /// The built-in default scenario.
    pub fn default_scenario() -> Scenario {
        Scenario::from_toml(DEFAULT_SCENARIO, "<built-in default>")
            .unwrap_or_else(|e| unreachable!("the built-in scenario is valid: {e}"))
    }

    /// Builds from a parsed table (after overrides); `src` locates fields for errors.
    pub fn from_table(table: toml::Table, src: &str, origin: &str) -> Result<Scenario, InputError> {
        let s: Scenario = Scenario::deserialize(toml::Value::Table(table))
            .map_err(|e| InputError::new(origin, None, "", e.message()))?;
        s.checked(src, origin)
    }

    /// Validates a scenario built in code (a form, overrides), naming `origin` in errors.
    pub fn check(&self, origin: &str) -> Result<(), InputError> {
        self.validate()
            .map_err(|(field, msg)| InputError::new(origin, None, &field, &msg))
    }

    fn checked(self, src: &str, origin: &str) -> Result<Scenario, InputError> {
        self.validate().map_err(|(field, msg)| {
            let line = locate(src, &field);
            InputError::new(origin, line, &field, &msg)
        })?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_owned(), m.to_owned()));
        if self.duration.ms() == 0 {
            return err("duration", "must be > 0");
        }
        if self.warmup >= self.duration {
            return err("warmup", "must be shorter than duration");
        }
        if self.sample_every.ms() == 0 {
            return err("sample_every", "must be > 0");
        }
        if self.duration.ms() / self.sample_every.ms() > 1_000_000 {
            return err(
                "sample_every",
                "gives more than a million samples; make it longer",
            );
        }
        let w = &self.workload;
        if !(w.arrival.rate_per_hour.is_finite() && w.arrival.rate_per_hour >= 0.0) {
            return err(
                "workload.arrival.rate_per_hour",
                "must be a finite number >= 0",
            );
        }
        if !(0.0..=1.0).contains(&w.arrival.diurnal_amplitude) {
            return err(
                "workload.arrival.diurnal_amplitude",
                "must be between 0 and 1",
            );
        }
        if let Some(b) = &w.arrival.bursts
            && b.every.ms() == 0
        {
            return err("workload.arrival.bursts.every", "must be > 0");
        }
        w.lifetime.validate("workload.lifetime")?;
        if w.min_listeners == 0 {
            return err("workload.min_listeners", "must be >= 1");
        }
        if w.max_listeners < w.min_listeners {
            return err("workload.max_listeners", "must be >= min_listeners");
        }
        for (f, v) in [
            ("any_fraction", w.any_fraction),
            ("udp_fraction", w.udp_fraction),
            ("migration_fraction", w.migration_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(&format!("workload.{f}"), "must be between 0 and 1");
            }
        }
        if !(w.zipf_exponent.is_finite() && w.zipf_exponent >= 0.0) {
            return err("workload.zipf_exponent", "must be a finite number >= 0");
        }
        if w.popular_ports.is_empty() && w.any_fraction < 1.0 {
            return err(
                "workload.popular_ports",
                "must not be empty unless any_fraction = 1",
            );
        }
        if let Some(p) = w.popular_ports.iter().find(|p| p.port == 0) {
            return err(
                "workload.popular_ports",
                &format!("port {} is out of range (1..=65535)", p.port),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &self.tenants {
            if t.name.trim().is_empty() || t.name.contains('/') {
                return err("tenants.name", "must be non-empty and contain no '/'");
            }
            if !names.insert(&t.name) {
                return err("tenants.name", &format!("tenant {} appears twice", t.name));
            }
            if t.weight == 0 {
                return err("tenants.weight", "must be >= 1");
            }
            if !(t.share.is_finite() && t.share >= 0.0) {
                return err("tenants.share", "must be a finite number >= 0");
            }
            parse_sharing(&t.sharing).map_err(|m| ("tenants.sharing".to_owned(), m))?;
        }
        if !self.tenants.is_empty() && self.tenants.iter().all(|t| t.share == 0.0) {
            return err("tenants.share", "at least one tenant needs a share > 0");
        }
        for p in &self.profiles {
            if builtin_profile(&p.name).is_none() {
                let known: Vec<String> = sharedlb_allocator::builtin_profiles()
                    .into_iter()
                    .map(|p| p.name.to_string())
                    .collect();
                return err(
                    "profiles.name",
                    &format!("unknown profile {:?} (known: {})", p.name, known.join(", ")),
                );
            }
            p.provisioning.validate("profiles.provisioning")?;
            if !(p.failures_per_day.is_finite() && p.failures_per_day >= 0.0) {
                return err("profiles.failures_per_day", "must be a finite number >= 0");
            }
            if p.max_listeners == Some(0) {
                return err("profiles.max_listeners", "must be >= 1");
            }
            if p.hourly_price.is_some_and(|x| !(x.is_finite() && x >= 0.0)) {
                return err("profiles.hourly_price", "must be a finite number >= 0");
            }
        }
        if let Some(c) = &self.consolidation
            && c.every.ms() == 0
        {
            return err("consolidation.every", "must be > 0");
        }
        if let Some(c) = &self.currency {
            for (cur, rate) in &c.rates {
                if !(rate.is_finite() && (1e-4..=1e4).contains(rate)) {
                    return err(
                        &format!("currency.rates.{cur}"),
                        "must be a number from 0.0001 to 10000",
                    );
                }
            }
        }
        let report = self.report_currency();
        for p in self.profile_specs() {
            if let Some(b) = builtin_profile(&p.name)
                && b.currency != report
                && self.rate(b.currency).is_none()
            {
                return err(
                    "currency",
                    &format!(
                        "profile {} is priced in {} and the report is in {report}: set \
                         [currency] rates = {{ {} = <{report} per {}> }} (prices in different \
                         currencies are never compared as equal numbers)",
                        p.name, b.currency, b.currency, b.currency
                    ),
                );
            }
        }
        self.allocator_config()
            .map_err(|e| ("allocator".to_owned(), e.to_string()))?
            .validate()
            .map_err(|e| ("allocator".to_owned(), e.to_string()))?;
        Ok(())
    }

    /// Tenants, with the default single tenant when none is given.
    pub fn tenant_specs(&self) -> Vec<TenantSpec> {
        if self.tenants.is_empty() {
            vec![TenantSpec {
                name: "default".into(),
                weight: 1,
                share: 1.0,
                quota: Quota::default(),
                sharing: tenant_sharing(),
            }]
        } else {
            self.tenants.clone()
        }
    }

    /// Profiles, with `aws-nlb` when none is given.
    pub fn profile_specs(&self) -> Vec<ProfileSpec> {
        if self.profiles.is_empty() {
            vec![ProfileSpec {
                name: "aws-nlb".into(),
                max_listeners: None,
                hourly_price: None,
                provisioning: default_provisioning(),
                failures_per_day: 0.0,
            }]
        } else {
            self.profiles.clone()
        }
    }

    /// The currency costs are reported in: `[currency] report`, else the first profile's.
    pub fn report_currency(&self) -> Currency {
        self.currency
            .as_ref()
            .and_then(|c| c.report)
            .or_else(|| {
                self.profile_specs()
                    .first()
                    .and_then(|p| builtin_profile(&p.name))
                    .map(|p| p.currency)
            })
            .unwrap_or_default()
    }

    /// Units of the report currency per unit of `c`.
    fn rate(&self, c: Currency) -> Option<f64> {
        if c == self.report_currency() {
            return Some(1.0);
        }
        self.currency.as_ref()?.rates.get(&c).copied()
    }

    /// The allocator configuration this scenario describes, every price converted to the
    /// report currency.
    pub fn allocator_config(&self) -> Result<Config, sharedlb_allocator::Error> {
        let profiles = self
            .profile_specs()
            .iter()
            .map(|p| {
                let mut b: LbProfile = builtin_profile(&p.name).ok_or_else(|| {
                    sharedlb_allocator::Error::InvalidConfig(format!("unknown profile {}", p.name))
                })?;
                if let Some(m) = p.max_listeners {
                    b.max_listeners = m;
                }
                if let Some(h) = p.hourly_price {
                    b.hourly_price = h;
                }
                let rate = self.rate(b.currency).ok_or_else(|| {
                    sharedlb_allocator::Error::InvalidConfig(format!(
                        "profile {} is priced in {}; no rate to {} is given",
                        p.name,
                        b.currency,
                        self.report_currency()
                    ))
                })?;
                b.hourly_price *= rate;
                b.monthly_cap = b.monthly_cap.map(|c| c * rate);
                b.currency = self.report_currency();
                Ok(b)
            })
            .collect::<Result<Vec<_>, sharedlb_allocator::Error>>()?;
        let tenants: BTreeMap<TenantId, TenantConfig> = self
            .tenant_specs()
            .iter()
            .map(|t| {
                Ok((
                    TenantId::new(&t.name)?,
                    TenantConfig {
                        weight: t.weight,
                        quota: t.quota.clone(),
                    },
                ))
            })
            .collect::<Result<_, sharedlb_allocator::Error>>()?;
        Ok(Config {
            profiles,
            policy: self.allocator.policy,
            tenants,
            budget: self.allocator.budget.clone(),
            idle_timeout_ms: self.allocator.idle_timeout.ms(),
            max_provisioning: self.allocator.max_provisioning,
        })
    }

    /// The profile names in use, in order.
    pub fn profile_names(&self) -> Vec<ProfileName> {
        self.allocator_config()
            .map(|c| c.profiles.into_iter().map(|p| p.name).collect())
            .unwrap_or_default()
    }
}

/// Parses a sharing rule: `tenant`, `anyone`, `dedicated`, `group:KEY`, `cross-group:KEY`.
pub fn parse_sharing(s: &str) -> Result<sharedlb_allocator::Sharing, String> {
    use sharedlb_allocator::{GroupKey, Sharing};
    let key = |k: &str| {
        GroupKey::new(k.trim()).map_err(|_| format!("{s:?}: the group key must not be blank"))
    };
    match s {
        "tenant" => Ok(Sharing::Tenant),
        "anyone" => Ok(Sharing::Anyone),
        "dedicated" => Ok(Sharing::Dedicated),
        _ => {
            if let Some(k) = s.strip_prefix("group:") {
                Ok(Sharing::Group(key(k)?))
            } else if let Some(k) = s.strip_prefix("cross-group:") {
                Ok(Sharing::CrossTenantGroup(key(k)?))
            } else {
                Err(format!(
                    "unknown sharing rule {s:?} (tenant, anyone, dedicated, group:KEY, cross-group:KEY)"
                ))
            }
        }
    }
}

/// The 1-based line where a dotted field (`workload.arrival.rate_per_hour`) is set, found
/// by walking the TOML text: the last key's line inside the right table.
pub fn locate(src: &str, field: &str) -> Option<usize> {
    let parts: Vec<&str> = field.split('.').collect();
    let key = *parts.last()?;
    let mut table = String::new();
    let mut fallback = None;
    for (i, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            table.clear();
            table.push_str(line.trim_matches(|c| c == '[' || c == ']').trim());
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let full = if table.is_empty() {
            k.to_owned()
        } else {
            format!("{table}.{k}")
        };
        if full == field {
            return Some(i + 1);
        }
        // Inline tables (`arrival = { rate_per_hour = ... }`) and arrays of tables.
        let mentions = line.contains(&format!("{key} ")) || line.contains(&format!("{key}="));
        if fallback.is_none() && mentions && field.starts_with(table.as_str()) {
            fallback = Some(i + 1);
        }
    }
    fallback
}
