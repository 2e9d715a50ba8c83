#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Prints the import graph of the module's Rust files (rust/) and fails if
it has a cycle.

An edge A -> B means file A names an item of file B: in a `use` (nested
groups included) or in a path in code (`crate::vm::AttachedVm`,
`super::Targets`, `self::page::Page`). Paths resolve to the deepest file
that exists: `crate::targets::scans::ScanJob` is rust/targets/scans.rs,
`crate::bindings::uapi` is rust/bindings.rs. A `mod` declaration is not an
edge (it says where a file is, not what it uses). Items the `module!` macro
generates in the crate root (`crate::module_parameters`, `crate::KvmPfi`
for THIS_MODULE) are the module's identity and parameters: they count as
the node `module!`, not as the root file, which only wires.

    scripts/import-graph.py            # exit 1 and print each cycle
    scripts/import-graph.py --dot      # the graph in Graphviz dot
    scripts/import-graph.py --self-test  # the checker finds cycles it must
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rust")
CRATE_ROOT = "kvm_pfi.rs"
MACRO_ITEMS = {"module_parameters", "KvmPfi", "THIS_MODULE"}


def module_of(rel):
    """Module path (list) of a file relative to rust/."""
    if rel == CRATE_ROOT:
        return []
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def file_of(mod):
    """The file of module path `mod`, or None."""
    if not mod:
        return CRATE_ROOT
    for cand in ("/".join(mod) + ".rs", "/".join(mod) + "/mod.rs"):
        if os.path.exists(os.path.join(ROOT, cand)):
            return cand
    return None


def strip(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    return re.sub(r'"(\\.|[^"\\])*"', '""', src)


def use_paths(tree):
    """Expands `a::{b, c::{d, e}}` into ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, re.S)
    if not m:
        return [re.sub(r"\s+as\s+\w+$", "", tree)]
    prefix, inner = m.group(1), m.group(2)
    out, depth, cur = [], 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            if cur.strip():
                out += [prefix + "::" + p for p in use_paths(cur)]
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    return out


def resolve(path, here):
    """(file or None) a path names, seen from module `here`."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = [], segs[1:]
        if segs and segs[0] in MACRO_ITEMS:
            return "module!"
    elif segs[0] == "super":
        base = list(here)
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    elif segs[0] == "self":
        base, segs = list(here), segs[1:]
    else:
        return None
    best = None
    for i in range(len(segs) + 1):
        f = file_of(base + segs[:i])
        if f:
            best = f
    return best


def graph():
    edges = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs") or name.endswith("_generated.rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            if rel.startswith("pfi_core/") and name == "lib.rs":
                continue  # the host crate's root: include!s mod.rs
            here = module_of(rel)
            src = strip(open(os.path.join(dirpath, name)).read())
            paths = []
            for m in re.finditer(r"\buse\s+([^;]+);", src):
                paths += use_paths(m.group(1))
            src_nouse = re.sub(r"\buse\s+[^;]+;", "", src)
            paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", src_nouse)
            deps = edges.setdefault(rel, set())
            for p in paths:
                f = resolve(p, here)
                if f and f != rel:
                    deps.add(f)
    return edges


def cycles(edges):
    """Every elementary cycle found by DFS (one per back edge)."""
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(edges.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def self_test():
    """The checker on small trees it must judge right: a cycle through a
    `use` group, one through a path in code and `super::`, and none."""
    import tempfile
    global ROOT
    cases = [
        ({"a.rs": "use crate::{b::X, c};", "b.rs": "fn f() { crate::a::g(); }", "c.rs": ""}, 1),
        ({"t/mod.rs": "use self::p::Page;", "t/p.rs": "use super::Set;", "t/q.rs": "use super::Set;"}, 1),
        ({"t/mod.rs": "use self::p::Page; mod q;", "t/p.rs": "", "t/q.rs": "use super::p::Page; use super::Set;",
          "u.rs": "use crate::module_parameters; use crate::t::q::X; // crate::u2::y"}, 0),
    ]
    saved, bad = ROOT, 0
    for files, want in cases:
        with tempfile.TemporaryDirectory() as d:
            for name, text in dict(files, **{CRATE_ROOT: "mod a;"}).items():
                os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
                open(os.path.join(d, name), "w").write(text)
            ROOT = d
            got = len(cycles(graph()))
            ROOT = saved
        if (got > 0) != (want > 0):
            print(f"self-test: {sorted(files)}: {got} cycles, expected {want}")
            bad += 1
    print(f"import-graph self-test: {len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph kvm_pfi {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    found = cycles(edges)
    n_edges = sum(len(v) for v in edges.values())
    for c in found:
        print("import cycle: " + " -> ".join(c))
    print(f"import graph of rust/: {len(edges)} files, {n_edges} edges, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
