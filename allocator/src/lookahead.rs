//! Look-ahead: a shell that knows which claims its next events name says so, and the
//! allocator starts fetching their state while it handles the events in between.
//!
//! At a million claims a departure mostly waits on memory: the id index's entry, the
//! claim's slot it points to, the claim's LB record, that LB's listener table, each wait
//! beginning only when the one before it ends. Hinted up to four events ahead, they
//! become fetches that overlap other work.
//! A hint is only that: it changes no state and no decision, and a shell that gives none
//! gets the same results, a little later.

use crate::allocator::Allocator;
use crate::claims::{ClaimKey, Place};
use crate::model::ClaimId;

/// How many upcoming claims [`Allocator::prefetch`] looks at: one per step between an
/// id and the first line of the claim's LB it can find.
pub const LOOK_AHEAD: usize = 4;

/// Fewer live claims than this and hints are ignored: their state (~120 B a claim, under
/// 8 MB) stays in cache, where a hint's hashing is only extra work (+14% per decision at
/// 1k claims).
const HINTED_FROM: usize = 1 << 16;

/// A claim an upcoming event names, as the shell knows it: by id, or by the key the
/// allocator gave it ([`Allocator::claim_key`]), which finds its slot one step sooner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upcoming<'a> {
    /// By id.
    Id(&'a ClaimId),
    /// By key.
    Key(ClaimKey),
}

impl<'a> From<&'a ClaimId> for Upcoming<'a> {
    fn from(id: &'a ClaimId) -> Self {
        Upcoming::Id(id)
    }
}

impl From<ClaimKey> for Upcoming<'_> {
    fn from(key: ClaimKey) -> Self {
        Upcoming::Key(key)
    }
}

impl Allocator {
    /// Whether hints are used: from 65,536 live claims on, whose state outgrows the
    /// caches. A shell for which finding its upcoming claims costs work may skip it
    /// while this is false.
    pub fn wants_hints(&self) -> bool {
        self.claims.len() >= HINTED_FROM
    }

    /// Hints which claims the events after the next one will name, nearest first: call it
    /// before feeding an event, with the claims of the events that follow it (a
    /// departure's, an update's), by id or by key. The allocator requests from memory,
    /// without waiting, what each will read, one step per call, each step reading only
    /// what the step before fetched: the fourth claim's entry in the id index (by key: its
    /// slot), the third one's slot (by key: its index entry), the second one's LB record,
    /// and the first one's lines of that LB's listener table and of its pool's room tree.
    /// By its turn a claim's state is in cache. Claims past the fourth, and claims not
    /// live, are ignored; so are all hints while fewer than 65,536 claims live
    /// ([`Allocator::wants_hints`]).
    ///
    /// ```
    /// use sharedlb_allocator::{Allocator, Claim, Config, Event, PortRequest, Protocol, Time};
    /// use sharedlb_allocator::{Decision, Reports, Shell};
    /// struct Cloud;
    /// impl Shell for Cloud {
    ///     fn carry_out(&mut self, _: Time, d: Decision, r: &mut Reports<'_>) {
    ///         if let Decision::CreateLb { lb, .. } = d {
    ///             r.report(Event::LbReady(lb));
    ///         }
    ///     }
    /// }
    /// let mut alloc = Allocator::new(Config::with_builtin("aws-nlb", "best-fit".parse()?)?)?;
    /// let claims: Vec<Claim> = (0..8)
    ///     .map(|i| Claim::new(&format!("shop/svc-{i}"), vec![PortRequest::Any(Protocol::Tcp)]))
    ///     .collect::<Result<_, _>>()?;
    /// for c in &claims {
    ///     alloc.drive(Time(0), Event::ClaimAdded(c.clone()), &mut Cloud)?;
    /// }
    /// // The departures to come, in order: before each, hint the ones after it.
    /// for (i, c) in claims.iter().enumerate() {
    ///     alloc.prefetch(claims[i + 1..].iter().take(4).map(Claim::id));
    ///     alloc.drive(Time(1), Event::ClaimRemoved(c.id().clone()), &mut Cloud)?;
    /// }
    /// assert_eq!(alloc.claims().len(), 0);
    /// # Ok::<(), sharedlb_allocator::Error>(())
    /// ```
    pub fn prefetch<'a, C: Into<Upcoming<'a>>>(&self, upcoming: impl IntoIterator<Item = C>) {
        if !self.wants_hints() {
            return;
        }
        let mut upcoming = upcoming.into_iter().map(Into::into);
        let near: [Option<Upcoming<'a>>; LOOK_AHEAD] = std::array::from_fn(|_| upcoming.next());
        // The farthest first: it only requests a line, while the nearer ones read lines
        // earlier calls requested.
        match near[3] {
            Some(Upcoming::Id(id)) => self.claims.fetch_index_entry(id),
            Some(Upcoming::Key(key)) => self.claims.fetch_slot_at(key.slot()),
            None => {}
        }
        match near[2] {
            Some(Upcoming::Id(id)) => self.claims.fetch_slot(id),
            Some(Upcoming::Key(key)) => {
                if let Some(s) = self.claims.try_get(key.slot()) {
                    self.claims.fetch_index_entry(s.claim.id());
                }
            }
            None => {}
        }
        if let Some(k) = near[1].and_then(|c| self.slot_of(c))
            && let Place::Assigned { lb, .. } = self.claims.get(k).place
        {
            self.lbs.prefetch(lb);
        }
        if let Some(k) = near[0].and_then(|c| self.slot_of(c))
            && let Some((lb, listeners)) = self.claims.placement(k)
        {
            self.fetch_for_update(lb, &listeners);
        }
    }

    /// The live slot of an upcoming claim.
    fn slot_of(&self, c: Upcoming<'_>) -> Option<u32> {
        match c {
            Upcoming::Id(id) => self.claims.find(id),
            Upcoming::Key(key) => self.claims.try_get(key.slot()).map(|_| key.slot()),
        }
    }
}
