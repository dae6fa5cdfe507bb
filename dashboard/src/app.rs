//! The Leptos components: overview, port map, tenants, and the in-page simulator.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use sharedlb_allocator::view::StateView;
use sharedlb_allocator::{Listener, PolicyKind};
use sharedlb_simulator::scenario::{Dur, DurationDist};
use sharedlb_simulator::{Sample, Scenario, Simulation, Summary};

use crate::viewmodel::{self, Card};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Overview,
    Ports,
    Tenants,
    Simulate,
}

fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search.trim_start_matches('?').split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%3A", ":").replace("%2F", "/"))
    })
}

/// Why the state could not be read: with the HTTP status when something answered.
struct FetchError {
    status: Option<u16>,
    message: String,
}

impl FetchError {
    /// Whether a controller answered (not ready, say), rather than nothing being there.
    fn a_controller_answered(&self) -> bool {
        self.status.is_some_and(|s| s != 404)
    }
}

async fn fetch_state(url: &str) -> Result<StateView, FetchError> {
    let resp = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| FetchError {
            status: None,
            message: e.to_string(),
        })?;
    if !resp.ok() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(FetchError {
            status: Some(status),
            message: format!("{url} answered {status}: {}", body.trim()),
        });
    }
    resp.json::<StateView>().await.map_err(|e| FetchError {
        status: None,
        message: format!("{url}: {e}"),
    })
}

/// The whole page.
#[component]
pub fn App() -> impl IntoView {
    let (tab, set_tab) = signal(Tab::Overview);
    let (state, set_state) = signal(None::<StateView>);
    let (error, set_error) = signal(None::<String>);
    let (source, set_source) = signal(String::from("loading…"));

    let poll = move |url: String| {
        leptos::task::spawn_local(async move {
            match fetch_state(&url).await {
                Ok(s) => {
                    set_state.set(Some(s));
                    set_error.set(None);
                }
                Err(e) => set_error.set(Some(format!(
                    "cannot read the controller's state: {}",
                    e.message
                ))),
            }
        });
    };
    if let Some(url) = query_param("api") {
        let url = format!("{}/api/v1/state", url.trim_end_matches('/'));
        set_source.set(format!("live: {url}"));
        poll(url.clone());
        set_interval(move || poll(url.clone()), Duration::from_secs(5));
    } else {
        // Served by the controller: its API is next to the page, and a controller not
        // ready (starting, following, degraded) says so and is polled until it is; never
        // a demo in its place. With no API there at all, a demo.
        leptos::task::spawn_local(async move {
            match fetch_state("api/v1/state").await {
                Ok(s) => {
                    set_state.set(Some(s));
                    set_source.set("live: this controller".into());
                    set_interval(move || poll("api/v1/state".into()), Duration::from_secs(5));
                }
                Err(e) if e.a_controller_answered() => {
                    set_source.set("live: this controller".into());
                    set_error.set(Some(format!(
                        "cannot read the controller's state: {}",
                        e.message
                    )));
                    set_interval(move || poll("api/v1/state".into()), Duration::from_secs(5));
                }
                Err(_) => {
                    set_state.set(Some(viewmodel::demo_state(3)));
                    set_source.set("demo: the default scenario simulated in this page".into());
                }
            }
        });
    }

    let nav = move |t: Tab, label: &'static str| {
        view! {
            <button class:active=move || tab.get() == t on:click=move |_| set_tab.set(t)>
                {label}
            </button>
        }
    };
    view! {
        <header>
            <h1>"sharedlb"</h1>
            <nav>
                {nav(Tab::Overview, "Overview")}
                {nav(Tab::Ports, "Port map")}
                {nav(Tab::Tenants, "Tenants")}
                {nav(Tab::Simulate, "Simulate")}
            </nav>
            <span class="source">{move || source.get()}</span>
        </header>
        <Show when=move || error.get().is_some()>
            <div class="banner" role="alert">{move || error.get().unwrap_or_default()}</div>
        </Show>
        <main>
            {move || match tab.get() {
                Tab::Overview => view! { <Overview state=state /> }.into_any(),
                Tab::Ports => view! { <PortMap state=state /> }.into_any(),
                Tab::Tenants => view! { <Tenants state=state /> }.into_any(),
                Tab::Simulate => view! { <Simulate /> }.into_any(),
            }}
        </main>
    }
}

#[component]
fn Overview(state: ReadSignal<Option<StateView>>) -> impl IntoView {
    move || {
        let Some(s) = state.get() else {
            return view! { <p>"Loading…"</p> }.into_any();
        };
        let t = viewmodel::totals(&s);
        let pending = if t.pending.is_empty() {
            "none".to_owned()
        } else {
            t.pending
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        view! {
            <div class="totals">
                <div class="total">"Load balancers"<b class="total-lbs">{t.lbs}</b>{(t.draining > 0).then(|| format!(" ({} being deleted)", t.draining))}</div>
                <div class="total">"Listeners"<b>{format!("{} / {}", t.listeners_used, t.capacity)}</b></div>
                <div class="total">"Cost per month"<b>{format!("{:.2} {}", t.cost_per_hour * sharedlb_allocator::profile::HOURS_PER_MONTH, s.currency)}</b></div>
                <div class="total">"Savings vs one LB per Service"<b>{t.savings_pct.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.0}%"))}</b></div>
                <div class="total">"Pending"<b>{pending}</b></div>
            </div>
            <div class="cards">
                {viewmodel::cards(&s).into_iter().map(|c| view! { <LbCard card=c /> }).collect_view()}
            </div>
        }
        .into_any()
    }
}

#[component]
fn LbCard(card: Card) -> impl IntoView {
    view! {
        <div class="lb-card">
            <h3>{card.id.clone()}" · "{card.profile.clone()}</h3>
            <div>{card.state.clone()}" · "{card.address.clone()}</div>
            <div class="bar"><div style=format!("width: {:.0}%", card.fill_pct)></div></div>
            <div>{format!("{} / {} listeners", card.used, card.capacity)}</div>
            <div>
                {card
                    .chips
                    .into_iter()
                    .map(|c| {
                        view! {
                            <span class="chip" class:udp=c.udp style=format!("background: {}", c.color) title=c.claim>
                                {c.label}
                            </span>
                        }
                    })
                    .collect_view()}
            </div>
            <small>{card.claims.join(", ")}</small>
        </div>
    }
}

#[component]
fn PortMap(state: ReadSignal<Option<StateView>>) -> impl IntoView {
    let ports: Vec<Listener> = sharedlb_simulator::scenario::default_popular_ports()
        .into_iter()
        .filter_map(|p| {
            sharedlb_allocator::Port::new(p.port).map(|port| Listener::new(p.protocol, port))
        })
        .collect();
    move || {
        let Some(s) = state.get() else {
            return view! { <p>"Loading…"</p> }.into_any();
        };
        let (names, rows) = viewmodel::port_map(&s, &ports);
        view! {
            <p>"Which popular listeners are taken on which LB: a claim for a taken port needs another LB."</p>
            <table class="portmap">
                <tr><th>"listener"</th>{names.into_iter().map(|n| view! { <th>{n}</th> }).collect_view()}</tr>
                {rows
                    .into_iter()
                    .map(|(p, cells)| {
                        view! {
                            <tr>
                                <td>{p}</td>
                                {cells.into_iter().map(|on| view! { <td class:on=on></td> }).collect_view()}
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
        }
        .into_any()
    }
}

#[component]
fn Tenants(state: ReadSignal<Option<StateView>>) -> impl IntoView {
    move || {
        let Some(s) = state.get() else {
            return view! { <p>"Loading…"</p> }.into_any();
        };
        view! {
            <table>
                <tr><th>"tenant"</th><th>"weight"</th><th>"listeners"</th><th>"quota"</th><th>"fair share"</th></tr>
                {viewmodel::tenant_rows(&s)
                    .into_iter()
                    .map(|r| {
                        let color = format!("color: {}", viewmodel::tenant_color(&r.name));
                        view! {
                            <tr>
                                <td style=color>{r.name}</td>
                                <td>{r.weight}</td>
                                <td>{r.listeners}</td>
                                <td>{r.quota.map_or("—".to_owned(), |q| q.to_string())}</td>
                                <td>{format!("{:.1}", r.fair_share)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
        }
        .into_any()
    }
}

/// Runs queued simulations a slice at a time so the page stays responsive.
struct Runner {
    queue: Vec<(String, Simulation)>,
    current: Option<(String, Simulation)>,
    total: usize,
}

type Run = (String, Summary, Vec<Sample>);

#[component]
fn Simulate() -> impl IntoView {
    let (rate, set_rate) = signal(String::from("4"));
    let (life_h, set_life_h) = signal(String::from("default"));
    let (days, set_days) = signal(String::from("30"));
    let (seed, set_seed) = signal(String::from("1"));
    let (policies, set_policies) = signal(String::from("best-fit,seed,dedicated"));
    let (profile, set_profile) = signal(String::from("aws-nlb"));
    let (ports, set_ports) = signal(String::from("default"));
    let (progress, set_progress) = signal(0.0_f64);
    let (results, set_results) = signal(Vec::<Run>::new());
    let (problem, set_problem) = signal(None::<String>);
    let (running, set_running) = signal(false);

    let start = move |_| {
        let mut s = Scenario::default_scenario();
        let parse = |v: String, what: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("{what}: {v:?} is not a number"))
        };
        let setup = (|| -> Result<Vec<(String, Simulation)>, String> {
            s.workload.arrival.rate_per_hour = parse(rate.get(), "arrivals per hour")?;
            // "default" keeps the scenario's own short/long-lived mix.
            if life_h.get().trim() != "default" {
                let life = parse(life_h.get(), "mean lifetime")?;
                s.workload.lifetime = DurationDist::Exponential {
                    mean: Dur((life * 3_600_000.0).max(1.0) as u64),
                };
            }
            if profile.get().trim() != "aws-nlb" {
                let name = profile.get().trim().to_owned();
                if sharedlb_allocator::builtin_profile(&name).is_none() {
                    return Err(format!("profile: unknown profile {name:?}"));
                }
                if let Some(p) = s.profiles.first_mut() {
                    p.name = name;
                }
            }
            if ports.get().trim() != "default" {
                // e.g. "443, 80, 53/UDP": the popular ports, most popular first.
                s.workload.popular_ports = ports
                    .get()
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| {
                        let (n, proto) = p.trim().split_once('/').unwrap_or((p.trim(), "TCP"));
                        Ok(sharedlb_simulator::scenario::PopularPort {
                            port: n
                                .parse()
                                .map_err(|_| format!("ports: {n:?} is not a port"))?,
                            protocol: proto
                                .parse()
                                .map_err(|e: sharedlb_allocator::Error| format!("ports: {e}"))?,
                        })
                    })
                    .collect::<Result<_, String>>()?;
            }
            let d = parse(days.get(), "days")?;
            let duration = Dur((d * 86_400_000.0).max(3_600_000.0) as u64);
            if duration != s.duration {
                s.duration = duration;
                s.warmup = Dur(s.duration.ms() / 10);
            }
            s.seed = seed
                .get()
                .trim()
                .parse()
                .map_err(|_| "seed must be a whole number".to_owned())?;
            s.check("form").map_err(|e| e.to_string())?;
            policies
                .get()
                .split(',')
                .map(|p| {
                    let kind: PolicyKind = p
                        .trim()
                        .parse()
                        .map_err(|e: sharedlb_allocator::Error| e.to_string())?;
                    let mut s = s.clone();
                    s.allocator.policy = kind;
                    Simulation::new(&s)
                        .map(|sim| (kind.to_string(), sim))
                        .map_err(|e| e.to_string())
                })
                .collect()
        })();
        match setup {
            Err(e) => set_problem.set(Some(e)),
            Ok(mut sims) => {
                set_problem.set(None);
                set_results.set(Vec::new());
                set_running.set(true);
                sims.reverse();
                let total = sims.len();
                let runner = Rc::new(RefCell::new(Runner {
                    queue: sims,
                    current: None,
                    total,
                }));
                step(runner, set_progress, set_results, set_running);
            }
        }
    };

    view! {
        <form on:submit=move |ev| ev.prevent_default()>
            <label>"Arrivals per hour"<input id="rate" prop:value=rate on:input=move |e| set_rate.set(event_target_value(&e)) /></label>
            <label>"Mean lifetime (hours, or default)"<input id="life" prop:value=life_h on:input=move |e| set_life_h.set(event_target_value(&e)) /></label>
            <label>"Days"<input id="days" prop:value=days on:input=move |e| set_days.set(event_target_value(&e)) /></label>
            <label>"Seed"<input id="seed" prop:value=seed on:input=move |e| set_seed.set(event_target_value(&e)) /></label>
            <label>"Profile"<input id="profile" prop:value=profile on:input=move |e| set_profile.set(event_target_value(&e)) /></label>
            <label>"Popular ports (or default)"<input id="ports" prop:value=ports on:input=move |e| set_ports.set(event_target_value(&e)) /></label>
            <label>"Policies"<input id="policies" prop:value=policies on:input=move |e| set_policies.set(event_target_value(&e)) /></label>
            <button id="run" type="button" disabled=running on:click=start>"Run"</button>
        </form>
        <p>"The built-in default scenario (as `sharedlb-sim run`), with the rate, lifetime, length and seed above: unchanged fields give the CLI's results."</p>
        <Show when=move || problem.get().is_some()>
            <div class="banner" role="alert">{move || problem.get().unwrap_or_default()}</div>
        </Show>
        <div class="progress"><div style=move || format!("width: {:.0}%", progress.get() * 100.0)></div></div>
        {move || {
            let runs = results.get();
            if runs.is_empty() {
                return view! { <p></p> }.into_any();
            }
            view! {
                <Charts runs=runs.clone() />
                <table class="summary">
                    <tr><th>"policy"</th><th>"served"</th><th>"LBs (mean)"</th><th>"LBs / bound"</th><th>"cost / month"</th><th>"savings"</th><th>"wait p95 (s)"</th></tr>
                    {runs
                        .into_iter()
                        .map(|(p, s, _)| {
                            view! {
                                <tr>
                                    <td>{p}</td>
                                    <td>{s.served_fraction.map_or_else(|| "n/a".to_owned(), |f| format!("{:.1}%", 100.0 * f))}</td>
                                    <td>{format!("{:.1}", s.lbs_mean)}</td>
                                    <td>{s.lbs_over_lower_bound.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}"))}</td>
                                    <td>{format!("{:.2} {}", s.cost_per_month, s.currency)}</td>
                                    <td>{s.savings_fraction.map_or_else(|| "n/a".to_owned(), |x| format!("{:.0}%", 100.0 * x))}</td>
                                    <td>{s.waits.measured(s.waits.p95_s).map_or_else(|| "n/a".to_owned(), |x| format!("{x:.0}"))}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </table>
            }
            .into_any()
        }}
    }
}

fn step(
    runner: Rc<RefCell<Runner>>,
    set_progress: WriteSignal<f64>,
    set_results: WriteSignal<Vec<Run>>,
    set_running: WriteSignal<bool>,
) {
    let finished = {
        let mut r = runner.borrow_mut();
        if r.current.is_none() {
            r.current = r.queue.pop();
        }
        let done_before = r.total - r.queue.len() - usize::from(r.current.is_some());
        let total = r.total.max(1) as f64;
        match r.current.as_mut() {
            None => true,
            Some((_, sim)) => {
                sim.run_until(u64::MAX, 20_000);
                let frac = (done_before as f64 + sim.progress()) / total;
                set_progress.set(frac);
                if sim.is_done()
                    && let Some((name, sim)) = r.current.take()
                {
                    let (summary, samples) = sim.finish();
                    set_results.update(|v| v.push((name, summary, samples)));
                }
                false
            }
        }
    };
    if finished {
        set_progress.set(1.0);
        set_running.set(false);
    } else {
        set_timeout(
            move || step(runner, set_progress, set_results, set_running),
            Duration::from_millis(0),
        );
    }
}

/// A line chart of named series with a caption; small and reusable.
#[component]
fn Chart(
    series: Vec<(String, viewmodel::Points)>,
    class: &'static str,
    caption: String,
) -> impl IntoView {
    let (w, h) = (760.0, 220.0);
    let x_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1e-9, f64::max)
        * 1.1;
    view! {
        <svg class=format!("chart {class}") width=w + 140.0 height=h + 20.0 viewBox=format!("0 0 {} {}", w + 140.0, h + 20.0)>
            {series
                .into_iter()
                .enumerate()
                .map(|(i, (name, pts))| {
                    let color = viewmodel::PALETTE[i % viewmodel::PALETTE.len()].to_owned();
                    view! {
                        <path d=viewmodel::path(&pts, w, h, x_max, y_max) fill="none" stroke=color.clone() stroke-width="2" />
                        <text x=w + 10.0 y=20.0 + 18.0 * i as f64 fill=color font-size="13">{name}</text>
                    }
                })
                .collect_view()}
            <text x="4" y=h + 16.0 font-size="11">{format!("{caption} (x to {x_max:.0}, y to {:.2})", y_max / 1.1)}</text>
        </svg>
    }
}

/// The three charts of a set of runs: LBs against the lower bound, cost, waits.
#[component]
fn Charts(runs: Vec<Run>) -> impl IntoView {
    let per_run = |f: fn(&Sample) -> f64| -> Vec<(String, viewmodel::Points)> {
        runs.iter()
            .map(|(p, _, samples)| {
                (
                    p.clone(),
                    samples.iter().map(|x| (x.t_hours, f(x))).collect(),
                )
            })
            .collect()
    };
    let mut lbs = per_run(|x| (x.lbs_ready + x.lbs_provisioning) as f64);
    if let Some((_, _, samples)) = runs.first() {
        lbs.push(("lower bound".to_owned(), viewmodel::lb_series(samples).1));
    }
    let cost = per_run(|x| x.cost_per_hour);
    let waits: Vec<(String, viewmodel::Points)> = runs
        .iter()
        .map(|(p, s, _)| {
            (
                p.clone(),
                s.waits
                    .quantiles_s
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (i as f64 * 5.0, *w))
                    .collect(),
            )
        })
        .collect();
    view! {
        <Chart series=lbs class="lbs" caption="LBs in use against the lower bound, by hour".to_owned() />
        <Chart series=cost class="cost" caption="cost per hour, by hour".to_owned() />
        <Chart series=waits class="waits" caption="wait in seconds, by percentile".to_owned() />
    }
}
