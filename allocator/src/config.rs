//! Allocator configuration: profiles, policy, tenants and their quotas, the global budget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{ProfileName, TenantId};
use crate::policy::PolicyKind;
use crate::profile::{Currency, LbProfile, builtin_profile};

/// Most profiles one configuration may list.
pub const MAX_PROFILES: usize = 64;

/// Per-tenant limits; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most listeners the tenant may hold at once.
    #[serde(default)]
    pub max_listeners: Option<u32>,
    /// Most claims the tenant may have placed at once.
    #[serde(default)]
    pub max_claims: Option<u32>,
    /// Most dedicated load balancers the tenant may hold.
    #[serde(default)]
    pub max_dedicated_lbs: Option<u32>,
}

/// A tenant's weight for fair sharing and its quota.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Weight in weighted max-min fair admission (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// The tenant's limits.
    #[serde(default)]
    pub quota: Quota,
}

fn one() -> u32 {
    1
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            weight: 1,
            quota: Quota::default(),
        }
    }
}

/// The global budget for load balancers; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most load balancers alive at once (provisioning, ready or draining).
    #[serde(default)]
    pub max_lbs: Option<u32>,
    /// Most cost per hour of all live load balancers.
    #[serde(default)]
    pub max_cost_per_hour: Option<f64>,
}

/// Everything the allocator needs to decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Profiles new LBs may be opened with; the first is the default.
    pub profiles: Vec<LbProfile>,
    /// The packing policy.
    pub policy: PolicyKind,
    /// Tenants with non-default weight or quota; others get [`TenantConfig::default`].
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantConfig>,
    /// The global budget.
    #[serde(default)]
    pub budget: Budget,
    /// How long an empty LB is kept before it is deleted, in ms.
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// Most LBs provisioning at once (cloud API rate limits); `None` = unlimited.
    #[serde(default)]
    pub max_provisioning: Option<u32>,
}

impl Config {
    /// A configuration with one built-in profile and a policy, nothing else set.
    pub fn with_builtin(profile: &str, policy: PolicyKind) -> Result<Config, Error> {
        let p = builtin_profile(profile)
            .ok_or_else(|| Error::InvalidConfig(format!("unknown profile {profile:?}")))?;
        Ok(Config {
            profiles: vec![p],
            policy,
            tenants: BTreeMap::new(),
            budget: Budget::default(),
            idle_timeout_ms: 0,
            max_provisioning: None,
        })
    }

    /// Checks the configuration for values that cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        if self.profiles.is_empty() {
            return Err(Error::InvalidConfig(
                "at least one profile is needed".into(),
            ));
        }
        if self.profiles.len() > MAX_PROFILES {
            return Err(Error::InvalidConfig(format!(
                "{} profiles listed, at most {MAX_PROFILES} are allowed",
                self.profiles.len()
            )));
        }
        for (i, p) in self.profiles.iter().enumerate() {
            p.validate()?;
            if p.currency != self.profiles[0].currency {
                return Err(Error::InvalidConfig(format!(
                    "profile {} is priced in {} and profile {} in {}: prices in different \
                     currencies cannot be compared; convert them to one currency first",
                    self.profiles[0].name, self.profiles[0].currency, p.name, p.currency
                )));
            }
            if self.profiles[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::InvalidConfig(format!(
                    "profile {} appears twice",
                    p.name
                )));
            }
        }
        for (t, c) in &self.tenants {
            if !(1..=1_000_000).contains(&c.weight) {
                return Err(Error::InvalidConfig(format!(
                    "tenant {t}: weight must be from 1 to 1000000, not {}",
                    c.weight
                )));
            }
        }
        if let Some(c) = self.budget.max_cost_per_hour
            && (!c.is_finite() || c < 0.0)
        {
            return Err(Error::InvalidConfig(
                "budget.max_cost_per_hour must be a finite number >= 0".into(),
            ));
        }
        if self.max_provisioning == Some(0) {
            return Err(Error::InvalidConfig("max_provisioning must be >= 1".into()));
        }
        Ok(())
    }

    /// The currency every price and budget is in (that of the profiles).
    pub fn currency(&self) -> Currency {
        self.profiles
            .first()
            .map_or_else(Currency::default, |p| p.currency)
    }

    /// The tenant's settings (defaults when not configured).
    pub fn tenant(&self, t: &TenantId) -> TenantConfig {
        self.tenants.get(t).cloned().unwrap_or_default()
    }

    /// Index of a profile by name.
    pub fn profile_index(&self, name: &ProfileName) -> Option<usize> {
        self.profiles.iter().position(|p| &p.name == name)
    }
}
