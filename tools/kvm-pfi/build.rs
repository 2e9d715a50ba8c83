// SPDX-License-Identifier: GPL-2.0
//! Generates the ABI bindings from the uapi headers.
//!
//! House rule: the tool never hand-copies a struct, constant or ioctl number
//! of /dev/kvm_pfi or of the "kvm_pfi" netlink family; bindgen derives them
//! here from include/kvm_pfi_bindgen.h, the same input the module uses.

use std::env;
use std::path::PathBuf;

/// Where Debian's llvm-19 keeps libclang; used only if LIBCLANG_PATH is unset.
const DEFAULT_LIBCLANG_PATH: &str = "/usr/lib/llvm-19/lib";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // tools/kvm-pfi -> repository root
    let repo = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("crate lives at <repo>/tools/kvm-pfi");
    let include = repo.join("include");
    let uapi = include.join("uapi");
    let input = include.join("kvm_pfi_bindgen.h");

    for header in [
        input.clone(),
        uapi.join("linux/kvm_pfi.h"),
        uapi.join("linux/kvm_pfi_netlink.h"),
    ] {
        println!("cargo:rerun-if-changed={}", header.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    // Checkouts share the cargo target dir (the Makefile keeps it in the
    // cache), and the paths above are absolute: a build of another
    // checkout would look fresh here. The Makefile names the checkout, so
    // switching checkouts regenerates the bindings from this one's headers.
    println!("cargo:rerun-if-env-changed=KVM_PFI_SOURCE_DIR");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");

    if env::var_os("LIBCLANG_PATH").is_none() {
        // clang-sys (runtime feature) dlopen()s libclang from here. build.rs is
        // single-threaded at this point, so changing our environment is fine.
        env::set_var("LIBCLANG_PATH", DEFAULT_LIBCLANG_PATH);
    }

    let bindings = bindgen::Builder::default()
        .header(input.to_str().expect("UTF-8 path"))
        // <linux/kvm_pfi.h> from the tree; <linux/types.h> from /usr/include.
        .clang_arg(format!("-I{}", uapi.display()))
        // Every name of the ABI starts with kvm_pfi/KVM_PFI; this keeps
        // <linux/types.h> and friends out of the bindings.
        .allowlist_item("kvm_pfi_.*")
        .allowlist_item("KVM_PFI_.*")
        // Plain constants, named as in C, so tables can be keyed by them and
        // unknown values from a newer module stay representable.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on include/kvm_pfi_bindgen.h");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("kvm_pfi_abi.rs");
    bindings.write_to_file(&out).expect("write bindings");

    // The YNL spec may gain a "pad" attribute for u64 alignment. Let the
    // decoder's table name it (and skip it) only when the header defines it,
    // so that both header versions compile without editing the tool.
    println!("cargo:rustc-check-cfg=cfg(kvm_pfi_has_pad_attr)");
    if bindings.to_string().contains("KVM_PFI_A_EVENT_PAD") {
        println!("cargo:rustc-cfg=kvm_pfi_has_pad_attr");
    }
}
