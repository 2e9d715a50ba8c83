#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark inside the test VM (scripts/bench.sh on SVM under QEMU,
# scripts/vmx-test.sh with KVM_PFI_VMX_RUN=bench on VMX under Bochs): each configuration
# three times, the median used; prints `ratio <name> <value>` and
# `count <name> <value>` lines for scripts.
set -euo pipefail
# The host's vendor: AMD SVM in QEMU, Intel VMX in Bochs.
vendor=$(grep -qw vmx /proc/cpuinfo && echo kvm_intel || echo kvm_amd)
modprobe "$vendor"

median3() { sort -n | sed -n 2p; }
run() { # mode -> median ns
	for _ in 1 2 3; do "$BENCH" "$1" "$EXITS" | awk '$1 == "time" {print $3}'; done | median3
}
rmmod kvm_pfi 2>/dev/null || true
t_none=$(run none)
t_beside_none=$(run neighbour_none)
insmod "$KVM_PFI_KO"
t_loaded=$(run none)
t_attached=$(run attached)
t_pending=$(run pending)
t_other=$(run pending_other_cr3)
t_many=$(run pending_10000)
t_beside_many=$(run neighbour)
inject=$("$BENCH" inject 1000 | awk '$1 == "count"')
rmmod kvm_pfi

echo "# $vendor: guest loop of $EXITS port-I/O exits; instruction-based time (QEMU -icount shift=0, or Bochs's clock: sync=none, ips)"
echo "# ns: not loaded $t_none, loaded $t_loaded, attached $t_attached, 1000 pending pages $t_pending, in another address space $t_other, 10000 pending pages $t_many"
echo "# ns of an unattached VM run in turn with another: not loaded $t_beside_none, the other attached with 10000 pending pages $t_beside_many"
awk -v a="$t_loaded" -v b="$t_none" 'BEGIN { printf "ratio loaded_not_attached %.4f\n", a / b }'
awk -v a="$t_attached" -v b="$t_none" 'BEGIN { printf "ratio attached_no_targets %.4f\n", a / b }'
awk -v a="$t_pending" -v b="$t_none" 'BEGIN { printf "ratio attached_1000_pending_pages %.4f\n", a / b }'
awk -v a="$t_other" -v b="$t_none" 'BEGIN { printf "ratio attached_1000_pending_pages_other_cr3 %.4f\n", a / b }'
awk -v a="$t_many" -v b="$t_none" 'BEGIN { printf "ratio attached_10000_pending_pages %.4f\n", a / b }'
awk -v a="$t_beside_many" -v b="$t_beside_none" 'BEGIN { printf "ratio neighbour_vm_beside_10000_pending %.4f\n", a / b }'
echo "$inject"
