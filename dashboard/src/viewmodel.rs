//! Plain Rust view models: allocator and simulator state turned into what the page draws
//! (totals, LB cards, chips, the port map, tenant rows, chart paths). Unit-tested natively.

use std::collections::BTreeMap;

use sharedlb_allocator::view::{LbView, StateView};
use sharedlb_allocator::{LbState, Listener, Protocol};
use sharedlb_simulator::Sample;

/// The headline numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    /// LBs alive (one card each), draining ones included.
    pub lbs: usize,
    /// Of those, LBs being deleted: no longer billed, taking no claims.
    pub draining: usize,
    /// Listeners in use.
    pub listeners_used: usize,
    /// Listener capacity of the LBs not being deleted (the allocator's capacity).
    pub capacity: u64,
    /// Cost per hour.
    pub cost_per_hour: f64,
    /// Cost per hour with one LB per Service.
    pub dedicated_cost_per_hour: f64,
    /// Savings in percent; `None` with nothing placed (no baseline to compare with).
    pub savings_pct: Option<f64>,
    /// Pending claims by reason.
    pub pending: Vec<(String, usize)>,
}

/// Totals of a state.
pub fn totals(s: &StateView) -> Totals {
    let used = s.lbs.iter().map(|l| l.listeners.len()).sum();
    let taking = |l: &&LbView| l.state != LbState::Draining;
    let capacity = s
        .lbs
        .iter()
        .filter(taking)
        .map(|l| u64::from(l.capacity))
        .sum();
    let dedicated = s.baseline_per_hour;
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    for p in &s.pending {
        *pending.entry(p.reason.clone()).or_default() += 1;
    }
    Totals {
        lbs: s.lbs.len(),
        draining: s.lbs.iter().filter(|l| !taking(l)).count(),
        listeners_used: used,
        capacity,
        cost_per_hour: s.cost_per_hour,
        dedicated_cost_per_hour: dedicated,
        savings_pct: (dedicated > 0.0).then(|| 100.0 * (1.0 - s.cost_per_hour / dedicated)),
        pending: pending.into_iter().collect(),
    }
}

/// A stable colour per tenant (FNV-1a hash → hue).
pub fn tenant_color(tenant: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in tenant.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("hsl({}, 60%, 45%)", h % 360)
}

/// Distinct colours for chart lines.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One listener on a card.
#[derive(Clone, Debug, PartialEq)]
pub struct Chip {
    /// `443/TCP`.
    pub label: String,
    /// The claim.
    pub claim: String,
    /// The tenant's colour.
    pub color: String,
    /// UDP listeners are drawn differently.
    pub udp: bool,
}

/// One LB card.
#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    /// `lb-3`.
    pub id: String,
    /// Profile.
    pub profile: String,
    /// State.
    pub state: String,
    /// Address or a dash.
    pub address: String,
    /// Listeners used.
    pub used: usize,
    /// Capacity.
    pub capacity: u32,
    /// Fill in percent.
    pub fill_pct: f64,
    /// Listeners.
    pub chips: Vec<Chip>,
    /// Claims on it.
    pub claims: Vec<String>,
}

/// One card per LB, in id order.
pub fn cards(s: &StateView) -> Vec<Card> {
    s.lbs
        .iter()
        .map(|l| {
            let mut claims: Vec<String> = l.listeners.iter().map(|x| x.claim.clone()).collect();
            claims.dedup();
            claims.sort();
            claims.dedup();
            Card {
                id: l.id.to_string(),
                profile: l.profile.clone(),
                state: format!("{:?}", l.state),
                address: l.address.clone().unwrap_or_else(|| "—".into()),
                used: l.listeners.len(),
                capacity: l.capacity,
                fill_pct: 100.0 * l.listeners.len() as f64 / f64::from(l.capacity.max(1)),
                chips: l
                    .listeners
                    .iter()
                    .map(|x| Chip {
                        label: x.listener.to_string(),
                        claim: x.claim.clone(),
                        color: tenant_color(&x.tenant),
                        udp: x.listener.protocol == Protocol::Udp,
                    })
                    .collect(),
                claims,
            }
        })
        .collect()
}

/// The port map: for each popular listener, which LBs hold it.
pub fn port_map(s: &StateView, ports: &[Listener]) -> (Vec<String>, Vec<(String, Vec<bool>)>) {
    let names = s.lbs.iter().map(|l| l.id.to_string()).collect();
    let rows = ports
        .iter()
        .map(|p| {
            let cells = s
                .lbs
                .iter()
                .map(|l| l.listeners.iter().any(|x| x.listener == *p))
                .collect();
            (p.to_string(), cells)
        })
        .collect();
    (names, rows)
}

/// One tenant row: usage against quota and the weighted fair share of the listeners in use.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRow {
    /// Name.
    pub name: String,
    /// Weight.
    pub weight: u32,
    /// Listeners held.
    pub listeners: u32,
    /// Listener quota, if any.
    pub quota: Option<u32>,
    /// Fair share of the listeners in use: the allocator's weighted max-min share.
    pub fair_share: f64,
}

/// Tenant rows.
pub fn tenant_rows(s: &StateView) -> Vec<TenantRow> {
    s.tenants
        .iter()
        .map(|t| TenantRow {
            name: t.name.clone(),
            weight: t.weight,
            listeners: t.listeners,
            quota: t.max_listeners,
            fair_share: t.fair_share,
        })
        .collect()
}

/// An SVG path through points scaled into a `w × h` box (y up).
pub fn path(points: &[(f64, f64)], w: f64, h: f64, x_max: f64, y_max: f64) -> String {
    let (xm, ym) = (x_max.max(1e-9), y_max.max(1e-9));
    points
        .iter()
        .enumerate()
        .map(|(i, (x, y))| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x / xm * w,
                h - y / ym * h
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Chart points (x, y).
pub type Points = Vec<(f64, f64)>;

/// LBs in use and the lower bound over time, from simulator samples.
pub fn lb_series(samples: &[Sample]) -> (Points, Points) {
    let lbs = samples
        .iter()
        .map(|s| (s.t_hours, (s.lbs_ready + s.lbs_provisioning) as f64))
        .collect();
    let bound = samples
        .iter()
        .map(|s| (s.t_hours, s.lower_bound as f64))
        .collect();
    (lbs, bound)
}

/// A demo state: the built-in default scenario simulated for `days`, as a live view.
pub fn demo_state(days: u64) -> StateView {
    let mut s = sharedlb_simulator::Scenario::default_scenario();
    s.duration = sharedlb_simulator::scenario::Dur(days.max(1) * 86_400_000);
    s.warmup = sharedlb_simulator::scenario::Dur(0);
    match sharedlb_simulator::Simulation::new(&s) {
        Ok(mut sim) => {
            sim.run_until(u64::MAX, u64::MAX);
            sim.allocator()
                .state_view(|lb| Some(format!("demo-{}.elb.example", lb.0)))
        }
        Err(_) => StateView::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_state_turns_into_cards_and_totals() {
        let s = demo_state(2);
        assert!(!s.lbs.is_empty());
        let t = totals(&s);
        assert_eq!(t.lbs, s.lbs.len());
        assert!(t.listeners_used > 0 && (t.listeners_used as u64) <= t.capacity);
        assert!(t.savings_pct.is_some_and(|p| p > 0.0 && p < 100.0), "{t:?}");
        let mut idle = s.clone();
        for l in &mut idle.lbs {
            l.state = LbState::Draining;
        }
        idle.baseline_per_hour = 0.0;
        let t = totals(&idle);
        assert_eq!(
            (t.lbs, t.draining, t.capacity),
            (s.lbs.len(), s.lbs.len(), 0)
        );
        assert_eq!(t.savings_pct, None, "nothing placed: no savings figure");
        let cards = cards(&s);
        assert_eq!(cards.len(), s.lbs.len());
        let c = &cards[0];
        assert_eq!(c.used, c.chips.len());
        assert!((c.fill_pct - 100.0 * c.used as f64 / f64::from(c.capacity)).abs() < 1e-9);
        assert!(c.chips.iter().all(|ch| ch.color.starts_with("hsl(")));
        assert_eq!(tenant_color("shop"), tenant_color("shop"));
        assert_ne!(tenant_color("shop"), tenant_color("data"));
    }

    #[test]
    fn port_map_marks_exactly_the_lbs_holding_a_listener() {
        let s = demo_state(2);
        let https = Listener::tcp(443).unwrap();
        let (names, rows) = port_map(&s, &[https]);
        assert_eq!(names.len(), s.lbs.len());
        let expected: Vec<bool> = s
            .lbs
            .iter()
            .map(|l| l.listeners.iter().any(|x| x.listener == https))
            .collect();
        assert_eq!(rows[0].1, expected);
        assert!(
            expected.iter().filter(|b| **b).count() > 1,
            "443 is popular: several LBs hold it"
        );
    }

    #[test]
    fn tenant_fair_shares_add_up_to_usage() {
        let s = demo_state(2);
        let rows = tenant_rows(&s);
        let used: u32 = rows.iter().map(|r| r.listeners).sum();
        let fair: f64 = rows.iter().map(|r| r.fair_share).sum();
        assert!((fair - f64::from(used)).abs() < 1e-6);
    }

    #[test]
    fn chart_path_scales_into_the_box() {
        let p = path(
            &[(0.0, 0.0), (5.0, 10.0), (10.0, 5.0)],
            100.0,
            50.0,
            10.0,
            10.0,
        );
        assert_eq!(p, "M0.0,50.0 L50.0,0.0 L100.0,25.0");
        assert_eq!(path(&[], 1.0, 1.0, 1.0, 1.0), "");
    }
}
