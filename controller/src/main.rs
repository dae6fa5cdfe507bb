//! `sharedlb-controller`: `run` (default) the controller, or print the `crd`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};
use sharedlb_allocator::Time;
use sharedlb_controller::config::ControllerConfig;
use sharedlb_controller::core::{self, Mode};
use sharedlb_controller::crd::SharedLB;
use sharedlb_controller::fence::Fence;
use sharedlb_controller::reconcile::{self, Ctx, Role};
use sharedlb_controller::{http, leader, startup};

#[derive(Parser)]
#[command(
    name = "sharedlb-controller",
    version,
    about = "Shared L4 load balancers for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Configuration file (TOML, e.g. mounted from a ConfigMap).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data-plane mode (overrides the file).
    #[arg(long, global = true, value_enum)]
    mode: Option<Mode>,
    /// Namespace of the LB Services and the Lease (overrides the file).
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// Packing policy (overrides the file).
    #[arg(long, global = true)]
    policy: Option<String>,
    /// HTTP listen address (overrides the file).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Serve this directory (the built dashboard) at `/`.
    #[arg(long, global = true)]
    static_dir: Option<PathBuf>,
    /// Log format: text (plain unless stderr is a terminal) or json (one object per line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the controller (default).
    Run,
    /// Print the CustomResourceDefinition YAML.
    Crd,
}

fn load(cli: &Cli) -> anyhow::Result<ControllerConfig> {
    let mut c = match &cli.config {
        Some(p) => {
            let src =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            ControllerConfig::from_toml(&src, &p.display().to_string())?
        }
        None => ControllerConfig::default(),
    };
    if let Some(m) = cli.mode {
        c.mode = m;
    }
    if let Some(n) = &cli.namespace {
        c.namespace.clone_from(n);
    }
    if let Some(p) = &cli.policy {
        c.policy = p.parse().map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    }
    if let Some(l) = &cli.listen {
        c.listen.clone_from(l);
    }
    if let Some(d) = &cli.static_dir {
        c.static_dir = Some(d.clone());
    }
    c.allocator_config()?;
    Ok(c)
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colour codes only for a person at a terminal, never into a file or a pod's log.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Some(Cmd::Crd) => sharedlb_controller::crd::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(anyhow::Error::from),
        Some(Cmd::Run) | None => match load(&cli) {
            Ok(c) => run(c).await,
            Err(e) => {
                eprintln!("error: invalid configuration: {e:#}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Why `service` mode cannot run on this API server, if it cannot: it writes
/// `discovery.k8s.io/v1` EndpointSlices (Kubernetes 1.21 and later).
async fn missing_api(client: &Client, mode: Mode) -> anyhow::Result<Option<String>> {
    if mode != Mode::Service {
        return Ok(None);
    }
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => Ok(None),
        Ok(_) | Err(kube::Error::Api(_)) => Ok(Some(
            "service mode needs the discovery.k8s.io/v1 EndpointSlice API, which this API \
             server does not serve (Kubernetes before 1.21): upgrade, or run with \
             --mode shared-ip"
                .into(),
        )),
        Err(e) => Err(e).context("asking the API server which APIs it serves"),
    }
}

async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the cluster")?;
    let (requeue, requeued) = futures::channel::mpsc::unbounded::<ObjectRef<SharedLB>>();
    let me =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("sharedlb-{}", std::process::id()));
    let reporter = Reporter {
        controller: "sharedlb-controller".into(),
        instance: Some(me.clone()),
    };
    let fence = Arc::new(if config.leader_election {
        Fence::elected()
    } else {
        Fence::unelected()
    });
    let ctx = Arc::new(Ctx::new(
        client.clone(),
        config.clone(),
        requeue,
        Recorder::new(client.clone(), reporter),
        fence.clone(),
    )?);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let app = http::router(&ctx);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http server: {e}");
        }
    });
    if config.leader_election {
        ctx.set_role(Role::Follower);
        let waiting = ctx.clone();
        let acquired = leader::acquire(&client, &config.namespace, &me, &fence, move |h| {
            *waiting
                .leader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = h;
        });
        tokio::select! {
            () = acquired => {}
            () = shutdown_signal() => {
                tracing::info!("stopping before leading");
                return Ok(());
            }
        }
        leader::keep(
            client.clone(),
            config.namespace.clone(),
            me.clone(),
            fence.clone(),
        );
        // The lease is ours: no longer following anyone, not leading until rebuilt.
        ctx.set_role(Role::Starting);
    }
    let degraded = missing_api(&client, config.mode).await?;
    if let Some(why) = &degraded {
        tracing::error!("{why}; serving only deletions of claims until restarted");
        *ctx.degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
        ctx.set_role(Role::Degraded);
    } else {
        let rebuilt = startup::rebuild(&client, &config, Time(reconcile::now_ms())).await?;
        ctx.set_allocator(rebuilt);
        ctx.set_role(Role::Leader);
        spawn_clock(ctx.clone());
        spawn_resync(ctx.clone());
    }

    let claims: Api<SharedLB> = Api::all(client.clone());
    let lb_services: Api<Service> = Api::namespaced(client.clone(), &config.namespace);
    let map_ctx = ctx.clone();
    let mut controller = Controller::new(claims, watcher::Config::default())
        .owns(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(&format!(
                "{}={}",
                core::MANAGED_BY_LABEL,
                core::MANAGED_BY
            )),
        )
        .watches(
            lb_services,
            watcher::Config::default().labels(core::LB_LABEL),
            move |svc: Service| {
                // An LB Service changed (e.g. got its address): reconcile every claim on it.
                core::lb_from_name(&svc.name_any())
                    .map(|lb| map_ctx.claims_on(lb))
                    .unwrap_or_default()
            },
        )
        .reconcile_on(requeued);
    if config.mode == Mode::Service && degraded.is_none() {
        // The backing Services' EndpointSlices change with the pods: mirror them again.
        let slice_ctx = ctx.clone();
        controller = controller.watches(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels("kubernetes.io/service-name"),
            move |slice: EndpointSlice| {
                let svc = slice.labels().get("kubernetes.io/service-name")?.clone();
                slice_ctx.claim_of_backing(&slice.namespace().unwrap_or_default(), &svc)
            },
        );
    }
    controller
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    // Shutting down: no more writes, then hand the lease over at once.
    fence.close();
    if config.leader_election
        && let Err(e) = leader::release(&client, &config.namespace, &me).await
    {
        tracing::warn!("could not release the lease: {e}");
    }
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

/// The allocator's clock: a tick at its wake-up (idle LBs deleted on time, waiting claims
/// retried after a restart) and consolidation on its interval.
fn spawn_clock(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        let every = ctx.config.consolidation.as_ref().map(|c| c.every_seconds);
        let mut next_consolidation = every.map(|s| reconcile::now_ms() + s * 1000);
        let mut failures = 0;
        loop {
            let now = reconcile::now_ms();
            let wake = reconcile::next_wakeup(&ctx).map_or(u64::MAX, |t| t.0);
            let due = wake.min(next_consolidation.unwrap_or(u64::MAX));
            // Wake at the due time, or when an event fed to the allocator may have moved
            // its wake-up earlier (an LB emptied: its idle deadline is sooner than the
            // sleep), and at least every 30 s.
            let sleep = due.saturating_sub(now).min(30_000);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(sleep)) => {}
                () = ctx.clock.notified() => {}
            }
            let now = reconcile::now_ms();
            let consolidate = match (next_consolidation, &ctx.config.consolidation) {
                (Some(t), Some(c)) if now >= t => {
                    next_consolidation = Some(now + c.every_seconds * 1000);
                    Some(c.max_moves)
                }
                _ => None,
            };
            if now < wake && consolidate.is_none() {
                continue;
            }
            match reconcile::tick(&ctx, consolidate).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!("tick: {e}");
                    tokio::time::sleep(reconcile::backoff(failures)).await;
                }
            }
        }
    });
}

/// Every 30 s: forgets claims whose `SharedLB` is gone unseen, and (service mode) puts
/// the LB Services back as they should be.
fn spawn_resync(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            if let Err(e) = reconcile::resync_claims(&ctx).await {
                tracing::warn!("claim resync: {e}");
            }
            if let Err(e) = reconcile::resync_lbs(&ctx).await {
                tracing::warn!("LB resync: {e}");
            }
        }
    });
}
