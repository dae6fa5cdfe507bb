//! One HTTP port: `/healthz`, `/readyz`, `/metrics` (Prometheus text), the read-only
//! `/api/v1/state` the dashboard polls, and optionally the built dashboard at `/`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sharedlb_allocator::{LbState, PendingReason};

use crate::reconcile::{Background, Ctx, Role};

/// The router.
pub fn router(ctx: &Arc<Ctx>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/state", get(state))
        .with_state(ctx.clone());
    if let Some(dir) = &ctx.config.static_dir {
        r = r.fallback_service(tower_http::services::ServeDir::new(dir));
    }
    r
}

/// Why this replica does not serve, when it does not lead.
fn not_leading(ctx: &Ctx) -> Option<String> {
    match ctx.role() {
        Role::Leader if !ctx.fence.holds() => Some(
            "leading, but the lease was not renewed within its deadline: writing nothing \
             until it is, or exiting"
                .into(),
        ),
        Role::Leader => None,
        Role::Starting => Some("starting: rebuilding the state from the cluster".into()),
        Role::Follower => Some(format!(
            "following: {} leads; this replica waits for the lease",
            ctx.leader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "another replica".into())
        )),
        Role::Degraded => Some(format!(
            "not serving: {}",
            ctx.degraded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default()
        )),
    }
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> Response {
    match not_leading(&ctx) {
        None => "ready: leading".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

async fn state(State(ctx): State<Arc<Ctx>>) -> Response {
    let cors = [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
    if let Some(why) = not_leading(&ctx) {
        let body = serde_json::json!({"role": role_name(ctx.role()), "message": why});
        return (StatusCode::SERVICE_UNAVAILABLE, cors, axum::Json(body)).into_response();
    }
    let addresses = ctx
        .addresses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let view = ctx
        .alloc
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .state_view(|lb| addresses.get(&lb).cloned());
    (cors, axum::Json(view)).into_response()
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Starting => "starting",
        Role::Degraded => "degraded",
    }
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    let mut out = String::new();
    let role = ctx.role();
    // A leader whose lease renewal is overdue may already be replaced: it writes nothing
    // (the fence), and its figures would be counted twice beside the new leader's.
    let leads = role == Role::Leader && ctx.fence.holds();
    let _ = writeln!(
        out,
        "# HELP sharedlb_leader Whether this replica leads (only the leader reports allocator figures).\n# TYPE sharedlb_leader gauge\nsharedlb_leader {}",
        u8::from(leads)
    );
    let _ = writeln!(
        out,
        "# HELP sharedlb_degraded Whether the API server lacks what the mode needs.\n# TYPE sharedlb_degraded gauge\nsharedlb_degraded {}",
        u8::from(role == Role::Degraded)
    );
    if leads {
        allocator_metrics(&ctx, &mut out);
    }
    reconcile_metrics(&ctx, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn allocator_metrics(ctx: &Ctx, out: &mut String) {
    let alloc = ctx
        .alloc
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let counts = alloc.lb_counts();
    let _ = writeln!(
        out,
        "# HELP sharedlb_lbs Load balancers by state.\n# TYPE sharedlb_lbs gauge"
    );
    for (state, name) in [
        (LbState::Provisioning, "provisioning"),
        (LbState::Ready, "ready"),
        (LbState::Draining, "draining"),
    ] {
        let _ = writeln!(
            out,
            "sharedlb_lbs{{state=\"{name}\"}} {}",
            counts.get(&state).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "# HELP sharedlb_listeners_used Listeners in use per LB.\n# TYPE sharedlb_listeners_used gauge"
    );
    let lbs = alloc.lbs();
    for l in &lbs {
        let _ = writeln!(
            out,
            "sharedlb_listeners_used{{lb=\"{}\",profile=\"{}\"}} {}",
            l.id,
            l.profile,
            l.listeners.len()
        );
    }
    let _ = writeln!(
        out,
        "# HELP sharedlb_listeners_capacity Listener capacity per LB.\n# TYPE sharedlb_listeners_capacity gauge"
    );
    for l in &lbs {
        let _ = writeln!(
            out,
            "sharedlb_listeners_capacity{{lb=\"{}\",profile=\"{}\"}} {}",
            l.id, l.profile, l.capacity
        );
    }
    let claims = alloc.claims();
    let placed = claims.iter().filter(|(_, p)| p.is_ok()).count();
    let _ = writeln!(
        out,
        "# HELP sharedlb_claims Claims the allocator holds, placed or waiting for a place (not those with an invalid spec or a taken Service name, which it does not hold).\n# TYPE sharedlb_claims gauge"
    );
    let _ = writeln!(out, "sharedlb_claims{{state=\"placed\"}} {placed}");
    let _ = writeln!(
        out,
        "sharedlb_claims{{state=\"pending\"}} {}",
        claims.len() - placed
    );
    let _ = writeln!(
        out,
        "# HELP sharedlb_pending_claims Claims waiting for a place, by reason (a placed claim waiting for its LB's address is placed; its Ready condition says so).\n# TYPE sharedlb_pending_claims gauge"
    );
    for r in PendingReason::ALL {
        let n = claims
            .iter()
            .filter(|(_, p)| p.as_ref().err() == Some(&r))
            .count();
        let _ = writeln!(out, "sharedlb_pending_claims{{reason=\"{r}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP sharedlb_cost_per_hour Cost per hour of the billed LBs, in the profiles' currency.\n# TYPE sharedlb_cost_per_hour gauge"
    );
    let _ = writeln!(out, "sharedlb_cost_per_hour {}", alloc.cost_per_hour());
}

fn reconcile_metrics(ctx: &Ctx, out: &mut String) {
    let m = &ctx.metrics;
    let _ = writeln!(
        out,
        "# HELP sharedlb_reconciles_total Reconciles.\n# TYPE sharedlb_reconciles_total counter"
    );
    let _ = writeln!(
        out,
        "sharedlb_reconciles_total {}",
        m.reconciles.load(Ordering::Relaxed)
    );
    let errors = m
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let kinds = [
        "api",
        "conflict",
        "not_found",
        "transport",
        "allocator",
        "fenced",
        "invalid",
    ];
    labelled_counters(
        out,
        "sharedlb_reconcile_errors_total",
        "Failed reconciles, by kind of error.",
        "kind",
        kinds.map(|k| (k, errors.get(k).copied().unwrap_or(0))),
    );
    let failures = m
        .background_failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    labelled_counters(
        out,
        "sharedlb_background_failures_total",
        "Failed passes of the tasks beside the reconciles: the allocator's clock (tick), the \
         resync of gone claims and of the LB Services' drift.",
        "task",
        Background::ALL.map(|t| (t.as_str(), failures.get(&t).copied().unwrap_or(0))),
    );
    let _ = writeln!(
        out,
        "# HELP sharedlb_reconcile_seconds_total Time spent reconciling.\n# TYPE sharedlb_reconcile_seconds_total counter"
    );
    let _ = writeln!(
        out,
        "sharedlb_reconcile_seconds_total {}",
        m.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
}

/// One counter family, a value per label value, each listed even at 0.
fn labelled_counters(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (v, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {n}");
    }
}
