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
#[cfg(test)]
extern crate std;
include!("mod.rs");
