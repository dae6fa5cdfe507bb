//! The `SharedLB` custom resource: one claim for L4 listeners on a shared load balancer.
//! The CRD YAML in `deploy/crd.yaml` is generated from these types (`sharedlb-controller crd`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A claim for listeners on a shared L4 load balancer.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sharedlb.io",
    version = "v1alpha1",
    kind = "SharedLB",
    namespaced,
    shortname = "slb",
    status = "SharedLBStatus",
    printcolumn = r#"{"name":"LB","type":"string","jsonPath":".status.loadBalancer"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".status.address"}"#,
    printcolumn = r#"{"name":"Ports","type":"string","jsonPath":".status.portSummary"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SharedLBSpec {
    /// The listeners wanted; names are unique.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<ClaimPort>,
    /// Labels of the backend pods, in the claim's namespace.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Who the claim may share a load balancer with.
    #[serde(default)]
    pub sharing: SharingMode,
    /// Sharing group key, with `sharing: Group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_key: Option<String>,
    /// With `sharing: Group`: share with other namespaces that name the same key.
    #[serde(default)]
    pub cross_namespace: bool,
    /// Load-balancer profile (`aws-nlb`, `hetzner-lb11`, ...); default: the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Whether consolidation may move the claim to another load balancer.
    #[serde(default)]
    pub allow_migration: bool,
}

/// One listener asked for.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPort {
    /// Port name, unique in the claim (a DNS label).
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// TCP, UDP or SCTP.
    #[serde(default)]
    pub protocol: PortProtocol,
    /// The listener's port; 0 or absent: the controller assigns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65535))]
    pub port: Option<u32>,
    /// The pods' port; default: the listener's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<u32>,
}

/// L4 protocol of a claim port.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PortProtocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// Who a claim may share with.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SharingMode {
    /// Share with claims of the same namespace (default).
    #[default]
    Shared,
    /// A load balancer of its own.
    Dedicated,
    /// Share only with claims naming the same `sharingKey`.
    Group,
}

/// A condition, as in `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `Pending`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An assigned listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignedPort {
    /// The claim's port name.
    pub name: String,
    /// Protocol.
    pub protocol: PortProtocol,
    /// The listener's port on the load balancer.
    pub port: u32,
}

/// What the controller reports.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedLBStatus {
    /// `Ready` and `Pending` conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The shared load balancer (its Service name in service mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<String>,
    /// The load balancer's IP or hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The assigned listeners, in spec order.
    #[serde(default)]
    pub ports: Vec<AssignedPort>,
    /// The listeners as text, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_summary: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML, as checked in under `deploy/crd.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&SharedLB::crd())
}
