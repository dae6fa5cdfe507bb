//! The kube glue: reconcile a `SharedLB` by asking the allocator and applying what the pure
//! core computes, with a finalizer for cleanup, server-side apply for objects and status,
//! and events through a `Recorder`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use sharedlb_allocator::{Allocator, ClaimId, Decision, Event, LbId, Reports, Shell, Time};
use tokio::sync::Mutex;

use crate::config::ControllerConfig;
use crate::core::{self, Mode, Outcome};
use crate::crd::SharedLB;

/// Errors of one reconcile; all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server said no.
    #[error("kube API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The allocator refused an event (a bug in the shell).
    #[error("allocator: {0}")]
    Allocator(#[from] sharedlb_allocator::Error),
    /// A claim without a namespace.
    #[error("SharedLB has no namespace")]
    NoNamespace,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles done.
    pub reconciles: AtomicU64,
    /// Reconciles that failed.
    pub errors: AtomicU64,
    /// Total reconcile time in microseconds.
    pub reconcile_micros: AtomicU64,
}

/// Shared state of the controller.
pub struct Ctx {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration.
    pub config: ControllerConfig,
    /// The allocator: one writer at a time.
    pub alloc: Mutex<Allocator>,
    /// LB addresses seen, for status and the state API.
    pub addresses: std::sync::Mutex<BTreeMap<LbId, String>>,
    /// Claims on each LB, for mapping LB Service changes to claims.
    pub claims_on: std::sync::Mutex<BTreeMap<LbId, Vec<ObjectRef<SharedLB>>>>,
    /// Asks the controller to reconcile other claims (placed by a retry, moved, ...).
    pub requeue: UnboundedSender<ObjectRef<SharedLB>>,
    /// Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Ready to serve (state rebuilt, leader).
    pub ready: AtomicBool,
}

/// Logical time for the allocator: milliseconds of wall-clock time. The controller is a
/// shell and may read the clock; the allocator only sees the number.
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 wall-clock time for condition timestamps.
#[allow(clippy::disallowed_methods)]
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn claim_ref(id: &ClaimId) -> Option<ObjectRef<SharedLB>> {
    let (ns, name) = id.as_str().split_once('/')?;
    Some(ObjectRef::new(name).within(ns))
}

/// Reconciles one claim.
pub async fn reconcile(slb: Arc<SharedLB>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    #[allow(clippy::disallowed_methods)] // measuring reconcile duration for /metrics
    let start = std::time::Instant::now();
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<SharedLB> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, core::FINALIZER, slb, |event| async {
        match event {
            Finalizer::Apply(slb) => apply(&slb, &ctx).await,
            Finalizer::Cleanup(slb) => cleanup(&slb, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
    ctx.metrics
        .reconcile_micros
        .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    if result.is_err() {
        ctx.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    result
}

/// On error: retry with a growing delay (the controller's own backoff adds jitter).
pub fn error_policy(_slb: Arc<SharedLB>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("reconcile failed: {err}");
    Action::requeue(Duration::from_secs(5))
}

/// What the allocator's decisions ask of the cluster, gathered by the controller's shell
/// while the allocator decides; carried out once it has decided.
#[derive(Default)]
struct Effects {
    mode: Option<Mode>,
    /// LBs whose Service must follow their listeners.
    touched: BTreeSet<LbId>,
    /// LBs to delete.
    deleted: Vec<LbId>,
    /// Claims to reconcile again (placed, moved, released, waiting).
    claims: BTreeSet<ClaimId>,
    /// The last pending message per claim.
    messages: BTreeMap<ClaimId, String>,
}

impl Shell for Effects {
    fn carry_out(&mut self, _now: Time, d: Decision, reports: &mut Reports<'_>) {
        tracing::info!(?d, "decision");
        match d {
            Decision::CreateLb { lb, profile } => {
                self.touched.insert(lb);
                tracing::info!(%lb, %profile, "creating shared LB");
                if self.mode == Some(Mode::SharedIp) {
                    // A shared IP exists as soon as one claim's Service asks for it.
                    reports.report(Event::LbReady(lb));
                }
            }
            Decision::Assign { claim, lb, .. } | Decision::Release { claim, lb } => {
                self.touched.insert(lb);
                self.claims.insert(claim);
            }
            Decision::Migrate {
                claim, from, to, ..
            } => {
                self.touched.insert(from);
                self.touched.insert(to);
                self.claims.insert(claim);
            }
            Decision::Pending { claim, message, .. } => {
                self.messages.insert(claim.clone(), message);
                self.claims.insert(claim);
            }
            Decision::DeleteLb { lb } => self.deleted.push(lb),
        }
    }
}

/// Feeds one event to the allocator and carries out what it decided.
async fn drive(
    ctx: &Ctx,
    alloc: &mut Allocator,
    event: Event,
    current: Option<&ClaimId>,
) -> Result<BTreeMap<ClaimId, String>, Error> {
    let now = Time(now_ms().max(alloc.now().0));
    let mut effects = Effects {
        mode: Some(ctx.config.mode),
        ..Effects::default()
    };
    alloc.drive(now, event, &mut effects)?;
    let mut messages = BTreeMap::new();
    loop {
        messages.append(&mut effects.messages);
        let deleted = std::mem::take(&mut effects.deleted);
        carry_out(ctx, alloc, &effects, current).await?;
        effects.touched.clear();
        effects.claims.clear();
        if deleted.is_empty() {
            break;
        }
        for lb in deleted {
            delete_lb_service(ctx, lb).await?;
            tracing::info!(%lb, "deleted idle shared LB");
            let now = Time(now_ms().max(alloc.now().0));
            alloc.drive(now, Event::LbDeleted(lb), &mut effects)?;
        }
    }
    Ok(messages)
}

async fn apply(slb: &SharedLB, ctx: &Ctx) -> Result<Action, Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let mode = ctx.config.mode;
    let id = core::claim_key(slb).ok_or(Error::NoNamespace)?;
    let mut alloc = ctx.alloc.lock().await;
    let claim = match core::claim_from_spec(&ns, &slb.name_any(), &slb.spec, mode) {
        Ok(c) => c,
        Err(msg) => {
            // An invalid spec frees whatever the claim held and says why.
            if alloc.claim(&id).is_some() {
                drive(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), Some(&id)).await?;
            }
            drop(alloc);
            publish(ctx, slb, EventType::Warning, "InvalidSpec", &msg).await;
            patch_status(ctx, slb, &Outcome::Invalid(msg)).await?;
            return Ok(Action::await_change());
        }
    };
    let event = match alloc.claim(&id) {
        None => Event::ClaimAdded(claim),
        Some(c) if *c != claim => Event::ClaimUpdated(claim),
        Some(_) => Event::Tick,
    };
    let mut messages = drive(ctx, &mut alloc, event, Some(&id)).await?;
    let message = messages.remove(&id);
    let Some((lb, listeners)) = alloc.placement(&id).map(|(lb, ls)| (lb, ls.to_vec())) else {
        let reason = alloc
            .pending_reason(&id)
            .unwrap_or(sharedlb_allocator::PendingReason::WaitingForCapacity);
        drop(alloc);
        // Keep the allocator's message while the reason stays the same.
        let previous = slb
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "Pending" && c.reason == reason.as_str())
            })
            .map(|c| c.message.clone());
        let message = message
            .or(previous)
            .unwrap_or_else(|| format!("waiting: {reason}"));
        patch_status(ctx, slb, &Outcome::Pending(reason, message)).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    };
    let address = ensure_claim_objects(ctx, slb, lb, &listeners, &alloc).await?;
    if address.is_some()
        && alloc
            .lb(lb)
            .is_some_and(|l| l.state == sharedlb_allocator::LbState::Provisioning)
    {
        drive(ctx, &mut alloc, Event::LbReady(lb), Some(&id)).await?;
    }
    drop(alloc);
    let placed = Outcome::Placed {
        lb,
        listeners: &listeners,
        address,
    };
    patch_status(ctx, slb, &placed).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(slb: &SharedLB, ctx: &Ctx) -> Result<Action, Error> {
    let Some(id) = core::claim_key(slb) else {
        return Ok(Action::await_change());
    };
    let mut alloc = ctx.alloc.lock().await;
    if alloc.claim(&id).is_some() {
        drive(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), Some(&id)).await?;
    }
    drop(alloc);
    if ctx.config.mode == Mode::Service {
        delete_mirrored(ctx, slb, None).await?;
    }
    publish(ctx, slb, EventType::Normal, "Released", "listeners freed").await;
    Ok(Action::await_change())
}

async fn delete_lb_service(ctx: &Ctx, lb: LbId) -> Result<(), Error> {
    if ctx.config.mode != Mode::Service {
        return Ok(());
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    match services
        .delete(&core::lb_service_name(lb), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Carries out gathered effects: LB Services follow their listeners, other claims that
/// moved are reconciled again.
async fn carry_out(
    ctx: &Ctx,
    alloc: &Allocator,
    effects: &Effects,
    current: Option<&ClaimId>,
) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    for lb in &effects.touched {
        if effects.deleted.contains(lb) {
            continue;
        }
        if let (Mode::Service, Some(info)) = (ctx.config.mode, alloc.lb(*lb))
            && !info.listeners.is_empty()
        {
            let svc = core::desired_lb_service(&info, &ctx.config.namespace);
            services
                .patch(
                    &core::lb_service_name(*lb),
                    &PatchParams::apply(core::MANAGER).force(),
                    &Patch::Apply(&svc),
                )
                .await?;
        }
    }
    // Index claims per LB for the LB Service watch, and requeue the others touched.
    {
        let mut on = ctx
            .claims_on
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        on.clear();
        for (c, p) in alloc.claims() {
            if let (Ok((lb, _)), Some(r)) = (p, claim_ref(c.id())) {
                on.entry(lb).or_default().push(r);
            }
        }
    }
    for c in &effects.claims {
        if Some(c) != current
            && let Some(r) = claim_ref(c)
        {
            let _ = ctx.requeue.unbounded_send(r);
        }
    }
    Ok(())
}

/// Ensures the claim's own objects exist and returns the LB's address when it has one.
async fn ensure_claim_objects(
    ctx: &Ctx,
    slb: &SharedLB,
    lb: LbId,
    listeners: &[sharedlb_allocator::Listener],
    alloc: &Allocator,
) -> Result<Option<String>, Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let claim_services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams::apply(core::MANAGER).force();
    let address = match ctx.config.mode {
        Mode::Service => {
            let backing = core::desired_backing_service(slb, listeners);
            claim_services
                .patch(
                    &core::backing_service_name(slb),
                    &pp,
                    &Patch::Apply(&backing),
                )
                .await?;
            let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
            let source = slices
                .list(&ListParams::default().labels(&format!(
                    "kubernetes.io/service-name={}",
                    core::backing_service_name(slb)
                )))
                .await?;
            let mirrors: Api<EndpointSlice> =
                Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
            for s in core::mirrored_slices(slb, lb, listeners, &source.items, &ctx.config.namespace)
            {
                mirrors.patch(&s.name_any(), &pp, &Patch::Apply(&s)).await?;
            }
            delete_mirrored(ctx, slb, Some(lb)).await?;
            let lb_services: Api<Service> =
                Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
            lb_services
                .get_opt(&core::lb_service_name(lb))
                .await?
                .as_ref()
                .and_then(core::service_address)
        }
        Mode::SharedIp => {
            let pool = alloc
                .lb(lb)
                .map_or(sharedlb_allocator::PoolKey::Open, |l| l.pool);
            let svc = core::desired_shared_ip_service(
                slb,
                lb,
                &pool,
                listeners,
                ctx.config.shared_ip_impl,
            );
            let got = claim_services
                .patch(&core::backing_service_name(slb), &pp, &Patch::Apply(&svc))
                .await?;
            core::service_address(&got)
        }
    };
    if let Some(a) = &address {
        ctx.addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(lb, a.clone());
    }
    Ok(address)
}

/// Deletes the claim's mirrored EndpointSlices, except those for `keep`.
async fn delete_mirrored(ctx: &Ctx, slb: &SharedLB, keep: Option<LbId>) -> Result<(), Error> {
    let mirrors: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let mut selector = format!("{}={}", core::CLAIM_LABEL, core::claim_label(slb));
    if let Some(lb) = keep {
        use std::fmt::Write as _;
        let _ = write!(selector, ",{}!={}", core::LB_LABEL, lb.0);
    }
    for s in mirrors
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        match mirrors
            .delete(&s.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn patch_status(ctx: &Ctx, slb: &SharedLB, outcome: &Outcome<'_>) -> Result<(), Error> {
    let status = core::status(slb, outcome, &now_rfc3339(), ctx.config.mode);
    write_status(ctx, slb, status).await
}

async fn write_status(
    ctx: &Ctx,
    slb: &SharedLB,
    status: crate::crd::SharedLBStatus,
) -> Result<(), Error> {
    if slb.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let was_ready = slb.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let reason = status
        .conditions
        .first()
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    let message = status
        .conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<SharedLB> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "sharedlb.io/v1alpha1",
        "kind": "SharedLB",
        "status": status,
    });
    api.patch_status(
        &slb.name_any(),
        &PatchParams::apply(core::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    if ready != was_ready || !ready {
        let kind = if ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, slb, kind, &reason, &message).await;
    }
    Ok(())
}

async fn publish(ctx: &Ctx, slb: &SharedLB, type_: EventType, reason: &str, note: &str) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Allocate".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &slb.object_ref(&())).await {
        tracing::debug!("event not recorded: {e}");
    }
}
