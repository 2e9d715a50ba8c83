#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot the test kernel under virtme-ng (QEMU TCG, emulated AMD CPU with SVM,
# see Documentation/testing.rst) and run the selftests in it.
# KVM_PFI_RESULTS=FILE: also keep the output there (make test sums stages).
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
export KVM_PFI_KO="$KVM_PFI_ROOT/kvm_pfi.ko"
export KVM_PFI_TESTS="${KVM_PFI_TESTS:-$(selftests_dir "$KDIR")}"
export KVM_PFI_TOOL="${CARGO_TARGET_DIR:-$KVM_PFI_CACHE/target}/release/kvm-pfi"
export KVM_PFI_ROOT
# The real-guest test's guest (`make guest` builds it): its main case
# (swapped_pages: one boot, the coverage line, the signature) is part of the
# suite; KVM_PFI_REAL_GUEST=0 leaves it out (a developer's shortcut).
if [ "${KVM_PFI_REAL_GUEST:-1}" = 1 ] && [ -z "${KVM_PFI_GUEST_KERNEL:-}" ] &&
	[[ -z "${KVM_PFI_ONLY:-}" || " $KVM_PFI_ONLY " == *" real_guest "* ]]; then
	KVM_PFI_GUEST_KERNEL="$(guest_kernel_dir)/arch/x86/boot/bzImage" KVM_PFI_GUEST_INITRD="$(guest_initramfs)"
	[ -f "$(guest_kernel_dir)/.kvm-pfi-built" ] && [ -f "$KVM_PFI_GUEST_INITRD" ] ||
		die "no real-guest guest for this checkout: run 'make guest' (or KVM_PFI_REAL_GUEST=0)"
	# Its BTF and System.map: the real guest's Linux profile.
	KVM_PFI_GUEST_BTF="$(kernel_btf "$(guest_kernel_dir)")" KVM_PFI_GUEST_SYSTEM_MAP="$(guest_kernel_dir)/System.map"
	export KVM_PFI_GUEST_KERNEL KVM_PFI_GUEST_INITRD KVM_PFI_GUEST_BTF KVM_PFI_GUEST_SYSTEM_MAP
	# One nested boot more: 2.5 minutes here, up to 10 on a loaded machine.
	export KVM_PFI_VM_TIMEOUT="${KVM_PFI_VM_TIMEOUT:-2700}"
fi
# linux_walk.py: the test kernel's BTF (made by pahole from its vmlinux,
# which has DWARF but no .BTF) and System.map.
if [ -f "$KDIR/vmlinux" ]; then
	make_kernel_btf "$KDIR"
	export KVM_PFI_BTF="$(kernel_btf "$KDIR")"
fi
export KVM_PFI_SYSTEM_MAP="$KDIR/System.map"
for f in "$KVM_PFI_KO" "$KVM_PFI_TESTS/kvm_pfi_test" "$KVM_PFI_TESTS/linux_walk_maps" "$KVM_PFI_TOOL"; do
	[ -e "$f" ] || die "missing $f: run 'make module tool selftests'"
done

run_vng "$KDIR" "KVM_PFI_ONLY='${KVM_PFI_ONLY:-}' KVM_PFI_REPEAT='${KVM_PFI_REPEAT:-1}' KVM_PFI_KO='$KVM_PFI_KO' KVM_PFI_TESTS='$KVM_PFI_TESTS' \
KVM_PFI_TOOL='$KVM_PFI_TOOL' KVM_PFI_ROOT='$KVM_PFI_ROOT' KVM_PFI_SRC='$(kernel_src_dir)' \
KVM_PFI_BTF='${KVM_PFI_BTF:-}' KVM_PFI_SYSTEM_MAP='$KVM_PFI_SYSTEM_MAP' \
KVM_PFI_GUEST_KERNEL='${KVM_PFI_GUEST_KERNEL:-}' KVM_PFI_GUEST_INITRD='${KVM_PFI_GUEST_INITRD:-}' \
KVM_PFI_GUEST_BTF='${KVM_PFI_GUEST_BTF:-}' KVM_PFI_GUEST_SYSTEM_MAP='${KVM_PFI_GUEST_SYSTEM_MAP:-}' \
KVM_PFI_REAL_GUEST_ARGS='${KVM_PFI_REAL_GUEST_ARGS:-}' KVM_PFI_STRESS_FAULTS='${KVM_PFI_STRESS_FAULTS:-10000}' KVM_PFI_STRESS_TRACE='${KVM_PFI_STRESS_TRACE:-}' KVM_PFI_REAL_GUEST_TIMEOUT='${KVM_PFI_REAL_GUEST_TIMEOUT:-}' \
$KVM_PFI_ROOT/selftests/run_in_vm.sh" | tee "${KVM_PFI_RESULTS:-/dev/null}"
