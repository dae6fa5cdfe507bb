//! The event queue: a 4-ary min-heap ordered by (time, sequence), so ties break by
//! insertion order and runs are deterministic. A 4-ary heap halves the depth of a binary
//! heap and keeps a node's children in one cache line, which matters with a million
//! pending events. The heap holds only (time, sequence, slot); payloads live in a slab,
//! so sifting moves 24-byte entries whatever the event type.

/// A timed event queue with deterministic tie-breaking.
#[derive(Debug, Clone)]
pub struct EventQueue<T> {
    heap: Vec<(u64, u64, u32)>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
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

impl<T> EventQueue<T> {
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

    /// Time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.first().map(|e| e.0)
    }

    /// Schedules `item` at `time`.
    pub fn push(&mut self, time: u64, item: T) {
        let seq = self.seq;
        self.seq += 1;
        let slot = if let Some(s) = self.free.pop() {
            self.slab[s as usize] = Some(item);
            s
        } else {
            self.slab.push(Some(item));
            (self.slab.len() - 1) as u32
        };
        self.heap.push((time, seq, slot));
        let mut i = self.heap.len() - 1;
        while i > 0 {
            let parent = (i - 1) / D;
            if Self::key(&self.heap[i]) < Self::key(&self.heap[parent]) {
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
                    if Self::key(&self.heap[c]) < Self::key(&self.heap[best]) {
                        best = c;
                    }
                }
                self.heap[hole] = self.heap[best];
                hole = best;
            }
            while hole > 0 {
                let parent = (hole - 1) / D;
                if Self::key(&last) < Self::key(&self.heap[parent]) {
                    self.heap[hole] = self.heap[parent];
                    hole = parent;
                } else {
                    break;
                }
            }
            self.heap[hole] = last;
            top
        };
        let (t, _, slot) = top;
        let item = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((t, item))
    }

    fn key(e: &(u64, u64, u32)) -> (u64, u64) {
        (e.0, e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn interleaved_pushes_and_pops_match_a_sorted_model(
            ops in prop::collection::vec(prop::option::of(0u64..40), 0..400)
        ) {
            // Some(t): push at t; None: pop. The model is a sorted set of (time, order).
            let mut q = EventQueue::new();
            let mut model = std::collections::BTreeSet::new();
            for (i, op) in ops.iter().enumerate() {
                if let Some(t) = op {
                    q.push(*t, i);
                    model.insert((*t, i));
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
                q.push(t, i);
            }
            let mut expect: Vec<(u64, usize)> = times.iter().copied().zip(0..).collect();
            expect.sort_unstable();
            let got: Vec<(u64, usize)> = std::iter::from_fn(|| q.pop()).collect();
            prop_assert_eq!(got, expect);
        }
    }
}
