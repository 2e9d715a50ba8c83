// SPDX-License-Identifier: GPL-2.0

//! The sink stage: a work item that takes event records out of the outbox
//! (`events.rs`) and encodes each once per sink, the netlink group
//! (`netlink.rs`) and the event-stream readers (`stream.rs`). It runs in
//! process context, outside every lock of the domain code, and neither sink
//! blocks it: netlink multicast drops for a full socket, and a reader's
//! queue drops and counts for a reader that does not read.

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::workqueue::{
    impl_has_work,
    new_work,
    Work,
    WorkItem, //
};

use crate::events::{
    self,
    Consumer,
    Outbox, //
};
use crate::netlink;
use crate::stream;
use crate::work_end::{
    end_work_for_good,
    module_queue,
    QueuedWork, //
};

#[pin_data]
struct Stage {
    #[pin]
    work: Work<Stage>,
}

impl_has_work! {
    impl HasWork<Self> for Stage { self.work }
}

impl WorkItem for Stage {
    type Pointer = Arc<Stage>;

    fn run(_this: Arc<Stage>) {
        drain();
    }
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `Sinks::start` in module init before any use.
    unsafe(uninit) static STAGE: SpinLock<Option<Arc<Stage>>> = None;
}

fn drain() {
    while let Some(rec) = events::take() {
        netlink::send(&rec);
        stream::deliver(&rec);
        drop(rec);
        events::delivered();
    }
}

/// `Consumer::wake`: queue the stage unless it is queued already (a queued
/// run takes every record there is when it runs).
fn wake() {
    let stage = STAGE.lock().clone();
    if let Some(s) = stage {
        // Already queued: that run will see the record.
        let _ = module_queue().enqueue(s);
    }
}

/// `Consumer::flush`: queue a run and wait for it.
fn flush() {
    let stage = STAGE.lock().clone();
    if let Some(s) = stage {
        let _ = module_queue().enqueue(s.clone());
        flush_stage(&s);
    }
}

fn flush_stage(s: &Stage) {
    let work = core::ptr::from_ref(&s.work).cast_mut().cast::<bindings::work_struct>();
    // SAFETY: `Work` is a transparent wrapper of `work_struct`, alive as
    // long as `s`.
    unsafe { bindings::flush_work(work) };
}

/// The running stage. Dropped after every producer is gone (the module
/// root's field order): it delivers what is left, then stops.
pub(crate) struct Sinks {
    stage: Arc<Stage>,
}

impl Sinks {
    pub(crate) fn start() -> Result<Self> {
        let stage = Arc::pin_init(pin_init!(Stage { work <- new_work!("kvm_pfi::sinks") }), GFP_KERNEL)?;
        // SAFETY: called once, from module init, before any use of STAGE.
        unsafe { STAGE.init() };
        *STAGE.lock() = Some(stage.clone());
        Outbox::connect(Some(Consumer { wake, flush }));
        Ok(Sinks { stage })
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        Outbox::connect(None);
        let s = STAGE.lock().take();
        drop(s);
        // A wake that cloned the stage before it left `STAGE` may still
        // queue it: disabling the work refuses that, and waits for a
        // running instance. Then deliver what it left here.
        let work = core::ptr::from_ref(&self.stage.work).cast_mut().cast::<bindings::work_struct>();
        // SAFETY: `Work` is a transparent wrapper of `work_struct` and lives
        // in `self.stage`, an `Arc` whose queued runs each hold a reference.
        unsafe { end_work_for_good(&*self.stage, QueuedWork::Work(work)) };
        drain();
    }
}
