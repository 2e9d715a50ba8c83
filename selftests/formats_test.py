#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""`kvm-pfi watch --format journald|syslog|ocsf` against the real receivers.

Events are constructed here (the ground truth: every attribute value is
known), written as `watch --format json` lines, and sent by the tool with
`watch --replay`, which runs the same formatter and transport code as
`watch` on live events. Each output is then judged by the receiver's own
parse:

- journald: a systemd-journald started in a private mount namespace (its
  sockets and journal on tmpfs, so the host is untouched), read back with
  `journalctl -o json --all`;
- syslog: an rsyslogd of our own (imuxsock on a private socket, imtcp on a
  free port) with mmpstrucdata, writing each message as rsyslog's own JSON
  (%jsonmesg%) to a file;
- OCSF: each line checked against the OCSF 1.5.0 schema shipped in the
  pydantic-ocsf package (installed by scripts/toolchain.sh): the class of
  its class_uid, every required attribute (also of nested objects), enum
  values, scalar types, and no attribute the class does not define.

Needs root (unshare, journald, rsyslogd). Prints KTAP; exit 1 on failure.
Environment: KVM_PFI_TOOL, KVM_PFI_OCSF_SCHEMA (the schema's JSON file).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ktap import check
import ktap

TOOL = os.environ["KVM_PFI_TOOL"]
SCHEMA = os.environ["KVM_PFI_OCSF_SCHEMA"]
# The documented severities (Documentation/operations.rst).
SEVERITY = {"detection": 2, "overrun": 3, "write-attempt": 4, "page-failed": 4,
            "vm-attached": 5, "vm-detached": 5, "sigs-loaded": 5, "cmd_99": 5,
            "page-resident": 6, "target-added": 6, "target-removed": 6,
            "process-start": 6, "process-exit": 6}
T0 = 1_764_600_000_000_000_000
# A rule name with every character RFC 5424 escapes in a PARAM-VALUE.
RULE = 'evil "rule" [x] \\ end'

RECORDS = [
    {"event": "vm-attached", "vm_id": 1, "vmm_pid": 4242, "stats_id": "kvm-4242",
     "attach_flags": 1, "time_ns": T0},
    {"event": "sigs-loaded", "generation": 3, "nr_rules": 2, "time_ns": T0 + 1},
    {"event": "target-added", "vm_id": 1, "target_id": 7, "target_flags": 17, "cr3": 0x1234000,
     "gva": 0x7f0000001000, "len": 8192, "time_ns": T0 + 2},
    {"event": "page-resident", "vm_id": 1, "target_id": 7, "cr3": 0x1234000,
     "gva": 0x7f0000001000, "gpa": 0x5678000, "page_size": 4096, "how": "injected",
     "injections": 1, "reinjections": 0, "data": "5a" * 4096, "time_ns": T0 + 3},
    {"event": "detection", "vm_id": 1, "target_id": 7, "cr3": 0x1234000,
     "gva": 0x7f0000001234, "gpa": 0x5678234, "offset": 0x234, "length": 16, "rule_id": 0,
     "rule_name": RULE, "generation": 3, "how": "injected", "injections": 1,
     "time_ns": T0 + 4},
    {"event": "write-attempt", "vm_id": 1, "target_id": 7, "cr3": 0x1234000,
     "gva": 0x7f0000001010, "gpa": 0x5678010, "offset": 16, "length": 8, "restored": 1,
     "data": "6f776e6564212121", "time_ns": T0 + 5},
    {"event": "page-failed", "vm_id": 1, "target_id": 7, "cr3": 0x1234000,
     "gva": 0x7f0000002000, "fail_reason": "timeout", "injections": 3, "time_ns": T0 + 6},
    {"event": "overrun"},
    {"event": "cmd_99", "vm_id": 1, "attr_200": "deadbeef", "time_ns": T0 + 7},
    # A Linux guest's processes: a user process, a kernel thread (cr3 0, no
    # path), and the user process's exit.
    {"event": "process-start", "vm_id": 1, "pid": 412, "ppid": 1, "comm": "bash",
     "cr3": 0x1234000, "task": 0xffff888004120000, "task_flags": 0x400100,
     "exe": "/usr/bin/bash", "time_ns": T0 + 8},
    {"event": "process-start", "vm_id": 1, "pid": 2, "ppid": 0, "comm": "kthreadd",
     "cr3": 0, "task": 0xffff888001b48000, "task_flags": 0x208040, "exe": "",
     "time_ns": T0 + 9},
    {"event": "process-exit", "vm_id": 1, "pid": 412, "comm": "bash", "cr3": 0x1234000,
     "task": 0xffff888004120000, "time_ns": T0 + 10},
    {"event": "target-removed", "vm_id": 1, "target_id": 7, "time_ns": T0 + 11},
    {"event": "vm-detached", "vm_id": 1, "detach_reason": "requested", "entries": 2 ** 63,
     "exits": 5, "time_ns": T0 + 12},
]


def quoted(name):
    """A rule name as the --pretty sentence shows it: quoted, \\ and " escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attrs_of(rec):
    return {k: v for k, v in rec.items() if k not in ("event", "time_ns")}


def write_records(d):
    path = os.path.join(d, "events.jsonl")
    with open(path, "w") as f:
        for r in RECORDS:
            f.write(json.dumps(r) + "\n")
    return path


# ---------------------------------------------------------------- journald

JOURNALD_SCRIPT = r"""
set -eu
for d in /run/systemd /run/log /var/log/journal; do
	mkdir -p "$d"
	mount -t tmpfs tmpfs "$d"
done
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald &
J=$!
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
set +e
"$TOOL" watch --format journald --replay "$EVENTS"
echo "tool-exit $?" >"$OUT.rc"
sleep 1
journalctl --directory=/run/log/journal --all -o json SYSLOG_IDENTIFIER=kvm-pfi >"$OUT"
kill $J; wait $J
true
"""


def journald_test(d, events):
    out = os.path.join(d, "journal.json")
    env = dict(os.environ, EVENTS=events, OUT=out, TOOL=TOOL)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c",
                        JOURNALD_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    rc = open(out + ".rc").read().strip() if os.path.exists(out + ".rc") else "none"
    check("journald_tool_exit", rc == "tool-exit 0", (rc, p.stderr[-1000:]))
    entries = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    if not check("journald_entries", len(entries) == len(RECORDS),
                 f"{len(entries)} entries; {p.stderr[-500:]}"):
        return
    ids = {}
    ok_fields, ok_prio, ok_msg = True, True, True
    for rec, ent in zip(RECORDS, entries):
        name = rec["event"]
        if ent.get("KVM_PFI_EVENT") != name:
            ok_fields = False
            print(f"# journald: {name}: KVM_PFI_EVENT={ent.get('KVM_PFI_EVENT')}")
        for k, v in attrs_of(rec).items():
            field = "KVM_PFI_" + k.upper()
            if ent.get(field) != str(v):
                ok_fields = False
                print(f"# journald: {name}: {field}={str(ent.get(field))[:80]} want {str(v)[:80]}")
        if "time_ns" in rec and ent.get("KVM_PFI_TIME_NS") != str(rec["time_ns"]):
            ok_fields = False
            print(f"# journald: {name}: KVM_PFI_TIME_NS={ent.get('KVM_PFI_TIME_NS')}")
        if ent.get("PRIORITY") != str(SEVERITY[name]):
            ok_prio = False
            print(f"# journald: {name}: PRIORITY={ent.get('PRIORITY')} want {SEVERITY[name]}")
        if not ent.get("MESSAGE") or ent.get("_TRANSPORT") != "journal":
            ok_msg = False
            print(f"# journald: {name}: MESSAGE={ent.get('MESSAGE')!r} via {ent.get('_TRANSPORT')}")
        ids.setdefault(name, set()).add(ent.get("MESSAGE_ID"))
    check("journald_every_attribute", ok_fields)
    check("journald_priority", ok_prio)
    check("journald_message_native", ok_msg)
    flat = [next(iter(s)) for s in ids.values()]
    check("journald_message_ids", all(len(s) == 1 for s in ids.values())
          and len(set(flat)) == len(flat)
          and all(i and len(i) == 32 and all(c in "0123456789abcdef" for c in i) for i in flat),
          ids)
    det = entries[[r["event"] for r in RECORDS].index("detection")]
    check("journald_detection_message", quoted(RULE) in det.get("MESSAGE", ""),
          det.get("MESSAGE"))


# ------------------------------------------------------------------ syslog

RSYSLOG_CONF = """
global(workDirectory="{d}")
module(load="imuxsock" SysSock.Use="off")
module(load="imtcp")
module(load="mmpstrucdata")
input(type="imuxsock" Socket="{d}/log" UseSpecialParser="off" ParseHostname="on"
      CreatePath="on" Ruleset="kvmpfi")
input(type="imtcp" Address="127.0.0.1" Port="{port}" Ruleset="kvmpfi")
template(name="j" type="string" string="%jsonmesg%\\n")
ruleset(name="kvmpfi") {{
	action(type="mmpstrucdata" sd_name.lowercase="off")
	action(type="omfile" file="{d}/out.json" template="j")
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def syslog_messages(d, events, transport):
    """Sends the records through a fresh rsyslogd; returns its parsed messages."""
    sd = tempfile.mkdtemp(dir=d)
    port = free_port()
    conf = os.path.join(sd, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(RSYSLOG_CONF.format(d=sd, port=port))
    rs = subprocess.Popen(["rsyslogd", "-n", "-f", conf, "-i", os.path.join(sd, "pid")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            if os.path.exists(os.path.join(sd, "log")):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        target = (["--syslog-socket", os.path.join(sd, "log")] if transport == "unix"
                  else ["--syslog-tcp", f"127.0.0.1:{port}"])
        t = subprocess.run([TOOL, "watch", "--format", "syslog", *target, "--replay", events],
                           capture_output=True, text=True, timeout=60)
        check(f"syslog_{transport}_tool_exit", t.returncode == 0, t.stderr)
        out = os.path.join(sd, "out.json")
        for _ in range(50):
            if os.path.exists(out) and sum(1 for _ in open(out)) >= len(RECORDS):
                break
            time.sleep(0.1)
    finally:
        rs.send_signal(signal.SIGTERM)
        log, _ = rs.communicate(timeout=30)
    msgs = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    if not msgs:
        print("# rsyslogd: " + log[-1500:].replace("\n", "\n# "))
    return msgs


def syslog_test(d, events, transport):
    judge_syslog(syslog_messages(d, events, transport), transport)


SIEM_CONF = """
global(workDirectory="{d}")
module(load="imtcp")
module(load="mmpstrucdata")
input(type="imtcp" Address="127.0.0.1" Port="{port}" Ruleset="siem")
template(name="j" type="string" string="%jsonmesg%\\n")
ruleset(name="siem") {{
	action(type="mmpstrucdata" sd_name.lowercase="off")
	action(type="omfile" file="{d}/out.json" template="j")
}}
"""


def start_rsyslogd(d, conf_text):
    conf = os.path.join(d, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    return subprocess.Popen(["rsyslogd", "-n", "-f", conf, "-i", os.path.join(d, "pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def forwarder_test(d, events):
    """tools/kvm-pfi/dist/rsyslog-kvm-pfi.conf as shipped (only its SIEM
    address and listening port replaced) between the tool and a second
    rsyslogd standing in for the SIEM."""
    siem_dir, fwd_dir = tempfile.mkdtemp(dir=d), tempfile.mkdtemp(dir=d)
    siem_port, fwd_port = free_port(), free_port()
    shipped = open(os.path.join(os.environ["KVM_PFI_ROOT"],
                                "tools/kvm-pfi/dist/rsyslog-kvm-pfi.conf")).read()
    conf = (shipped.replace('port="5514"', f'port="{fwd_port}"')
            .replace('target="siem.example.org"', 'target="127.0.0.1"')
            .replace('port="6514"', f'port="{siem_port}"'))
    check("forwarder_conf_substituted", conf.count(str(siem_port)) == 1
          and conf.count(str(fwd_port)) == 1 and "127.0.0.1\"" in conf, conf)
    siem = start_rsyslogd(siem_dir, SIEM_CONF.format(d=siem_dir, port=siem_port))
    fwd = start_rsyslogd(fwd_dir, f'global(workDirectory="{fwd_dir}")\n' + conf)
    out = os.path.join(siem_dir, "out.json")
    try:
        check("forwarder_listening", wait_port(siem_port) and wait_port(fwd_port))
        t = subprocess.run([TOOL, "watch", "--format", "syslog", "--syslog-tcp",
                            f"127.0.0.1:{fwd_port}", "--replay", events],
                           capture_output=True, text=True, timeout=60)
        check("forwarder_tool_exit", t.returncode == 0, t.stderr)
        for _ in range(100):
            if os.path.exists(out) and sum(1 for _ in open(out)) >= len(RECORDS):
                break
            time.sleep(0.1)
    finally:
        logs = []
        for p in (fwd, siem):
            p.send_signal(signal.SIGTERM)
            logs.append(p.communicate(timeout=30)[0])
    msgs = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    if not msgs:
        print("# rsyslogd: " + "\n".join(logs)[-1500:].replace("\n", "\n# "))
    judge_syslog(msgs, "forwarded")


def judge_syslog(msgs, transport):
    if not check(f"syslog_{transport}_messages", len(msgs) == len(RECORDS),
                 f"{len(msgs)} messages"):
        return
    ok_hdr, ok_sd = True, True
    for rec, m in zip(RECORDS, msgs):
        name = rec["event"]
        hdr = (m.get("protocol-version"), m.get("app-name"), m.get("msgid"),
               m.get("syslogseverity"), m.get("syslogfacility"), m.get("procid"))
        want = ("1", "kvm-pfi", name, str(SEVERITY[name]), "3")
        if hdr[:5] != want or not hdr[5].isdigit():
            ok_hdr = False
            print(f"# syslog {transport}: {name}: header {hdr} want {want}")
        params = m.get("$!", {}).get("rfc5424-sd", {}).get("kvmpfi@32473", {})
        expect = {"event": name}
        for k, v in attrs_of(rec).items():
            if k == "data" and len(v) > 512:
                expect["data_bytes"] = str(len(v) // 2)
            else:
                expect[k] = str(v)
        if "time_ns" in rec:
            expect["time_ns"] = str(rec["time_ns"])
        got = {k: v for k, v in params.items() if not (name == "overrun" and k == "time_ns")}
        if got != expect:
            ok_sd = False
            print(f"# syslog {transport}: {name}: SD {got} want {expect} "
                  f"(raw {m.get('structured-data', '')[:300]})")
    check(f"syslog_{transport}_header", ok_hdr)
    check(f"syslog_{transport}_structured_data", ok_sd)
    det = msgs[[r["event"] for r in RECORDS].index("detection")]
    check(f"syslog_{transport}_msg", quoted(RULE) in det.get("msg", ""), det.get("msg"))


# -------------------------------------------------------------------- OCSF

class Schema:
    def __init__(self, path):
        s = json.load(open(path))
        self.s = s
        self.dict = s["dictionary"]["attributes"]
        self.types = s["dictionary"]["types"]["attributes"]
        cats = s["categories_meta"]["attributes"]
        # class_uid -> event name: category uid * 1000 + class uid.
        self.classes = {}
        for name, ev in s["events"].items():
            cat = self.category(name)
            if cat and ev.get("uid") is not None:
                self.classes[cats[cat]["uid"] * 1000 + ev["uid"]] = (name, cats[cat]["uid"])

    def category(self, name):
        ev = self.s["events"][name]
        while ev is not None:
            if ev.get("category"):
                return ev["category"]
            ev = self.s["events"].get(ev.get("extends")) if ev.get("extends") else None
        return None

    def merged(self, kind, name):
        """Attributes of a class or object with those it extends; enums
        are the union of the dictionary's, the base's and its own."""
        c = self.s[kind][name]
        base = self.merged(kind, c["extends"]) if c.get("extends") else {}
        out = dict(base)
        for k, v in c.get("attributes", {}).items():
            if k == "$include":
                continue
            enum = {**self.dict.get(k, {}).get("enum", {}), **out.get(k, {}).get("enum", {}),
                    **v.get("enum", {})}
            out[k] = {**self.dict.get(k, {}), **out.get(k, {}), **v}
            if enum:
                out[k]["enum"] = enum
        return out

    def scalar_ok(self, t, v):
        base = self.types.get(t, {}).get("type", t)
        if t in ("integer_t", "long_t", "timestamp_t", "port_t") or base in ("integer_t", "long_t"):
            return isinstance(v, int) and not isinstance(v, bool)
        if t == "boolean_t" or base == "boolean_t":
            return isinstance(v, bool)
        if t == "float_t" or base == "float_t":
            return isinstance(v, (int, float))
        if t == "json_t":
            return True
        return isinstance(v, str)

    def check_obj(self, value, attrs, where, errors, extra_ok=()):
        for k, a in attrs.items():
            if a.get("requirement") == "required" and k not in value:
                errors.append(f"{where}: required {k} missing")
        for k, v in value.items():
            if k not in attrs and k not in extra_ok:
                errors.append(f"{where}: {k} is not an attribute of this class/object")
                continue
            a = {**self.dict.get(k, {}), **attrs.get(k, {})}
            t = a.get("type")
            # These three are derived (checked in validate), not listed.
            enum = None if k in ("category_uid", "class_uid", "type_uid") else a.get("enum")
            items = v if a.get("is_array") else [v]
            if a.get("is_array") and not isinstance(v, list):
                errors.append(f"{where}.{k}: not an array")
                continue
            for item in items:
                if t == "object" or t in self.s["objects"]:
                    ot = t
                    if ot == "object":
                        if not isinstance(item, dict):
                            errors.append(f"{where}.{k}: not an object")
                        continue
                    if not isinstance(item, dict):
                        errors.append(f"{where}.{k}: not an object")
                        continue
                    self.check_obj(item, self.merged("objects", ot), f"{where}.{k}", errors)
                elif not self.scalar_ok(t, item):
                    errors.append(f"{where}.{k}: {item!r} is not a {t}")
                elif enum and str(item) not in enum:
                    errors.append(f"{where}.{k}: {item!r} is not in its enum {sorted(enum)}")

    def validate(self, ev):
        errors = []
        cls = self.classes.get(ev.get("class_uid"))
        if cls is None:
            return None, [f"class_uid {ev.get('class_uid')} is no class of the schema"]
        name, cat_uid = cls
        if ev.get("category_uid") != cat_uid:
            errors.append(f"category_uid {ev.get('category_uid')} is not {cat_uid}")
        if ev.get("type_uid") != ev["class_uid"] * 100 + ev.get("activity_id", -1):
            errors.append("type_uid is not class_uid * 100 + activity_id")
        # `device` comes with the host profile, which every class takes.
        self.check_obj(ev, self.merged("events", name), name, errors, extra_ok=("device",))
        if "device" in ev:
            self.check_obj(ev["device"], self.merged("objects", "device"), "device", errors)
        return name, errors


def ocsf_test(d, events):
    schema = Schema(SCHEMA)
    check("ocsf_schema_version", schema.s.get("version") == "1.5.0", schema.s.get("version"))
    p = subprocess.run([TOOL, "watch", "--format", "ocsf", "--replay", events],
                       capture_output=True, text=True, timeout=60)
    check("ocsf_tool_exit", p.returncode == 0, p.stderr)
    lines = [json.loads(l) for l in p.stdout.splitlines()]
    if not check("ocsf_lines", len(lines) == len(RECORDS), len(lines)):
        return
    want_class = {"detection": "detection_finding", "write-attempt": "detection_finding",
                  "page-resident": "memory_activity", "page-failed": "memory_activity",
                  "process-start": "process_activity", "process-exit": "process_activity"}
    ok_valid, ok_class, ok_unmapped = True, True, True
    for rec, ev in zip(RECORDS, lines):
        name, errors = schema.validate(ev)
        if errors:
            ok_valid = False
            print(f"# ocsf {rec['event']}: " + "; ".join(errors))
        if name != want_class.get(rec["event"], "device_config_state_change"):
            ok_class = False
            print(f"# ocsf {rec['event']}: class {name}")
        if rec["event"] != "overrun" and ev.get("unmapped") != rec:
            ok_unmapped = False
            print(f"# ocsf {rec['event']}: unmapped {str(ev.get('unmapped'))[:300]}")
        if "time_ns" in rec and ev.get("time") != rec["time_ns"] // 1_000_000:
            ok_valid = False
            print(f"# ocsf {rec['event']}: time {ev.get('time')}")
    check("ocsf_valid_against_schema", ok_valid)
    check("ocsf_classes", ok_class)
    check("ocsf_unmapped_is_the_event", ok_unmapped)
    det = lines[[r["event"] for r in RECORDS].index("detection")]
    check("ocsf_detection_2004", det.get("class_uid") == 2004 and det.get("severity_id") == 4
          and det.get("finding_info", {}).get("analytic", {}).get("name") == RULE, det)
    starts = [ev for rec, ev in zip(RECORDS, lines) if rec["event"] == "process-start"]
    exit_ = lines[[r["event"] for r in RECORDS].index("process-exit")]
    check("ocsf_process_1007", [e.get("activity_id") for e in starts] == [1, 1]
          and exit_.get("activity_id") == 2
          and starts[0].get("process", {}).get("pid") == 412
          and starts[0].get("process", {}).get("file", {}).get("path") == "/usr/bin/bash"
          and starts[0].get("process", {}).get("parent_process", {}).get("pid") == 1
          and "file" not in starts[1].get("process", {})
          and exit_.get("process", {}).get("name") == "bash", (starts, exit_))
    # The validator itself must reject what the schema forbids.
    bad = dict(det)
    del bad["finding_info"]
    bad["severity_id"] = 42
    _, errors = schema.validate(bad)
    check("ocsf_validator_rejects", any("finding_info" in e for e in errors)
          and any("severity_id" in e for e in errors), errors)


def main():
    d = tempfile.mkdtemp(prefix="kvm-pfi-formats-")
    events = write_records(d)
    journald_test(d, events)
    syslog_test(d, events, "unix")
    syslog_test(d, events, "tcp")
    forwarder_test(d, events)
    ocsf_test(d, events)
    return ktap.report(totals=True)


sys.exit(main())
