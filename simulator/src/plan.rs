//! Planning from a real cluster: `kubectl get svc -A -o json` → claims → a shared packing
//! compared with one LB per Service.

use serde::Deserialize;
use serde::Serialize;
use sharedlb_allocator::offline::{OfflinePlan, plan_offline};
use sharedlb_allocator::{Claim, LbProfile, PortRequest, Protocol};

use crate::error::InputError;

const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Deserialize)]
struct List {
    kind: Option<String>,
    items: Option<Vec<Service>>,
}

#[derive(Deserialize)]
struct Service {
    metadata: Meta,
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default = "default_ns")]
    namespace: String,
}

fn default_ns() -> String {
    "default".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    ports: Vec<SvcPort>,
}

#[derive(Deserialize)]
struct SvcPort {
    port: u32,
    #[serde(default = "default_proto")]
    protocol: String,
}

fn default_proto() -> String {
    "TCP".into()
}

/// The Services of type LoadBalancer in a Service list, as claims (namespace = tenant).
pub fn claims_from_services(json: &str, origin: &str) -> Result<Vec<Claim>, InputError> {
    let list: List = serde_json::from_str(json).map_err(|e| {
        InputError::new(
            origin,
            Some(e.line()),
            "",
            &format!("not a Service list: {e}"),
        )
    })?;
    if list
        .kind
        .as_deref()
        .is_some_and(|k| k != "List" && k != "ServiceList")
    {
        return Err(InputError::new(
            origin,
            None,
            "kind",
            "expected a List of Services (kubectl get svc -A -o json)",
        ));
    }
    let Some(items) = list.items else {
        return Err(InputError::new(
            origin,
            None,
            "items",
            "missing: not a Service list",
        ));
    };
    let mut claims = Vec::new();
    for (i, svc) in items.into_iter().enumerate() {
        let Some(spec) = svc.spec else { continue };
        if spec.kind.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let field = format!("items[{i}].spec.ports");
        let ports = spec
            .ports
            .iter()
            .map(|p| {
                let proto: Protocol = p
                    .protocol
                    .parse()
                    .map_err(|e: sharedlb_allocator::Error| e.to_string())?;
                PortRequest::from_number(proto, p.port).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| InputError::new(origin, None, &field, &m))?;
        let id = format!("{}/{}", svc.metadata.namespace, svc.metadata.name);
        let claim = Claim::new(&id, ports)
            .map_err(|e| InputError::new(origin, None, &field, &e.to_string()))?;
        claims.push(claim);
    }
    Ok(claims)
}

/// Today (one LB per Service) against a shared packing.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Profile used.
    pub profile: String,
    /// Services of type LoadBalancer.
    pub services: usize,
    /// LBs today.
    pub lbs_today: usize,
    /// Monthly cost today.
    pub monthly_cost_today: f64,
    /// LBs shared.
    pub lbs_shared: usize,
    /// Monthly cost shared.
    pub monthly_cost_shared: f64,
    /// Lower bound on shared LBs.
    pub lower_bound: u64,
    /// The assignment.
    pub plan: OfflinePlan,
}

/// Plans the claims onto `profile`.
pub fn plan(
    claims: &[Claim],
    profile: &LbProfile,
) -> Result<PlanReport, sharedlb_allocator::Error> {
    let p = plan_offline(claims, profile)?;
    let bound = sharedlb_allocator::bounds::lower_bound(claims, profile).total;
    Ok(PlanReport {
        profile: profile.name.to_string(),
        services: claims.len(),
        lbs_today: claims.len(),
        monthly_cost_today: claims.len() as f64 * profile.hourly_price * HOURS_PER_MONTH,
        lbs_shared: p.lbs.len(),
        monthly_cost_shared: p.lbs.len() as f64 * profile.hourly_price * HOURS_PER_MONTH,
        lower_bound: bound,
        plan: p,
    })
}
