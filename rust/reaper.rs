// SPDX-License-Identifier: GPL-2.0

//! Notices VMs whose VMM has gone and detaches them.
//!
//! KVM offers no notification when a VM's last file closes while somebody
//! else (we) still holds a reference, so a delayed work polls twice a
//! second: a VM whose only reference left is ours is dead, and keeping it
//! would keep its memory alive forever.

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{
    impl_has_delayed_work,
    new_delayed_work,
    DelayedWork,
    WorkItem, //
};

use crate::attach;
use crate::work_end::{
    end_work_for_good,
    module_queue,
    QueuedWork, //
};

/// Poll period in jiffies: half a second.
fn period() -> kernel::time::Jiffies {
    kernel::time::msecs_to_jiffies(500)
}

#[pin_data]
pub(crate) struct Reaper {
    #[pin]
    work: DelayedWork<Reaper>,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for Reaper { self.work }
}

impl WorkItem for Reaper {
    type Pointer = Arc<Reaper>;

    fn run(this: Arc<Reaper>) {
        attach::reap_exited();
        Reaper::schedule(this);
    }
}

impl Reaper {
    fn schedule(this: Arc<Reaper>) {
        let queue = module_queue();
        // Only `run` and `start` queue it, so it is never queued already;
        // once the handle has disabled it, the refused `this` drops here.
        let _ = queue.enqueue_delayed(this, period());
    }
}

/// The running reaper; stops it (and waits for it) on drop.
pub(crate) struct ReaperHandle {
    reaper: Arc<Reaper>,
}

impl ReaperHandle {
    pub(crate) fn start() -> Result<Self> {
        let reaper = Arc::pin_init(
            pin_init!(Reaper {
                work <- new_delayed_work!("kvm_pfi::reaper"),
            }),
            GFP_KERNEL,
        )?;
        Reaper::schedule(reaper.clone());
        Ok(ReaperHandle { reaper })
    }
}

impl Drop for ReaperHandle {
    fn drop(&mut self) {
        let dwork = core::ptr::from_ref(&self.reaper.work).cast_mut().cast::<bindings::delayed_work>();
        // A running instance that re-queues itself is refused (it drops
        // its own reference then).
        // SAFETY: `DelayedWork` is a transparent wrapper of `delayed_work`
        // and lives in `self.reaper`, an `Arc` whose queued runs each hold
        // a reference.
        unsafe { end_work_for_good(&*self.reaper, QueuedWork::Delayed(dwork)) };
    }
}
