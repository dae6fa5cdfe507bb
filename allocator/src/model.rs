//! The vocabulary of the allocator: protocols, ports, listeners, claims, tenants, time.
//!
//! Every type here validates on construction so that the rest of the crate never sees
//! port 0, an empty claim id or a claim without ports.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// An L4 protocol a load balancer listener can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// Transmission Control Protocol.
    Tcp,
    /// User Datagram Protocol.
    Udp,
    /// Stream Control Transmission Protocol.
    Sctp,
}

impl Protocol {
    /// All protocols, in their canonical order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// The upper-case name Kubernetes uses (`TCP`, `UDP`, `SCTP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(Error::InvalidProtocol(s.to_owned())),
        }
    }
}

/// A port number in 1..=65535; port 0 is not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u16")]
pub struct Port(NonZeroU16);

impl Port {
    /// The lowest port.
    pub const MIN: Port = Port(NonZeroU16::MIN);
    /// The highest port.
    pub const MAX: Port = Port(NonZeroU16::MAX);

    /// A port from a number, `None` for 0.
    pub const fn new(n: u16) -> Option<Port> {
        match NonZeroU16::new(n) {
            Some(p) => Some(Port(p)),
            None => None,
        }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The next port number, `None` after 65535.
    pub fn next(self) -> Option<Port> {
        self.get().checked_add(1).and_then(Port::new)
    }
}

impl TryFrom<u32> for Port {
    type Error = Error;
    fn try_from(n: u32) -> Result<Self, Error> {
        u16::try_from(n)
            .ok()
            .and_then(Port::new)
            .ok_or(Error::InvalidPort(n))
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.get()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// One listener of a load balancer: a protocol and a port. `53/TCP` and `53/UDP` differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Listener {
    /// The protocol.
    pub protocol: Protocol,
    /// The port number.
    pub port: Port,
}

impl Listener {
    /// A listener from its parts.
    pub const fn new(protocol: Protocol, port: Port) -> Listener {
        Listener { protocol, port }
    }

    /// Shorthand for a TCP listener; `None` for port 0.
    pub fn tcp(port: u16) -> Option<Listener> {
        Port::new(port).map(|p| Listener::new(Protocol::Tcp, p))
    }

    /// Shorthand for a UDP listener; `None` for port 0.
    pub fn udp(port: u16) -> Option<Listener> {
        Port::new(port).map(|p| Listener::new(Protocol::Udp, p))
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// What a claim asks for one of its ports: a fixed listener, or any free port of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPortRequest", into = "RawPortRequest")]
pub enum PortRequest {
    /// Exactly this listener.
    Fixed(Listener),
    /// Any free port of this protocol, picked by the allocator from the profile's range.
    Any(Protocol),
}

impl PortRequest {
    /// The protocol asked for.
    pub fn protocol(self) -> Protocol {
        match self {
            PortRequest::Fixed(l) => l.protocol,
            PortRequest::Any(p) => p,
        }
    }

    /// The fixed listener, if this is a fixed request.
    pub fn fixed(self) -> Option<Listener> {
        match self {
            PortRequest::Fixed(l) => Some(l),
            PortRequest::Any(_) => None,
        }
    }

    /// Parses the 2018 convention: port 0 means "pick one".
    pub fn from_number(protocol: Protocol, port: u32) -> Result<PortRequest, Error> {
        if port == 0 {
            Ok(PortRequest::Any(protocol))
        } else {
            Ok(PortRequest::Fixed(Listener::new(
                protocol,
                Port::try_from(port)?,
            )))
        }
    }
}

impl fmt::Display for PortRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRequest::Fixed(l) => l.fmt(f),
            PortRequest::Any(p) => write!(f, "*/{p}"),
        }
    }
}

/// The serialized form of a [`PortRequest`]: `{protocol, port}` with port 0 or absent = any.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortRequest {
    protocol: Protocol,
    #[serde(default)]
    port: u32,
}

impl TryFrom<RawPortRequest> for PortRequest {
    type Error = Error;
    fn try_from(r: RawPortRequest) -> Result<Self, Error> {
        PortRequest::from_number(r.protocol, r.port)
    }
}

impl From<PortRequest> for RawPortRequest {
    fn from(r: PortRequest) -> Self {
        match r {
            PortRequest::Fixed(l) => RawPortRequest {
                protocol: l.protocol,
                port: u32::from(l.port.get()),
            },
            PortRequest::Any(p) => RawPortRequest {
                protocol: p,
                port: 0,
            },
        }
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Builds the id; empty strings are rejected.
            pub fn new(s: impl Into<String>) -> Result<Self, Error> {
                let s = s.into();
                if s.trim().is_empty() {
                    Err(Error::EmptyId(stringify!($name)))
                } else {
                    Ok($name(s))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $name::new(s)
            }
        }
    };
}

string_id!(
    /// A claim's identity, conventionally `namespace/name`.
    ClaimId
);
string_id!(
    /// A tenant: by default the namespace of its claims.
    TenantId
);
string_id!(
    /// The name of a load-balancer profile (`aws-nlb`, `hetzner-lb11`, ...).
    ProfileName
);

impl ClaimId {
    /// The namespace part of `namespace/name`, or the whole id when there is no slash.
    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map_or(self.0.as_str(), |(ns, _)| ns)
    }
}

/// A load balancer's identity, handed out by the allocator in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LbId(pub u64);

impl fmt::Display for LbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lb-{}", self.0)
    }
}

impl FromStr for LbId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        s.strip_prefix("lb-")
            .unwrap_or(s)
            .parse()
            .map(LbId)
            .map_err(|_| Error::InvalidLbId(s.to_owned()))
    }
}

/// Logical time in milliseconds, supplied by the shell; the allocator never reads a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// `self + ms`, saturating.
    #[must_use]
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Who a claim may share a load balancer with (modelled on Cilium's sharing keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "key")]
pub enum Sharing {
    /// Share only with claims of the same tenant (the safe default).
    #[default]
    Tenant,
    /// Share with any claim, of any tenant, that also says `Anyone`: both sides opt in.
    Anyone,
    /// Share only with claims of the same tenant carrying the same key.
    Group(String),
    /// Share with claims of any tenant that carry the same key (both sides opt in by naming it).
    CrossTenantGroup(String),
    /// Never share: a load balancer of its own.
    Dedicated,
}

/// A request for listeners on a shared load balancer (one `SharedLB` object, one Service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Identity, `namespace/name`.
    pub id: ClaimId,
    /// The tenant charged for it; defaults to the namespace.
    pub tenant: TenantId,
    /// The ports asked for; at least one.
    pub ports: Vec<PortRequest>,
    /// Who it may share with.
    #[serde(default)]
    pub sharing: Sharing,
    /// Whether consolidation may move it to another load balancer.
    #[serde(default)]
    pub allow_migration: bool,
    /// Only this load balancer will do.
    #[serde(default)]
    pub pinned_lb: Option<LbId>,
    /// Only load balancers of this profile will do; `None` lets the policy choose.
    #[serde(default)]
    pub profile: Option<ProfileName>,
}

impl Claim {
    /// A claim with default tenant (the namespace), default sharing and no pins.
    pub fn new(id: &str, ports: Vec<PortRequest>) -> Result<Claim, Error> {
        let id = ClaimId::new(id)?;
        let tenant = TenantId::new(id.namespace())?;
        let claim = Claim {
            id,
            tenant,
            ports,
            sharing: Sharing::default(),
            allow_migration: false,
            pinned_lb: None,
            profile: None,
        };
        claim.validate()?;
        Ok(claim)
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: TenantId) -> Claim {
        self.tenant = tenant;
        self
    }

    /// Sets the sharing rule.
    #[must_use]
    pub fn with_sharing(mut self, sharing: Sharing) -> Claim {
        self.sharing = sharing;
        self
    }

    /// Sets whether the claim may be migrated.
    #[must_use]
    pub fn with_migration(mut self, allow: bool) -> Claim {
        self.allow_migration = allow;
        self
    }

    /// Checks what types cannot: at least one port, no listener asked twice.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidClaim {
            claim: self.id.clone(),
            reason: reason.to_owned(),
        };
        if self.ports.is_empty() {
            return Err(invalid("a claim needs at least one port"));
        }
        let mut fixed: Vec<Listener> = self.ports.iter().filter_map(|r| r.fixed()).collect();
        fixed.sort_unstable();
        if let Some([a, _]) = fixed.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(&format!("listener {a} is asked for twice")));
        }
        if let Sharing::Group(k) | Sharing::CrossTenantGroup(k) = &self.sharing
            && k.trim().is_empty()
        {
            return Err(invalid("a sharing group key must not be empty"));
        }
        Ok(())
    }

    /// How many listeners the claim needs.
    pub fn listener_count(&self) -> u32 {
        self.ports.len() as u32
    }

    /// The fixed listeners asked for.
    pub fn fixed_listeners(&self) -> impl Iterator<Item = Listener> + '_ {
        self.ports.iter().filter_map(|r| r.fixed())
    }
}
