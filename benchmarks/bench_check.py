"""``pcgraph check`` on large and hostile inputs: wall time and peak memory per file.

Issue #13's target: any input of at most 1 MB is checked in under 5 s with under 500 MB peak
memory. The script writes generated topologies into a temporary folder, runs the real command
line (``python -m pcgraph check FILE``) on each in a fresh process, and reports the wall time,
the peak resident memory of that process (its own ``ru_maxrss``, printed by a wrapper as it
exits) and the exit code:

- ``chain``: a valid chain of N nodes (the largest that fits in the size);
- ``wide``: a valid DAG of N nodes with ~3 parents each (many edges, cycles analysis on a DAG);
- ``cyclic``: the same with edges in both directions (cycle detection and naming);
- ``aliases``: a billion-laughs alias bomb in a node shape;
- ``brackets``: deeply nested flow brackets;
- ``startup``: the smallest valid topology (the import and start-up cost alone).

Usage::

    python benchmarks/bench_check.py [--size-kb 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _node(name: str, size: int = 8, role: str | None = None) -> str:
    extra = f", role: {role}" if role else ""
    return f"- {{name: {name}, shape: {size}{extra}}}\n"


def _edge(src: str, tgt: str) -> str:
    return f"- {{source: {src}, target: {tgt}, op: linear}}\n"


def chain(limit: int) -> str:
    head = "name: chain\nnodes:\n"
    nodes, edges, n = [], [], 0
    size = len(head) + len("edges:\n")
    while True:
        role = "input" if n == 0 else None
        node = _node(f"n{n}", role=role)
        edge = _edge(f"n{n - 1}", f"n{n}") if n else ""
        if size + len(node) + len(edge) + 40 > limit:
            break
        nodes.append(node)
        edges.append(edge)
        size += len(node) + len(edge)
        n += 1
    nodes[-1] = _node(f"n{n - 1}", role="output")
    return head + "".join(nodes) + "edges:\n" + "".join(e for e in edges if e)


def dag(limit: int, *, cyclic: bool, seed: int = 0) -> str:
    rng = random.Random(seed)
    head = f"name: {'cyclic' if cyclic else 'wide'}\nnodes:\n"
    nodes, edges = [_node("x", role="input")], []
    size = len(head) + len(nodes[0]) + len("edges:\n")
    n = 1
    while True:
        name = f"g{n}"
        new_edges = []
        for _ in range(3):
            src = "x" if n == 1 else f"g{rng.randrange(1, n)}" if n > 1 else "x"
            new_edges.append(_edge(src, name))
            if cyclic and src != "x":
                new_edges.append(_edge(name, src))
        node = _node(name)
        cost = len(node) + sum(map(len, new_edges))
        if size + cost + 60 > limit:
            break
        nodes.append(node)
        edges.extend(dict.fromkeys(new_edges))  # no duplicate edges
        size += cost
        n += 1
    nodes.append(_node("y", role="output"))
    edges.append(_edge(f"g{n - 1}", "y"))
    return head + "".join(nodes) + "edges:\n" + "".join(edges)


def aliases(limit: int) -> str:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "\n".join(lines)
    return (
        text + "\nname: bomb\nnodes:\n- {name: x, shape: *a9, role: input}\n"
        "- {name: y, shape: 3, role: output}\nedges:\n- {source: x, target: y}\n"
    )[:limit]


def brackets(limit: int) -> str:
    depth = max(1, (limit - 200) // 2)
    return "name: deep\nnodes: " + "[" * depth + "]" * depth + "\nedges: []\n"


def startup(limit: int) -> str:
    return (
        "name: tiny\nnodes:\n- {name: x, shape: 4, role: input}\n"
        "- {name: y, shape: 2, role: output}\nedges:\n- {source: x, target: y}\n"
    )


CASES = {
    "startup": startup,
    "chain": chain,
    "wide": lambda n: dag(n, cyclic=False),
    "cyclic": lambda n: dag(n, cyclic=True),
    "aliases": aliases,
    "brackets": brackets,
}


_CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['pcgraph', 'check', sys.argv[1]]\n"
    "try:\n"
    "    runpy.run_module('pcgraph', run_name='__main__')\n"
    "finally:\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    print(f'@@peak_kib={peak}', file=sys.stderr)\n"
)


def run_one(path: Path) -> dict[str, Any]:
    """``pcgraph check path`` in a fresh process: wall s, its own peak RSS in MB, exit code."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - start
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    peak = [int(line.split("=")[1]) for line in lines if line.startswith("@@peak_kib=")]
    out = [line for line in lines if not line.startswith("@@")]
    return {
        "wall_s": round(wall, 2),
        "peak_mb": round(peak[0] / 1024, 1) if peak else None,
        "exit": proc.returncode,
        "first_line": out[0][:100] if out else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-kb", type=int, default=1000, help="size of the generated files")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = ap.parse_args(argv)
    limit = args.size_kb * 1000
    rows: dict[str, Any] = {}
    print(f"pcgraph check, files ≤ {args.size_kb} KB, python {sys.version.split()[0]}")
    print(f"{'case':>9} {'KB':>7} {'wall s':>7} {'peak MB':>8} {'exit':>4}  first line")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            text = CASES[name](limit)
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text, encoding="utf-8")
            row = run_one(path) | {"kb": round(len(text.encode()) / 1000, 1)}
            rows[name] = row
            print(
                f"{name:>9} {row['kb']:7.1f} {row['wall_s']:7.2f} {row['peak_mb']!s:>8} "
                f"{row['exit']:4d}  {row['first_line']}"
            )
    slowest = max(rows.values(), key=lambda r: r["wall_s"])
    print(f"slowest: {slowest['wall_s']} s (target < 5 s); loadavg {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
