// SPDX-License-Identifier: GPL-2.0

//! The event stream, a sink: descriptors from `KVM_PFI_EVENTS` on which
//! `read()` returns whole `struct kvm_pfi_event` records and `poll()` waits
//! for one. The same events as the netlink group, for readers that want no
//! netlink.
//!
//! The sink stage (`sinks.rs`) encodes each record once and queues a
//! reference to it for every reader; a full queue drops it and counts it in
//! that reader's next record. Locks: `READERS` (the reader list: the sink
//! stage, open, release) and each reader's `queue` spinlock, held only to
//! move a reference in or out. `read()` copies to user space with neither
//! held, under its own descriptor's `reading` mutex, so a reader whose
//! buffer faults for ever (userfaultfd, FUSE) stalls nobody else.
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
    Mutex,
    SpinLock, //
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
use crate::events::Record;
use crate::pfi_core::ring::Ring;

const QUEUE: usize = uapi::KVM_PFI_EVENT_QUEUE as usize;
const MAX_READERS: usize = uapi::KVM_PFI_MAX_EVENT_READERS as usize;
const HDR: usize = size_of::<uapi::kvm_pfi_event>();
const LOST_AT: usize = core::mem::offset_of!(uapi::kvm_pfi_event, lost);

/// A record as the stream delivers it: header, then data. Shared by every
/// reader it was queued for.
struct Encoded {
    bytes: KVec<u8>,
}

/// A record queued for one reader, and how many this reader dropped just
/// before it (added to the record's own `lost` when it is read).
struct Queued {
    rec: Arc<Encoded>,
    lost: u32,
}

struct Queue {
    records: Ring<KVec<Option<Queued>>>,
    /// Records dropped since the last one queued.
    lost: u32,
}

#[pin_data]
pub(crate) struct Reader {
    #[pin]
    queue: SpinLock<Queue>,
    /// Serialises `read()`s of this descriptor (so records leave in order);
    /// nothing else takes it.
    #[pin]
    reading: Mutex<()>,
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

fn encode(rec: &Record) -> Result<Arc<Encoded>> {
    let data = rec.data();
    let mut ev = rec.ev;
    ev.size = (HDR + data.len()) as u32;
    ev.data_len = data.len() as u32;
    let mut bytes = KVec::with_capacity(HDR + data.len(), GFP_KERNEL)?;
    bytes.extend_from_slice(ev.as_bytes(), GFP_KERNEL)?;
    bytes.extend_from_slice(data, GFP_KERNEL)?;
    Ok(Arc::new(Encoded { bytes }, GFP_KERNEL)?)
}

/// The sink stage's side: queues `rec` for every reader.
pub(crate) fn deliver(rec: &Record) {
    let readers = READERS.lock();
    if readers.iter().all(Option::is_none) {
        return;
    }
    let enc = encode(rec).ok();
    for r in readers.iter().flatten() {
        let refused = {
            let mut q = r.queue.lock();
            let lost = q.lost;
            match enc.as_ref().map(|e| q.records.push_back(Queued { rec: e.clone(), lost })) {
                Some(Ok(())) => {
                    q.lost = 0;
                    None
                }
                Some(Err(refused)) => {
                    q.lost = q.lost.saturating_add(1);
                    Some(refused)
                }
                None => {
                    q.lost = q.lost.saturating_add(1);
                    None
                }
            }
        };
        if refused.is_none() && enc.is_some() {
            r.ready.notify_all();
        }
    }
}

/// `KVM_PFI_EVENTS`: a new reader descriptor.
pub(crate) fn open_reader() -> Result<isize> {
    let mut slots = KVec::with_capacity(QUEUE, GFP_KERNEL)?;
    for _ in 0..QUEUE {
        // Capacity reserved: cannot fail.
        slots.push(None, GFP_KERNEL)?;
    }
    let reader = Arc::pin_init(
        pin_init!(Reader {
            queue <- kernel::new_spinlock!(Queue { records: Ring::new(slots), lost: 0 }),
            reading <- kernel::new_mutex!(()),
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
    let gone = {
        let mut readers = READERS.lock();
        let slot = readers.iter_mut().find(|s| s.as_ref().is_some_and(|r| core::ptr::eq(&**r, &**reader)));
        slot.and_then(Option::take)
    };
    drop(gone);
}

/// # Safety
///
/// `file` is one of our event files (its `private_data` is a `Reader`).
unsafe fn reader_of<'a>(file: *mut bindings::file) -> &'a Reader {
    // SAFETY: set by `open_reader`, valid until `release`.
    unsafe { &*(*file).private_data.cast::<Reader>() }
}

/// `read()` of an event descriptor: whole records into `buf`.
///
/// # Safety
///
/// Only as `file_operations.read` of an event file (`open_reader`): `file`
/// is one of ours, `buf` a user pointer of `count` bytes.
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
    let _reading = reader.reading.lock();
    {
        let mut q = reader.queue.lock();
        while q.records.is_empty() {
            if nonblock {
                return -(bindings::EAGAIN as isize);
            }
            if reader.ready.wait_interruptible(&mut q) {
                return -(bindings::ERESTARTSYS as isize);
            }
        }
    }
    let mut out = UserSlice::new(UserPtr::from_addr(buf as usize), count).writer();
    let mut done = 0usize;
    loop {
        let next = {
            let mut q = reader.queue.lock();
            match q.records.front() {
                Some(n) if n.rec.bytes.len() <= count - done => q.records.pop_front(),
                _ => None,
            }
        };
        let Some(n) = next else { break };
        let (hdr, data) = n.rec.bytes.split_at(HDR);
        let mut h = [0u8; HDR];
        h.copy_from_slice(hdr);
        let own = u32::from_ne_bytes([h[LOST_AT], h[LOST_AT + 1], h[LOST_AT + 2], h[LOST_AT + 3]]);
        h[LOST_AT..LOST_AT + 4].copy_from_slice(&own.saturating_add(n.lost).to_ne_bytes());
        // No lock is held here: the copy may fault and sleep for as long as
        // user space makes it.
        if let Err(e) = out.write_slice(&h).and_then(|()| out.write_slice(data)) {
            // Not delivered: it stays first, unless the queue filled
            // meanwhile (then it counts as lost, like any other drop).
            let refused = {
                let mut q = reader.queue.lock();
                let lost = n.lost;
                q.records.push_front(n).inspect_err(|_| q.lost = q.lost.saturating_add(lost).saturating_add(1))
            };
            drop(refused);
            return if done > 0 { done as isize } else { e.to_errno() as isize };
        }
        done += n.rec.bytes.len();
    }
    if done == 0 {
        // The buffer cannot hold the next record.
        return -(bindings::EINVAL as isize);
    }
    done as isize
}

/// `poll()` of an event descriptor.
///
/// # Safety
///
/// Only as `file_operations.poll` of an event file: `file` is one of ours,
/// `wait` the VFS's (possibly null) poll table for this call.
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

/// The last close of an event descriptor: drops the file's reference.
///
/// # Safety
///
/// Only as `file_operations.release` of an event file, once: `file` is one
/// of ours, holding the reference `open_reader` gave it.
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
