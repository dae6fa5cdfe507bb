//! The pure reconcile core: from a claim, the allocator's state and the observed objects to
//! the exact objects the cluster should hold and the claim's status. No IO here: the kube
//! glue in `reconcile.rs` applies what these functions return.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sharedlb_allocator::{
    Claim, ClaimId, GroupKey, LbId, LbInfo, LbRecord, LbState, Listener, PendingReason, PoolKey,
    PortRequest, ProfileName, Protocol, Sharing, TenantId,
};

use crate::crd::{
    AssignedPort, Condition, PortProtocol, SharedLB, SharedLBSpec, SharedLBStatus, SharingMode,
};

/// Field manager and `managed-by` value.
pub const MANAGER: &str = "sharedlb.io/controller";
/// Label on every object the controller makes: the LB id.
pub const LB_LABEL: &str = "sharedlb.io/lb";
/// Label on mirrored EndpointSlices and claim Services: the claim's UID (always a valid
/// label value, unlike `namespace/name`).
pub const CLAIM_LABEL: &str = "sharedlb.io/claim-uid";
/// Label on every object the controller makes, with [`MANAGED_BY`]: objects without it are
/// never adopted, overwritten or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "sharedlb";
/// Annotation on LB Services: the profile.
pub const PROFILE_ANNOTATION: &str = "sharedlb.io/profile";
/// Annotation on LB Services: the pool (who may share it), as JSON.
pub const POOL_ANNOTATION: &str = "sharedlb.io/pool";
/// The finalizer on claims.
pub const FINALIZER: &str = "sharedlb.io/cleanup";

/// How claims reach the network.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One LoadBalancer Service per shared LB, EndpointSlices mirrored from each claim's
    /// backing Service: works with any cloud provider.
    Service,
    /// One LoadBalancer Service per claim, sharing an IP through the LB implementation's
    /// annotation (MetalLB, Cilium LB-IPAM, kube-vip).
    SharedIp,
}

/// The shared-IP implementation whose annotations to write.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum SharedIpImpl {
    /// `metallb.universe.tf/allow-shared-ip`.
    Metallb,
    /// `lbipam.cilium.io/sharing-key` (+ `sharing-cross-namespace`).
    Cilium,
    /// `kube-vip.io/loadbalancerIPs` is per Service; kube-vip shares on equal IPs, so the
    /// MetalLB-compatible key is written as well.
    KubeVip,
}

fn protocol(p: PortProtocol) -> Protocol {
    match p {
        PortProtocol::Tcp => Protocol::Tcp,
        PortProtocol::Udp => Protocol::Udp,
        PortProtocol::Sctp => Protocol::Sctp,
    }
}

fn port_protocol(p: Protocol) -> PortProtocol {
    match p {
        Protocol::Tcp => PortProtocol::Tcp,
        Protocol::Udp => PortProtocol::Udp,
        Protocol::Sctp => PortProtocol::Sctp,
    }
}

/// The claim id of a resource: `namespace/name`.
pub fn claim_id(slb: &SharedLB) -> String {
    format!("{}/{}", slb.namespace().unwrap_or_default(), slb.name_any())
}

/// Turns a spec into an allocator claim, or says what is wrong with it (the schema
/// rejects most of this already; the rest becomes a status condition, never a crash).
pub fn claim_from_spec(
    namespace: &str,
    name: &str,
    spec: &SharedLBSpec,
    mode: Mode,
) -> Result<Claim, String> {
    if spec.ports.is_empty() {
        return Err("spec.ports needs at least one port".into());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            return Err(format!(
                "spec.ports[{i}].name {:?} is empty or not unique",
                p.name
            ));
        }
        let req = PortRequest::from_number(protocol(p.protocol), p.port.unwrap_or(0))
            .map_err(|e| format!("spec.ports[{i}].port: {e}"))?;
        if p.target_port.is_some_and(|t| t == 0 || t > 65535) {
            return Err(format!("spec.ports[{i}].targetPort must be in 1..=65535"));
        }
        if req.fixed().is_none() && p.target_port.is_none() {
            return Err(format!(
                "spec.ports[{i}]: an assigned port (0) needs a targetPort"
            ));
        }
        ports.push(req);
    }
    if mode == Mode::Service && spec.selector.is_empty() {
        return Err("spec.selector must select the backend pods".into());
    }
    // The selector is copied into the claim's Service: one the API server would refuse
    // (422) is an invalid spec, explained once, not a write retried forever.
    for (k, v) in &spec.selector {
        if !is_label_key(k) {
            return Err(format!(
                "spec.selector: {k:?} is not a valid label key (an optional DNS subdomain \
                 prefix and '/', then at most 63 of A-Z a-z 0-9 - _ . starting and ending \
                 alphanumeric)"
            ));
        }
        if !is_label_value(v) {
            return Err(format!(
                "spec.selector: the value {v:?} of {k:?} is not a valid label value (at most \
                 63 of A-Z a-z 0-9 - _ . starting and ending alphanumeric, or empty)"
            ));
        }
    }
    let sharing = match spec.sharing {
        SharingMode::Shared => Sharing::Tenant,
        SharingMode::Dedicated => Sharing::Dedicated,
        SharingMode::Group => {
            let key = spec
                .sharing_key
                .as_deref()
                .map(|k| GroupKey::new(k.trim()))
                .transpose()
                .ok()
                .flatten()
                .ok_or("spec.sharingKey is required with sharing: Group")?;
            if spec.cross_namespace {
                Sharing::CrossTenantGroup(key)
            } else {
                Sharing::Group(key)
            }
        }
    };
    let profile = spec
        .profile
        .as_deref()
        .map(ProfileName::new)
        .transpose()
        .map_err(|e| format!("spec.profile: {e}"))?;
    let claim = Claim::new(&format!("{namespace}/{name}"), ports)
        .map_err(|e| e.to_string())?
        .with_tenant(TenantId::new(namespace).map_err(|e| e.to_string())?)
        .with_sharing(sharing)
        .with_migration(spec.allow_migration)
        .with_profile(profile);
    Ok(claim)
}

/// The LB Service's name for an LB id (service mode), also the shared-IP sharing key.
pub fn lb_service_name(lb: LbId) -> String {
    format!("sharedlb-{lb}")
}

/// The LB id of an LB Service name or sharing key: only a name [`lb_service_name`] gives
/// (`sharedlb-05` or `sharedlb-lb-+5` is no LB of ours, though its number parses).
pub fn lb_from_name(name: &str) -> Option<LbId> {
    let lb: LbId = name.strip_prefix("sharedlb-")?.parse().ok()?;
    (lb_service_name(lb) == name).then_some(lb)
}

/// A listener's port name on the LB Service: unique per LB, e.g. `tcp-443`.
pub fn port_name(l: Listener) -> String {
    format!("{}-{}", l.protocol.as_str().to_ascii_lowercase(), l.port)
}

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The Service of type LoadBalancer for one shared LB, holding every listener on it, with
/// no selector (its endpoints are the mirrored EndpointSlices).
pub fn desired_lb_service(lb: &LbInfo, namespace: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(lb_service_name(lb.id)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(&[
                (LB_LABEL, lb.id.0.to_string()),
                (MANAGED_BY_LABEL, MANAGED_BY.into()),
            ])),
            annotations: Some(labels(&[
                (PROFILE_ANNOTATION, lb.profile.to_string()),
                (
                    POOL_ANNOTATION,
                    serde_json::to_string(&lb.pool).unwrap_or_default(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(
                lb.listeners
                    .iter()
                    .map(|(l, _)| ServicePort {
                        name: Some(port_name(*l)),
                        port: i32::from(l.port.get()),
                        protocol: Some(l.protocol.as_str().into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn owner(slb: &SharedLB) -> Option<OwnerReference> {
    slb.controller_owner_ref(&())
}

fn target(spec_port: &crate::crd::ClaimPort, assigned: Listener) -> i32 {
    spec_port
        .target_port
        .and_then(|t| i32::try_from(t).ok())
        .unwrap_or(i32::from(assigned.port.get()))
}

/// A claim's Service ports: its port names, the assigned listeners, its target ports.
fn claim_ports(slb: &SharedLB, listeners: &[Listener]) -> Vec<ServicePort> {
    slb.spec
        .ports
        .iter()
        .zip(listeners)
        .map(|(p, l)| ServicePort {
            name: Some(p.name.clone()),
            port: i32::from(l.port.get()),
            target_port: Some(IntOrString::Int(target(p, *l))),
            protocol: Some(l.protocol.as_str().into()),
            ..ServicePort::default()
        })
        .collect()
}

/// The ClusterIP "backing" Service in the claim's namespace (service mode): it selects the
/// claim's pods so Kubernetes keeps its EndpointSlices, which the controller mirrors.
pub fn desired_backing_service(slb: &SharedLB, listeners: &[Listener]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(backing_service_name(slb)),
            namespace: slb.namespace(),
            labels: Some(labels(&[
                (CLAIM_LABEL, claim_label(slb)),
                (MANAGED_BY_LABEL, MANAGED_BY.into()),
            ])),
            owner_references: owner(slb).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(slb.spec.selector.clone()),
            ports: Some(claim_ports(slb, listeners)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The name of a claim's own Service (the backing Service in service mode, its
/// LoadBalancer Service in shared-IP mode): `<claim>-sharedlb` when that is a valid Service
/// name (a DNS-1035 label of at most 63 characters), otherwise a shortened, cleaned name
/// with a stable hash of the claim's name, so different claims never share one.
pub fn backing_service_name(slb: &SharedLB) -> String {
    service_name_for(&slb.name_any())
}

/// See [`backing_service_name`].
pub fn service_name_for(claim: &str) -> String {
    let plain = format!("{claim}-sharedlb");
    if is_dns1035_label(&plain) {
        return plain;
    }
    let hash = format!("{:08x}", fnv1a(claim.as_bytes()) as u32);
    let mut base: String = claim
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 's');
    }
    // "<base>-<hash>-slb" within 63 characters.
    base.truncate(63 - 1 - hash.len() - 4);
    let base = base.trim_end_matches('-');
    format!("{base}-{hash}-slb")
}

/// Whether `s` is a DNS-1035 label: lower-case letters, digits and `-`, starting with a
/// letter, ending with a letter or digit, at most 63 characters.
pub fn is_dns1035_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `s` is a valid label value: empty, or at most 63 characters of `A-Za-z0-9-_.`
/// starting and ending with an alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// Whether `s` is a valid label key: `[prefix/]name`, the prefix a DNS-1123 subdomain of at
/// most 253 characters, the name a non-empty label value.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// FNV-1a, 64 bits: a stable hash for derived names.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The claim's label value: its UID (or, for an object without one, a hash of its name).
pub fn claim_label(slb: &SharedLB) -> String {
    claim_label_of(&slb.metadata)
}

/// [`claim_label`] from a claim's metadata alone (as a metadata-only list gives it).
pub fn claim_label_of(meta: &ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_else(|| {
        let id = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        format!("{:016x}", fnv1a(id.as_bytes()))
    })
}

/// Whose an existing object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Made by the controller for this claim: ours to update or delete.
    ThisClaim,
    /// Anyone else's: never adopted, overwritten or deleted.
    Foreign,
}

/// Whether an existing claim Service is ours for `slb`: it carries the managed-by label and
/// is owned (ownerReference, by UID) by this claim.
pub fn owner_of(existing: &Service, slb: &SharedLB) -> Owner {
    let labelled = existing
        .labels()
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY);
    let owned = slb.metadata.uid.as_ref().is_some_and(|uid| {
        existing
            .owner_references()
            .iter()
            .any(|o| o.uid == *uid && o.kind == "SharedLB")
    });
    if labelled && owned {
        Owner::ThisClaim
    } else {
        Owner::Foreign
    }
}

/// A name for a mirrored EndpointSlice: readable when short enough, hashed otherwise
/// (EndpointSlice names are DNS subdomains of at most 253 characters; kept to 63).
fn slice_name(lb: LbId, slb: &SharedLB, family: &str) -> String {
    let plain = format!(
        "{}-{}-{}-{}",
        lb_service_name(lb),
        slb.namespace().unwrap_or_default(),
        slb.name_any().replace('.', "-"),
        family.to_ascii_lowercase()
    );
    if plain.len() <= 63 {
        return plain;
    }
    format!(
        "{}-{:016x}-{}",
        lb_service_name(lb),
        fnv1a(claim_id(slb).as_bytes()),
        family.to_ascii_lowercase()
    )
}

/// The EndpointSlices of the LB Service for one claim (service mode): the endpoints of the
/// claim's backing Service's slices, with ports renamed to the LB Service's port names, so
/// kube-proxy sends each listener of the shared LB to this claim's pods only.
pub fn mirrored_slices(
    slb: &SharedLB,
    lb: LbId,
    listeners: &[Listener],
    backing: &[EndpointSlice],
    namespace: &str,
) -> Vec<EndpointSlice> {
    let mut by_family: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for s in backing {
        by_family
            .entry(s.address_type.clone())
            .or_default()
            .extend(s.endpoints.iter().flatten().cloned());
    }
    by_family
        .into_iter()
        .map(|(family, mut endpoints)| {
            endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            for e in &mut endpoints {
                // The target refers to a pod in another namespace; keep it for humans.
                e.hostname = None;
            }
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name(lb, slb, &family)),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(labels(&[
                        ("kubernetes.io/service-name", lb_service_name(lb)),
                        ("endpointslice.kubernetes.io/managed-by", MANAGER.into()),
                        (CLAIM_LABEL, claim_label(slb)),
                        (LB_LABEL, lb.0.to_string()),
                        (MANAGED_BY_LABEL, MANAGED_BY.into()),
                    ])),
                    ..ObjectMeta::default()
                },
                address_type: family,
                endpoints: Some(endpoints),
                ports: Some(
                    slb.spec
                        .ports
                        .iter()
                        .zip(listeners)
                        .map(|(p, l)| EndpointPort {
                            name: Some(port_name(*l)),
                            port: Some(target(p, *l)),
                            protocol: Some(l.protocol.as_str().into()),
                            app_protocol: None,
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

/// The allocator LB a claim's Service is labelled for (what its sharing key asks for).
pub fn labelled_lb(svc: &Service) -> Option<LbId> {
    svc.labels().get(LB_LABEL)?.parse().ok().map(LbId)
}

/// The claim's own LoadBalancer Service (shared-IP mode), asking the LB implementation to
/// share the IP of every claim on the same allocator LB.
pub fn desired_shared_ip_service(
    slb: &SharedLB,
    lb: LbId,
    pool: &PoolKey,
    listeners: &[Listener],
    implementation: SharedIpImpl,
) -> Service {
    let key = lb_service_name(lb);
    let cross = matches!(pool, PoolKey::Open | PoolKey::CrossTenantGroup(_));
    let mut ann = BTreeMap::new();
    match implementation {
        SharedIpImpl::Metallb | SharedIpImpl::KubeVip => {
            ann.insert(
                "metallb.universe.tf/allow-shared-ip".to_owned(),
                key.clone(),
            );
        }
        SharedIpImpl::Cilium => {
            ann.insert("lbipam.cilium.io/sharing-key".to_owned(), key.clone());
            if cross {
                ann.insert(
                    "lbipam.cilium.io/sharing-cross-namespace".to_owned(),
                    "*".to_owned(),
                );
            }
        }
    }
    Service {
        metadata: ObjectMeta {
            name: Some(backing_service_name(slb)),
            namespace: slb.namespace(),
            labels: Some(labels(&[
                (CLAIM_LABEL, claim_label(slb)),
                (LB_LABEL, lb.0.to_string()),
                (MANAGED_BY_LABEL, MANAGED_BY.into()),
            ])),
            annotations: Some(ann),
            owner_references: owner(slb).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(slb.spec.selector.clone()),
            ports: Some(claim_ports(slb, listeners)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The first IP or hostname in a Service's load-balancer status.
pub fn service_address(svc: &Service) -> Option<String> {
    let ingress = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    ingress
        .iter()
        .find_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
}

/// Whether a condition's reason is progress, published as a Normal event: placed, or
/// waiting for an LB or capacity already on its way. Anything else asks someone to act
/// (or explains why nothing can be done), a Warning.
pub fn reason_is_progress(reason: &str) -> bool {
    matches!(
        reason,
        "Assigned" | "WaitingForLoadBalancer" | "WaitingForCapacity"
    )
}

/// Where a claim stands, as the status reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<'a> {
    /// The spec is invalid.
    Invalid(String),
    /// The claim's Service name is held by an object the controller did not make.
    NameTaken(String),
    /// The cluster lacks what the controller's mode needs.
    Unsupported(String),
    /// The allocator could not place it.
    Pending(PendingReason, String),
    /// Being deleted and holding no listeners; its cleanup (objects, finalizer) failed
    /// and is retried.
    Releasing(String),
    /// Placed on `lb` with `listeners`; `address` once the LB has one.
    Placed {
        /// The LB.
        lb: LbId,
        /// The listeners, in spec order.
        listeners: &'a [Listener],
        /// The LB's address, if it has one yet.
        address: Option<String>,
    },
}

/// The claim's status for an outcome. `now` (RFC 3339) stamps changed conditions;
/// unchanged ones keep their transition time, so reconciling twice writes nothing new.
pub fn status(slb: &SharedLB, outcome: &Outcome<'_>, now: &str, mode: Mode) -> SharedLBStatus {
    let generation = slb.metadata.generation;
    let (ready, reason, message) = match outcome {
        Outcome::Invalid(m) => (false, "InvalidSpec".to_owned(), m.clone()),
        Outcome::NameTaken(name) => (
            false,
            "ServiceNameTaken".to_owned(),
            format!(
                "Service {name} exists and was not made by sharedlb for this claim; it is left \
                 alone and the claim holds no listeners. Rename or delete that Service, or rename \
                 the claim."
            ),
        ),
        Outcome::Unsupported(m) => (false, "Unsupported".to_owned(), m.clone()),
        Outcome::Pending(r, m) => (false, r.as_str().to_owned(), m.clone()),
        Outcome::Releasing(e) => (
            false,
            "Releasing".to_owned(),
            format!(
                "being deleted: it holds no listeners now (they may go to other claims); \
                 its cleanup failed and is retried ({e})"
            ),
        ),
        Outcome::Placed {
            lb, address: None, ..
        } => (
            false,
            "WaitingForLoadBalancer".to_owned(),
            format!("{} has no address yet", lb_service_name(*lb)),
        ),
        Outcome::Placed {
            lb,
            address: Some(a),
            ..
        } => (
            true,
            "Assigned".to_owned(),
            format!("served by {} at {a}", lb_service_name(*lb)),
        ),
    };
    let previous = slb
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let cond = |type_: &str, on: bool| {
        let status = if on { "True" } else { "False" }.to_owned();
        let last = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.clone(),
            message: message.clone(),
            last_transition_time: last,
            observed_generation: generation,
        }
    };
    let (lb_name, address, ports) = match outcome {
        Outcome::Placed {
            lb,
            listeners,
            address,
        } => {
            let ports: Vec<AssignedPort> = slb
                .spec
                .ports
                .iter()
                .zip(listeners.iter())
                .map(|(p, l)| AssignedPort {
                    name: p.name.clone(),
                    protocol: port_protocol(l.protocol),
                    port: u32::from(l.port.get()),
                })
                .collect();
            let name = match mode {
                Mode::Service => lb_service_name(*lb),
                Mode::SharedIp => format!("{} (shared IP)", lb_service_name(*lb)),
            };
            (Some(name), address.clone(), ports)
        }
        _ => (None, None, Vec::new()),
    };
    let summary = (!ports.is_empty()).then(|| {
        ports
            .iter()
            .map(|p| format!("{}/{}", p.port, protocol(p.protocol)))
            .collect::<Vec<_>>()
            .join(",")
    });
    SharedLBStatus {
        conditions: vec![cond("Ready", ready), cond("Pending", !ready)],
        load_balancer: lb_name,
        address,
        ports,
        port_summary: summary,
        observed_generation: generation,
    }
}

/// A claim and the placement its status records, if any.
pub type RecordedClaim = (Claim, Option<(LbId, Vec<Listener>)>);

/// What the cluster records, turned into an allocator snapshot's LBs and placements: LB
/// Services (service mode) give the LBs, claims' statuses give the placements. Claims
/// whose recorded placement no longer makes sense are left out (they are placed again).
pub fn recorded_state(
    claims: &[SharedLB],
    lb_services: &[Service],
    mode: Mode,
    default_profile: &ProfileName,
    pool_of: impl Fn(&Claim) -> PoolKey,
) -> (Vec<LbRecord>, Vec<RecordedClaim>) {
    let mut lbs: BTreeMap<LbId, LbRecord> = BTreeMap::new();
    for svc in lb_services {
        let Some(lb) = lb_from_name(&svc.name_any()) else {
            continue;
        };
        let profile = svc
            .annotations()
            .get(PROFILE_ANNOTATION)
            .and_then(|p| ProfileName::new(p.as_str()).ok())
            .unwrap_or_else(|| default_profile.clone());
        let state = if service_address(svc).is_some() {
            LbState::Ready
        } else {
            LbState::Provisioning
        };
        let pool = svc
            .annotations()
            .get(POOL_ANNOTATION)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(PoolKey::Open);
        lbs.insert(
            lb,
            LbRecord {
                id: lb,
                profile,
                pool,
                state,
                idle_since: None,
            },
        );
    }
    let mut out = Vec::new();
    let mut sorted: Vec<&SharedLB> = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect();
    sorted.sort_by_key(|c| {
        (
            c.metadata
                .creation_timestamp
                .clone()
                .map(|t| t.0.to_string()),
            claim_id(c),
        )
    });
    for slb in sorted {
        let ns = slb.namespace().unwrap_or_default();
        let Ok(claim) = claim_from_spec(&ns, &slb.name_any(), &slb.spec, mode) else {
            continue;
        };
        let placement = slb.status.as_ref().and_then(|st| {
            let lb = lb_from_name(st.load_balancer.as_deref()?.split(' ').next()?)?;
            let listeners: Option<Vec<Listener>> = st
                .ports
                .iter()
                .map(|p| {
                    let port = sharedlb_allocator::Port::new(u16::try_from(p.port).ok()?)?;
                    Some(Listener::new(protocol(p.protocol), port))
                })
                .collect();
            Some((lb, listeners?))
        });
        let placement =
            placement.filter(|(lb, ls)| {
                ls.len() == claim.ports().len()
                    && (mode == Mode::SharedIp || lbs.contains_key(lb))
                    && claim.ports().iter().zip(ls).all(|(r, l)| {
                        r.fixed().is_none_or(|f| f == *l) && r.protocol() == l.protocol
                    })
            });
        if let Some((lb, _)) = &placement {
            // The LB's pool is the pool of the claims on it. A shared IP (no LB Service)
            // is ready once one of its claims recorded the address, as when it was live.
            let addressed = slb.status.as_ref().is_some_and(|s| s.address.is_some());
            let rec = lbs.entry(*lb).or_insert_with(|| LbRecord {
                id: *lb,
                profile: claim
                    .profile()
                    .cloned()
                    .unwrap_or_else(|| default_profile.clone()),
                pool: PoolKey::Open,
                state: LbState::Provisioning,
                idle_since: None,
            });
            if mode == Mode::SharedIp && addressed {
                rec.state = LbState::Ready;
            }
            rec.pool = pool_of(&claim);
        }
        out.push((claim, placement));
    }
    (lbs.into_values().collect(), out)
}

/// The claim id type for a resource.
pub fn claim_key(slb: &SharedLB) -> Option<ClaimId> {
    ClaimId::new(claim_id(slb)).ok()
}
