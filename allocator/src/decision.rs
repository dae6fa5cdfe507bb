//! What goes into the allocator (events) and what comes out (decisions).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Claim, ClaimId, LbId, Listeners, ProfileName};

/// Something that happened, reported by the shell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A new claim.
    ClaimAdded(Claim),
    /// A claim is gone; its listeners are freed.
    ClaimRemoved(ClaimId),
    /// A claim changed (ports, sharing, ...); it keeps its LB and ports where it can.
    ClaimUpdated(Claim),
    /// A load balancer finished provisioning.
    LbReady(LbId),
    /// A load balancer failed or vanished; its claims must be placed again.
    LbFailed(LbId),
    /// A load balancer the allocator asked to delete is gone.
    LbDeleted(LbId),
    /// Only time passed: idle load balancers past their timeout are deleted, and waiting
    /// claims are retried if anything may have changed for them.
    Tick,
    /// Move claims that allow it so that whole LBs empty: at most `max_moves` moves, only
    /// onto ready LBs of the same pool, only complete evacuations. Emptied LBs are deleted
    /// at their idle timeout like any other.
    Consolidate {
        /// Most claims moved.
        max_moves: u32,
    },
}

/// What the allocator wants the shell to do. See [`crate::Allocator`] for what each
/// decision obliges the shell to report back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// Create a load balancer of this profile; report [`Event::LbReady`] or [`Event::LbFailed`].
    CreateLb {
        /// The new LB's id.
        lb: LbId,
        /// Its profile.
        profile: ProfileName,
    },
    /// Serve the claim on this LB with exactly these listeners (in the claim's port order).
    Assign {
        /// The claim.
        claim: ClaimId,
        /// The LB (maybe still provisioning).
        lb: LbId,
        /// One listener per port request, in request order.
        listeners: Listeners,
    },
    /// Move a claim (consolidation); the old listeners are freed once the new ones serve.
    Migrate {
        /// The claim.
        claim: ClaimId,
        /// The LB it leaves.
        from: LbId,
        /// The LB it goes to.
        to: LbId,
        /// Its new listeners, in request order.
        listeners: Listeners,
    },
    /// The claim no longer holds listeners on this LB.
    Release {
        /// The claim.
        claim: ClaimId,
        /// The LB it was on.
        lb: LbId,
    },
    /// The claim cannot be placed now.
    Pending {
        /// The claim.
        claim: ClaimId,
        /// Why, machine-readable.
        reason: PendingReason,
        /// Why, for people.
        message: String,
    },
    /// Delete this (empty) LB; report [`Event::LbDeleted`] when it is gone.
    DeleteLb {
        /// The LB.
        lb: LbId,
    },
}

/// Why a claim waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum PendingReason {
    /// Capacity is coming (LBs provisioning up to the limit, an idle LB being freed).
    WaitingForCapacity,
    /// Every LB with room already uses one of the claim's fixed listeners, and no new LB may be opened.
    PortConflict,
    /// The tenant's quota would be exceeded.
    QuotaExceeded,
    /// The global LB budget is spent (or every LB id has been handed out).
    BudgetExhausted,
    /// LBs have room but their automatic port range is used up.
    PortRangeFull,
    /// The claim needs more listeners than any allowed profile holds.
    TooLarge,
    /// No allowed profile supports the claim (protocol, mixed protocols, reserved port, unknown profile).
    Unsupported,
    /// The claim is pinned to an LB that cannot take it.
    PinnedUnavailable,
}

impl PendingReason {
    /// All reasons, for reports.
    pub const ALL: [PendingReason; 8] = [
        PendingReason::WaitingForCapacity,
        PendingReason::PortConflict,
        PendingReason::QuotaExceeded,
        PendingReason::BudgetExhausted,
        PendingReason::PortRangeFull,
        PendingReason::TooLarge,
        PendingReason::Unsupported,
        PendingReason::PinnedUnavailable,
    ];

    /// The reason's name, as in status conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::WaitingForCapacity => "WaitingForCapacity",
            PendingReason::PortConflict => "PortConflict",
            PendingReason::QuotaExceeded => "QuotaExceeded",
            PendingReason::BudgetExhausted => "BudgetExhausted",
            PendingReason::PortRangeFull => "PortRangeFull",
            PendingReason::TooLarge => "TooLarge",
            PendingReason::Unsupported => "Unsupported",
            PendingReason::PinnedUnavailable => "PinnedUnavailable",
        }
    }

    /// Whether only a change to the claim or the configuration can help.
    pub fn is_permanent(self) -> bool {
        matches!(self, PendingReason::TooLarge | PendingReason::Unsupported)
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
