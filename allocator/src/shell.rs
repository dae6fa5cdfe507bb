//! The one way to drive the allocator: a [`Shell`] carries out decisions, and
//! [`Allocator::drive`] feeds an event, hands over every decision — including those of the
//! outcomes the shell reports at once — and says when to wake next. The simulator, the
//! controller and the tests all drive the allocator through it.

use std::collections::VecDeque;

use crate::allocator::Allocator;
use crate::decision::{Decision, Event};
use crate::error::Error;
use crate::model::Time;

/// Events a shell reports back while carrying out decisions, because it already knows the
/// outcome (an LB that exists as soon as it is asked for, a deletion that is instant).
/// [`Allocator::drive`] feeds them in before it returns, in the order reported.
///
/// It also shows the allocator as the event left it, read-only: a shell that keeps state
/// per claim by [`ClaimKey`](crate::ClaimKey) finds the key of a decision's claim there.
pub struct Reports<'a> {
    queue: &'a mut VecDeque<Event>,
    allocator: &'a Allocator,
}

// The reports only: the allocator is the caller's to show.
impl std::fmt::Debug for Reports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reports").field(&self.queue).finish()
    }
}

impl Reports<'_> {
    /// Reports an outcome.
    pub fn report(&mut self, event: Event) {
        self.queue.push_back(event);
    }

    /// The allocator after the event whose decisions are being carried out (reported
    /// outcomes not applied yet). It shows the result of all of the event's decisions,
    /// also those not handed over yet: while a `Release` of a claim is carried out after
    /// an `LbFailed`, the claim may already be placed anew. A claim a decision names has
    /// left it only if the event was that claim's removal.
    pub fn allocator(&self) -> &Allocator {
        self.allocator
    }
}

/// What carries out the allocator's decisions: the simulator's model of a cloud, the
/// controller's Kubernetes objects, a test's reference model. See [`Allocator`] for what
/// each decision obliges the shell to do and report.
pub trait Shell {
    /// Carries out one decision, made at `now`. Report any outcome known at once through
    /// `reports`; report later ones with a later [`Allocator::drive`].
    fn carry_out(&mut self, now: Time, decision: Decision, reports: &mut Reports<'_>);
}

impl Allocator {
    /// Applies `event` at `now`, hands every decision to `shell` in order, applies the
    /// events the shell reports meanwhile, and returns when the allocator next wants a
    /// [`Event::Tick`] ([`Allocator::next_wakeup`]).
    ///
    /// An event the allocator refuses is an error and changes nothing; decisions handed
    /// over before it (for earlier events of the same drive) stand, and reports after it
    /// are dropped — a refused report is a bug in the shell, not a state to recover from.
    pub fn drive<S: Shell + ?Sized>(
        &mut self,
        now: Time,
        event: Event,
        shell: &mut S,
    ) -> Result<Option<Time>, Error> {
        let mut out = std::mem::take(&mut self.out);
        let mut reports = std::mem::take(&mut self.reports);
        reports.push_back(event);
        let mut result = Ok(());
        while let Some(ev) = reports.pop_front() {
            out.clear();
            if let Err(e) = self.handle(now, ev, &mut out) {
                result = Err(e);
                break;
            }
            for d in out.drain(..) {
                let mut r = Reports {
                    queue: &mut reports,
                    allocator: self,
                };
                shell.carry_out(now, d, &mut r);
            }
        }
        reports.clear();
        self.out = out;
        self.reports = reports;
        result.map(|()| self.next_wakeup())
    }
}
