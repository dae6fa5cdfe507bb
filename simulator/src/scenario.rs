//! Scenarios: a TOML description of a cluster's workload, its tenants and the allocator's
//! settings. Unknown keys are rejected, every value is checked against its documented
//! range ([`RANGES`]), and errors name the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sharedlb_allocator::{
    Budget, ClaimId, Config, Currency, LbProfile, PolicyKind, ProfileName, Protocol, Quota,
    TenantConfig, TenantId, builtin_profile,
};

use crate::error::{InputError, TomlWalk};
use crate::trace::TraceEvent;

/// The scenario embedded in the binary, run when no file is given.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// What a scenario is loaded for, which decides what its work checks count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Its own workload, over its duration.
    Run,
    /// A trace in place of its workload ([`Scenario::check_replay`] sizes the work).
    Replay,
}

/// The largest seed: TOML's largest integer, so a seed written in a file, given as
/// `--seed` or swept with `--param seed=...` has one range.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// Longest duration anywhere in a scenario or a trace: 100 years (36525d), in ms.
pub const MAX_DURATION_MS: u64 = 36_525 * 86_400_000;

/// What a duration looks like, for error messages.
pub const DURATION_FORMS: &str =
    "a duration such as \"250ms\", \"90s\", \"15m\", \"2h\", \"30d\" or a number of seconds";

/// A duration written as a number of seconds or as text with a unit: `90s`, `15m`, `2h`,
/// `30d`, `250ms`; from 0 to 100 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Dur(pub u64);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORMS)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                Dur::from_secs(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Dur::from_secs(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dur, E> {
                Dur::from_secs(v).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
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

    /// Parses `250ms`, `90s`, `15m`, `2h`, `30d`, `2w` or a bare number of seconds; from 0
    /// to 100 years.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if s.starts_with('-') {
            return Err(format!("{s:?}: a duration cannot be negative"));
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not {DURATION_FORMS}"))?;
        let scale = match unit.trim() {
            "ms" => 1.0,
            "" | "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 7.0 * 86_400_000.0,
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (units: ms, s, m, h, d, w)"
                ));
            }
        };
        Dur::from_ms_f64(n * scale).map_err(|m| format!("{s:?}: {m}"))
    }

    fn from_secs(s: f64) -> Result<Dur, String> {
        // A huge number reads better in scientific notation than in 309 digits.
        let shown = if s.abs() >= 1e15 {
            sci(s)
        } else {
            s.to_string()
        };
        Dur::from_ms_f64(s * 1000.0).map_err(|m| format!("{shown} s: {m}"))
    }

    fn from_ms_f64(ms: f64) -> Result<Dur, String> {
        if ms.is_nan() {
            Err(format!("not a duration; write it as {DURATION_FORMS}"))
        } else if ms < 0.0 {
            Err("a duration cannot be negative".into())
        } else if ms.round() > MAX_DURATION_MS as f64 {
            Err("longer than 100 years (36525d), the longest duration accepted".into())
        } else {
            Ok(Dur(ms.round() as u64))
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
#[serde(
    expecting = "a distribution such as { kind = \"exponential\", mean = \"8h\" } (kinds: fixed, exponential, lognormal, pareto, mix)"
)]
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
        /// Shape (standard deviation of the log): 0 to 10.
        sigma: f64,
    },
    /// Pareto (heavy-tailed) with this minimum and tail index `shape`.
    Pareto {
        /// Minimum (scale).
        scale: Dur,
        /// Tail index, 0.1 to 100; the mean is finite for shape > 1.
        shape: f64,
    },
    /// A two-class mix: short-lived services with probability `short_fraction`, else long-lived.
    Mix {
        /// Probability of drawing from `short`: 0 to 1.
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

    /// Checks every parameter against its range; `depth` counts enclosing mixes.
    fn validate(&self, field: &str, depth: usize) -> Result<(), (String, String)> {
        let f = |k: &str| format!("{field}.{k}");
        match self {
            DurationDist::Fixed { value } => dur_in(&f("value"), *value, 0, MAX_DURATION_MS),
            DurationDist::Exponential { mean } => dur_in(&f("mean"), *mean, 1, MAX_DURATION_MS),
            DurationDist::Lognormal { median, sigma } => {
                dur_in(&f("median"), *median, 1, MAX_DURATION_MS)?;
                num_in(&f("sigma"), *sigma, 0.0, 10.0)
            }
            DurationDist::Pareto { scale, shape } => {
                dur_in(&f("scale"), *scale, 1, MAX_DURATION_MS)?;
                num_in(&f("shape"), *shape, 0.1, 100.0)
            }
            DurationDist::Mix {
                short_fraction,
                short,
                long,
            } => {
                if depth >= MAX_MIX_DEPTH {
                    return Err((
                        field.to_owned(),
                        format!("mixes nest more than {MAX_MIX_DEPTH} deep"),
                    ));
                }
                num_in(&f("short_fraction"), *short_fraction, 0.0, 1.0)?;
                short.validate(&f("short"), depth + 1)?;
                long.validate(&f("long"), depth + 1)
            }
        }
    }
}

/// Periodic bursts of arrivals (a batch deploy, a game launch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a table such as { every = \"1d\", size = 60 }")]
pub struct Bursts {
    /// Time between bursts: 1s to 100 years.
    pub every: Dur,
    /// Claims per burst: 0 to 1000000.
    pub size: u32,
}

/// How claims arrive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a table such as { rate_per_hour = 4.0, diurnal_amplitude = 0.5 }")]
pub struct Arrival {
    /// Mean Poisson arrivals per hour: 0 to 1000000 (and at most 1e8 arrivals per run).
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
#[serde(expecting = "a port such as { port = 443 } or { port = 53, protocol = \"UDP\" }")]
pub struct PopularPort {
    /// Port number: 1 to 65535.
    #[serde(deserialize_with = "port_number")]
    pub port: u16,
    /// Protocol.
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// A port number, 1 to 65535, refused with the range in words otherwise.
fn port_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = i64::deserialize(d)?;
    u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "port {n} is out of range (1 to 65535; for \"any port\" use any_fraction)"
        ))
    })
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
#[serde(expecting = "a [workload] table with arrival and lifetime")]
pub struct Workload {
    /// Arrival process.
    pub arrival: Arrival,
    /// Lifetime distribution.
    pub lifetime: DurationDist,
    /// Fewest listeners per claim: 1 to 1000.
    #[serde(default = "one")]
    pub min_listeners: u32,
    /// Most listeners per claim (uniform between): min_listeners to 1000.
    #[serde(default = "one")]
    pub max_listeners: u32,
    /// Probability that a port is `Any` (port 0: "pick one"): 0 to 1. The others are
    /// popular ports the claim does not have yet; past as many listeners as there are
    /// popular ports, automatic too (the report notes how many).
    #[serde(default)]
    pub any_fraction: f64,
    /// Probability that an `Any` port is UDP: 0 to 1.
    #[serde(default)]
    pub udp_fraction: f64,
    /// Zipf exponent over the popular ports (0 = uniform): 0 to 10.
    #[serde(default = "zipf_default")]
    pub zipf_exponent: f64,
    /// Fixed ports to choose from, most popular first: at most 10000, none twice.
    #[serde(default = "default_popular_ports")]
    pub popular_ports: Vec<PopularPort>,
    /// Fraction of claims that allow migration: 0 to 1.
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
#[serde(expecting = "a tenant such as { name = \"shop\", weight = 2, share = 0.5 }")]
pub struct TenantSpec {
    /// Name (used as namespace).
    pub name: String,
    /// Weight for fair admission: 1 to 1000000.
    #[serde(default = "one")]
    pub weight: u32,
    /// Relative share of arrivals: 0 to 1000000.
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
#[serde(expecting = "a profile such as { name = \"aws-nlb\" }")]
pub struct ProfileSpec {
    /// Built-in profile name (`aws-nlb`, `hetzner-lb11`, ...).
    pub name: String,
    /// Override: listeners per LB, 1 to 196605.
    #[serde(default)]
    pub max_listeners: Option<u32>,
    /// Override: price per hour, 0 to 1000000 in the profile's currency; replaces the
    /// built-in price and any monthly cap it has.
    #[serde(default)]
    pub hourly_price: Option<f64>,
    /// Provisioning delay.
    #[serde(default = "default_provisioning")]
    pub provisioning: DurationDist,
    /// Failures per LB per day (Poisson), 0 to 24; a failed LB's claims are placed again.
    #[serde(default)]
    pub failures_per_day: f64,
}

fn default_provisioning() -> DurationDist {
    DurationDist::Fixed { value: Dur(60_000) }
}

/// Periodic consolidation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a table such as { every = \"1h\", max_moves = 50 }")]
pub struct Consolidation {
    /// Period: 1s to 100 years, at most 1000000 runs.
    pub every: Dur,
    /// Most moves per run: 0 to 100000.
    pub max_moves: usize,
}

/// The allocator's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "an [allocator] table")]
pub struct AllocatorSpec {
    /// Packing policy (`best-fit`, `seed:10`, ...).
    #[serde(default = "best_fit")]
    pub policy: PolicyKind,
    /// How long an empty LB lives before deletion: 0 to 100 years.
    #[serde(default = "ten_minutes")]
    pub idle_timeout: Dur,
    /// Most LBs provisioning at once: 1 to 4294967295.
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
    /// Name for reports: at most 200 characters.
    #[serde(default = "unnamed")]
    pub name: String,
    /// Random seed: 0 to [`MAX_SEED`] (TOML's integers).
    #[serde(default)]
    pub seed: u64,
    /// Simulated time: 1ms to 100 years.
    pub duration: Dur,
    /// Time excluded from statistics at the start: shorter than `duration`.
    #[serde(default)]
    pub warmup: Dur,
    /// Sampling period of the time series: at most 1000000 samples per run.
    #[serde(default = "one_hour")]
    pub sample_every: Dur,
    /// Allocator settings.
    #[serde(default)]
    pub allocator: AllocatorSpec,
    /// Tenants (default: one tenant `default`): at most 1000.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    /// Profiles (default: `aws-nlb`), at most 64, each once. The first is the baseline for
    /// savings.
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
#[serde(expecting = "a [currency] table such as { report = \"USD\", rates = { EUR = 1.08 } }")]
pub struct CurrencySpec {
    /// The report's currency (default: that of the first profile).
    #[serde(default)]
    pub report: Option<Currency>,
    /// Units of the report's currency per unit of each other currency, e.g. `EUR = 1.08`
    /// when reporting in USD, 0.0001 to 10000. Say where the rate is from: prices move.
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
        Scenario::from_toml_for(src, origin, Purpose::Run)
    }

    /// Parses and checks a scenario for `purpose`; errors name `origin` and the line.
    pub fn from_toml_for(
        src: &str,
        origin: &str,
        purpose: Purpose,
    ) -> Result<Scenario, InputError> {
        // Straight from the text, so that type errors and unknown keys carry a line.
        let s: Scenario = toml::from_str(src).map_err(|e| InputError::toml(origin, src, &e))?;
        s.checked(src, origin, purpose)
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

    /// Builds from a parsed table (after `--param` overrides); errors name `origin` (the
    /// overrides) and the field, never a line of a file the value did not come from.
    pub fn from_table(table: &toml::Table, origin: &str) -> Result<Scenario, InputError> {
        // Through the text, so that a type error names its field.
        let text = toml::to_string(table)
            .map_err(|e| InputError::new(origin, None, "", &e.to_string()))?;
        let s: Scenario = toml::from_str(&text).map_err(|e| {
            let mut err = InputError::toml(origin, &text, &e);
            err.line = None;
            err
        })?;
        s.check(origin)?;
        Ok(s)
    }

    /// Validates a scenario built in code (a form, overrides), naming `origin` in errors.
    pub fn check(&self, origin: &str) -> Result<(), InputError> {
        self.validate(Purpose::Run)
            .map_err(|(field, msg)| InputError::new(origin, None, &field, &msg))
    }

    fn checked(self, src: &str, origin: &str, purpose: Purpose) -> Result<Scenario, InputError> {
        self.validate(purpose).map_err(|(field, msg)| {
            let line = locate(src, &field);
            InputError::new(origin, line, &field, &msg)
        })?;
        Ok(self)
    }

    /// Every value against its documented range ([`RANGES`]), then the total work of
    /// running its workload (not for a replay, whose trace is the workload).
    fn validate(&self, purpose: Purpose) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_owned(), m.to_owned()));
        if self.name.chars().count() > MAX_NAME_CHARS {
            return err(
                "name",
                &format!("is longer than {MAX_NAME_CHARS} characters"),
            );
        }
        if self.seed > MAX_SEED {
            return err(
                "seed",
                &format!("{} is out of range (0 to {MAX_SEED})", self.seed),
            );
        }
        dur_in("duration", self.duration, 1, MAX_DURATION_MS)?;
        if self.warmup >= self.duration {
            return err("warmup", "must be shorter than duration");
        }
        dur_in("sample_every", self.sample_every, 1, MAX_DURATION_MS)?;
        if self.duration.ms() / self.sample_every.ms() > MAX_SAMPLES {
            return err(
                "sample_every",
                &format!(
                    "gives {} samples over {}; at most {MAX_SAMPLES} are kept: make it longer",
                    self.duration.ms() / self.sample_every.ms(),
                    self.duration
                ),
            );
        }
        self.validate_workload()?;
        if self.tenants.len() > MAX_TENANTS {
            return err(
                "tenants",
                &format!(
                    "{} tenants listed, at most {MAX_TENANTS} are simulated",
                    self.tenants.len()
                ),
            );
        }
        let mut names = BTreeMap::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let f = |k: &str| format!("tenants[{i}].{k}");
            if t.name.trim().is_empty() || t.name.contains('/') {
                return err(&f("name"), "must be non-empty and contain no '/'");
            }
            if t.name.len() > MAX_TENANT_NAME_BYTES {
                return err(
                    &f("name"),
                    &format!("is longer than {MAX_TENANT_NAME_BYTES} bytes"),
                );
            }
            if let Some(first) = names.insert(&t.name, i) {
                return err(
                    &f("name"),
                    &format!("tenant {} appears twice (also tenants[{first}])", t.name),
                );
            }
            int_in(&f("weight"), u64::from(t.weight), 1, 1_000_000)?;
            num_in(&f("share"), t.share, 0.0, 1e6)?;
            parse_sharing(&t.sharing).map_err(|m| (f("sharing"), m))?;
        }
        if !self.tenants.is_empty() && self.tenants.iter().all(|t| t.share == 0.0) {
            return err("tenants[0].share", "at least one tenant needs a share > 0");
        }
        self.validate_profiles()?;
        let a = &self.allocator;
        dur_in("allocator.idle_timeout", a.idle_timeout, 0, MAX_DURATION_MS)?;
        if let Some(m) = a.max_provisioning {
            int_in(
                "allocator.max_provisioning",
                u64::from(m),
                1,
                u64::from(u32::MAX),
            )?;
        }
        if let Some(c) = a.budget.max_cost_per_hour {
            num_in("allocator.budget.max_cost_per_hour", c, 0.0, 1e9)?;
        }
        if let Some(c) = &self.consolidation {
            dur_in("consolidation.every", c.every, 1_000, MAX_DURATION_MS)?;
            int_in("consolidation.max_moves", c.max_moves as u64, 0, 100_000)?;
        }
        if let Some(c) = &self.currency {
            for (cur, rate) in &c.rates {
                num_in(&format!("currency.rates.{cur}"), *rate, 1e-4, 1e4)?;
            }
        }
        let report = self.report_currency();
        for (i, p) in self.profile_specs().iter().enumerate() {
            if let Some(b) = builtin_profile(&p.name)
                && b.currency != report
                && self.rate(b.currency).is_none()
            {
                let field = if self.currency.is_some() || self.profiles.is_empty() {
                    "currency".to_owned()
                } else {
                    format!("profiles[{i}].name")
                };
                return err(&field, &currency_message(&p.name, b.currency, report));
            }
        }
        for (i, p) in self.profiles.iter().enumerate() {
            if let (Some(h), Some(b)) = (p.hourly_price, builtin_profile(&p.name))
                && let Some(rate) = self.rate(b.currency)
                && h * rate > 1e6
            {
                return err(
                    &format!("profiles[{i}].hourly_price"),
                    &format!(
                        "{} {} is {} {report} at the rate given, above 1000000",
                        sci(h),
                        b.currency,
                        sci(h * rate)
                    ),
                );
            }
        }
        self.allocator_config()
            .map_err(|e| ("allocator".to_owned(), e.to_string()))?
            .validate()
            .map_err(|e| ("allocator".to_owned(), e.to_string()))?;
        match purpose {
            Purpose::Run => self.validate_work(),
            // Its duration and workload are not what runs: `check_replay` sizes the work.
            Purpose::Replay => Ok(()),
        }
    }

    fn validate_workload(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_owned(), m.to_owned()));
        let w = &self.workload;
        num_in(
            "workload.arrival.rate_per_hour",
            w.arrival.rate_per_hour,
            0.0,
            1e6,
        )?;
        num_in(
            "workload.arrival.diurnal_amplitude",
            w.arrival.diurnal_amplitude,
            0.0,
            1.0,
        )?;
        if let Some(b) = &w.arrival.bursts {
            dur_in(
                "workload.arrival.bursts.every",
                b.every,
                1_000,
                MAX_DURATION_MS,
            )?;
            int_in(
                "workload.arrival.bursts.size",
                u64::from(b.size),
                0,
                MAX_BURST,
            )?;
        }
        w.lifetime.validate("workload.lifetime", 0)?;
        int_in(
            "workload.min_listeners",
            u64::from(w.min_listeners),
            1,
            MAX_CLAIM_LISTENERS,
        )?;
        int_in(
            "workload.max_listeners",
            u64::from(w.max_listeners),
            1,
            MAX_CLAIM_LISTENERS,
        )?;
        if w.max_listeners < w.min_listeners {
            return err(
                "workload.max_listeners",
                &format!(
                    "must be >= min_listeners ({} < {})",
                    w.max_listeners, w.min_listeners
                ),
            );
        }
        for (f, v) in [
            ("any_fraction", w.any_fraction),
            ("udp_fraction", w.udp_fraction),
            ("migration_fraction", w.migration_fraction),
        ] {
            num_in(&format!("workload.{f}"), v, 0.0, 1.0)?;
        }
        num_in("workload.zipf_exponent", w.zipf_exponent, 0.0, 10.0)?;
        if w.popular_ports.len() > MAX_POPULAR_PORTS {
            return err(
                "workload.popular_ports",
                &format!(
                    "{} ports listed, at most {MAX_POPULAR_PORTS}",
                    w.popular_ports.len()
                ),
            );
        }
        if w.popular_ports.is_empty() && w.any_fraction < 1.0 {
            return err(
                "workload.popular_ports",
                "must not be empty unless any_fraction = 1",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in w.popular_ports.iter().enumerate() {
            if !seen.insert((p.port, p.protocol)) {
                return err(
                    &format!("workload.popular_ports[{i}]"),
                    &format!("{}/{} is listed twice", p.port, p.protocol),
                );
            }
        }
        Ok(())
    }

    fn validate_profiles(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_owned(), m.to_owned()));
        if self.profiles.len() > sharedlb_allocator::MAX_PROFILES {
            return err(
                "profiles",
                &format!(
                    "{} profiles listed, at most {} are allowed",
                    self.profiles.len(),
                    sharedlb_allocator::MAX_PROFILES
                ),
            );
        }
        let mut names = BTreeMap::new();
        for (i, p) in self.profiles.iter().enumerate() {
            let f = |k: &str| format!("profiles[{i}].{k}");
            if builtin_profile(&p.name).is_none() {
                let known: Vec<String> = sharedlb_allocator::builtin_profiles()
                    .into_iter()
                    .map(|p| p.name.to_string())
                    .collect();
                return err(
                    &f("name"),
                    &format!("unknown profile {:?} (known: {})", p.name, known.join(", ")),
                );
            }
            if let Some(first) = names.insert(&p.name, i) {
                return err(
                    &f("name"),
                    &format!(
                        "profile {} appears twice (also profiles[{first}]); list each profile once",
                        p.name
                    ),
                );
            }
            p.provisioning.validate(&f("provisioning"), 0)?;
            num_in(&f("failures_per_day"), p.failures_per_day, 0.0, 24.0)?;
            if let Some(m) = p.max_listeners {
                int_in(&f("max_listeners"), u64::from(m), 1, 196_605)?;
            }
            if let Some(h) = p.hourly_price {
                num_in(&f("hourly_price"), h, 0.0, 1e6)?;
            }
        }
        Ok(())
    }

    /// Expected arrivals, live listeners and LB failures over the run: a run too large
    /// to finish or to fit in memory is refused before it starts.
    fn validate_work(&self) -> Result<(), (String, String)> {
        let w = &self.workload;
        let duration_ms = self.duration.ms() as f64;
        let poisson = w.arrival.rate_per_hour * self.duration.hours();
        let (burst_size, burst_count) = w.arrival.bursts.as_ref().map_or((0.0, 0.0), |b| {
            (
                f64::from(b.size),
                (self.duration.ms() / b.every.ms().max(1)) as f64,
            )
        });
        let bursts = burst_size * burst_count;
        if poisson + bursts > MAX_ARRIVALS {
            let field = if poisson >= bursts {
                "workload.arrival.rate_per_hour"
            } else {
                "workload.arrival.bursts.size"
            };
            return Err((
                field.to_owned(),
                format!(
                    "gives about {} arrivals over {}; at most {} are simulated: lower it or \
                     shorten the duration",
                    sci(poisson + bursts),
                    self.duration,
                    sci(MAX_ARRIVALS)
                ),
            ));
        }
        // Little's law: live claims = arrival rate × mean time alive (within the run).
        let life = w.lifetime.mean_ms().min(duration_ms);
        let per_ms = w.arrival.rate_per_hour / 3_600_000.0
            + w.arrival
                .bursts
                .as_ref()
                .map_or(0.0, |b| f64::from(b.size) / b.every.ms().max(1) as f64);
        let live = per_ms * life;
        let listeners = live * f64::from(w.min_listeners + w.max_listeners) / 2.0;
        if listeners > MAX_LIVE_LISTENERS {
            return Err((
                "workload.lifetime".to_owned(),
                format!(
                    "with these arrivals about {} claims ({} listeners) would be live at once; \
                     at most {} listeners are simulated: shorten the lifetimes or lower the rate",
                    sci(live),
                    sci(listeners),
                    sci(MAX_LIVE_LISTENERS)
                ),
            ));
        }
        // At worst one LB per live claim, each failing at the profile's rate.
        let claim_days = live * duration_ms / 86_400_000.0;
        self.check_failures(claim_days)?;
        let events = 2.0 * (poisson + bursts);
        Self::check_tenant_work(events, self.tenant_specs().len())?;
        self.check_consolidation_work(self.duration.ms(), live)
    }

    /// LB failures over `claim_days` of claims (at worst one LB each).
    fn check_failures(&self, claim_days: f64) -> Result<(), (String, String)> {
        for (i, p) in self.profiles.iter().enumerate() {
            let failures = p.failures_per_day * claim_days;
            if failures > MAX_ARRIVALS {
                return Err((
                    format!("profiles[{i}].failures_per_day"),
                    format!(
                        "gives up to {} LB failures over the run; at most {} are simulated",
                        sci(failures),
                        sci(MAX_ARRIVALS)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `events` claim events, each bringing `tenants` tenants' shares up to date.
    fn check_tenant_work(events: f64, tenants: usize) -> Result<(), (String, String)> {
        let work = events * tenants as f64;
        if work > MAX_TENANT_WORK {
            return Err((
                "tenants".to_owned(),
                format!(
                    "about {} claim events for each of {tenants} tenants ({} in all); at most \
                     {} are simulated: fewer tenants, fewer arrivals or a shorter run",
                    sci(events),
                    sci(work),
                    sci(MAX_TENANT_WORK)
                ),
            ));
        }
        Ok(())
    }

    /// Consolidation runs over `span_ms`, each looking at about `live` claims.
    fn check_consolidation_work(&self, span_ms: u64, live: f64) -> Result<(), (String, String)> {
        let Some(c) = &self.consolidation else {
            return Ok(());
        };
        let runs = (span_ms / c.every.ms().max(1)) as f64;
        if runs > MAX_SAMPLES as f64 || runs * live.max(1.0) > MAX_CONSOLIDATION_WORK {
            return Err((
                "consolidation.every".to_owned(),
                format!(
                    "gives {} consolidation runs over {}, each looking at about {} live \
                     claims; at most {} runs and {} claim looks are simulated: make it longer",
                    sci(runs),
                    Dur(span_ms),
                    sci(live.round()),
                    MAX_SAMPLES,
                    sci(MAX_CONSOLIDATION_WORK)
                ),
            ));
        }
        Ok(())
    }

    /// The work checks again for a replay of `trace`, which sets the run's span, its
    /// claims and its tenants instead of the scenario's duration and workload.
    pub fn check_replay(&self, trace: &[TraceEvent], origin: &str) -> Result<(), InputError> {
        let span = trace.iter().map(TraceEvent::time).max().unwrap_or(0);
        let mut tenants: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut added: std::collections::HashMap<&ClaimId, u64> = std::collections::HashMap::new();
        let mut claim_ms = 0u128;
        for e in trace {
            match e {
                TraceEvent::Add { t, claim, .. } => {
                    tenants.insert(claim.tenant().as_str());
                    added.insert(claim.id(), *t);
                }
                TraceEvent::Remove { t, id } => {
                    if let Some(a) = added.remove(id) {
                        claim_ms += u128::from(t - a);
                    }
                }
            }
        }
        claim_ms += added.values().map(|a| u128::from(span - a)).sum::<u128>();
        let err = |(field, m): (String, String)| {
            InputError::new(origin, None, "", &format!("{field} (of the scenario): {m}"))
        };
        // The trace's tenants and the scenario's, each tracked at every event.
        let tenants = tenants.len() + self.tenant_specs().len();
        Self::check_tenant_work(trace.len() as f64, tenants).map_err(err)?;
        self.check_failures(claim_ms as f64 / 86_400_000.0)
            .map_err(err)?;
        // Live claims on average over the span (Little's law, as for a workload).
        let live = claim_ms as f64 / span.max(1) as f64;
        self.check_consolidation_work(span, live).map_err(err)
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
                    // The user's price replaces the built-in one, and so does its monthly
                    // cap: a cap kept from the built-in price would bill less than asked.
                    b.hourly_price = h;
                    b.monthly_cap = None;
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

/// The 1-based line where a field (`workload.arrival.rate_per_hour`, `profiles[1].name`)
/// is set in a TOML text; when it is not set there (a default), the line of the nearest
/// enclosing table or key that is.
pub fn locate(src: &str, field: &str) -> Option<usize> {
    let mut walk = TomlWalk::default();
    let mut best: Option<(usize, usize)> = None;
    let mut consider = |path: &str, line: usize| {
        if let Some(depth) = prefix_depth(path, field)
            && best.is_none_or(|(d, _)| depth > d)
        {
            best = Some((depth, line));
        }
    };
    for (i, raw) in src.lines().enumerate() {
        if let Some(h) = walk.header(raw) {
            consider(&h, i + 1);
            continue;
        }
        for path in walk.keys(raw).0 {
            if path == field {
                return Some(i + 1);
            }
            consider(&path, i + 1);
        }
    }
    best.map(|(_, line)| line)
}

/// How many segments of `field` the path `path` covers, when it is a prefix of it
/// (`workload.popular_ports` covers two of `workload.popular_ports[3].port`).
fn prefix_depth(path: &str, field: &str) -> Option<usize> {
    let p: Vec<&str> = path.split('.').collect();
    let f: Vec<&str> = field.split('.').collect();
    if p.len() > f.len() {
        return None;
    }
    let same = p.iter().zip(&f).all(|(a, b)| {
        a == b || (b.starts_with(a) && b[a.len()..].starts_with('[') && !a.contains('['))
    });
    same.then_some(p.len())
}

/// Most characters in a scenario's name.
pub const MAX_NAME_CHARS: usize = 200;
/// Most bytes in a tenant's name (claim ids `TENANT/svc-N` stay under the allocator's limit).
pub const MAX_TENANT_NAME_BYTES: usize = 253;
/// Most samples (and consolidation runs) in a run.
pub const MAX_SAMPLES: u64 = 1_000_000;
/// Most tenants.
pub const MAX_TENANTS: usize = 1_000;
/// Most listeners per generated claim.
pub const MAX_CLAIM_LISTENERS: u64 = 1_000;
/// Most claims per burst.
pub const MAX_BURST: u64 = 1_000_000;
/// Most popular ports.
pub const MAX_POPULAR_PORTS: usize = 10_000;
/// Most nested `mix` distributions.
pub const MAX_MIX_DEPTH: usize = 8;
/// Most expected arrivals in a run (and most expected LB failures).
pub const MAX_ARRIVALS: f64 = 1e8;
/// Most expected live listeners at once (memory).
pub const MAX_LIVE_LISTENERS: f64 = 5e6;
/// Most claim events times tenants: every event brings each tenant's shares up to date
/// (about 0.3 µs a tenant), so this bounds that part of a run to a few minutes.
pub const MAX_TENANT_WORK: f64 = 1e9;
/// Most consolidation runs times live claims: a run looks at every live claim (about
/// 0.5 µs each), so this bounds consolidation to about a minute.
pub const MAX_CONSOLIDATION_WORK: f64 = 1e8;

/// Every numeric scenario field and its accepted range, as documented in the README.
pub const RANGES: &[(&str, &str)] = &[
    ("seed", "0 to 9223372036854775807"), // MAX_SEED
    ("duration", "1ms to 100 years (36525d)"),
    ("warmup", "0 to less than duration"),
    (
        "sample_every",
        "1ms to 100 years, at most 1000000 samples per run",
    ),
    ("allocator.idle_timeout", "0 to 100 years"),
    ("allocator.max_provisioning", "1 to 4294967295"),
    ("allocator.budget.max_lbs", "0 to 4294967295"),
    ("allocator.budget.max_cost_per_hour", "0 to 1000000000"),
    ("workload.arrival.rate_per_hour", "0 to 1000000"),
    ("workload.arrival.diurnal_amplitude", "0 to 1"),
    ("workload.arrival.bursts.every", "1s to 100 years"),
    ("workload.arrival.bursts.size", "0 to 1000000"),
    (
        "workload.lifetime (and profiles.provisioning): value",
        "0 to 100 years",
    ),
    ("workload.lifetime: mean, median, scale", "1ms to 100 years"),
    ("workload.lifetime: sigma (lognormal)", "0 to 10"),
    ("workload.lifetime: shape (pareto)", "0.1 to 100"),
    (
        "workload.lifetime: short_fraction (mix)",
        "0 to 1, mixes nested at most 8 deep",
    ),
    ("workload.min_listeners", "1 to 1000"),
    ("workload.max_listeners", "min_listeners to 1000"),
    (
        "workload.any_fraction, udp_fraction, migration_fraction",
        "0 to 1",
    ),
    ("workload.zipf_exponent", "0 to 10"),
    (
        "workload.popular_ports",
        "0 to 10000 ports, each 1 to 65535, none twice",
    ),
    ("tenants", "0 to 1000 (none: one tenant named default)"),
    ("tenants.weight", "1 to 1000000"),
    ("tenants.share", "0 to 1000000, at least one above 0"),
    (
        "tenants.quota: max_listeners, max_claims, max_dedicated_lbs",
        "0 to 4294967295",
    ),
    ("profiles", "0 to 64, each name once (none: aws-nlb)"),
    ("profiles.max_listeners", "1 to 196605"),
    ("profiles.hourly_price", "0 to 1000000"),
    ("profiles.failures_per_day", "0 to 24"),
    (
        "consolidation.every",
        "1s to 100 years, at most 1000000 runs",
    ),
    ("consolidation.max_moves", "0 to 100000"),
    ("currency.rates", "0.0001 to 10000"),
    (
        "the whole run",
        "at most 1e8 expected arrivals (rate × duration + bursts), 5e6 expected live \
         listeners (Little's law), 1e8 expected LB failures, 1e9 claim events × tenants and \
         1e8 consolidation runs × live claims; a replay, over its trace's span, claims and \
         tenants",
    ),
];

fn range_err(field: &str, what: String) -> Result<(), (String, String)> {
    Err((field.to_owned(), what))
}

/// A number from `lo` to `hi`, finite.
fn num_in(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), (String, String)> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        range_err(
            field,
            format!(
                "must be a number from {} to {}, not {}",
                sci(lo),
                sci(hi),
                sci(v)
            ),
        )
    }
}

/// A whole number from `lo` to `hi`.
fn int_in(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), (String, String)> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        range_err(field, format!("must be from {lo} to {hi}, not {v}"))
    }
}

/// A duration from `lo` to `hi` ms.
fn dur_in(field: &str, d: Dur, lo: u64, hi: u64) -> Result<(), (String, String)> {
    if (lo..=hi).contains(&d.ms()) {
        Ok(())
    } else if d.ms() > hi {
        range_err(field, format!("must be at most {}, not {d}", Dur(hi)))
    } else {
        range_err(field, format!("must be at least {}, not {d}", Dur(lo)))
    }
}

/// A number for people: plain when of ordinary size, else in scientific notation.
pub fn sci(x: f64) -> String {
    if x == 0.0 || (x.is_finite() && (1e-4..1e10).contains(&x.abs())) {
        let s = format!("{x:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    } else {
        format!("{x:e}")
    }
}

fn currency_message(profile: &str, from: Currency, report: Currency) -> String {
    format!(
        "profile {profile} is priced in {from} and the report is in {report}: set [currency] \
         rates = {{ {from} = <{report} per {from}> }} (prices in different currencies are \
         never compared as equal numbers)"
    )
}
