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

say "a guest page is swapped out: its PTE holds a Linux swap entry, the bytes are not in guest RAM"
# A JSON watcher too, to show the page contents the event carries.
"$TOOL" watch --count 5 --timeout 120 >/tmp/events.json &
json_pid=$!
sleep 1
mkfifo /tmp/vmm2.in
"$TESTS/kvm_pfi_vmm" 2000 500 swap </tmp/vmm2.in >/tmp/vmm2.out &
vmm2_pid=$!
exec 4>/tmp/vmm2.in
until grep -q '^{"pid"' /tmp/vmm2.out; do sleep 0.1; done
hello=$(grep '^{"pid"' /tmp/vmm2.out)
echo "VMM: $hello"
field() { sed -E "s/.*\"$1\":([0-9]+).*/\1/" <<<"$hello"; }
vm=$("$TOOL" attach --pid "$(field pid)" --persistent --json | sed -E 's/.*"vm_id":([0-9]+).*/\1/')

say "kvm-pfi target add: the swapped-out page, kernel mode allowed (this guest runs at CPL 0), contents wanted"
"$TOOL" target add --vm "$vm" --cr3 "$(field cr3)" --gva "$(field gva)" --len 4096 --kernel --read
"$TOOL" target pages --vm "$vm" --target 1

say "the guest runs: kvm-pfi injects a #PF at a safe entry; the guest's handler swaps the page in"
exec 4>&-
for _ in $(seq 100); do
	"$TOOL" target pages --vm "$vm" --target 1 --json | grep -q '"state":"resident"' && break
	sleep 0.1
done
grep guest_page_fault /tmp/vmm2.out || true
"$TOOL" target pages --vm "$vm" --target 1

say "the page-resident event carries the page: its first bytes, as text"
wait "$vmm2_pid" || true
wait "$json_pid" || true
/usr/bin/python3 -c '
import json, sys
for line in open("/tmp/events.json"):
    e = json.loads(line)
    if e.get("event") == "page-resident":
        print(bytes.fromhex(e["data"])[:86].decode(errors="replace"))
'
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
rmmod kvm_pfi
