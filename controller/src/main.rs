//! `sharedlb-controller`: `run` (default) the controller, or print the `crd`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
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
use sharedlb_controller::reconcile::{self, Ctx, Metrics};
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
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

async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the cluster")?;
    let (requeue, requeued) = futures::channel::mpsc::unbounded::<ObjectRef<SharedLB>>();
    let reporter = Reporter {
        controller: "sharedlb-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let placeholder = sharedlb_allocator::Allocator::new(config.allocator_config()?)?;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        config: config.clone(),
        alloc: tokio::sync::Mutex::new(placeholder),
        addresses: std::sync::Mutex::default(),
        claims_on: std::sync::Mutex::default(),
        requeue,
        recorder: Recorder::new(client.clone(), reporter),
        metrics: Metrics::default(),
        ready: AtomicBool::new(false),
    });
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
        let me = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("sharedlb-{}", std::process::id()));
        leader::lead(client.clone(), config.namespace.clone(), me).await;
    }
    let rebuilt = startup::rebuild(&client, &config, Time(reconcile::now_ms())).await?;
    *ctx.alloc.lock().await = rebuilt;
    ctx.ready.store(true, Ordering::Relaxed);

    let claims: Api<SharedLB> = Api::all(client.clone());
    let lb_services: Api<Service> = Api::namespaced(client.clone(), &config.namespace);
    let map_ctx = ctx.clone();
    let mut controller = Controller::new(claims, watcher::Config::default())
        .owns(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(core::CLAIM_LABEL),
        )
        .watches(
            lb_services,
            watcher::Config::default().labels(core::LB_LABEL),
            move |svc: Service| {
                // An LB Service changed (e.g. got its address): reconcile every claim on it.
                let on = map_ctx
                    .claims_on
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                core::lb_from_name(&svc.name_any())
                    .and_then(|lb| on.get(&lb).cloned())
                    .unwrap_or_default()
            },
        )
        .reconcile_on(requeued);
    if config.mode == Mode::Service {
        // The backing Services' EndpointSlices change with the pods: mirror them again.
        controller = controller.watches(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels("kubernetes.io/service-name"),
            |slice: EndpointSlice| {
                let svc = slice
                    .labels()
                    .get("kubernetes.io/service-name")
                    .cloned()
                    .unwrap_or_default();
                let ns = slice.namespace().unwrap_or_default();
                svc.strip_suffix("-sharedlb")
                    .map(|name| ObjectRef::new(name).within(&ns))
            },
        );
    }
    controller
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    Ok(())
}
