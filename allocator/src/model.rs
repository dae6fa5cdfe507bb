//! The vocabulary of the allocator: protocols, ports, listeners, claims, tenants, time.
//!
//! Every type here validates on construction, so the rest of the crate never sees port 0,
//! a blank id, a claim without ports or a listener asked twice. Cloning an id never
//! allocates: a claim id of up to 23 bytes is copied inline, a longer one and every
//! shared name (tenant, profile, group) is a reference-count bump (see `IdText`).

use std::fmt;
use std::num::NonZeroU16;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use arcstr::ArcStr;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use smol_str::SmolStr;

use crate::error::Error;

/// Longest id accepted (claim ids are `namespace/name`: 63 + 1 + 253 in Kubernetes).
pub const MAX_ID_LEN: usize = 512;

/// Most ports one claim may ask for: every port number of every protocol.
pub const MAX_PORTS_PER_CLAIM: usize = 3 * 65_535;

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

    /// Position in [`Protocol::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Protocol::Tcp => 0,
            Protocol::Udp => 1,
            Protocol::Sctp => 2,
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

/// A claim's listeners, one per port request in request order. Up to four are stored
/// inline, so handing them over in a decision allocates nothing for typical claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Listeners(SmallVec<[Listener; 4]>);

impl Listeners {
    /// No listeners.
    pub fn new() -> Listeners {
        Listeners(SmallVec::new())
    }

    /// Appends one.
    pub fn push(&mut self, l: Listener) {
        self.0.push(l);
    }
}

impl Deref for Listeners {
    type Target = [Listener];
    fn deref(&self) -> &[Listener] {
        &self.0
    }
}

impl From<Vec<Listener>> for Listeners {
    fn from(v: Vec<Listener>) -> Listeners {
        Listeners(SmallVec::from_vec(v))
    }
}

impl From<&[Listener]> for Listeners {
    fn from(v: &[Listener]) -> Listeners {
        Listeners(SmallVec::from_slice(v))
    }
}

impl FromIterator<Listener> for Listeners {
    fn from_iter<I: IntoIterator<Item = Listener>>(iter: I) -> Listeners {
        Listeners(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Listeners {
    type Item = &'a Listener;
    type IntoIter = std::slice::Iter<'a, Listener>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<[Listener]> for Listeners {
    fn eq(&self, other: &[Listener]) -> bool {
        self.0.as_slice() == other
    }
}

impl PartialEq<Vec<Listener>> for Listeners {
    fn eq(&self, other: &Vec<Listener>) -> bool {
        self.0.as_slice() == other.as_slice()
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

    /// Parses the Kubernetes convention: port 0 means "pick one".
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

/// How an id's text is held. A name many claims share (a tenant, a profile, a group) is
/// a thin shared pointer: the allocator hands all claims of a tenant one handle, so a map
/// lookup by it ends without reading text. A claim id, one per claim, is held inline up
/// to 23 bytes: no heap chunk (a thin handle was 8 bytes and a 48-byte chunk for a
/// generated `default/svc-951440`), a clone is a copy, and an id index compares ids
/// without leaving the slot; longer ones are shared.
trait IdText: Clone + Eq + Ord + std::hash::Hash + Deref<Target = str> {
    fn of(s: &str) -> Self;
    /// The same handle: equal without reading the text.
    fn same(&self, other: &Self) -> bool;
}

impl IdText for ArcStr {
    fn of(s: &str) -> Self {
        ArcStr::from(s)
    }
    fn same(&self, other: &Self) -> bool {
        ArcStr::ptr_eq(self, other)
    }
}

impl IdText for SmolStr {
    fn of(s: &str) -> Self {
        SmolStr::new(s)
    }
    fn same(&self, _: &Self) -> bool {
        false
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $text:ty) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        // See `IdText` for the choice of `$text`. Hashed by text.
        pub struct $name($text);

        // Ordered by text; the same handle is equal without reading it.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                if IdText::same(&self.0, &other.0) {
                    std::cmp::Ordering::Equal
                } else {
                    self.0.cmp(&other.0)
                }
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// Builds the id; blank text and text over [`MAX_ID_LEN`] bytes are rejected.
            pub fn new(s: impl AsRef<str>) -> Result<Self, Error> {
                let s = s.as_ref();
                if s.trim().is_empty() {
                    Err(Error::InvalidId { what: $what, reason: "must not be blank".into() })
                } else if s.len() > MAX_ID_LEN {
                    Err(Error::InvalidId {
                        what: $what,
                        reason: format!("is {} bytes long, at most {MAX_ID_LEN} are allowed", s.len()),
                    })
                } else {
                    Ok($name(IdText::of(s)))
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
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
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
    ClaimId,
    "claim id",
    SmolStr
);
string_id!(
    /// A tenant: by default the namespace of its claims.
    TenantId,
    "tenant",
    ArcStr
);
string_id!(
    /// The name of a load-balancer profile (`aws-nlb`, `hetzner-lb11`, ...).
    ProfileName,
    "profile name",
    ArcStr
);
string_id!(
    /// A sharing group's key: claims naming the same key may share load balancers.
    GroupKey,
    "sharing group key",
    ArcStr
);

impl ClaimId {
    /// The namespace part of `namespace/name`, or the whole id when there is no slash.
    pub fn namespace(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(ns, _)| ns)
    }
}

/// A load balancer's identity, handed out by the allocator in increasing order.
///
/// Four bytes: a placement holds one per live claim. Never reused; once an allocator has
/// handed out all `u32::MAX` of them, no new LB opens (a claim no existing LB can take
/// waits, [`PendingReason::BudgetExhausted`](crate::PendingReason::BudgetExhausted)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LbId(pub u32);

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
    /// `self + ms`, saturating at the end of time.
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
    Group(GroupKey),
    /// Share with claims of any tenant that carry the same key (both sides opt in by naming it).
    CrossTenantGroup(GroupKey),
    /// Never share: a load balancer of its own.
    Dedicated,
}

/// A request for listeners on a shared load balancer (one `SharedLB` object, one Service).
///
/// Always valid: it has at least one port and no listener twice, whatever built it (a
/// scenario, a trace, the workload generator, the controller, a deserializer).
///
/// ```
/// use sharedlb_allocator::{Claim, Listener, PortRequest, Protocol, Sharing, GroupKey};
/// let dns = Claim::new("shop/dns", vec![
///     PortRequest::Fixed(Listener::tcp(53).unwrap()),
///     PortRequest::Fixed(Listener::udp(53).unwrap()),
/// ])?
/// .with_sharing(Sharing::Group(GroupKey::new("edge")?));
/// assert_eq!(dns.tenant().as_str(), "shop");
/// assert!(Claim::new("shop/empty", vec![]).is_err());
/// assert!(Claim::new("shop/twice", vec![PortRequest::Any(Protocol::Tcp); 2]).is_ok());
/// # Ok::<(), sharedlb_allocator::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawClaim", into = "RawClaim")]
pub struct Claim {
    id: ClaimId,
    /// Everything but the id. The allocator keeps one body for all its live claims that
    /// are alike (tenant, ports asked, sharing, pins), so a stored claim is 32 bytes, its
    /// id inline.
    body: Arc<ClaimBody>,
}

/// What a claim asks for, apart from its identity.
#[derive(Clone, Debug)]
pub(crate) struct ClaimBody {
    /// Where an allocator keeps this body (see `Bodies`), so that a claim leaving finds
    /// it without hashing: a hint, checked before use, and no part of what the claim asks.
    pub(crate) kept: u32,
    /// The tenant's number in the books of the allocator keeping this body (see
    /// `TenantBooks`); like `kept`, set when the body is kept and no part of what it asks.
    pub(crate) tenant_no: u32,
    /// Its sharing pool's number in the lower bound the keeping allocator counts (see
    /// `LiveBound::enter`); like `kept`, set when the body is kept.
    pub(crate) bound_no: u32,
    /// Its pool key's number (under the keeping allocator's pooling) among the keys of
    /// that allocator's pool indexes (see `Allocator::pool_keys`); set when kept.
    pub(crate) pool_no: u32,
    pub(crate) tenant: TenantId,
    ports: SmallVec<[PortRequest; 4]>,
    sharing: Sharing,
    allow_migration: bool,
    pinned_lb: Option<LbId>,
    profile: Option<ProfileName>,
}

impl ClaimBody {
    /// Who claims of this body may share an LB with.
    pub(crate) fn sharing(&self) -> &Sharing {
        &self.sharing
    }

    /// What the claim asks: all but where it is kept.
    #[allow(clippy::type_complexity)]
    fn asks(
        &self,
    ) -> (
        &TenantId,
        &[PortRequest],
        &Sharing,
        bool,
        Option<LbId>,
        Option<&ProfileName>,
    ) {
        (
            &self.tenant,
            &self.ports,
            &self.sharing,
            self.allow_migration,
            self.pinned_lb,
            self.profile.as_ref(),
        )
    }
}

impl PartialEq for ClaimBody {
    fn eq(&self, other: &ClaimBody) -> bool {
        self.asks() == other.asks()
    }
}

impl Eq for ClaimBody {}

impl std::hash::Hash for ClaimBody {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.asks().hash(state);
    }
}

/// The serialized form of a [`Claim`], checked on the way in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    id: ClaimId,
    tenant: TenantId,
    ports: Vec<PortRequest>,
    #[serde(default)]
    sharing: Sharing,
    #[serde(default)]
    allow_migration: bool,
    #[serde(default)]
    pinned_lb: Option<LbId>,
    #[serde(default)]
    profile: Option<ProfileName>,
}

impl TryFrom<RawClaim> for Claim {
    type Error = Error;
    fn try_from(r: RawClaim) -> Result<Claim, Error> {
        Ok(Claim::with_ports(r.id, r.ports)?
            .with_tenant(r.tenant)
            .with_sharing(r.sharing)
            .with_migration(r.allow_migration)
            .with_pinned_lb(r.pinned_lb)
            .with_profile(r.profile))
    }
}

impl From<Claim> for RawClaim {
    fn from(c: Claim) -> RawClaim {
        let b = Arc::unwrap_or_clone(c.body);
        RawClaim {
            id: c.id,
            tenant: b.tenant,
            ports: b.ports.into_vec(),
            sharing: b.sharing,
            allow_migration: b.allow_migration,
            pinned_lb: b.pinned_lb,
            profile: b.profile,
        }
    }
}

impl Claim {
    /// A claim with default tenant (the id's namespace), default sharing and no pins.
    pub fn new(id: &str, ports: Vec<PortRequest>) -> Result<Claim, Error> {
        Claim::with_ports(ClaimId::new(id)?, ports)
    }

    /// A claim from a checked id and its ports, tenant from the id's namespace.
    pub fn with_ports(id: ClaimId, ports: Vec<PortRequest>) -> Result<Claim, Error> {
        let invalid = |reason: String| Error::InvalidClaim {
            claim: id.clone(),
            reason,
        };
        if ports.is_empty() {
            return Err(invalid("a claim needs at least one port".into()));
        }
        if ports.len() > MAX_PORTS_PER_CLAIM {
            return Err(invalid(format!(
                "{} ports asked, at most {MAX_PORTS_PER_CLAIM} can exist",
                ports.len()
            )));
        }
        let mut fixed: Vec<Listener> = ports.iter().filter_map(|r| r.fixed()).collect();
        fixed.sort_unstable();
        if let Some(&[a, _]) = fixed.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("listener {a} is asked for twice")));
        }
        let tenant = TenantId::new(id.namespace())?;
        Ok(Claim {
            id,
            body: Arc::new(ClaimBody {
                kept: u32::MAX,
                tenant_no: u32::MAX,
                bound_no: u32::MAX,
                pool_no: u32::MAX,
                tenant,
                ports: SmallVec::from_vec(ports),
                sharing: Sharing::Tenant,
                allow_migration: false,
                pinned_lb: None,
                profile: None,
            }),
        })
    }

    /// A claim asking exactly what this one asks (tenant, ports, sharing, pins), under
    /// another id: the two share what they ask, so making many claims alike from one
    /// template allocates only their ids. The tenant stays this claim's, whatever `id`'s
    /// namespace.
    ///
    /// ```
    /// use sharedlb_allocator::{Claim, ClaimId, PortRequest, Protocol};
    /// let template = Claim::new("shop/template", vec![PortRequest::Any(Protocol::Tcp)])?;
    /// let web = template.renamed(ClaimId::new("other/web")?);
    /// assert_eq!(web.id().as_str(), "other/web");
    /// assert_eq!(web.tenant().as_str(), "shop");
    /// assert_eq!(web.ports(), template.ports());
    /// # Ok::<(), sharedlb_allocator::Error>(())
    /// ```
    #[must_use]
    pub fn renamed(&self, id: ClaimId) -> Claim {
        Claim {
            id,
            body: Arc::clone(&self.body),
        }
    }

    /// Whether the two claims share one copy of what they ask, as [`Claim::renamed`] makes
    /// them. An allocator keeps one copy for all its live claims alike and finds a claim
    /// made from that copy without hashing what it asks: a shell making claims from
    /// templates can make each template the allocator's copy (from
    /// [`Allocator::claim_by_key`](crate::Allocator::claim_by_key)) once this says it is not.
    ///
    /// ```
    /// use sharedlb_allocator::{Claim, ClaimId, PortRequest, Protocol};
    /// let ports = vec![PortRequest::Any(Protocol::Tcp)];
    /// let template = Claim::new("shop/template", ports.clone())?;
    /// let web = template.renamed(ClaimId::new("shop/web")?);
    /// let api = Claim::new("shop/api", ports)?;
    /// assert!(web.shares_body_with(&template));
    /// assert!(!api.shares_body_with(&template), "alike, but its own copy");
    /// # Ok::<(), sharedlb_allocator::Error>(())
    /// ```
    pub fn shares_body_with(&self, other: &Claim) -> bool {
        Arc::ptr_eq(&self.body, &other.body)
    }

    /// Sets the tenant charged for the claim.
    #[must_use]
    pub fn with_tenant(mut self, tenant: TenantId) -> Claim {
        self.body_mut().tenant = tenant;
        self
    }

    /// Sets who the claim may share with.
    #[must_use]
    pub fn with_sharing(mut self, sharing: Sharing) -> Claim {
        self.body_mut().sharing = sharing;
        self
    }

    /// Sets whether consolidation may move the claim to another LB.
    #[must_use]
    pub fn with_migration(mut self, allow: bool) -> Claim {
        self.body_mut().allow_migration = allow;
        self
    }

    /// Pins the claim to one LB (only it will do).
    #[must_use]
    pub fn with_pinned_lb(mut self, lb: Option<LbId>) -> Claim {
        self.body_mut().pinned_lb = lb;
        self
    }

    /// Restricts the claim to LBs of one profile.
    #[must_use]
    pub fn with_profile(mut self, profile: Option<ProfileName>) -> Claim {
        self.body_mut().profile = profile;
        self
    }

    /// The body to change: its own copy if it shares one.
    pub(crate) fn body_mut(&mut self) -> &mut ClaimBody {
        Arc::make_mut(&mut self.body)
    }

    /// The body, shared with claims alike.
    pub(crate) fn body(&self) -> &Arc<ClaimBody> {
        &self.body
    }

    /// Replaces the body by an equal one, so that claims alike share it.
    pub(crate) fn share_body(&mut self, body: Arc<ClaimBody>) {
        debug_assert_eq!(body, self.body);
        self.body = body;
    }

    /// Identity, `namespace/name`.
    pub fn id(&self) -> &ClaimId {
        &self.id
    }

    /// The tenant charged for it.
    pub fn tenant(&self) -> &TenantId {
        &self.body.tenant
    }

    /// The ports asked for, at least one, no listener twice.
    pub fn ports(&self) -> &[PortRequest] {
        &self.body.ports
    }

    /// Who it may share with.
    pub fn sharing(&self) -> &Sharing {
        &self.body.sharing
    }

    /// Whether consolidation may move it.
    pub fn allow_migration(&self) -> bool {
        self.body.allow_migration
    }

    /// The only LB that will do, if pinned.
    pub fn pinned_lb(&self) -> Option<LbId> {
        self.body.pinned_lb
    }

    /// The only profile that will do, if set.
    pub fn profile(&self) -> Option<&ProfileName> {
        self.body.profile.as_ref()
    }

    /// How many listeners the claim needs.
    pub fn listener_count(&self) -> u32 {
        self.body.ports.len() as u32
    }

    /// The fixed listeners asked for.
    pub fn fixed_listeners(&self) -> impl Iterator<Item = Listener> + '_ {
        self.body.ports.iter().filter_map(|r| r.fixed())
    }

    /// How many ports are automatic (`Any`).
    pub fn automatic_count(&self) -> u32 {
        self.body
            .ports
            .iter()
            .filter(|r| r.fixed().is_none())
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Claim {
        Claim::new("shop/web", vec![PortRequest::Any(Protocol::Tcp)]).unwrap()
    }

    #[test]
    fn every_setting_reads_back_and_survives_serde() {
        let key = GroupKey::new("edge").unwrap();
        let rules = [
            Sharing::Tenant,
            Sharing::Anyone,
            Sharing::Dedicated,
            Sharing::Group(key.clone()),
            Sharing::CrossTenantGroup(key),
        ];
        for rule in rules {
            for pin in [None, Some(LbId(0)), Some(LbId(7))] {
                for profile in [None, Some(ProfileName::new("aws-nlb").unwrap())] {
                    let c = web()
                        .with_sharing(rule.clone())
                        .with_pinned_lb(pin)
                        .with_profile(profile.clone())
                        .with_migration(true);
                    assert_eq!(c.sharing(), &rule);
                    assert_eq!(c.pinned_lb(), pin);
                    assert_eq!(c.profile(), profile.as_ref());
                    assert!(c.allow_migration());
                    let back: Claim =
                        serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
                    assert_eq!(back, c);
                    assert_eq!(back.sharing(), &rule);
                }
            }
        }
    }

    #[test]
    fn settings_set_back_to_defaults_equal_a_fresh_claim() {
        let key = GroupKey::new("edge").unwrap();
        let c = web()
            .with_sharing(Sharing::Group(key))
            .with_pinned_lb(Some(LbId(3)))
            .with_profile(Some(ProfileName::new("aws-nlb").unwrap()));
        assert_ne!(c, web());
        let c = c
            .with_sharing(Sharing::Tenant)
            .with_pinned_lb(None)
            .with_profile(None);
        assert_eq!(c, web(), "no leftover settings box makes them differ");
        // A keyed rule replaced by a keyless one reads as the keyless one.
        let c = web()
            .with_sharing(Sharing::CrossTenantGroup(GroupKey::new("k").unwrap()))
            .with_sharing(Sharing::Anyone);
        assert_eq!(c.sharing(), &Sharing::Anyone);
    }
}
