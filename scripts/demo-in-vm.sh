#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The demo's script inside the test VM (see scripts/demo.sh).
set -euo pipefail
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "load KVM (SVM under TCG) and kvm_pfi"
modprobe kvm_amd
insmod "$KVM_PFI_KO"
"$TOOL" version

say "subscribe to the kvm_pfi netlink group 'events' (kvm-pfi watch --pretty)"
"$TOOL" watch --pretty --ready-file /tmp/watch.ready &
watch_pid=$!
while [ ! -e /tmp/watch.ready ]; do sleep 0.1; done

say "start a guest: a VMM whose guest makes 3000 port-I/O exits, 1 ms apart"
mkfifo /tmp/vmm.in
"$TESTS/kvm_pfi_vmm" 3000 1000 </tmp/vmm.in >/tmp/vmm.out &
vmm_pid=$!
exec 3>/tmp/vmm.in      # the VMM holds its guest until this closes
until grep -q '^{' /tmp/vmm.out; do sleep 0.1; done
echo "VMM: $(grep '^{' /tmp/vmm.out)"

say "kvm-pfi attach --pid $vmm_pid --persistent (pidfd_getfd of its VM descriptor)"
vm=$("$TOOL" attach --pid "$vmm_pid" --persistent --json | sed -E 's/.*"vm_id":([0-9]+).*/\1/')
echo "attached as vm $vm"

say "the guest runs; the module counts its vCPU entries and exits"
exec 3>&-
for i in 1 2; do sleep 1; "$TOOL" stats --vm "$vm" || true; done

say "the VMM exits: the module notices it holds the last reference and detaches"
wait "$vmm_pid" && echo "VMM exited, guest finished"
sleep 1.5
"$TOOL" list
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
rmmod kvm_pfi
