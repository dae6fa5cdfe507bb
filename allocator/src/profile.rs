//! Load-balancer profiles: what one LB of a kind can hold and what it costs.
//!
//! The built-in profiles are data, each with its source. Prices are list prices at the
//! time of writing, each in its provider's currency; check your provider before relying on
//! them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{Port, ProfileName, Protocol};

/// An inclusive range of ports from which `Any` requests are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// First port of the range.
    pub first: Port,
    /// Last port of the range (inclusive).
    pub last: Port,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(self) -> u32 {
        u32::from(self.last.get()).saturating_sub(u32::from(self.first.get())) + 1
    }

    /// Whether the range holds no port (never, once validated).
    pub fn is_empty(self) -> bool {
        self.last < self.first
    }

    /// Whether `p` lies in the range.
    pub fn contains(self, p: Port) -> bool {
        self.first <= p && p <= self.last
    }
}

/// Hours in the average month (365.25 × 24 / 12): what "per month" means in every report.
pub const HOURS_PER_MONTH: f64 = 730.5;

/// The currency of a price. Prices in different currencies are never added or compared
/// without an explicit rate.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// US dollars.
    #[default]
    Usd,
    /// Euros.
    Eur,
}

impl Currency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Currency, String> {
        match s.to_ascii_uppercase().as_str() {
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            _ => Err(format!("unknown currency {s:?} (USD or EUR)")),
        }
    }
}

/// What one load balancer of a kind can hold and what it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbProfile {
    /// Profile name, unique within a configuration.
    pub name: ProfileName,
    /// Listeners (protocol, port pairs) one LB can hold.
    pub max_listeners: u32,
    /// Protocols the LB supports.
    pub protocols: Vec<Protocol>,
    /// Whether one LB may mix protocols (TCP and UDP listeners side by side).
    pub mixed_protocols: bool,
    /// Whether `53/TCP` and `53/UDP` may both be on one LB.
    pub shared_port_numbers: bool,
    /// The range `Any` requests are served from.
    pub auto_ports: PortRange,
    /// Ports the provider keeps for itself (never assigned, never accepted as fixed).
    #[serde(default)]
    pub reserved: Vec<Port>,
    /// Price per hour of one LB, in `currency`.
    pub hourly_price: f64,
    /// Most one LB costs in a month (providers that cap hourly billing), in `currency`.
    #[serde(default)]
    pub monthly_cap: Option<f64>,
    /// The currency of the prices.
    #[serde(default)]
    pub currency: Currency,
}

impl LbProfile {
    /// Checks the profile for values that cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidConfig(format!("profile {}: {m}", self.name)));
        if self.max_listeners == 0 {
            return bad("max_listeners must be at least 1");
        }
        if self.protocols.is_empty() {
            return bad("protocols must not be empty");
        }
        if self.auto_ports.is_empty() {
            return bad("auto_ports.first must not be above auto_ports.last");
        }
        if !(self.hourly_price.is_finite() && (0.0..=1e6).contains(&self.hourly_price)) {
            return bad("hourly_price must be a number from 0 to 1000000");
        }
        if self
            .monthly_cap
            .is_some_and(|c| !(c.is_finite() && (0.0..=1e9).contains(&c)))
        {
            return bad("monthly_cap must be a number from 0 to 1000000000");
        }
        if self.max_listeners > 3 * 65_535 {
            return bad("max_listeners must be at most 196605 (every port of every protocol)");
        }
        Ok(())
    }

    /// Whether the profile speaks this protocol.
    pub fn supports(&self, p: Protocol) -> bool {
        self.protocols.contains(&p)
    }

    /// Whether the provider reserves this port.
    pub fn is_reserved(&self, p: Port) -> bool {
        self.reserved.contains(&p)
    }

    /// How many ports of the automatic range are not reserved.
    pub fn automatic_port_count(&self) -> u32 {
        let reserved = self
            .reserved
            .iter()
            .filter(|p| self.auto_ports.contains(**p))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u32;
        self.auto_ports.len().saturating_sub(reserved)
    }

    /// What one LB kept all month costs per hour: the hourly price, or less where a monthly
    /// cap applies. The one rate budgets, cost-aware packing and cost reports use.
    pub fn price_per_hour(&self) -> f64 {
        match self.monthly_cap {
            Some(cap) => self.hourly_price.min(cap / HOURS_PER_MONTH),
            None => self.hourly_price,
        }
    }

    /// What one LB billed for `hours` within one month costs: the hourly price, up to the
    /// monthly cap if there is one. The rule a shell metering LBs one by one bills with
    /// (an LB kept for days costs its hours, not a share of the cap).
    ///
    /// ```
    /// let lb11 = sharedlb_allocator::profile::builtin_profile("hetzner-lb11").unwrap();
    /// assert!((lb11.month_bill(100.0) - 0.89).abs() < 1e-9); // 100 h at 0.0089
    /// assert!((lb11.month_bill(730.5) - 5.39).abs() < 1e-9); // capped
    /// ```
    pub fn month_bill(&self, hours: f64) -> f64 {
        let h = self.hourly_price * hours;
        match self.monthly_cap {
            Some(cap) => h.min(cap),
            None => h,
        }
    }

    /// What one LB kept all month costs.
    pub fn price_per_month(&self) -> f64 {
        self.price_per_hour() * HOURS_PER_MONTH
    }

    /// Price per listener slot, the figure cost-aware packing compares.
    pub fn price_per_listener(&self) -> f64 {
        self.price_per_hour() / f64::from(self.max_listeners)
    }
}

fn port(n: u16) -> Port {
    Port::new(n).unwrap_or(Port::MIN)
}

fn range(a: u16, b: u16) -> PortRange {
    PortRange {
        first: port(a),
        last: port(b),
    }
}

#[derive(Clone, Copy)]
struct Price {
    hourly: f64,
    monthly_cap: Option<f64>,
    currency: Currency,
}

fn usd(hourly: f64) -> Price {
    Price {
        hourly,
        monthly_cap: None,
        currency: Currency::Usd,
    }
}

fn eur_capped(hourly: f64, monthly_cap: f64) -> Price {
    Price {
        hourly,
        monthly_cap: Some(monthly_cap),
        currency: Currency::Eur,
    }
}

fn profile(
    name: &str,
    max_listeners: u32,
    protocols: &[Protocol],
    mixed_protocols: bool,
    shared_port_numbers: bool,
    price: Price,
) -> LbProfile {
    LbProfile {
        name: ProfileName::new(name).unwrap_or_else(|_| unreachable!("built-in names are set")),
        max_listeners,
        protocols: protocols.to_vec(),
        mixed_protocols,
        shared_port_numbers,
        auto_ports: range(30000, 39999),
        reserved: Vec::new(),
        hourly_price: price.hourly,
        monthly_cap: price.monthly_cap,
        currency: price.currency,
    }
}

/// The profiles shipped with sharedlb.
pub fn builtin_profiles() -> Vec<LbProfile> {
    use Protocol::{Sctp, Tcp, Udp};
    vec![
        // AWS Network Load Balancer: 50 listeners per LB (Elastic Load Balancing quotas,
        // "Listeners per Network Load Balancer"); TCP, UDP and TCP_UDP listeners, so 53/TCP
        // and 53/UDP can coexist; $0.0225/h in us-east-1 (LCU charges not modelled).
        profile("aws-nlb", 50, &[Tcp, Udp], true, true, usd(0.0225)),
        // AWS Classic Load Balancer: 100 listeners per LB (ELB quotas); TCP/SSL only;
        // $0.025/h in us-east-1.
        profile("aws-clb", 100, &[Tcp], false, false, usd(0.025)),
        // Hetzner Cloud load balancers: 5 / 15 / 30 services for LB11 / LB21 / LB31
        // (Hetzner Cloud docs, "Load Balancer types"); TCP services only; billed hourly
        // (EUR 0.0089 / 0.0271 / 0.0543) up to a monthly price of EUR 5.39 / 16.40 / 32.90.
        profile(
            "hetzner-lb11",
            5,
            &[Tcp],
            false,
            false,
            eur_capped(0.0089, 5.39),
        ),
        profile(
            "hetzner-lb21",
            15,
            &[Tcp],
            false,
            false,
            eur_capped(0.0271, 16.40),
        ),
        profile(
            "hetzner-lb31",
            30,
            &[Tcp],
            false,
            false,
            eur_capped(0.0543, 32.90),
        ),
        // GCP external passthrough Network Load Balancer forwarding rule: up to 5 ports per
        // forwarding rule, one protocol per rule (Cloud Load Balancing docs, "Forwarding
        // rules overview"); $0.025/h for a rule (first five rules tier).
        profile(
            "gcp-forwarding-rule",
            5,
            &[Tcp, Udp],
            false,
            true,
            usd(0.025),
        ),
        // Azure Standard Load Balancer: 1,500 rules per LB (Azure subscription limits);
        // TCP and UDP; $0.025/h for the first five rules (rules above five cost extra, not modelled).
        profile("azure-standard", 1500, &[Tcp, Udp], true, true, usd(0.025)),
        // MetalLB / Cilium LB-IPAM / kube-vip shared IP on bare metal: one address holds any
        // port; no per-LB price. Capacity is every port of one protocol family.
        profile(
            "metallb-shared-ip",
            65535,
            &[Tcp, Udp, Sctp],
            true,
            true,
            usd(0.0),
        ),
    ]
}

/// A built-in profile by name.
pub fn builtin_profile(name: &str) -> Option<LbProfile> {
    builtin_profiles()
        .into_iter()
        .find(|p| p.name.as_str() == name)
}
