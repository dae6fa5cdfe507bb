//! The fuzzing harness shared by the cargo-fuzz target (`simulator/fuzz`) and the
//! property tests: every user input goes through its parser and, when accepted, through
//! the run it would start, with a cap on the events processed. Whatever the input, these
//! functions must return: no panic, no hang, no runaway memory.

use crate::Simulation;
use crate::scenario::Scenario;

/// Events a fuzzed run may process; the parsers' ranges bound the rest.
pub const MAX_EVENTS: u64 = 2_000;

/// Which input a fuzz case is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A scenario TOML file.
    Scenario,
    /// A trace, JSON Lines or CSV.
    Trace,
    /// A Service list, JSON or YAML.
    Services,
}

impl Kind {
    /// Every kind, in the order of their tag bytes.
    pub const ALL: [Kind; 3] = [Kind::Scenario, Kind::Trace, Kind::Services];

    /// The tag byte that starts a fuzz case of this kind.
    pub fn tag(self) -> u8 {
        match self {
            Kind::Scenario => b's',
            Kind::Trace => b't',
            Kind::Services => b'k',
        }
    }
}

/// A fuzz case: a tag byte (`s`, `t` or `k`; anything else picks by its value) and the
/// input's text.
pub fn case(data: &[u8]) -> bool {
    let Some((&tag, rest)) = data.split_first() else {
        return false;
    };
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.tag() == tag)
        .unwrap_or(Kind::ALL[usize::from(tag) % 3]);
    let text = String::from_utf8_lossy(rest);
    input(kind, &text)
}

/// Runs one input of a kind; whether it was accepted.
pub fn input(kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Scenario => scenario(text),
        Kind::Trace => trace(text),
        Kind::Services => services(text),
    }
}

/// A scenario: parsed, and when valid, run for at most [`MAX_EVENTS`] events.
pub fn scenario(text: &str) -> bool {
    let Ok(s) = Scenario::from_toml(text, "fuzz.toml") else {
        return false;
    };
    let sim =
        Simulation::new(&s).unwrap_or_else(|e| panic!("a valid scenario failed to start: {e}"));
    run_capped(sim);
    true
}

/// A trace: parsed, and when valid, replayed on the default scenario for at most
/// [`MAX_EVENTS`] events.
pub fn trace(text: &str) -> bool {
    let Ok(events) = crate::trace::parse_trace(text, "fuzz.trace") else {
        return false;
    };
    let s = Scenario::default_scenario();
    let sim = Simulation::replay(&s, events)
        .unwrap_or_else(|e| panic!("a valid trace failed to start: {e}"));
    run_capped(sim);
    true
}

/// A Service list: parsed, and when valid, planned on two profiles.
pub fn services(text: &str) -> bool {
    let Ok(svcs) = crate::plan::services(text, "fuzz.json", &crate::plan::TenantBy::Namespace)
    else {
        return false;
    };
    for name in ["aws-nlb", "metallb-shared-ip"] {
        let profile = sharedlb_allocator::builtin_profile(name)
            .unwrap_or_else(|| unreachable!("built-in profile {name}"));
        let r = crate::plan::plan_services(&svcs, &profile)
            .unwrap_or_else(|e| panic!("valid Services failed to plan: {e}"));
        assert!(r.lbs_today >= r.placeable.min(1), "{r:?}");
        assert!(r.monthly_cost_today.is_finite() && r.monthly_cost_shared.is_finite());
        let _ = crate::plan::plan_table(&r);
    }
    true
}

fn run_capped(mut sim: Simulation) {
    sim.run_until(u64::MAX, MAX_EVENTS);
    let (summary, samples) = sim.finish();
    for x in [summary.cost_per_month, summary.lbs_mean]
        .into_iter()
        .chain(summary.served_fraction)
        .chain(summary.utilisation)
        .chain(summary.lbs_over_lower_bound)
    {
        assert!(x.is_finite(), "a figure is not finite: {summary:?}");
    }
    let _ = crate::report::summary_table(&summary);
    assert!(samples.len() <= 1_000_001);
}
