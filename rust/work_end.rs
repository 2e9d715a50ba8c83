// SPDX-License-Identifier: GPL-2.0
//! Ending a self-queueing work item for good; the queue the module's work
//! items run on.
//!
//! The module's work items (the report work of each VM, the sink stage,
//! the reaper) live in an `Arc`, and each queued instance holds one
//! reference of it, taken by `Arc::into_raw` when it was queued and dropped
//! by its run. `flush_work` is not enough to end such an item: it waits only
//! for the instance queued when it is called, while the item re-queues
//! itself and probes, notifiers or ioctls may kick it again. Disabling it
//! cancels a queued instance, waits for a running one and refuses any later
//! queueing; a cancelled instance never runs, so its reference is dropped
//! here.

use kernel::bindings;
use kernel::sync::Arc;
use kernel::workqueue;

/// The workqueue every work item of the module runs on: the default
/// unbound one (`system()` and `system_unbound()` warn as deprecated in
/// 7.3, and no work of the module has CPU affinity).
pub(crate) fn module_queue() -> &'static workqueue::Queue {
    // SAFETY: `system_dfl_wq` is set up at boot and never freed.
    unsafe { workqueue::Queue::from_raw(bindings::system_dfl_wq) }
}

/// The work item to end, as the kernel's workqueue API sees it.
pub(crate) enum QueuedWork {
    Work(*mut bindings::work_struct),
    Delayed(*mut bindings::delayed_work),
}

/// Ends `work` for good: no instance is queued or running when this returns,
/// and none can be queued later.
///
/// # Safety
///
/// `work` is embedded in `owner`, `owner` is the object of an `Arc<T>`, and
/// every queued instance of `work` holds one reference of that `Arc` from
/// `Arc::into_raw`.
pub(crate) unsafe fn end_work_for_good<T>(owner: &T, work: QueuedWork) {
    // SAFETY: `work` is a live work item (it lives in `owner`).
    let cancelled = unsafe {
        match work {
            QueuedWork::Work(w) => bindings::disable_work_sync(w),
            QueuedWork::Delayed(d) => bindings::disable_delayed_work_sync(d),
        }
    };
    if cancelled {
        // SAFETY: the cancelled instance's reference is ours now (see the
        // function's safety section).
        drop(unsafe { Arc::from_raw(core::ptr::from_ref(owner)) });
    }
}
