//! Listener key → slot for one LB: open addressing with linear probing over 8-byte
//! entries, the key and its slot side by side.
//!
//! A lookup reads the entry where the key's hash lands and usually no other cache line.
//! The SwissTable this replaces keeps its control bytes apart from its buckets, so every
//! lookup of a cold LB missed twice, and a million claims keep every LB cold. Deletion
//! shifts the entries after it back (no tombstones), so a table under churn never needs
//! rebuilding and probe runs stay as short as the load allows.

use prefetch_index::prefetch_index;

/// An unused entry; no key is `u32::MAX` (keys are `protocol << 16 | port`).
const EMPTY: u64 = u64::MAX;

/// The smallest table allocated.
const MIN_ENTRIES: usize = 8;

/// The key → slot table: `entries` is empty or a power of two long, and at most 7/8 full
/// so a probe always meets an empty entry.
#[derive(Clone, Default)]
pub(crate) struct PortTable {
    entries: Box<[u64]>,
    len: u32,
}

fn entry(key: u32, slot: u32) -> u64 {
    u64::from(key) << 32 | u64::from(slot)
}

fn key_of(e: u64) -> u32 {
    (e >> 32) as u32
}

/// Keys a table of `entries` holds before it grows.
fn room_of(entries: usize) -> usize {
    entries - entries / 8
}

/// Where `key`'s probe starts in a table of `entries` (a power of two): Fibonacci
/// hashing, whose top bits spread consecutive ports (the usual keys) evenly.
fn home_in(key: u32, entries: usize) -> usize {
    let bits = entries.trailing_zeros();
    (key.wrapping_mul(0x9E37_79B9) >> (32 - bits)) as usize
}

impl PortTable {
    fn home(&self, key: u32) -> usize {
        home_in(key, self.entries.len())
    }

    /// The entry holding `key`, or the empty entry where it would go.
    fn find(&self, key: u32) -> Result<usize, usize> {
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return Err(i);
            }
            if key_of(e) == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Keys the table holds without growing.
    pub fn capacity(&self) -> usize {
        if self.entries.is_empty() {
            0
        } else {
            room_of(self.entries.len())
        }
    }

    /// Forgets every key, keeping the room.
    pub fn clear(&mut self) {
        self.entries.fill(EMPTY);
        self.len = 0;
    }

    /// Requests from memory, without waiting, the entry where `key`'s probe starts.
    pub fn prefetch(&self, key: u32) {
        if !self.entries.is_empty() {
            prefetch_index(&self.entries, self.home(key));
        }
    }

    /// The slot of `key`.
    pub fn get(&self, key: u32) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.find(key).ok().map(|i| self.entries[i] as u32)
    }

    /// Sets `key`'s slot; the slot it had before.
    pub fn insert(&mut self, key: u32, slot: u32) -> Option<u32> {
        debug_assert_ne!(key, u32::MAX, "no key is u32::MAX");
        if !self.entries.is_empty() {
            match self.find(key) {
                Ok(i) => {
                    let old = self.entries[i] as u32;
                    self.entries[i] = entry(key, slot);
                    return Some(old);
                }
                Err(i) if self.len() < self.capacity() => {
                    self.entries[i] = entry(key, slot);
                    self.len += 1;
                    return None;
                }
                Err(_) => {}
            }
        }
        self.grow();
        let Err(i) = self.find(key) else {
            unreachable!("a new key")
        };
        self.entries[i] = entry(key, slot);
        self.len += 1;
        None
    }

    /// Removes `key`; the slot it had.
    pub fn remove(&mut self, key: u32) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut hole = self.find(key).ok()?;
        let old = self.entries[hole] as u32;
        let mask = self.entries.len() - 1;
        // Shift back every entry of the run after the hole that may sit there: one whose
        // home is not between the hole and where it stands.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e == EMPTY {
                break;
            }
            let home = self.home(key_of(e));
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        Some(old)
    }

    /// Every key with its slot, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.entries
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| (key_of(e), e as u32))
    }

    /// Twice the entries (or the smallest table), every key placed again.
    fn grow(&mut self) {
        let n = (self.entries.len() * 2).max(MIN_ENTRIES);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; n].into_boxed_slice());
        for e in old.iter().copied().filter(|&e| e != EMPTY) {
            let Err(i) = self.find(key_of(e)) else {
                unreachable!("keys are unique")
            };
            self.entries[i] = e;
        }
    }
}

impl std::fmt::Debug for PortTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v: Vec<(u32, u32)> = self.iter().collect();
        v.sort_unstable();
        f.debug_map().entries(v).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so removals hit and runs collide; consecutive ports as
        // placement makes them, and keys of every protocol.
        let key = prop_oneof![
            30_000u32..30_040,
            (0u32..3, 0u32..65_536).prop_map(|(p, port)| p << 16 | port),
        ];
        prop_oneof![
            6 => (key.clone(), any::<u32>()).prop_map(|(k, s)| Op::Insert(k, s)),
            4 => key.prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Answers as a `BTreeMap` does after any mix of inserts, removals and clears;
        /// never fuller than 7/8.
        #[test]
        fn answers_like_a_map(ops in proptest::collection::vec(op(), 1..400)) {
            let mut t = PortTable::default();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, s) => prop_assert_eq!(t.insert(k, s), model.insert(k, s)),
                    Op::Remove(k) => prop_assert_eq!(t.remove(k), model.remove(&k)),
                    Op::Clear => {
                        t.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert!(t.len() <= t.capacity());
                prop_assert!(t.entries.is_empty() || t.entries.contains(&EMPTY));
                let mut all: Vec<(u32, u32)> = t.iter().collect();
                all.sort_unstable();
                prop_assert_eq!(all, model.iter().map(|(&k, &s)| (k, s)).collect::<Vec<_>>());
                for k in (30_000..30_040).chain(model.keys().copied()) {
                    prop_assert_eq!(t.get(k), model.get(&k).copied());
                }
            }
        }
    }

    /// A removal in the middle of a run that wraps past the table's end leaves every key
    /// after it findable.
    #[test]
    fn removal_in_a_wrapped_run_keeps_the_rest_findable() {
        // Keys whose probes all start at the last entry of an 8-entry table.
        let keys: Vec<u32> = (0..1_000_000)
            .filter(|&k| home_in(k, 8) == 7)
            .take(5)
            .collect();
        let mut t = PortTable::default();
        t.insert(keys[0], 0);
        assert_eq!(t.remove(keys[0]), Some(0));
        for (s, &k) in keys.iter().enumerate() {
            assert_eq!(t.insert(k, s as u32), None);
        }
        assert_eq!(t.entries.len(), 8, "five keys fit an 8-entry table");
        assert_eq!(t.remove(keys[1]), Some(1));
        for (s, &k) in keys.iter().enumerate().filter(|&(s, _)| s != 1) {
            assert_eq!(t.get(k), Some(s as u32), "key {k}");
        }
        assert_eq!(t.get(keys[1]), None);
    }

    /// Keys a table of 16 holds before it grows: 14, as the SwissTable before it did.
    #[test]
    fn grows_past_seven_eighths() {
        let mut t = PortTable::default();
        assert_eq!(t.capacity(), 0);
        for k in 0..14 {
            t.insert(30_000 + k, k);
        }
        assert_eq!((t.entries.len(), t.capacity()), (16, 14));
        t.insert(40_000, 0);
        assert_eq!((t.entries.len(), t.capacity()), (32, 28));
    }
}
