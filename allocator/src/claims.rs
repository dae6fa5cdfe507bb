//! The claim table: one slot per live claim (placed or waiting), found by id; and the
//! queues of waiting claims that fair admission retries.

mod slot_index;

use std::collections::{BTreeMap, BTreeSet};

use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;

use hashbrown::HashTable;
use prefetch_index::prefetch_index;
use rustc_hash::{FxBuildHasher, FxHashMap};
use slot_index::SlotIndex;

use crate::decision::PendingReason;
use crate::model::{Claim, ClaimBody, ClaimId, LbId, Listener, Listeners, Port, TenantId};
use crate::placement::Eligible;

/// Where a claim stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Not placed and no pending reason reported yet (new, released, or changed).
    Unplaced,
    /// Waiting; the reason last reported.
    Pending(PendingReason),
    /// On an LB, holding one port per port request.
    Assigned { lb: LbId, ports: HeldPorts },
    /// Between two places within one event — arriving before its first placement, or
    /// leaving after its release: counted as waiting (its tenant's waiting counts, the
    /// listeners waiting claims ask for), but never queued for retry, since it is tried
    /// (or gone) before the event ends. Never seen outside an event.
    Transit,
}

impl Place {
    /// Whether its ports are in the claim table's spill map.
    fn spills(&self) -> bool {
        matches!(
            self,
            Place::Assigned {
                ports: HeldPorts::Spilled,
                ..
            }
        )
    }
}

/// The ports a placed claim holds, one per port request in request order; a listener's
/// protocol is its request's. Up to three inline; more are kept beside the claim table,
/// under the claim's slot (see [`ClaimTable::hold`]), so a placement is 12 bytes: its
/// LB, the count and three ports (a list of listeners made it 40, four ports and a
/// pointer for more 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldPorts {
    /// One to three ports; the entries past `n` are unused.
    Inline { n: InlineCount, ports: [Port; 3] },
    /// More than three, in the claim table's spill map.
    Spilled,
}

/// How many ports a placement holds inline. An enum, not a number: its unused values let
/// [`Place`] keep its variant there, so it needs no tag of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum InlineCount {
    Zero = 0,
    One = 1,
    Two = 2,
    Three = 3,
}

impl HeldPorts {
    /// Most ports held inline.
    const INLINE: usize = 3;

    /// The ports of `listeners` if they fit inline.
    fn inline(listeners: &[Listener]) -> Option<HeldPorts> {
        let n = match listeners.len() {
            0 => InlineCount::Zero,
            1 => InlineCount::One,
            2 => InlineCount::Two,
            3 => InlineCount::Three,
            _ => return None,
        };
        let mut ports = [Port::MIN; HeldPorts::INLINE];
        for (p, l) in ports.iter_mut().zip(listeners) {
            *p = l.port;
        }
        Some(HeldPorts::Inline { n, ports })
    }
}

/// The listeners `claim` holds with `ports`, in request order.
fn listeners_of(claim: &Claim, ports: &[Port]) -> Listeners {
    claim
        .ports()
        .iter()
        .zip(ports)
        .map(|(r, &p)| Listener::new(r.protocol(), p))
        .collect()
}

/// One live claim.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub claim: Claim,
    /// Arrival order: fair admission keeps it within a tenant. Four bytes: the allocator
    /// renumbers its live claims when the numbers run out ([`Allocator::renumber_arrivals`](crate::Allocator)).
    pub seq: u32,
    pub place: Place,
}

impl Slot {
    /// Why the claim waits (a claim not tried yet waits for capacity); `None` if placed.
    pub fn pending_reason(&self) -> Option<PendingReason> {
        match self.place {
            Place::Pending(r) => Some(r),
            Place::Unplaced | Place::Transit => Some(PendingReason::WaitingForCapacity),
            Place::Assigned { .. } => None,
        }
    }
}

/// A live claim's slot in the allocator's claim table: the same from the claim's arrival
/// to its removal (an update keeps it), then free for a later claim. A shell keeping state
/// per claim can hold it in a vector by key instead of a second map by id (see
/// [`Allocator::claim_key`](crate::Allocator::claim_key)).
///
/// Keys belong to one allocator: a snapshot does not record them, and
/// [`Allocator::restore`](crate::Allocator::restore) hands out its own (in arrival order).
///
/// Four bytes, and an `Option<ClaimKey>` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimKey(NonZeroU32);

impl ClaimKey {
    /// The key of slot `k`.
    pub(crate) fn of_slot(k: u32) -> ClaimKey {
        ClaimKey(
            k.checked_add(1)
                .and_then(NonZeroU32::new)
                .unwrap_or_else(|| unreachable!("fewer than 4G live claims")),
        )
    }

    /// The slot it names.
    pub(crate) fn slot(self) -> u32 {
        self.0.get() - 1
    }

    /// The key as a vector index; keys are dense, below the most claims ever live at once.
    pub fn index(self) -> usize {
        self.slot() as usize
    }
}

/// Live claims by slot number, with a free list and an id index.
///
/// The id index holds slot numbers only, hashed and compared through the slot's own id:
/// the id is stored once, and an index entry costs 4 bytes instead of a key's 16 and
/// its padding (at a million claims, ~40 B per claim less). Its entries sit in chunks of
/// a cache line with their tags ([`SlotIndex`]): a lookup reads one line before the slot.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClaimTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: SlotIndex,
    /// The ports of placed claims holding more than [`HeldPorts::INLINE`], by slot.
    spilled: FxHashMap<u32, Box<[Port]>>,
    /// The slot filled last (0 at first): a shell carrying out the decisions on an
    /// arriving claim asks after it by id, which [`ClaimTable::find`] answers without
    /// hashing. A hint, checked against the slot's id.
    recent: u32,
}

fn hash_id(id: &ClaimId) -> u64 {
    FxBuildHasher.hash_one(id.as_str())
}

/// A claim id's hash in the id index: a caller that looks an id up and then inserts or
/// removes it hashes the id once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdHash(u64);

impl IdHash {
    pub fn of(id: &ClaimId) -> IdHash {
        IdHash(hash_id(id))
    }
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
    /// Stores a claim whose id hashes to `hash`; the caller has checked the id is new.
    pub fn insert(&mut self, slot: Slot, IdHash(hash): IdHash) -> u32 {
        debug_assert_eq!(hash, hash_id(slot.claim.id()), "the claim's own hash");
        let k = if let Some(k) = self.free.pop() {
            self.slots[k as usize] = Some(slot);
            k
        } else {
            self.slots.push(Some(slot));
            (self.slots.len() - 1) as u32
        };
        let slots = &self.slots;
        self.by_id.insert(hash, k, |j| hash_id(id_of(slots, j)));
        self.recent = k;
        k
    }

    /// Removes live slot `k`, whose id hashes to `hash`, and returns it.
    pub fn remove(&mut self, k: u32, IdHash(hash): IdHash) -> Slot {
        debug_assert_eq!(hash, hash_id(id_of(&self.slots, k)), "slot k's own hash");
        let indexed = self.by_id.remove(hash, k);
        debug_assert!(indexed, "every live slot is in the id index");
        let slot = self.slots[k as usize]
            .take()
            .unwrap_or_else(|| unreachable!("removing a live slot"));
        if slot.place.spills() {
            self.spilled.remove(&k);
        }
        self.free.push(k);
        slot
    }

    /// The placement's ports for slot `k` holding `listeners`: inline, or kept in the
    /// spill map until the slot's place is set to anything but them
    /// ([`ClaimTable::set_place`]) or the slot is removed.
    pub fn hold(&mut self, k: u32, listeners: &[Listener]) -> HeldPorts {
        HeldPorts::inline(listeners).unwrap_or_else(|| {
            self.spilled
                .insert(k, listeners.iter().map(|l| l.port).collect());
            HeldPorts::Spilled
        })
    }

    /// Sets slot `k`'s place; ports it spilled before are dropped unless the new place
    /// holds spilled ports (from [`ClaimTable::hold`]).
    pub fn set_place(&mut self, k: u32, place: Place) {
        let slot = self.get_mut(k);
        let dropped = slot.place.spills() && !place.spills();
        slot.place = place;
        if dropped {
            self.spilled.remove(&k);
        }
    }

    /// The ports live slot `k` holds, in request order; empty if it is not placed.
    pub fn ports(&self, k: u32) -> &[Port] {
        match &self.get(k).place {
            Place::Assigned {
                ports: HeldPorts::Inline { n, ports },
                ..
            } => &ports[..*n as usize],
            Place::Assigned {
                ports: HeldPorts::Spilled,
                ..
            } => self.spilled.get(&k).map_or(&[], |p| &p[..]),
            Place::Pending(_) | Place::Unplaced | Place::Transit => &[],
        }
    }

    /// The LB and listeners of live slot `k` if it is placed, rebuilt from its ports.
    pub fn placement(&self, k: u32) -> Option<(LbId, Listeners)> {
        let slot = self.get(k);
        match slot.place {
            Place::Assigned { lb, .. } => Some((lb, listeners_of(&slot.claim, self.ports(k)))),
            Place::Pending(_) | Place::Unplaced | Place::Transit => None,
        }
    }

    /// Slots holding spilled ports, for the invariant check.
    pub fn spilled_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.spilled.keys().copied()
    }

    /// Requests the id index's entry for `id` from memory, without waiting for it (the
    /// first of [`Allocator::prefetch`](crate::Allocator::prefetch)'s steps for a claim
    /// named by id): the line of its home chunk, known from the hash alone.
    pub fn fetch_index_entry(&self, id: &ClaimId) {
        self.by_id.prefetch(hash_id(id));
    }

    /// Requests `id`'s slot from memory, without waiting for it (the next step): reads
    /// the id index's entry, which the step before fetched. Another id with the same tag
    /// (one in 128) fetches the wrong slot, which costs nothing but the fetch.
    pub fn fetch_slot(&self, id: &ClaimId) {
        if let Some(k) = self.by_id.find(hash_id(id), |_| true) {
            self.fetch_slot_at(k);
        }
    }

    /// Requests slot `k` from memory, without waiting for it.
    pub fn fetch_slot_at(&self, k: u32) {
        // A slot may straddle two lines: the one its next slot starts in is the other.
        let k = k as usize;
        if k < self.slots.len() {
            prefetch_index(&self.slots, k);
            prefetch_index(&self.slots, (k + 1).min(self.slots.len() - 1));
        }
    }

    /// The slot of a claim id.
    pub fn find(&self, id: &ClaimId) -> Option<u32> {
        if let Some(Some(s)) = self.slots.get(self.recent as usize)
            && s.claim.id() == id
        {
            return Some(self.recent);
        }
        self.find_hashed(id, IdHash::of(id))
    }

    /// [`ClaimTable::find`] of an id that hashes to `hash`.
    pub fn find_hashed(&self, id: &ClaimId, IdHash(hash): IdHash) -> Option<u32> {
        let slots = &self.slots;
        self.by_id.find(hash, |j| id_of(slots, j) == id)
    }

    /// A live slot.
    pub fn get(&self, k: u32) -> &Slot {
        self.slots[k as usize]
            .as_ref()
            .unwrap_or_else(|| unreachable!("live slot index"))
    }

    /// Slot `k` if it is live.
    pub fn try_get(&self, k: u32) -> Option<&Slot> {
        self.slots.get(k as usize).and_then(Option::as_ref)
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

/// The bodies of live claims, each kept once with the number of live claims that have
/// it: a million claims of a few kinds hold a few bodies, not a million.
///
/// Bodies sit in numbered places, and a kept body carries its place number, so a claim
/// leaving (or arriving with a body already kept) finds it without hashing; a new body
/// is found through an index of place numbers, hashed through the body. A body leaves
/// when its last claim does, whatever copies callers keep, so the table never holds more
/// bodies than live claims.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bodies {
    places: Vec<Option<Kept>>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

/// A kept body, the number of live claims that have it, and the profiles that can hold
/// such a claim: worked out once per kind of claim, where it was worked out for every
/// placement and release (7% of a simulated event's instructions).
#[derive(Clone, Debug)]
struct Kept {
    body: Arc<ClaimBody>,
    claims: u32,
    /// `None` when no profile can hold it (the reason is worked out again when asked).
    eligible: Option<Eligible>,
}

fn hash_body(body: &ClaimBody) -> u64 {
    FxBuildHasher.hash_one(body)
}

/// The body kept at place `i`.
fn body_at(places: &[Option<Kept>], i: u32) -> &ClaimBody {
    &places[i as usize]
        .as_ref()
        .unwrap_or_else(|| unreachable!("the body index holds kept places only"))
        .body
}

impl Bodies {
    /// Gives `claim` the kept body equal to its own, keeping its own if none is; `fresh`
    /// may change a body kept for the first time (to share the tenant's name) as long as
    /// it stays equal, and `eligible` gives the profiles that can hold such a claim.
    pub fn intern(
        &mut self,
        claim: &mut Claim,
        fresh: impl FnOnce(&mut ClaimBody),
        eligible: impl FnOnce(&Claim) -> Option<Eligible>,
    ) {
        let hint = claim.body().kept as usize;
        if let Some(Some(kept)) = self.places.get_mut(hint)
            && Arc::ptr_eq(&kept.body, claim.body())
        {
            kept.claims += 1;
            return;
        }
        let hash = hash_body(claim.body());
        let places = &mut self.places;
        if let Some(&i) = self
            .index
            .find(hash, |&i| body_at(places, i) == &**claim.body())
        {
            let Some(kept) = &mut places[i as usize] else {
                unreachable!("the body index holds kept places only");
            };
            kept.claims += 1;
            claim.share_body(Arc::clone(&kept.body));
            return;
        }
        let i = self.free.pop().unwrap_or_else(|| {
            places.push(None);
            u32::try_from(places.len() - 1)
                .unwrap_or_else(|_| unreachable!("more than 4G live claims"))
        });
        // Not cloned when the claim holds the only handle, as a claim handed over does.
        let body = claim.body_mut();
        fresh(body);
        body.kept = i;
        places[i as usize] = Some(Kept {
            body: Arc::clone(claim.body()),
            claims: 1,
            eligible: eligible(claim),
        });
        self.index
            .insert_unique(hash, i, |&j| hash_body(body_at(places, j)));
    }

    /// The profiles that can hold `claim`, as worked out when its body was kept; `None`
    /// if no profile can, or its body is not kept here (the caller works it out then).
    pub fn eligible(&self, claim: &Claim) -> Option<&Eligible> {
        let kept = self.places.get(claim.body().kept as usize)?.as_ref()?;
        if Arc::ptr_eq(&kept.body, claim.body()) {
            kept.eligible.as_ref()
        } else {
            None
        }
    }

    /// Counts one claim of `claim`'s (kept) body less, dropping the body with its last.
    pub fn release(&mut self, claim: &Claim) {
        let i = claim.body().kept;
        let Some(Some(kept)) = self.places.get_mut(i as usize) else {
            unreachable!("a live claim's body is kept");
        };
        debug_assert!(
            Arc::ptr_eq(&kept.body, claim.body()),
            "a live claim's body is kept"
        );
        kept.claims -= 1;
        if kept.claims > 0 {
            return;
        }
        let hash = hash_body(&kept.body);
        let indexed = self
            .index
            .find_entry(hash, |&j| j == i)
            .map(hashbrown::hash_table::OccupiedEntry::remove);
        debug_assert!(indexed.is_ok(), "every kept body is in the index");
        self.places[i as usize] = None;
        self.free.push(i);
    }

    /// Each kept body (by address) with its count of live claims; whether the index
    /// finds each of them and nothing else.
    pub fn counts(&self) -> (Vec<(*const ClaimBody, u32)>, bool) {
        let mut counts = Vec::new();
        let mut indexed = true;
        for (
            i,
            Kept {
                body: b, claims: n, ..
            },
        ) in self
            .places
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
        {
            counts.push((Arc::as_ptr(b), *n));
            indexed &= b.kept as usize == i
                && self
                    .index
                    .find(hash_body(b), |&j| j as usize == i)
                    .is_some();
        }
        let indexed = indexed && self.index.len() == counts.len();
        (counts, indexed)
    }
}

/// Claims waiting for a retry, per tenant in arrival order. Claims that only a change to
/// themselves can help (too large, unsupported) are not queued.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitQueue {
    pub queues: BTreeMap<TenantId, BTreeSet<(u32, u32)>>,
    /// Listeners asked for by queued claims.
    pub listeners: u32,
}

impl WaitQueue {
    /// Queues slot `k`; returns whether it was not queued before.
    pub fn push(&mut self, tenant: &TenantId, seq: u32, k: u32, listeners: u32) -> bool {
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
    pub fn remove(&mut self, tenant: &TenantId, seq: u32, k: u32, listeners: u32) -> bool {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Bodies, ClaimTable, HeldPorts, IdHash, Place, Slot};
    use crate::model::{Claim, ClaimId, LbId, Listener, PortRequest, Protocol, Sharing};

    #[test]
    fn held_ports_give_back_the_listeners_in_request_order_at_any_count() {
        for n in 1..=7u16 {
            // Alternate protocols and fixed and automatic requests.
            let asked: Vec<Listener> = (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        Listener::tcp(30000 + i).unwrap()
                    } else {
                        Listener::udp(53 + i).unwrap()
                    }
                })
                .collect();
            let requests: Vec<PortRequest> = asked
                .iter()
                .enumerate()
                .map(|(i, &l)| {
                    if i % 3 == 0 {
                        PortRequest::Any(l.protocol)
                    } else {
                        PortRequest::Fixed(l)
                    }
                })
                .collect();
            let claim = Claim::new("t/c", requests).unwrap();
            let mut table = ClaimTable::default();
            let hash = IdHash::of(claim.id());
            let k = table.insert(
                Slot {
                    claim: claim.clone(),
                    seq: 0,
                    place: Place::Unplaced,
                },
                hash,
            );
            let held = table.hold(k, &asked);
            table.set_place(
                k,
                Place::Assigned {
                    lb: LbId(7),
                    ports: held,
                },
            );
            assert_eq!(table.ports(k).len(), usize::from(n));
            let (lb, listeners) = table.placement(k).unwrap();
            assert_eq!((lb, &listeners[..]), (LbId(7), &asked[..]), "{n} ports");
            assert_eq!(matches!(held, HeldPorts::Inline { .. }), n <= 3);
            assert_eq!(table.spilled_slots().count(), usize::from(n > 3));
            // Leaving the LB drops spilled ports; so does leaving the table.
            table.set_place(k, Place::Unplaced);
            assert_eq!(
                (table.spilled_slots().count(), table.ports(k).len()),
                (0, 0)
            );
            let held = table.hold(k, &asked);
            table.set_place(
                k,
                Place::Assigned {
                    lb: LbId(7),
                    ports: held,
                },
            );
            table.remove(k, hash);
            assert_eq!(table.spilled_slots().count(), 0);
        }
    }

    /// The slot filled last is tried first, for its own id only: every other live claim,
    /// an id not live, and a claim that took a freed slot are found as they are.
    #[test]
    fn find_tries_the_slot_filled_last_for_its_own_id_only() {
        let mut table = ClaimTable::default();
        let put = |table: &mut ClaimTable, id: &str| {
            let claim = Claim::new(id, vec![PortRequest::Any(Protocol::Tcp)]).unwrap();
            let hash = IdHash::of(claim.id());
            let slot = Slot {
                claim,
                seq: 0,
                place: Place::Unplaced,
            };
            (table.insert(slot, hash), hash)
        };
        let find = |table: &ClaimTable, id: &str| table.find(&ClaimId::new(id).unwrap());
        let (a, _) = put(&mut table, "t/a");
        let (b, hb) = put(&mut table, "t/b");
        assert_eq!(
            [
                find(&table, "t/b"),
                find(&table, "t/a"),
                find(&table, "t/x")
            ],
            [Some(b), Some(a), None]
        );
        table.remove(b, hb);
        assert_eq!([find(&table, "t/b"), find(&table, "t/a")], [None, Some(a)]);
        let (c, _) = put(&mut table, "t/c");
        assert_eq!(c, b, "the freed slot is taken again");
        assert_eq!(
            [
                find(&table, "t/c"),
                find(&table, "t/b"),
                find(&table, "t/a")
            ],
            [Some(c), None, Some(a)]
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_placement_is_12_bytes_and_a_slot_48() {
        assert_eq!(std::mem::size_of::<Place>(), 12);
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 48);
    }

    fn claim(id: &str, proto: Protocol) -> Claim {
        Claim::new(id, vec![PortRequest::Any(proto)]).unwrap()
    }

    #[test]
    fn claims_alike_share_one_body_which_leaves_with_the_last_of_them() {
        let mut bodies = Bodies::default();
        let mut fresh = 0;
        let mut keep =
            |bodies: &mut Bodies, c: &mut Claim| bodies.intern(c, |_| fresh += 1, |_| None);
        let (mut a, mut b) = (claim("t/a", Protocol::Tcp), claim("t/b", Protocol::Tcp));
        let mut c = claim("t/c", Protocol::Udp);
        let mut d = claim("t/d", Protocol::Tcp).with_sharing(Sharing::Anyone);
        assert!(!Arc::ptr_eq(a.body(), b.body()), "built apart, two bodies");
        for x in [&mut a, &mut b, &mut c, &mut d] {
            keep(&mut bodies, x);
        }
        assert!(Arc::ptr_eq(a.body(), b.body()), "kept, one body");
        assert!(!Arc::ptr_eq(a.body(), c.body()), "another protocol");
        assert!(!Arc::ptr_eq(a.body(), d.body()), "another sharing rule");
        assert_eq!(fresh, 3, "three bodies kept for the first time");
        let count = |bodies: &Bodies, x: &Claim| {
            bodies
                .counts()
                .0
                .into_iter()
                .find(|&(p, _)| p == Arc::as_ptr(x.body()))
                .map(|(_, n)| n)
        };
        assert_eq!(count(&bodies, &a), Some(2));
        // A copy a caller keeps does not keep the body once its claims have left.
        let copy = a.clone();
        bodies.release(&a);
        assert_eq!(count(&bodies, &b), Some(1));
        bodies.release(&b);
        assert_eq!(count(&bodies, &copy), None);
        assert_eq!(
            bodies.counts(),
            (
                vec![(Arc::as_ptr(c.body()), 1), (Arc::as_ptr(d.body()), 1)],
                true
            )
        );
        bodies.release(&c);
        bodies.release(&d);
        assert_eq!(bodies.counts(), (vec![], true));
    }

    #[test]
    fn claims_renamed_from_one_template_share_one_kept_body_and_leave_the_template_be() {
        let mut bodies = Bodies::default();
        let template = claim("t/template", Protocol::Tcp);
        let mut made: Vec<Claim> = (0..3)
            .map(|i| template.renamed(format!("t/c{i}").parse().unwrap()))
            .collect();
        for c in &mut made {
            bodies.intern(c, |_| {}, |_| None);
        }
        let (kept, indexed) = bodies.counts();
        assert!(indexed);
        assert_eq!(kept.len(), 1, "one kept body for the three: {kept:?}");
        assert_eq!(kept[0].1, 3);
        assert!(made.iter().all(|c| Arc::ptr_eq(c.body(), made[0].body())));
        assert_eq!(
            template.body().kept,
            u32::MAX,
            "the template's body was copied to be kept, not changed"
        );
        for c in &made {
            bodies.release(c);
        }
        assert_eq!(bodies.counts(), (vec![], true));
        // A claim of the kind made after all have left is kept afresh.
        let mut again = template.renamed("t/again".parse().unwrap());
        bodies.intern(&mut again, |_| {}, |_| None);
        assert_eq!(
            bodies.counts(),
            (vec![(Arc::as_ptr(again.body()), 1)], true)
        );
    }
}
