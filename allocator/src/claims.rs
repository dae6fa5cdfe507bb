//! The claim table: one slot per live claim (placed or waiting), found by id; and the
//! queues of waiting claims that fair admission retries.

use std::collections::{BTreeMap, BTreeSet};

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::decision::PendingReason;
use crate::model::{Claim, ClaimId, LbId, Listeners, TenantId};

/// Where a claim stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Not placed and no pending reason reported yet (new, released, or changed).
    Unplaced,
    /// Waiting; the reason last reported.
    Pending(PendingReason),
    /// On an LB with these listeners, one per port request.
    Assigned { lb: LbId, listeners: Listeners },
    /// Between two places within one event — arriving before its first placement, or
    /// leaving after its release: counted as waiting (its tenant's waiting counts, the
    /// listeners waiting claims ask for), but never queued for retry, since it is tried
    /// (or gone) before the event ends. Never seen outside an event.
    Transit,
}

/// One live claim.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub claim: Claim,
    /// Arrival order: fair admission keeps it within a tenant.
    pub seq: u64,
    pub place: Place,
}

/// Live claims by slot number, with a free list and an id index.
///
/// The id index holds slot numbers only, hashed and compared through the slot's own id:
/// the id is stored once, and an index entry costs 4 bytes instead of a key's 16 and
/// its padding (at a million claims, ~40 B per claim less).
#[derive(Clone, Debug, Default)]
pub(crate) struct ClaimTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: HashTable<u32>,
}

fn hash_id(id: &ClaimId) -> u64 {
    FxBuildHasher.hash_one(id.as_str())
}

/// The id of live slot `k`.
fn id_of(slots: &[Option<Slot>], k: u32) -> &ClaimId {
    slots[k as usize]
        .as_ref()
        .unwrap_or_else(|| unreachable!("the id index holds live slots only"))
        .claim
        .id()
}

impl ClaimTable {
    /// Stores a claim; the caller has checked its id is new.
    pub fn insert(&mut self, slot: Slot) -> u32 {
        let hash = hash_id(slot.claim.id());
        let k = if let Some(k) = self.free.pop() {
            self.slots[k as usize] = Some(slot);
            k
        } else {
            self.slots.push(Some(slot));
            (self.slots.len() - 1) as u32
        };
        let slots = &self.slots;
        self.by_id
            .insert_unique(hash, k, |&j| hash_id(id_of(slots, j)));
        k
    }

    /// Removes a claim and returns it.
    pub fn remove(&mut self, k: u32) -> Slot {
        let hash = hash_id(id_of(&self.slots, k));
        let indexed = self
            .by_id
            .find_entry(hash, |&j| j == k)
            .map(hashbrown::hash_table::OccupiedEntry::remove);
        debug_assert!(indexed.is_ok(), "every live slot is in the id index");
        let slot = self.slots[k as usize]
            .take()
            .unwrap_or_else(|| unreachable!("removing a live slot"));
        self.free.push(k);
        slot
    }

    /// The slot of a claim id.
    pub fn find(&self, id: &ClaimId) -> Option<u32> {
        let slots = &self.slots;
        self.by_id
            .find(hash_id(id), |&j| id_of(slots, j) == id)
            .copied()
    }

    /// A live slot.
    pub fn get(&self, k: u32) -> &Slot {
        self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"))
    }

    /// A live slot, mutably.
    pub fn get_mut(&mut self, k: u32) -> &mut Slot {
        self.slots[k as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("live slot index"))
    }

    /// Live claims.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every live slot with its number, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|s| (k as u32, s)))
    }

    /// Every live slot in arrival order.
    pub fn in_arrival_order(&self) -> Vec<(u32, &Slot)> {
        let mut v: Vec<(u32, &Slot)> = self.iter().collect();
        v.sort_by_key(|(_, s)| s.seq);
        v
    }
}

/// Claims waiting for a retry, per tenant in arrival order. Claims that only a change to
/// themselves can help (too large, unsupported) are not queued.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitQueue {
    pub queues: BTreeMap<TenantId, BTreeSet<(u64, u32)>>,
    /// Listeners asked for by queued claims.
    pub listeners: u32,
}

impl WaitQueue {
    /// Queues slot `k`; returns whether it was not queued before.
    pub fn push(&mut self, tenant: &TenantId, seq: u64, k: u32, listeners: u32) -> bool {
        let q = match self.queues.get_mut(tenant) {
            Some(q) => q,
            None => self.queues.entry(tenant.clone()).or_default(),
        };
        let new = q.insert((seq, k));
        if new {
            self.listeners = self.listeners.saturating_add(listeners);
        }
        new
    }

    /// Unqueues slot `k` if queued; returns whether it was.
    pub fn remove(&mut self, tenant: &TenantId, seq: u64, k: u32, listeners: u32) -> bool {
        let Some(q) = self.queues.get_mut(tenant) else {
            return false;
        };
        let was = q.remove(&(seq, k));
        if was {
            self.listeners -= listeners;
            if q.is_empty() {
                self.queues.remove(tenant);
            }
        }
        was
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}
