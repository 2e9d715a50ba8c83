#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The kvm-pfi tool and the kernel tree's YNL CLI against real events,
checked against ground truth.

A VMM we start (kvm_pfi_vmm) holds a VM; `kvm-pfi attach --pid` attaches
it the way an operator would (pidfd_getfd), `kvm-pfi detach` detaches it.
The watcher must print exactly those two events as JSON, with the VM id
the attach returned, the VMM's PID and KVM's name of the VM. Then page
events of an injection; the tool's target commands; and the operator's
detection story end to end: `sigs load` of scripts/demo.yar, a swapped-out
page holding the EICAR test string brought back and detected where the VMM
put it, the guest's write into the protected page, `snapshot` and its
yara-x rescan, and the same events decoded by YNL from the YAML spec. And
the Linux guest commands (`profile load`, `ps`) against a guest that is
not Linux.
Prints KTAP.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from ktap import check
import ktap

TOOL = os.environ["KVM_PFI_TOOL"]
TESTS = os.environ["KVM_PFI_TESTS"]
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


def start_ynl():
    """The kernel tree's YNL CLI subscribed to the events group, or None."""
    src = os.environ.get("KVM_PFI_SRC", "")
    cli = os.path.join(src, "tools/net/ynl/pyynl/cli.py")
    if not os.path.exists(cli):
        return None
    spec = os.path.join(os.environ["KVM_PFI_ROOT"], "Documentation/netlink/specs/kvm_pfi.yaml")
    ynl = subprocess.Popen(["/usr/bin/python3", cli, "--no-schema", "--output-json",
                            "--spec", spec, "--subscribe", "events", "--sleep", "45"],
                           cwd=os.path.dirname(cli), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    # YNL has no readiness signal: wait until its generic netlink socket
    # (protocol 16, port id = its PID) shows a group membership.
    for _ in range(600):
        if ynl.poll() is not None or subscribed(ynl.pid):
            break
        time.sleep(0.1)
    return ynl


def subscribed(pid):
    """Whether process `pid` has a generic netlink socket in some group."""
    with open("/proc/net/netlink") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "16" and fields[2] == str(pid) and int(fields[3], 16) != 0:
                return True
    return False


def ynl_events():
    """The kernel tree's YNL CLI decodes the family from the YAML spec alone."""
    ynl = start_ynl()
    if not check("ynl_available", ynl is not None, "no YNL CLI in the kernel tree"):
        return
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


def start_vmm(*args):
    """kvm_pfi_vmm (arguments: exits, then its options) holding its guest
    until stdin closes; returns (proc, hello)."""
    vmm = subprocess.Popen([f"{TESTS}/kvm_pfi_vmm", *map(str, args)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    # The KVM selftest library prints its random seed first.
    line = vmm.stdout.readline()
    while line and not line.startswith("{"):
        line = vmm.stdout.readline()
    return vmm, json.loads(line)


def attach_persistent(hello):
    """`kvm-pfi attach --persistent` to the VMM of hello; returns (the tool's
    result, the VM's id or None)."""
    att = run_tool("attach", "--pid", str(hello["pid"]), "--persistent", "--json")
    vm = json.loads(att.stdout.strip().splitlines()[-1])["vm_id"] if att.returncode == 0 else None
    return att, vm


def tool_targets():
    """`kvm-pfi target add/ls/pages/rm` against the module."""
    vmm, hello = start_vmm(10)
    att, vm = attach_persistent(hello)
    if not check("targets_attach", vm is not None, att.stderr.strip()):
        return
    vm = str(vm)
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


EICAR_HEAD_LEN = 17      # X5O!P%@AP [1 byte] 4\PZX54: the rule's $head
EICAR_NAME_AT = 28       # "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in the string
EICAR_NAME_LEN = 34


def detection_story():
    """scripts/demo.yar loaded with the tool; the EICAR page of a swap-mode
    kvm_pfi_vmm brought back, detected, written to; seen by `watch`, by
    `snapshot` (and yara-x), and by YNL."""
    rules = os.path.join(os.environ["KVM_PFI_ROOT"], "scripts/demo.yar")
    snapdir = tempfile.mkdtemp()
    ynl = start_ynl()
    check("det_ynl_available", ynl is not None, "no YNL CLI in the kernel tree")
    ready = os.path.join(tempfile.mkdtemp(), "ready")
    watch = subprocess.Popen([TOOL, "watch", "--timeout", "120", "--ready-file", ready],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snap_ready = os.path.join(tempfile.mkdtemp(), "ready")
    snap = subprocess.Popen([TOOL, "snapshot", "--out", snapdir, "--count", "1", "--timeout", "120",
                             "--ready-file", snap_ready],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if os.path.exists(ready) and os.path.exists(snap_ready):
            break
        time.sleep(0.1)
    check("det_subscribed", os.path.exists(ready) and os.path.exists(snap_ready))

    load = run_tool("sigs", "load", rules, "--json")
    loaded = json.loads(load.stdout) if load.returncode == 0 else {}
    check("det_sigs_load", load.returncode == 0 and loaded.get("nr_rules") == 1,
          f"exit {load.returncode}: {load.stdout} {load.stderr}")
    info = run_tool("sigs", "info", "--json")
    info = json.loads(info.stdout) if info.returncode == 0 else {}
    check("det_sigs_info", info.get("generation") == loaded.get("generation")
          and info.get("nr_rules") == 1, info)

    vmm, hello = start_vmm(2000, 500, "swap")
    gva, eicar = hello["gva"], hello["gva"] + hello["eicar_offset"]
    _, vm = attach_persistent(hello)
    vm = 0 if vm is None else vm
    add = run_tool("target", "add", "--vm", str(vm), "--cr3", str(hello["cr3"]), "--gva", str(gva),
                   "--len", "4096", "--kernel", "--read", "--protect", "--no-vma-check", "--json")
    check("det_target_add", add.returncode == 0, add.stderr.strip())
    vmm.stdin.close()
    check("det_vmm_finished", vmm.wait(timeout=300) == 0, "VMM guest did not finish")
    time.sleep(2)
    run_tool("detach", "--vm", str(vm))
    time.sleep(1)
    watch.terminate()
    out, _ = finish(watch, 30)
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    print("# detection story: " + json.dumps([{k: v for k, v in e.items() if k != "data"}
                                             for e in events]))

    sl = [e for e in events if e.get("event") == "sigs-loaded"]
    check("det_sigs_loaded_event", len(sl) == 1 and sl[0].get("generation") == loaded.get("generation")
          and sl[0].get("nr_rules") == 1, sl)
    dets = sorted((e for e in events if e.get("event") == "detection"), key=lambda e: e["gva"])
    want = [(eicar, hello["eicar_offset"], EICAR_HEAD_LEN),
            (eicar + EICAR_NAME_AT, hello["eicar_offset"] + EICAR_NAME_AT, EICAR_NAME_LEN)]
    check("det_detections", [(d["gva"], d["offset"], d["length"]) for d in dets] == want, dets)
    res = next((e for e in events if e.get("event") == "page-resident"), {})
    check("det_detection_fields", dets and all(
        d["rule_name"] == "eicar_test_file" and d["rule_id"] == 0 and d["vm_id"] == vm
        and d["how"] == "injected" and d["injections"] == 1 and d["cr3"] == hello["cr3"]
        and d["generation"] == loaded.get("generation")
        and d["gpa"] == res.get("gpa", -1) + d["offset"] for d in dets), dets)
    wa = [e for e in events if e.get("event") == "write-attempt"]
    written = hello["write_text"].encode().hex()
    check("det_write_attempt", len(wa) == 1 and wa[0]["gva"] == gva + hello["write_offset"]
          and wa[0]["offset"] == hello["write_offset"] and wa[0]["length"] == 8
          and wa[0]["data"] == written and wa[0]["restored"] == 0
          and wa[0]["gpa"] == res.get("gpa", -1) + hello["write_offset"], wa)
    # The write touched no signature: no detection after it.
    check("det_no_detection_after_write", len(dets) == 2, len(dets))

    sout, serr = finish(snap, 60)
    check("det_snapshot_exit", snap.returncode == 0, serr.strip())
    index = [json.loads(l) for l in open(os.path.join(snapdir, "index.jsonl"))] \
        if os.path.exists(os.path.join(snapdir, "index.jsonl")) else []
    check("det_snapshot_index", len(index) == 1 and index[0].get("gva") == gva
          and index[0].get("how") == "injected", index)
    page = open(os.path.join(snapdir, index[0]["file"]), "rb").read() if index else b""
    check("det_snapshot_page", len(page) == 4096 and b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
          in page[hello["eicar_offset"]:], len(page))
    rescan = run_tool("snapshot", "--from", snapdir, "--yara", rules)
    matches = [json.loads(l) for l in rescan.stdout.splitlines() if l.startswith("{")]
    check("det_yara_rescan", rescan.returncode == 0 and matches
          and {m.get("gva") for m in matches} == {eicar, eicar + EICAR_NAME_AT}
          and all(m.get("rule") == "eicar_test_file" for m in matches),
          rescan.stdout + rescan.stderr)

    if ynl is None:
        return
    yout, yerr = finish(ynl, 120)
    msgs = [json.loads(l) for l in yout.splitlines() if l.startswith("{")]
    names = [m.get("name") for m in msgs]
    print("# ynl detection events: " + json.dumps(names))
    ydet = sorted((m["msg"] for m in msgs if m.get("name") == "detection"), key=lambda m: m["gva"])
    check("ynl_detection", [(d.get("gva"), d.get("offset"), d.get("length"), d.get("rule-name"),
                             d.get("rule-id"), d.get("how"))
                            for d in ydet] == [(g, o, n, "eicar_test_file", 0, "injected")
                                               for g, o, n in want], (ydet, yerr[-300:]))
    ywa = [m["msg"] for m in msgs if m.get("name") == "write-attempt"]
    check("ynl_write_attempt", len(ywa) == 1 and ywa[0].get("data") == written
          and ywa[0].get("restored") == 0 and ywa[0].get("offset") == hello["write_offset"], ywa)
    ysl = [m["msg"] for m in msgs if m.get("name") == "sigs-loaded"]
    check("ynl_sigs_loaded", len(ysl) == 1 and ysl[0].get("nr-rules") == 1
          and ysl[0].get("generation") == loaded.get("generation"), ysl)


def linux_guest_story():
    """`kvm-pfi profile load` and `ps` against a guest that is not Linux:
    before its vCPU ever ran the load is retried, then fails as "not up"
    (EAGAIN, status 1); once the guest runs, the fixture kernel's profile
    does not fit (ENOEXEC, status 65); the VM never gets a profile."""
    d = tempfile.mkdtemp()
    fixtures = os.path.join(os.environ["KVM_PFI_ROOT"], "rust/pfi_core/tests/fixtures")
    prof = os.path.join(d, "guest.profile")
    b = run_tool("profile", "build", "--btf", os.path.join(fixtures, "linux-7.3-btf-cut.bin"),
                 "--system-map", os.path.join(fixtures, "linux-7.3-System.map"), "-o", prof)
    check("linux_profile_build", b.returncode == 0, b.stderr.strip())
    # 3000 exits 2 ms apart: the guest runs for about 6 s once let go.
    vmm, hello = start_vmm(3000, 2000)
    att, vm = attach_persistent(hello)
    if not check("linux_attach", vm is not None, att.stderr.strip()):
        vmm.stdin.close()
        vmm.wait(timeout=120)
        return
    vm = str(vm)
    ps = run_tool("ps", "--vm", vm)
    check("linux_ps_no_profile", ps.returncode == 1 and ps.stderr.strip()
          == f"kvm-pfi: VM {vm} has no Linux profile (kvm-pfi profile load)",
          f"exit {ps.returncode}: {ps.stderr.strip()}")
    t0 = time.monotonic()
    up = run_tool("profile", "load", "--vm", vm, prof)
    took = time.monotonic() - t0
    check("linux_load_guest_not_up", up.returncode == 1 and up.stderr.strip()
          == f"kvm-pfi: no vCPU of VM {vm} seen in 64-bit kernel mode yet (is the guest up?)"
          and 9 <= took < 20, f"exit {up.returncode} after {took:.1f} s: {up.stderr.strip()}")
    vmm.stdin.close()
    time.sleep(0.5)
    fit = run_tool("profile", "load", "--vm", vm, prof, "--json")
    check("linux_load_does_not_fit", fit.returncode == 65 and fit.stdout == ""
          and fit.stderr.startswith(f"kvm-pfi: vm {vm}: profile does not fit the running guest"),
          f"exit {fit.returncode}: {fit.stderr.strip()}")
    fit = run_tool("profile", "load", "--vm", vm, prof, "--slide", "0x1e00000")
    check("linux_load_slide_does_not_fit", fit.returncode == 65
          and "not with slide 0x1e00000" in fit.stderr,
          f"exit {fit.returncode}: {fit.stderr.strip()}")
    ps = run_tool("ps", "--vm", vm, "--json")
    check("linux_ps_still_no_profile", ps.returncode == 1 and ps.stdout == ""
          and "has no Linux profile" in ps.stderr, f"exit {ps.returncode}: {ps.stderr.strip()}")
    check("linux_vmm_finished", vmm.wait(timeout=120) == 0, "VMM guest did not finish")
    run_tool("detach", "--vm", vm)
    ps = run_tool("ps", "--vm", vm)
    check("linux_ps_detached", ps.returncode == 1 and f"vm {vm} is not attached" in ps.stderr,
          f"exit {ps.returncode}: {ps.stderr.strip()}")


def tool_sigs_errors():
    """The tool's exit statuses and messages for bad rules and refused sets;
    the active set is kept."""
    d = tempfile.mkdtemp()
    bad = os.path.join(d, "bad.yar")
    with open(bad, "w") as f:
        f.write("rule ok {\n  strings:\n    $a = { 4D 5A [2-] }\n  condition:\n    any of them\n}\n")
    r = run_tool("sigs", "load", bad)
    check("sigs_bad_rule_file", r.returncode == 65 and f"{bad}:3:" in r.stderr,
          f"exit {r.returncode}: {r.stderr.strip()}")
    before = json.loads(run_tool("sigs", "info", "--json").stdout or "{}")
    blob = os.path.join(d, "set.bin")
    c = run_tool("sigs", "compile", os.path.join(os.environ["KVM_PFI_ROOT"], "scripts/demo.yar"),
                 "-o", blob)
    data = open(blob, "rb").read() if c.returncode == 0 else b""
    check("sigs_compile", len(data) > 32, c.stderr)
    cut = os.path.join(d, "cut.bin")
    with open(cut, "wb") as f:
        f.write(data[:-1])
    r = run_tool("sigs", "load", "--compiled", cut)
    check("sigs_truncated_refused", r.returncode == 65 and "EBADMSG" in r.stderr,
          f"exit {r.returncode}: {r.stderr.strip()}")
    after = json.loads(run_tool("sigs", "info", "--json").stdout or "{}")
    check("sigs_refused_keeps_set", after.get("generation") == before.get("generation")
          and after.get("nr_rules") == before.get("nr_rules"), (before, after))
    r = run_tool("sigs", "load", os.path.join(d, "missing.yar"))
    check("sigs_missing_file", r.returncode == 66, f"exit {r.returncode}: {r.stderr.strip()}")
    r = run_tool("sigs", "clear")
    after = json.loads(run_tool("sigs", "info", "--json").stdout or "{}")
    check("sigs_clear", r.returncode == 0 and after.get("nr_rules") == 0, after)


def kernel_warnings():
    """The kernel's own WARNING/BUG lines in its log so far."""
    log = subprocess.run(["dmesg", "-k"], capture_output=True, text=True).stdout
    return [l for l in log.splitlines() if "WARNING:" in l or "BUG:" in l]


def vmm_gone_story():
    """A persistent attachment outlives its VMM: the VM's report work still
    runs (a signature load queues it for every attached VM) and finds the
    VMM's address space gone. It must then leave that address space alone:
    a report work that released an mm it never borrowed printed a
    kthread_unuse_mm WARNING and took the dead mm's user count below zero.
    The kernel log stays clean, and the VM can still be detached."""
    before = kernel_warnings()
    vmm, hello = start_vmm(10)
    att, vm = attach_persistent(hello)
    if not check("gone_attach", vm is not None, att.stderr.strip()):
        return
    vm = str(vm)
    add = run_tool("target", "add", "--vm", vm, "--cr3", "0x1000", "--gva", "0x400000",
                   "--len", "8192", "--read")
    check("gone_target_add", add.returncode == 0, add.stderr.strip())
    vmm.stdin.close()
    check("gone_vmm_finished", vmm.wait(timeout=120) == 0, "VMM guest did not finish")
    rules = os.path.join(os.environ["KVM_PFI_ROOT"], "scripts/demo.yar")
    loads = []
    for _ in range(3):
        loads.append(run_tool("sigs", "load", rules).returncode)
        time.sleep(1)
    check("gone_sigs_load", loads == [0, 0, 0], loads)
    new = [l for l in kernel_warnings() if l not in before]
    check("gone_report_work_clean", not new, new)
    # The VM may have gone with its VMM's last reference (ENOENT): either
    # way the module answers and holds nothing of it.
    det = run_tool("detach", "--vm", vm)
    check("gone_detach", det.returncode == 0 or "No such file" in det.stderr, det.stderr.strip())


def main():
    vmm, hello = start_vmm(100)
    watch, joined = start_watch(2, 60)
    check("watch_subscribed", joined, "watch never joined the group")

    att, vm_id = attach_persistent(hello)
    check("tool_attach", att.returncode == 0, att.stderr.strip())
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
    linux_guest_story()
    detection_story()
    vmm_gone_story()
    tool_sigs_errors()

    return ktap.report()


sys.exit(main())
