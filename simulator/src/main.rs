//! `sharedlb-sim`: the capacity-planning CLI. With no arguments it runs the built-in
//! default scenario and prints a table.

// Output goes through `out!`/`outln!` and `say!`: `print!` and `eprint!` panic when
// their stream cannot be written.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use sharedlb_allocator::{PolicyKind, builtin_profile, builtin_profiles};
use sharedlb_simulator::metrics::{GLOSSARY, Sample, Summary};
use sharedlb_simulator::report::RunGroup;
use sharedlb_simulator::scenario::Purpose;
use sharedlb_simulator::sweep::{
    Axis, Grid, MAX_POINTS, SweepId, SweepResult, parse_axis, parse_shard, set_path,
};
use sharedlb_simulator::{InputError, Scenario, Simulation, plan, report, scenario, trace};

/// Most seeds per policy or grid point: enough for tight intervals, bounded memory.
const MAX_SEEDS: u64 = 1000;

/// Every registered policy, in registry order.
fn all_policies() -> String {
    PolicyKind::names().collect::<Vec<_>>().join(",")
}

#[derive(Parser)]
#[command(
    name = "sharedlb-sim",
    version,
    about = "How many shared L4 load balancers, and what they cost",
    after_help = "Exit codes: 0 done; 1 an error of the machine (a file that cannot be written); \
                  2 bad input, named as FILE:LINE: field: problem or by its flag; 3 `plan \
                  --strict` found Services that cannot be placed."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Clone)]
struct Output {
    /// Write summary JSON, time series CSV and report.html here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Terminal output.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario (the built-in default when none is given).
    Run {
        /// Scenario TOML file.
        scenario: Option<PathBuf>,
        /// Override the packing policy.
        #[arg(long)]
        policy: Option<String>,
        /// Override the seed (0 to 9223372036854775807).
        #[arg(long, value_parser = clap::value_parser!(u64).range(..=scenario::MAX_SEED))]
        seed: Option<u64>,
        /// Use only this built-in LB profile (e.g. to price the same workload on another cloud).
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Run several policies over several seeds in parallel and compare them.
    Compare {
        /// Scenario TOML file (`default` for the built-in one).
        scenario: PathBuf,
        /// Comma-separated policies (default: every policy).
        #[arg(long)]
        policies: Option<String>,
        /// Seeds per policy (scenario seed, seed+1, ...), 1 to 1000.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=MAX_SEEDS))]
        seeds: u64,
        #[command(flatten)]
        output: Output,
    },
    /// Plan a real cluster: Services of type LoadBalancer today vs shared.
    Plan {
        /// `kubectl get svc -A -o json` (or `-o yaml`) output.
        #[arg(long)]
        services: PathBuf,
        /// LB profile.
        #[arg(long, default_value = "aws-nlb")]
        profile: String,
        /// Who a Service's tenant is: `namespace`, `label:KEY` or `annotation:KEY` (Services
        /// without that label or annotation fall back to their namespace).
        #[arg(long, default_value = "namespace")]
        tenant_by: String,
        /// Exit with code 3 when some Service cannot be placed at all (default: a warning).
        #[arg(long)]
        strict: bool,
        /// Terminal output.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Replay a JSONL or CSV trace of add/remove events.
    Replay {
        /// The trace.
        trace: PathBuf,
        /// Scenario for allocator settings and profiles (default: built-in).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Override the packing policy.
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Run a parameter grid (or one shard of it) and write JSON Lines results.
    Sweep {
        /// Scenario TOML file (`default` for the built-in one).
        scenario: PathBuf,
        /// An axis: FIELD=V1,V2,... (repeatable), e.g. workload.arrival.rate_per_hour=5,10,20.
        #[arg(long = "param", required = true)]
        params: Vec<String>,
        /// Seeds per grid point, 1 to 1000.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_SEEDS))]
        seeds: u64,
        /// Run only shard i of n (0-based): points with index % n == i.
        #[arg(long, default_value = "0/1")]
        shard: String,
        /// Output directory; writes shard-I-of-N.jsonl.
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge sweep shard outputs into one table (and optionally one file).
    Merge {
        /// Shard files (.jsonl).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the merged JSON Lines here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Merge even when runs of the sweep are missing (say which, and go on).
        #[arg(long)]
        partial: bool,
    },
    /// List the built-in LB profiles.
    Profiles,
    /// What every figure in the reports means.
    Glossary,
}

/// `print!` that hands a failed write to the caller (`?`) instead of panicking: a full
/// disk is a machine error (exit 1). A closed pipe (`| head`) is not an error: the rest
/// of the output is dropped and the command goes on, so its files (`--out`) are still
/// written and its exit code (`plan --strict`) still told.
macro_rules! out {
    ($($t:tt)*) => {
        write_stdout(format_args!($($t)*))?
    };
}

/// `println!`, as [`out!`].
macro_rules! outln {
    ($($t:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($t)*)))?
    };
}

/// `eprintln!` that never panics: a message nobody can read is dropped.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the output: {0}")]
struct StdoutError(std::io::Error);

/// Set once stdout's reader is gone: later output is dropped unwritten.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A write's outcome: a closed pipe closes stdout for the rest of the run.
fn stdout_result(r: std::io::Result<()>) -> Result<(), StdoutError> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        r => r.map_err(StdoutError),
    }
}

fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    use std::io::Write as _;
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    stdout_result(std::io::stdout().lock().write_fmt(args))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = dispatch(cli.command).and_then(|()| {
        use std::io::Write as _;
        Ok(stdout_result(std::io::stdout().flush())?)
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<StdoutError>().is_some() {
                say!("error: {e}");
                ExitCode::from(1)
            } else if let Some(input) = e.downcast_ref::<InputError>() {
                say!("error: {input}");
                ExitCode::from(2)
            } else if let Some(u) = e.downcast_ref::<Unplaceable>() {
                say!("error: {u}");
                ExitCode::from(3)
            } else {
                say!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

fn dispatch(cmd: Option<Command>) -> Result<()> {
    match cmd {
        None => {
            // The main job: the default scenario under every policy, three seeds each.
            let output = Output {
                out: None,
                format: Format::Table,
                quiet: false,
            };
            cmd_compare(Path::new("default"), &all_policies(), 3, &output)
        }
        Some(Command::Run {
            scenario,
            policy,
            seed,
            profile,
            output,
        }) => cmd_run(
            scenario.as_deref(),
            policy.as_deref(),
            seed,
            profile.as_deref(),
            &output,
        ),
        Some(Command::Compare {
            scenario,
            policies,
            seeds,
            output,
        }) => cmd_compare(
            &scenario,
            &policies.unwrap_or_else(all_policies),
            seeds,
            &output,
        ),
        Some(Command::Plan {
            services,
            profile,
            tenant_by,
            strict,
            format,
        }) => cmd_plan(&services, &profile, &tenant_by, strict, format),
        Some(Command::Replay {
            trace,
            scenario,
            policy,
            output,
        }) => cmd_replay(&trace, scenario.as_deref(), policy.as_deref(), &output),
        Some(Command::Sweep {
            scenario,
            params,
            seeds,
            shard,
            out,
        }) => cmd_sweep(&scenario, &params, seeds, &shard, &out),
        Some(Command::Merge {
            files,
            out,
            partial,
        }) => {
            let completeness = if partial {
                Completeness::Partial
            } else {
                Completeness::Whole
            };
            cmd_merge(&files, out.as_deref(), completeness)
        }
        Some(Command::Profiles) => {
            out!("{}", profiles_table());
            Ok(())
        }
        Some(Command::Glossary) => {
            for (term, meaning) in GLOSSARY {
                outln!("{term}\n    {meaning}");
            }
            Ok(())
        }
    }
}

/// The built-in profiles, aligned, each price with its currency and period.
fn profiles_table() -> String {
    let rows: Vec<[String; 5]> = builtin_profiles()
        .into_iter()
        .map(|p| {
            let protos: Vec<&str> = p.protocols.iter().map(|x| x.as_str()).collect();
            let cap = p.monthly_cap.map_or_else(String::new, |c| {
                format!(" (hourly {:.4}, capped at {c:.2}/month)", p.hourly_price)
            });
            [
                p.name.to_string(),
                p.max_listeners.to_string(),
                format!("{:.2} {}/month", p.price_per_month(), p.currency),
                protos.join(","),
                cap,
            ]
        })
        .collect();
    let head = ["profile", "listeners", "price", "protocols", ""];
    let mut w = [0usize; 5];
    for r in rows
        .iter()
        .map(|r| r.each_ref().map(String::as_str))
        .chain([head])
    {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = format!(
        "{:<a$}  {:>b$}  {:>c$}  {}\n",
        head[0],
        head[1],
        head[2],
        head[3],
        a = w[0],
        b = w[1],
        c = w[2]
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<a$}  {:>b$}  {:>c$}  {}{}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            a = w[0],
            b = w[1],
            c = w[2]
        );
    }
    out
}

/// The table source text of a scenario argument (`default` or none = built-in).
fn scenario_source(path: Option<&Path>) -> Result<(String, String)> {
    match path {
        None => Ok((
            scenario::DEFAULT_SCENARIO.to_owned(),
            "<built-in default>".to_owned(),
        )),
        Some(p) if p.as_os_str() == "default" => Ok((
            scenario::DEFAULT_SCENARIO.to_owned(),
            "<built-in default>".to_owned(),
        )),
        Some(p) => {
            let origin = p.display().to_string();
            let src = std::fs::read_to_string(p)
                .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
            Ok((src, origin))
        }
    }
}

fn load_scenario(
    path: Option<&Path>,
    policy: Option<&str>,
    seed: Option<u64>,
    purpose: Purpose,
) -> Result<Scenario> {
    let (src, origin) = scenario_source(path)?;
    let mut s = Scenario::from_toml_for(&src, &origin, purpose)?;
    if let Some(p) = policy {
        s.allocator.policy = parse_policy(p)?;
    }
    if let Some(seed) = seed {
        s.seed = seed;
    }
    Ok(s)
}

fn parse_policy(p: &str) -> Result<PolicyKind> {
    Ok(p.parse::<PolicyKind>()
        .map_err(|e| InputError::new("--policy", None, "", &e.to_string()))?)
}

/// Progress bars only for a person watching: stdout and stderr are terminals, no `--quiet`.
fn interactive(quiet: bool) -> bool {
    !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A bar counting finished runs of a parallel job.
fn runs_bar(n: usize, quiet: bool) -> ProgressBar {
    let target = if interactive(quiet) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(n as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} elapsed, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs with a progress bar on stderr when it is a terminal and the run takes over a second.
#[allow(clippy::disallowed_methods)] // The CLI shell may read the wall clock for its progress bar.
fn run_with_progress(mut sim: Simulation, quiet: bool) -> (Summary, Vec<Sample>) {
    let start = std::time::Instant::now();
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {percent:>3}% simulated, {elapsed} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let interactive = interactive(quiet);
    let chunk = (sim.end_ms() / 500).max(1);
    let mut shown = false;
    while !sim.is_done() {
        let next = sim.now_ms().saturating_add(chunk);
        sim.run_until(next, u64::MAX);
        if interactive && !shown && start.elapsed().as_secs_f64() > 1.0 {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_position((sim.progress() * 1000.0) as u64);
    }
    sim.run_until(u64::MAX, u64::MAX);
    bar.finish_and_clear();
    sim.finish()
}

/// Checks before any work that `--out DIR` can be written: a run must not end, after
/// minutes, on a directory it cannot create.
fn check_out_dir(dir: &Path) -> Result<()> {
    let bad = |m: String| InputError::new("--out", None, "", &m);
    if dir.exists() && !dir.is_dir() {
        return Err(bad(format!("{} exists and is not a directory", dir.display())).into());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(".sharedlb-write-test");
    std::fs::write(&probe, b"")
        .map_err(|e| bad(format!("cannot write in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Checks, before any work, that `--out FILE` can be written (a file, in a directory
/// that exists or can be made).
fn check_out_file(file: &Path) -> Result<()> {
    let bad = |m: String| InputError::new("--out", None, "", &m);
    if file.is_dir() {
        return Err(bad(format!("{} is a directory; name a file", file.display())).into());
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        check_out_dir(dir)?;
    }
    if file.exists() {
        // Opened to append, to ask the system, and left as it is until the merge is done.
        std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map_err(|e| bad(format!("cannot write {}: {e}", file.display())))?;
    }
    Ok(())
}

fn write_outputs(
    dir: &Path,
    summary_json: &str,
    csv: &[(String, String)],
    html: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("summary.json"), summary_json).context("writing summary.json")?;
    for (name, content) in csv {
        std::fs::write(dir.join(name), content).with_context(|| format!("writing {name}"))?;
    }
    std::fs::write(dir.join("report.html"), html).context("writing report.html")?;
    Ok(())
}

fn emit(summary: &Summary, samples: &[Sample], output: &Output) -> Result<()> {
    let json = serde_json::to_string_pretty(summary)? + "\n";
    match output.format {
        Format::Table => out!("{}", report::summary_table(summary)),
        Format::Json => out!("{json}"),
    }
    if let Some(dir) = &output.out {
        let group = RunGroup {
            label: summary.policy.clone(),
            summaries: vec![summary.clone()],
            samples: samples.to_vec(),
        };
        let html = report::html_report(&summary.scenario, &[group]);
        write_outputs(
            dir,
            &json,
            &[("timeseries.csv".into(), report::samples_csv(samples))],
            &html,
        )?;
        if output.format == Format::Table {
            outln!(
                "wrote {}/summary.json, timeseries.csv, report.html",
                dir.display()
            );
        }
    }
    Ok(())
}

fn unknown_profile(flag: &str, name: &str) -> InputError {
    let names: Vec<String> = builtin_profiles()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    InputError::new(
        flag,
        None,
        "",
        &format!("unknown profile {name:?} (known: {})", names.join(", ")),
    )
}

fn cmd_run(
    path: Option<&Path>,
    policy: Option<&str>,
    seed: Option<u64>,
    profile: Option<&str>,
    output: &Output,
) -> Result<()> {
    let mut s = load_scenario(path, policy, seed, Purpose::Run)?;
    if let Some(name) = profile {
        if builtin_profile(name).is_none() {
            return Err(unknown_profile("--profile", name).into());
        }
        let mut spec = s.profile_specs().remove(0);
        name.clone_into(&mut spec.name);
        spec.max_listeners = None;
        spec.hourly_price = None;
        s.profiles = vec![spec];
        s.check("--profile")?;
    }
    if let Some(dir) = &output.out {
        check_out_dir(dir)?;
    }
    let sim = Simulation::new(&s)
        .map_err(|e| InputError::new(&s.name, None, "allocator", &e.to_string()))?;
    let (summary, samples) = run_with_progress(sim, output.quiet);
    emit(&summary, &samples, output)
}

fn cmd_compare(path: &Path, policies: &str, seeds: u64, output: &Output) -> Result<()> {
    let base = load_scenario(Some(path), None, None, Purpose::Run)?;
    check_seeds(base.seed, seeds, &base.name)?;
    let kinds: Vec<PolicyKind> = policies
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<PolicyKind>()
                .map_err(|e| InputError::new("--policies", None, "", &e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(k) = kinds
        .iter()
        .enumerate()
        .find_map(|(i, k)| kinds[..i].contains(k).then_some(k))
    {
        return Err(InputError::new(
            "--policies",
            None,
            "",
            &format!("{k} is given twice (each policy once: its runs would be the same)"),
        )
        .into());
    }
    if let Some(dir) = &output.out {
        check_out_dir(dir)?;
    }
    // Jobs are made as they run, not listed up front: policy i, seed j is job i·seeds + j.
    let n = kinds.len() as u64 * seeds;
    let bar = runs_bar(n as usize, output.quiet);
    let results: Vec<(u64, Summary, Option<Vec<Sample>>)> = (0..n)
        .into_par_iter()
        .map(|job| {
            let (i, j) = (job / seeds, job % seeds);
            let mut s = base.clone();
            s.allocator.policy = kinds[i as usize];
            s.seed = base.seed.wrapping_add(j);
            let (sum, samples) = sharedlb_simulator::run(&s)
                .map_err(|e| InputError::new(&s.name, None, "allocator", &e.to_string()))?;
            bar.inc(1);
            // Only the first seed's time series is kept, for the charts of --out (up to a
            // million samples per policy: nothing kept that no output shows).
            Ok((i, sum, (j == 0 && output.out.is_some()).then_some(samples)))
        })
        .collect::<Result<_, InputError>>()?;
    bar.finish_and_clear();
    let mut groups: Vec<RunGroup> = kinds
        .iter()
        .map(|k| RunGroup {
            label: k.to_string(),
            summaries: Vec::new(),
            samples: Vec::new(),
        })
        .collect();
    for (i, sum, samples) in results {
        let g = &mut groups[i as usize];
        g.summaries.push(sum);
        if let Some(samples) = samples {
            g.samples = samples;
        }
    }
    let table: Vec<(String, Vec<Summary>)> = groups
        .iter()
        .map(|g| (g.label.clone(), g.summaries.clone()))
        .collect();
    let all: Vec<&Summary> = groups.iter().flat_map(|g| g.summaries.iter()).collect();
    let json = serde_json::to_string_pretty(&all)? + "\n";
    match output.format {
        Format::Table => {
            outln!(
                "scenario {} — {} seed(s) per policy, mean ±95% interval",
                base.name,
                seeds
            );
            for g in &groups {
                if let Some(s) = g.summaries.iter().find(|s| !s.all_served())
                    && let Some(w) = report::service_warning(s)
                {
                    outln!("{}", report::wrap(&format!("{}: {w}", g.label), 96));
                }
            }
            out!("{}", report::compare_table(&table));
            out!("{}", report::verdict(&table));
            outln!(
                "(every figure: sharedlb-sim glossary; all metrics: --format json or --out DIR)"
            );
        }
        Format::Json => out!("{json}"),
    }
    if let Some(dir) = &output.out {
        let csv: Vec<(String, String)> = groups
            .iter()
            .map(|g| {
                (
                    format!("timeseries-{}.csv", g.label.replace(':', "_")),
                    report::samples_csv(&g.samples),
                )
            })
            .collect();
        let html = report::html_report(&format!("{} — policies compared", base.name), &groups);
        write_outputs(dir, &json, &csv, &html)?;
        if output.format == Format::Table {
            outln!(
                "wrote {}/summary.json, timeseries-*.csv, report.html",
                dir.display()
            );
        }
    }
    Ok(())
}

/// `plan --strict` found Services that cannot be placed: exit code 3.
#[derive(Debug)]
struct Unplaceable(String);

impl std::fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unplaceable {}

fn cmd_plan(
    services: &Path,
    profile: &str,
    tenant_by: &str,
    strict: bool,
    format: Format,
) -> Result<()> {
    let tenant_by: plan::TenantBy = tenant_by
        .parse()
        .map_err(|m: String| InputError::new("--tenant-by", None, "", &m))?;
    let p = builtin_profile(profile).ok_or_else(|| unknown_profile("--profile", profile))?;
    let origin = services.display().to_string();
    let src = std::fs::read_to_string(services)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let svcs = plan::services(&src, &origin, &tenant_by)?;
    let r = plan::plan_services(&svcs, &p)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => out!("{}", plan::plan_table(&r)),
    }
    if !r.unplaced.is_empty() {
        let msg = format!(
            "{} of {} Services cannot be placed on {} LBs; left out of both sides of the \
             comparison (see above)",
            r.unplaced.len(),
            r.services,
            r.profile
        );
        if strict {
            return Err(Unplaceable(msg).into());
        }
        say!("warning: {msg}");
    }
    Ok(())
}

fn cmd_replay(
    trace_path: &Path,
    scenario_path: Option<&Path>,
    policy: Option<&str>,
    output: &Output,
) -> Result<()> {
    let mut s = load_scenario(scenario_path, policy, None, Purpose::Replay)?;
    let origin = trace_path.display().to_string();
    // The report names what ran: this trace, with the scenario's allocator and profiles.
    let file = trace_path
        .file_name()
        .map_or_else(|| origin.clone(), |f| f.to_string_lossy().into_owned());
    s.name = format!("replay of {file}");
    let src = std::fs::read_to_string(trace_path)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let events = trace::parse_trace(&src, &origin)?;
    s.check_replay(&events, &origin)?;
    if let Some(dir) = &output.out {
        check_out_dir(dir)?;
    }
    let sim = Simulation::replay(&s, events)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let (summary, samples) = run_with_progress(sim, output.quiet);
    emit(&summary, &samples, output)
}

/// Grid points run at once, in order, so output streams in a fixed order.
const SWEEP_CHUNK: u64 = 64;

fn cmd_sweep(path: &Path, params: &[String], seeds: u64, shard: &str, out: &Path) -> Result<()> {
    let (src, origin) = scenario_source(Some(path))?;
    // The file alone first: its own problems are named by its lines.
    Scenario::from_toml(&src, &origin)?;
    let base: toml::Table =
        toml::from_str(&src).map_err(|e| InputError::toml(&origin, &src, &e))?;
    let axes = params
        .iter()
        .map(|p| parse_axis(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (i, n) = parse_shard(shard)?;
    let fingerprint = sweep_fingerprint(&base, &axes, seeds);
    let grid = Grid::new(axes)?;
    let sweep = SweepId {
        fingerprint,
        points: usize::try_from(grid.len()).unwrap_or(usize::MAX),
        runs: usize::try_from(seeds).unwrap_or(usize::MAX),
    };
    check_out_dir(out)?;
    // This shard's points, made one by one: point k for k ≡ i (mod n).
    let mine: Vec<u64> = (i as u64..grid.len()).step_by(n).collect();
    let build = |k: u64| -> Result<(Vec<String>, Scenario), InputError> {
        let point = grid.point(k);
        let mut table = base.clone();
        for (path, v) in &point {
            set_path(&mut table, path, v.clone())?;
        }
        let params: Vec<String> = point.iter().map(|(p, v)| format!("{p}={v}")).collect();
        let label = params.join(" ");
        let s = Scenario::from_table(&table, &format!("--param {label}"))?;
        check_seeds(s.seed, seeds, &format!("--param {label}"))?;
        Ok((params, s))
    };
    // Every point is checked before any runs: a bad value fails at once, not after hours.
    for &k in &mine {
        build(k)?;
    }
    let file = out.join(format!("shard-{i}-of-{n}.jsonl"));
    let mut writer = std::io::BufWriter::new(
        std::fs::File::create(&file).with_context(|| format!("writing {}", file.display()))?,
    );
    let bar = runs_bar((mine.len() as u64 * seeds) as usize, false);
    let mut runs = 0u64;
    for chunk in mine.chunks(SWEEP_CHUNK as usize) {
        let jobs = chunk.len() as u64 * seeds;
        let results: Vec<SweepResult> = (0..jobs)
            .into_par_iter()
            .map(|j| {
                let (k, run) = (chunk[(j / seeds) as usize], j % seeds);
                let (params, mut s) = build(k)?;
                s.seed = s.seed.wrapping_add(run);
                let (summary, _) = sharedlb_simulator::run(&s)
                    .map_err(|e| InputError::new(&s.name, None, "", &e.to_string()))?;
                bar.inc(1);
                Ok(SweepResult {
                    point: k as usize,
                    run: run as usize,
                    sweep: sweep.clone(),
                    params,
                    summary,
                })
            })
            .collect::<Result<_, InputError>>()?;
        for r in &results {
            use std::io::Write as _;
            writeln!(writer, "{}", serde_json::to_string(r)?)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        runs += jobs;
    }
    {
        use std::io::Write as _;
        writer
            .flush()
            .with_context(|| format!("writing {}", file.display()))?;
    }
    bar.finish_and_clear();
    outln!(
        "{} of {} grid points, {} runs → {}",
        mine.len(),
        grid.len(),
        runs,
        file.display()
    );
    Ok(())
}

/// Runs of `seeds` seeds from `seed` use seeds up to `seed + seeds - 1`: each must be one
/// a run can be given again (`--seed`), so none past [`scenario::MAX_SEED`].
fn check_seeds(seed: u64, seeds: u64, what: &str) -> Result<(), InputError> {
    if seed.saturating_add(seeds - 1) > scenario::MAX_SEED {
        return Err(InputError::new(
            "--seeds",
            None,
            "",
            &format!(
                "{seeds} seeds from {what}'s seed {seed} go past {}, the largest seed",
                scenario::MAX_SEED
            ),
        ));
    }
    Ok(())
}

/// The identity of a sweep: its scenario as parsed (comments and layout do not count),
/// its axes and its seed count.
fn sweep_fingerprint(base: &toml::Table, axes: &[Axis], seeds: u64) -> String {
    use std::hash::Hasher as _;
    let mut h = fnv::FnvHasher::default();
    // Another version may simulate otherwise: its results are another sweep's.
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    h.write(toml::to_string(base).unwrap_or_default().as_bytes());
    for a in axes {
        h.write(b"\n--param ");
        h.write(a.path.as_bytes());
        for v in &a.values {
            h.write(b"\x1f");
            h.write(v.to_string().as_bytes());
        }
    }
    h.write(format!("\n--seeds {seeds}").as_bytes());
    format!("{:016x}", h.finish())
}

/// Reads sweep results, all of one sweep, each run once; with `completeness`
/// `Completeness::Whole`, every run of the sweep.
fn read_results(files: &[PathBuf], completeness: Completeness) -> Result<Vec<SweepResult>> {
    // Each result with where it was read, for the messages.
    let mut all: Vec<(SweepResult, String)> = Vec::new();
    for f in files {
        let origin = f.display().to_string();
        let src = std::fs::read_to_string(f)
            .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
        for (i, line) in src
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let r: SweepResult = serde_json::from_str(line).map_err(|e| {
                InputError::new(
                    &origin,
                    Some(i + 1),
                    "",
                    &format!("not a sweep result (or one written before sweeps had an identity; run it again): {e}"),
                )
            })?;
            if r.sweep.points as u64 > MAX_POINTS || r.sweep.runs as u64 > MAX_SEEDS {
                return Err(InputError::new(
                    &origin,
                    Some(i + 1),
                    "sweep",
                    &format!(
                        "a sweep of {} points of {} runs: at most {MAX_POINTS} points of \
                         {MAX_SEEDS} runs are made",
                        r.sweep.points, r.sweep.runs
                    ),
                )
                .into());
            }
            if let Some((first, at)) = all.first()
                && first.sweep != r.sweep
            {
                return Err(InputError::new(
                    &origin,
                    Some(i + 1),
                    "sweep",
                    &format!(
                        "a result of another sweep than {at} (its scenario, --param axes or \
                         --seeds differ): merge the shards of one sweep (a shard left from an \
                         earlier run?)"
                    ),
                )
                .into());
            }
            all.push((r, format!("{origin}:{}", i + 1)));
        }
    }
    let Some((first, _)) = all.first() else {
        return Err(InputError::new("merge", None, "", "no results in the given files").into());
    };
    let sweep = first.sweep.clone();
    all.sort_by_key(|(r, _)| (r.point, r.run));
    let mut out: Vec<SweepResult> = Vec::with_capacity(all.len());
    let mut last_at = String::new();
    for (r, at) in all {
        if r.point >= sweep.points || r.run >= sweep.runs {
            return Err(InputError::new(
                &at,
                None,
                "point",
                &format!(
                    "point #{} run {} is outside its sweep ({} points, {} runs each)",
                    r.point, r.run, sweep.points, sweep.runs
                ),
            )
            .into());
        }
        match out.last() {
            // The same shard given twice (or two shard counts of one sweep): one copy.
            Some(prev) if (prev.point, prev.run) == (r.point, r.run) => {
                if *prev != r {
                    return Err(InputError::new(
                        &at,
                        None,
                        "",
                        &format!(
                            "point #{} run {} differs from the one at {last_at}: one sweep's \
                             runs are deterministic, so one of the files was changed",
                            r.point, r.run
                        ),
                    )
                    .into());
                }
            }
            _ => {
                out.push(r);
                last_at = at;
            }
        }
    }
    let expected = sweep.points.saturating_mul(sweep.runs);
    if out.len() < expected {
        // Runs found per point, in one pass (the points are bounded above).
        let mut found = vec![0usize; sweep.points];
        for r in &out {
            found[r.point] += 1;
        }
        let mut missing_points: Vec<usize> = (0..sweep.points)
            .filter(|&p| found[p] < sweep.runs)
            .collect();
        let more = missing_points.len().saturating_sub(8);
        missing_points.truncate(8);
        let list = missing_points
            .iter()
            .map(|p| format!("#{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let list = if more > 0 {
            format!("{list} and {more} more")
        } else {
            list
        };
        let message = format!(
            "{} of the sweep's {expected} runs are missing (points {list}): a shard was not \
             given or did not finish",
            expected - out.len()
        );
        match completeness {
            Completeness::Whole => {
                return Err(InputError::new(
                    "merge",
                    None,
                    "",
                    &format!("{message}; --partial merges what there is"),
                )
                .into());
            }
            Completeness::Partial => say!("note: {message}"),
        }
    }
    Ok(out)
}

/// Whether a merge needs every run of the sweep.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Completeness {
    Whole,
    Partial,
}

fn cmd_merge(files: &[PathBuf], out: Option<&Path>, completeness: Completeness) -> Result<()> {
    if let Some(out) = out {
        check_out_file(out)?;
    }
    let all = read_results(files, completeness)?;
    let mut groups: Vec<(String, Vec<Summary>)> = Vec::new();
    for r in &all {
        let label = format!("#{} {}", r.point, r.params.join(" "));
        match groups.last_mut() {
            Some((l, v)) if *l == label => v.push(r.summary.clone()),
            _ => groups.push((label, vec![r.summary.clone()])),
        }
    }
    for (label, runs) in &groups {
        let get =
            |f: fn(&Summary) -> f64| report::mean_ci(&runs.iter().map(f).collect::<Vec<_>>()).0;
        let currency = runs.first().map_or("", |s| s.currency.as_str());
        // Figures that may not exist (a bound of 0, no wait measured): n/a when no run has it.
        let mean_of = |f: fn(&Summary) -> Option<f64>, digits: usize, unit: &str| {
            report::metric_ci(runs, f)
                .map_or_else(|| "n/a".to_owned(), |(x, _)| format!("{x:.digits$}{unit}"))
        };
        outln!(
            "{label}: n={} served {}, LBs {:.2}, {:.2} {currency}/month, LBs/bound {}, wait p95 {}",
            runs.len(),
            report::pct_or_na(report::metric_ci(runs, |s| s.served_fraction).map(|(x, _)| x)),
            get(|s| s.lbs_mean),
            get(|s| s.cost_per_month),
            mean_of(|s| s.lbs_over_lower_bound, 3, ""),
            mean_of(|s| s.waits.measured(s.waits.p95_s), 1, " s"),
        );
    }
    // What `run` prints under its header (monthly caps over a short run, say), once per
    // note with the points it concerns.
    let mut notes: std::collections::BTreeMap<&str, std::collections::BTreeSet<usize>> =
        std::collections::BTreeMap::new();
    for r in &all {
        for n in &r.summary.notes {
            notes.entry(n.as_str()).or_default().insert(r.point);
        }
    }
    for (note, points) in notes {
        let points: Vec<String> = points.iter().map(|p| format!("#{p}")).collect();
        outln!("note ({}): {note}", points.join(", "));
    }
    if let Some(out) = out {
        let mut text = String::new();
        for r in &all {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
