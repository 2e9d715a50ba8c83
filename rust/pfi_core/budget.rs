// SPDX-License-Identifier: GPL-2.0

//! A rate budget: at most `per_sec` uses in each one-second window of the
//! caller's clock. The module spends one on each write-attempt report, so
//! that a guest writing protected pages in a loop cannot make the sinks
//! (event encoding, netlink, readers' queues) run without bound; the writes
//! beyond it are still restored and counted, not reported one by one.
//!
//! Windows are fixed, starting at the first use after the previous one
//! ended: any span of one second holds at most `2 * per_sec` uses.

/// Nanoseconds in a window.
pub const WINDOW_NS: u64 = 1_000_000_000;

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateBudget {
    per_sec: u32,
    start_ns: u64,
    used: u32,
}

impl RateBudget {
    /// A budget of `per_sec` uses a window; 0 allows none.
    pub const fn new(per_sec: u32) -> Self {
        Self { per_sec, start_ns: 0, used: 0 }
    }

    /// Whether one more use fits at `now_ns` (and takes it). A clock that
    /// went backwards starts a new window.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.wrapping_sub(self.start_ns);
        if self.used == 0 || now_ns < self.start_ns || elapsed >= WINDOW_NS {
            self.start_ns = now_ns;
            self.used = 0;
        }
        if self.used >= self.per_sec {
            return false;
        }
        self.used = self.used.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_sec_uses_then_none_until_the_window_ends() {
        let mut b = RateBudget::new(3);
        let t0 = 5 * WINDOW_NS + 17;
        assert!(b.take(t0));
        assert!(b.take(t0 + 1));
        assert!(b.take(t0 + WINDOW_NS - 2));
        assert!(!b.take(t0 + WINDOW_NS - 1));
        assert!(b.take(t0 + WINDOW_NS));
        assert!(b.take(t0 + WINDOW_NS + 1));
        assert!(b.take(t0 + WINDOW_NS + 2));
        assert!(!b.take(t0 + WINDOW_NS + 3));
    }

    #[test]
    fn a_window_starts_at_its_first_use() {
        let mut b = RateBudget::new(1);
        assert!(b.take(100));
        assert!(!b.take(100 + WINDOW_NS - 1));
        // Idle for a while: the next use opens a window of its own.
        assert!(b.take(10 * WINDOW_NS));
        assert!(!b.take(10 * WINDOW_NS + WINDOW_NS / 2));
    }

    #[test]
    fn no_budget_allows_nothing() {
        let mut b = RateBudget::new(0);
        assert!(!b.take(0));
        assert!(!b.take(WINDOW_NS * 3));
    }

    #[test]
    fn clock_going_back_opens_a_window() {
        let mut b = RateBudget::new(1);
        assert!(b.take(u64::MAX - 5));
        assert!(!b.take(u64::MAX));
        assert!(b.take(3));
    }

    #[test]
    fn at_most_twice_the_budget_in_any_second() {
        let mut b = RateBudget::new(10);
        let mut taken = std::vec::Vec::new();
        for i in 0..10_000u64 {
            let t = i * (WINDOW_NS / 1000);
            if b.take(t) {
                taken.push(t);
            }
        }
        for (i, &t) in taken.iter().enumerate() {
            let within = taken[i..].iter().take_while(|&&u| u < t + WINDOW_NS).count();
            assert!(within <= 20, "{within} uses in the second from {t}");
        }
    }
}
