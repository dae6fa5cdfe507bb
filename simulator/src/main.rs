//! `sharedlb-sim`: the capacity-planning CLI. With no arguments it runs the built-in
//! default scenario and prints a table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use sharedlb_allocator::{PolicyKind, builtin_profile, builtin_profiles};
use sharedlb_simulator::metrics::{Sample, Summary};
use sharedlb_simulator::sweep::{SweepResult, grid, parse_axis, parse_shard, set_path};
use sharedlb_simulator::{InputError, Scenario, Simulation, plan, report, scenario, trace};

const ALL_POLICIES: &str = "dedicated,seed,first-fit,best-fit,worst-fit,conflict-aware,cost-aware";

#[derive(Parser)]
#[command(
    name = "sharedlb-sim",
    version,
    about = "How many shared L4 load balancers, and what they cost"
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
        /// Override the seed.
        #[arg(long)]
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
        /// Comma-separated policies.
        #[arg(long, default_value = ALL_POLICIES)]
        policies: String,
        /// Seeds per policy (scenario seed, seed+1, ...).
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        #[command(flatten)]
        output: Output,
    },
    /// Plan a real cluster: Services of type LoadBalancer today vs shared.
    Plan {
        /// `kubectl get svc -A -o json` output.
        #[arg(long)]
        services: PathBuf,
        /// LB profile.
        #[arg(long, default_value = "aws-nlb")]
        profile: String,
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
        /// Seeds per grid point.
        #[arg(long, default_value_t = 1)]
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
    },
    /// List the built-in LB profiles.
    Profiles,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(input) = e.downcast_ref::<InputError>() {
                eprintln!("error: {input}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
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
            cmd_compare(Path::new("default"), ALL_POLICIES, 3, &output)
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
        }) => cmd_compare(&scenario, &policies, seeds, &output),
        Some(Command::Plan {
            services,
            profile,
            format,
        }) => cmd_plan(&services, &profile, format),
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
        Some(Command::Merge { files, out }) => cmd_merge(&files, out.as_deref()),
        Some(Command::Profiles) => {
            println!(
                "{:<22} {:>9} {:>10}  protocols",
                "profile", "listeners", "price/h"
            );
            for p in builtin_profiles() {
                let protos: Vec<&str> = p.protocols.iter().map(|x| x.as_str()).collect();
                println!(
                    "{:<22} {:>9} {:>10.4}  {}",
                    p.name,
                    p.max_listeners,
                    p.hourly_price,
                    protos.join(",")
                );
            }
            Ok(())
        }
    }
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

fn load_scenario(path: Option<&Path>, policy: Option<&str>, seed: Option<u64>) -> Result<Scenario> {
    let (src, origin) = scenario_source(path)?;
    let mut s = Scenario::from_toml(&src, &origin)?;
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
        Format::Table => print!("{}", report::summary_table(summary)),
        Format::Json => print!("{json}"),
    }
    if let Some(dir) = &output.out {
        let html = report::html_report(&summary.scenario, &[(summary.clone(), samples.to_vec())]);
        write_outputs(
            dir,
            &json,
            &[("timeseries.csv".into(), report::samples_csv(samples))],
            &html,
        )?;
        if output.format == Format::Table {
            println!(
                "wrote {}/summary.json, timeseries.csv, report.html",
                dir.display()
            );
        }
    }
    Ok(())
}

fn cmd_run(
    path: Option<&Path>,
    policy: Option<&str>,
    seed: Option<u64>,
    profile: Option<&str>,
    output: &Output,
) -> Result<()> {
    let mut s = load_scenario(path, policy, seed)?;
    if let Some(name) = profile {
        let known = builtin_profile(name).is_some();
        if !known {
            let names: Vec<String> = builtin_profiles()
                .into_iter()
                .map(|p| p.name.to_string())
                .collect();
            return Err(InputError::new(
                "--profile",
                None,
                "",
                &format!("unknown profile {name:?} (known: {})", names.join(", ")),
            )
            .into());
        }
        let mut spec = s.profile_specs().remove(0);
        name.clone_into(&mut spec.name);
        spec.max_listeners = None;
        spec.hourly_price = None;
        s.profiles = vec![spec];
    }
    let sim = Simulation::new(&s)
        .map_err(|e| InputError::new(&s.name, None, "allocator", &e.to_string()))?;
    let (summary, samples) = run_with_progress(sim, output.quiet);
    emit(&summary, &samples, output)
}

fn cmd_compare(path: &Path, policies: &str, seeds: u64, output: &Output) -> Result<()> {
    let base = load_scenario(Some(path), None, None)?;
    if seeds == 0 {
        return Err(InputError::new("--seeds", None, "", "must be >= 1").into());
    }
    let kinds: Vec<PolicyKind> = policies
        .split(',')
        .map(|p| parse_policy(p.trim()))
        .collect::<Result<_>>()?;
    let jobs: Vec<(usize, Scenario)> = kinds
        .iter()
        .enumerate()
        .flat_map(|(i, k)| {
            let base = &base;
            (0..seeds).map(move |j| {
                let mut s = base.clone();
                s.allocator.policy = *k;
                s.seed = base.seed.wrapping_add(j);
                (i, s)
            })
        })
        .collect();
    let bar = runs_bar(jobs.len(), output.quiet);
    let results: Vec<(usize, Summary, Vec<Sample>)> = jobs
        .par_iter()
        .map(|(i, s)| {
            let (sum, samples) = sharedlb_simulator::run(s)
                .map_err(|e| InputError::new(&s.name, None, "allocator", &e.to_string()))?;
            bar.inc(1);
            Ok((*i, sum, samples))
        })
        .collect::<Result<_, InputError>>()?;
    bar.finish_and_clear();
    let mut groups: Vec<(String, Vec<Summary>)> =
        kinds.iter().map(|k| (k.to_string(), Vec::new())).collect();
    let mut firsts: Vec<(Summary, Vec<Sample>)> = Vec::new();
    for (i, sum, samples) in results {
        if groups[i].1.is_empty() {
            firsts.push((sum.clone(), samples));
        }
        groups[i].1.push(sum);
    }
    let all: Vec<&Summary> = groups.iter().flat_map(|g| g.1.iter()).collect();
    let json = serde_json::to_string_pretty(&all)? + "\n";
    match output.format {
        Format::Table => {
            println!(
                "scenario {} — {} seeds per policy (mean ± 95% CI)",
                base.name, seeds
            );
            print!("{}", report::compare_table(&groups));
            print!("{}", report::verdict(&groups));
        }
        Format::Json => print!("{json}"),
    }
    if let Some(dir) = &output.out {
        let csv: Vec<(String, String)> = firsts
            .iter()
            .map(|(s, samples)| {
                (
                    format!("timeseries-{}.csv", s.policy.replace(':', "_")),
                    report::samples_csv(samples),
                )
            })
            .collect();
        let html = report::html_report(&format!("{} — policies compared", base.name), &firsts);
        write_outputs(dir, &json, &csv, &html)?;
        if output.format == Format::Table {
            println!(
                "wrote {}/summary.json, timeseries-*.csv, report.html",
                dir.display()
            );
        }
    }
    Ok(())
}

fn cmd_plan(services: &Path, profile: &str, format: Format) -> Result<()> {
    let origin = services.display().to_string();
    let src = std::fs::read_to_string(services)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let claims = plan::claims_from_services(&src, &origin)?;
    let p = builtin_profile(profile).ok_or_else(|| {
        let known: Vec<String> = builtin_profiles()
            .into_iter()
            .map(|p| p.name.to_string())
            .collect();
        InputError::new(
            "--profile",
            None,
            "",
            &format!("unknown profile {profile:?} (known: {})", known.join(", ")),
        )
    })?;
    let r =
        plan::plan(&claims, &p).map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => {
            println!(
                "{} Services of type LoadBalancer, profile {}",
                r.services, r.profile
            );
            println!(
                "  today (one LB per Service): {:>5} LBs  {:>10.2}/month",
                r.lbs_today, r.monthly_cost_today
            );
            println!(
                "  shared:                     {:>5} LBs  {:>10.2}/month  (lower bound {})",
                r.lbs_shared, r.monthly_cost_shared, r.lower_bound
            );
            if r.monthly_cost_today > 0.0 {
                println!(
                    "  savings: {:.1}%",
                    100.0 * (1.0 - r.monthly_cost_shared / r.monthly_cost_today)
                );
            }
            for (lb, cs) in &r.plan.lbs {
                let items: Vec<String> = cs
                    .iter()
                    .map(|(c, ls)| {
                        let ports: Vec<String> = ls.iter().map(ToString::to_string).collect();
                        format!("{c} [{}]", ports.join(" "))
                    })
                    .collect();
                println!("  {lb}: {}", items.join(", "));
            }
            for (c, reason) in &r.plan.unplaced {
                println!("  cannot place {c}: {reason}");
            }
        }
    }
    Ok(())
}

fn cmd_replay(
    trace_path: &Path,
    scenario_path: Option<&Path>,
    policy: Option<&str>,
    output: &Output,
) -> Result<()> {
    let s = load_scenario(scenario_path, policy, None)?;
    let origin = trace_path.display().to_string();
    let src = std::fs::read_to_string(trace_path)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let events = trace::parse_trace(&src, &origin)?;
    let sim = Simulation::replay(&s, events)
        .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
    let (summary, samples) = run_with_progress(sim, output.quiet);
    emit(&summary, &samples, output)
}

fn cmd_sweep(path: &Path, params: &[String], seeds: u64, shard: &str, out: &Path) -> Result<()> {
    let (src, origin) = scenario_source(Some(path))?;
    let base: toml::Table =
        toml::from_str(&src).map_err(|e| InputError::toml(&origin, &src, &e))?;
    let axes = params
        .iter()
        .map(|p| parse_axis(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (i, n) = parse_shard(shard)?;
    let points = grid(&axes);
    let mut jobs = Vec::new();
    for (k, point) in points.iter().enumerate().filter(|(k, _)| k % n == i) {
        let mut table = base.clone();
        for (path, v) in point {
            set_path(&mut table, path, v.clone())?;
        }
        let label = point
            .iter()
            .map(|(p, v)| format!("{p}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let s = Scenario::from_table(table, &src, &format!("{origin} with {label}"))?;
        for run in 0..seeds.max(1) {
            let mut s = s.clone();
            s.seed = s.seed.wrapping_add(run);
            jobs.push((
                k,
                run as usize,
                point
                    .iter()
                    .map(|(p, v)| format!("{p}={v}"))
                    .collect::<Vec<_>>(),
                s,
            ));
        }
    }
    let bar = runs_bar(jobs.len(), false);
    let results: Vec<SweepResult> = jobs
        .par_iter()
        .map(|(k, run, params, s)| {
            bar.inc(1);
            let (summary, _) = sharedlb_simulator::run(s)
                .map_err(|e| InputError::new(&s.name, None, "", &e.to_string()))?;
            Ok(SweepResult {
                point: *k,
                run: *run,
                params: params.clone(),
                summary,
            })
        })
        .collect::<Result<_, InputError>>()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let file = out.join(format!("shard-{i}-of-{n}.jsonl"));
    let mut text = String::new();
    for r in &results {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    println!(
        "{} of {} grid points, {} runs → {}",
        results.iter().filter(|r| r.run == 0).count(),
        points.len(),
        results.len(),
        file.display()
    );
    Ok(())
}

fn cmd_merge(files: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let mut all: Vec<SweepResult> = Vec::new();
    for f in files {
        let origin = f.display().to_string();
        let src = std::fs::read_to_string(f)
            .map_err(|e| InputError::new(&origin, None, "", &e.to_string()))?;
        for (i, line) in src
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let r: SweepResult = serde_json::from_str(line)
                .map_err(|e| InputError::new(&origin, Some(i + 1), "", &e.to_string()))?;
            all.push(r);
        }
    }
    if all.is_empty() {
        return Err(InputError::new("merge", None, "", "no results in the given files").into());
    }
    all.sort_by_key(|r| (r.point, r.run));
    all.dedup_by(|a, b| (a.point, a.run) == (b.point, b.run));
    let mut groups: Vec<(String, Vec<Summary>)> = Vec::new();
    for r in &all {
        let label = format!("#{} {}", r.point, r.params.join(" "));
        match groups.last_mut() {
            Some((l, v)) if *l == label => v.push(r.summary.clone()),
            _ => groups.push((label, vec![r.summary.clone()])),
        }
    }
    for (label, runs) in &groups {
        let (lbs, _) = report::mean_ci(&runs.iter().map(|s| s.lbs_mean).collect::<Vec<_>>());
        let (cost, _) = report::mean_ci(&runs.iter().map(|s| s.cost_per_hour).collect::<Vec<_>>());
        let (ratio, _) = report::mean_ci(
            &runs
                .iter()
                .map(|s| s.lbs_over_lower_bound)
                .collect::<Vec<_>>(),
        );
        let (p95, _) = report::mean_ci(&runs.iter().map(|s| s.waits.p95_s).collect::<Vec<_>>());
        println!(
            "{label}: n={} LBs {lbs:.2}, cost/h {cost:.4}, LBs/bound {ratio:.3}, wait p95 {p95:.1}s",
            runs.len()
        );
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
