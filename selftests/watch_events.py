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


def start_watch(count, timeout):
    """`kvm-pfi watch` for `count` events, returned once it joined the group."""
    ready = os.path.join(tempfile.mkdtemp(), "ready")
    watch = subprocess.Popen([TOOL, "watch", "--count", str(count), "--timeout", str(timeout),
                              "--ready-file", ready],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if os.path.exists(ready) or watch.poll() is not None:
            break
        time.sleep(0.1)
    return watch, os.path.exists(ready)


def finish(proc, timeout):
    """Output of `proc` once it ends (killed after `timeout` seconds)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def run_injection_test():
    """The kernel-mode injection selftest; returns (passed, its ground truth)."""
    smoke = subprocess.run([f"{TESTS}/kvm_pfi_test", "-r",
                            "global.injects_pf_for_swapped_page_kernel_mode"],
                           capture_output=True, text=True, timeout=300)
    truth = None
    for line in smoke.stdout.splitlines():
        if line.startswith("# smoke-target "):
            truth = json.loads(line[len("# smoke-target "):])
    if smoke.returncode != 0:
        print("# " + smoke.stdout[-2000:].replace("\n", "\n# "))
    return smoke.returncode == 0, truth


def page_events():
    """A swapped-out page brought back by injection, seen through `watch`:
    target-added, page-resident (with the page's bytes), target-removed."""
    watch, joined = start_watch(5, 120)
    check("page_watch_subscribed", joined, "watch never joined the group")
    passed, truth = run_injection_test()
    check("smoke_test_passed", passed)
    out, _ = finish(watch, 120)
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    by_name = {}
    for e in events:
        by_name.setdefault(e.get("event"), []).append(e)
    print("# page events: " + json.dumps([{k: v for k, v in e.items() if k != "data"}
                                         for e in events]))
    if not check("smoke_truth", truth is not None, "no smoke-target line"):
        return
    added = by_name.get("target-added", [{}])[0]
    check("target_added_event", added.get("vm_id") == truth["vm_id"]
          and added.get("target_id") == truth["target_id"]
          and added.get("gva") == truth["gva"] and added.get("len") == 4096, added)
    res = by_name.get("page-resident", [{}])[0]
    check("page_resident_event", res.get("target_id") == truth["target_id"]
          and res.get("gva") == truth["gva"] and res.get("gpa") == truth["gpa"]
          and res.get("how") == "injected" and res.get("injections") == 1
          and res.get("page_size") == 4096, {k: v for k, v in res.items() if k != "data"})
    data = res.get("data", "")
    check("page_resident_data", data == "5a" * 4096,
          f"{len(data) // 2} bytes, starting {data[:32]}")
    removed = by_name.get("target-removed", [{}])[0]
    check("target_removed_event", removed.get("target_id") == truth["target_id"], removed)


def ynl_events():
    """The kernel tree's YNL CLI decodes the family from the YAML spec alone."""
    src = os.environ.get("KVM_PFI_SRC", "")
    cli = os.path.join(src, "tools/net/ynl/pyynl/cli.py")
    if not check("ynl_available", os.path.exists(cli), f"no {cli}"):
        return
    spec = os.path.join(os.environ["KVM_PFI_ROOT"], "Documentation/netlink/specs/kvm_pfi.yaml")
    ynl = subprocess.Popen(["/usr/bin/python3", cli, "--no-schema", "--output-json",
                            "--spec", spec, "--subscribe", "events", "--sleep", "30"],
                           cwd=os.path.dirname(cli), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    # YNL has no readiness signal: give it time to join the group.
    time.sleep(8)
    passed, _ = run_injection_test()
    check("ynl_smoke_passed", passed)
    out, err = finish(ynl, 120)
    msgs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    names = [m.get("name") for m in msgs]
    print("# ynl events: " + json.dumps(names))
    check("ynl_event_names", names == ["vm-attached", "target-added", "page-resident",
                                       "target-removed", "vm-detached"], err[-500:])
    res = next((m["msg"] for m in msgs if m.get("name") == "page-resident"), {})
    check("ynl_page_resident", res.get("how") == "injected" and res.get("injections") == 1
          and res.get("page-size") == 4096 and res.get("data") == "5a" * 4096,
          {k: v for k, v in res.items() if k != "data"})


def start_vmm(exits):
    """kvm_pfi_vmm holding its guest until stdin closes; returns (proc, hello)."""
    vmm = subprocess.Popen([f"{TESTS}/kvm_pfi_vmm", str(exits)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    # The KVM selftest library prints its random seed first.
    line = vmm.stdout.readline()
    while line and not line.startswith("{"):
        line = vmm.stdout.readline()
    return vmm, json.loads(line)


def tool_targets():
    """`kvm-pfi target add/ls/pages/rm` against the module."""
    vmm, hello = start_vmm(10)
    att = run_tool("attach", "--pid", str(hello["pid"]), "--persistent", "--json")
    if not check("targets_attach", att.returncode == 0, att.stderr.strip()):
        return
    vm = str(json.loads(att.stdout.strip().splitlines()[-1])["vm_id"])
    add = run_tool("target", "add", "--vm", vm, "--cr3", "0x1000", "--gva", "0x400000",
                   "--len", "8192", "--read", "--json")
    check("target_add", add.returncode == 0, add.stderr.strip())
    tid = json.loads(add.stdout.strip().splitlines()[-1])["target_id"] if add.returncode == 0 else -1
    ls = run_tool("target", "ls", "--vm", vm, "--json")
    targets = json.loads(ls.stdout).get("targets", []) if ls.returncode == 0 else []
    check("target_ls", len(targets) == 1 and targets[0].get("target_id") == tid
          and targets[0].get("len") == 8192 and targets[0].get("gva") == 0x400000, ls.stdout)
    pages = run_tool("target", "pages", "--vm", vm, "--target", str(tid), "--json")
    plist = json.loads(pages.stdout).get("pages", []) if pages.returncode == 0 else []
    check("target_pages", [p.get("gva") for p in plist] == [0x400000, 0x401000], pages.stdout)
    bad = run_tool("target", "add", "--vm", vm, "--cr3", "0x1000", "--gva", "0x400000",
                   "--len", "4095")
    check("target_add_bad_len", bad.returncode == 1 and "Invalid argument" in bad.stderr,
          f"exit {bad.returncode}: {bad.stderr.strip()}")
    rm = run_tool("target", "rm", "--vm", vm, "--target", str(tid))
    ls = run_tool("target", "ls", "--vm", vm, "--json")
    check("target_rm", rm.returncode == 0 and ls.returncode == 0
          and json.loads(ls.stdout).get("targets") == [], rm.stderr + ls.stdout)
    run_tool("detach", "--vm", vm)
    vmm.stdin.close()
    check("targets_vmm_finished", vmm.wait(timeout=120) == 0, "VMM guest did not finish")


def main():
    vmm, hello = start_vmm(100)
    watch, joined = start_watch(2, 60)
    check("watch_subscribed", joined, "watch never joined the group")

    att = run_tool("attach", "--pid", str(hello["pid"]), "--persistent", "--json")
    check("tool_attach", att.returncode == 0, att.stderr.strip())
    vm_id = json.loads(att.stdout.strip().splitlines()[-1])["vm_id"] if att.returncode == 0 else None
    det = run_tool("detach", "--vm", str(vm_id))
    check("tool_detach", det.returncode == 0, det.stderr.strip())

    out, err = finish(watch, 60)
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

    page_events()
    ynl_events()
    tool_targets()

    print("KTAP version 1")
    print(f"1..{len(results)}")
    for i, (name, ok) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}")
    return 0 if all(ok for _, ok in results) else 1


sys.exit(main())
