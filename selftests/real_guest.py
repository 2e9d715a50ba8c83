#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""kvm-pfi against a real Linux guest: a small Linux kernel
(scripts/guest-kernel.sh) with zram swap, booted by QEMU under KVM inside
the test VM, runs selftests/guest/pfi_guest_swap.c. Prints KTAP.

  real_guest.py --boots N   boot the guest N times to its /init and back,
                            report wall and guest time of each boot
  real_guest.py [CASE ...]  the end-to-end cases (default: all)

Ground truth is what the guest program wrote and reports about itself
(its "PFI {json}" lines on the console: where its pages are, that
pagemap shows them swapped out, which of them are present before it
touches them, /proc/vmstat's pswpin), and what the VMM (QEMU, through its
QMP monitor) shows of the guest: the vCPU's CR3 and CPL, and guest
physical memory, in which this script walks the page tables itself. The
module's events are checked against those, never against themselves.

The guest program cannot read its CR3 from user mode. The test samples
the vCPU's registers through QEMU's monitor while the program spins in
user mode, and takes a CR3 as the program's only when its own walk of the
program's anchor page (a resident page whose GVA and physical frame the
program reports from /proc/self/pagemap) gives that frame.

Environment: KVM_PFI_TOOL, KVM_PFI_ROOT, KVM_PFI_GUEST_KERNEL,
KVM_PFI_GUEST_INITRD; kvm_amd and kvm_pfi loaded.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOOL = os.environ.get("KVM_PFI_TOOL", "kvm-pfi")
ROOT = os.environ.get("KVM_PFI_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNEL = os.environ.get("KVM_PFI_GUEST_KERNEL", "")
INITRD = os.environ.get("KVM_PFI_GUEST_INITRD", "")
QEMU = os.environ.get("KVM_PFI_NESTED_QEMU", "/usr/bin/qemu-system-x86_64")
# A boot takes 1.5 to 4 minutes here, depending on the load; one that has
# not powered off after this long has hung.
BOOT_TIMEOUT = float(os.environ.get("KVM_PFI_GUEST_BOOT_TIMEOUT", "600"))
PAGE = 4096
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# The console lines that mean the guest kernel or the program went wrong.
BAD_CONSOLE = re.compile(r"WARNING:|BUG:|Oops|general protection|segfault|Kernel panic|"
                         r"Call Trace|traps:|unhandled|soft lockup|hung_task")

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    if not cond:
        print(f"# {name}: {str(detail)[:1500]}")
    return bool(cond)


def xfail(name, cond, reason, detail=""):
    """A known failure: reported `not ok ... # TODO reason` while it fails,
    and as a plain failure once it passes (so the test is updated)."""
    results.append((name, None if not cond else False, reason))
    if cond:
        print(f"# {name}: now passes; drop its TODO ({reason})")
    else:
        print(f"# {name}: expected failure: {reason}; {str(detail)[:800]}")


def fill(i):
    """Page i of the guest program (its fill())."""
    s = (0x9E3779B97F4A7C15 * (i + 1)) & (2**64 - 1)
    out = bytearray(PAGE)
    for j in range(PAGE):
        s ^= (s << 13) & (2**64 - 1)
        s ^= s >> 7
        s ^= (s << 17) & (2**64 - 1)
        out[j] = s & 0xFF
    marker = b"KVMPFI-PAGE-%03d" % i
    out[:len(marker) + 1] = marker + b"\0"
    if i == 5:
        out[1000:1000 + len(EICAR)] = EICAR
    return bytes(out)


class Qmp:
    """QEMU's QMP monitor; `hmp()` runs a human monitor command."""

    def __init__(self, path, proc, timeout=120):
        end = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"QEMU exited ({proc.returncode}): "
                                       + proc.stdout.read().decode(errors="replace")[-2000:])
                if time.time() > end:
                    raise
                time.sleep(0.1)
        self.f = self.sock.makefile("rw")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        msg = self._read()
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def regs(self):
        text = self.hmp("info registers")
        r = {k: int(v, 16) for k, v in re.findall(r"\b(CR[0-4]|RIP)=([0-9a-f]+)", text)}
        m = re.search(r"CPL=(\d)", text)
        r["CPL"] = int(m.group(1)) if m else -1
        return r

    def phys_u64(self, addr, n=1):
        text = self.hmp(f"xp /{n}gx {addr:#x}")
        return [int(v, 16) for v in re.findall(r"0x([0-9a-f]{16})", text)][:n]

    def phys_bytes(self, addr, n):
        words = self.phys_u64(addr, (n + 7) // 8)
        return b"".join(w.to_bytes(8, "little") for w in words)[:n]

    def walk(self, cr3, la57, gva):
        """(present, leaf entry, 4 KiB frame address) of gva, walked here."""
        table = cr3 & 0x000FFFFFFFFFF000
        levels = [48, 39, 30, 21, 12] if la57 else [39, 30, 21, 12]
        for shift in levels:
            e = self.phys_u64(table + ((gva >> shift) & 511) * 8)[0]
            if not e & 1:
                return False, e, None
            if shift in (30, 21) and e & 0x80:
                base = e & 0x000FFFFFFFFFF000 & ~((1 << shift) - 1)
                return True, e, base + (gva & ((1 << shift) - 1) & ~0xFFF)
            table = e & 0x000FFFFFFFFFF000
        return True, e, table


class Guest:
    """One boot of the nested guest, its console, control line and monitor."""

    def __init__(self, procs=0, mem="256M"):
        self.dir = tempfile.mkdtemp(prefix="pfi-guest-")
        self.console = os.path.join(self.dir, "console")
        ctl = os.path.join(self.dir, "ctl")
        qmp = os.path.join(self.dir, "qmp")
        # loglevel=5: the boot prints warnings and worse only (/init turns
        # the rest back on): each console byte costs the nested guest
        # several port-I/O exits, and the full boot log doubled the guest's
        # time to /init (Documentation/testing.rst).
        append = ("console=ttyS0 earlyprintk=serial,ttyS0 loglevel=5 panic=-1 nokaslr no_timer_check "
                  "tsc=reliable random.trust_cpu=on" + (f" pfi.procs={procs}" if procs else ""))
        self.start = time.time()
        self.qemu = subprocess.Popen(
            [QEMU, "-M", "pc", "-accel", "kvm", "-cpu", "host,-xsave", "-m", mem, "-smp", "1",
             "-kernel", KERNEL, "-initrd", INITRD, "-append", append,
             "-display", "none", "-nodefaults", "-no-reboot",
             "-serial", f"file:{self.console}",
             "-serial", f"unix:{ctl},server=on,wait=off",
             "-qmp", f"unix:{qmp},server=on,wait=off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # QEMU itself starts slowly in the test VM (up to 100 s seen, its
        # files read over 9p the first time).
        self.mon = Qmp(qmp, self.qemu, timeout=BOOT_TIMEOUT)
        # QEMU is up (its monitor answers): the rest is firmware and guest.
        self.qmp_s = time.time() - self.start
        for _ in range(300):
            try:
                self.ctl = socket.socket(socket.AF_UNIX)
                self.ctl.connect(ctl)
                break
            except OSError:
                time.sleep(0.1)

    def text(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def reports(self):
        out = []
        for line in self.text().splitlines():
            i = line.find("PFI {")
            if i >= 0:
                try:
                    out.append(json.loads(line[i + 4:]))
                except ValueError:
                    pass
        return out

    def wait_for(self, pred, timeout):
        """The first report matching pred, or None after timeout s / QEMU exit."""
        end = time.time() + timeout
        while time.time() < end:
            for r in self.reports():
                if pred(r):
                    return r
            if self.qemu.poll() is not None:
                return None
            time.sleep(0.2)
        return None

    def send(self, line):
        self.ctl.sendall((line + "\n").encode())

    def stop(self, timeout=300):
        try:
            self.qemu.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.qemu.kill()
            self.qemu.wait()
        return self.qemu.returncode


def boot_once(i):
    """One boot to /init and back. Returns (ok, phases) with phases the
    wall seconds from starting QEMU to: its monitor answering ("qemu"), the
    guest kernel's first console line ("kernel"), /init's first line
    ("init"), QEMU's exit ("total"); and the guest's uptime at /init
    ("uptime"). A boot that fails prints its whole console."""
    g = Guest()
    ph = {"qemu": g.qmp_s}
    end = time.time() + BOOT_TIMEOUT
    while time.time() < end and g.qemu.poll() is None:
        text = g.text()
        if "kernel" not in ph and "Linux version" in text:
            ph["kernel"] = time.time() - g.start
        m = re.search(r"INIT: up ([0-9.]+)", text)
        if m and "init" not in ph:
            ph["init"], ph["uptime"] = time.time() - g.start, float(m.group(1))
        time.sleep(0.1)
    hung = g.qemu.poll() is None
    if hung:
        g.qemu.kill()
    g.qemu.wait()
    ph["total"] = time.time() - g.start
    text = g.text()
    bad = [l for l in text.splitlines() if BAD_CONSOLE.search(l)]
    ok = not hung and "init" in ph and "INIT: done" in text and not bad
    if not ok:
        why = "hung (killed after %.0f s)" % BOOT_TIMEOUT if hung else "bad console" if bad else "no INIT: done"
        print(f"# boot {i + 1} failed: {why}; its console:\n# " + "\n# ".join(text.splitlines()))
    return ok, ph


def spread(xs):
    xs = sorted(xs)
    return f"{xs[0]:.1f}/{xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2:.1f}/{xs[-1]:.1f}"


def boots(n):
    """n consecutive boots; prints each one's figures, then min/median/max."""
    done = []
    for i in range(n):
        ok, ph = boot_once(i)
        check(f"boot_{i + 1}", ok, ph)
        print(f"# boot {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in ph.items())
              + " s (wall from QEMU's start; uptime: guest time at /init)")
        if ok:
            done.append(ph)
    if done:
        print(f"# boots: {len(done)}/{n} clean; min/median/max s: "
              + ", ".join(f"{k} {spread([d[k] for d in done])}"
                          for k in ("qemu", "kernel", "init", "uptime", "total") if all(k in d for d in done)))


class Watch:
    """`kvm-pfi watch` in the background; events collected in a list."""

    def __init__(self):
        ready = os.path.join(tempfile.mkdtemp(), "ready")
        self.p = subprocess.Popen([TOOL, "watch", "--timeout", "900", "--ready-file", ready],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        for _ in range(300):
            if os.path.exists(ready) or self.p.poll() is not None:
                break
            time.sleep(0.1)
        self.ready = os.path.exists(ready)

    def _read(self):
        for line in self.p.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def of(self, name, tid=None):
        return [e for e in list(self.events) if e.get("event") == name
                and (tid is None or e.get("target_id") == tid)]

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def run_tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=120)


def tool_json(*args):
    r = run_tool(*args, "--json")
    if r.returncode != 0:
        raise RuntimeError(f"kvm-pfi {' '.join(args)}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def find_cr3s(g, workers, timeout=120):
    """worker -> CR3, from the vCPU's registers at CPL 3, confirmed by a walk
    of the worker's anchor page to the frame the worker reported."""
    found = {}
    end = time.time() + timeout
    samples = 0
    while time.time() < end and len(found) < len(workers):
        r = g.mon.regs()
        samples += 1
        if r["CPL"] != 3:
            continue
        cr3 = r["CR3"] & 0x000FFFFFFFFFF000
        if cr3 in found.values():
            continue
        la57 = bool(r["CR4"] & (1 << 12))
        for w in workers:
            if w["worker"] in found:
                continue
            present, _, frame = g.mon.walk(cr3, la57, w["anchor_gva"])
            if present and frame == w["anchor_pfn"] * PAGE:
                found[w["worker"]] = cr3
                g.la57 = la57
    print(f"# CR3 of {len(found)}/{len(workers)} workers after {samples} register samples: "
          + json.dumps({k: hex(v) for k, v in found.items()}))
    return found


def readonly_pass(g, cr3, gva, n):
    """What a memory-dump tool gets without injection: pages present now."""
    return sum(1 for i in range(n) if g.mon.walk(cr3, g.la57, gva + i * PAGE)[0])


def boot_for_test(procs, profile=True):
    """Boots the guest with `procs` workers and attaches it; with `profile`,
    loads the guest's profile too (check linux_profile_loaded)."""
    g = Guest(procs=procs)
    g.la57 = False
    workers = []
    for k in range(procs):
        w = g.wait_for(lambda r, k=k: r.get("worker") == k and "anchor_gva" in r, BOOT_TIMEOUT)
        workers.append(w)
    print(f"# guest: QEMU up after {g.qmp_s:.1f} s, the program's first report after "
          f"{time.time() - g.start:.1f} s")
    if not check("guest_program_started", all(workers),
                 "\n# ".join(g.text().splitlines()[-30:])):
        g.qemu.kill()
        return g, None, None
    for w in workers:
        check(f"worker{w['worker']}_swapped_out", w["swapped"] == w["pages"] and w["none_swapped"] == 1,
              w)
    att = tool_json("attach", "--pid", str(g.qemu.pid), "--persistent")
    if profile and not load_profile(g, att["vm_id"]):
        g.qemu.kill()
        return g, None, None
    return g, workers, att["vm_id"]


def finish_guest(g, vm, workers, strict=True):
    """Let the workers verify, then the guest powers off; returns the verify
    reports. strict: every worker must end well and no segfault be logged."""
    out = {}
    for w in workers:
        k = w["worker"]
        g.send(f"verify {k}")
        out[k] = g.wait_for(lambda r, k=k: r.get("worker") == k and ("verify" in r or "exited" in r), 120)
    done = g.wait_for(lambda r: "done" in r, 120)
    if strict:
        check("guest_program_done", done is not None and done.get("failed") == 0, done)
    rc = g.stop()
    check("guest_powered_off", rc == 0 and "INIT: done" in g.text(), f"qemu status {rc}")
    bad = [l for l in g.text().splitlines() if BAD_CONSOLE.search(l)
           and (strict or "segfault" not in l)]
    check("guest_console_clean", not bad, bad[:10])
    if vm is not None:
        run_tool("detach", "--vm", str(vm))
    return out


def wait_resident(watch, tid, n, timeout):
    end = time.time() + timeout
    while time.time() < end:
        done = {e["gva"] for e in watch.of("page-resident", tid)} | \
               {e["gva"] for e in watch.of("page-failed", tid)}
        if len(done) >= n:
            break
        time.sleep(0.5)
    return {e["gva"]: e for e in watch.of("page-resident", tid)}


def wait_settled(watch, tid, n, timeout):
    """gva -> the page's page-resident or page-failed event, once n pages
    have one (or after timeout s)."""
    end = time.time() + timeout
    while True:
        ev = {e["gva"]: e for e in watch.of("page-resident", tid) + watch.of("page-failed", tid)}
        if len(ev) >= n or time.time() > end:
            return ev
        time.sleep(0.5)


def boot_one_worker(prefix="", profile=True):
    """Boots the guest with one worker and finds the worker's CR3 (check
    <prefix>cr3_found). Returns (guest, workers, vm id, cr3), or None when
    either failed (the guest is then stopped)."""
    g, workers, vm = boot_for_test(1, profile)
    if not workers:
        return None
    cr3 = find_cr3s(g, workers).get(0)
    if not check(f"{prefix}cr3_found", cr3 is not None):
        g.qemu.kill()
        return None
    return g, workers, vm, cr3


def case_swapped_pages():
    """The main case: N swapped pages of one process come back, with their
    markers; the signature page is detected; the coverage line."""
    booted = boot_one_worker("", profile=False)
    if not booted:
        return
    g, workers, vm, cr3 = booted
    w = workers[0]
    n, gva = w["pages"], w["gva"]
    ro = readonly_pass(g, cr3, gva, n)
    if not load_profile_refusals_first(g, vm):
        g.qemu.kill()
        return
    watch = Watch()
    check("watch_subscribed", watch.ready)
    tool_json("sigs", "load", os.path.join(ROOT, "scripts/demo.yar"))
    add = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3), "--gva", hex(gva),
                    "--len", str(n * PAGE), "--read")
    tid = add["target_id"]
    t0 = time.time()
    res = wait_resident(watch, tid, n, 300)
    print(f"# {len(res)}/{n} pages resident after {time.time() - t0:.1f} s")
    # Every page back by injection, its delivered bytes what the guest wrote.
    good = 0
    for i in range(n):
        e = res.get(gva + i * PAGE, {})
        data = bytes.fromhex(e.get("data", ""))
        if e.get("how") == "injected" and data == fill(i):
            good += 1
        else:
            print(f"# page {i}: how {e.get('how')}, {len(data)} bytes, starts {data[:16]!r}")
    check("pages_back_with_contents", good == n, f"{good}/{n}")
    # The guest's page tables, walked here: each page present, its frame the
    # event's GPA, the marker there.
    mapped = 0
    for i in range(n):
        present, _, frame = g.mon.walk(cr3, g.la57, gva + i * PAGE)
        e = res.get(gva + i * PAGE, {})
        if present and frame == e.get("gpa") and g.mon.phys_bytes(frame, 16) == fill(i)[:16]:
            mapped += 1
    check("pages_mapped_by_guest_with_marker", mapped == n, f"{mapped}/{n}")
    dets = watch.of("detection", tid)
    sig = gva + w["sig_page"] * PAGE + w["sig_offset"]
    want = sorted([(sig, w["sig_page"]), (sig + 28, w["sig_page"])])
    check("signature_detected", sorted((d["gva"], (d["gva"] - gva) // PAGE) for d in dets) == want
          and all(d.get("how") == "injected" for d in dets), dets)
    check_linux_processes(g, vm, w, cr3, watch)
    check_linux_vmas(g, vm, w)
    watch.stop()
    rep = finish_guest(g, vm, workers)[0] or {}
    check("guest_verified_pages", rep.get("verify") == "ok", rep)
    injected = rep.get("present_before_touch", -1)
    check("guest_saw_pages_present", injected == good, f"guest {injected}, events {good}")
    dpswpin = rep.get("pswpin", 0) - w["pswpin"]
    check("guest_pswpin_rose", dpswpin >= good, f"pswpin +{dpswpin}, injected {good}")
    print(f"# injections per page: {[res.get(gva + i * PAGE, {}).get('injections') for i in range(n)]}")
    print(f"coverage injected {max(0, min(good, mapped, injected))}/{n} read-only {ro}/{n}")


def as_int(v):
    """An address or count from the tool's JSON: a number or a hex string."""
    return int(v, 0) if isinstance(v, str) else int(v)


def guest_ps(g):
    """The guest's processes as its procfs says: pid -> (ppid, comm, exe)."""
    n0 = len(g.reports())
    g.send("ps 0")
    done = g.wait_for(lambda r: "ps_done" in r and g.reports().index(r) >= n0, 60)
    reps = g.reports()[n0:]
    ps = {r["ps_pid"]: (r["ppid"], r["comm"], r["exe"]) for r in reps if "ps_pid" in r}
    return ps if done and len(ps) == done["ps_done"] else None


def comm_matches(walked, procfs):
    """The kernel's comm is 15 bytes and a NUL; procfs shows a kernel
    thread's full name and a workqueue worker's work after +/-
    (Documentation/guest-linux.rst)."""
    return walked == procfs[:15] or (procfs.startswith(walked) and procfs[len(walked):][:1] in ("+", "-"))


def module_ps(vm):
    out = tool_json("ps", "--vm", str(vm))
    procs = out["processes"] if isinstance(out, dict) else out
    return {p["pid"]: p for p in procs}, out


def build_profile(g, prefix=""):
    """The guest kernel's profile, from its BTF and System.map as a user
    makes one; its path, or None (check <prefix>linux_profile_built)."""
    btf = os.environ.get("KVM_PFI_GUEST_BTF", "")
    smap = os.environ.get("KVM_PFI_GUEST_SYSTEM_MAP", "")
    if not check(f"{prefix}linux_profile_inputs", os.path.exists(btf) and os.path.exists(smap),
                 f"{btf!r} {smap!r}"):
        return None
    prof = os.path.join(g.dir, "guest.profile")
    r = run_tool("profile", "build", "--btf", btf, "--system-map", smap, "-o", prof)
    return prof if check(f"{prefix}linux_profile_built", r.returncode == 0, r.stderr) else None


def load_profile(g, vm, prefix=""):
    """Loads the guest's profile into the module: user pages get faults
    only once it is (their VMAs are checked). Returns whether it loaded."""
    prof = build_profile(g, prefix)
    if prof is None:
        return False
    r = run_tool("profile", "load", "--vm", str(vm), prof)
    return check(f"{prefix}linux_profile_loaded", r.returncode == 0, r.stderr)


def load_profile_refusals_first(g, vm):
    """Profiles that do not fit are refused (the VM has none yet), then the
    guest's own loads: the slide found, the processes counted."""
    prof = build_profile(g)
    if prof is None:
        return False
    text = open(prof).read()
    # Refused: comm 8 bytes off, and a slide that is not the guest's.
    m = re.search(r"^field task_struct\.comm (\d+) 16", text, re.M)
    bad = os.path.join(g.dir, "bad.profile")
    with open(bad, "w") as f:
        f.write(text.replace(m.group(0), f"field task_struct.comm {int(m.group(1)) + 8} 16"))
    r1 = run_tool("profile", "load", "--vm", str(vm), bad)
    r2 = run_tool("profile", "load", "--vm", str(vm), "--slide", "0x200000", prof)
    r3 = run_tool("ps", "--vm", str(vm))
    check("linux_bad_profiles_refused", r1.returncode != 0 and "does not fit" in r1.stderr
          and r2.returncode != 0 and "does not fit" in r2.stderr and r3.returncode != 0,
          [r1.returncode, r1.stderr, r2.returncode, r2.stderr, r3.returncode, r3.stderr])
    memory_profile_matches_files(g, vm, text)
    # Loaded as made from the guest's memory alone (no file).
    t0 = time.time()
    loaded = tool_json("profile", "load", "--vm", str(vm))
    print(f"# profile made from the guest's memory and loaded in {time.time() - t0:.1f} s: {loaded}")
    # The guest boots with nokaslr: the slide the module finds is 0.
    return check("linux_profile_loaded", as_int(loaded["slide"]) == 0 and as_int(loaded["nr_processes"]) > 1,
                 loaded)


def memory_profile_matches_files(g, vm, text):
    """The profile made from the running guest with nothing but the VM
    (its BTF and kallsyms tables, read through the module) is the one its
    files give (no KASLR: run-time addresses are the link-time ones), and
    every symbol of the kallsyms tables found in its memory is a line of
    its System.map (address, type and name)."""
    mem = os.path.join(g.dir, "memory.profile")
    t0 = time.time()
    r = run_tool("profile", "build", "--vm", str(vm), "-o", mem)
    print(f"# profile build --vm {vm}: {time.time() - t0:.1f} s, {r.stdout.strip()} {r.stderr.strip()}")
    got = open(mem).read() if r.returncode == 0 else ""
    diff = [l for l in got.splitlines() if l not in text.splitlines()]
    check("linux_profile_from_guest_memory", r.returncode == 0 and got == text,
          [r.returncode, r.stderr, diff[:5]])
    r = run_tool("profile", "kallsyms", "--vm", str(vm))
    lines = r.stdout.splitlines() if r.returncode == 0 else []
    smap = set(open(os.environ["KVM_PFI_GUEST_SYSTEM_MAP"]).read().splitlines())
    missing = [l for l in lines if l not in smap]
    print(f"# kallsyms in the guest's memory: {len(lines)} symbols, {len(missing)} not in System.map")
    check("linux_kallsyms_from_guest_memory", r.returncode == 0 and len(lines) > 1000 and not missing
          and any(l.endswith(" D init_task") or l.endswith(" d init_task") for l in lines),
          [r.returncode, r.stderr[-300:], missing[:5]])


def check_linux_processes(g, vm, w, cr3, watch):
    """The module's own walk of the guest kernel's task list (the profile
    loaded) against the guest's procfs, the worker's CR3 the test found,
    and a process the guest starts and ends: process-start and
    process-exit."""
    # procfs between two module listings: a process in both listings and in
    # procfs is compared; one that came or went in between is left out.
    before, _ = module_ps(vm)
    ps = guest_ps(g)
    time.sleep(2.5)
    after, counts = module_ps(vm)
    if not check("linux_guest_ps", ps is not None):
        return
    stable = {pid for pid in ps if pid in before and pid in after}
    found = 0
    for pid in sorted(stable):
        m, (ppid, comm, exe) = after[pid], ps[pid]
        if m["ppid"] == ppid and comm_matches(m["comm"], comm) and m["exe"] == exe:
            found += 1
        else:
            print(f"# pid {pid}: procfs ppid {ppid} comm {comm!r} exe {exe!r}, walked {m}")
    # init_task (pid 0, the idle task) is first on the task list and not in
    # /proc; any other walked both times but not in procfs is made up.
    check("linux_init_task_first", next(iter(after), None) == 0 and after[0]["comm"] == "swapper/0",
          list(after.items())[:1])
    extra = sorted(set(before) & set(after) - set(ps) - {0})
    walks = counts.get("walks") if isinstance(counts, dict) else None
    print(f"processes found {found}/{len(stable)} ({len(ps) - len(stable)} came or went during the "
          f"comparison; module walks {walks})")
    check("linux_processes_match_procfs", found == len(stable) and len(stable) >= len(ps) - 2 and not extra,
          f"found {found}/{len(stable)} of {len(ps)}, not in procfs {extra}")
    wp = after.get(w["pid"], {})
    check("linux_worker_cr3", as_int(wp.get("cr3", 0)) == cr3, f"walked {wp}, found {cr3:#x}")
    # A rule by name before the process exists: its stack becomes targets.
    r = run_tool("target", "add", "--vm", str(vm), "--process", "sleep", "--region", "stack", "--read", "--json")
    rule = json.loads(r.stdout.strip().splitlines()[-1])["rule_id"] if r.returncode == 0 else None
    check("linux_rule_added", rule is not None, [r.returncode, r.stderr])
    # A process started now: process-start with its pid, parent, comm and
    # executable; its end: process-exit.
    n0 = len(g.reports())
    g.send("spawn 0")
    sp = g.wait_for(lambda r: "spawned" in r and g.reports().index(r) >= n0, 60)
    if not check("linux_guest_spawned", sp is not None):
        return
    pid = sp["spawned"]
    parent = ps.get(w["pid"], (None,))[0]
    end = time.time() + 30
    start = []
    while time.time() < end and not start:
        start = [e for e in watch.of("process-start") if e.get("pid") == pid]
        time.sleep(0.5)
    check("linux_process_start_event", start and start[0].get("comm") == "sleep"
          and start[0].get("exe") == "/bin/busybox" and start[0].get("ppid") == parent
          and start[0].get("vm_id") == vm and as_int(start[0].get("cr3", 0)) != 0,
          f"{start} (parent {parent})")
    if start:
        print(f"# process-start {time.time() - (end - 30):.1f} s after the spawn: {start[0]}")
    if rule is not None:
        check_rule_targets(g, vm, rule, start[0] if start else {}, watch)
    g.send("reap 0")
    end = time.time() + 30
    gone = []
    while time.time() < end and not gone:
        gone = [e for e in watch.of("process-exit") if e.get("pid") == pid]
        time.sleep(0.5)
    check("linux_process_exit_event", gone and gone[0].get("comm") == "sleep", gone)
    if rule is not None:
        check_rule_after_exit(vm, rule, watch)


def rule_targets(vm, rule):
    """The targets rule `rule` made (kvm-pfi target ls --json)."""
    r = run_tool("target", "ls", "--vm", str(vm), "--json")
    if r.returncode != 0:
        return None
    return [t for t in json.loads(r.stdout.strip().splitlines()[-1])["targets"] if t["rule_id"] == rule]


def check_rule_targets(g, vm, rule, start, watch):
    """The rule `--process sleep --region stack`, added before the process
    started: once the module saw it, the rule's targets are exactly the
    [stack] line of the process's /proc/PID/maps in the guest, in its
    address space (the cr3 of its process-start), and each page of the
    stack is reported resident with the bytes the guest holds there (a
    stack page the guest has not touched has no entry: it fails as
    unmapped, never with a fault injected)."""
    cr3 = as_int(start.get("cr3", 0))
    end = time.time() + 20
    ts = []
    while time.time() < end and not ts:
        ts = rule_targets(vm, rule) or []
        time.sleep(0.5)
    maps = guest_maps(g, "spawnmaps 0") or []
    stack = [l for l in maps if l["name"] == "[stack]"]
    covered = sorted((t["gva"], t["gva"] + t["len"]) for t in ts)
    want = [(l["start"], l["end"]) for l in stack]
    # Pieces of one VMA are contiguous: merge them to compare.
    merged = []
    for s, e in covered:
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    print(f"# rule {rule}: targets {[(hex(s), hex(e)) for s, e in covered]}, procfs [stack] "
          f"{[(hex(s), hex(e)) for s, e in want]}")
    check("linux_rule_targets_are_the_stack", ts and merged == want
          and all(as_int(t["cr3"]) == cr3 for t in ts), f"{ts} vs {stack} (cr3 {cr3:#x})")
    # Each page settles at its first walk unless swapped out: resident, or
    # (never touched: an empty entry in an anonymous mapping) failed as
    # unmapped with no fault; a swapped one waits for sleep to run in user
    # mode. Then the events must say the same.
    time.sleep(3)
    states = [p for t in ts for p in tool_json("target", "pages", "--vm", str(vm), "--target",
                                                 str(t["target_id"])).get("pages", [])]
    ids = {t["target_id"] for t in ts}
    resident = {e["gva"]: e for e in watch.of("page-resident") if e.get("target_id") in ids}
    bad = [p for p in states if not (p["state"] == "resident" and p["gva"] in resident
                                     or p["state"] == "failed" and p["fail_reason"] == "unmapped"
                                     and p["injections"] == 0
                                     or p["state"] == "waiting")]
    print(f"# rule {rule}: {len(states)} stack pages: {len(resident)} resident, "
          f"{sum(p['state'] == 'failed' for p in states)} never touched, "
          f"{sum(p['state'] == 'waiting' for p in states)} swapped")
    # The top of the stack holds the process's argv and environment.
    top = resident.get(max(resident, default=0), {})
    data = bytes.fromhex(top.get("data", ""))
    check("linux_rule_stack_pages_settled", states and not bad and b"sleep\x00600\x00" in data,
          f"bad {bad}, top page {top.get('gva')}")


def check_rule_after_exit(vm, rule, watch):
    """After the process exits, the rule's targets go (within two walks)
    and the rule stays for the next such process."""
    end = time.time() + 10
    ts = None
    while time.time() < end and ts != []:
        ts = rule_targets(vm, rule)
        time.sleep(0.5)
    r = run_tool("rule", "ls", "--vm", str(vm), "--json")
    rules = json.loads(r.stdout.strip().splitlines()[-1])["rules"] if r.returncode == 0 else []
    mine = [x for x in rules if x["rule_id"] == rule]
    check("linux_rule_targets_end_with_the_process", ts == [] and mine and mine[0]["nr_processes"] == 0
          and mine[0]["process"] == "sleep" and mine[0]["region"] == "stack", [ts, rules])
    r = run_tool("rule", "rm", "--vm", str(vm), "--rule", str(rule))
    r2 = run_tool("rule", "ls", "--vm", str(vm), "--json")
    left = json.loads(r2.stdout.strip().splitlines()[-1])["rules"] if r2.returncode == 0 else None
    check("linux_rule_removed", r.returncode == 0 and left == [], [r.stderr, left])


def guest_maps(g, command="maps 0"):
    """Worker 0's /proc/PID/maps as the guest shows it (or, with
    "spawnmaps 0", the spawned process's): a list of {start, end, perms,
    offset, name}, or None."""
    n0 = len(g.reports())
    g.send(command)
    end = time.time() + 60
    while time.time() < end and g.qemu.poll() is None:
        reps = g.reports()[n0:]
        done = next((r for r in reps if "maps_done" in r), None)
        if done:
            maps = [r for r in reps[:reps.index(done)] if "maps_pid" in r]
            return maps if len(maps) == done["maps_done"] else None
        time.sleep(0.2)
    return None


def vma_matches_maps(line, v):
    """Does the module's VMA `v` (kvm-pfi vmas --json) say what the maps
    line says? procfs shows a file's offset, 0 for anything else; the
    module gives a file's path within its file system, and no name for a
    special mapping ([vvar], [vdso]: vm_file is NULL) or a named anonymous
    one ([anon:NAME])."""
    offset = v["pgoff"] << 12 if v["file"] else 0
    if (line["start"], line["end"], line["perms"], line["offset"]) != (v["start"], v["end"], v["perms"], offset):
        return False
    name = line["name"]
    if v["file"]:
        return name.endswith(v["file"]) and v["name"] == v["file"]
    if name in ("[heap]", "[stack]"):
        return v["name"] == name
    if name.startswith("[") and name.endswith("]"):
        return v["name"] == ""
    return name == "" and v["name"] == ""


def check_linux_vmas(g, vm, w):
    """The module's walk of the worker's VMA tree (`kvm-pfi vmas`, with the
    profile check_linux_processes loaded) against the worker's
    /proc/PID/maps read in the guest: every line a VMA with the same
    start, end, perms, offset and name, no VMA more; a pid with no
    process is refused."""
    maps = guest_maps(g)
    if not check("linux_guest_maps", maps, "no maps lines from the guest"):
        return
    r = run_tool("vmas", "--vm", str(vm), "--pid", str(w["pid"]), "--json")
    if not check("linux_vmas_listed", r.returncode == 0, r.stderr):
        return
    out = json.loads(r.stdout.strip().splitlines()[-1])
    vmas = {v["start"]: v for v in out["vmas"]}
    # [vsyscall] is the gate area, not a VMA of the process.
    lines = [l for l in maps if l["name"] != "[vsyscall]"]
    found = 0
    for line in lines:
        v = vmas.get(line["start"])
        if v and vma_matches_maps(line, v):
            found += 1
        else:
            print(f"# maps {line}, module {v}")
    extra = sorted(set(vmas) - {l["start"] for l in lines})
    for start in extra:
        print(f"# module VMA not in maps: {vmas[start]}")
    print(f"vmas found {found}/{len(lines)}")
    check("linux_vmas_match_procfs", lines and found == len(lines) and not extra
          and out["pid"] == w["pid"] and out["nr_vmas"] == len(out["vmas"]),
          f"found {found}/{len(lines)}, not in maps {[hex(s) for s in extra]}")
    r = run_tool("vmas", "--vm", str(vm), "--pid", "999999")
    check("linux_vmas_refused", r.returncode != 0 and "no process" in r.stderr,
          [r.returncode, r.stderr])


def case_memset():
    """glibc's memset (vector stores) on a protected, resident page."""
    booted = boot_one_worker("memset_")
    if not booted:
        return
    g, workers, vm, cr3 = booted
    w = workers[0]
    watch = Watch()
    page, off, length = 3, 512, 1024
    add = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3),
                    "--gva", hex(w["gva"] + page * PAGE), "--len", str(PAGE), "--read", "--protect")
    tid = add["target_id"]
    res = wait_resident(watch, tid, 1, 300)
    check("memset_page_resident", len(res) == 1, watch.events)
    g.send(f"memset 0 {page} {off} {length}")
    ms = g.wait_for(lambda r: "memset" in r, 120)
    check("memset_read_back", ms is not None and ms.get("read_back_bad") == 0, ms)
    time.sleep(3)
    wa = watch.of("write-attempt", tid)
    covered = set()
    for e in wa:
        covered.update(range(e["offset"], e["offset"] + e["length"]))
    print(f"# memset: {len(wa)} write-attempt events, lengths {sorted({e['length'] for e in wa})}")
    check("memset_write_attempts_cover_the_write", covered >= set(range(off, off + length))
          and all(bytes.fromhex(e.get("data", "")) == b"\xa5" * e["length"] for e in wa
                  if "data" in e), f"{len(covered)} of {length} bytes covered")
    watch.stop()
    rep = finish_guest(g, vm, workers)[0] or {}
    check("memset_guest_verified", rep.get("verify") == "ok", rep)


def case_prot_none():
    """A target on a swapped-out page of a PROT_NONE mapping: injecting a
    user-mode #PF there would make Linux send the program SIGSEGV. The
    module looks the address up in the worker's VMAs right before
    injecting and refuses: the page fails with vma-denies, never injected,
    while a page of the same process in a readable mapping comes back; the
    worker lives and verifies all its pages. A page of a shared file
    mapping whose entry the guest emptied (no swap entry) comes back by
    injection too, read from the page cache (how injected-file). Before
    the profile is loaded (no VMAs to check) no page gets a fault at all."""
    booted = boot_one_worker("prot_none_", profile=False)
    if not booted:
        return
    g, workers, vm, cr3 = booted
    w = workers[0]
    watch = Watch()
    none = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3), "--gva", hex(w["none_gva"]),
                     "--len", str(PAGE), "--read")["target_id"]
    good = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3), "--gva", hex(w["gva"]),
                     "--len", str(PAGE), "--read")["target_id"]
    check("file_page_emptied", w.get("file_empty") == 1 and w.get("file_gva"), w)
    filet = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3), "--gva", hex(w["file_gva"]),
                      "--len", str(PAGE), "--read")["target_id"]
    time.sleep(10)
    waiting = [tool_json("target", "pages", "--vm", str(vm), "--target", str(t)).get("pages", [])
               for t in (none, good, filet)]
    check("prot_none_no_fault_without_profile",
          all(p.get("state") == "waiting" and not p.get("injections") for ps in waiting for p in ps)
          and [len(ps) for ps in waiting] == [1, 1, 1], waiting)
    if not load_profile(g, vm, "prot_none_"):
        g.qemu.kill()
        return
    settled = {t: wait_settled(watch, t, 1, 120) for t in (none, good, filet)}
    ev_none = next(iter(settled[none].values()), {})
    ev_good = settled[good].get(w["gva"], {})
    ev_file = settled[filet].get(w["file_gva"], {})
    pages = tool_json("target", "pages", "--vm", str(vm), "--target", str(none)).get("pages", [])
    watch.stop()
    rep = finish_guest(g, vm, workers, strict=False)[0] or {}
    segv = "segfault" in g.text() or rep.get("signal") == 11
    print(f"# PROT_NONE target: {ev_none}; pages {pages}; worker {'killed by SIGSEGV' if segv else 'alive'}: "
          f"{rep}")
    check("prot_none_refused", ev_none.get("event") == "page-failed"
          and ev_none.get("fail_reason") == "vma-denies" and not ev_none.get("injections")
          and all(not p.get("injections") for p in pages), [ev_none, pages])
    check("prot_none_readable_page_back", ev_good.get("event") == "page-resident"
          and ev_good.get("how") == "injected" and bytes.fromhex(ev_good.get("data", "")) == fill(0), ev_good)
    check("prot_none_worker_alive", not segv and rep.get("verify") == "ok", rep)
    print(f"# file page: {ev_file}")
    check("file_page_back_by_injection", ev_file.get("event") == "page-resident"
          and ev_file.get("how") == "injected-file" and ev_file.get("injections") == 1
          and bytes.fromhex(ev_file.get("data", "")) == fill(w["file_seed"]), ev_file)
    check("file_page_present_for_the_guest", rep.get("file_present_before_touch") == 1
          and rep.get("file_ok") == 1, rep)


def case_two_processes():
    """Two guest processes with targets at once, each in its own CR3."""
    g, workers, vm = boot_for_test(2)
    if not workers:
        return
    cr3s = find_cr3s(g, workers)
    if not check("two_cr3s_found", len(cr3s) == 2 and cr3s[0] != cr3s[1], cr3s):
        g.qemu.kill()
        return
    watch = Watch()
    tids = {}
    for w in workers:
        add = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3s[w["worker"]]),
                        "--gva", hex(w["gva"]), "--len", str(w["pages"] * PAGE), "--read")
        tids[w["worker"]] = add["target_id"]
    good = {}
    for w in workers:
        res = wait_resident(watch, tids[w["worker"]], w["pages"], 300)
        good[w["worker"]] = sum(1 for i in range(w["pages"])
                                if bytes.fromhex(res.get(w["gva"] + i * PAGE, {}).get("data", "")) == fill(i)
                                and res[w["gva"] + i * PAGE].get("how") == "injected")
    check("two_processes_pages_back", all(good[w["worker"]] == w["pages"] for w in workers), good)
    watch.stop()
    reps = finish_guest(g, vm, workers)
    check("two_processes_verified", all((reps.get(k) or {}).get("verify") == "ok"
                                        and (reps.get(k) or {}).get("present_before_touch") == good[k]
                                        for k in good), reps)


def case_exit_pending():
    """Workers die while their pages wait for a fault. Both wait in read()
    (in the kernel: no user-mode entry in their CR3), their 16 pages
    pending. Worker 0 is killed there (SIGKILL): it never runs in user mode
    again, so none of its pages may be injected, and each must end with a
    page-failed event. Worker 1 is told to exit: it returns to user mode
    for that (a fault may come then, legitimately), counts its present
    pages, and exits; any page reported resident must carry its own bytes,
    read before its address space went, never a freed frame's. Worker 2,
    the guest and the module carry on."""
    g, workers, vm = boot_for_test(3)
    if not workers:
        return
    cr3s = find_cr3s(g, workers)
    if not check("exit_cr3s_found", len(cr3s) == 3, cr3s):
        g.qemu.kill()
        return
    for k in (0, 1):
        g.send(f"block {k}")
        check(f"exit_worker{k}_blocked",
              g.wait_for(lambda r, k=k: r.get("blocked") == 1 and r.get("worker") == k, 60) is not None)
    watch = Watch()
    tids = {}
    for k in (0, 1):
        w = workers[k]
        tids[k] = tool_json("target", "add", "--vm", str(vm), "--cr3", hex(cr3s[k]), "--gva", hex(w["gva"]),
                            "--len", str(w["pages"] * PAGE), "--read")["target_id"]
    time.sleep(3)
    for k in (0, 1):
        before = tool_json("target", "pages", "--vm", str(vm), "--target", str(tids[k])).get("pages", [])
        check(f"exit_worker{k}_faults_pending",
              sum(1 for p in before if p.get("state") in ("waiting", 0) and not p.get("injections"))
              == workers[k]["pages"], before)
    g.send("kill 0")
    killed = g.wait_for(lambda r: r.get("worker") == 0 and "exited" in r, 60)
    check("exit_worker0_killed_in_kernel", killed is not None and killed.get("signal") == 9, killed)
    g.send("exit 1")
    exited = g.wait_for(lambda r: r.get("worker") == 1 and "exited" in r, 60)
    last = g.wait_for(lambda r: r.get("worker") == 1 and "present_before_exit" in r, 5) or {}
    check("exit_worker1_exited", exited is not None and exited.get("exited") == 0, exited)
    settled = {k: wait_settled(watch, tids[k], workers[k]["pages"], 60) for k in (0, 1)}
    for k in (0, 1):
        ev = settled[k]
        print(f"# worker {k} after its end: " + json.dumps(
            [(e["event"], (e["gva"] - workers[k]["gva"]) // PAGE, e.get("injections"),
              e.get("fail_reason") or e.get("how")) for e in sorted(ev.values(), key=lambda e: e["gva"])]))
    # Worker 0 never ran in user mode after blocking: no fault for it.
    ev0 = settled[0]
    check("exit_killed_pages_all_failed", len(ev0) == workers[0]["pages"]
          and all(e["event"] == "page-failed" for e in ev0.values()), ev0)
    check("exit_killed_pages_never_injected",
          not any(e.get("injections") for e in watch.of("page-resident", tids[0]) + watch.of("page-failed", tids[0])),
          ev0)
    # address-space-gone once Linux has freed the tables (exit_mmap());
    # unmapped for a page walked while it was still clearing the PTEs.
    reasons = [e.get("fail_reason") for e in ev0.values()]
    print(f"# killed worker's pages: {reasons.count('address-space-gone')} address-space-gone, "
          f"{reasons.count('unmapped')} unmapped")
    check("exit_killed_pages_reason",
          all(r in ("address-space-gone", "unmapped") for r in reasons), ev0)
    # Worker 1: each page settled; a resident one holds what the worker wrote.
    ev1 = settled[1]
    w1 = workers[1]
    wrong = [(i, e.get("gpa")) for e in watch.of("page-resident", tids[1])
             for i in [(e["gva"] - w1["gva"]) // PAGE] if bytes.fromhex(e.get("data", "")) != fill(i)]
    print(f"# worker 1 counted {last.get('present_before_exit')} pages present before exiting; "
          f"{len(watch.of('page-resident', tids[1]))} reported resident")
    check("exit_exited_pages_settled", len(ev1) == w1["pages"], ev1)
    check("exit_exited_resident_pages_hold_their_bytes", not wrong, wrong)
    watch.stop()
    reps = finish_guest(g, vm, [workers[2]])
    check("exit_other_worker_fine", (reps.get(2) or {}).get("verify") == "ok", reps)


CASES = {"swapped_pages": case_swapped_pages, "memset": case_memset,
         "prot_none": case_prot_none, "two_processes": case_two_processes,
         "exit_pending": case_exit_pending}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boots", type=int, default=0)
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    if not (os.path.exists(KERNEL) and os.path.exists(INITRD)):
        print("Bail out! KVM_PFI_GUEST_KERNEL / KVM_PFI_GUEST_INITRD missing")
        return 1
    if args.boots:
        boots(args.boots)
    for name in args.cases or ([] if args.boots else list(CASES)):
        t0 = time.time()
        try:
            CASES[name]()
        except Exception as e:  # a failed step is a failed case, not a crash
            check(f"{name}_ran", False, repr(e))
        print(f"# case {name}: {time.time() - t0:.0f} s")
    fails = 0
    for i, r in enumerate(results, 1):
        if r[1] is None:
            print(f"not ok {i} {r[0]} # TODO {r[2]}")
        else:
            print(f"{'ok' if r[1] else 'not ok'} {i} {r[0]}")
            fails += not r[1]
    print(f"1..{len(results)}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
