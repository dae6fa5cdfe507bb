//! sharedlb's allocator: decides which shared L4 load balancer, and which ports, every
//! claim (a Service of type LoadBalancer, in effect) gets — a pure library with no IO, no
//! clock and no randomness, so the same events always give the same decisions.
//!
//! A shell (a simulator, a Kubernetes controller, your program) owns an [`Allocator`] and
//! drives it with [`Allocator::drive`]: it feeds [`Event`]s with a logical time, carries out
//! the [`Decision`]s through its [`Shell`], reports what happened, and ticks at the wake-up
//! time `drive` returns. The contract is written on [`Allocator`].
//!
//! ```
//! use sharedlb_allocator::{
//!     Allocator, Claim, Config, Decision, Event, Listener, PortRequest, Reports, Shell, Time,
//! };
//!
//! /// A shell that only records what it is asked to do.
//! #[derive(Default)]
//! struct Log(Vec<Decision>);
//! impl Shell for Log {
//!     fn carry_out(&mut self, _now: Time, d: Decision, _reports: &mut Reports<'_>) {
//!         self.0.push(d);
//!     }
//! }
//!
//! let mut alloc = Allocator::new(Config::with_builtin("aws-nlb", "best-fit".parse()?)?)?;
//! let mut log = Log::default();
//! let web = Claim::new("shop/web", vec![PortRequest::Fixed(Listener::tcp(443).unwrap())])?;
//! let dns = Claim::new("shop/dns", vec![
//!     PortRequest::Fixed(Listener::tcp(53).unwrap()),
//!     PortRequest::Fixed(Listener::udp(53).unwrap()),
//! ])?;
//! alloc.drive(Time(0), Event::ClaimAdded(web), &mut log)?;
//! alloc.drive(Time(1_000), Event::ClaimAdded(dns), &mut log)?;
//! // One LB opened (it serves once the shell reports `LbReady`); both claims share it.
//! assert!(matches!(log.0[0], Decision::CreateLb { .. }));
//! assert_eq!(alloc.lbs().len(), 1);
//! assert_eq!(alloc.lbs()[0].listeners.len(), 3);
//! # Ok::<(), sharedlb_allocator::Error>(())
//! ```
//!
//! `ARCHITECTURE.md` in the repository maps the modules.

mod admission;
mod allocator;
pub mod bounds;
mod claims;
mod config;
mod consolidation;
pub mod cost;
mod decision;
mod eligibility;
mod error;
pub mod fairness;
mod index;
mod invariants;
mod lb;
mod lifecycle;
mod lookahead;
mod model;
pub mod offline;
mod placement;
pub mod policy;
mod ports;
pub mod profile;
mod shell;
mod snapshot;
mod tenant_books;
pub mod view;

pub use allocator::{Allocator, ClaimPlace, LbInfo, Usage};
pub use claims::ClaimKey;
pub use config::{Budget, Config, MAX_PROFILES, Quota, TenantConfig};
pub use consolidation::Migration;
pub use decision::{Decision, Event, PendingReason};
pub use error::Error;
pub use lb::{LbState, PoolKey, Pooling};
pub use lookahead::{LOOK_AHEAD, Upcoming};
pub use model::{
    Claim, ClaimId, GroupKey, LbId, Listener, Listeners, MAX_ID_LEN, MAX_PORTS_PER_CLAIM, Port,
    PortRequest, ProfileName, Protocol, Sharing, TenantId, Time,
};
pub use policy::{Policy, PolicyKind, PolicyRules, View, Walks};
pub use ports::{ClashKey, ClashRule, PortRule};
pub use profile::{Currency, LbProfile, PortRange, builtin_profile, builtin_profiles};
pub use shell::{Reports, Shell};
pub use snapshot::{ClaimRecord, Dropped, LbRecord, Restored, Snapshot};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
