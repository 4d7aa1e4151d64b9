#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a circle.

    python3 scripts/module_cycles.py            # exit 1 and print each circle found

A module is a file of src/ (`src/failover/engine.rs` is `failover::engine`, a `mod.rs` is its
folder's module). An edge A -> B is a path in A's code (outside its `#[cfg(test)]` part) that
names B: `crate::b::…`, `super::…`, `self::…`. A parent does not depend on a child merely by
declaring it with `mod`. The check is textual on purpose (no compiler plugin to install), and
errs on the side of seeing an edge: a name in a comment or a string counts too, so keep such
mentions in doc comments free of `crate::` paths.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


TEST_BLOCK = re.compile(r"#\[cfg\([^\]]*\btest\b[^\]]*\)\]\s*mod \w+\s*\{")


def non_test_code(text):
    """The file's text up to its first inline test module (tests may import anything). A
    `#[cfg(test)] mod tests;` declaration is not cut: its file is a module of its own."""
    m = TEST_BLOCK.search(text)
    return text if m is None else text[: m.start()]


def strip_comments(text):
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        out.append(line)
    return "\n".join(out)


def main():
    files = [p for p in ROOT.rglob("*.rs") if p.name != "main.rs"]
    modules = {module_of(p): p for p in files}
    edges = {m: set() for m in modules}
    for mod, path in modules.items():
        code = strip_comments(non_test_code(path.read_text()))
        for kind, rest in PATH.findall(code):
            segs = [s for s in rest.split("::") if s]
            if kind == "crate":
                base = []
            elif kind == "super":
                base = list(mod[:-1])
                while segs and segs[0] == "super":
                    base = base[:-1]
                    segs = segs[1:]
            else:
                base = list(mod)
            full = base + segs
            # The longest prefix that is a module of ours.
            target = None
            for n in range(len(full), -1, -1):
                if tuple(full[:n]) in modules:
                    target = tuple(full[:n])
                    break
            if target is None or target == mod or target == ():
                continue
            # A module naming its own child is structure, not a dependency back (re-exports
            # of a child are counted below).
            if target[: len(mod)] == mod:
                continue
            edges[mod].add(target)
        # `pub use child::X` re-exports: naming the parent's X depends on the child.
        for child in re.findall(r"pub use (\w+)::", code):
            if mod + (child,) in modules:
                edges[mod].add(mod + (child,))

    # Tarjan's strongly connected components.
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
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
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    name = lambda m: "::".join(m) or "crate"
    if not sccs:
        print(f"no import circle among {len(modules)} modules")
        return 0
    for comp in sccs:
        members = sorted(comp)
        print("import circle: " + ", ".join(name(m) for m in members))
        for m in members:
            inside = sorted(name(t) for t in edges[m] if t in comp)
            print(f"  {name(m)} -> {', '.join(inside)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
