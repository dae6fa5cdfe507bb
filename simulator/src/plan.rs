//! Planning from a real cluster: `kubectl get svc -A -o json` (or `-o yaml`) → claims →
//! a shared packing compared with what the cluster pays today.
//!
//! Today is one LB per Service of type LoadBalancer, except Services that already share
//! an IP: those with the same `metallb.universe.tf/allow-shared-ip` (or
//! `metallb.io/allow-shared-ip`) key, and those with the same
//! `lbipam.cilium.io/sharing-key` in one namespace (in any namespace when they also carry
//! `lbipam.cilium.io/sharing-cross-namespace`), share one where their ports differ, as
//! those controllers do. Which Services share which IP is read from their status
//! (`status.loadBalancer.ingress`) where the cluster reports it; a keyed Service without
//! an address joins the first IP of its key whose ports are free, in file order.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;

use serde::Deserialize;
use serde::Serialize;
use sharedlb_allocator::offline::plan_offline;
use sharedlb_allocator::{Claim, ClaimId, LbProfile, Listener, PortRequest, Protocol, TenantId};

use crate::error::{InputError, Notation, words_in};
use crate::report::reason_words;

/// MetalLB's sharing annotations (current and legacy), cluster-wide keys.
pub const METALLB_SHARING: &[&str] = &[
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];
/// Cilium LB-IPAM's sharing key, per namespace unless cross-namespace sharing is allowed.
pub const CILIUM_SHARING: &str = "lbipam.cilium.io/sharing-key";
/// Cilium LB-IPAM's cross-namespace sharing annotation.
pub const CILIUM_CROSS_NAMESPACE: &str = "lbipam.cilium.io/sharing-cross-namespace";

#[derive(Deserialize)]
struct List {
    kind: Option<String>,
    items: Option<Vec<Service>>,
    metadata: Option<Meta>,
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Service {
    metadata: Meta,
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

/// What the cluster reports of a Service: the address it was given.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    load_balancer: Option<LbStatus>,
}

#[derive(Deserialize)]
struct LbStatus {
    #[serde(default)]
    ingress: Option<Vec<Ingress>>,
}

#[derive(Deserialize)]
struct Ingress {
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
}

impl Status {
    /// The first address reported, an IP or else a hostname.
    fn address(&self) -> Option<String> {
        let first = self.load_balancer.as_ref()?.ingress.as_ref()?.first()?;
        first
            .ip
            .clone()
            .or_else(|| first.hostname.clone())
            .filter(|a| !a.trim().is_empty())
    }
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    /// The default namespace when missing or empty, as Kubernetes reads a manifest.
    #[serde(default = "default_ns", deserialize_with = "namespace")]
    namespace: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn default_ns() -> String {
    "default".into()
}

fn namespace<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let ns = Option::<String>::deserialize(d)?.unwrap_or_default();
    Ok(if ns.trim().is_empty() {
        default_ns()
    } else {
        ns
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    ports: Option<Vec<SvcPort>>,
}

#[derive(Deserialize)]
struct SvcPort {
    port: i64,
    #[serde(default)]
    protocol: Option<String>,
}

/// Who a Service's tenant is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantBy {
    /// Its namespace (the default).
    Namespace,
    /// The value of this label; the namespace when the Service has no such label.
    Label(String),
    /// The value of this annotation; the namespace when the Service has none.
    Annotation(String),
}

impl std::str::FromStr for TenantBy {
    type Err = String;
    fn from_str(s: &str) -> Result<TenantBy, String> {
        let key = |k: &str| {
            let k = k.trim();
            if k.is_empty() {
                Err(format!("{s:?}: the key must not be empty"))
            } else {
                Ok(k.to_owned())
            }
        };
        if s == "namespace" {
            Ok(TenantBy::Namespace)
        } else if let Some(k) = s.strip_prefix("label:") {
            Ok(TenantBy::Label(key(k)?))
        } else if let Some(k) = s.strip_prefix("annotation:") {
            Ok(TenantBy::Annotation(key(k)?))
        } else {
            Err(format!(
                "{s:?} is not namespace, label:KEY or annotation:KEY (e.g. label:team)"
            ))
        }
    }
}

/// The Services of type LoadBalancer of a cluster, as claims.
#[derive(Clone, Debug, Default)]
pub struct Services {
    /// One claim per Service, tenant as asked.
    pub claims: Vec<Claim>,
    /// Each Service's existing sharing key, if it shares an IP today.
    pub sharing_today: BTreeMap<ClaimId, String>,
    /// The address the cluster reports for each Service with a sharing key, where it
    /// reports one: Services of a key on one address share an LB today.
    pub address_today: BTreeMap<ClaimId, String>,
    /// Services whose tenant fell back to the namespace (no such label or annotation).
    pub tenant_fallbacks: usize,
}

/// Deepest `[`/`{` nesting accepted in a YAML Service list.
const MAX_YAML_NESTING: usize = 256;

/// The line where `[`/`{` nesting (outside quoted scalars and comments) first goes past
/// `max`. As YAML reads them: a quote opens a scalar only where one starts (after
/// `[ { , : - ?` or at the line's start), `#` opens a comment only after a space, and
/// `---` starts a new document.
fn flow_nesting_past(src: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (n, line) in src.lines().enumerate() {
        if line.starts_with("---") {
            depth = 0;
            continue;
        }
        let mut quote: Option<char> = None;
        let mut escaped = false;
        // The last character outside quotes that is not a space.
        let mut before: Option<char> = None;
        let mut after_space = true;
        for c in line.chars() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    before = Some(c);
                }
                continue;
            }
            let starts_scalar = matches!(before, None | Some('[' | '{' | ',' | ':' | '-' | '?'));
            match c {
                '"' | '\'' if starts_scalar => quote = Some(c),
                '#' if after_space => break,
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Some(n + 1);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            after_space = c == ' ' || c == '\t';
            if !after_space {
                before = Some(c);
            }
        }
    }
    None
}

/// Reads `kubectl get svc -A -o json` or `-o yaml` output (a List of Services, a bare
/// array of them, or one Service): the Services of type LoadBalancer, as claims.
pub fn services(src: &str, origin: &str, tenant_by: &TenantBy) -> Result<Services, InputError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let json = src.trim_start().starts_with(['{', '[']);
    // A bare array of Services (`jq .items` of kubectl's output) is read as their List.
    let bare = if json {
        src.trim_start().starts_with('[')
    } else {
        src.lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---")
            .is_some_and(|l| l.starts_with("- ") || l == "-")
    };
    let list = |items: Vec<Service>| List {
        kind: None,
        items: Some(items),
        metadata: None,
        spec: None,
        status: None,
    };
    let list: List = if json {
        let json_error = |e: serde_json::Error| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            InputError::new(
                origin,
                Some(e.line()),
                "",
                &format!(
                    "not a Service list (kubectl get svc -A -o json): {}",
                    words_in(&msg, Notation::Json)
                ),
            )
        };
        if bare {
            list(serde_json::from_str(src).map_err(json_error)?)
        } else {
            serde_json::from_str(src).map_err(json_error)?
        }
    } else {
        // The YAML parser takes time quadratic in flow nesting (a 200 KB file of brackets
        // took 24 s to be refused); kubectl's output nests a dozen deep.
        if let Some(line) = flow_nesting_past(src, MAX_YAML_NESTING) {
            return Err(InputError::new(
                origin,
                Some(line),
                "",
                &format!(
                    "not a Service list (kubectl get svc -A -o yaml): nested more than \
                     {MAX_YAML_NESTING} deep"
                ),
            ));
        }
        let yaml_error = |e: serde_yaml::Error| {
            let line = e.location().map(|l| l.line());
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            InputError::new(
                origin,
                line,
                "",
                &format!(
                    "not a Service list (kubectl get svc -A -o yaml): {}",
                    words_in(&msg, Notation::Yaml)
                ),
            )
        };
        if bare {
            list(serde_yaml::from_str(src).map_err(yaml_error)?)
        } else {
            serde_yaml::from_str(src).map_err(yaml_error)?
        }
    };
    let items = match list.kind.as_deref() {
        Some("List" | "ServiceList") | None => list
            .items
            .ok_or_else(|| InputError::new(origin, None, "items", "missing: not a Service list"))?,
        Some("Service") => {
            let metadata = list.metadata.ok_or_else(|| {
                InputError::new(origin, None, "metadata", "missing: not a Service")
            })?;
            vec![Service {
                metadata,
                spec: list.spec,
                status: list.status,
            }]
        }
        Some(other) => {
            return Err(InputError::new(
                origin,
                None,
                "kind",
                &format!(
                    "{other:?}: expected a List of Services (kubectl get svc -A -o json or -o yaml)"
                ),
            ));
        }
    };
    let mut out = Services::default();
    let mut seen = HashSet::new();
    for (i, svc) in items.into_iter().enumerate() {
        let Some(spec) = svc.spec else { continue };
        if spec.kind.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let m = &svc.metadata;
        let name = m.name.as_deref().unwrap_or("");
        let id = format!("{}/{name}", m.namespace);
        let err = |field: &str, msg: &str| {
            InputError::new(origin, None, &format!("items[{i}]{field} ({id})"), msg)
        };
        if name.trim().is_empty() {
            return Err(err(".metadata.name", "missing or empty"));
        }
        ClaimId::new(&id).map_err(|e| err(".metadata", &e.to_string()))?;
        let ports = spec
            .ports
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let f = format!(".spec.ports[{j}]");
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                let proto: Protocol = match proto {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    other => {
                        return Err(err(
                            &format!("{f}.protocol"),
                            &format!("{other:?} is not a Service protocol (TCP, UDP or SCTP)"),
                        ));
                    }
                };
                // Kubernetes requires 1 to 65535 for a Service port: 0 is not "any port".
                let n = u32::try_from(p.port)
                    .ok()
                    .filter(|n| (1..=65_535).contains(n))
                    .ok_or_else(|| {
                        err(
                            &format!("{f}.port"),
                            &format!(
                                "{} is not a valid Service port (Kubernetes requires 1 to 65535)",
                                p.port
                            ),
                        )
                    })?;
                PortRequest::from_number(proto, n).map_err(|e| err(&f, &e.to_string()))
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        let mut claim = Claim::new(&id, ports).map_err(|e| err(".spec.ports", &e.to_string()))?;
        if !seen.insert(claim.id().clone()) {
            return Err(err(".metadata", &format!("Service {id} is listed twice")));
        }
        let (source, key) = match tenant_by {
            TenantBy::Namespace => (None, ""),
            TenantBy::Label(k) => (m.labels.as_ref(), k.as_str()),
            TenantBy::Annotation(k) => (m.annotations.as_ref(), k.as_str()),
        };
        if *tenant_by != TenantBy::Namespace {
            match source
                .and_then(|s| s.get(key))
                .filter(|v| !v.trim().is_empty())
            {
                Some(v) => {
                    let t = TenantId::new(v).map_err(|e| err(".metadata", &e.to_string()))?;
                    claim = claim.with_tenant(t);
                }
                None => out.tenant_fallbacks += 1,
            }
        }
        if let Some(key) = sharing_key(m) {
            if let Some(address) = svc.status.as_ref().and_then(Status::address) {
                out.address_today.insert(claim.id().clone(), address);
            }
            out.sharing_today.insert(claim.id().clone(), key);
        }
        out.claims.push(claim);
    }
    Ok(out)
}

/// The key under which a Service shares an IP today, scoped so that equal keys mean one
/// LB: MetalLB keys are cluster-wide, Cilium keys per namespace unless cross-namespace.
fn sharing_key(m: &Meta) -> Option<String> {
    let a = m.annotations.as_ref()?;
    let value = |k: &str| a.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(v) = METALLB_SHARING.iter().find_map(|k| value(k)) {
        return Some(format!("metallb:{v}"));
    }
    let v = value(CILIUM_SHARING)?;
    if value(CILIUM_CROSS_NAMESPACE).is_some() {
        Some(format!("cilium:{v}"))
    } else {
        Some(format!("cilium:{}:{v}", m.namespace))
    }
}

/// The claims of a Service list (namespace = tenant); see [`services`].
pub fn claims_from_services(src: &str, origin: &str) -> Result<Vec<Claim>, InputError> {
    Ok(services(src, origin, &TenantBy::Namespace)?.claims)
}

/// A Service on a planned LB.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedService {
    /// `namespace/name`.
    pub service: String,
    /// Its tenant.
    pub tenant: String,
    /// Its listeners on the LB, e.g. `443/TCP`.
    pub ports: Vec<String>,
}

/// One LB of the shared plan.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedLb {
    /// The LB's name in the plan.
    pub lb: String,
    /// The Services on it.
    pub services: Vec<PlannedService>,
}

/// A Service no LB of the profile can hold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnplacedService {
    /// `namespace/name`.
    pub service: String,
    /// Why, machine-readable.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

/// Today against a shared packing, over the Services both can serve.
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
    /// Placeable Services that already share an IP today (MetalLB or Cilium annotations).
    pub sharing_today: usize,
    /// LBs today for the placeable Services: one each, except that Services with a sharing
    /// key share an IP where their listeners differ (as MetalLB and Cilium do).
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
    /// Services whose tenant is their namespace because they lack the label or annotation
    /// asked for.
    pub tenant_fallbacks: usize,
    /// Each shared LB and the Services on it.
    pub lbs: Vec<PlannedLb>,
    /// The Services that cannot be placed, with why; left out of both sides.
    pub unplaced: Vec<UnplacedService>,
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
    plan_services(
        &Services {
            claims: claims.to_vec(),
            ..Services::default()
        },
        profile,
    )
}

/// The LBs `claims` use today: one each, except that Services with a sharing key share
/// an IP as MetalLB and Cilium share one: only among Services whose listeners (port and
/// protocol) all differ. Services of a key on the address the cluster reports share it;
/// then, in the order given, each keyed Service without an address joins the first IP of
/// its key where none of its listeners is taken, or takes a new one.
fn lbs_today(claims: &[&Claim], svcs: &Services) -> usize {
    // Per key, its IPs: the address (if reported) and the listeners taken there.
    type Ips<'a> = Vec<(Option<&'a String>, BTreeSet<Listener>)>;
    let mut ips: BTreeMap<&String, Ips<'_>> = BTreeMap::new();
    let mut lbs = 0;
    let mut unaddressed = Vec::new();
    for c in claims {
        let Some(key) = svcs.sharing_today.get(c.id()) else {
            lbs += 1;
            continue;
        };
        let Some(address) = svcs.address_today.get(c.id()) else {
            unaddressed.push((key, c));
            continue;
        };
        let of_key = ips.entry(key).or_default();
        if let Some((_, taken)) = of_key.iter_mut().find(|(a, _)| *a == Some(address)) {
            taken.extend(c.fixed_listeners());
        } else {
            of_key.push((Some(address), c.fixed_listeners().collect()));
            lbs += 1;
        }
    }
    for (key, c) in unaddressed {
        let mine: Vec<Listener> = c.fixed_listeners().collect();
        let of_key = ips.entry(key).or_default();
        if let Some((_, taken)) = of_key
            .iter_mut()
            .find(|(_, taken)| mine.iter().all(|l| !taken.contains(l)))
        {
            taken.extend(mine);
        } else {
            of_key.push((None, mine.into_iter().collect()));
            lbs += 1;
        }
    }
    lbs
}

/// Plans a cluster's Services onto `profile`; see [`plan`].
pub fn plan_services(
    svcs: &Services,
    profile: &LbProfile,
) -> Result<PlanReport, sharedlb_allocator::Error> {
    let claims = &svcs.claims;
    let p = plan_offline(claims, profile)?;
    let unplaced_ids: HashSet<&ClaimId> = p.unplaced.iter().map(|u| &u.claim).collect();
    let placeable: Vec<&Claim> = claims
        .iter()
        .filter(|c| !unplaced_ids.contains(c.id()))
        .collect();
    let bound = sharedlb_allocator::bounds::lower_bound(placeable.iter().copied(), profile).total;
    let sharing_today = placeable
        .iter()
        .filter(|c| svcs.sharing_today.contains_key(c.id()))
        .count();
    let lbs_today = lbs_today(&placeable, svcs);
    let month = profile.price_per_month();
    let today = cents(lbs_today as f64 * month);
    let shared = cents(p.lbs.len() as f64 * month);
    let tenant_of: BTreeMap<&ClaimId, &TenantId> =
        claims.iter().map(|c| (c.id(), c.tenant())).collect();
    let lbs = p
        .lbs
        .iter()
        .map(|(lb, cs)| PlannedLb {
            lb: lb.to_string(),
            services: cs
                .iter()
                .map(|(c, ls)| PlannedService {
                    service: c.to_string(),
                    tenant: tenant_of
                        .get(c)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    ports: ls.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        })
        .collect();
    let unplaced = p
        .unplaced
        .iter()
        .map(|u| UnplacedService {
            service: u.claim.to_string(),
            reason: u.reason.as_str().to_owned(),
            message: u.message.clone(),
        })
        .collect();
    Ok(PlanReport {
        profile: profile.name.to_string(),
        currency: profile.currency.to_string(),
        services: claims.len(),
        placeable: placeable.len(),
        sharing_today,
        lbs_today,
        monthly_cost_today: today,
        lbs_shared: p.lbs.len(),
        monthly_cost_shared: shared,
        // One price on both sides: the LB counts give the exact fraction (the costs are
        // rounded to cents).
        savings_fraction: (lbs_today > 0 && month > 0.0)
            .then(|| 1.0 - p.lbs.len() as f64 / lbs_today as f64),
        lower_bound: bound,
        tenant_fallbacks: svcs.tenant_fallbacks,
        lbs,
        unplaced,
    })
}

/// "1 Service", "6 Services".
fn n_services(n: usize) -> String {
    if n == 1 {
        "1 Service".into()
    } else {
        format!("{n} Services")
    }
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
    if r.tenant_fallbacks > 0 {
        let _ = writeln!(
            out,
            "  {} of them lack the tenant label or annotation: their namespace is their tenant",
            r.tenant_fallbacks
        );
    }
    if !r.unplaced.is_empty() {
        let (n, verb) = match r.unplaced.len() {
            1 => ("1 of them".to_owned(), "is"),
            n => (format!("{n} of them"), "are"),
        };
        let _ = writeln!(
            out,
            "  {n} cannot be placed on any {} LB and {verb} left out of the comparison:",
            r.profile
        );
        for u in &r.unplaced {
            let line = format!(
                "    {}: {} ({})",
                u.service,
                reason_words(&u.reason),
                u.message
            );
            let _ = writeln!(out, "{}", crate::report::wrap(&line, 96));
        }
    }
    let today = if r.sharing_today > 0 {
        "today (see below):"
    } else {
        "today (one LB per Service):"
    };
    let _ = writeln!(
        out,
        "  {today:<27} {:>5} LBs  {:>10.2} {c}/month",
        r.lbs_today, r.monthly_cost_today
    );
    if r.sharing_today > 0 {
        let note = format!(
            "    one LB per Service, except that the {} Services with a sharing key (MetalLB \
             or Cilium annotations) share an IP per key where their ports differ, as those do \
             (by the addresses the cluster reports; without one, in file order)",
            r.sharing_today
        );
        let _ = writeln!(out, "{}", crate::report::wrap(&note, 96));
    }
    let _ = writeln!(
        out,
        "  {:<27} {:>5} LBs  {:>10.2} {c}/month  (lower bound {})",
        "shared:", r.lbs_shared, r.monthly_cost_shared, r.lower_bound
    );
    match r.savings_fraction {
        Some(s) => {
            let _ = writeln!(
                out,
                "  savings: {} over the {} both can serve",
                crate::report::pct(s),
                n_services(r.placeable)
            );
        }
        None if r.placeable == 0 => {
            let _ = writeln!(out, "  savings: n/a (no Service can be placed)");
        }
        None => {
            let fewer = if r.lbs_today > 0 {
                format!(
                    ", {} fewer LBs",
                    crate::report::pct(1.0 - r.lbs_shared as f64 / r.lbs_today as f64)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  savings: n/a in money ({} LBs cost nothing); {} LBs instead of {}{fewer}",
                r.profile, r.lbs_shared, r.lbs_today
            );
        }
    }
    for lb in &r.lbs {
        let items: Vec<String> = lb
            .services
            .iter()
            .map(|s| format!("{} [{}]", s.service, s.ports.join(" ")))
            .collect();
        let _ = writeln!(
            out,
            "{}",
            crate::report::wrap(&format!("  {}: {}", lb.lb, items.join(", ")), 96)
        );
    }
    out
}
