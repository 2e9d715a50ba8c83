// SPDX-License-Identifier: GPL-2.0

// Kernel-independent core of kvm-pfi.
//
// These files are compiled twice:
//
// - in the kernel module, whose crate root declares
//   `#[path = "pfi_core/mod.rs"] pub mod pfi_core;` (declare it `pub`: the
//   kernel builds with `-Wunreachable_pub` and `-Wmissing_docs`, and a private
//   module would turn every `pub` item below into an unreachable-pub warning);
// - on the host as the `pfi_core` crate (rust/pfi_core/Cargo.toml), whose
//   `lib.rs` is `#![no_std]` and `include!`s this file, so that `cargo test`
//   and `cargo clippy` run on exactly the code the module uses.
//
// Hence the rules for every file here: `core` only (no `std`, no `alloc`),
// no `unsafe`, no floating point, no panic on any input (guest memory is
// hostile), and sibling modules are named through `super::` only, because
// the path of this module differs between the two builds (`crate::pfi_core`
// in the kernel, `crate` on the host). This file holds item declarations
// only: it is the body of a module in the kernel build, where crate-level
// attributes are not allowed. (Plain comments, not `//!`, for the same
// reason: an inner doc comment here would be an error after `include!`.)

// Each module is documented by the `//!` comment at the top of its file
// (an outer `///` here as well would make rustdoc resolve the file's
// intra-doc links in this scope).

// x86-64 page-table entries: flags, addresses, reserved bits per level, and
// the classification of a Linux guest's not-present entries (swap,
// migration, PROT_NONE, ...).
pub mod pte;

// The bounded (at most five reads) guest page walk, CR3 normalisation and
// the matching of KPTI root pairs.
pub mod walk;

// The pure state machine deciding when to inject a #PF into a vCPU so that
// the guest swaps a target page back in, and following it to the end.
pub mod inject;

// What the vendor's state fields (AMD VMCB, Intel VMCS) mean for injection:
// decoding raw fields into one vendor-neutral view, and encoding the #PF
// into each vendor's event-injection field.
pub mod vendor;

// Which matches of one page's scan window are that page's to report (the
// neighbours' bytes are context), and where they start.
pub mod scan_window;

// A bounded FIFO over preallocated slots: the event outbox and the event
// readers' queues.
pub mod ring;

// Signature sets: validation of the binary layout user space loads, the
// automaton built from it, and the allocation-free scan of guest pages.
pub mod sigs;

// Handles that are never handed out twice (VM and target ids).
pub mod ids;

// Little-endian integers at an offset of a byte slice, bounds-checked.
pub mod le;

// A reader of BTF, the kernel's type information: member offsets of named
// structs through anonymous structs and unions, for the guest profile.
pub mod btf;

// Symbol addresses from a System.map or /proc/kallsyms text.
pub mod ksyms;

// The kernel's own kallsyms tables, found and decoded in a copy of its
// image's memory.
pub mod kallsyms_tables;

// The Linux guest profile: offsets and symbols the walks read, resolved
// from BTF and a symbol table, and its text form.
pub mod linux_profile;

// Bounded walks of a Linux guest kernel's structures through a profile:
// the task list, an mm, its VMA maple tree, dentry names.
pub mod linux_walk;

// Reads of a guest kernel's virtual memory through its page tables, for
// those walks: translations kept, reads across pages.
pub mod kernel_va;

// An in-place heapsort without allocation or a panic objtool does not know.
pub mod sort;

// What guest writes to a protected page changed: runs of changed bytes
// between two copies of a page, and the merging of emulated writes into one
// span per burst.
pub mod writes;

// A per-second rate budget: how many write-attempt reports a guest can
// cause each second.
pub mod budget;

// How many records hold each write-tracked frame: KVM's own 16-bit count
// per frame is asked for once per frame.
pub mod frame_refs;

// The address spaces with pages to inject, as a lock-free set the entry
// probe looks a CR3 up in.
pub mod ready_spaces;

// The pages of a target that may get a #PF now, in an intrusive FIFO: the
// entry probe finds the next one in O(1), and rotates for fairness.
pub mod ready_queue;

// A reader for many background walks in a row: each table page copied once.
pub mod table_cache;

// Whether a Linux guest's kernel handles a user-mode #PF at an address as
// a fault to serve rather than a signal to its task: the VMA's flags and
// protection key against the access and the task's PKRU.
pub mod vma_check;

// Which VMAs of a Linux guest process a rule by region wants, cut into
// target-sized ranges.
pub mod process_regions;
