#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""`kvm-pfi watch` against real events, checked against ground truth.

A VMM we start (kvm_pfi_vmm) holds a VM; `kvm-pfi attach --pid` attaches
it the way an operator would (pidfd_getfd), `kvm-pfi detach` detaches it.
The watcher must print exactly those two events as JSON, with the VM id
the attach returned, the VMM's PID and KVM's name of the VM. Prints KTAP.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

TOOL = os.environ["KVM_PFI_TOOL"]
TESTS = os.environ["KVM_PFI_TESTS"]
results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    if not cond:
        print(f"# {name}: {detail}")
    return cond


def run_tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=60)


def main():
    vmm = subprocess.Popen([f"{TESTS}/kvm_pfi_vmm", "100"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    # The KVM selftest library prints its random seed first.
    line = vmm.stdout.readline()
    while line and not line.startswith("{"):
        line = vmm.stdout.readline()
    hello = json.loads(line)
    ready = os.path.join(tempfile.mkdtemp(), "ready")
    watch = subprocess.Popen([TOOL, "watch", "--count", "2", "--timeout", "60",
                              "--ready-file", ready],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if os.path.exists(ready) or watch.poll() is not None:
            break
        time.sleep(0.1)
    check("watch_subscribed", os.path.exists(ready), "watch never joined the group")

    att = run_tool("attach", "--pid", str(hello["pid"]), "--persistent", "--json")
    check("tool_attach", att.returncode == 0, att.stderr.strip())
    vm_id = json.loads(att.stdout.strip().splitlines()[-1])["vm_id"] if att.returncode == 0 else None
    det = run_tool("detach", "--vm", str(vm_id))
    check("tool_detach", det.returncode == 0, det.stderr.strip())

    try:
        out, err = watch.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        watch.kill()
        out, err = watch.communicate()
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            check("watch_output_is_json", False, repr(line))
    print("# events: " + json.dumps(events))
    check("watch_exit_status", watch.returncode == 0, f"exit {watch.returncode}: {err.strip()}")
    check("two_events", len(events) == 2, f"{len(events)} events")
    if len(events) == 2:
        a, d = events
        check("attached_event", a.get("event") == "vm-attached" and a.get("vm_id") == vm_id
              and a.get("vmm_pid") == hello["pid"]
              and a.get("stats_id") == f"kvm-{hello['pid']}"
              and a.get("attach_flags") == 1, a)
        check("detached_event", d.get("event") == "vm-detached" and d.get("vm_id") == vm_id
              and d.get("detach_reason") == "requested", d)

    vmm.stdin.close()
    check("vmm_finished", vmm.wait(timeout=120) == 0, "VMM guest did not finish")

    print("KTAP version 1")
    print(f"1..{len(results)}")
    for i, (name, ok) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}")
    return 0 if all(ok for _, ok in results) else 1


sys.exit(main())
