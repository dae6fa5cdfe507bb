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
    /// An id that is blank or too long.
    #[error("{what} {reason}")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
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
    /// An unknown policy name.
    #[error("unknown policy {0:?} (expected one of: {list})", list = crate::policy::names().collect::<Vec<_>>().join(", "))]
    UnknownPolicy(String),
    /// A policy parameter out of its range or given to a policy that takes none.
    #[error("policy {policy}: {reason}")]
    PolicyParameter {
        /// The policy as written.
        policy: String,
        /// What is wrong.
        reason: String,
    },
}
