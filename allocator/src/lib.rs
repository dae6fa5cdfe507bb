//! sharedlb's allocator: decides which shared L4 load balancer, and which ports, every
//! claim gets — a pure library with no IO, no clock and no randomness.
//!
//! Feed an [`Allocator`] [`Event`]s with a logical time; it returns [`Decision`]s for the
//! shell (the simulator, the Kubernetes controller) to carry out. See `ARCHITECTURE.md`.

mod allocator;
pub mod bounds;
mod config;
mod consolidation;
mod decision;
mod error;
pub mod fairness;
mod invariants;
mod lb;
mod model;
pub mod offline;
pub mod policy;
pub mod profile;
mod snapshot;
pub mod view;

pub use allocator::{Allocator, ClaimPlace, LbInfo, Usage};
pub use config::{Budget, Config, Quota, TenantConfig};
pub use consolidation::Migration;
pub use decision::{Decision, Event, PendingReason};
pub use error::Error;
pub use lb::{LbState, PoolKey};
pub use model::{
    Claim, ClaimId, LbId, Listener, Port, PortRequest, ProfileName, Protocol, Sharing, TenantId,
    Time,
};
pub use policy::PolicyKind;
pub use profile::{LbProfile, PortRange, builtin_profile, builtin_profiles};
pub use snapshot::{ClaimRecord, LbRecord, Snapshot};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
