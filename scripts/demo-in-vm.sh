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

say "the operator's rules: scripts/demo.yar, in YARA syntax (kvm-pfi reads a subset of it)"
grep -v '^//' "$KVM_PFI_ROOT/scripts/demo.yar"

say "kvm-pfi sigs load: the tool compiles the rules, the module validates and activates them"
"$TOOL" sigs load "$KVM_PFI_ROOT/scripts/demo.yar"
"$TOOL" sigs info

say "a guest page holding the EICAR test string is swapped out: its PTE holds a Linux swap entry, the bytes are not in guest RAM"
# A JSON watcher too, to check the detection against the VMM's ground
# truth, and a snapshot of the pages the module delivers.
"$TOOL" watch --timeout 120 >/tmp/events.json &
json_pid=$!
"$TOOL" snapshot --out /tmp/snap --count 1 --timeout 120 --ready-file /tmp/snap.ready >/dev/null &
snap_pid=$!
while [ ! -e /tmp/snap.ready ]; do sleep 0.1; done
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

say "kvm-pfi target add: the swapped-out page, kernel mode allowed (this guest runs at CPL 0), contents wanted, writes watched"
"$TOOL" target add --vm "$vm" --cr3 "$(field cr3)" --gva "$(field gva)" --len 4096 --kernel --read --protect --no-vma-check
"$TOOL" target pages --vm "$vm" --target 1

say "the guest runs: kvm-pfi injects a #PF at a safe entry; the guest's handler swaps the page in; the module scans it"
exec 4>&-
for _ in $(seq 100); do
	"$TOOL" target pages --vm "$vm" --target 1 --json | grep -q '"state":"resident"' && break
	sleep 0.1
done
grep guest_page_fault /tmp/vmm2.out || true
"$TOOL" target pages --vm "$vm" --target 1
say "the guest, about to finish, writes into the protected page: write-attempt"
wait "$vmm2_pid" || true
sleep 2
kill "$json_pid" 2>/dev/null || true
wait "$json_pid" 2>/dev/null || true
wait "$snap_pid" || true

say "the detections (watch --pretty printed them above), checked against where the VMM put the string"
/usr/bin/python3 - "$(field gva)" "$(field eicar_offset)" <<'PY'
import json, sys
gva, off = int(sys.argv[1]), int(sys.argv[2])
events = [json.loads(l) for l in open("/tmp/events.json")]
for e in events:
    if e.get("event") == "page-resident":
        print("page-resident, how %s; its first bytes: %s" % (e["how"],
              bytes.fromhex(e["data"])[:43].decode(errors="replace")))
dets = [e for e in events if e.get("event") == "detection"]
for d in dets:
    print("detection: rule %s at gva %#x (page offset %d, %d bytes), the page came in: %s" % (
          d["rule_name"], d["gva"], d["offset"], d["length"], d["how"]))
assert dets and min(d["gva"] for d in dets) == gva + off, "no detection at the EICAR string"
assert all(d["how"] == "injected" for d in dets)
print("OK: detected at gva %#x + %d, where the guest holds the EICAR string" % (gva, off))
for w in (e for e in events if e.get("event") == "write-attempt"):
    print("write-attempt at gva %#x: %d bytes %r" % (w["gva"], w["length"], bytes.fromhex(w["data"])))
PY

say "the page the snapshot saved, scanned again in userspace by yara-x with the same rule file"
"$TOOL" snapshot --from /tmp/snap --yara "$KVM_PFI_ROOT/scripts/demo.yar"
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
rmmod kvm_pfi
