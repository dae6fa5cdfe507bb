//! Look-ahead: a shell that knows which claims its next events name says so, and the
//! allocator starts fetching their state while it handles the events in between.
//!
//! At a million claims a departure mostly waits on memory: first the id index's entry,
//! then the claim's slot it points to, and the second wait can begin only when the first
//! ends. Hinted one and two events ahead, both become fetches that overlap other work.
//! A hint is only that: it changes no state and no decision, and a shell that gives none
//! gets the same results, a little later.

use crate::allocator::Allocator;
use crate::model::ClaimId;

impl Allocator {
    /// Hints which claims the events after the next one will name, nearest first: call it
    /// before feeding an event, with the ids of the claims of the events that follow it
    /// (a departure's, an update's). The allocator requests from memory, without waiting,
    /// the state each will read first — the first one's slot, the second one's entry in
    /// the id index (the slot can be found only once that entry is in) — so by its turn a
    /// claim's state is in cache. Ids past the second, and ids of no live claim, are
    /// ignored.
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
    /// let claims: Vec<Claim> = (0..4)
    ///     .map(|i| Claim::new(&format!("shop/svc-{i}"), vec![PortRequest::Any(Protocol::Tcp)]))
    ///     .collect::<Result<_, _>>()?;
    /// for c in &claims {
    ///     alloc.drive(Time(0), Event::ClaimAdded(c.clone()), &mut Cloud)?;
    /// }
    /// // The departures to come, in order: before each, hint the two after it.
    /// for (i, c) in claims.iter().enumerate() {
    ///     alloc.prefetch(claims[i + 1..].iter().take(2).map(Claim::id));
    ///     alloc.drive(Time(1), Event::ClaimRemoved(c.id().clone()), &mut Cloud)?;
    /// }
    /// assert_eq!(alloc.claims().len(), 0);
    /// # Ok::<(), sharedlb_allocator::Error>(())
    /// ```
    pub fn prefetch<'a>(&self, upcoming: impl IntoIterator<Item = &'a ClaimId>) {
        let mut upcoming = upcoming.into_iter();
        let (next, after) = (upcoming.next(), upcoming.next());
        // The farther one first: it only requests a line, while the nearer one reads a
        // line an earlier call requested.
        if let Some(id) = after {
            self.claims.fetch_index_entry(id);
        }
        if let Some(id) = next {
            self.claims.fetch_slot(id);
        }
    }
}
