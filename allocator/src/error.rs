//! Typed errors: every bad input is one of these, never a panic.

use crate::model::{ClaimId, LbId, Time};

/// What can go wrong when talking to the allocator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A port number outside 1..=65535 where a fixed port is required.
    #[error("port {0} is out of range (1..=65535)")]
    InvalidPort(u32),
    /// An unknown protocol name.
    #[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
    InvalidProtocol(String),
    /// An id that is empty.
    #[error("{0} must not be empty")]
    EmptyId(&'static str),
    /// A load balancer id that does not parse.
    #[error("invalid load balancer id {0:?} (expected lb-N)")]
    InvalidLbId(String),
    /// A claim that breaks a rule no type can express.
    #[error("invalid claim {claim}: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: ClaimId,
        /// What is wrong with it.
        reason: String,
    },
    /// A claim added twice.
    #[error("claim {0} already exists")]
    DuplicateClaim(ClaimId),
    /// A claim the allocator does not know.
    #[error("unknown claim {0}")]
    UnknownClaim(ClaimId),
    /// A load balancer the allocator does not know.
    #[error("unknown load balancer {0}")]
    UnknownLb(LbId),
    /// Logical time must not go backwards.
    #[error("time went backwards: {now} is before {last}")]
    TimeWentBackwards {
        /// The time given.
        now: Time,
        /// The latest time seen before.
        last: Time,
    },
    /// A configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A snapshot that contradicts itself.
    #[error("inconsistent snapshot: {0}")]
    Restore(String),
    /// An unknown policy name.
    #[error("unknown policy {0:?} (expected one of: {list})", list = crate::policy::PolicyKind::NAMES.join(", "))]
    UnknownPolicy(String),
}
