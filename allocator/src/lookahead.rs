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
use crate::claims::Place;
use crate::model::ClaimId;

/// How many upcoming claims [`Allocator::prefetch`] looks at: one per step between an
/// id and the first line of the claim's LB it can find.
pub const LOOK_AHEAD: usize = 4;

/// Fewer live claims than this and hints are ignored: their state (~120 B a claim, under
/// 8 MB) stays in cache, where a hint's hashing is only extra work (+14% per decision at
/// 1k claims).
const HINTED_FROM: usize = 1 << 16;

impl Allocator {
    /// Hints which claims the events after the next one will name, nearest first: call it
    /// before feeding an event, with the ids of the claims of the events that follow it
    /// (a departure's, an update's). The allocator requests from memory, without waiting,
    /// what each will read, one step per call, each step reading only what the step
    /// before fetched: the fourth claim's entry in the id index, the third one's slot,
    /// the second one's LB record, and the first one's lines of that LB's listener table
    /// and of its pool's room tree. By its turn a claim's state is in cache. Ids past the
    /// fourth, and ids of no live claim, are ignored; so are all hints while fewer than
    /// 65,536 claims live, whose state stays in cache anyway.
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
    pub fn prefetch<'a>(&self, upcoming: impl IntoIterator<Item = &'a ClaimId>) {
        if self.claims.len() < HINTED_FROM {
            return;
        }
        let mut upcoming = upcoming.into_iter();
        let near: [Option<&ClaimId>; LOOK_AHEAD] = std::array::from_fn(|_| upcoming.next());
        // The farthest first: it only requests a line, while the nearer ones read lines
        // earlier calls requested.
        if let Some(id) = near[3] {
            self.claims.fetch_index_entry(id);
        }
        if let Some(id) = near[2] {
            self.claims.fetch_slot(id);
        }
        if let Some(id) = near[1]
            && let Some(k) = self.claims.find(id)
            && let Place::Assigned { lb, .. } = self.claims.get(k).place
        {
            self.lbs.prefetch(lb);
        }
        if let Some(id) = near[0]
            && let Some(k) = self.claims.find(id)
            && let Some((lb, listeners)) = self.claims.placement(k)
            && let Some(l) = self.lbs.get(lb)
        {
            for &listener in &listeners {
                l.used.prefetch(listener);
            }
            if let Some(pool) = self.pools.get(l.pool as usize) {
                pool.index.tree.prefetch(l.pos);
            }
        }
    }
}
