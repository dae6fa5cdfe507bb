//! A plain, serialisable view of the allocator's state: what the controller's
//! `/api/v1/state` serves and what the dashboard draws.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocator::Allocator;
use crate::lb::{LbState, PoolKey};
use crate::model::{LbId, Listener};

/// One LB in the view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LbView {
    /// Id.
    pub id: LbId,
    /// Profile name.
    pub profile: String,
    /// Who may share it.
    pub pool: PoolKey,
    /// Lifecycle state.
    pub state: LbState,
    /// Listener capacity.
    pub capacity: u32,
    /// Price per hour (the profile's `price_per_hour`).
    pub hourly_price: f64,
    /// Address, when the shell knows it.
    #[serde(default)]
    pub address: Option<String>,
    /// Listeners in use, each with its claim and the claim's tenant.
    pub listeners: Vec<ListenerView>,
}

/// One listener in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerView {
    /// The listener.
    pub listener: Listener,
    /// The claim holding it.
    pub claim: String,
    /// The claim's tenant.
    pub tenant: String,
}

/// One waiting claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    /// Claim id.
    pub claim: String,
    /// Tenant.
    pub tenant: String,
    /// Why it waits.
    pub reason: String,
    /// What it asks for, e.g. `443/TCP`, `*/UDP`.
    pub ports: Vec<String>,
}

/// One tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Weight.
    pub weight: u32,
    /// Listeners held.
    pub listeners: u32,
    /// Claims placed.
    pub claims: u32,
    /// Quota on listeners, if any.
    pub max_listeners: Option<u32>,
    /// Quota on claims, if any.
    pub max_claims: Option<u32>,
    /// Listeners its waiting claims ask for.
    #[serde(default)]
    pub waiting_listeners: u32,
    /// Its fair share of the listeners in use (weighted max-min, see `fairness`).
    #[serde(default)]
    pub fair_share: f64,
}

/// The whole state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateView {
    /// Logical time of the view, in ms.
    pub now_ms: u64,
    /// LBs in id order.
    pub lbs: Vec<LbView>,
    /// Waiting claims in arrival order.
    pub pending: Vec<PendingView>,
    /// Tenants by name.
    pub tenants: Vec<TenantView>,
    /// Placed claims.
    pub claims_placed: usize,
    /// Cost per hour of the billed LBs.
    pub cost_per_hour: f64,
    /// What one LB per placed claim would cost per hour (see `cost`).
    pub baseline_per_hour: f64,
    /// The currency of both.
    pub currency: crate::profile::Currency,
}

impl Allocator {
    /// The state as plain data; `address` supplies each LB's address where known.
    pub fn state_view(&self, address: impl Fn(LbId) -> Option<String>) -> StateView {
        let claims = self.claims();
        let tenant_of: BTreeMap<&str, &str> = claims
            .iter()
            .map(|(c, _)| (c.id().as_str(), c.tenant().as_str()))
            .collect();
        let lbs = self
            .lbs()
            .into_iter()
            .map(|l| {
                let p = self
                    .config
                    .profile_index(&l.profile)
                    .map(|i| &self.config.profiles[i]);
                LbView {
                    id: l.id,
                    profile: l.profile.to_string(),
                    pool: l.pool.clone(),
                    state: l.state,
                    capacity: l.capacity,
                    hourly_price: p.map_or(0.0, crate::profile::LbProfile::price_per_hour),
                    address: address(l.id),
                    listeners: l
                        .listeners
                        .iter()
                        .map(|(x, c)| ListenerView {
                            listener: *x,
                            claim: c.to_string(),
                            tenant: tenant_of
                                .get(c.as_str())
                                .copied()
                                .unwrap_or_default()
                                .to_owned(),
                        })
                        .collect(),
                }
            })
            .collect();
        let pending = claims
            .iter()
            .filter_map(|(c, p)| {
                p.as_ref().err().map(|r| PendingView {
                    claim: c.id().to_string(),
                    tenant: c.tenant().to_string(),
                    reason: r.as_str().to_owned(),
                    ports: c.ports().iter().map(ToString::to_string).collect(),
                })
            })
            .collect();
        let fair = self.fair_shares();
        let tenants = self
            .tenants()
            .filter(|(_, u)| u.claims + u.waiting_claims > 0)
            .map(|(t, u)| {
                let cfg = self.config.tenant(t);
                TenantView {
                    name: t.to_string(),
                    weight: cfg.weight,
                    listeners: u.listeners,
                    claims: u.claims,
                    max_listeners: cfg.quota.max_listeners,
                    max_claims: cfg.quota.max_claims,
                    waiting_listeners: u.waiting_listeners,
                    fair_share: fair.get(t).copied().unwrap_or(0.0),
                }
            })
            .collect();
        StateView {
            now_ms: self.now.0,
            lbs,
            pending,
            tenants,
            claims_placed: self.placed_count(),
            cost_per_hour: self.cost_per_hour(),
            baseline_per_hour: self.baseline_per_hour(),
            currency: self.config.currency(),
        }
    }
}
