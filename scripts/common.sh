# SPDX-License-Identifier: GPL-2.0
# Shared settings for kvm-pfi scripts. Sourced, never executed.
#
# Everything built or installed for the project lives in one cache folder
# outside the repository, so a clean clone on a warm machine reuses it.

set -euo pipefail

KVM_PFI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KVM_PFI_CACHE="${KVM_PFI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-pfi}"

# Kernel under test: Debian's linux-source package of this version.
KERNEL_SERIES=7.3
KERNEL_PKG="linux-source-${KERNEL_SERIES}"
KERNEL_SUITE=trixie-backports

# Toolchain pins (see Documentation/testing.rst for why each one).
BINDGEN_VERSION=0.72.1
VIRTME_NG_VERSION=1.42
LLVM_VERSION=19
# Ships the OCSF schema as JSON (ocsf/schemas/v1_5_0.json): the ground truth
# of the OCSF output test.
PYDANTIC_OCSF_VERSION=3.0.0

TOOLS_DIR="$KVM_PFI_CACHE/tools"          # cargo install --root
VENV_DIR="$KVM_PFI_CACHE/venv"            # virtme-ng
export PATH="$TOOLS_DIR/bin:$VENV_DIR/bin:$PATH"
export LIBCLANG_PATH="/usr/lib/llvm-${LLVM_VERSION}/lib"
# The kernel needs a rustc whose core library source ships beside it: Debian's.
export KVM_PFI_RUSTC=/usr/bin/rustc

log() { printf '[kvm-pfi] %s\n' "$*" >&2; }
die() { printf '[kvm-pfi] error: %s\n' "$*" >&2; exit 1; }

# Key of the kernel build: version of the unpacked source + config fragment.
kernel_fragment() { echo "$KVM_PFI_ROOT/scripts/kernel.config"; }
kernel_key() {
	local frag_hash
	frag_hash="$(sha256sum "$(kernel_fragment)" | cut -c1-12)"
	echo "${KERNEL_SERIES}-${frag_hash}"
}
kernel_src_dir() { echo "$KVM_PFI_CACHE/src"; }
kernel_build_dir() { echo "$KVM_PFI_CACHE/build-$(kernel_key)"; }
# The BTF blob of the kernel build $1. The test kernel is built without
# CONFIG_DEBUG_INFO_BTF but with DWARF: pahole makes the blob from its
# vmlinux (the vmlinux is not changed), once per kernel build, into the
# build folder (so it is keyed like the build); a newer vmlinux remakes it.
# Rust compilation units are left out, as the kernel's own BTF step does.
kernel_btf() { echo "$1/vmlinux.btf"; }
make_kernel_btf() {
	local kdir=$1 out
	out="$(kernel_btf "$kdir")"
	[ -f "$out" ] && [ "$out" -nt "$kdir/vmlinux" ] && return 0
	command -v pahole >/dev/null || die "no pahole: run scripts/toolchain.sh (package dwarves)"
	log "making $out from the DWARF of $kdir/vmlinux (pahole)"
	# pahole 1.24 warns about DWARF tags it does not know (thousands of
	# lines): keep them in a log beside the blob.
	pahole --lang_exclude=rust --btf_encode_detached="$out.tmp" -J "$kdir/vmlinux" >"$out.log" 2>&1 ||
		die "pahole could not make $out (see $out.log)"
	mv "$out.tmp" "$out"
}
# The nested guest's kernel (scripts/guest-kernel.sh), keyed the same way.
guest_kernel_dir() {
	echo "$KVM_PFI_CACHE/guest-build-${KERNEL_SERIES}-$(sha256sum "$KVM_PFI_ROOT/scripts/guest-kernel.config" | cut -c1-12)"
}
# The nested guest's initramfs (scripts/real-guest.sh --initramfs), keyed by
# what goes into it, so checkouts with different test programs (and a long
# run such as the boot series) never see theirs replaced.
guest_initramfs() {
	echo "$KVM_PFI_CACHE/real-guest/initramfs-$(cat "$KVM_PFI_ROOT/scripts/real-guest.sh" \
		"$KVM_PFI_ROOT/selftests/guest/pfi_guest_swap.c" | sha256sum | cut -c1-12).cpio"
}
# Where `make selftests` puts this checkout's test programs for kernel build
# $1 (the Makefile's KVM_PFI_TESTS; keep the two in step).
selftests_dir() {
	echo "$KVM_PFI_CACHE/selftests/$(basename "$(readlink -f "$1")")/$(echo "$KVM_PFI_ROOT" | sha1sum | cut -c1-8)"
}

# The emulator the test VM runs under: Debian's QEMU of the machine's own
# qemu-system-x86 version, rebuilt with scripts/qemu-patches/ (scripts/qemu.sh).
# Its folder is keyed by that version, the patches and the configure line.
QEMU_CONFIGURE=(--target-list=x86_64-softmmu --disable-docs --disable-werror
	--disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-spice
	--disable-xen --disable-curl --disable-rbd --disable-glusterfs --disable-libiscsi
	--disable-libnfs --disable-libssh --disable-capstone --disable-guest-agent
	--disable-tools --enable-virtfs --enable-attr --enable-cap-ng --enable-kvm --enable-tcg
	--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu)
qemu_version() { dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || die "qemu-system-x86 is not installed: run scripts/toolchain.sh"; }
qemu_patch_dir() { echo "$KVM_PFI_ROOT/scripts/qemu-patches"; }
qemu_dir() {
	local h
	h="$( (cat "$(qemu_patch_dir)"/*.patch; printf '%s\n' "${QEMU_CONFIGURE[@]}") | sha256sum | cut -c1-12)"
	echo "$KVM_PFI_CACHE/qemu-$(qemu_version | tr ':~+' '__.')-$h"
}
qemu_bin() { echo "$(qemu_dir)/bin/qemu-system-x86_64"; }

# Boot $1 (a kernel build dir) under virtme-ng and run the command $2 in it.
# TCG only (no nested hardware virtualisation here), single-threaded TCG for
# determinism (multi-threaded TCG has shown stale code after cross-CPU
# patching), two vCPUs, 2 GiB. vng has no timeout of its own.
#
# Output goes through a pipe: virtme-ng has QEMU reopen /proc/self/fd/1 as a
# file chardev, which truncates a log file that stdout points to, erasing
# everything printed before the VM booted.
#
# The emulator is the patched one (scripts/qemu.sh); KVM_PFI_QEMU=PATH runs
# another (e.g. Debian's, to see the nested-guest hang again).
run_vng() {
	local kdir=$1 cmd=$2 qemu="${KVM_PFI_QEMU:-$(qemu_bin)}"
	[ -x "$qemu" ] || die "no emulator at $qemu: run scripts/qemu.sh (make qemu)"
	timeout "${KVM_PFI_VM_TIMEOUT:-1800}" vng --disable-kvm --force-9p -r "$kdir" --qemu "$qemu" \
		-p 2 -m 2G --qemu-opts="-accel tcg,thread=single ${KVM_PFI_QEMU_OPTS:-}" \
		-- "$cmd" </dev/null 2>&1 | cat
}
