//! Load-balancer profiles: what one LB of a kind can hold and what it costs.
//!
//! The built-in profiles are data, each with its source. Prices are list prices at the
//! time of writing (USD or EUR per hour as noted); check your provider before relying on them.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{Listener, Port, ProfileName, Protocol};

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
    /// Price per hour of one LB.
    pub hourly_price: f64,
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
        if !self.hourly_price.is_finite() || self.hourly_price < 0.0 {
            return bad("hourly_price must be a finite number >= 0");
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

    /// Whether two listeners clash on one LB of this profile.
    pub fn clash(&self, a: Listener, b: Listener) -> bool {
        a == b || (!self.shared_port_numbers && a.port == b.port)
    }

    /// Price per listener slot, the figure cost-aware packing compares.
    pub fn price_per_listener(&self) -> f64 {
        self.hourly_price / f64::from(self.max_listeners)
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

fn profile(
    name: &str,
    max_listeners: u32,
    protocols: &[Protocol],
    mixed_protocols: bool,
    shared_port_numbers: bool,
    hourly_price: f64,
) -> LbProfile {
    LbProfile {
        name: ProfileName::new(name).unwrap_or_else(|_| unreachable!("built-in names are set")),
        max_listeners,
        protocols: protocols.to_vec(),
        mixed_protocols,
        shared_port_numbers,
        auto_ports: range(30000, 39999),
        reserved: Vec::new(),
        hourly_price,
    }
}

/// The profiles shipped with sharedlb.
pub fn builtin_profiles() -> Vec<LbProfile> {
    use Protocol::{Sctp, Tcp, Udp};
    vec![
        // AWS Network Load Balancer: 50 listeners per LB (Elastic Load Balancing quotas,
        // "Listeners per Network Load Balancer"); TCP, UDP and TCP_UDP listeners, so 53/TCP
        // and 53/UDP can coexist; $0.0225/h in us-east-1 (LCU charges not modelled).
        profile("aws-nlb", 50, &[Tcp, Udp], true, true, 0.0225),
        // AWS Classic Load Balancer: 100 listeners per LB (ELB quotas); TCP/SSL only;
        // $0.025/h in us-east-1.
        profile("aws-clb", 100, &[Tcp], false, false, 0.025),
        // Hetzner Cloud load balancers: 5 / 15 / 30 services for LB11 / LB21 / LB31
        // (Hetzner Cloud docs, "Load Balancer types"); TCP services only;
        // EUR 5.39 / 16.40 / 32.90 per month, hourly cap 0.0089 / 0.0271 / 0.0543.
        profile("hetzner-lb11", 5, &[Tcp], false, false, 0.0089),
        profile("hetzner-lb21", 15, &[Tcp], false, false, 0.0271),
        profile("hetzner-lb31", 30, &[Tcp], false, false, 0.0543),
        // GCP external passthrough Network Load Balancer forwarding rule: up to 5 ports per
        // forwarding rule, one protocol per rule (Cloud Load Balancing docs, "Forwarding
        // rules overview"); $0.025/h for a rule (first five rules tier).
        profile("gcp-forwarding-rule", 5, &[Tcp, Udp], false, true, 0.025),
        // Azure Standard Load Balancer: 1,500 rules per LB (Azure subscription limits);
        // TCP and UDP; $0.025/h for the first five rules (rules above five cost extra, not modelled).
        profile("azure-standard", 1500, &[Tcp, Udp], true, true, 0.025),
        // MetalLB / Cilium LB-IPAM / kube-vip shared IP on bare metal: one address holds any
        // port; no per-LB price. Capacity is every port of one protocol family.
        profile(
            "metallb-shared-ip",
            65535,
            &[Tcp, Udp, Sctp],
            true,
            true,
            0.0,
        ),
    ]
}

/// A built-in profile by name.
pub fn builtin_profile(name: &str) -> Option<LbProfile> {
    builtin_profiles()
        .into_iter()
        .find(|p| p.name.as_str() == name)
}
