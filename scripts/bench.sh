#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: probe overhead ratios and injection latency, measured in the
# test VM under QEMU -icount shift=0 (the VM's clock counts instructions, so
# the figures repeat to about 0.1 %; see Documentation/performance.rst).
source "$(dirname "$0")/common.sh"

KDIR="${KDIR:-$KVM_PFI_CACHE/build}"
TESTS="${KVM_PFI_TESTS:-$(selftests_dir "$KDIR")}"
export KVM_PFI_QEMU_OPTS="-icount shift=0"
run_vng "$KDIR" "KVM_PFI_KO='$KVM_PFI_ROOT/kvm_pfi.ko' BENCH='$TESTS/kvm_pfi_bench' \
EXITS='${BENCH_EXITS:-10000}' bash $KVM_PFI_ROOT/scripts/bench-in-vm.sh"
