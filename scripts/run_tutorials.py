"""Execute the tutorials (``docs/tutorials/*.md``) and weave what their code prints and draws into
the pages.

A tutorial is a Markdown page whose ```` ```python ```` blocks run in order, in one namespace, in a
fresh Python process started in the repository root (so that registrations, seeds and matplotlib
state never leak from one page into another). After each block the runner records:

- everything the block printed (stdout and stderr, in order);
- every matplotlib figure left open (``plt.show()`` is a no-op here), and a
  ``matplotlib.figure.Figure`` that is the value of the block's last line (pcgraph.viz draws
  without pyplot), as PNGs; other values are not shown (a page prints what it means to show);
- the block's wall time.

The code runs on one CPU thread (``PCGRAPH_TUTORIAL_THREADS`` changes it), which the page states
with its timing.

The documentation build calls this through the mkdocs hook ``docs/_ext/tutorials.py``: every
``mkdocs build`` executes the tutorials and a failing block fails the build with the page, the
block's line and the traceback. Results are cached under ``build/tutorials/`` keyed by the page,
this script and every file of ``pcgraph/`` and ``topologies/``, so an unchanged tree is not run
twice; ``PCGRAPH_TUTORIALS_CACHE=0`` always runs them.

A page states its time budget in its front matter (``budget_s: 20``); the page shows the measured
time beside it. From the command line::

    python scripts/run_tutorials.py                      # run every tutorial, print outputs+times
    python scripts/run_tutorials.py docs/tutorials/first-pcn.md --fresh
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
CACHE = REPO / "build" / "tutorials"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class BlockRun:
    """What one code block did."""

    line: int  # 1-based line of the block's first code line in the page
    output: str
    figures: tuple[str, ...]  # base64 PNGs
    alts: tuple[str, ...]  # a short description of each figure (its titles)
    seconds: float


@dataclasses.dataclass(frozen=True)
class PageRun:
    """One executed tutorial."""

    page: str
    blocks: tuple[BlockRun, ...]
    seconds: float
    machine: str
    budget_s: float | None
    error: str | None = None  # the failing block's traceback; blocks holds those before it

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PageRun:
        data = json.loads(text)
        blocks = tuple(
            BlockRun(**{**b, "figures": tuple(b["figures"]), "alts": tuple(b["alts"])})
            for b in data.pop("blocks")
        )
        return cls(blocks=blocks, **data)


def code_blocks(markdown: str) -> list[tuple[int, str]]:
    """The ```python blocks of a page, as (first code line, 1-based; code)."""
    return [(markdown.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(markdown)]


def budget_s(markdown: str) -> float | None:
    """The page's ``budget_s`` from its front matter, or None."""
    front = FRONT_MATTER.match(markdown)
    found = re.search(r"^budget_s:\s*([0-9.]+)\s*$", front.group(0), re.M) if front else None
    return float(found.group(1)) if found else None


def machine() -> str:
    """The CPU, its thread count and the torch version, in one line."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return f"{cpu}, {threads} thread{'s' if threads != 1 else ''}, torch {torch.__version__}"


# --- the child process: run one page --------------------------------------------------------------
def _figure_alt(fig: Any) -> str:
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    text = "; ".join(t for t in [sup, *titles] if t)
    return text or "figure drawn by the code above"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _execute(page: Path) -> PageRun:
    import matplotlib
    import torch

    # One thread: the tutorials are small, and on a shared machine a second thread that waits
    # for a busy core makes a step many times slower; the timings shown are then reproducible.
    torch.set_num_threads(int(os.environ.get("PCGRAPH_TUTORIAL_THREADS", "1")))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.show = lambda *args, **kwargs: None  # the runner collects the open figures itself
    text = page.read_text(encoding="utf-8")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    blocks: list[BlockRun] = []
    started = time.perf_counter()
    error = None
    for line, code in code_blocks(text):
        out = io.StringIO()
        t0 = time.perf_counter()
        shown: list[Any] = []
        try:
            tree = ast.parse(code, filename=f"{page.name}:{line}")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                # line numbers of tracebacks are the page's
                ast.increment_lineno(tree, line - 1)
                exec(compile(tree, str(page), "exec"), namespace)
                if last is not None:
                    expr = ast.Expression(ast.increment_lineno(last, line - 1).value)
                    value = eval(compile(expr, str(page), "eval"), namespace)
                    if isinstance(value, Figure):
                        shown.append(value)
        except Exception:
            error = f"{page.name}, block at line {line}:\n{out.getvalue()}{traceback.format_exc()}"
        figures = [plt.figure(n) for n in plt.get_fignums()]
        figures += [f for f in shown if f not in figures]
        blocks.append(
            BlockRun(
                line=line,
                output=out.getvalue(),
                figures=tuple(_png(f) for f in figures),
                alts=tuple(_figure_alt(f) for f in figures),
                seconds=time.perf_counter() - t0,
            )
        )
        plt.close("all")
        if error:
            break
    return PageRun(
        page=page.name,
        blocks=tuple(blocks),
        seconds=time.perf_counter() - started,
        machine=machine(),
        budget_s=budget_s(text),
        error=error,
    )


# --- the parent: cache, subprocess, weaving ------------------------------------------------------
def cache_key(page: Path) -> str:
    """A hash of the page, this script and every file the code could read from the package."""
    digest = hashlib.sha256(page.read_bytes())
    digest.update(Path(__file__).read_bytes())
    for root in (REPO / "pcgraph", REPO / "topologies"):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(REPO).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def run_page(page: Path, *, fresh: bool = False, cache: Path = CACHE) -> PageRun:
    """Execute a tutorial in a fresh process (or read the cached run of the same tree).

    Args:
        page: the tutorial's Markdown file.
        fresh: run it even when ``cache`` holds a run of the same page and package.
        cache: where runs are kept (one per page, replaced by a successful new run).
    """
    page = page.resolve()
    use_cache = not fresh and os.environ.get("PCGRAPH_TUTORIALS_CACHE", "1") != "0"
    cached = cache / f"{page.stem}-{cache_key(page)}.json"
    if use_cache and cached.is_file():
        return PageRun.from_json(cached.read_text(encoding="utf-8"))
    cache.mkdir(parents=True, exist_ok=True)
    result = cache / f"{page.stem}.running.json"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(page), "--result", str(result)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{page.name}: the tutorial runner failed:\n{done.stderr[-4000:]}")
    run = PageRun.from_json(result.read_text(encoding="utf-8"))
    result.unlink()
    if run.error is None:
        for old in cache.glob(f"{page.stem}-*.json"):
            old.unlink()
        cached.write_text(run.to_json(), encoding="utf-8")
    return run


def figure_names(run: PageRun) -> list[tuple[str, bytes]]:
    """(file name, PNG bytes) of every figure of a run, in page order."""
    stem = Path(run.page).stem
    return [
        (f"{stem}-{i + 1}-{k + 1}.png", base64.b64decode(png))
        for i, block in enumerate(run.blocks)
        for k, png in enumerate(block.figures)
    ]


def _output_block(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    block = f"{fence}text\n{text.rstrip()}\n{fence}"
    return f'<div class="tutorial-output" markdown>\n\n{block}\n\n</div>'


def _timing_note(run: PageRun) -> str:
    budget = f" (budget: {run.budget_s:g} s)" if run.budget_s else ""
    return (
        f'!!! info "Executed when this site was built"\n'
        f"    Every code block below ran in order when the documentation was built, and its "
        f"printed output and figures are shown under it. The whole page took "
        f"**{run.seconds:.1f} s**{budget} on {run.machine}."
    )


def weave(markdown: str, run: PageRun, *, figures_dir: str = "figures") -> str:
    """The page with each block's output and figures under it and the timing under the title."""
    if run.error:
        raise RuntimeError(f"a tutorial failed: {run.error}")
    matches = list(FENCE.finditer(markdown))
    if len(matches) != len(run.blocks):
        raise RuntimeError(
            f"{run.page}: the page has {len(matches)} python blocks but the run has "
            f"{len(run.blocks)}; the run is stale"
        )
    names = iter(name for name, _ in figure_names(run))
    pieces, at = [], 0
    for match, block in zip(matches, run.blocks, strict=True):
        pieces.append(markdown[at : match.end()])
        at = match.end()
        extra = []
        if block.output.strip():
            extra.append(_output_block(block.output))
        for alt in block.alts:
            extra.append(f"![{alt}]({figures_dir}/{next(names)})")
        if extra:
            pieces.append("\n\n" + "\n\n".join(extra) + "\n")
    pieces.append(markdown[at:])
    woven = "".join(pieces)
    title = re.search(r"^# .*$", woven, re.M)
    cut = title.end() if title else 0
    return woven[:cut] + "\n\n" + _timing_note(run) + "\n" + woven[cut:]


def tutorial_pages() -> list[Path]:
    """The executed tutorials: every page of docs/tutorials/ with a python block."""
    return [p for p in sorted(TUTORIALS.glob("*.md")) if code_blocks(p.read_text(encoding="utf-8"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pages", nargs="*", type=Path, help="tutorial pages (default: all)")
    parser.add_argument("--fresh", action="store_true", help="ignore the cache")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.result.write_text(_execute(args.child).to_json(), encoding="utf-8")
        return 0
    failed = 0
    for page in args.pages or tutorial_pages():
        run = run_page(page, fresh=args.fresh)
        for block in run.blocks:
            print(
                f"--- {run.page}:{block.line} ({block.seconds:.1f} s, "
                f"{len(block.figures)} figure(s))"
            )
            print(block.output.rstrip())
        budget = f" / budget {run.budget_s:g} s" if run.budget_s else ""
        print(f"=== {run.page}: {run.seconds:.1f} s{budget}")
        if run.error:
            print(run.error, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
