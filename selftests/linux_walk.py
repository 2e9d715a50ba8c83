#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The Linux walkers of pfi_core (through `kvm-pfi profile walk`) against
the test VM's own running Linux kernel, checked against procfs.

The profile is built from the test kernel's BTF (the blob pahole made from
its vmlinux, KVM_PFI_BTF, or /sys/kernel/btf/vmlinux) and /proc/kallsyms;
`kvm-pfi profile walk --json` reads the kernel's memory through
/proc/kcore. procfs is read before and after the walk; only processes with
the same comm, parent and maps both times are compared: pid, comm and
parent pid, and every line of /proc/PID/maps (start, end, rwx, s/p, file
offset, file name, [heap]/[stack]) against a walked VMA, no VMA more
([vsyscall] is the gate area, not a VMA). A test program with known
mappings (linux_walk_maps: its executable, libc.so.6, libm.so.6, a file
mapped at offset 4096, a PROT_NONE region, its stack) is checked by name.
A profile from System.map finds the same init_task; a wrong comm offset
and a wrong slide are refused. Prints
  processes found A/N vmas found B/M
and KTAP.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

from ktap import check
import ktap

TOOL = os.environ["KVM_PFI_TOOL"]
TESTS = os.environ["KVM_PFI_TESTS"]
PF_WQ_WORKER = 0x20
TASK_COMM_LEN = 16
VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x80


def run_tool(*args):
    return subprocess.run([TOOL, *args], capture_output=True, timeout=600)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def stat_of(pid):
    """comm (bytes) and the numeric fields of /proc/PID/stat, by field number."""
    raw = read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    l, r = raw.index(b"("), raw.rindex(b")")
    rest = raw[r + 2:].split()
    fields = {n: rest[n - 3] for n in range(3, 3 + len(rest))}
    return raw[l + 1:r], {n: (int(v) if n != 3 else v.decode()) for n, v in fields.items()}


def parse_maps(text):
    out = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split(None, 5)
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append(dict(start=start, end=end, perms=parts[1], offset=int(parts[2], 16),
                        name=parts[5] if len(parts) > 5 else ""))
    return out


def snapshot():
    """Every process in /proc: comm, stat fields, maps text, exe link."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = stat_of(d)
        maps = read(f"/proc/{d}/maps")
        if st is None or maps is None:
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            exe = None
        procs[int(d)] = dict(comm=st[0], stat=st[1], ppid=st[1][4], maps=maps, exe=exe)
    return procs


def comm_ok(walked, procfs, flags):
    """The kernel's comm is TASK_COMM_LEN (16) bytes with its NUL: procfs
    shows a kernel thread's full name (longer) and a workqueue worker's
    comm plus "+desc"/"-desc" (proc_task_name)."""
    w = walked.encode(errors="surrogateescape")
    if w == procfs[:TASK_COMM_LEN - 1]:
        return True
    return bool(flags & PF_WQ_WORKER) and procfs.startswith(w) and procfs[len(w):len(w) + 1] in (b"+", b"-")


def perms(flags):
    return ("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-") + \
        ("x" if flags & VM_EXEC else "-") + ("s" if flags & VM_MAYSHARE else "p")


def vma_matches(line, v, mm):
    """Does the walked VMA `v` (of an mm `mm`) say what the maps line says?"""
    if (line["start"], line["end"], line["perms"]) != (v["start"], v["end"], perms(v["flags"])):
        return False
    name = line["name"]
    heap = v["start"] < mm["brk"] and v["end"] > mm["start_brk"]
    stack = v["start"] <= mm["start_stack"] <= v["end"]
    if v["file"] is not None:
        path = name[:-len(" (deleted)")] if name.endswith(" (deleted)") else name
        return (path.endswith(v["file"]) or name.startswith("[anon_shmem:")) and \
            line["offset"] == v["pgoff"] << 12
    if line["offset"] != 0:
        return False
    if name == "[heap]":
        return heap
    if name == "[stack]":
        return stack and not heap
    if name.startswith("/"):
        return False
    # [vdso], [vvar], [anon:NAME]: named by the kernel, not a file; an
    # unnamed anonymous VMA is neither the heap nor the stack.
    return name != "" or not (heap or stack)


def compare(before, after, walk):
    walked = {p["tgid"]: p for p in walk["processes"] if p["pid"] == p["tgid"]}
    stable = [pid for pid, b in before.items() if pid in after and
              (b["comm"], b["ppid"], b["maps"]) == (after[pid]["comm"], after[pid]["ppid"], after[pid]["maps"])]
    left_out = len(set(before) | set(after)) - len(stable)
    n = a = m = b_ = extra = 0
    kinds = dict(equal=0, truncated=0, worker=0)
    for pid in sorted(stable):
        pf = before[pid]
        n += 1
        lines = [l for l in parse_maps(pf["maps"]) if l["name"] != "[vsyscall]"]
        m += len(lines)
        w = walked.get(pid)
        if w is None:
            print(f"# pid {pid} ({pf['comm']!r}) not walked")
            continue
        ok = comm_ok(w["comm"], pf["comm"], w["flags"]) and w["ppid"] == pf["ppid"] and w["error"] is None
        if not ok:
            print(f"# pid {pid}: walked comm {w['comm']!r} ppid {w['ppid']} error {w['error']}, "
                  f"procfs comm {pf['comm']!r} ppid {pf['ppid']}")
        else:
            a += 1
            c = w["comm"].encode()
            kinds["equal" if c == pf["comm"] else "truncated" if len(c) == TASK_COMM_LEN - 1 else "worker"] += 1
        if lines and w["mm"] is None:
            print(f"# pid {pid}: procfs has {len(lines)} maps lines, the walk no mm")
            continue
        by_start = {v["start"]: v for v in w["vmas"]}
        for line in lines:
            v = by_start.get(line["start"])
            if v is not None and vma_matches(line, v, w["mm"]):
                b_ += 1
            else:
                print(f"# pid {pid}: maps line {line} walked as {v}")
        starts = {l["start"] for l in lines}
        more = [v for v in w["vmas"] if v["start"] not in starts]
        extra += len(more)
        for v in more:
            print(f"# pid {pid}: walked VMA {v} not in maps")
    print(f"# {len(stable)} processes stable across both procfs reads, {left_out} left out; "
          f"comm equal {kinds['equal']}, truncated to 15 bytes {kinds['truncated']}, "
          f"workqueue worker {kinds['worker']}")
    print(f"processes found {a}/{n} vmas found {b_}/{m}")
    check("processes_found", a == n and n > 0, f"{a}/{n}")
    check("vmas_found", b_ == m and m > 0, f"{b_}/{m}")
    check("no_vma_more", extra == 0, f"{extra} walked VMAs not in maps")
    return stable


def test_program(prog, truth, before, walk):
    """The program with known mappings, by name."""
    w = next((p for p in walk["processes"] if p["pid"] == truth["pid"]), None)
    if not check("test_program_walked", w is not None and w["mm"] is not None, truth):
        return
    pf = before[truth["pid"]]
    files = [v["file"] or "" for v in w["vmas"]]
    check("test_program_exe", w["exe"] is not None and pf["exe"].endswith(w["exe"])
          and w["exe"].endswith("/linux_walk_maps") and w["exe"] in files, (w["exe"], pf["exe"]))
    for lib in ("libc.so.6", "libm.so.6"):
        check(f"test_program_{lib.split('.')[0]}", any(f.endswith("/" + lib) for f in files), files)
    fm = next((v for v in w["vmas"] if v["start"] == truth["file_map"]), None)
    check("file_mapping_at_offset_4096", fm is not None and fm["pgoff"] == 1
          and fm["end"] - fm["start"] == 4096 and perms(fm["flags"]) == "r--p"
          and fm["file"] == "/linux_walk_data", fm)
    pn = next((v for v in w["vmas"] if v["start"] == truth["prot_none"]), None)
    check("prot_none_region", pn is not None and perms(pn["flags"]) == "---p" and pn["file"] is None
          and pn["end"] - pn["start"] == 2 * 4096, pn)
    mm = w["mm"]
    st = next((v for v in w["vmas"] if v["start"] <= truth["stack"] < v["end"]), None)
    check("stack", st is not None and st["start"] <= mm["start_stack"] <= st["end"]
          and st["file"] is None and perms(st["flags"]) == "rw-p", (st, mm))
    s = pf["stat"]
    # /proc/PID/stat: startcode 26, endcode 27, startstack 28, start_brk 47, arg_start 48.
    want = dict(start_code=s[26], end_code=s[27], start_stack=s[28], start_brk=s[47], arg_start=s[48])
    got = {k: mm[k] for k in want}
    check("test_program_mm", got == want, f"walked {got}, stat {want}")
    exe = [v for v in w["vmas"] if v["file"] == w["exe"] and v["flags"] & VM_EXEC]
    check("start_code_in_exe_text", any(v["start"] <= mm["start_code"] < v["end"] for v in exe), exe)


def main():
    btf = os.environ.get("KVM_PFI_BTF") or "/sys/kernel/btf/vmlinux"
    system_map = os.environ.get("KVM_PFI_SYSTEM_MAP", "")
    tmp = tempfile.mkdtemp()
    prof = os.path.join(tmp, "kallsyms.profile")
    r = run_tool("profile", "build", "--btf", btf, "--system-map", "/proc/kallsyms", "-o", prof)
    if not check("profile_from_kallsyms", r.returncode == 0, r.stderr.decode().strip()):
        return finish()

    # The data file on a tmpfs of its own: /tmp here is an overlay, whose
    # mapped files are backing files (their vm_file path is the upper
    # file's, where procfs shows the overlay's); and the walked path is the
    # one inside the file system: /linux_walk_data.
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "linux_walk", mnt], capture_output=True, text=True)
    check("data_tmpfs_mounted", r.returncode == 0, r.stderr.strip())
    data = os.path.join(mnt, "linux_walk_data")
    prog = subprocess.Popen([f"{TESTS}/linux_walk_maps", data], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    truth = json.loads(prog.stdout.readline())
    print(f"# test program: {json.dumps(truth)}")

    before = snapshot()
    r = run_tool("profile", "walk", prof, "--json")
    after = snapshot()
    walk = None
    if check("walk_kallsyms_profile", r.returncode == 0, r.stderr.decode().strip()):
        walk = json.loads(r.stdout)
        print(f"# kernel image at {walk['kernel_text']:#x}, init_task at {walk['init_task']:#x}, "
              f"slide {walk['slide']:#x}, {len(walk['processes'])} processes walked, "
              f"{walk['attempts']} attempt(s)")
        check("kallsyms_profile_slide_0", walk["slide"] == 0, walk["slide"])
        compare(before, after, walk)
        test_program(prog, truth, before, walk)

    # The same kernel through a System.map profile: the slide from kcore.
    if system_map and walk is not None:
        pmap = os.path.join(tmp, "system-map.profile")
        r = run_tool("profile", "build", "--btf", btf, "--system-map", system_map, "-o", pmap)
        if check("profile_from_system_map", r.returncode == 0, r.stderr.decode().strip()):
            r = run_tool("profile", "walk", pmap, "--json")
            w2 = json.loads(r.stdout) if r.returncode == 0 else {}
            print(f"# System.map profile: slide {w2.get('slide', 0):#x}")
            check("system_map_profile_same_init_task", r.returncode == 0
                  and w2["init_task"] == walk["init_task"]
                  and w2["kernel_text"] == walk["kernel_text"]
                  and len(w2["processes"]) > 1, r.stderr.decode().strip())
    else:
        check("system_map_given", False, "no KVM_PFI_SYSTEM_MAP")

    from_memory(btf, prof, tmp)

    # Profiles that do not fit: a wrong comm offset, a wrong slide.
    text = open(prof).read()
    m = re.search(r"^field task_struct\.comm (\d+) 16$", text, re.M)
    bad = os.path.join(tmp, "bad-comm.profile")
    with open(bad, "w") as f:
        f.write(text.replace(m.group(0), f"field task_struct.comm {int(m.group(1)) + 8} 16"))
    r = run_tool("profile", "walk", bad)
    err = r.stderr.decode().strip()
    check("wrong_comm_offset_refused", r.returncode == 65
          and err.startswith("kvm-pfi: profile does not fit the running kernel"), f"exit {r.returncode}: {err}")
    r = run_tool("profile", "walk", prof, "--slide", "0x200000")
    err = r.stderr.decode().strip()
    check("wrong_slide_refused", r.returncode == 65
          and err.startswith("kvm-pfi: profile does not fit the running kernel"), f"exit {r.returncode}: {err}")

    prog.stdin.close()
    check("test_program_exit", prog.wait(timeout=60) == 0)
    subprocess.run(["umount", mnt])
    return finish()


def from_memory(btf, prof, tmp):
    """The kernel's own kallsyms tables, found in its image through
    /proc/kcore: every core line of /proc/kallsyms, in its order; the
    profile with them as its symbols is the one /proc/kallsyms gives. BTF
    in the image only where the kernel was built with it (not the test
    kernel: refused, with the option to use)."""
    r = run_tool("profile", "kallsyms", "--kcore", "/proc/kcore")
    got = r.stdout.decode().splitlines() if r.returncode == 0 else []
    want = [l for l in read("/proc/kallsyms").decode().splitlines() if "\t" not in l]
    diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    print(f"# kallsyms from the kernel image: {len(got)} symbols; /proc/kallsyms: {len(want)} core "
          f"symbols; first difference at {diff}")
    check("kallsyms_from_memory_is_proc_kallsyms", r.returncode == 0 and got == want and len(want) > 10000,
          [r.returncode, r.stderr.decode()[-300:], diff is not None and (got[diff], want[diff])])
    pmem = os.path.join(tmp, "memory.profile")
    r = run_tool("profile", "build", "--kcore", "/proc/kcore", "--btf", btf, "-o", pmem)
    check("profile_symbols_from_memory", r.returncode == 0 and open(pmem).read() == open(prof).read(),
          r.stderr.decode().strip())
    r = run_tool("profile", "build", "--kcore", "/proc/kcore")
    err = r.stderr.decode().strip()
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        check("profile_btf_from_memory", r.returncode == 0, err)
    else:
        check("profile_without_btf_in_memory_refused", r.returncode == 65 and "no BTF in the kernel image" in err
              and "--btf" in err, f"exit {r.returncode}: {err}")


def finish():
    return ktap.report()


sys.exit(main())
