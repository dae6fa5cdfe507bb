//! The cloud's live claims: one track per claim in a slab, addressed by a handle the engine
//! keeps in the claim's departure event, and found by id (the allocator's decisions name
//! claims by id) through an index of handles hashed through the track's own id.
//!
//! The id is stored once and an index entry is 4 bytes: at a million live claims this
//! costs ~45 B per claim where a hash map from id to track cost ~110 B (its 49-byte
//! buckets at the table's load and doubling slack). A claim's arrival time is kept only
//! until it is first served (the wait is then measured), beside the tracks: most live
//! claims have been served, and their tracks are 8 bytes smaller without it.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use sharedlb_allocator::ClaimId;

/// A claim as the cloud sees it: 32 bytes, one per live claim.
#[derive(Debug, Clone)]
pub(crate) struct ClaimTrack {
    pub id: ClaimId,
    /// Its tenant's number in the engine's tenant numbering.
    pub tenant: u32,
    /// On a ready LB now.
    pub serving: bool,
}

/// Live claim tracks by handle, with a free list and an id index.
///
/// A handle stays valid until [`Tracks::remove`] of it, and is then reused: whoever keeps
/// a handle must be the only one to remove it (a generated claim's departure event).
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    slots: Vec<Option<ClaimTrack>>,
    free: Vec<u32>,
    by_id: HashTable<u32>,
    /// The arrival time of each live track never served yet, by handle.
    unserved: FxHashMap<u32, u64>,
}

fn hash_id(id: &ClaimId) -> u64 {
    FxBuildHasher.hash_one(id.as_str())
}

/// The id of live slot `k`.
fn id_of(slots: &[Option<ClaimTrack>], k: u32) -> &ClaimId {
    &slots[k as usize]
        .as_ref()
        .unwrap_or_else(|| unreachable!("the id index holds live tracks only"))
        .id
}

impl Tracks {
    /// Stores a track of a claim that arrived at `arrived` and is not served yet, and
    /// returns its handle; `None` if a live track has its id (the engine then sends the
    /// allocator nothing, as for a trace's repeated addition).
    pub fn insert(&mut self, track: ClaimTrack, arrived: u64) -> Option<u32> {
        let hash = hash_id(&track.id);
        let slots = &self.slots;
        if self
            .by_id
            .find(hash, |&j| id_of(slots, j) == &track.id)
            .is_some()
        {
            return None;
        }
        let k = if let Some(k) = self.free.pop() {
            self.slots[k as usize] = Some(track);
            k
        } else {
            self.slots.push(Some(track));
            u32::try_from(self.slots.len() - 1)
                .unwrap_or_else(|_| unreachable!("more than 4G live claims"))
        };
        let slots = &self.slots;
        self.by_id
            .insert_unique(hash, k, |&j| hash_id(id_of(slots, j)));
        self.unserved.insert(k, arrived);
        Some(k)
    }

    /// Marks live track `k` served; its arrival time if this is the first time.
    pub fn first_served(&mut self, k: u32) -> Option<u64> {
        self.unserved.remove(&k)
    }

    /// The handle of a live claim's track.
    pub fn find(&self, id: &ClaimId) -> Option<u32> {
        let slots = &self.slots;
        self.by_id
            .find(hash_id(id), |&j| id_of(slots, j) == id)
            .copied()
    }

    /// A live track.
    pub fn get(&self, k: u32) -> Option<&ClaimTrack> {
        self.slots.get(k as usize).and_then(Option::as_ref)
    }

    /// A live track, mutably.
    pub fn get_mut(&mut self, k: u32) -> Option<&mut ClaimTrack> {
        self.slots.get_mut(k as usize).and_then(Option::as_mut)
    }

    /// Removes a live track and returns it, with its arrival time if it was never
    /// served; its handle is free for reuse.
    pub fn remove(&mut self, k: u32) -> Option<(ClaimTrack, Option<u64>)> {
        let hash = hash_id(&self.get(k)?.id);
        let indexed = self
            .by_id
            .find_entry(hash, |&j| j == k)
            .map(hashbrown::hash_table::OccupiedEntry::remove);
        debug_assert!(indexed.is_ok(), "every live track is in the id index");
        self.free.push(k);
        let track = self.slots[k as usize].take()?;
        Some((track, self.unserved.remove(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: &str) -> ClaimTrack {
        ClaimTrack {
            id: id.parse().unwrap(),
            tenant: 0,
            serving: false,
        }
    }

    #[test]
    fn a_track_is_found_by_id_and_handle_until_removed_and_its_handle_is_reused() {
        let mut t = Tracks::default();
        let a = t.insert(track("ns/a"), 5).unwrap();
        let b = t.insert(track("ns/b"), 7).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            t.insert(track("ns/a"), 6),
            None,
            "a live id is not stored twice"
        );
        assert_eq!(t.find(&"ns/a".parse().unwrap()), Some(a));
        assert_eq!(t.find(&"ns/b".parse().unwrap()), Some(b));
        assert_eq!(
            t.remove(a).map(|(x, arrived)| (x.id.to_string(), arrived)),
            Some(("ns/a".into(), Some(5))),
            "a track never served leaves with its arrival time (the repeat did not move it)"
        );
        assert_eq!(t.find(&"ns/a".parse().unwrap()), None);
        assert!(t.get(a).is_none());
        assert!(t.remove(a).is_none(), "a removed handle removes nothing");
        let c = t.insert(track("ns/c"), 9).unwrap();
        assert_eq!(c, a, "the freed handle is reused");
        assert_eq!(t.find(&"ns/c".parse().unwrap()), Some(c));
        assert_eq!(t.find(&"ns/b".parse().unwrap()), Some(b));
        assert_eq!(t.get(b).map(|x| x.id.as_str()), Some("ns/b"));
    }

    #[test]
    fn the_arrival_time_is_given_once_at_the_first_serve_and_not_on_leaving_after_it() {
        let mut t = Tracks::default();
        let a = t.insert(track("ns/a"), 5).unwrap();
        let b = t.insert(track("ns/b"), 7).unwrap();
        assert_eq!(t.first_served(a), Some(5));
        assert_eq!(t.first_served(a), None, "served before: no second wait");
        assert_eq!(t.remove(a).map(|(_, arrived)| arrived), Some(None));
        // A's handle is reused by a claim arriving later: its own time, not a stale one.
        let c = t.insert(track("ns/c"), 9).unwrap();
        assert_eq!(c, a);
        assert_eq!(t.first_served(c), Some(9));
        assert_eq!(t.remove(b).map(|(_, arrived)| arrived), Some(Some(7)));
        assert_eq!(t.first_served(b), None, "a removed track is not waiting");
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_track_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Option<ClaimTrack>>(), 32);
    }
}
