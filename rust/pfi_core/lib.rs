// SPDX-License-Identifier: GPL-2.0
//! Host build of the module's kernel-independent logic (see mod.rs).
#![no_std]
// Tests may panic and index freely; the code under test may not (the
// lints are set in Cargo.toml).
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
#[cfg(feature = "text")]
extern crate alloc;
#[cfg(test)]
extern crate std;
include!("mod.rs");

// Host only (allocates): the text rule format, for the kvm-pfi tool.
#[cfg(feature = "text")]
pub mod sigs_text;
