//! The event queue: a 4-ary min-heap ordered by (time, sequence), so ties break by
//! insertion order and runs are deterministic. A 4-ary heap halves the depth of a binary
//! heap and keeps a node's children in one cache line, which matters with a million
//! pending events. The heap holds only (time, sequence, word); a payload that fits in a
//! word travels in it, the others live in a slab, so sifting moves 16-byte entries
//! whatever the event type and the commonest events need no slab slot.
//!
//! The sequence is 32 bits: when it runs out, the pending entries are renumbered in their
//! order (sorted by key, which is also a valid heap), so the order of every pending pair
//! stays what it was and a run of any length breaks ties by insertion order.

use smallvec::SmallVec;

/// An event that may travel in its heap entry, as a word below 2³¹, instead of in a slab
/// slot: a million pending departures then cost no slab.
pub trait Payload: Sized {
    /// The event as a word below 2³¹, if it is one that travels so.
    fn to_word(&self) -> Option<u32>;
    /// The event a word from [`Payload::to_word`] stands for.
    fn from_word(word: u32) -> Self;
}

/// Marks a heap entry's word as the payload itself rather than a slab slot.
const INLINE: u32 = 1 << 31;

/// One pending event in the heap: 16 bytes, four to a cache line.
#[derive(Debug, Clone, Copy)]
struct Entry {
    time: u64,
    /// Insertion order among the pending entries.
    seq: u32,
    /// The payload (marked [`INLINE`]) or its slab slot.
    word: u32,
}

impl Entry {
    fn key(&self) -> (u64, u32) {
        (self.time, self.seq)
    }
}

/// A timed event queue with deterministic tie-breaking.
#[derive(Debug, Clone)]
pub struct EventQueue<T> {
    heap: Vec<Entry>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    /// The next entry's sequence number.
    seq: u32,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue {
            heap: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

const D: usize = 4;

impl<T: Payload> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// An empty queue whose next sequence number is `seq`: lets tests reach the end of
    /// the sequence.
    #[cfg(test)]
    fn starting_at(seq: u32) -> Self {
        EventQueue {
            seq,
            ..Self::default()
        }
    }

    /// Time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.first().map(|e| e.time)
    }

    /// Schedules `item` at `time`.
    pub fn push(&mut self, time: u64, item: T) {
        if self.seq == u32::MAX {
            self.renumber();
        }
        let seq = self.seq;
        self.seq += 1;
        let word = match item.to_word() {
            Some(w) if w < INLINE => w | INLINE,
            _ => {
                if let Some(s) = self.free.pop() {
                    self.slab[s as usize] = Some(item);
                    s
                } else {
                    self.slab.push(Some(item));
                    u32::try_from(self.slab.len() - 1)
                        .ok()
                        .filter(|&s| s < INLINE)
                        .unwrap_or_else(|| unreachable!("more than 2G events pending"))
                }
            }
        };
        self.heap.push(Entry { time, seq, word });
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / D;
            if self.heap[i].key() < self.heap[parent].key() {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    /// Removes the earliest event (lowest time, then first pushed).
    ///
    /// Bottom-up: the hole at the root moves down along the smallest children to a leaf
    /// (one comparison fewer per level than sifting the last entry down, which nearly
    /// always sinks to the bottom anyway), then the last entry fills it and sifts up,
    /// usually not at all.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let last = self.heap.pop()?;
        let top = if self.heap.is_empty() {
            last
        } else {
            let top = self.heap[0];
            let n = self.heap.len();
            let mut hole = 0;
            loop {
                let first = hole * D + 1;
                if first >= n {
                    break;
                }
                let end = (first + D).min(n);
                let mut best = first;
                for c in first + 1..end {
                    if self.heap[c].key() < self.heap[best].key() {
                        best = c;
                    }
                }
                self.heap[hole] = self.heap[best];
                hole = best;
            }
            while hole > 0 {
                let parent = (hole - 1) / D;
                if last.key() < self.heap[parent].key() {
                    self.heap[hole] = self.heap[parent];
                    hole = parent;
                } else {
                    break;
                }
            }
            self.heap[hole] = last;
            top
        };
        let Entry { time, word, .. } = top;
        if word & INLINE != 0 {
            return Some((time, T::from_word(word & !INLINE)));
        }
        let item = self.slab[word as usize].take()?;
        self.free.push(word);
        Some((time, item))
    }

    /// The payload words of the first `n` events that travel in their heap entry, among
    /// the next `scan` events, in the order they come: what the engine hints to the
    /// allocator ahead of time. A best-first search from the heap's root, reading at most
    /// `scan` entries and their children.
    pub fn upcoming_inline(&self, n: usize, scan: usize) -> SmallVec<[u32; 8]> {
        let mut out = SmallVec::new();
        // Each entry read adds at most D - 1 to the frontier: inline up to `scan` = 21.
        let mut frontier: SmallVec<[usize; 64]> = SmallVec::new();
        if !self.heap.is_empty() {
            frontier.push(0);
        }
        for _ in 0..scan {
            if out.len() >= n {
                break;
            }
            let Some((at, i)) = frontier
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(_, i)| self.heap[i].key())
            else {
                break;
            };
            frontier.swap_remove(at);
            let word = self.heap[i].word;
            if word & INLINE != 0 {
                out.push(word & !INLINE);
            }
            let first = i * D + 1;
            frontier.extend(first..(first + D).min(self.heap.len()));
        }
        out
    }

    /// Numbers the pending entries 0, 1, ... in their (time, sequence) order, once the
    /// sequence has run out: their relative order is unchanged, and a sorted array is a
    /// heap.
    fn renumber(&mut self) {
        self.heap.sort_unstable_by_key(Entry::key);
        for (i, e) in self.heap.iter_mut().enumerate() {
            e.seq = u32::try_from(i).unwrap_or_else(|_| unreachable!("4G events pending"));
        }
        self.seq = u32::try_from(self.heap.len())
            .ok()
            .filter(|&n| n < u32::MAX)
            .unwrap_or_else(|| unreachable!("4G events pending"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test event: even numbers travel in the heap entry, odd ones in the slab.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Item(usize);

    impl Payload for Item {
        fn to_word(&self) -> Option<u32> {
            u32::try_from(self.0).ok().filter(|w| w % 2 == 0)
        }
        fn from_word(word: u32) -> Item {
            Item(word as usize)
        }
    }

    /// A payload that always asks to travel as a word, whatever its size.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Word(u32);

    impl Payload for Word {
        fn to_word(&self) -> Option<u32> {
            Some(self.0)
        }
        fn from_word(word: u32) -> Word {
            Word(word)
        }
    }

    #[test]
    fn words_that_need_the_marking_bit_travel_in_the_slab_and_come_back_whole() {
        let words = [4, 1 << 31, 7, u32::MAX, (1 << 31) - 1, (1 << 31) + 6];
        let mut q = EventQueue::new();
        for (i, &w) in words.iter().enumerate() {
            q.push(10 - i as u64 % 2, Word(w));
        }
        // Time 9 first (odd positions), then time 10, each in insertion order.
        let got: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|(_, w)| w.0).collect();
        assert_eq!(got, [1 << 31, u32::MAX, (1 << 31) + 6, 4, 7, (1 << 31) - 1]);
        assert_eq!(
            q.slab.len(),
            3,
            "only the three words of 2^31 and more took slots"
        );
    }

    #[test]
    fn ties_keep_insertion_order_across_the_end_of_the_sequence() {
        let mut q = EventQueue::starting_at(u32::MAX - 4);
        // Numbered before the sequence runs out: three at time 5, then one at time 1,
        // which sifts to the root, so the heap's array is not in key order.
        for i in 0..3 {
            q.push(5, Item(i));
        }
        q.push(1, Item(3));
        // The sequence runs out at the first of these: the four pending are renumbered.
        for i in 4..7 {
            q.push(5 - (i as u64 % 2) * 4, Item(i));
        }
        let got: Vec<(u64, usize)> = std::iter::from_fn(|| q.pop())
            .map(|(t, x)| (t, x.0))
            .collect();
        assert_eq!(
            got,
            [(1, 3), (1, 5), (5, 0), (5, 1), (5, 2), (5, 4), (5, 6)]
        );
        assert!(
            q.seq < 16,
            "renumbered to small numbers, not wrapped: {}",
            q.seq
        );
    }

    proptest! {
        /// The upcoming inline events are those a run of pops would give first, in that
        /// order: the first `n` even items among the next `scan` events.
        #[test]
        fn upcoming_inline_events_come_in_pop_order(
            ops in prop::collection::vec((0u64..20, 0usize..50, any::<bool>()), 1..200),
            n in 0usize..6,
            scan in 0usize..12,
        ) {
            let mut q = EventQueue::new();
            for (t, x, pop) in ops {
                if pop {
                    q.pop();
                } else {
                    q.push(t, Item(x));
                }
            }
            let got: Vec<usize> = q.upcoming_inline(n, scan).iter().map(|&w| w as usize).collect();
            let mut copy = q.clone();
            let want: Vec<usize> = std::iter::from_fn(|| copy.pop())
                .take(scan)
                .map(|(_, x)| x.0)
                .filter(|x| x % 2 == 0)
                .take(n)
                .collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_heap_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    proptest! {
        #[test]
        fn interleaved_pushes_and_pops_match_a_sorted_model(
            ops in prop::collection::vec(prop::option::of(0u64..40), 0..400),
            start in prop_oneof![Just(0u32), (u32::MAX - 400)..=u32::MAX],
        ) {
            // Some(t): push at t; None: pop. The model is a sorted set of (time, order).
            // Starting near the end of the sequence makes the queue renumber mid-run.
            let mut q = EventQueue::starting_at(start);
            let mut model = std::collections::BTreeSet::new();
            for (i, op) in ops.iter().enumerate() {
                if let Some(t) = op {
                    q.push(*t, Item(i));
                    model.insert((*t, Item(i)));
                } else {
                    prop_assert_eq!(q.pop(), model.pop_first());
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.peek_time(), model.first().map(|e| e.0));
            }
        }

        #[test]
        fn pops_in_time_then_insertion_order(times in prop::collection::vec(0u64..50, 0..300)) {
            let mut q = EventQueue::new();
            for (i, &t) in times.iter().enumerate() {
                q.push(t, Item(i));
            }
            let mut expect: Vec<(u64, Item)> = times.iter().copied().zip((0..).map(Item)).collect();
            expect.sort_unstable();
            let got: Vec<(u64, Item)> = std::iter::from_fn(|| q.pop()).collect();
            prop_assert_eq!(got, expect);
        }
    }
}
