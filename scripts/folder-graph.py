#!/usr/bin/env python3
"""Print the library's folder graph and fail on a cycle.

A folder of src/ and include/capsnet/ (data, engine, ops, ...) depends on another when one of its
files includes "capsnet/<other>/...". The folders must form a directed acyclic graph: a reader can
then learn the library bottom up, and a change to a folder cannot reach back into what it uses.

Usage: scripts/folder-graph.py [ROOT]   (prints one line per folder, lowest first; exit 1 on a cycle)
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"capsnet/([a-z_]+)/', re.MULTILINE)


def folder_of(root, path):
    rel = path.relative_to(root)
    parts = rel.parts
    if parts[0] == "include":  # include/capsnet/<folder>/...
        return parts[2] if len(parts) > 3 else None
    return parts[1] if len(parts) > 2 else None  # src/<folder>/...


def graph(root):
    edges = {}
    for base in (root / "src", root / "include" / "capsnet"):
        for path in sorted(base.rglob("*")):
            if path.suffix not in (".h", ".cpp", ".cu", ".cuh") or not path.is_file():
                continue
            folder = folder_of(root, path)
            if folder is None:
                continue
            uses = edges.setdefault(folder, {})
            for used in INCLUDE.findall(path.read_text(errors="replace")):
                if used != folder:
                    uses.setdefault(used, str(path.relative_to(root)))
    for uses in list(edges.values()):
        for used in uses:
            edges.setdefault(used, {})
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for used in sorted(edges[node]):
            if state.get(used) == "open":
                return stack[stack.index(used):] + [used]
            if used not in state:
                cycle = visit(used)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layers(edges):
    """Each folder's level: 0 for folders that use no other, else one above the highest it uses."""
    level = {}

    def of(node):
        if node not in level:
            level[node] = 1 + max((of(u) for u in edges[node]), default=-1)
        return level[node]

    for node in edges:
        of(node)
    return level


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    edges = graph(root)
    cycle = find_cycle(edges)
    if cycle:
        print("folder cycle: " + " -> ".join(cycle), file=sys.stderr)
        for a, b in zip(cycle, cycle[1:]):
            print(f"  {a} -> {b}: {edges[a][b]}", file=sys.stderr)
        print("fix: move the shared code to a folder below both, or invert the dependency",
              file=sys.stderr)
        return 1
    level = layers(edges)
    for node in sorted(edges, key=lambda n: (level[n], n)):
        uses = " ".join(sorted(edges[node])) or "-"
        print(f"{level[node]}  {node:<9} uses {uses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
