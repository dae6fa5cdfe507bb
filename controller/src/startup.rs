//! Rebuilding the allocator from the cluster at start: a restart at any moment loses and
//! double-books nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams};
use sharedlb_allocator::{
    Allocator, ClaimRecord, Config, LbId, Listener, PolicyKind, PoolKey, Snapshot, Time,
};

use crate::config::ControllerConfig;
use crate::core::{self, LB_LABEL};
use crate::crd::SharedLB;

/// Builds an allocator snapshot from recorded claims and LB Services. Placements that
/// would double-book a listener or overfill an LB are dropped (those claims are placed
/// again on their next reconcile), so the result always restores.
pub fn snapshot_from(
    config: &Config,
    mode: core::Mode,
    claims: &[SharedLB],
    lb_services: &[Service],
    now: Time,
) -> Snapshot {
    let default_profile = config.profiles[0].name.clone();
    let (lbs, placed) = core::recorded_state(claims, lb_services, mode, &default_profile, |c| {
        PoolKey::of(c, config.policy == PolicyKind::Dedicated)
    });
    let mut used: BTreeMap<LbId, BTreeSet<Listener>> = BTreeMap::new();
    let capacity = |lb: LbId| {
        lbs.iter()
            .find(|r| r.id == lb)
            .and_then(|r| config.profile_index(&r.profile))
            .map_or(0, |i| config.profiles[i].max_listeners as usize)
    };
    let mut records = Vec::new();
    for (seq, (claim, placement)) in placed.into_iter().enumerate() {
        let placement = placement.filter(|(lb, ls)| {
            let set = used.entry(*lb).or_default();
            let fits = set.len() + ls.len() <= capacity(*lb) && ls.iter().all(|l| !set.contains(l));
            if fits {
                set.extend(ls.iter().copied());
            }
            fits
        });
        records.push(ClaimRecord {
            claim,
            seq: seq as u64,
            placement,
            pending: None,
        });
    }
    let next_lb = lbs.iter().map(|r| r.id.0 + 1).max().unwrap_or(1);
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
    let placed = snap.claims.iter().filter(|c| c.placement.is_some()).count();
    let a = Allocator::restore(snap)?;
    tracing::info!(
        claims = claims.len(),
        placed,
        lbs = a.lbs().len(),
        "allocator rebuilt from the cluster"
    );
    Ok(a)
}
