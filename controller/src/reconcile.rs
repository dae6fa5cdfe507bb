//! The kube glue, level-triggered: every reconcile recomputes what the cluster should hold
//! from the allocator's current state and applies it, so a failed write is retried and an
//! out-of-band change is undone.
//!
//! Each reconcile has three phases, and the allocator's lock is never held across an API
//! call (it is a `std::sync::Mutex`: holding its guard across an `.await` does not compile):
//! 1. look: read what the claim's Service name holds (ownership);
//! 2. decide, under the lock: feed the allocator (the shared driver, `Allocator::drive`)
//!    and compute the desired objects from its state;
//! 3. write, without the lock: apply or delete objects, write the status; outcomes the
//!    allocator must know (an LB deleted, an LB with an address) are reported back under
//!    the lock.
//!
//! Every write passes the [`Fence`]: a replica that cannot prove it still holds the lease
//! writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use sharedlb_allocator::{
    Allocator, ClaimId, Decision, Event, LbId, LbState, Listener, PendingReason, PoolKey, Reports,
    Shell, Time,
};

use crate::config::ControllerConfig;
use crate::core::{self, Mode, Outcome, Owner};
use crate::crd::SharedLB;
use crate::fence::Fence;

/// Errors of one reconcile; all are retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server said no.
    #[error("kube API: {0}")]
    Kube(#[from] kube::Error),
    /// The allocator refused an event (a bug in the shell).
    #[error("allocator: {0}")]
    Allocator(#[from] sharedlb_allocator::Error),
    /// This replica may not write: it cannot prove it holds the lease.
    #[error("not writing: this replica does not hold the leader lease")]
    Fenced,
    /// A claim without a namespace.
    #[error("SharedLB has no namespace")]
    NoNamespace,
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(e)) if e.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Allocator(_) => "allocator",
            Error::Fenced => "fenced",
            Error::NoNamespace => "invalid",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles done.
    pub reconciles: AtomicU64,
    /// Total reconcile time in microseconds.
    pub reconcile_micros: AtomicU64,
    /// Failed reconciles by kind of error.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Failed passes of the background tasks, by task.
    pub background_failures: Mutex<BTreeMap<Background, u64>>,
}

/// A task the controller runs beside the reconciles, on its own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Background {
    /// The allocator's clock: idle deletion, retries, consolidation ([`tick`]).
    Tick,
    /// Claims gone unseen ([`resync_claims`]).
    ClaimResync,
    /// LB Services' drift ([`resync_lbs`]).
    LbResync,
}

impl Background {
    /// Every task, in `/metrics` order.
    pub const ALL: [Background; 3] = [Self::Tick, Self::ClaimResync, Self::LbResync];

    /// The task's name in `/metrics` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tick => "tick",
            Self::ClaimResync => "claim_resync",
            Self::LbResync => "lb_resync",
        }
    }
}

/// Counts a background pass's failure, so `/metrics` shows a task that keeps failing. A
/// pass that did not write for want of the lease did not fail: it did as it must.
fn counted(ctx: &Ctx, task: Background, result: Result<(), Error>) -> Result<(), Error> {
    if result.as_ref().is_err_and(|e| !matches!(e, Error::Fenced)) {
        *guard(&ctx.metrics.background_failures)
            .entry(task)
            .or_default() += 1;
    }
    result
}

/// What this replica is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Starting: rebuilding state or checking the API.
    Starting = 0,
    /// Leading: allocating and writing.
    Leader = 1,
    /// Waiting for the lease.
    Follower = 2,
    /// The API server lacks what the mode needs: only deletions are served.
    Degraded = 3,
}

impl Role {
    fn from_u8(n: u8) -> Role {
        match n {
            1 => Role::Leader,
            2 => Role::Follower,
            3 => Role::Degraded,
            _ => Role::Starting,
        }
    }
}

/// Shared state of the controller.
pub struct Ctx {
    /// Kubernetes client.
    pub client: Client,
    /// Configuration.
    pub config: ControllerConfig,
    /// The allocator. A `std` mutex on purpose: its guard cannot be held across an await.
    pub alloc: Mutex<Allocator>,
    /// LB addresses seen, for status and the state API.
    pub addresses: Mutex<BTreeMap<LbId, String>>,
    /// The last pending message per claim, from the allocator's decisions.
    pub messages: Mutex<BTreeMap<ClaimId, String>>,
    /// The object (its label value: the uid) each claim in the allocator was last
    /// reconciled from, so the claim resync never takes a recreated claim for a gone one.
    pub objects: Mutex<BTreeMap<ClaimId, String>>,
    /// Backing Service (namespace, name) → claim name, to map EndpointSlice changes.
    pub backing: Mutex<HashMap<(String, String), String>>,
    /// Failures per claim in a row, for back-off.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Asks the controller to reconcile other claims (placed by a retry, moved, ...).
    pub requeue: UnboundedSender<ObjectRef<SharedLB>>,
    /// Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Whether this replica may write.
    pub fence: Arc<Fence>,
    /// What this replica is doing.
    pub role: AtomicU8,
    /// Why the controller cannot serve its mode, when it cannot.
    pub degraded: Mutex<Option<String>>,
    /// Who leads, as far as a follower knows.
    pub leader: Mutex<Option<String>>,
    /// Wakes the clock task: the allocator was fed an event, so its next wake-up may be
    /// earlier than the one the clock sleeps towards (e.g. an LB just emptied).
    pub clock: tokio::sync::Notify,
}

impl Ctx {
    /// A fresh context with an empty allocator.
    pub fn new(
        client: Client,
        config: ControllerConfig,
        requeue: UnboundedSender<ObjectRef<SharedLB>>,
        recorder: Recorder,
        fence: Arc<Fence>,
    ) -> Result<Ctx, sharedlb_allocator::Error> {
        let alloc = Allocator::new(
            config
                .allocator_config()
                .map_err(|e| sharedlb_allocator::Error::InvalidConfig(e.to_string()))?,
        )?;
        Ok(Ctx {
            client,
            config,
            alloc: Mutex::new(alloc),
            addresses: Mutex::default(),
            messages: Mutex::default(),
            objects: Mutex::default(),
            backing: Mutex::default(),
            failures: Mutex::default(),
            requeue,
            recorder,
            metrics: Metrics::default(),
            fence,
            role: AtomicU8::new(Role::Starting as u8),
            degraded: Mutex::default(),
            leader: Mutex::default(),
            clock: tokio::sync::Notify::new(),
        })
    }

    /// Replaces the allocator (after a rebuild from the cluster).
    pub fn set_allocator(&self, a: Allocator) {
        *self.lock() = a;
    }

    /// The claims on an LB, for mapping LB Service changes to claims.
    pub fn claims_on(&self, lb: LbId) -> Vec<ObjectRef<SharedLB>> {
        self.lock()
            .claims_on(lb)
            .iter()
            .filter_map(claim_ref)
            .collect()
    }

    /// The claim whose backing Service this is.
    pub fn claim_of_backing(&self, namespace: &str, service: &str) -> Option<ObjectRef<SharedLB>> {
        guard(&self.backing)
            .get(&(namespace.to_owned(), service.to_owned()))
            .map(|name| ObjectRef::new(name).within(namespace))
    }

    /// Why the mode cannot be served, if it cannot.
    pub fn degraded_reason(&self) -> Option<String> {
        guard(&self.degraded).clone()
    }

    /// What this replica is doing.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// Sets the role.
    pub fn set_role(&self, r: Role) {
        self.role.store(r as u8, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.alloc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_allowed(&self) -> Result<(), Error> {
        if self.fence.holds() {
            Ok(())
        } else {
            Err(Error::Fenced)
        }
    }

    fn services(&self, ns: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Locks a std mutex, ignoring poisoning (the data are plain maps).
fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// What the allocator's decisions ask of the cluster, gathered while it decides and carried
/// out once the lock is released.
#[derive(Debug, Default)]
pub struct Effects {
    /// LBs whose Service must follow their listeners.
    touched: BTreeSet<LbId>,
    /// LBs to delete.
    deleted: Vec<LbId>,
    /// Claims to reconcile again (placed, moved, released, waiting).
    claims: BTreeSet<ClaimId>,
    /// Pending messages per claim.
    messages: BTreeMap<ClaimId, String>,
}

impl Shell for Effects {
    fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
        tracing::debug!(?d, "decision");
        match d {
            Decision::CreateLb { lb, profile } => {
                // Ready when it has an address, in either mode: in shared-IP mode the
                // first of its claims' Services to get one says so (`apply`).
                self.touched.insert(lb);
                tracing::info!(%lb, %profile, "opening shared LB");
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
            Decision::DeleteLb { lb } => {
                tracing::info!(%lb, "deleting idle shared LB");
                self.deleted.push(lb);
            }
        }
    }
}

/// Feeds one event to the allocator (under the caller's lock), gathering effects.
fn decide(ctx: &Ctx, alloc: &mut Allocator, event: Event, fx: &mut Effects) -> Result<(), Error> {
    let now = Time(now_ms().max(alloc.now().0));
    alloc.drive(now, event, fx)?;
    guard(&ctx.messages).extend(std::mem::take(&mut fx.messages));
    // A stored permit if the clock is not waiting yet: no wake-up is lost.
    ctx.clock.notify_one();
    Ok(())
}

/// The LB Services the effects touch, as they should be now (service mode).
fn desired_lb_services(ctx: &Ctx, alloc: &Allocator, fx: &Effects) -> Vec<(LbId, Option<Service>)> {
    if ctx.config.mode != Mode::Service {
        return Vec::new();
    }
    fx.touched
        .iter()
        .filter(|lb| !fx.deleted.contains(lb))
        .filter_map(|&lb| {
            let info = alloc.lb(lb)?;
            let svc = (!info.listeners.is_empty() && info.state != LbState::Draining)
                .then(|| core::desired_lb_service(&info, &ctx.config.namespace));
            Some((lb, svc))
        })
        .collect()
}

/// Carries out gathered effects without the lock: LB Services follow their listeners,
/// deleted LBs go (and are reported), other claims are reconciled again. Loops while
/// reports bring new effects.
pub async fn carry_out(
    ctx: &Ctx,
    mut fx: Effects,
    mut lb_services: Vec<(LbId, Option<Service>)>,
    current: Option<&ClaimId>,
) -> Result<(), Error> {
    loop {
        // Other claims the decisions touched are reconciled again before any write here
        // can fail: a retry of this write decides nothing new, so they would otherwise
        // keep a stale status until their periodic reconcile.
        for c in std::mem::take(&mut fx.claims) {
            if Some(&c) != current
                && let Some(r) = claim_ref(&c)
            {
                let _ = ctx.requeue.unbounded_send(r);
            }
        }
        for (lb, svc) in &lb_services {
            if let Some(svc) = svc {
                apply_lb_service(ctx, *lb, svc).await?;
            }
        }
        let deleted = std::mem::take(&mut fx.deleted);
        if deleted.is_empty() {
            return Ok(());
        }
        let mut next = Effects::default();
        for lb in deleted {
            delete_lb_service(ctx, lb).await?;
            let mut alloc = ctx.lock();
            if alloc.lb(lb).is_some() {
                decide(ctx, &mut alloc, Event::LbDeleted(lb), &mut next)?;
            }
        }
        lb_services = {
            let alloc = ctx.lock();
            desired_lb_services(ctx, &alloc, &next)
        };
        fx = next;
    }
}

async fn apply_lb_service(ctx: &Ctx, lb: LbId, svc: &Service) -> Result<(), Error> {
    ctx.write_allowed()?;
    ctx.services(&ctx.config.namespace)
        .patch(
            &core::lb_service_name(lb),
            &PatchParams::apply(core::MANAGER).force(),
            &Patch::Apply(svc),
        )
        .await?;
    Ok(())
}

async fn delete_lb_service(ctx: &Ctx, lb: LbId) -> Result<(), Error> {
    guard(&ctx.addresses).remove(&lb);
    if ctx.config.mode != Mode::Service {
        return Ok(());
    }
    ctx.write_allowed()?;
    match ctx
        .services(&ctx.config.namespace)
        .delete(&core::lb_service_name(lb), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles one claim: the finalizer first, then the claim's objects and status.
pub async fn reconcile(slb: Arc<SharedLB>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    #[allow(clippy::disallowed_methods)] // measuring reconcile duration for /metrics
    let start = std::time::Instant::now();
    let result = reconcile_inner(&slb, &ctx).await;
    ctx.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
    ctx.metrics
        .reconcile_micros
        .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    let key = core::claim_id(&slb);
    match &result {
        Ok(_) => {
            guard(&ctx.failures).remove(&key);
        }
        Err(e) => {
            *guard(&ctx.metrics.errors).entry(e.kind()).or_default() += 1;
        }
    }
    result
}

async fn reconcile_inner(slb: &SharedLB, ctx: &Ctx) -> Result<Action, Error> {
    slb.namespace().ok_or(Error::NoNamespace)?;
    let deleting = slb.metadata.deletion_timestamp.is_some();
    let has_finalizer = slb.finalizers().iter().any(|f| f == core::FINALIZER);
    if let Some(why) = ctx.degraded_reason() {
        return degraded(slb, ctx, &why, deleting, has_finalizer).await;
    }
    if deleting {
        if has_finalizer {
            let done = async {
                cleanup(slb, ctx).await?;
                remove_finalizer(slb, ctx).await
            }
            .await;
            if let Err(e) = &done {
                releasing(slb, ctx, e).await;
            }
            done?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer(slb, ctx).await?;
    }
    apply(slb, ctx).await
}

/// On error: retry with exponential back-off (5 s doubling to 5 min) per claim.
#[allow(clippy::needless_pass_by_value)] // the signature kube's Controller calls
pub fn error_policy(slb: Arc<SharedLB>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = core::claim_id(&slb);
    let n = {
        let mut f = guard(&ctx.failures);
        let n = f.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let delay = backoff(n);
    if matches!(err, Error::Fenced) {
        tracing::debug!(claim = %key, "not writing: no lease");
    } else {
        tracing::warn!(claim = %key, failures = n, retry_in = ?delay, "reconcile failed: {err}");
    }
    Action::requeue(delay)
}

/// The delay after `n` failures in a row: 5 s, 10 s, 20 s, ... at most 5 minutes.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

async fn add_finalizer(slb: &SharedLB, ctx: &Ctx) -> Result<(), Error> {
    ctx.write_allowed()?;
    let api: Api<SharedLB> =
        Api::namespaced(ctx.client.clone(), &slb.namespace().unwrap_or_default());
    let mut finalizers = slb.finalizers().to_vec();
    finalizers.push(core::FINALIZER.to_owned());
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": slb.resource_version()}});
    api.patch(
        &slb.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn remove_finalizer(slb: &SharedLB, ctx: &Ctx) -> Result<(), Error> {
    ctx.write_allowed()?;
    let api: Api<SharedLB> =
        Api::namespaced(ctx.client.clone(), &slb.namespace().unwrap_or_default());
    let finalizers: Vec<&String> = slb
        .finalizers()
        .iter()
        .filter(|f| *f != core::FINALIZER)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": slb.resource_version()}});
    match api
        .patch(
            &slb.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The API server lacks what the mode needs: let deletions through, explain otherwise.
async fn degraded(
    slb: &SharedLB,
    ctx: &Ctx,
    why: &str,
    deleting: bool,
    has_finalizer: bool,
) -> Result<Action, Error> {
    if deleting {
        if has_finalizer {
            delete_claim_objects(slb, ctx, None).await?;
            remove_finalizer(slb, ctx).await?;
        }
        return Ok(Action::await_change());
    }
    patch_status(ctx, slb, &Outcome::Unsupported(why.to_owned())).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// What the claim's Service name holds now.
async fn name_owner(slb: &SharedLB, ctx: &Ctx) -> Result<Option<Owner>, Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let name = core::backing_service_name(slb);
    Ok(ctx
        .services(&ns)
        .get_opt(&name)
        .await?
        .map(|svc| core::owner_of(&svc, slb)))
}

/// What one reconcile decided for the claim.
enum Plan {
    /// Not in the allocator (invalid, or its Service name is taken).
    Out(Outcome<'static>),
    /// Waiting.
    Waiting(PendingReason, String),
    /// Placed.
    Placed {
        lb: LbId,
        listeners: Vec<Listener>,
        pool: PoolKey,
        lb_ready: bool,
    },
}

async fn apply(slb: &SharedLB, ctx: &Ctx) -> Result<Action, Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let id = core::claim_key(slb).ok_or(Error::NoNamespace)?;
    // 1. Look.
    let owner = name_owner(slb, ctx).await?;
    let taken = owner == Some(Owner::Foreign);
    // 2. Decide, under the lock.
    let spec = core::claim_from_spec(&ns, &slb.name_any(), &slb.spec, ctx.config.mode);
    let mut fx = Effects::default();
    let (plan, lb_services) = {
        let mut alloc = ctx.lock();
        let plan = match (spec, taken) {
            (Err(msg), _) => {
                if alloc.claim(&id).is_some() {
                    decide(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), &mut fx)?;
                }
                Plan::Out(Outcome::Invalid(msg))
            }
            (Ok(_), true) => {
                if alloc.claim(&id).is_some() {
                    decide(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), &mut fx)?;
                }
                Plan::Out(Outcome::NameTaken(core::backing_service_name(slb)))
            }
            (Ok(claim), false) => {
                // Under the allocator's lock, as the resync reads it.
                guard(&ctx.objects).insert(id.clone(), core::claim_label(slb));
                let event = match alloc.claim(&id) {
                    None => Some(Event::ClaimAdded(claim)),
                    Some(c) if *c != claim => Some(Event::ClaimUpdated(claim)),
                    Some(_) => None,
                };
                if let Some(e) = event {
                    decide(ctx, &mut alloc, e, &mut fx)?;
                }
                if let Some((lb, ls)) = alloc.placement(&id) {
                    let info = alloc.lb(lb);
                    Plan::Placed {
                        lb,
                        listeners: ls.to_vec(),
                        pool: info.as_ref().map_or(PoolKey::Open, |l| l.pool.clone()),
                        lb_ready: info.is_some_and(|l| l.state == LbState::Ready),
                    }
                } else {
                    let reason = alloc
                        .pending_reason(&id)
                        .unwrap_or(PendingReason::WaitingForCapacity);
                    // The figures as they are now (a Pending decision's message is sent
                    // only when the reason changes); the last one told if a fresh look
                    // finds another reason (a retry is due and will tell).
                    let message = alloc
                        .waiting_message(&id)
                        .or_else(|| guard(&ctx.messages).get(&id).cloned())
                        .unwrap_or_else(|| format!("waiting: {reason}"));
                    Plan::Waiting(reason, message)
                }
            }
        };
        // The LBs of this claim's placement are level-triggered too: always re-applied.
        if let Plan::Placed { lb, .. } = &plan {
            fx.touched.insert(*lb);
        }
        let lb_services = desired_lb_services(ctx, &alloc, &fx);
        (plan, lb_services)
    };
    // 3. Write.
    carry_out(ctx, fx, lb_services, Some(&id)).await?;
    let outcome = match plan {
        Plan::Out(outcome) => {
            delete_claim_objects(slb, ctx, owner).await?;
            outcome
        }
        Plan::Waiting(reason, message) => {
            // Nothing held: the claim's objects go (in shared-IP mode its Service would
            // keep a port and a share of an address it no longer has).
            delete_claim_objects(slb, ctx, owner).await?;
            Outcome::Pending(reason, message)
        }
        Plan::Placed {
            lb,
            listeners,
            pool,
            lb_ready,
        } => {
            let address = ensure_claim_objects(ctx, slb, lb, &listeners, &pool).await?;
            if address.is_some() && !lb_ready {
                let mut fx = Effects::default();
                let lb_services = {
                    let mut alloc = ctx.lock();
                    if alloc
                        .lb(lb)
                        .is_some_and(|l| l.state == LbState::Provisioning)
                    {
                        decide(ctx, &mut alloc, Event::LbReady(lb), &mut fx)?;
                    }
                    desired_lb_services(ctx, &alloc, &fx)
                };
                carry_out(ctx, fx, lb_services, Some(&id)).await?;
            }
            let status = core::status(
                slb,
                &Outcome::Placed {
                    lb,
                    listeners: &listeners,
                    address,
                },
                &now_rfc3339(),
                ctx.config.mode,
            );
            write_status(ctx, slb, status).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    patch_status(ctx, slb, &outcome).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(slb: &SharedLB, ctx: &Ctx) -> Result<(), Error> {
    let mut fx = Effects::default();
    let id = core::claim_key(slb);
    let (held, lb_services) = {
        let mut alloc = ctx.lock();
        let held = id
            .as_ref()
            .and_then(|id| alloc.placement(id))
            .map(|(lb, _)| lb);
        if let Some(id) = &id
            && alloc.claim(id).is_some()
        {
            decide(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), &mut fx)?;
        }
        (held, desired_lb_services(ctx, &alloc, &fx))
    };
    if let Some(id) = &id {
        guard(&ctx.messages).remove(id);
        guard(&ctx.objects).remove(id);
    }
    // Said once, when the allocator frees them: a retry finds nothing held.
    if let Some(lb) = held {
        let note = format!("listeners on {} freed", core::lb_service_name(lb));
        publish(ctx, slb, EventType::Normal, "Released", &note).await;
    }
    carry_out(ctx, fx, lb_services, id.as_ref()).await?;
    let owner = name_owner(slb, ctx).await?;
    delete_claim_objects(slb, ctx, owner).await
}

/// A claim being deleted whose cleanup or finalizer removal failed: once the allocator
/// holds nothing for it (its listeners may already be another claim's), it must not stay
/// Ready while the retries run. Best effort: the error is what the retry acts on.
async fn releasing(slb: &SharedLB, ctx: &Ctx, e: &Error) {
    let freed = core::claim_key(slb).is_none_or(|id| ctx.lock().claim(&id).is_none());
    if freed && let Err(s) = patch_status(ctx, slb, &Outcome::Releasing(e.to_string())).await {
        tracing::debug!("status of a claim being deleted not written: {s}");
    }
}

/// Deletes what the controller made for this claim: its Service (only when ours) and its
/// mirrored EndpointSlices.
async fn delete_claim_objects(
    slb: &SharedLB,
    ctx: &Ctx,
    owner: Option<Owner>,
) -> Result<(), Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    if owner == Some(Owner::ThisClaim) {
        ctx.write_allowed()?;
        match ctx
            .services(&ns)
            .delete(&core::backing_service_name(slb), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if ctx.config.mode == Mode::Service && ctx.degraded_reason().is_none() {
        delete_mirrored(ctx, slb, None).await?;
    }
    Ok(())
}

/// Ensures the claim's own objects exist as they should and returns the LB's address when
/// it has one.
async fn ensure_claim_objects(
    ctx: &Ctx,
    slb: &SharedLB,
    lb: LbId,
    listeners: &[Listener],
    pool: &PoolKey,
) -> Result<Option<String>, Error> {
    let ns = slb.namespace().ok_or(Error::NoNamespace)?;
    let claim_services = ctx.services(&ns);
    let pp = PatchParams::apply(core::MANAGER).force();
    let name = core::backing_service_name(slb);
    let address = match ctx.config.mode {
        Mode::Service => {
            let backing = core::desired_backing_service(slb, listeners);
            apply_claim_service(ctx, &claim_services, &name, &backing).await?;
            guard(&ctx.backing).insert((ns.clone(), name.clone()), slb.name_any());
            let slices: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
            let source = slices
                .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
                .await?;
            let mirrors: Api<EndpointSlice> =
                Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
            for s in core::mirrored_slices(slb, lb, listeners, &source.items, &ctx.config.namespace)
            {
                ctx.write_allowed()?;
                mirrors.patch(&s.name_any(), &pp, &Patch::Apply(&s)).await?;
            }
            delete_mirrored(ctx, slb, Some(lb)).await?;
            ctx.services(&ctx.config.namespace)
                .get_opt(&core::lb_service_name(lb))
                .await?
                .as_ref()
                .and_then(core::service_address)
        }
        Mode::SharedIp => {
            let svc = core::desired_shared_ip_service(
                slb,
                lb,
                pool,
                listeners,
                ctx.config.shared_ip_impl,
            );
            let (before, got) = apply_claim_service(ctx, &claim_services, &name, &svc).await?;
            // An address is this LB's only if the Service was already asking for this
            // LB's IP before this write (a claim moved here still shows the IP of the
            // LB it left until the implementation catches up), and no other LB has it.
            let asked_before = before.as_ref().and_then(core::labelled_lb) == Some(lb);
            core::service_address(&got).filter(|a| {
                asked_before
                    && !guard(&ctx.addresses)
                        .iter()
                        .any(|(other, b)| *other != lb && b == a)
            })
        }
    };
    match (&address, ctx.config.mode) {
        (Some(a), _) => {
            guard(&ctx.addresses).insert(lb, a.clone());
        }
        // The LB Service has none (recreated): neither has the LB. In shared-IP mode one
        // claim's Service without the address says nothing of the others'.
        (None, Mode::Service) => {
            guard(&ctx.addresses).remove(&lb);
        }
        (None, Mode::SharedIp) => {}
    }
    Ok(address)
}

/// Creates the claim's Service, or updates it when it is ours; returns it as it was
/// before (none if created) and after. The ownership was checked before deciding; a
/// Service that appears in between is caught by the create's conflict.
async fn apply_claim_service(
    ctx: &Ctx,
    api: &Api<Service>,
    name: &str,
    svc: &Service,
) -> Result<(Option<Service>, Service), Error> {
    ctx.write_allowed()?;
    match api.get_opt(name).await? {
        None => Ok((None, api.create(&PostParams::default(), svc).await?)),
        Some(before) => {
            let after = api
                .patch(
                    name,
                    &PatchParams::apply(core::MANAGER).force(),
                    &Patch::Apply(svc),
                )
                .await?;
            Ok((Some(before), after))
        }
    }
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
        delete_mirror(ctx, &mirrors, &s.name_any()).await?;
    }
    Ok(())
}

/// Deletes one mirrored EndpointSlice (gone already is as good).
async fn delete_mirror(ctx: &Ctx, mirrors: &Api<EndpointSlice>, name: &str) -> Result<(), Error> {
    ctx.write_allowed()?;
    match mirrors.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Forgets claims whose `SharedLB` is gone without a reconcile seeing it go (its finalizer
/// removed by hand while the controller was not reconciling it: the watch's deletion finds
/// nothing to reconcile). Each claim the allocator holds is compared, by the object it was
/// last reconciled from, with a list of the cluster's; one gone frees what it holds, once
/// its mirrored EndpointSlices (service mode) are deleted: left behind, they would send
/// whichever claim gets its listener next to its pods too.
///
/// Races: the claims are read before the list, so a claim added after the list was read
/// is never taken for a gone one; one deleted and created again under its name is another
/// object, and stays. Slices are listed before the claims, so a slice made for a claim
/// newer than the claim list is never deleted.
pub async fn resync_claims(ctx: &Ctx) -> Result<(), Error> {
    let result = resync_claims_once(ctx).await;
    counted(ctx, Background::ClaimResync, result)
}

async fn resync_claims_once(ctx: &Ctx) -> Result<(), Error> {
    if ctx.degraded_reason().is_some() {
        return Ok(());
    }
    let before: Vec<(ClaimId, String)> = {
        let alloc = ctx.lock();
        let objects = guard(&ctx.objects);
        objects
            .iter()
            .filter(|(id, _)| alloc.claim(id).is_some())
            .map(|(id, o)| (id.clone(), o.clone()))
            .collect()
    };
    if before.is_empty() {
        return Ok(());
    }
    let mirrors: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let slices = if ctx.config.mode == Mode::Service {
        mirrors
            .list_metadata(&ListParams::default().labels(&format!(
                "{}={}",
                core::MANAGED_BY_LABEL,
                core::MANAGED_BY
            )))
            .await?
            .items
    } else {
        Vec::new()
    };
    let api: Api<SharedLB> = Api::all(ctx.client.clone());
    let present: BTreeSet<String> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|m| core::claim_label_of(&m.metadata))
        .collect();
    let gone: Vec<(ClaimId, String)> = before
        .into_iter()
        .filter(|(_, o)| !present.contains(o))
        .collect();
    // Mirrored slices of claims no longer there, this pass's gone ones among them.
    for s in &slices {
        let of = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(core::CLAIM_LABEL));
        if of.is_some_and(|o| !present.contains(o)) {
            delete_mirror(ctx, &mirrors, &s.name_any()).await?;
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    let mut fx = Effects::default();
    let mut freed = BTreeSet::new();
    let lb_services = {
        let mut alloc = ctx.lock();
        let mut objects = guard(&ctx.objects);
        for (id, o) in &gone {
            // Still the object found gone (not one created again under its name).
            if objects.get(id) == Some(o) && alloc.claim(id).is_some() {
                tracing::warn!(claim = %id, "its SharedLB is gone unseen: its listeners are freed");
                decide(ctx, &mut alloc, Event::ClaimRemoved(id.clone()), &mut fx)?;
                objects.remove(id);
                freed.insert(id.clone());
            }
        }
        drop(objects);
        desired_lb_services(ctx, &alloc, &fx)
    };
    {
        let mut messages = guard(&ctx.messages);
        for id in &freed {
            messages.remove(id);
        }
    }
    // Nothing to reconcile for a gone claim (a stale cache would add it back).
    fx.claims.retain(|c| !freed.contains(c));
    carry_out(ctx, fx, lb_services, None).await
}

/// Repairs drift of the LB Services (service mode): every LB the allocator has gets its
/// Service as it should be (one deleted or changed by someone else is put back); an LB
/// Service of ours the allocator does not know, or is deleting, is deleted. Also reports
/// LBs that got an address as ready.
pub async fn resync_lbs(ctx: &Ctx) -> Result<(), Error> {
    let result = resync_lbs_once(ctx).await;
    counted(ctx, Background::LbResync, result)
}

async fn resync_lbs_once(ctx: &Ctx) -> Result<(), Error> {
    if ctx.config.mode != Mode::Service || ctx.degraded_reason().is_some() {
        return Ok(());
    }
    let api = ctx.services(&ctx.config.namespace);
    let actual: BTreeMap<LbId, Service> = api
        .list(&ListParams::default().labels(&format!(
            "{},{}={}",
            core::LB_LABEL,
            core::MANAGED_BY_LABEL,
            core::MANAGED_BY
        )))
        .await?
        .items
        .into_iter()
        .filter_map(|s| {
            let lb = core::lb_from_name(&s.name_any());
            if lb.is_none() {
                // Not a name this controller gives (an LB id is at most u32::MAX): never
                // adopted, so never deleted either.
                tracing::warn!(
                    service = %s.name_any(),
                    "labelled as a shared LB but not named as one; left alone"
                );
            }
            Some((lb?, s))
        })
        .collect();
    let (desired, draining): (Vec<(LbId, Service, LbState)>, BTreeSet<LbId>) = {
        let alloc = ctx.lock();
        let mut desired = Vec::new();
        let mut draining = BTreeSet::new();
        for info in alloc.lbs() {
            if info.state == LbState::Draining {
                draining.insert(info.id);
            } else if !info.listeners.is_empty() {
                desired.push((
                    info.id,
                    core::desired_lb_service(&info, &ctx.config.namespace),
                    info.state,
                ));
            }
        }
        (desired, draining)
    };
    let mut fx = Effects::default();
    let mut ready = Vec::new();
    for (lb, svc, state) in &desired {
        // Applied whether it drifted, was deleted by someone else, or is as it should be:
        // server-side apply of an unchanged object changes nothing.
        apply_lb_service(ctx, *lb, svc).await?;
        if let Some(addr) = actual.get(lb).and_then(core::service_address) {
            guard(&ctx.addresses).insert(*lb, addr);
            if *state == LbState::Provisioning {
                ready.push(*lb);
            }
        } else {
            // Deleted or recreated by someone else: a new Service is a new cloud LB, and
            // the address of the old one is no longer where its listeners are.
            guard(&ctx.addresses).remove(lb);
        }
    }
    for lb in actual.keys() {
        let known = desired.iter().any(|(d, _, _)| d == lb);
        if !known {
            // Ours and not wanted: being deleted, idle, or unknown (an orphan).
            let idle = !draining.contains(lb) && ctx.lock().lb(*lb).is_some();
            if !idle {
                delete_lb_service(ctx, *lb).await?;
                if draining.contains(lb) {
                    fx.deleted.push(*lb);
                }
            }
        }
    }
    for lb in &draining {
        if !actual.contains_key(lb) {
            fx.deleted.push(*lb);
        }
    }
    let lb_services = {
        let mut alloc = ctx.lock();
        for lb in ready {
            if alloc
                .lb(lb)
                .is_some_and(|l| l.state == LbState::Provisioning)
            {
                decide(ctx, &mut alloc, Event::LbReady(lb), &mut fx)?;
                for c in alloc.claims_on(lb) {
                    fx.claims.insert(c);
                }
            }
        }
        desired_lb_services(ctx, &alloc, &fx)
    };
    carry_out(ctx, fx, lb_services, None).await
}

/// Sends the allocator a tick (idle deletion on time, waiting claims retried) and, when
/// `consolidate` is given, a consolidation with that move budget; carries out the result.
pub async fn tick(ctx: &Ctx, consolidate: Option<u32>) -> Result<(), Error> {
    let result = tick_once(ctx, consolidate).await;
    counted(ctx, Background::Tick, result)
}

async fn tick_once(ctx: &Ctx, consolidate: Option<u32>) -> Result<(), Error> {
    let mut fx = Effects::default();
    let lb_services = {
        let mut alloc = ctx.lock();
        decide(ctx, &mut alloc, Event::Tick, &mut fx)?;
        if let Some(max_moves) = consolidate {
            decide(ctx, &mut alloc, Event::Consolidate { max_moves }, &mut fx)?;
        }
        desired_lb_services(ctx, &alloc, &fx)
    };
    carry_out(ctx, fx, lb_services, None).await
}

/// When the allocator next wants a tick.
pub fn next_wakeup(ctx: &Ctx) -> Option<Time> {
    ctx.lock().next_wakeup()
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
    ctx.write_allowed()?;
    let was_ready = slb.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let first = status.conditions.first().cloned();
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
    let changed_reason = slb
        .status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.reason.as_str())
        != first.as_ref().map(|c| c.reason.as_str());
    if (ready != was_ready || changed_reason)
        && let Some(c) = first
    {
        // Ready lost (its LB lost its address, say) is an outage whatever the reason.
        let lost_ready = was_ready && !ready;
        let kind = if core::reason_is_progress(&c.reason) && !lost_ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(ctx, slb, kind, &c.reason, &c.message).await;
    } else if ready
        && let Some(old) = &slb.status
        && (old.load_balancer != status.load_balancer
            || old.address != status.address
            || old.ports != status.ports)
    {
        // Ready before and after, on another LB, address or ports (consolidation, a
        // restart that placed it anew): what clients use changed, so say it.
        let note = format!(
            "now {} on {} at {}",
            status.port_summary.as_deref().unwrap_or("-"),
            status.load_balancer.as_deref().unwrap_or("-"),
            status.address.as_deref().unwrap_or("-"),
        );
        // The destination in the action too: the recorder folds events of one reason and
        // action into one with its first note, which would name the first move's LB.
        let action = format!("Move to {}", status.load_balancer.as_deref().unwrap_or("-"));
        publish_as(ctx, slb, EventType::Normal, "Moved", &action, &note).await;
    }
    Ok(())
}

async fn publish(ctx: &Ctx, slb: &SharedLB, type_: EventType, reason: &str, note: &str) {
    publish_as(ctx, slb, type_, reason, "Allocate", note).await;
}

async fn publish_as(
    ctx: &Ctx,
    slb: &SharedLB,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    if ctx.write_allowed().is_err() {
        return;
    }
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: action.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &slb.object_ref(&())).await {
        tracing::debug!("event not recorded: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
