// SPDX-License-Identifier: GPL-2.0

//! The event stream: descriptors from `KVM_PFI_EVENTS` on which `read()`
//! returns whole `struct kvm_pfi_event` records and `poll()` waits for one.
//! The same events as the netlink group, for readers that want no netlink.
//!
//! Producers (ioctls, the report work) run in process context; they copy
//! each record into every reader's bounded queue. A full queue drops the
//! record and counts it in the reader's next one.

use core::ffi::{
    c_int,
    c_uint,
    c_void, //
};

use kernel::ffi::c_char;

use kernel::bindings;
use kernel::fs::File;
use kernel::prelude::*;
use kernel::sync::poll::{
    PollCondVar,
    PollTable, //
};
use kernel::sync::{
    Arc,
    Mutex, //
};
use kernel::uaccess::{
    UserPtr,
    UserSlice, //
};
use kernel::transmute::AsBytes;

use crate::bindings::{
    glue,
    uapi, //
};

const QUEUE: usize = uapi::KVM_PFI_EVENT_QUEUE as usize;
const MAX_READERS: usize = uapi::KVM_PFI_MAX_EVENT_READERS as usize;
const HDR: usize = size_of::<uapi::kvm_pfi_event>();

struct Queue {
    /// Serialised records, oldest first.
    records: KVVec<KVVec<u8>>,
    /// Records dropped since the last one queued.
    lost: u32,
}

#[pin_data]
pub(crate) struct Reader {
    #[pin]
    queue: Mutex<Queue>,
    #[pin]
    ready: PollCondVar,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `Readers::new` in module init before any use.
    unsafe(uninit) static READERS: Mutex<[Option<Arc<Reader>>; MAX_READERS]> = [const { None }; MAX_READERS];
}

/// Module-lifetime owner of the reader list's lock.
pub(crate) struct Readers;

impl Readers {
    pub(crate) fn new() -> Self {
        // SAFETY: called once, from module init, before any reader exists.
        unsafe { READERS.init() };
        Readers
    }
}

/// Makes a new record: the header with `time_ns`, `version` and `type` set.
pub(crate) fn record(kind: u32) -> uapi::kvm_pfi_event {
    uapi::kvm_pfi_event {
        version: uapi::KVM_PFI_EVENT_VERSION as u16,
        type_: kind as u16,
        // SAFETY: reads the clock.
        time_ns: unsafe { glue::kvm_pfi_realtime_ns() },
        ..Default::default()
    }
}

/// Queues `ev` (and `data`, the page bytes) for every reader.
pub(crate) fn publish(mut ev: uapi::kvm_pfi_event, data: Option<&[u8]>) {
    let readers = READERS.lock();
    if readers.iter().all(Option::is_none) {
        return;
    }
    let data = data.unwrap_or(&[]);
    ev.size = (HDR + data.len()) as u32;
    ev.data_len = data.len() as u32;
    for r in readers.iter().flatten() {
        let mut q = r.queue.lock();
        let mut rec = ev;
        rec.lost = q.lost;
        let bytes = KVVec::with_capacity(HDR + data.len(), GFP_KERNEL).and_then(|mut b| {
            b.extend_from_slice(rec.as_bytes(), GFP_KERNEL)?;
            b.extend_from_slice(data, GFP_KERNEL)?;
            Ok(b)
        });
        match bytes {
            Ok(b) if q.records.len() < QUEUE => {
                if q.records.push(b, GFP_KERNEL).is_ok() {
                    q.lost = 0;
                    drop(q);
                    r.ready.notify_all();
                    continue;
                }
                q.lost = q.lost.saturating_add(1);
            }
            _ => q.lost = q.lost.saturating_add(1),
        }
    }
}

/// `KVM_PFI_EVENTS`: a new reader descriptor.
pub(crate) fn open_reader() -> Result<isize> {
    let reader = Arc::pin_init(
        pin_init!(Reader {
            queue <- kernel::new_mutex!(Queue { records: KVVec::new(), lost: 0 }),
            ready <- kernel::new_poll_condvar!("kvm_pfi::events"),
        }),
        GFP_KERNEL,
    )?;
    {
        let mut readers = READERS.lock();
        let slot = readers.iter_mut().find(|r| r.is_none()).ok_or(ENOSPC)?;
        *slot = Some(reader.clone());
    }
    let raw = Arc::into_raw(reader.clone()).cast_mut().cast::<c_void>();
    // SAFETY: `FOPS` is a static table; `raw` is an owned reference that the
    // file keeps in `private_data` and `release` gives back.
    let fd = unsafe { glue::kvm_pfi_events_fd(core::ptr::from_ref(&FOPS.0).cast(), raw) };
    if fd < 0 {
        // SAFETY: the file was not created: the reference is still ours.
        drop(unsafe { Arc::from_raw(raw.cast::<Reader>()) });
        forget_reader(&reader);
        return Err(Error::from_errno(fd));
    }
    Ok(fd as isize)
}

fn forget_reader(reader: &Arc<Reader>) {
    let mut readers = READERS.lock();
    for slot in readers.iter_mut() {
        if slot.as_ref().is_some_and(|r| core::ptr::eq(&**r, &**reader)) {
            *slot = None;
        }
    }
}

/// # Safety
///
/// `file` is one of our event files (its `private_data` is a `Reader`).
unsafe fn reader_of<'a>(file: *mut bindings::file) -> &'a Reader {
    // SAFETY: set by `open_reader`, valid until `release`.
    unsafe { &*(*file).private_data.cast::<Reader>() }
}

unsafe extern "C" fn events_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `file` is an event file while the VFS calls us.
    let reader = unsafe { reader_of(file) };
    // SAFETY: as above.
    let nonblock = unsafe { (*file).f_flags } & bindings::O_NONBLOCK != 0;
    let mut q = reader.queue.lock();
    while q.records.is_empty() {
        if nonblock {
            return -(bindings::EAGAIN as isize);
        }
        if reader.ready.wait_interruptible(&mut q) {
            return -(bindings::ERESTARTSYS as isize);
        }
    }
    let mut out = UserSlice::new(UserPtr::from_addr(buf as usize), count).writer();
    let mut done = 0usize;
    while let Some(rec) = q.records.first() {
        if rec.len() > count - done {
            break;
        }
        if let Err(e) = out.write_slice(rec) {
            return if done > 0 { done as isize } else { e.to_errno() as isize };
        }
        done += rec.len();
        q.records.remove(0).ok();
    }
    if done == 0 {
        // The buffer cannot hold the next record.
        return -(bindings::EINVAL as isize);
    }
    done as isize
}

unsafe extern "C" fn events_poll(file: *mut bindings::file, wait: *mut bindings::poll_table) -> c_uint {
    // SAFETY: `file` is an event file while the VFS calls us.
    let reader = unsafe { reader_of(file) };
    // SAFETY: the VFS passes a valid (or null) table for this call.
    let table = unsafe { PollTable::from_raw(wait) };
    // SAFETY: `file` is valid for this call.
    table.register_wait(unsafe { File::from_raw_file(file) }, &reader.ready);
    if reader.queue.lock().records.is_empty() {
        0
    } else {
        bindings::POLLIN | bindings::POLLRDNORM
    }
}

unsafe extern "C" fn events_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `private_data` holds the reference `open_reader` gave the file.
    let reader = unsafe { Arc::from_raw((*file).private_data.cast::<Reader>()) };
    forget_reader(&reader);
    0
}

#[repr(transparent)]
struct Fops(bindings::file_operations);

// SAFETY: a constant table of function pointers.
unsafe impl Sync for Fops {}

static FOPS: Fops = Fops(bindings::file_operations {
    owner: <crate::KvmPfi as kernel::ModuleMetadata>::THIS_MODULE.as_ptr(),
    read: Some(events_read),
    poll: Some(events_poll),
    release: Some(events_release),
    llseek: Some(bindings::noop_llseek),
    ..pin_init::zeroed()
});
