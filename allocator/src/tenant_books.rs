//! Every tenant's usage books, by name and by number. A live claim's kept body carries its
//! tenant's number, so the books a placement, a release or a wait changes are found by
//! index; names are looked up (in a B-tree, in name order) only for a new kind of claim,
//! a quota check, a dedicated LB or a report.
//!
//! Boundary: this module keeps the counters and nothing else; what they mean for quotas
//! and fairness is decided in `eligibility` and `admission`.

use std::collections::BTreeMap;

use crate::Usage;
use crate::model::TenantId;

/// The usage books of every tenant that has or had claims. A tenant keeps its number for
/// the allocator's life (books are never dropped), so a number held in a kept body stays
/// valid.
#[derive(Clone, Debug, Default)]
pub(crate) struct TenantBooks {
    numbers: BTreeMap<TenantId, u32>,
    /// By tenant number.
    usage: Vec<Usage>,
    /// The names, by tenant number (handles of the names in `numbers`).
    names: Vec<TenantId>,
    /// The configured weights, by tenant number: fair shares taken at every event weigh
    /// every tenant without looking its name up in the configuration.
    weights: Vec<u32>,
}

impl TenantBooks {
    /// Tenant `t`'s number and the books' own copy of its name (for claims to share),
    /// opening books for a tenant seen for the first time, of the configured `weight`.
    pub fn enter(&mut self, t: &TenantId, weight: impl FnOnce() -> u32) -> (u32, &TenantId) {
        if !self.numbers.contains_key(t) {
            let n = u32::try_from(self.usage.len())
                .unwrap_or_else(|_| unreachable!("more than 4G tenants"));
            self.numbers.insert(t.clone(), n);
            self.usage.push(Usage::default());
            self.names.push(t.clone());
            self.weights.push(weight());
        }
        match self.numbers.get_key_value(t) {
            Some((name, &n)) => (n, name),
            None => unreachable!("just entered"),
        }
    }

    /// Tenant `t`'s books, made if none (of the configured `weight`).
    pub fn entry(&mut self, t: &TenantId, weight: impl FnOnce() -> u32) -> &mut Usage {
        let (n, _) = self.enter(t, weight);
        &mut self.usage[n as usize]
    }

    /// Tenant `t`'s books, if it has any.
    pub fn get(&self, t: &TenantId) -> Option<&Usage> {
        self.numbers.get(t).map(|&n| &self.usage[n as usize])
    }

    /// Tenant `t`'s books to change, if it has any.
    pub fn get_mut(&mut self, t: &TenantId) -> Option<&mut Usage> {
        self.numbers.get(t).map(|&n| &mut self.usage[n as usize])
    }

    /// The books of tenant number `n` (given out by [`TenantBooks::enter`]).
    pub fn by_number_mut(&mut self, n: u32) -> &mut Usage {
        &mut self.usage[n as usize]
    }

    /// Tenant `t`'s number, if it has books.
    pub fn number_of(&self, t: &TenantId) -> Option<u32> {
        self.numbers.get(t).copied()
    }

    /// Whether `n` is tenant `t`'s number.
    pub fn is_number_of(&self, n: u32, t: &TenantId) -> bool {
        self.numbers.get(t) == Some(&n)
    }

    /// Each tenant with its books, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&TenantId, &Usage)> + '_ {
        self.numbers
            .iter()
            .map(|(t, &n)| (t, &self.usage[n as usize]))
    }

    /// Each tenant with its books, by number: the order the books were opened in.
    pub fn by_number(&self) -> impl Iterator<Item = (&TenantId, &Usage)> + '_ {
        self.names.iter().zip(&self.usage)
    }

    /// Each tenant with its books and configured weight, in name order.
    pub fn weighted(&self) -> impl Iterator<Item = (&TenantId, &Usage, u32)> + '_ {
        self.numbers
            .iter()
            .map(|(t, &n)| (t, &self.usage[n as usize], self.weights[n as usize]))
    }

    /// The books and configured weight of tenant number `n`.
    pub fn weighted_by_number(&self, n: usize) -> (&Usage, u32) {
        (&self.usage[n], self.weights[n])
    }

    /// Each tenant, in name order.
    pub fn keys(&self) -> impl Iterator<Item = &TenantId> + '_ {
        self.numbers.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_keeps_its_number_and_its_books() {
        let t = |s: &str| TenantId::new(s).unwrap();
        let mut b = TenantBooks::default();
        let (shop, _) = b.enter(&t("shop"), || 2);
        let (games, _) = b.enter(&t("games"), || 1);
        assert_ne!(shop, games);
        assert_eq!(
            b.enter(&t("shop"), || unreachable!("weighed once")).0,
            shop,
            "entered again, same number"
        );
        b.by_number_mut(shop).claims = 3;
        b.entry(&t("games"), || unreachable!("weighed once"))
            .listeners = 5;
        b.entry(&t("ads"), || 7).claims = 1;
        assert_eq!(b.get(&t("shop")).map(|u| u.claims), Some(3));
        assert_eq!(b.get(&t("games")).map(|u| u.listeners), Some(5));
        assert!(b.get(&t("none")).is_none());
        assert!(b.is_number_of(shop, &t("shop")));
        assert!(!b.is_number_of(shop, &t("games")));
        let names: Vec<&str> = b.keys().map(TenantId::as_str).collect();
        assert_eq!(names, ["ads", "games", "shop"], "in name order");
        let claims: Vec<u32> = b.iter().map(|(_, u)| u.claims).collect();
        assert_eq!(claims, [1, 0, 3]);
        let weighted: Vec<(u32, u32)> = b.weighted().map(|(_, u, w)| (u.claims, w)).collect();
        assert_eq!(weighted, [(1, 7), (0, 1), (3, 2)], "in name order");
        let by_number: Vec<&str> = b.by_number().map(|(t, _)| t.as_str()).collect();
        assert_eq!(by_number, ["shop", "games", "ads"], "in the order entered");
        let (u, w) = b.weighted_by_number(2);
        assert_eq!((u.claims, w), (1, 7));
    }
}
