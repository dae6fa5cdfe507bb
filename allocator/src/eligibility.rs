//! Eligibility: which profiles can hold a claim at all, and whether its tenant's quota and
//! the global budget allow what placing it needs.

use crate::allocator::Allocator;
use crate::config::Config;
use crate::decision::PendingReason;
use crate::lb::PoolKeyRef;
use smallvec::SmallVec;

use crate::model::{Claim, Port, Protocol, TenantId};
use crate::placement::Eligible;
use crate::ports::PortRule;
use crate::profile::LbProfile;

/// The tenant quota that forbids a placement, with the figures that say why (in words
/// only when a message is shown, as [`BudgetLimit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum QuotaLimit {
    Listeners {
        tenant: TenantId,
        max: u32,
        held: u32,
        asks: u32,
    },
    Claims {
        tenant: TenantId,
        max: u32,
        placed: u32,
    },
    DedicatedLbs {
        tenant: TenantId,
        max: u32,
        held: u32,
    },
}

impl std::fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaLimit::Listeners {
                tenant,
                max,
                held,
                asks,
            } => write!(
                f,
                "tenant {tenant} holds {held} of its {max} listeners and asks {asks} more"
            ),
            QuotaLimit::Claims {
                tenant,
                max,
                placed,
            } => write!(f, "tenant {tenant} has {placed} of its {max} claims placed"),
            QuotaLimit::DedicatedLbs { tenant, max, held } => {
                write!(f, "tenant {tenant} has {held} of its {max} dedicated LBs")
            }
        }
    }
}

/// The budget limit that forbids a new LB, with the figures that say why (put in words
/// by `Display` only when a message is shown: placement asks far more often than it tells).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BudgetLimit {
    /// The number of live LBs (draining ones count until they are gone).
    Lbs { max: u32, live: u64 },
    /// The cost per hour of billed LBs (draining ones are not billed).
    Cost {
        max: f64,
        now: f64,
        add: f64,
        currency: crate::profile::Currency,
    },
}

impl std::fmt::Display for BudgetLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BudgetLimit::Lbs { max, live } => {
                write!(f, "the budget of {max} LBs is spent ({live} live)")
            }
            BudgetLimit::Cost {
                max,
                now,
                add,
                currency: c,
            } => write!(
                f,
                "the budget of {max} {c}/h is spent ({now:.4} {c}/h in use, a new LB costs {add:.4} {c}/h)"
            ),
        }
    }
}

/// What a placement would add to the tenant's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// One more claim with its listeners.
    Claim,
    /// One more claim, on a new dedicated LB of its own.
    WithDedicatedLb,
}

/// Profile indexes a claim may use: borrowed from its kept body, or worked out afresh.
pub(crate) enum Eligibility<'a> {
    Kept(&'a Eligible),
    Fresh(Eligible),
}

impl std::ops::Deref for Eligibility<'_> {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        match self {
            Eligibility::Kept(e) => e,
            Eligibility::Fresh(e) => e,
        }
    }
}

impl Allocator {
    /// The pool a claim belongs to under the current policy.
    pub(crate) fn pool_of<'c>(&self, claim: &'c Claim) -> PoolKeyRef<'c> {
        PoolKeyRef::of(claim, self.rules.pooling)
    }

    /// Profiles that can hold the claim at all, or why none can: as worked out when its
    /// body was kept, if it was (see [`Config::eligible_profiles`] for the rule).
    pub(crate) fn eligible_profiles(
        &self,
        claim: &Claim,
    ) -> Result<Eligibility<'_>, (PendingReason, String)> {
        match self.bodies.eligible(claim) {
            Some(e) => Ok(Eligibility::Kept(e)),
            None => self.config.eligible_profiles(claim).map(Eligibility::Fresh),
        }
    }

    /// Whether the tenant's quota allows `what`; which limit binds otherwise.
    pub(crate) fn quota_check(&self, claim: &Claim, what: Admit) -> Result<(), QuotaLimit> {
        let t = claim.tenant();
        let q = self.config.tenant(t).quota;
        if q.max_listeners.is_none() && q.max_claims.is_none() && q.max_dedicated_lbs.is_none() {
            // No limit to check, so the usage books need not be looked up.
            return Ok(());
        }
        let u = self.usage(t);
        let tenant = || t.clone();
        if let Some(max) = q.max_listeners
            && u64::from(u.listeners) + u64::from(claim.listener_count()) > u64::from(max)
        {
            return Err(QuotaLimit::Listeners {
                tenant: tenant(),
                max,
                held: u.listeners,
                asks: claim.listener_count(),
            });
        }
        if let Some(max) = q.max_claims
            && u.claims >= max
        {
            return Err(QuotaLimit::Claims {
                tenant: tenant(),
                max,
                placed: u.claims,
            });
        }
        if what == Admit::WithDedicatedLb
            && let Some(max) = q.max_dedicated_lbs
            && u.dedicated_lbs >= max
        {
            return Err(QuotaLimit::DedicatedLbs {
                tenant: tenant(),
                max,
                held: u.dedicated_lbs,
            });
        }
        Ok(())
    }

    /// Which limit of the budget forbids a new LB of `profile`, if one does.
    pub(crate) fn budget_blocks(&self, profile: usize) -> Option<BudgetLimit> {
        let b = &self.config.budget;
        let live = self.lbs.len() as u64;
        if let Some(m) = b.max_lbs
            && live >= u64::from(m)
        {
            return Some(BudgetLimit::Lbs { max: m, live });
        }
        if let Some(m) = b.max_cost_per_hour {
            let now = self.cost_per_hour();
            let add = self.config.profiles[profile].price_per_hour();
            if now + add > m + 1e-9 {
                return Some(BudgetLimit::Cost {
                    max: m,
                    now,
                    add,
                    currency: self.config.currency(),
                });
            }
        }
        None
    }

    /// Whether the live LBs exceed the budget (only possible after a restore with a lower
    /// budget: kept, never grown).
    pub(crate) fn over_budget(&self) -> bool {
        let b = &self.config.budget;
        b.max_lbs
            .is_some_and(|m| self.lbs.len() as u64 > u64::from(m))
            || b.max_cost_per_hour
                .is_some_and(|m| self.cost_per_hour() > m + 1e-9)
    }

    /// Whether a tenant's placements exceed its quota.
    pub(crate) fn over_quota(&self, t: &TenantId) -> bool {
        let q = self.config.tenant(t).quota;
        let u = self.usage(t);
        q.max_listeners.is_some_and(|m| u.listeners > m)
            || q.max_claims.is_some_and(|m| u.claims > m)
            || q.max_dedicated_lbs.is_some_and(|m| u.dedicated_lbs > m)
    }

    /// Forgets inherited overruns that no longer hold.
    pub(crate) fn forget_inherited_limits(&mut self, tenant: &TenantId) {
        if self.inherited.over_quota.contains(tenant) && !self.over_quota(tenant) {
            self.inherited.over_quota.remove(tenant);
        }
        if self.inherited.over_budget && !self.over_budget() {
            self.inherited.over_budget = false;
        }
    }
}

impl Config {
    /// Profiles (indexes, in configuration order) that can hold the claim at all, or why
    /// none can: protocols supported, protocols mixed, reserved ports, one port number for
    /// two protocols, size and automatic ports.
    pub(crate) fn eligible_profiles(
        &self,
        claim: &Claim,
    ) -> Result<Eligible, (PendingReason, String)> {
        let candidates = match claim.profile() {
            Some(name) => match self.profile_index(name) {
                Some(i) => i..i + 1,
                None => {
                    return Err((
                        PendingReason::Unsupported,
                        format!("profile {name} is not configured"),
                    ));
                }
            },
            None => 0..self.profiles.len(),
        };
        // The checks of fixed listeners are vacuous for a claim without any (most ask
        // automatic ports only), and this runs for every placement and every baseline
        // price.
        let has_fixed = claim.fixed_listeners().next().is_some();
        let mut too_large = None;
        let mut unsupported = None;
        let mut ok = Eligible::new();
        for i in candidates {
            let p = &self.profiles[i];
            if let Some(r) = claim.ports().iter().find(|r| !p.supports(r.protocol())) {
                unsupported
                    .get_or_insert_with(|| format!("{} does not support {}", p.name, r.protocol()));
                continue;
            }
            let first = claim.ports()[0].protocol();
            if !p.mixed_protocols && claim.ports().iter().any(|r| r.protocol() != first) {
                unsupported
                    .get_or_insert_with(|| format!("{} cannot mix protocols on one LB", p.name));
                continue;
            }
            let rule = PortRule::of_profile(p);
            if has_fixed {
                if let Some(l) = claim.fixed_listeners().find(|l| p.is_reserved(l.port)) {
                    unsupported
                        .get_or_insert_with(|| format!("{} reserves port {}", p.name, l.port));
                    continue;
                }
                let mut keys: SmallVec<[_; 8]> =
                    claim.fixed_listeners().map(|l| rule.key(l)).collect();
                keys.sort_unstable();
                if keys.windows(2).any(|w| w[0] == w[1]) {
                    unsupported.get_or_insert_with(|| {
                        format!("{} cannot hold one port number for two protocols", p.name)
                    });
                    continue;
                }
            }
            let automatic_room = automatic_room(p, rule, claim);
            if claim.listener_count() > p.max_listeners || automatic_room.is_err() {
                too_large.get_or_insert_with(|| match automatic_room {
                    Err((asked, room)) => format!(
                        "{asked} automatic ports asked, {} has {room} left in its range",
                        p.name
                    ),
                    Ok(()) => format!(
                        "{} listeners asked, {} holds {}",
                        claim.listener_count(),
                        p.name,
                        p.max_listeners
                    ),
                });
                continue;
            }
            ok.push(i);
        }
        if !ok.is_empty() {
            return Ok(ok);
        }
        Err(match (unsupported, too_large) {
            (_, Some(m)) => (PendingReason::TooLarge, m),
            (Some(m), None) => (PendingReason::Unsupported, m),
            (None, None) => (
                PendingReason::Unsupported,
                "no profile is configured".into(),
            ),
        })
    }
}

/// Whether the automatic range of `p` has ports for every automatic request of `claim`
/// once its own fixed listeners and the reserved ports are set aside: `(asked, room)` when
/// not. Allocates nothing: it runs for every placement (and for the baseline's price).
fn automatic_room(p: &LbProfile, rule: PortRule, claim: &Claim) -> Result<(), (u32, u32)> {
    let automatic = claim.automatic_count();
    if automatic == 0 {
        return Ok(());
    }
    let in_range = |port: Port| p.auto_ports.contains(port);
    // Distinct reserved ports inside the range.
    let reserved = p
        .reserved
        .iter()
        .enumerate()
        .filter(|&(i, &r)| in_range(r) && !p.reserved[..i].contains(&r))
        .count() as u32;
    let has_fixed = automatic < claim.listener_count();
    let free = |proto: Option<Protocol>| {
        if !has_fixed {
            return p.auto_ports.len() - reserved;
        }
        // The claim's fixed ports in the range that are not reserved, each once (the
        // claim has no listener twice, and within one space no port number twice once
        // the eligibility check above has passed; count distinct ports all the same).
        let fixed: SmallVec<[Port; 8]> = claim
            .fixed_listeners()
            .filter(|l| proto.is_none_or(|x| x == l.protocol))
            .map(|l| l.port)
            .filter(|&port| in_range(port) && !p.is_reserved(port))
            .collect();
        let distinct = fixed
            .iter()
            .enumerate()
            .filter(|&(i, x)| !fixed[..i].contains(x))
            .count() as u32;
        p.auto_ports.len() - reserved - distinct
    };
    let asked = |proto: Option<Protocol>| {
        claim
            .ports()
            .iter()
            .filter(|r| r.fixed().is_none() && proto.is_none_or(|x| x == r.protocol()))
            .count() as u32
    };
    let spaces: &[Option<Protocol>] = match rule {
        PortRule::PerPortNumber => &[None],
        PortRule::PerListener => &[
            Some(Protocol::Tcp),
            Some(Protocol::Udp),
            Some(Protocol::Sctp),
        ],
    };
    for &space in spaces {
        let a = asked(space);
        if a == 0 {
            continue;
        }
        let room = free(space);
        if a > room {
            return Err((a, room));
        }
    }
    Ok(())
}
