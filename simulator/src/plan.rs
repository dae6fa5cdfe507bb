//! Planning from a real cluster: `kubectl get svc -A -o json` → claims → a shared packing
//! compared with one LB per Service.

use std::fmt::Write as _;

use serde::Deserialize;
use serde::Serialize;
use sharedlb_allocator::offline::{OfflinePlan, plan_offline};
use sharedlb_allocator::{Claim, LbProfile, PortRequest, Protocol};

use crate::error::InputError;
use crate::report::reason_words;

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

/// Today (one LB per Service) against a shared packing, over the Services both can serve.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Profile used.
    pub profile: String,
    /// Currency of every cost.
    pub currency: String,
    /// Services of type LoadBalancer found.
    pub services: usize,
    /// Services that can be placed (the comparison covers these).
    pub placeable: usize,
    /// LBs today for the placeable Services: one each.
    pub lbs_today: usize,
    /// Monthly cost today, rounded to cents.
    pub monthly_cost_today: f64,
    /// LBs shared.
    pub lbs_shared: usize,
    /// Monthly cost shared, rounded to cents.
    pub monthly_cost_shared: f64,
    /// 1 − shared / today; `None` when nothing can be placed.
    pub savings_fraction: Option<f64>,
    /// Lower bound on shared LBs for the placeable Services (capacity, per-listener and
    /// clique bounds).
    pub lower_bound: u64,
    /// The assignment, and the Services that cannot be placed with why.
    pub plan: OfflinePlan,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Plans the claims onto `profile`. Services no LB of the profile can hold are reported,
/// and left out of both sides of the comparison.
pub fn plan(
    claims: &[Claim],
    profile: &LbProfile,
) -> Result<PlanReport, sharedlb_allocator::Error> {
    let p = plan_offline(claims, profile)?;
    let placeable: Vec<&Claim> = claims
        .iter()
        .filter(|c| !p.unplaced.iter().any(|u| u.claim == *c.id()))
        .collect();
    let bound = sharedlb_allocator::bounds::lower_bound(placeable.iter().copied(), profile).total;
    let month = profile.price_per_month();
    let today = cents(placeable.len() as f64 * month);
    let shared = cents(p.lbs.len() as f64 * month);
    Ok(PlanReport {
        profile: profile.name.to_string(),
        currency: profile.currency.to_string(),
        services: claims.len(),
        placeable: placeable.len(),
        lbs_today: placeable.len(),
        monthly_cost_today: today,
        lbs_shared: p.lbs.len(),
        monthly_cost_shared: shared,
        savings_fraction: (today > 0.0).then(|| 1.0 - shared / today),
        lower_bound: bound,
        plan: p,
    })
}

/// The plan for people.
pub fn plan_table(r: &PlanReport) -> String {
    let mut out = String::new();
    let c = &r.currency;
    let _ = writeln!(
        out,
        "{} Services of type LoadBalancer, profile {}",
        r.services, r.profile
    );
    if !r.plan.unplaced.is_empty() {
        let _ = writeln!(
            out,
            "  {} of them cannot be placed on a {} LB at all and are left out of the comparison:",
            r.plan.unplaced.len(),
            r.profile
        );
        for u in &r.plan.unplaced {
            let _ = writeln!(
                out,
                "    {}: {} ({})",
                u.claim,
                reason_words(u.reason.as_str()),
                u.message
            );
        }
    }
    let _ = writeln!(
        out,
        "  today (one LB per Service): {:>5} LBs  {:>10.2} {c}/month",
        r.lbs_today, r.monthly_cost_today
    );
    let _ = writeln!(
        out,
        "  shared:                     {:>5} LBs  {:>10.2} {c}/month  (lower bound {})",
        r.lbs_shared, r.monthly_cost_shared, r.lower_bound
    );
    match r.savings_fraction {
        Some(s) => {
            let _ = writeln!(
                out,
                "  savings: {:.1}% over the {} Services both can serve",
                100.0 * s,
                r.placeable
            );
        }
        None => {
            let _ = writeln!(out, "  savings: n/a (no Service can be placed)");
        }
    }
    for (lb, cs) in &r.plan.lbs {
        let items: Vec<String> = cs
            .iter()
            .map(|(c, ls)| {
                let ports: Vec<String> = ls.iter().map(ToString::to_string).collect();
                format!("{c} [{}]", ports.join(" "))
            })
            .collect();
        let _ = writeln!(out, "  {lb}: {}", items.join(", "));
    }
    out
}
