//! The workload generator: arrivals (Poisson, diurnal, bursts), lifetimes, tenants, ports.

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Pareto};
use sharedlb_allocator::{
    Claim, ClaimId, Listener, Port, PortRequest, Protocol, Sharing, TenantId,
};

use crate::scenario::{DurationDist, Scenario, Workload, parse_sharing};

const DAY_MS: f64 = 86_400_000.0;

/// Draws a duration in ms.
pub fn sample_duration<R: Rng + ?Sized>(d: &DurationDist, rng: &mut R) -> u64 {
    let ms = match d {
        DurationDist::Fixed { value } => value.ms() as f64,
        DurationDist::Exponential { mean } => {
            Exp::new(1.0 / mean.ms() as f64).map_or(0.0, |e| e.sample(rng))
        }
        DurationDist::Lognormal { median, sigma } => {
            LogNormal::new((median.ms() as f64).ln(), *sigma)
                .map_or(median.ms() as f64, |l| l.sample(rng))
        }
        DurationDist::Pareto { scale, shape } => {
            Pareto::new(scale.ms() as f64, *shape).map_or(scale.ms() as f64, |p| p.sample(rng))
        }
        DurationDist::Mix {
            short_fraction,
            short,
            long,
        } => {
            return if rng.random::<f64>() < *short_fraction {
                sample_duration(short, rng)
            } else {
                sample_duration(long, rng)
            };
        }
    };
    // Cap at ~31 years so heavy tails cannot overflow the clock.
    ms.clamp(0.0, 1e12).round() as u64
}

/// Generates claims for a scenario.
#[derive(Debug, Clone)]
pub struct WorkloadGen {
    w: Workload,
    tenants: Vec<(TenantId, Sharing)>,
    tenant_cdf: Vec<f64>,
    port_cdf: Vec<f64>,
    ports: Vec<Listener>,
    next: u64,
    /// The exact (fractional-millisecond) time of the last arrival drawn: the next interval
    /// starts there, not at the whole millisecond the event was rounded up to, or every
    /// interval would grow by half a millisecond on average (12% fewer arrivals at 1M/h).
    last_arrival: f64,
}

impl WorkloadGen {
    /// A generator for the scenario's workload and tenants (checked by the scenario's
    /// validation; an error here means the scenario was built without it).
    pub fn new(s: &Scenario) -> Result<WorkloadGen, sharedlb_allocator::Error> {
        let specs = s.tenant_specs();
        let tenants = specs
            .iter()
            .map(|t| {
                let sharing = parse_sharing(&t.sharing).map_err(|m| {
                    sharedlb_allocator::Error::InvalidConfig(format!("tenant {}: {m}", t.name))
                })?;
                Ok((TenantId::new(&t.name)?, sharing))
            })
            .collect::<Result<_, sharedlb_allocator::Error>>()?;
        let tenant_cdf = cdf(specs.iter().map(|t| t.share));
        let w = s.workload.clone();
        let ports: Vec<Listener> = w
            .popular_ports
            .iter()
            .filter_map(|p| Port::new(p.port).map(|port| Listener::new(p.protocol, port)))
            .collect();
        let port_cdf = cdf((1..=ports.len()).map(|k| 1.0 / (k as f64).powf(w.zipf_exponent)));
        Ok(WorkloadGen {
            w,
            tenants,
            tenant_cdf,
            port_cdf,
            ports,
            next: 0,
            last_arrival: 0.0,
        })
    }

    /// Arrival rate per ms at time `t` (diurnal variation included).
    fn rate(&self, t: u64) -> f64 {
        let base = self.w.arrival.rate_per_hour / 3_600_000.0;
        base * (1.0
            + self.w.arrival.diurnal_amplitude
                * (2.0 * std::f64::consts::PI * t as f64 / DAY_MS).sin())
    }

    /// The next arrival after `now`, by thinning a Poisson process at the peak rate;
    /// `None` when the rate is zero. Arrivals are events at whole milliseconds (rounded
    /// up), but the process runs on exact times: called at the event of the last arrival
    /// it drew, it continues from that arrival's exact time.
    pub fn next_arrival<R: Rng + ?Sized>(&mut self, now: u64, rng: &mut R) -> Option<u64> {
        let peak =
            self.w.arrival.rate_per_hour / 3_600_000.0 * (1.0 + self.w.arrival.diurnal_amplitude);
        if peak <= 0.0 {
            return None;
        }
        let exp = Exp::new(peak).ok()?;
        let now_f = now as f64;
        // The last arrival's event is its exact time rounded up: within a millisecond.
        let mut t = if (0.0..1.0).contains(&(now_f - self.last_arrival)) {
            self.last_arrival
        } else {
            now_f
        };
        loop {
            t += exp.sample(rng);
            if t > 1e15 {
                return None;
            }
            if rng.random::<f64>() * peak <= self.rate(t as u64) {
                self.last_arrival = t;
                return Some(t.ceil() as u64);
            }
        }
    }

    /// A new claim with a fresh id.
    pub fn claim<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Claim {
        self.next += 1;
        let (tenant, sharing) = self.tenants[pick(&self.tenant_cdf, rng)].clone();
        let n = rng.random_range(self.w.min_listeners..=self.w.max_listeners);
        let mut ports: Vec<PortRequest> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let any = self.ports.is_empty() || rng.random::<f64>() < self.w.any_fraction;
            let mut req = None;
            if !any {
                // Redraw a few times when the claim already has this listener.
                for _ in 0..8 {
                    let l = self.ports[pick(&self.port_cdf, rng)];
                    if !ports.contains(&PortRequest::Fixed(l)) {
                        req = Some(PortRequest::Fixed(l));
                        break;
                    }
                }
            }
            ports.push(req.unwrap_or_else(|| {
                let udp = rng.random::<f64>() < self.w.udp_fraction;
                PortRequest::Any(if udp { Protocol::Udp } else { Protocol::Tcp })
            }));
        }
        let migrate = rng.random::<f64>() < self.w.migration_fraction;
        // Valid by construction: a checked tenant name, at least one port (min_listeners
        // >= 1) and no fixed listener twice (drawn again above, else any port).
        let id = ClaimId::new(format!("{tenant}/svc-{}", self.next))
            .unwrap_or_else(|e| unreachable!("generated id: {e}"));
        Claim::with_ports(id, ports)
            .unwrap_or_else(|e| unreachable!("generated claim: {e}"))
            .with_tenant(tenant)
            .with_sharing(sharing)
            .with_migration(migrate)
    }

    /// A lifetime in ms.
    pub fn lifetime<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        sample_duration(&self.w.lifetime, rng).max(1)
    }
}

fn cdf(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut v: Vec<f64> = weights
        .map(|w| {
            acc += w.max(0.0);
            acc
        })
        .collect();
    if acc > 0.0 {
        for x in &mut v {
            *x /= acc;
        }
    }
    v
}

fn pick<R: Rng + ?Sized>(cdf: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c <= u)
        .min(cdf.len().saturating_sub(1))
}
