#!/usr/bin/env python3
"""Fails when the modules inside a crate import each other in a circle.

Cargo forbids a circle between crates; inside one, the compiler allows it, and a helper
in the wrong place (an error type that names a window, a window that names the error)
quietly ties modules together. Reads `use crate::x` / `crate::x::` paths (and `super::x`
in top-level modules) outside comments and `#[cfg(test)]` code.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")


def imports(crate_src):
    graph = {}
    for folder, _, files in os.walk(crate_src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, crate_src)[:-3]
            module = relative.split(os.sep)[0]
            if module in ("lib", "main"):
                continue
            text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
            code = "\n".join(
                line for line in text.split("\n") if not line.strip().startswith("//")
            )
            used = set(re.findall(r"\bcrate::(\w+)", code))
            if os.sep not in relative:
                used |= set(re.findall(r"\bsuper::(\w+)", code))
            graph.setdefault(module, set()).update(used - {module})
    return {m: {u for u in used if u in graph} for m, used in graph.items()}


def circle(graph):
    """One circle of the graph as a list of modules, or None."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for nxt in sorted(graph[module]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


failed = False
for crate in sorted(os.listdir(ROOT)):
    src = os.path.join(ROOT, crate, "src")
    if not os.path.isdir(src):
        continue
    found = circle(imports(src))
    if found:
        print(f"crates/{crate}: modules import each other in a circle: {' -> '.join(found)}")
        failed = True
sys.exit(1 if failed else 0)
