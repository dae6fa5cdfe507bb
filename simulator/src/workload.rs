//! The workload generator: arrivals (Poisson, diurnal, bursts), lifetimes, tenants, ports.

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Pareto};
use rustc_hash::FxHashMap;
use sharedlb_allocator::{
    Claim, ClaimId, Listener, Port, PortRequest, Protocol, Sharing, TenantId,
};
use smallvec::SmallVec;

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
    /// A claim of each kind drawn lately, which new claims of that kind are made from
    /// ([`Claim::renamed`]): the generator then allocates nothing for a new claim (its id
    /// is inline up to 23 bytes), not its tenant's name, its port list or its body. A
    /// template becomes the allocator's own copy of its kind ([`WorkloadGen::adopt`]),
    /// which the allocator then finds without hashing. Emptied when it reaches
    /// [`TEMPLATES`] kinds.
    templates: FxHashMap<Kind, u32>,
    /// The templates, by the number `templates` gives.
    kinds: Vec<Claim>,
    /// The template of the last claim made.
    last: Option<u32>,
    /// Most kinds kept in `templates` ([`TEMPLATES`]; tests set fewer, or none).
    template_room: usize,
    /// The text of the last id made, kept for its room.
    id_text: String,
    /// Listeners drawn as popular ports, and those of them that became automatic ports
    /// because the claim already held every port drawn (see [`WorkloadGen::fell_back`]).
    drawn_fixed: u64,
    fell_back: u64,
}

/// What a generated claim asks, apart from its id: tenant (by number), whether it may
/// migrate, its ports.
type Kind = (usize, bool, SmallVec<[PortRequest; 4]>);

/// Most kinds of claim the generator keeps a template of.
const TEMPLATES: usize = 4096;

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
            templates: FxHashMap::default(),
            kinds: Vec::new(),
            last: None,
            template_room: TEMPLATES,
            id_text: String::new(),
            drawn_fixed: 0,
            fell_back: 0,
        })
    }

    /// A popular port `ports` lacks, drawn by the ports' weights; none when it has all.
    fn pick_lacking<R: Rng + ?Sized>(
        &self,
        ports: &[PortRequest],
        rng: &mut R,
    ) -> Option<Listener> {
        let weight = |k: usize| self.port_cdf[k] - if k == 0 { 0.0 } else { self.port_cdf[k - 1] };
        let lacking = || {
            (0..self.ports.len()).filter(|&k| !ports.contains(&PortRequest::Fixed(self.ports[k])))
        };
        let total: f64 = lacking().map(weight).sum();
        let mut u = rng.random::<f64>() * total;
        let mut last = None;
        for k in lacking() {
            last = Some(k);
            u -= weight(k);
            if u < 0.0 {
                break;
            }
        }
        last.map(|k| self.ports[k])
    }

    /// Of the listeners drawn as popular ports so far, how many became automatic ports
    /// instead (the claim held every popular port: claims of more listeners than there
    /// are popular ports), and how many were drawn: so the report can say the workload
    /// asked fewer fixed ports than `any_fraction` says.
    pub fn fell_back(&self) -> (u64, u64) {
        (self.fell_back, self.drawn_fixed)
    }

    /// Arrival rate per ms at time `t` (diurnal variation included).
    fn rate(&self, t: u64) -> f64 {
        let base = self.w.arrival.rate_per_hour / 3_600_000.0;
        if self.w.arrival.diurnal_amplitude == 0.0 {
            return base; // what the formula gives, without a sine per arrival
        }
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
        let t = pick(&self.tenant_cdf, rng);
        let n = rng.random_range(self.w.min_listeners..=self.w.max_listeners);
        let mut ports: SmallVec<[PortRequest; 4]> = SmallVec::with_capacity(n as usize);
        for _ in 0..n {
            let any = self.ports.is_empty() || rng.random::<f64>() < self.w.any_fraction;
            let mut req = None;
            if !any {
                // A port the claim already has is drawn again: a few times by the same
                // draw, then from the ports it lacks by their weights (the same law: a
                // draw again after a refusal is a draw among the rest), so a fixed port
                // becomes automatic only when the claim holds every popular port.
                for _ in 0..8 {
                    let l = self.ports[pick(&self.port_cdf, rng)];
                    if !ports.contains(&PortRequest::Fixed(l)) {
                        req = Some(PortRequest::Fixed(l));
                        break;
                    }
                }
                if req.is_none() {
                    req = self.pick_lacking(&ports, rng).map(PortRequest::Fixed);
                }
                self.drawn_fixed += 1;
                self.fell_back += u64::from(req.is_none());
            }
            ports.push(req.unwrap_or_else(|| {
                let udp = rng.random::<f64>() < self.w.udp_fraction;
                PortRequest::Any(if udp { Protocol::Udp } else { Protocol::Tcp })
            }));
        }
        let migrate = rng.random::<f64>() < self.w.migration_fraction;
        let (tenant, sharing) = &self.tenants[t];
        self.id_text.clear();
        self.id_text.push_str(tenant.as_str());
        self.id_text.push_str("/svc-");
        self.id_text.push_str(itoa::Buffer::new().format(self.next));
        // Valid by construction: a checked tenant name, at least one port (min_listeners
        // >= 1) and no fixed listener twice (drawn again above, else any port).
        let id = ClaimId::new(&self.id_text).unwrap_or_else(|e| unreachable!("generated id: {e}"));
        let kind = (t, migrate, ports);
        if let Some(&i) = self.templates.get(&kind) {
            self.last = Some(i);
            return self.kinds[i as usize].renamed(id);
        }
        let claim = Claim::with_ports(id, kind.2.to_vec())
            .unwrap_or_else(|e| unreachable!("generated claim: {e}"))
            .with_tenant(tenant.clone())
            .with_sharing(sharing.clone())
            .with_migration(migrate);
        self.last = None;
        if self.template_room > 0 {
            if self.templates.len() >= self.template_room {
                self.templates.clear();
                self.kinds.clear();
            }
            let i = u32::try_from(self.kinds.len())
                .unwrap_or_else(|_| unreachable!("at most TEMPLATES kinds"));
            self.templates.insert(kind, i);
            self.kinds.push(claim.clone());
            self.last = Some(i);
        }
        claim
    }

    /// The templates kept, one per kind.
    #[cfg(test)]
    pub(crate) fn templates(&self) -> &[Claim] {
        &self.kinds
    }

    /// Takes `kept`, the allocator's copy of the last claim made, as the template of its
    /// kind, unless the template already is that copy: later claims of the kind then
    /// share the allocator's copy of what they ask ([`Claim::shares_body_with`]).
    /// Changes no claim made, only which copy of it a claim holds.
    pub fn adopt(&mut self, kept: &Claim) {
        if let Some(i) = self.last.take() {
            let template = &mut self.kinds[i as usize];
            debug_assert_eq!(template.ports(), kept.ports(), "a copy of the last claim");
            if !template.shares_body_with(kept) {
                *template = kept.clone();
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    const SCENARIO: &str = r#"
name = "kinds"
seed = 1
duration = "1h"
[[tenants]]
name = "shop"
[[tenants]]
name = "games"
sharing = "anyone"
share = 2.0
[[tenants]]
name = "edge"
sharing = "group:dns"
[[profiles]]
name = "aws-nlb"
[workload]
arrival = { rate_per_hour = 60.0 }
lifetime = { kind = "fixed", value = "10m" }
min_listeners = 1
max_listeners = 3
any_fraction = 0.5
udp_fraction = 0.3
migration_fraction = 0.5
popular_ports = [{ port = 53, protocol = "UDP" }, { port = 443, protocol = "TCP" }, { port = 80, protocol = "TCP" }]
"#;

    /// Claims made from templates are the claims a generator without templates makes
    /// from the same draws: same id, tenant, ports, sharing and migration, whether the
    /// templates are kept, emptied every few kinds, or not kept at all.
    #[test]
    fn claims_made_from_templates_ask_what_their_draws_ask() {
        let scenario = Scenario::from_toml(SCENARIO, "test").expect("valid scenario");
        let draw = |room: usize| {
            let mut g = WorkloadGen::new(&scenario).expect("generator");
            g.template_room = room;
            let mut rng = Pcg64Mcg::seed_from_u64(7);
            let claims: Vec<Claim> = (0..3000).map(|_| g.claim(&mut rng)).collect();
            (claims, g.templates.len())
        };
        let (plain, none_kept) = draw(0);
        assert_eq!(none_kept, 0);
        let (kept, kinds) = draw(TEMPLATES);
        assert!(
            (2..3000).contains(&kinds),
            "kinds recur, so templates serve: {kinds} kinds in 3000 claims"
        );
        assert_eq!(plain, kept);
        let (emptied, at_most) = draw(2);
        assert!(at_most <= 2);
        assert_eq!(plain, emptied);
        // The draws cover what the key must tell apart.
        assert!(
            plain.iter().any(Claim::allow_migration) && !plain.iter().all(Claim::allow_migration)
        );
        let tenants: std::collections::BTreeSet<&str> =
            plain.iter().map(|c| c.tenant().as_str()).collect();
        assert_eq!(tenants.len(), 3);
    }

    /// A claim's fixed ports are distinct popular ports while it lacks any: even when one
    /// port takes nearly every draw (a claim holding it used to get automatic ports after
    /// eight draws of it), and past as many listeners as there are popular ports the rest
    /// are automatic, counted for the report.
    #[test]
    fn fixed_ports_are_drawn_among_those_the_claim_lacks() {
        let steep = SCENARIO
            .replace(
                "any_fraction = 0.5",
                "any_fraction = 0.0\nzipf_exponent = 8.0",
            )
            .replace("min_listeners = 1", "min_listeners = 3");
        let scenario = Scenario::from_toml(&steep, "test").expect("valid scenario");
        let mut g = WorkloadGen::new(&scenario).expect("generator");
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        for _ in 0..2000 {
            let c = g.claim(&mut rng);
            let fixed: Vec<Listener> = c.fixed_listeners().collect();
            assert_eq!(fixed.len(), 3, "{:?}", c.ports());
        }
        assert_eq!(g.fell_back(), (0, 6000));
        // Four listeners on three popular ports: the fourth is automatic, every time.
        let four = steep
            .replace("max_listeners = 3", "max_listeners = 4")
            .replace("min_listeners = 3", "min_listeners = 4");
        let scenario = Scenario::from_toml(&four, "test").expect("valid scenario");
        let mut g = WorkloadGen::new(&scenario).expect("generator");
        for _ in 0..100 {
            let c = g.claim(&mut rng);
            assert_eq!(c.fixed_listeners().count(), 3, "{:?}", c.ports());
        }
        assert_eq!(g.fell_back(), (100, 400));
    }
}
