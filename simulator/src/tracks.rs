//! The cloud's live claims: one track per claim in a slab, addressed by a handle the engine
//! keeps in the claim's departure event, and bound to the allocator's [`ClaimKey`] for the
//! claim. The allocator's decisions name claims by id: the engine finds the key through
//! the allocator's own id index and the track through a vector by key, so it keeps no id
//! and no id index of its own (at a million live claims, a 32-byte track and an 11-byte
//! index entry per claim became a 12-byte track and a 4-byte vector entry).
//!
//! A claim's arrival time is kept only until it is first served (the wait is then
//! measured), in a map beside the tracks: when most live claims have been served, as in
//! any run that serves what it is asked, that is 8 bytes per track saved for ~20 bytes
//! per claim still waiting; a run where most claims wait (a tight budget) pays more.

use rustc_hash::FxHashMap;
use sharedlb_allocator::{ClaimKey, PendingReason};

/// A claim as the cloud sees it: 12 bytes, one per live claim.
#[derive(Debug, Clone)]
pub(crate) struct ClaimTrack {
    /// Its tenant's number in the engine's tenant numbering.
    pub tenant: u32,
    /// The allocator's key for the claim, once bound (see [`Tracks::bind`]).
    key: Option<ClaimKey>,
    /// On a ready LB now.
    pub serving: bool,
    /// The reasons it has been told to wait for, one bit each (in the padding: the
    /// track stays 12 bytes).
    waited_for: u8,
}

impl ClaimTrack {
    /// A track of a claim of tenant number `tenant`, not bound to a key yet.
    pub fn new(tenant: u32) -> ClaimTrack {
        ClaimTrack {
            tenant,
            key: None,
            serving: false,
            waited_for: 0,
        }
    }

    /// Notes that the claim was told to wait because of `reason`; whether that is the
    /// first time for this reason.
    pub fn waits_for(&mut self, reason: PendingReason) -> bool {
        let bit = 1u8 << (reason as u8);
        let first = self.waited_for & bit == 0;
        self.waited_for |= bit;
        first
    }

    /// The allocator's key for the claim, once bound.
    pub fn key(&self) -> Option<ClaimKey> {
        self.key
    }
}

// One bit per reason in [`ClaimTrack::waits_for`].
const _: () = assert!(PendingReason::ALL.len() <= 8);

/// No track for this key.
const NONE: u32 = u32::MAX;

/// Live claim tracks by handle, with a free list, and the handles by allocator key.
///
/// A handle stays valid until [`Tracks::remove`] of it, and is then reused: whoever keeps
/// a handle must be the only one to remove it (a generated claim's departure event).
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    slots: Vec<Option<ClaimTrack>>,
    free: Vec<u32>,
    /// The handle of the track bound to each key ([`NONE`] if none).
    by_key: Vec<u32>,
    /// The arrival time of each live track never served yet, by handle.
    unserved: FxHashMap<u32, u64>,
}

impl Tracks {
    /// Stores the track of a claim that arrived at `arrived` and is not served yet, and
    /// returns its handle. The caller binds it to the claim's key once the allocator
    /// has the claim.
    pub fn insert(&mut self, track: ClaimTrack, arrived: u64) -> u32 {
        let k = if let Some(k) = self.free.pop() {
            self.slots[k as usize] = Some(track);
            k
        } else {
            self.slots.push(Some(track));
            u32::try_from(self.slots.len() - 1)
                .ok()
                .filter(|&k| k != NONE)
                .unwrap_or_else(|| unreachable!("more than 4G live claims"))
        };
        self.unserved.insert(k, arrived);
        k
    }

    /// Binds live track `k` to the allocator's key for its claim. A key names one live
    /// claim at a time, so no other live track holds it.
    pub fn bind(&mut self, k: u32, key: ClaimKey) {
        let Some(track) = self.get_mut(k) else {
            return;
        };
        debug_assert!(track.key.is_none(), "a track is bound once");
        track.key = Some(key);
        let i = key.index();
        if self.by_key.len() <= i {
            self.by_key.resize(i + 1, NONE);
        }
        debug_assert_eq!(self.by_key[i], NONE, "a key names one live claim");
        self.by_key[i] = k;
    }

    /// The handle of the live track bound to `key`.
    pub fn of_key(&self, key: ClaimKey) -> Option<u32> {
        self.by_key.get(key.index()).copied().filter(|&k| k != NONE)
    }

    /// Requests track `k` from memory, without waiting for it (the engine's look-ahead).
    pub fn prefetch(&self, k: u32) {
        if (k as usize) < self.slots.len() {
            prefetch_index::prefetch_index(&self.slots, k as usize);
        }
    }

    /// A live track.
    pub fn get(&self, k: u32) -> Option<&ClaimTrack> {
        self.slots.get(k as usize).and_then(Option::as_ref)
    }

    /// A live track, mutably.
    pub fn get_mut(&mut self, k: u32) -> Option<&mut ClaimTrack> {
        self.slots.get_mut(k as usize).and_then(Option::as_mut)
    }

    /// Marks live track `k` served; its arrival time if this is the first time.
    pub fn first_served(&mut self, k: u32) -> Option<u64> {
        self.unserved.remove(&k)
    }

    /// Removes a live track and returns it, with its arrival time if it was never
    /// served; its handle and its key are free for reuse.
    pub fn remove(&mut self, k: u32) -> Option<(ClaimTrack, Option<u64>)> {
        let track = self.slots.get_mut(k as usize)?.take()?;
        if let Some(key) = track.key {
            self.by_key[key.index()] = NONE;
        }
        self.free.push(k);
        Some((track, self.unserved.remove(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sharedlb_allocator::{
        Allocator, Claim, Config, Decision, Event, PortRequest, Protocol, Reports, Shell, Time,
    };

    /// Keys of live claims `names`, from a real allocator (keys are its to make).
    fn keys(names: &[&str]) -> Vec<ClaimKey> {
        struct Quiet;
        impl Shell for Quiet {
            fn carry_out(&mut self, _: Time, _: Decision, _: &mut Reports<'_>) {}
        }
        let config = Config::with_builtin("aws-nlb", "best-fit".parse().unwrap()).unwrap();
        let mut a = Allocator::new(config).unwrap();
        names
            .iter()
            .map(|n| {
                let c = Claim::new(n, vec![PortRequest::Any(Protocol::Tcp)]).unwrap();
                a.drive(Time(0), Event::ClaimAdded(c.clone()), &mut Quiet)
                    .unwrap();
                a.claim_key(c.id()).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_track_is_found_by_handle_and_key_until_removed_and_both_are_reused() {
        let ks = keys(&["ns/a", "ns/b", "ns/c"]);
        let mut t = Tracks::default();
        let a = t.insert(ClaimTrack::new(1), 5);
        let b = t.insert(ClaimTrack::new(2), 7);
        assert_ne!(a, b);
        assert_eq!(t.of_key(ks[0]), None, "not bound yet");
        t.bind(a, ks[2]);
        t.bind(b, ks[0]);
        assert_eq!(t.of_key(ks[2]), Some(a));
        assert_eq!(t.of_key(ks[0]), Some(b));
        assert_eq!(t.of_key(ks[1]), None);
        assert_eq!(t.get(a).and_then(ClaimTrack::key), Some(ks[2]));
        assert_eq!(
            t.remove(a).map(|(x, arrived)| (x.tenant, arrived)),
            Some((1, Some(5))),
            "a track never served leaves with its arrival time"
        );
        assert_eq!(t.of_key(ks[2]), None, "its key is unbound");
        assert!(t.get(a).is_none());
        assert!(t.remove(a).is_none(), "a removed handle removes nothing");
        let c = t.insert(ClaimTrack::new(3), 9);
        assert_eq!(c, a, "the freed handle is reused");
        t.bind(c, ks[2]);
        assert_eq!(t.of_key(ks[2]), Some(c), "and the freed key rebound");
        assert_eq!(t.of_key(ks[0]), Some(b));
        assert_eq!(t.get(b).map(|x| x.tenant), Some(2));
    }

    #[test]
    fn the_arrival_time_is_given_once_at_the_first_serve_and_not_on_leaving_after_it() {
        let mut t = Tracks::default();
        let a = t.insert(ClaimTrack::new(0), 5);
        let b = t.insert(ClaimTrack::new(0), 7);
        assert_eq!(t.first_served(a), Some(5));
        assert_eq!(t.first_served(a), None, "served before: no second wait");
        assert_eq!(t.remove(a).map(|(_, arrived)| arrived), Some(None));
        // A's handle is reused by a claim arriving later: its own time, not a stale one.
        let c = t.insert(ClaimTrack::new(0), 9);
        assert_eq!(c, a);
        assert_eq!(t.first_served(c), Some(9));
        assert_eq!(t.remove(b).map(|(_, arrived)| arrived), Some(Some(7)));
        assert_eq!(t.first_served(b), None, "a removed track is not waiting");
    }

    #[test]
    fn a_claim_counts_once_per_reason_it_waits_for() {
        let mut t = ClaimTrack::new(0);
        assert!(t.waits_for(PendingReason::BudgetExhausted));
        assert!(t.waits_for(PendingReason::QuotaExceeded));
        assert!(!t.waits_for(PendingReason::BudgetExhausted), "told again");
        for r in PendingReason::ALL {
            let mut t = ClaimTrack::new(0);
            assert!(t.waits_for(r), "{r:?}");
            assert!(!t.waits_for(r), "{r:?}");
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_track_is_12_bytes() {
        assert_eq!(std::mem::size_of::<Option<ClaimTrack>>(), 12);
    }
}
