// SPDX-License-Identifier: GPL-2.0

//! The active signature set: replaced whole by `KVM_PFI_SIGS_LOAD`, emptied
//! by `KVM_PFI_SIGS_CLEAR`, read by the report work to scan target pages.
//!
//! Validation and matching are `pfi_core::sigs` (host-tested); this file
//! copies the set in, builds the automaton, and swaps the active `Arc` under
//! a mutex. A scan holds its own `Arc`, so a load never waits for scans and
//! a set is freed when its last scan ends.

use kernel::prelude::*;
use kernel::sync::atomic::{
    Atomic,
    Relaxed, //
};
use kernel::sync::Arc;
use kernel::uaccess::{
    UserPtr,
    UserSlice, //
};

use crate::bindings::uapi;
use crate::events::{
    self,
    Record, //
};
use crate::pfi_core::sigs::{
    self,
    Matcher,
    SetInfo,
    SigErrorKind, //
};

// The layout pfi_core decodes is the one the UAPI header declares.
const _: () = {
    assert!(sigs::MAGIC == uapi::KVM_PFI_SIGS_MAGIC);
    assert!(sigs::VERSION == uapi::KVM_PFI_SIGS_VERSION);
    assert!(sigs::HEADER_SIZE == size_of::<uapi::kvm_pfi_sigs_header>());
    assert!(sigs::RULE_SIZE == size_of::<uapi::kvm_pfi_sig_rule>());
    assert!(sigs::PATTERN_SIZE == size_of::<uapi::kvm_pfi_sig_pattern>());
    assert!(sigs::SEGMENT_SIZE == size_of::<uapi::kvm_pfi_sig_segment>());
    assert!(sigs::MAX_SIZE == uapi::KVM_PFI_SIGS_MAX_SIZE as usize);
    assert!(sigs::MAX_RULES == uapi::KVM_PFI_SIGS_MAX_RULES as usize);
    assert!(sigs::MAX_PATTERNS == uapi::KVM_PFI_SIGS_MAX_PATTERNS as usize);
    assert!(sigs::MAX_SEGMENTS == uapi::KVM_PFI_SIGS_MAX_SEGMENTS as usize);
    assert!(sigs::MAX_RULE_PATTERNS == uapi::KVM_PFI_SIG_MAX_PATTERNS as usize);
    assert!(sigs::MAX_CHAIN == uapi::KVM_PFI_SIG_MAX_SEGMENTS as usize);
    assert!(sigs::MAX_JUMP == uapi::KVM_PFI_SIG_MAX_JUMP as usize);
    assert!(sigs::MAX_SPAN == uapi::KVM_PFI_SIG_MAX_SPAN as usize);
    assert!(sigs::NAME_MAX == uapi::KVM_PFI_SIG_NAME_MAX as usize);
    assert!(sigs::END as u32 == uapi::KVM_PFI_SIG_END);
};

/// A validated set with its automaton.
pub(crate) struct SigSet {
    pub(crate) generation: u32,
    pub(crate) info: SetInfo,
    blob: KVVec<u8>,
    storage: KVVec<u32>,
}

impl SigSet {
    pub(crate) fn matcher(&self) -> Option<Matcher<'_>> {
        Matcher::new(&self.blob, &self.storage)
    }
}

struct Active {
    set: Option<Arc<SigSet>>,
    generation: u32,
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `Sigs::new` in module init before any use.
    unsafe(uninit) static ACTIVE: Mutex<Active> = Active { set: None, generation: 0 };
}

kernel::sync::global_lock! {
    // SAFETY: initialised by `Sigs::new` in module init before any use.
    unsafe(uninit) static LOADING: Mutex<()> = ();
}

/// Generation of the active set (0: none active), for page flags.
static ACTIVE_GENERATION: Atomic<u32> = Atomic::new(0);

/// Counters reported by `KVM_PFI_SIGS_INFO`, since module load.
pub(crate) static PAGES_SCANNED: Atomic<u64> = Atomic::new(0);
pub(crate) static BYTES_SCANNED: Atomic<u64> = Atomic::new(0);
pub(crate) static DETECTIONS: Atomic<u64> = Atomic::new(0);

/// Module-lifetime owner of the set's lock; drops the set on unload.
pub(crate) struct Sigs;

impl Sigs {
    pub(crate) fn new() -> Self {
        // SAFETY: called once, from module init, before any user of these.
        unsafe {
            ACTIVE.init();
            LOADING.init();
        }
        Sigs
    }
}

impl Drop for Sigs {
    fn drop(&mut self) {
        let old = ACTIVE.lock().set.take();
        drop(old);
    }
}

fn errno(kind: SigErrorKind) -> Error {
    match kind {
        SigErrorKind::Empty => EINVAL,
        SigErrorKind::TooLarge => E2BIG,
        SigErrorKind::Version => EPROTO,
        SigErrorKind::Loop => ELOOP,
        SigErrorKind::Malformed => EBADMSG,
    }
}

/// The active set, if any; the caller scans with its own reference.
pub(crate) fn active() -> Option<Arc<SigSet>> {
    ACTIVE.lock().set.clone()
}

pub(crate) fn active_generation() -> u32 {
    ACTIVE_GENERATION.load(Relaxed)
}

/// A set copied in, validated and compiled, not active yet.
pub(crate) struct Prepared {
    info: SetInfo,
    blob: KVVec<u8>,
    storage: KVVec<u32>,
}

/// Copies the set at `data` in, validates and compiles it. Changes nothing.
pub(crate) fn prepare(req: &uapi::kvm_pfi_sigs_load) -> Result<Prepared> {
    if req.flags != 0 || req.generation != 0 || req.nr_rules != 0 || req.size == 0 {
        return Err(EINVAL);
    }
    let size = req.size as usize;
    if size > sigs::MAX_SIZE {
        return Err(E2BIG);
    }
    let addr = usize::try_from(req.data).map_err(|_| EFAULT)?;
    let mut blob = KVVec::new();
    UserSlice::new(UserPtr::from_addr(addr), size).read_all(&mut blob, GFP_KERNEL)?;
    let info = sigs::validate(&blob).map_err(|e| errno(e.kind))?;
    let mut storage = KVVec::from_elem(0u32, info.storage_words, GFP_KERNEL)?;
    sigs::build(&blob, &mut storage).map_err(|e| errno(e.kind))?;
    Ok(Prepared { info, blob, storage })
}

/// The generation after `generation`: never 0 (no set), never one used
/// before (`EOVERFLOW` after 2^32 - 1 loads and clears).
fn next_generation(generation: u32) -> Result<u32> {
    generation.checked_add(1).ok_or(EOVERFLOW)
}

/// Makes `set` the active one, after `answer` (which tells the caller its
/// generation and rule count) succeeded: if it fails, nothing changes.
/// `LOADING` makes the generation `answer` reports the one activated, while
/// `ACTIVE` (which scans take) is held only for the swap.
pub(crate) fn activate(set: Prepared, answer: impl FnOnce(u32, u32) -> Result) -> Result {
    let _loading = LOADING.lock();
    let generation = next_generation(ACTIVE.lock().generation)?;
    let nr_rules = set.info.nr_rules;
    let set = Arc::new(
        SigSet { generation, info: set.info, blob: set.blob, storage: set.storage },
        GFP_KERNEL,
    )?;
    answer(generation, nr_rules)?;
    let mut active = ACTIVE.lock();
    active.generation = generation;
    let old = active.set.replace(set);
    ACTIVE_GENERATION.store(generation, Relaxed);
    // Under the lock, so that concurrent loads announce in order.
    events::emit(Record::sigs_loaded(generation, nr_rules));
    drop(active);
    drop(old);
    events::flush();
    Ok(())
}

/// Deactivates the set; returns the new generation.
pub(crate) fn clear() -> Result<u32> {
    let _loading = LOADING.lock();
    let mut active = ACTIVE.lock();
    let generation = next_generation(active.generation)?;
    active.generation = generation;
    let old = active.set.take();
    ACTIVE_GENERATION.store(0, Relaxed);
    events::emit(Record::sigs_loaded(generation, 0));
    drop(active);
    drop(old);
    events::flush();
    Ok(generation)
}

pub(crate) fn info() -> uapi::kvm_pfi_sigs_info {
    let active = ACTIVE.lock();
    let mut out = uapi::kvm_pfi_sigs_info {
        generation: active.generation,
        pages_scanned: PAGES_SCANNED.load(Relaxed),
        bytes_scanned: BYTES_SCANNED.load(Relaxed),
        detections: DETECTIONS.load(Relaxed),
        ..Default::default()
    };
    if let Some(s) = &active.set {
        out.nr_rules = s.info.nr_rules;
        out.nr_patterns = s.info.nr_patterns;
        out.size = s.info.size;
    }
    out
}
