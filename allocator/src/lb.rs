//! One load balancer's state: its pool, lifecycle, listeners in use, and which listeners a
//! claim would get on it.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use prefetch_index::prefetch_index;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use crate::model::{
    Claim, ClaimBody, GroupKey, LbId, Listener, Listeners, PortRequest, Sharing, TenantId, Time,
};
use crate::ports::{AutoPorts, ClashRule, Used};
use crate::profile::LbProfile;

/// Where a load balancer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LbState {
    /// Asked for, not serving yet; claims may already be placed on it.
    Provisioning,
    /// Serving.
    Ready,
    /// Being deleted; takes no new claims.
    Draining,
}

/// How claims are grouped into pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// By each claim's sharing rule.
    BySharing,
    /// Every claim alone (the one-LB-per-Service policy).
    EveryClaimAlone,
}

/// The set of claims that may share one load balancer. Each LB belongs to exactly one pool,
/// fixed when it opens, so sharing rules hold by construction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PoolKey {
    /// Claims of one tenant with the default rule.
    Tenant(TenantId),
    /// Claims of any tenant that all opted in to cross-tenant sharing.
    Open,
    /// Claims of one tenant with one group key.
    Group(TenantId, GroupKey),
    /// Claims of any tenant with one cross-tenant group key.
    CrossTenantGroup(GroupKey),
    /// One claim at a time, of this tenant.
    Dedicated(TenantId),
}

impl PoolKey {
    /// The pool a claim belongs to.
    pub fn of(claim: &Claim, pooling: Pooling) -> PoolKey {
        PoolKeyRef::of(claim, pooling).to_owned()
    }

    /// Whether LBs of this pool hold at most one claim.
    pub fn is_dedicated(&self) -> bool {
        self.as_ref().is_dedicated()
    }

    /// The key by reference.
    pub(crate) fn as_ref(&self) -> PoolKeyRef<'_> {
        match self {
            PoolKey::Tenant(t) => PoolKeyRef::Tenant(t),
            PoolKey::Open => PoolKeyRef::Open,
            PoolKey::Group(t, g) => PoolKeyRef::Group(t, g),
            PoolKey::CrossTenantGroup(g) => PoolKeyRef::CrossTenantGroup(g),
            PoolKey::Dedicated(t) => PoolKeyRef::Dedicated(t),
        }
    }
}

/// Hashed through its reference, so the two hash alike by construction and a map of
/// owned keys is looked up with a `PoolKeyRef` (a crate-private borrowed form).
impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A claim's pool key by reference to the claim's names: what [`PoolKey::of`] makes,
/// without a count on each name's handle (three per placed claim, #12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PoolKeyRef<'a> {
    Tenant(&'a TenantId),
    Open,
    Group(&'a TenantId, &'a GroupKey),
    CrossTenantGroup(&'a GroupKey),
    Dedicated(&'a TenantId),
}

impl<'a> PoolKeyRef<'a> {
    /// The pool a claim belongs to.
    pub fn of(claim: &'a Claim, pooling: Pooling) -> PoolKeyRef<'a> {
        PoolKeyRef::of_body(claim.body(), pooling)
    }

    /// The pool of claims of `body`.
    pub fn of_body(body: &'a ClaimBody, pooling: Pooling) -> PoolKeyRef<'a> {
        let tenant = &body.tenant;
        if pooling == Pooling::EveryClaimAlone {
            return PoolKeyRef::Dedicated(tenant);
        }
        match body.sharing() {
            Sharing::Tenant => PoolKeyRef::Tenant(tenant),
            Sharing::Anyone => PoolKeyRef::Open,
            Sharing::Group(g) => PoolKeyRef::Group(tenant, g),
            Sharing::CrossTenantGroup(g) => PoolKeyRef::CrossTenantGroup(g),
            Sharing::Dedicated => PoolKeyRef::Dedicated(tenant),
        }
    }

    /// Whether LBs of this pool hold at most one claim.
    pub fn is_dedicated(self) -> bool {
        matches!(self, PoolKeyRef::Dedicated(_))
    }

    /// The owned key.
    pub fn to_owned(self) -> PoolKey {
        match self {
            PoolKeyRef::Tenant(t) => PoolKey::Tenant(t.clone()),
            PoolKeyRef::Open => PoolKey::Open,
            PoolKeyRef::Group(t, g) => PoolKey::Group(t.clone(), g.clone()),
            PoolKeyRef::CrossTenantGroup(g) => PoolKey::CrossTenantGroup(g.clone()),
            PoolKeyRef::Dedicated(t) => PoolKey::Dedicated(t.clone()),
        }
    }
}

impl hashbrown::Equivalent<PoolKey> for PoolKeyRef<'_> {
    fn equivalent(&self, key: &PoolKey) -> bool {
        *self == key.as_ref()
    }
}

/// A value per pool key, the keys numbered in the order first seen: a kept claim body
/// carries its keys' numbers, so the paths every placement and release take index a
/// vector where they hashed the key (its names) and compared it.
#[derive(Clone, Debug)]
pub(crate) struct ByPoolKey<T> {
    numbers: hashbrown::HashMap<PoolKey, u32, FxBuildHasher>,
    values: Vec<T>,
}

impl<T> Default for ByPoolKey<T> {
    fn default() -> Self {
        ByPoolKey {
            numbers: hashbrown::HashMap::default(),
            values: Vec::new(),
        }
    }
}

impl<T> ByPoolKey<T> {
    /// The number of `key`, looked up by reference; on first sight the key is copied,
    /// numbered next and given `new()`'s value. Kept for good, as tenants' books are.
    pub fn enter(&mut self, key: PoolKeyRef<'_>, new: impl FnOnce() -> T) -> u32 {
        if let Some(&n) = self.numbers.get(&key) {
            return n;
        }
        let n = u32::try_from(self.values.len())
            .unwrap_or_else(|_| unreachable!("more than 4G pool keys"));
        self.values.push(new());
        self.numbers.insert(key.to_owned(), n);
        n
    }

    /// The number of `key`, if it has one.
    pub fn number(&self, key: PoolKeyRef<'_>) -> Option<u32> {
        self.numbers.get(&key).copied()
    }

    /// The value of key number `n` (from [`ByPoolKey::enter`]).
    pub fn get(&self, n: u32) -> &T {
        &self.values[n as usize]
    }

    /// The value of key number `n`, to change.
    pub fn get_mut(&mut self, n: u32) -> &mut T {
        &mut self.values[n as usize]
    }
}

/// Why a claim does not fit an LB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Misfit {
    /// Not enough room: free listeners, or claims per LB.
    Capacity,
    /// A fixed listener (or the LB's single protocol) clashes.
    Conflict,
    /// No free port left in the automatic range.
    RangeFull,
}

/// A load balancer as the allocator tracks it: 128 bytes aligned to 64, so a record is
/// exactly two cache lines (unaligned in the LB table it would straddle three).
#[derive(Clone, Debug)]
#[repr(align(64))]
pub(crate) struct Lb {
    pub id: LbId,
    /// Index of its profile in the configuration (at most [`MAX_PROFILES`](crate::MAX_PROFILES)
    /// of them: one byte, so the record fits two cache lines); see [`Lb::profile`].
    profile_no: u8,
    /// Index of its pool index (pool key and profile).
    pub pool: u32,
    pub state: LbState,
    /// Listener → slot of the claim holding it.
    pub used: Used,
    pub claims: u32,
    /// Most claims it may hold (1 in a dedicated pool; a policy may set fewer than capacity).
    pub claim_cap: u32,
    /// Since when it has held no claim, if it is idle (see [`Lb::idle_since`]): a flag
    /// and a time, not an `Option<Time>`, whose 16 bytes would not let the record fit
    /// two cache lines.
    idle: bool,
    idle_at: Time,
    pub rule: ClashRule,
    pub auto: AutoPorts,
    /// Its position in the pool index and the room recorded there, per protocol class.
    pub pos: u32,
    pub indexed: [u32; 3],
    /// Which of the allocator's tracked hot listeners clash here, as the pool index records
    /// them (bit `h`: a claim asking tracked listener `h` cannot come here).
    pub hot_mask: u8,
}

impl Lb {
    /// Since when it has held no claim, if it is idle.
    pub fn idle_since(&self) -> Option<Time> {
        self.idle.then_some(self.idle_at)
    }

    /// Records it no longer idle; since when it was, if it was.
    pub fn take_idle_since(&mut self) -> Option<Time> {
        let t = self.idle_since();
        self.idle = false;
        t
    }

    /// Records it idle since `t`, or not idle.
    pub fn set_idle_since(&mut self, t: Option<Time>) {
        self.idle = t.is_some();
        self.idle_at = t.unwrap_or(Time(0));
    }

    /// Index of its profile in the configuration.
    pub fn profile(&self) -> usize {
        usize::from(self.profile_no)
    }

    /// A fresh, empty LB: the only way an `Lb` comes to be.
    pub fn fresh(
        id: LbId,
        profile_index: usize,
        profile: &LbProfile,
        pool: u32,
        claim_cap: u32,
        rule: ClashRule,
        state: LbState,
    ) -> Lb {
        Lb {
            id,
            profile_no: u8::try_from(profile_index)
                .unwrap_or_else(|_| unreachable!("a configuration has at most 64 profiles")),
            pool,
            state,
            used: Used::default(),
            claims: 0,
            claim_cap,
            idle: false,
            idle_at: Time(0),
            rule,
            auto: AutoPorts::new(profile),
            pos: 0,
            indexed: [0; 3],
            hot_mask: 0,
        }
    }

    /// Free listener slots.
    pub fn free(&self, profile: &LbProfile) -> u32 {
        profile.max_listeners.saturating_sub(self.used.len() as u32)
    }

    /// Listeners a new claim could still get: none while draining or at the claim cap.
    pub fn room(&self, profile: &LbProfile) -> u32 {
        if self.state == LbState::Draining || self.claims >= self.claim_cap {
            0
        } else {
            self.free(profile)
        }
    }

    /// The room per protocol class as the pool index records it: one class when the
    /// profile mixes protocols, else one per protocol (an LB locked to TCP has no UDP room).
    pub fn rooms(&self, profile: &LbProfile) -> [u32; 3] {
        let room = self.room(profile);
        if profile.mixed_protocols {
            return [room, 0, 0];
        }
        let lock = self.used.protocol();
        let mut r = [0; 3];
        for p in &profile.protocols {
            if lock.is_none_or(|l| l == *p) {
                r[p.index()] = room;
            }
        }
        r
    }

    /// The listeners `claim` would get here, in request order, or why it does not fit.
    /// `prefer` (one entry per request) keeps earlier automatic ports where still free.
    pub fn plan(
        &self,
        profile: &LbProfile,
        claim: &Claim,
        prefer: Option<&[Listener]>,
    ) -> Result<Listeners, Misfit> {
        if self.room(profile) < claim.listener_count() {
            return Err(Misfit::Capacity);
        }
        if !profile.mixed_protocols
            && let Some(locked) = self.used.protocol()
            && claim.ports().iter().any(|r| r.protocol() != locked)
        {
            return Err(Misfit::Conflict);
        }
        let rule = self.rule;
        if claim
            .fixed_listeners()
            .any(|l| rule.occupied(&self.used, l))
        {
            return Err(Misfit::Conflict);
        }
        let mut out: Listeners = claim.fixed_listeners().collect();
        let fixed = out.len();
        // Automatic ports come after the fixed ones in `out` while planning; the result is
        // put back in request order below.
        for (i, req) in claim.ports().iter().enumerate() {
            let PortRequest::Any(proto) = *req else {
                continue;
            };
            let preferred = prefer.and_then(|p| p.get(i)).copied().filter(|&l| {
                l.protocol == proto
                    && profile.auto_ports.contains(l.port)
                    && !profile.is_reserved(l.port)
                    && !rule.occupied(&self.used, l)
                    && !out.iter().any(|&o| rule.within_claim.clash(o, l))
            });
            let chosen = match preferred {
                Some(l) => l,
                None => self
                    .auto
                    .lowest_free(profile, rule, &self.used, proto, &out)
                    .ok_or(Misfit::RangeFull)?,
            };
            out.push(chosen);
        }
        if fixed == out.len() || fixed == 0 {
            // All fixed or all automatic: already in request order.
            return Ok(out);
        }
        let (mut f, mut a) = (0, fixed);
        Ok(claim
            .ports()
            .iter()
            .map(|r| {
                let i = if r.fixed().is_some() {
                    f += 1;
                    f - 1
                } else {
                    a += 1;
                    a - 1
                };
                out[i]
            })
            .collect())
    }

    /// Takes `listeners` for slot `k`; `claim` says which of them were picked automatically.
    pub fn occupy(&mut self, profile: &LbProfile, claim: &Claim, k: u32, listeners: &[Listener]) {
        for (req, &l) in claim.ports().iter().zip(listeners) {
            self.used.insert(l, k);
            let automatic = req.fixed().is_none();
            self.auto.take(profile, self.rule, &self.used, l, automatic);
        }
        self.claims += 1;
    }

    /// Frees `listeners` of one claim.
    pub fn vacate(&mut self, profile: &LbProfile, listeners: &[Listener]) {
        for &l in listeners {
            self.used.remove(l);
        }
        // Highest port first: a claim's run of automatic ports at the top of the cursor
        // then steps it back port by port. Any order ends the same (`give_back` collapses
        // the holes just below the cursor), but a lower port given back first would be
        // put in the hole set only to be taken out again.
        let mut back: smallvec::SmallVec<[Listener; 4]> = listeners.into();
        back.sort_unstable_by_key(|l| std::cmp::Reverse(l.port));
        for l in back {
            self.auto.give_back(profile, self.rule, &self.used, l);
        }
        self.claims -= 1;
    }
}

/// The LBs by id: a hash table of the records themselves, each found by its own id (so
/// the id is stored once), and whose address is known from the id without reading the
/// record ([`LbTable::prefetch`]). Iteration is in no particular order.
#[derive(Clone, Debug, Default)]
pub(crate) struct LbTable(HashTable<Lb>);

fn hash_lb(id: LbId) -> u64 {
    FxBuildHasher.hash_one(id)
}

impl LbTable {
    /// LBs recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The LB `id`.
    pub fn get(&self, id: LbId) -> Option<&Lb> {
        self.0.find(hash_lb(id), |l| l.id == id)
    }

    /// The LB `id`, to change.
    pub fn get_mut(&mut self, id: LbId) -> Option<&mut Lb> {
        self.0.find_mut(hash_lb(id), |l| l.id == id)
    }

    /// Whether LB `id` is recorded.
    pub fn contains_key(&self, id: LbId) -> bool {
        self.get(id).is_some()
    }

    /// Records `lb` under its id, in place of any LB recorded with it.
    pub fn insert(&mut self, lb: Lb) {
        let id = lb.id;
        match self.0.entry(hash_lb(id), |l| l.id == id, |l| hash_lb(l.id)) {
            Entry::Occupied(mut o) => *o.get_mut() = lb,
            Entry::Vacant(v) => {
                v.insert(lb);
            }
        }
    }

    /// Takes LB `id` out.
    pub fn remove(&mut self, id: LbId) -> Option<Lb> {
        self.0
            .find_entry(hash_lb(id), |l| l.id == id)
            .ok()
            .map(|e| e.remove().0)
    }

    /// The ids recorded.
    pub fn keys(&self) -> impl Iterator<Item = &LbId> {
        self.0.iter().map(|l| &l.id)
    }

    /// The records.
    pub fn values(&self) -> impl Iterator<Item = &Lb> {
        self.0.iter()
    }

    /// Requests from memory, without waiting, the parts of LB `id`'s record a claim
    /// leaving it reads (see [`crate::Allocator::prefetch`]). Reads only the table's
    /// control bytes.
    pub fn prefetch(&self, id: LbId) {
        // The first record whose tag matches, not read: the reference gives addresses.
        if let Some(l) = self.0.find(hash_lb(id), |_| true) {
            prefetch_index(std::slice::from_ref(l), 0);
            prefetch_index(std::slice::from_ref(&l.used), 0);
            prefetch_index(std::slice::from_ref(&l.auto), 0);
            prefetch_index(std::slice::from_ref(&l.indexed), 0);
        }
    }
}

impl std::ops::Index<LbId> for LbTable {
    type Output = Lb;
    fn index(&self, id: LbId) -> &Lb {
        self.get(id)
            .unwrap_or_else(|| panic!("{id} is not recorded"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_lb_record_is_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Lb>(), 128);
        assert_eq!(std::mem::align_of::<Lb>(), 64);
    }

    /// Every kind of pool key is numbered once, in the order first seen, and found again
    /// by reference to its key; another key is not found.
    #[test]
    fn pool_keys_are_numbered_once_each() {
        let t = |s: &str| TenantId::new(s).unwrap();
        let g = |s: &str| GroupKey::new(s).unwrap();
        let keys = [
            PoolKey::Tenant(t("shop")),
            PoolKey::Open,
            PoolKey::Group(t("shop"), g("edge")),
            PoolKey::CrossTenantGroup(g("edge")),
            PoolKey::Dedicated(t("shop")),
            PoolKey::Tenant(t("games")),
        ];
        let mut by: ByPoolKey<&str> = ByPoolKey::default();
        let firsts: Vec<u32> = keys
            .iter()
            .map(|k| by.enter(k.as_ref(), || "first"))
            .collect();
        assert_eq!(firsts, [0, 1, 2, 3, 4, 5]);
        let again: Vec<u32> = keys
            .iter()
            .rev()
            .map(|k| by.enter(k.as_ref(), || "again"))
            .collect();
        assert_eq!(again, [5, 4, 3, 2, 1, 0]);
        assert!(
            (0..6).all(|n| *by.get(n) == "first"),
            "a key's value is made once"
        );
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(by.number(k.as_ref()), Some(n as u32), "{k:?}");
        }
        assert_eq!(by.number(PoolKey::Tenant(t("other")).as_ref()), None);
        assert_eq!(by.number(PoolKey::Dedicated(t("games")).as_ref()), None);
        *by.get_mut(3) = "changed";
        assert_eq!(*by.get(3), "changed");
    }

    /// A hasher that puts every key in one bucket chain, so lookups rest on `Equivalent`
    /// alone: the hash cannot tell keys apart for it.
    #[derive(Clone, Default)]
    struct OneBucket;

    impl std::hash::BuildHasher for OneBucket {
        type Hasher = OneBucketHasher;
        fn build_hasher(&self) -> OneBucketHasher {
            OneBucketHasher
        }
    }

    struct OneBucketHasher;

    impl std::hash::Hasher for OneBucketHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn a_borrowed_pool_key_finds_its_own_key_only() {
        let t = |s: &str| TenantId::new(s).unwrap();
        let g = |s: &str| GroupKey::new(s).unwrap();
        let mut pools: hashbrown::HashMap<PoolKey, u32, OneBucket> = hashbrown::HashMap::default();
        pools.insert(PoolKey::Tenant(t("shop")), 1);
        pools.insert(PoolKey::Tenant(t("games")), 2);
        pools.insert(PoolKey::Group(t("shop"), g("edge")), 3);
        pools.insert(PoolKey::Group(t("shop"), g("core")), 4);
        pools.insert(PoolKey::Open, 5);
        let (shop, games, edge, core) = (t("shop"), t("games"), g("edge"), g("core"));
        assert_eq!(pools.get(&PoolKeyRef::Tenant(&games)), Some(&2));
        assert_eq!(pools.get(&PoolKeyRef::Tenant(&shop)), Some(&1));
        assert_eq!(pools.get(&PoolKeyRef::Group(&shop, &core)), Some(&4));
        assert_eq!(pools.get(&PoolKeyRef::Group(&shop, &edge)), Some(&3));
        assert_eq!(pools.get(&PoolKeyRef::Open), Some(&5));
        assert_eq!(pools.get(&PoolKeyRef::Group(&games, &edge)), None);
        assert_eq!(pools.get(&PoolKeyRef::Dedicated(&shop)), None);
        assert_eq!(pools.get(&PoolKeyRef::CrossTenantGroup(&edge)), None);
    }
}
