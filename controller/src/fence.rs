//! Fencing: a replica writes only while it can prove it holds the leader lease — a renewal
//! that succeeded less than the renew deadline ago, measured on the monotonic clock. A
//! replica paused past the deadline, or cut off from the API server, writes nothing from
//! the moment the deadline passes, before it learns it lost the lease.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a successful renewal lets a replica write: shorter than the lease duration, so
/// that a deposed leader has stopped writing before another may take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// Whether this replica may write now.
#[derive(Debug)]
pub struct Fence {
    until: Mutex<Option<Instant>>,
    elected: bool,
}

impl Fence {
    /// A fence for a replica without leader election: it always writes.
    pub fn unelected() -> Fence {
        Fence {
            until: Mutex::new(None),
            elected: false,
        }
    }

    /// A fence for an elected replica: closed until the lease is taken.
    pub fn elected() -> Fence {
        Fence {
            until: Mutex::new(None),
            elected: true,
        }
    }

    /// Whether this replica may write now.
    #[allow(clippy::disallowed_methods)] // the shell reads the monotonic clock
    pub fn holds(&self) -> bool {
        !self.elected
            || self
                .until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|u| Instant::now() < u)
    }

    /// A renewal sent at `sent` succeeded: writes are allowed until `sent` plus the renew
    /// deadline.
    pub fn renewed(&self, sent: Instant) {
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sent + RENEW_DEADLINE);
    }

    /// No more writes (shutting down, or the lease is lost).
    pub fn close(&self) {
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn holds_only_within_the_deadline_of_a_renewal() {
        let f = Fence::elected();
        assert!(!f.holds(), "closed before the lease is taken");
        f.renewed(Instant::now());
        assert!(f.holds());
        // A renewal sent longer ago than the deadline (a pause) proves nothing.
        let long_ago = Instant::now()
            .checked_sub(RENEW_DEADLINE + Duration::from_millis(1))
            .unwrap();
        f.renewed(long_ago);
        assert!(!f.holds());
        f.renewed(Instant::now());
        f.close();
        assert!(!f.holds());
        assert!(Fence::unelected().holds());
    }
}
