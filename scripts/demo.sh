#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make demo`: boot the test VM, start a guest, attach to it with the
# kvm-pfi tool as an operator would, and show the live netlink events and
# the counters the module keeps.
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
TOOL="${CARGO_TARGET_DIR:-$KVM_PFI_CACHE/target}/release/kvm-pfi"
TESTS="${KVM_PFI_TESTS:-$(selftests_dir "$KDIR")}"

run_vng "$KDIR" "KVM_PFI_ROOT='$KVM_PFI_ROOT' KVM_PFI_KO='$KVM_PFI_ROOT/kvm_pfi.ko' TOOL='$TOOL' TESTS='$TESTS' \
bash $KVM_PFI_ROOT/scripts/demo-in-vm.sh"
