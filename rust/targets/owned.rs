// SPDX-License-Identifier: GPL-2.0

//! The pages a vCPU injected whose fault is not resolved yet: in flight
//! (KVM delivering it, maybe re-injecting it) or delivered and waiting for
//! the guest to map the page. Only that vCPU's exits follow them (delivery,
//! timeout, the walk that sees the page come back), so an exit does work in
//! proportion to these few pages and nothing else; a vCPU with none does no
//! target work at its exits at all (`probe_gate.rs`).

/// Pages a vCPU follows at once; with this many, it injects no other until
/// one resolves.
pub(super) const OWNED_PER_VCPU: usize = 4;

/// A page by where it is: its target's slot in `Targets::targets`, the
/// target's id (a slot is reused by later targets), the page's index.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct PageRef {
    pub(super) slot: usize,
    pub(super) id: u32,
    pub(super) index: usize,
}

/// See the module documentation.
#[derive(Clone, Copy, Default)]
pub(crate) struct Owned {
    refs: [Option<PageRef>; OWNED_PER_VCPU],
    /// Which of them the next exit walks first (round robin).
    next: usize,
}

impl Owned {
    pub(super) fn is_empty(&self) -> bool {
        self.refs.iter().all(Option::is_none)
    }

    pub(super) fn is_full(&self) -> bool {
        self.refs.iter().all(Option::is_some)
    }

    /// Follows `r`; `false` if full.
    pub(super) fn add(&mut self, r: PageRef) -> bool {
        match self.refs.iter_mut().find(|s| s.is_none()) {
            Some(s) => {
                *s = Some(r);
                true
            }
            None => false,
        }
    }

    pub(super) fn release(&mut self, r: PageRef) {
        for s in self.refs.iter_mut().filter(|s| **s == Some(r)) {
            *s = None;
        }
    }

    /// The followed pages, starting at the round-robin position, which
    /// moves on by one.
    pub(super) fn take_turn(&mut self) -> [Option<PageRef>; OWNED_PER_VCPU] {
        let mut out = [None; OWNED_PER_VCPU];
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.refs[(self.next + k) % OWNED_PER_VCPU];
        }
        self.next = (self.next + 1) % OWNED_PER_VCPU;
        out
    }
}
