//! sharedlb's simulator: a deterministic discrete-event simulation of a cluster whose L4
//! claims come and go while the allocator packs them onto shared load balancers; and the
//! library behind the `sharedlb-sim` capacity-planning CLI.
//!
//! Same scenario and seed give byte-identical outputs.

mod billing;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod trace;
mod tracks;
pub mod workload;

pub use engine::Simulation;
pub use error::InputError;
pub use metrics::{Sample, Summary};
pub use scenario::Scenario;

/// Runs a scenario to the end.
pub fn run(scenario: &Scenario) -> Result<(Summary, Vec<Sample>), sharedlb_allocator::Error> {
    Ok(Simulation::new(scenario)?.run())
}
