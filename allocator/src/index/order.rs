//! One protocol class's LBs ordered by (room, position): what best-fit and worst-fit walk.
//!
//! A treap whose nodes are the positions of the pool's room tree, so moving an LB to
//! another room level rotates links in place: no node is allocated or freed per decision
//! (a `BTreeSet` splits and merges nodes as entries move). Priorities are a fixed hash of
//! the position, so the shape — and every order read from it — is deterministic. The
//! nodes are also threaded in order (`prev`/`next`), so walking candidates is one step
//! per entry, as cheap as a sorted list.

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    /// The room recorded; 0 when the position is not in the order.
    room: u32,
    left: u32,
    right: u32,
    parent: u32,
    /// The entries before and after it in the order.
    prev: u32,
    next: u32,
}

const EMPTY: Node = Node {
    room: 0,
    left: NIL,
    right: NIL,
    parent: NIL,
    prev: NIL,
    next: NIL,
};

/// Positions with room > 0, ordered by (room, position).
#[derive(Clone, Debug)]
pub(crate) struct RoomOrder {
    nodes: Vec<Node>,
    root: u32,
    /// The last entry.
    tail: u32,
    len: usize,
}

impl Default for RoomOrder {
    fn default() -> Self {
        RoomOrder {
            nodes: Vec::new(),
            root: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// The heap priority of a position (splitmix64's finaliser): fixed, well mixed.
fn priority(pos: u32) -> u64 {
    let mut z = u64::from(pos).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RoomOrder {
    /// Requests from memory, without waiting, position `pos`'s node.
    pub fn prefetch(&self, pos: u32) {
        if (pos as usize) < self.nodes.len() {
            prefetch_index::prefetch_index(&self.nodes, pos as usize);
        }
    }

    /// Entries in the order.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every entry, keeping the room for as many positions.
    pub fn clear(&mut self) {
        self.nodes.iter_mut().for_each(|n| *n = EMPTY);
        self.root = NIL;
        self.tail = NIL;
        self.len = 0;
    }

    fn key(&self, pos: u32) -> (u32, u32) {
        (self.nodes[pos as usize].room, pos)
    }

    /// Whether `pos` is in the order with room `room`.
    pub fn contains(&self, room: u32, pos: u32) -> bool {
        room > 0 && self.nodes.get(pos as usize).is_some_and(|n| n.room == room)
    }

    /// Puts `pos` in the order at `room` (> 0); it must not be in it.
    pub fn insert(&mut self, pos: u32, room: u32) {
        debug_assert!(room > 0);
        let i = pos as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, EMPTY);
        }
        debug_assert_eq!(self.nodes[i].room, 0, "inserted twice");
        self.nodes[i] = Node { room, ..EMPTY };
        self.len += 1;
        // Plain search-tree insertion...
        let key = (room, pos);
        let (mut parent, mut pred, mut succ) = (NIL, NIL, NIL);
        let mut at = self.root;
        while at != NIL {
            parent = at;
            at = if key < self.key(at) {
                succ = at;
                self.nodes[at as usize].left
            } else {
                pred = at;
                self.nodes[at as usize].right
            };
        }
        self.nodes[i].parent = parent;
        self.nodes[i].prev = pred;
        self.nodes[i].next = succ;
        if pred != NIL {
            self.nodes[pred as usize].next = pos;
        }
        match succ {
            NIL => self.tail = pos,
            s => self.nodes[s as usize].prev = pos,
        }
        if parent == NIL {
            self.root = pos;
        } else if key < self.key(parent) {
            self.nodes[parent as usize].left = pos;
        } else {
            self.nodes[parent as usize].right = pos;
        }
        // ...then up while it outranks its parent.
        let p = priority(pos);
        while self.nodes[i].parent != NIL && priority(self.nodes[i].parent) < p {
            self.rotate_up(pos);
        }
    }

    /// Takes `pos` out of the order; it must be in it.
    pub fn remove(&mut self, pos: u32) {
        let i = pos as usize;
        debug_assert!(self.nodes[i].room > 0, "removing an absent entry");
        let Node { prev, next, .. } = self.nodes[i];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
        // Down until it has at most one child, lifting the higher-priority child each time.
        loop {
            let Node { left, right, .. } = self.nodes[i];
            if left == NIL || right == NIL {
                let child = if left == NIL { right } else { left };
                let parent = self.nodes[i].parent;
                if child != NIL {
                    self.nodes[child as usize].parent = parent;
                }
                self.replace_child(parent, pos, child);
                break;
            }
            let up = if priority(left) > priority(right) {
                left
            } else {
                right
            };
            self.rotate_up(up);
        }
        self.nodes[i] = EMPTY;
        self.len -= 1;
    }

    /// Points `parent`'s link to `old` at `new` (the root when `parent` is NIL).
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else if self.nodes[parent as usize].left == old {
            self.nodes[parent as usize].left = new;
        } else {
            self.nodes[parent as usize].right = new;
        }
    }

    /// Rotates `x` above its parent, keeping the search order.
    fn rotate_up(&mut self, x: u32) {
        let p = self.nodes[x as usize].parent;
        let g = self.nodes[p as usize].parent;
        if self.nodes[p as usize].left == x {
            let b = self.nodes[x as usize].right;
            self.nodes[p as usize].left = b;
            if b != NIL {
                self.nodes[b as usize].parent = p;
            }
            self.nodes[x as usize].right = p;
        } else {
            let b = self.nodes[x as usize].left;
            self.nodes[p as usize].right = b;
            if b != NIL {
                self.nodes[b as usize].parent = p;
            }
            self.nodes[x as usize].left = p;
        }
        self.nodes[p as usize].parent = x;
        self.nodes[x as usize].parent = g;
        self.replace_child(g, p, x);
    }

    /// The first entry at or after `(room, pos)`.
    pub fn lower_bound(&self, room: u32, pos: u32) -> Option<u32> {
        let key = (room, pos);
        let mut at = self.root;
        let mut best = None;
        while at != NIL {
            if self.key(at) >= key {
                best = Some(at);
                at = self.nodes[at as usize].left;
            } else {
                at = self.nodes[at as usize].right;
            }
        }
        best
    }

    /// The last entry.
    pub fn last(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The entry after `pos`.
    pub fn next(&self, pos: u32) -> Option<u32> {
        let n = self.nodes[pos as usize].next;
        (n != NIL).then_some(n)
    }

    /// The entry before `pos`.
    pub fn prev(&self, pos: u32) -> Option<u32> {
        let p = self.nodes[pos as usize].prev;
        (p != NIL).then_some(p)
    }

    /// The room recorded for `pos` (0 when absent).
    pub fn room(&self, pos: u32) -> u32 {
        self.nodes.get(pos as usize).map_or(0, |n| n.room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ascending(o: &RoomOrder) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        let mut at = o.lower_bound(0, 0);
        while let Some(p) = at {
            v.push((o.room(p), p));
            at = o.next(p);
        }
        v
    }

    fn descending(o: &RoomOrder) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        let mut at = o.last();
        while let Some(p) = at {
            v.push((o.room(p), p));
            at = o.prev(p);
        }
        v
    }

    proptest! {
        /// Against a `BTreeSet` of (room, position): after any sequence of moves the two
        /// hold the same entries in the same order, both ways, and `lower_bound` agrees.
        #[test]
        fn orders_like_a_sorted_set(
            moves in prop::collection::vec((0u32..40, 0u32..6), 1..400),
            probes in prop::collection::vec((0u32..8, 0u32..40), 1..20),
        ) {
            let mut order = RoomOrder::default();
            let mut model: BTreeSet<(u32, u32)> = BTreeSet::new();
            for (pos, room) in moves {
                let old = order.room(pos);
                if old > 0 {
                    order.remove(pos);
                    model.remove(&(old, pos));
                }
                if room > 0 {
                    order.insert(pos, room);
                    model.insert((room, pos));
                }
                prop_assert_eq!(order.len(), model.len());
            }
            let want: Vec<(u32, u32)> = model.iter().copied().collect();
            prop_assert_eq!(ascending(&order), want.clone());
            let mut rev = want;
            rev.reverse();
            prop_assert_eq!(descending(&order), rev);
            for (room, pos) in probes {
                prop_assert_eq!(
                    order.lower_bound(room, pos),
                    model.range((room, pos)..).next().map(|&(_, p)| p)
                );
            }
            order.clear();
            prop_assert_eq!(order.len(), 0);
            prop_assert_eq!(order.lower_bound(0, 0), None);
        }
    }

    /// Sequential positions (how LBs arrive) still give a shallow tree.
    #[test]
    fn stays_shallow_when_positions_arrive_in_order() {
        let mut o = RoomOrder::default();
        for p in 0..100_000 {
            o.insert(p, 1 + p % 7);
        }
        let depth = |mut at: u32| {
            let mut d = 0;
            while at != NIL {
                at = o.nodes[at as usize].parent;
                d += 1;
            }
            d
        };
        let deepest = (0..100_000).map(depth).max().unwrap_or(0);
        // log2(100k) ≈ 17; a treap's expected depth is about 2.9·ln n ≈ 33. A degenerate
        // (list-like) tree would be 100,000 deep.
        assert!(deepest < 60, "depth {deepest}");
    }
}
