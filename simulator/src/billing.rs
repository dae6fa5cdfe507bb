//! LBs of profiles with a monthly cap, billed as the provider bills them: by the hour, at
//! most the cap per LB in each billing month. The allocator prices such an LB at the cap
//! spread over the month (what one kept all month costs), which bills an LB living less
//! than a month up to hourly / (cap / 730.5) too little (21% for `hetzner-lb11`). So the
//! engine integrates only uncapped profiles' prices over time, and meters each capped LB
//! (and each placed claim's LB in the one-LB-per-Service baseline) from when it is billed
//! until it is not, pricing it with [`LbProfile::month_bill`].
//!
//! Billing months are 730.5-hour windows from the end of the warm-up: the measured period
//! is billed as whole months from its start, and an LB's hours before it are not billed
//! (they fall in an earlier month).
//!
//! Boundary: this module prices intervals; when an LB or a placement starts and ends is the
//! engine's to say.

use rustc_hash::FxHashMap;
use sharedlb_allocator::LbProfile;
use sharedlb_allocator::profile::HOURS_PER_MONTH;

const MS_PER_HOUR: f64 = 3_600_000.0;

/// A billing month, in ms.
const MONTH_MS: u64 = (HOURS_PER_MONTH * MS_PER_HOUR) as u64;

/// The start of the billing month holding `t`: months run from `warmup` in both directions.
fn month_start(t: u64, warmup: u64) -> u64 {
    if t >= warmup {
        warmup + (t - warmup) / MONTH_MS * MONTH_MS
    } else {
        // Before the warm-up ends (a time series' early samples); none before 0.
        warmup.saturating_sub((warmup - t).div_ceil(MONTH_MS).saturating_mul(MONTH_MS))
    }
}

/// What an LB of `profile` billed over `[from, to)` (ms) costs in the measured period
/// `[warmup, end)`: each billing month its hours there, up to the cap.
pub(crate) fn measured_cost(profile: &LbProfile, from: u64, to: u64, warmup: u64, end: u64) -> f64 {
    let to = to.min(end);
    let mut cost = 0.0;
    let mut t = from.max(warmup);
    while t < to {
        let upto = month_start(t, warmup).saturating_add(MONTH_MS).min(to);
        cost += profile.month_bill((upto - t) as f64 / MS_PER_HOUR);
        t = upto;
    }
    cost
}

/// Open meters by key (an LB, or a claim's track): since when, on which profile.
#[derive(Debug)]
pub(crate) struct Meters<K> {
    open: FxHashMap<K, (u64, usize)>,
    /// Cost of the closed meters in the measured period.
    pub cost: f64,
}

impl<K> Default for Meters<K> {
    fn default() -> Meters<K> {
        Meters {
            open: FxHashMap::default(),
            cost: 0.0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Ord + Copy> Meters<K> {
    /// Starts billing `key` on profile number `profile` at `now`, unless it is billed
    /// already on that profile; billed on another, that meter is closed first.
    pub fn start(&mut self, key: K, profile: usize, now: u64, bill: &Bill<'_>) {
        match self.open.get(&key) {
            Some(&(_, p)) if p == profile => {}
            Some(_) => {
                self.stop(key, now, bill);
                self.open.insert(key, (now, profile));
            }
            None => {
                self.open.insert(key, (now, profile));
            }
        }
    }

    /// Stops billing `key` at `now` (nothing if it is not billed).
    pub fn stop(&mut self, key: K, now: u64, bill: &Bill<'_>) {
        if let Some((since, p)) = self.open.remove(&key) {
            self.cost += bill.cost(p, since, now);
        }
    }

    /// What the open meters bill per hour at `now`: each its profile's hourly price until
    /// its hours this billing month reach the cap, nothing after.
    pub fn rate(&self, now: u64, bill: &Bill<'_>) -> f64 {
        let profiles = bill.profiles;
        let mut open: Vec<(&K, &(u64, usize))> = self.open.iter().collect();
        open.sort_unstable_by_key(|&(k, _)| *k);
        open.into_iter()
            .map(|(_, &(since, p))| {
                let start = month_start(now, bill.warmup);
                let hours = now.saturating_sub(since.max(start)) as f64 / MS_PER_HOUR;
                let profile = &profiles[p];
                if profile.month_bill(hours) < profile.month_bill(f64::INFINITY) {
                    profile.hourly_price
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// Stops every meter at `now`, in key order (so the sum is the same every run), and
    /// gives the total cost.
    pub fn close_all(mut self, now: u64, bill: &Bill<'_>) -> f64 {
        let mut open: Vec<(K, (u64, usize))> = self.open.drain().collect();
        open.sort_unstable_by_key(|&(k, _)| k);
        for (_, (since, p)) in open {
            self.cost += bill.cost(p, since, now);
        }
        self.cost
    }
}

/// The profiles and the measured period meters are priced against.
pub(crate) struct Bill<'a> {
    pub profiles: &'a [LbProfile],
    pub warmup: u64,
    pub end: u64,
}

impl Bill<'_> {
    fn cost(&self, profile: usize, from: u64, to: u64) -> f64 {
        measured_cost(&self.profiles[profile], from, to, self.warmup, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb11() -> LbProfile {
        sharedlb_allocator::profile::builtin_profile("hetzner-lb11").unwrap()
    }

    const H: u64 = 3_600_000;

    #[test]
    fn an_lb_of_days_costs_its_hours_and_one_of_a_month_the_cap() {
        // 0.0089 EUR/h, at most 5.39 EUR a month.
        let p = lb11();
        let ten_days = measured_cost(&p, 0, 240 * H, 0, u64::MAX);
        assert!((ten_days - 240.0 * 0.0089).abs() < 1e-9, "{ten_days}");
        let month = measured_cost(&p, 0, MONTH_MS, 0, u64::MAX);
        assert!((month - 5.39).abs() < 1e-9, "{month}");
        // Two months and 10 h: two caps, then 10 h of the third month.
        let more = measured_cost(&p, 0, 2 * MONTH_MS + 10 * H, 0, u64::MAX);
        assert!((more - (2.0 * 5.39 + 0.089)).abs() < 1e-9, "{more}");
    }

    #[test]
    fn billing_months_start_when_measuring_starts() {
        let p = lb11();
        // 600 h in the warm-up are not billed; the 100 h after it are, from a new month.
        let c = measured_cost(&p, 0, 700 * H, 600 * H, u64::MAX);
        assert!((c - 100.0 * 0.0089).abs() < 1e-9, "{c}");
        // Wholly in the warm-up: nothing; cut at the end of the run.
        assert!(measured_cost(&p, 0, 10 * H, 20 * H, u64::MAX).abs() < 1e-12);
        let cut = measured_cost(&p, 0, 100 * H, 0, 10 * H);
        assert!((cut - 0.089).abs() < 1e-9, "{cut}");
        // A month and 10 h from the end of a 5 h warm-up: the cap, then 10 h.
        let w = 5 * H;
        let c = measured_cost(&p, 0, w + MONTH_MS + 10 * H, w, u64::MAX);
        assert!((c - (5.39 + 0.089)).abs() < 1e-9, "{c}");
        assert_eq!(month_start(w + MONTH_MS + H, w), w + MONTH_MS);
        assert_eq!(month_start(w - H, w), 0);
        assert_eq!(
            month_start(w + 3 * MONTH_MS - H, w + 3 * MONTH_MS),
            w + 2 * MONTH_MS
        );
    }

    #[test]
    fn an_lb_bills_by_the_hour_until_its_month_reaches_the_cap() {
        let profiles = [lb11()];
        let mut m: Meters<u32> = Meters::default();
        let bill = Bill {
            profiles: &profiles,
            warmup: 0,
            end: u64::MAX,
        };
        m.start(1, 0, 0, &bill);
        assert!(
            (m.rate(600 * H, &bill) - 0.0089).abs() < 1e-12,
            "5.34 so far"
        );
        // At 650 h, LB 1 has billed 5.785 > 5.39 this month: free until the next month.
        assert!(m.rate(650 * H, &bill).abs() < 1e-12);
        m.start(2, 0, 700 * H, &bill);
        assert!((m.rate(710 * H, &bill) - 0.0089).abs() < 1e-12, "LB 2 only");
        // In the next month both bill again from its start.
        let next = MONTH_MS + H;
        assert!((m.rate(next, &bill) - 2.0 * 0.0089).abs() < 1e-12);
    }

    #[test]
    fn meters_bill_each_key_once_and_a_change_of_profile_anew() {
        let profiles = [lb11(), {
            let mut p = lb11();
            p.hourly_price = 1.0;
            p.monthly_cap = None;
            p
        }];
        let bill = Bill {
            profiles: &profiles,
            warmup: 0,
            end: u64::MAX,
        };
        let mut m: Meters<u32> = Meters::default();
        m.start(1, 0, 0, &bill);
        m.start(1, 0, 5 * H, &bill); // still billed: nothing new
        m.start(1, 1, 10 * H, &bill); // 10 h on lb11, then on the other
        m.stop(1, 12 * H, &bill); // 2 h at 1.0
        m.stop(1, 20 * H, &bill); // not billed: nothing
        m.start(2, 0, 0, &bill);
        let total = m.close_all(100 * H, &bill);
        assert!(
            (total - (0.089 + 2.0 + 100.0 * 0.0089)).abs() < 1e-9,
            "{total}"
        );
    }
}
