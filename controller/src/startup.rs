//! Rebuilding the allocator from the cluster at start: a restart at any moment loses and
//! double-books nothing.

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams};
use sharedlb_allocator::{Allocator, ClaimRecord, Config, PoolKey, Snapshot, Time};

use crate::config::ControllerConfig;
use crate::core::{self, LB_LABEL};
use crate::crd::SharedLB;

/// Builds an allocator snapshot from recorded claims and LB Services. Whatever the
/// cluster records goes in as it is: the allocator's restore drops (and reports) any
/// placement that breaks a rule, so the rebuild never fails on what it finds.
pub fn snapshot_from(
    config: &Config,
    mode: core::Mode,
    claims: &[SharedLB],
    lb_services: &[Service],
    now: Time,
) -> Snapshot {
    let pooling = config.policy.build().rules().pooling;
    let default_profile = config.profiles[0].name.clone();
    let (lbs, placed) = core::recorded_state(claims, lb_services, mode, &default_profile, |c| {
        PoolKey::of(c, pooling)
    });
    let records: Vec<ClaimRecord> = placed
        .into_iter()
        .enumerate()
        .map(|(seq, (claim, placement))| ClaimRecord {
            claim,
            seq: seq as u64,
            placement: placement.map(|(lb, ls)| (lb, ls.into())),
            pending: None,
        })
        .collect();
    let next_lb = lbs.iter().map(|r| u64::from(r.id.0) + 1).max().unwrap_or(1);
    Snapshot {
        config: config.clone(),
        now,
        next_lb,
        next_seq: records.len() as u64,
        lbs,
        claims: records,
    }
}

/// Lists what the cluster records and rebuilds the allocator.
pub async fn rebuild(
    client: &Client,
    config: &ControllerConfig,
    now: Time,
) -> anyhow::Result<Allocator> {
    let alloc_config = config.allocator_config()?;
    let claims: Api<SharedLB> = Api::all(client.clone());
    let claims = claims.list(&ListParams::default()).await?.items;
    let lb_services = match config.mode {
        core::Mode::Service => {
            let api: Api<Service> = Api::namespaced(client.clone(), &config.namespace);
            api.list(&ListParams::default().labels(LB_LABEL))
                .await?
                .items
        }
        core::Mode::SharedIp => Vec::new(),
    };
    let snap = snapshot_from(&alloc_config, config.mode, &claims, &lb_services, now);
    let restored = Allocator::restore(snap)?;
    for d in &restored.dropped {
        tracing::warn!(claim = ?d.claim, lb = ?d.lb, reason = %d.reason, "recorded placement dropped; placing again");
    }
    let a = restored.allocator;
    tracing::info!(
        claims = claims.len(),
        placed = a.placed_count(),
        dropped = restored.dropped.len(),
        lbs = a.lbs().len(),
        "allocator rebuilt from the cluster"
    );
    Ok(a)
}
