#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Cuts a kernel BTF blob down to the members the Linux guest profile reads
(the FIELDS table of rust/pfi_core/linux_profile.rs), for a small unit-test
fixture with the real layout: the same offsets, sizes and nesting (the
anonymous structs and unions the members sit in), every other member left
out, pointers made `void *`.

    scripts/btf-cut.py vmlinux.btf rust/pfi_core/tests/fixtures/linux-7.3-btf-cut.bin

A vmlinux without CONFIG_DEBUG_INFO_BTF gets its blob from its DWARF with
`pahole --btf_encode_detached=vmlinux.btf -J vmlinux`.
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE = os.path.join(HERE, "..", "rust", "pfi_core", "linux_profile.rs")

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


def extra_len(kind, vlen):
    if kind in (INT, VAR, DECL_TAG):
        return 4
    if kind == ARRAY:
        return 12
    if kind in (STRUCT, UNION, DATASEC, ENUM64):
        return 12 * vlen
    if kind in (ENUM, FUNC_PROTO):
        return 8 * vlen
    return 0


def read_btf(blob):
    magic, version, _flags, hdr_len, toff, tlen, soff, slen = struct.unpack_from("<HBBIIIII", blob)
    assert magic == 0xEB9F and version == 1
    types = blob[hdr_len + toff:hdr_len + toff + tlen]
    strs = blob[hdr_len + soff:hdr_len + soff + slen]
    recs = [None]
    at = 0
    while at < len(types):
        name_off, info, st = struct.unpack_from("<III", types, at)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        n = extra_len(kind, vlen)
        recs.append(dict(name=strs[name_off:strs.index(b"\0", name_off)].decode(), kind=kind,
                         vlen=vlen, kflag=kflag, st=st, extra=types[at + 12:at + 12 + n]))
        at += 12 + n
    return recs


def members(rec):
    out = []
    for i in range(rec["vlen"]):
        out.append(struct.unpack_from("<III", rec["extra"], 12 * i))
    return out


class Cutter:
    def __init__(self, recs, names):
        self.recs, self.names = recs, names
        self.out = []
        self.strings = bytearray(b"\0")
        self.memo = {}

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name, kind, vlen, kflag, st, extra=b""):
        info = (kind << 24) | vlen | (kflag << 31)
        self.out.append(struct.pack("<III", self.s(name), info, st) + extra)
        return len(self.out)

    def strip(self, tid):
        while tid and self.recs[tid]["kind"] in MODIFIERS:
            tid = self.recs[tid]["st"]
        return tid

    def contains(self, tid, wanted):
        """Whether aggregate tid has (directly or through anonymous members) one of wanted."""
        r = self.recs[self.strip(tid)]
        for name_off, mtype, _ in members(r):
            name = self.name_of(r, name_off)
            if name in wanted:
                return True
            if not name and self.recs[self.strip(mtype)]["kind"] in (STRUCT, UNION) and self.contains(mtype, wanted):
                return True
        return False

    def name_of(self, _rec, name_off):
        return self.strtab[name_off:self.strtab.index(b"\0", name_off)].decode()

    def copy(self, tid, wanted=None):
        """New id of a copy of tid; aggregates keep only members in wanted."""
        if tid == 0:
            return 0
        key = (tid, frozenset(wanted) if wanted is not None else None)
        if key in self.memo:
            return self.memo[key]
        r = self.recs[tid]
        k = r["kind"]
        if k in (INT, FLOAT):
            nid = self.add(r["name"], k, 0, 0, r["st"], r["extra"])
        elif k in (ENUM, ENUM64):
            nid = self.add(r["name"], ENUM, 0, 0, r["st"])
        elif k == PTR:
            nid = self.add("", PTR, 0, 0, 0)
        elif k in MODIFIERS:
            inner = self.copy(r["st"], wanted)
            nid = self.add(r["name"], k, 0, 0, inner)
        elif k == ARRAY:
            elem, index, n = struct.unpack("<III", r["extra"])
            e, i = self.copy(elem), self.copy(index)
            nid = self.add("", ARRAY, 0, 0, 0, struct.pack("<III", e, i, n))
        elif k in (STRUCT, UNION):
            if wanted is None:
                wanted = self.names.get(r["name"], set())
            kept = []
            for name_off, mtype, off in members(r):
                name = self.name_of(r, name_off)
                if name in wanted:
                    kept.append((name, self.copy(mtype), off))
                elif not name and self.recs[self.strip(mtype)]["kind"] in (STRUCT, UNION) \
                        and self.contains(mtype, wanted):
                    kept.append(("", self.copy(mtype, wanted), off))
            extra = b""
            ids = []
            for name, mt, off in kept:
                ids.append((name, mt, off))
            # Children first (above), then this record: ids stay valid.
            nid = None
            extra = b"".join(struct.pack("<III", self.s(n), mt, off) for n, mt, off in ids)
            nid = self.add(r["name"], k, len(ids), r["kflag"], r["st"], extra)
        else:
            nid = self.add("", PTR, 0, 0, 0)  # functions and the like: never a member here
        self.memo[key] = nid
        return nid


def main():
    src, dst = sys.argv[1], sys.argv[2]
    blob = open(src, "rb").read()
    recs = read_btf(blob)
    _m, _v, _f, hdr_len, _to, _tl, soff, slen = struct.unpack_from("<HBBIIIII", blob)
    fields = re.findall(r'\("(\w+)", "(\w+)", Expect::', open(PROFILE).read())
    names = {}
    for s, m in fields:
        names.setdefault(s, set()).add(m)
    c = Cutter(recs, names)
    c.strtab = blob[hdr_len + soff:hdr_len + soff + slen]
    for s in names:
        tid = next(i for i, r in enumerate(recs) if r and r["kind"] in (STRUCT, UNION) and r["name"] == s)
        c.copy(tid)
    types = b"".join(c.out)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(c.strings))
    open(dst, "wb").write(hdr + types + bytes(c.strings))
    print(f"{dst}: {len(c.out)} types, {len(types) + len(c.strings) + 24} bytes")


if __name__ == "__main__":
    main()
