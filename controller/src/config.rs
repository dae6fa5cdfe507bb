//! Controller configuration: a TOML file (mounted from a ConfigMap), flags override it,
//! validated at start with errors that name the field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sharedlb_allocator::{Budget, Config, PolicyKind, TenantConfig, TenantId, builtin_profile};

use crate::core::{Mode, SharedIpImpl};

/// Everything the controller is told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Data-plane mode.
    #[serde(default = "service_mode")]
    pub mode: Mode,
    /// Annotations for shared-IP mode.
    #[serde(default = "metallb")]
    pub shared_ip_impl: SharedIpImpl,
    /// Namespace of the LB Services and the leader Lease.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Built-in LB profiles new LBs may use; the first is the default.
    #[serde(default = "default_profiles")]
    pub profiles: Vec<String>,
    /// Packing policy.
    #[serde(default = "best_fit")]
    pub policy: PolicyKind,
    /// Seconds an empty LB is kept before deletion.
    #[serde(default = "ten_minutes")]
    pub idle_timeout_seconds: u64,
    /// Global budget.
    #[serde(default)]
    pub budget: Budget,
    /// Tenants (namespaces) with weights and quotas.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// HTTP listen address (health, metrics, state API, dashboard).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of static files (the built dashboard) served at `/`.
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    /// Leader election on (a Lease in `namespace`).
    #[serde(default = "yes")]
    pub leader_election: bool,
    /// Consolidation of claims with `allowMigration`: how often and how many moves at most;
    /// off when absent.
    #[serde(default = "hourly_consolidation")]
    pub consolidation: Option<ConsolidationConfig>,
}

/// When and how much to consolidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsolidationConfig {
    /// Seconds between runs (60 to 604800).
    pub every_seconds: u64,
    /// Most claims moved per run (1 to 1000).
    pub max_moves: u32,
}

#[allow(clippy::unnecessary_wraps)] // serde's default for an optional field
fn hourly_consolidation() -> Option<ConsolidationConfig> {
    Some(ConsolidationConfig {
        every_seconds: 3600,
        max_moves: 10,
    })
}

fn service_mode() -> Mode {
    Mode::Service
}
fn metallb() -> SharedIpImpl {
    SharedIpImpl::Metallb
}
fn default_namespace() -> String {
    "sharedlb-system".into()
}
fn default_profiles() -> Vec<String> {
    vec!["aws-nlb".into()]
}
fn best_fit() -> PolicyKind {
    "best-fit"
        .parse()
        .unwrap_or_else(|e| unreachable!("a registered policy: {e}"))
}
fn ten_minutes() -> u64 {
    600
}
fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn yes() -> bool {
    true
}

impl Default for ControllerConfig {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|e| unreachable!("defaults parse: {e}"))
    }
}

impl ControllerConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(src: &str, origin: &str) -> anyhow::Result<ControllerConfig> {
        let c: ControllerConfig = toml::from_str(src).map_err(|e| {
            let line = e
                .span()
                .map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1);
            anyhow::anyhow!("{origin}:{}: {}", line.unwrap_or(0), e.message())
        })?;
        c.allocator_config()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(c)
    }

    /// The allocator configuration, validated (with the controller's own settings).
    pub fn allocator_config(&self) -> anyhow::Result<Config> {
        if let Some(c) = &self.consolidation {
            if !(60..=604_800).contains(&c.every_seconds) {
                anyhow::bail!("consolidation.every_seconds must be from 60 to 604800");
            }
            if !(1..=1000).contains(&c.max_moves) {
                anyhow::bail!("consolidation.max_moves must be from 1 to 1000");
            }
        }
        if self.namespace.trim().is_empty() {
            anyhow::bail!("namespace must not be empty");
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            anyhow::bail!(
                "listen {:?} is not an address such as 0.0.0.0:8080",
                self.listen
            );
        }
        let profiles = self
            .profiles
            .iter()
            .map(|p| {
                builtin_profile(p).ok_or_else(|| anyhow::anyhow!("profiles: unknown profile {p:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tenants = self
            .tenants
            .iter()
            .map(|(k, v)| Ok((TenantId::new(k.as_str())?, v.clone())))
            .collect::<Result<BTreeMap<_, _>, sharedlb_allocator::Error>>()?;
        let config = Config {
            profiles,
            policy: self.policy,
            tenants,
            budget: self.budget.clone(),
            idle_timeout_ms: self.idle_timeout_seconds.saturating_mul(1000),
            max_provisioning: None,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_field() {
        let c = ControllerConfig::default();
        assert_eq!(c.mode, Mode::Service);
        c.allocator_config().unwrap();
        let e = ControllerConfig::from_toml("policy = \"fastest\"\n", "cfg.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfg.toml:1") && e.contains("fastest"), "{e}");
        let e = ControllerConfig::from_toml("profiles = [\"oracle\"]\n", "cfg.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown profile"), "{e}");
        let e = ControllerConfig::from_toml("colour = 1\n", "cfg.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let c = ControllerConfig::from_toml(
            "mode = \"shared-ip\"\nshared_ip_impl = \"cilium\"\n[tenants.shop]\nweight = 2\nquota = { max_listeners = 10 }\n",
            "cfg.toml",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::SharedIp);
        assert_eq!(c.allocator_config().unwrap().tenants.len(), 1);
    }
}
