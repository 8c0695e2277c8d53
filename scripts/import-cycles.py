#!/usr/bin/env python3
"""Lists import circles between the modules of a crate.

    scripts/import-cycles.py game-server/src

A module is a file (`chat/room.rs` is `chat::room`, `chat/mod.rs` is
`chat`). An edge a -> b is a `crate::b...` path in a's code (comments
ignored), from a file to another file; a parent module naming its own
children (`mod.rs` -> `chat::room`) does not count. Prints each strongly
connected group of two or more modules and exits 1 if there is one.
"""
import os
import re
import sys

root = sys.argv[1]
mods = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib", "main"):
            rel = rel[:-1]
        mods["::".join(rel)] = os.path.join(dirpath, f)


def resolve(path):
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in mods:
            return cand
    return None


edges = {m: set() for m in mods}
for m, f in mods.items():
    code = []
    in_tests = False
    for line in open(f, encoding="utf-8"):
        s = line.strip()
        if s.startswith("//"):
            continue
        if s.startswith("#[cfg(test)]"):
            in_tests = True
        if in_tests:
            continue
        code.append(line)
    text = "".join(code)
    for g in re.findall(r"crate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)", text):
        t = resolve(g)
        if t is None or t == m or t == "":
            continue
        if t.startswith(m + "::") or (m == "" ):
            continue  # a parent naming its own children
        if m.startswith(t + "::"):
            continue  # a child naming its parent's items (re-exports)
        edges[m].add(t)
    for g in re.findall(r"use super::(?:\{([^}]*)\}|([a-z_][a-z0-9_]*))", text):
        pass

index = {}
low = {}
stack = []
on = set()
sccs = []
counter = [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in mods:
    if v not in index:
        strong(v)
for c in sccs:
    inside = [f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c]
    print("circle:", ", ".join(c))
    for e in inside:
        print("   ", e)
sys.exit(1 if sccs else 0)
