#!/usr/bin/env python3
"""Checks two rules of ARCHITECTURE.md on the workspace's crates:

- no import cycle between the modules of a crate (src/): every `crate::`,
  `super::` and `self::` path, `use` groups included, is resolved to the
  longest module it names, and a parent's `child::` paths count as imports
  of the child; two or more modules that reach each other are a cycle;
- no source file (src/, benches/, tests/) over 600 lines unless its `//!`
  doc says why with "Over 600 lines:".

Run by `make lint`. Prints each cycle with its edges and each long file,
and exits 1; exits 0 when the tree keeps both rules.
"""
import os
import re
import sys

MAX_LINES = 600
CRATES = ["protocol", "server", "publisher", "forwarder", "harness", "loadtests"]
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
GROUP = re.compile(r"\b(crate|super|self)::\{")


def modules(src):
    """Module path (a tuple) -> file, for every .rs file under src."""
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                found[tuple(parts)] = path
    return found


def code_of(path):
    """The file without comments and without its unit-test module."""
    text = re.sub(r"//[^\n]*", "", open(path).read())
    cut = text.find("#[cfg(test)]\nmod tests")
    return text if cut < 0 else text[:cut]


def split_group(prefix, body):
    """`a, b::{c, d}` after `prefix::{` -> [prefix+a, prefix+b+c, ...]."""
    items, depth, current = [], 0, ""
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    paths = []
    for item in (i.strip() for i in items):
        nested = re.match(r"^([\w:]*?)::\{(.*)\}$", item, re.S)
        if nested:
            paths += split_group(prefix + nested.group(1).split("::"), nested.group(2))
        elif item:
            paths.append(prefix + [p for p in item.split("::") if p])
    return paths


def paths_in(code):
    paths = [m.group(1).split("::") for m in PATH.finditer(code)]
    for m in GROUP.finditer(code):
        end, depth = m.end(), 1
        while depth:
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        paths += split_group([m.group(1)], code[m.end() : end - 1])
    return paths


def resolve(mods, me, path):
    """The module a path from module `me` lands in, or None."""
    if path[0] == "crate":
        base, rest = [], path[1:]
    elif path[0] == "self":
        base, rest = list(me), path[1:]
    else:
        base, rest = list(me), path
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    full = base + [re.sub(r"\W.*", "", p) for p in rest]
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return tuple(full[:n])
    return None


def cycles(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for me, path in mods.items():
        code = code_of(path)
        for p in paths_in(code):
            to = resolve(mods, me, p)
            if to is not None and to != me:
                edges[me].add(to)
        for child in mods:
            if len(child) == len(me) + 1 and child[: len(me)] == me:
                if re.search(r"(?<![\w:])" + child[-1] + r"::", code):
                    edges[me].add(child)
    # Tarjan's strongly connected components.
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10_000)
    for v in mods:
        if v not in index:
            visit(v)
    return [(c, edges) for c in found]


def name(module):
    return "::".join(module) or "crate root"


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    broken = False
    for crate in CRATES:
        src = os.path.join(top, crate, "src")
        for component, edges in cycles(src):
            broken = True
            print(f"{crate}: import cycle: {', '.join(sorted(map(name, component)))}")
            for a in component:
                for b in sorted(edges[a] & set(component)):
                    print(f"    {name(a)} -> {name(b)}")
        for folder in ("src", "benches", "tests"):
            for dirpath, _, files in os.walk(os.path.join(top, crate, folder)):
                for file in (f for f in files if f.endswith(".rs")):
                    path = os.path.join(dirpath, file)
                    text = open(path).read()
                    lines = text.count("\n")
                    if lines > MAX_LINES and "Over 600 lines:" not in text[:4000]:
                        broken = True
                        print(
                            f"{os.path.relpath(path, top)}: {lines} lines; split it, "
                            f'or say why in its //! doc ("Over 600 lines: ...")'
                        )
    if broken:
        sys.exit(1)
    print("layers: no import cycle in any crate, no source file over 600 lines")


if __name__ == "__main__":
    main()
