// SPDX-License-Identifier: GPL-2.0
//! Host build of the module's kernel-independent logic (see mod.rs).
#![no_std]
#[cfg(test)]
extern crate std;
include!("mod.rs");
