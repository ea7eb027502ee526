"""The documentation cannot drift from the code.

- The generated pages (docs/yaml-reference.md, docs/gallery.md) must equal a fresh run of
  scripts/gen_docs.py. When this fails: run ``python scripts/gen_docs.py`` and commit the result.
- Every ``$ pcgraph check ...`` transcript in the docs states what the graph is, checked against
  networkx and the paper's rules directly (DAG, roots, Proposition 3.2, SMM counts), and is what
  the analysis prints today (freshness).
- The nav of mkdocs.yml and the docs folder agree, and every figure a page shows is one that
  scripts/make_figures.py writes.

None of this needs mkdocs. The Python examples of the pages are executed by a slow test.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import pcgraph as pc

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
TOPOLOGIES = REPO / "topologies"
HAND_WRITTEN = ("index.md", "getting-started.md", "concepts.md", "initializations.md",
                "energy-flow.md")  # fmt: skip
RUNNABLE = ("index.md", "getting-started.md", "energy-flow.md", "extending.md")


def _load_gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen_docs() -> ModuleType:
    return _load_gen_docs()


@pytest.mark.parametrize("page", list(_load_gen_docs().GENERATED))
def test_generated_page_is_fresh(gen_docs: ModuleType, page: str) -> None:
    path = DOCS / page
    fresh = gen_docs.GENERATED[page]()
    assert path.is_file(), f"docs/{page} is missing: run `python scripts/gen_docs.py`"
    committed = path.read_text(encoding="utf-8")
    if committed != fresh:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    f"docs/{page} (committed)",
                    f"docs/{page} (fresh)",
                )
            )[:60]
        )
        pytest.fail(
            f"docs/{page} is stale: run `python scripts/gen_docs.py` and commit it.\n{diff}"
        )


def test_check_mode_reports_stale_pages(gen_docs: ModuleType, tmp_path: Path) -> None:
    for name, render in gen_docs.GENERATED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(render(), encoding="utf-8")
    assert gen_docs.stale_pages(tmp_path) == []
    page = tmp_path / "gallery.md"
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    (tmp_path / "yaml-reference.md").unlink()
    assert sorted(gen_docs.stale_pages(tmp_path)) == ["gallery.md", "yaml-reference.md"]


def test_reference_lists_every_registered_name() -> None:
    """The generated reference names every op, activation and initializer (with its aliases)."""
    from pcgraph.activations import ACTIVATIONS
    from pcgraph.ops import OPS

    text = (DOCS / "yaml-reference.md").read_text(encoding="utf-8")
    for registry in (OPS, ACTIVATIONS, pc.INITIALIZERS):
        for name in registry.names():
            assert f"| `{name}` |" in text, f"{registry.kind} {name!r} missing from the reference"
    for field in (*pc.NodeSpec.model_fields, *pc.EdgeSpec.model_fields):
        assert f"| `{field}` |" in text


def _check_transcripts(text: str) -> list[tuple[list[str], str]]:
    """(argv after `pcgraph check`, printed text) of every ```text block starting with one."""
    found = []
    for block in re.findall(r"^```text\n(.*?)^```", text, re.S | re.M):
        first, _, rest = block.partition("\n")
        if first.startswith("$ pcgraph check "):
            found.append((shlex.split(first)[3:], rest.rstrip("\n")))
    return found


@pytest.mark.parametrize("page", HAND_WRITTEN)
def test_check_transcripts_are_fresh(page: str) -> None:
    for argv, printed in _check_transcripts((DOCS / page).read_text(encoding="utf-8")):
        file, clamp, T = argv[0], "train", 8
        opts = argv[1:]
        assert len(opts) % 2 == 0 and set(opts[::2]) <= {"--clamp", "--T"}, argv
        for flag, value in zip(opts[::2], opts[1::2], strict=True):
            if flag == "--clamp":
                clamp = value
            else:
                T = int(value)
        spec = pc.GraphSpec.from_yaml(REPO / file)
        expected = pc.analyze(spec, clamp, T=T).summary()
        assert printed == expected, f"docs/{page}: `pcgraph check {' '.join(argv)}` is out of date"


def _clamp_set(spec_nodes: list[dict], edges: list[tuple[str, str]], clamp: str) -> set[str]:
    roles = {n["name"]: n.get("role", "latent") for n in spec_nodes}
    wanted = {"train": ("input", "output"), "predict": ("input",), "generate": ("output",)}
    if clamp in wanted:
        return {n for n, r in roles.items() if r in wanted[clamp]}
    return set(clamp.split(","))


@pytest.mark.parametrize("page", ("getting-started.md", "concepts.md", "gallery.md"))
def test_check_transcripts_state_what_the_graph_is(page: str) -> None:
    """The claims of each transcript, from the YAML and networkx alone (not pcgraph.analysis):
    DAG or cycles, the roots and which are unclamped, Proposition 3.2 as a forward-sweep
    fixpoint, and, where forward init is used, SMMs = 2T + the sweep's depth; backprop's count
    is 2L − 1 for the longest chain of L edges."""
    import networkx as nx

    transcripts = _check_transcripts((DOCS / page).read_text(encoding="utf-8"))
    assert transcripts, f"docs/{page} has no pcgraph check transcript any more"
    for argv, printed in transcripts:
        raw = yaml.safe_load((REPO / argv[0]).read_text(encoding="utf-8"))
        opts = dict(zip(argv[1::2], argv[2::2], strict=True))
        T = int(opts.get("--T", 8))
        edges = [(e["source"], e["target"]) for e in raw["edges"]]
        g = nx.DiGraph(edges)
        g.add_nodes_from(n["name"] for n in raw["nodes"])
        clamp = _clamp_set(raw["nodes"], edges, opts.get("--clamp", "train"))
        lines = printed.splitlines()
        where = f"docs/{page}: pcgraph check {' '.join(argv)}"
        dag = nx.is_directed_acyclic_graph(g)
        assert (lines[1].startswith("- a DAG;")) == dag, where
        if dag:
            order = lines[1].split("topological order: ")[1].split(" → ")
            position = {n: i for i, n in enumerate(order)}
            assert sorted(order) == sorted(g.nodes), where
            assert all(position[a] < position[b] for a, b in edges), where
        else:
            groups = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
            printed_groups = re.findall(r"\{([^}]*)\}", lines[1])
            assert sorted(sorted(x.split(", ")) for x in printed_groups) == sorted(
                sorted(c) for c in groups
            ), where
        roots = [n for n in g.nodes if g.in_degree(n) == 0]
        shown = lines[2].removeprefix("- roots: ").split(" (")[0].split(", ")
        assert sorted(shown) == sorted(roots), where
        unclamped = sorted(set(roots) - clamp)
        if unclamped:
            assert f"(unclamped: {', '.join(unclamped)})" in lines[2] or all(
                u in lines[2] for u in unclamped
            ), where
        else:
            assert "(all clamped)" in lines[2], where
        # Proposition 3.2 as a fixpoint: a free node is computable once all its parents are
        known, depth = dict.fromkeys(clamp, 0), 0
        while True:
            ready = [
                n
                for n in g.nodes
                if n not in known and g.in_degree(n) and all(p in known for p in g.predecessors(n))
            ]
            if not ready:
                break
            for n in ready:
                known[n] = 1 + max(known[p] for p in g.predecessors(n))
            depth = max(depth, *(known[n] for n in ready))
        possible = len(known) == g.number_of_nodes()
        verdict = next(x for x in lines if x.startswith("- forward initialization is"))
        assert verdict.startswith("- forward initialization is possible") == possible, where
        cost = next(x for x in lines if x.startswith("- cost per weight update"))
        smm = int(re.search(r": (\d+) sequential", cost).group(1))
        if possible and "'auto' will use: forward" in printed:
            assert smm == 2 * T + depth, where
        if dag and "(backprop: " in cost:
            chain = nx.dag_longest_path_length(g)
            assert f"(backprop: {2 * chain - 1})" in cost, where


def test_cli_page_lists_every_command_and_option() -> None:
    """Read from the parser itself, not from the renderer: a new option cannot go unlisted."""
    from pcgraph.cli.main import build_parser

    page = (DOCS / "api" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    help_flags = ("-h", "--help")
    missing = [
        s
        for a in parser._actions
        for s in a.option_strings
        if f"`{s}" not in page and s not in help_flags
    ]
    for name, command in sub.choices.items():
        section = page.split(f"\n## {name}\n", 1)
        assert len(section) == 2, f"docs/api/cli.md has no section for `pcgraph {name}`"
        body = section[1].split("\n## ", 1)[0]
        missing += [
            f"{name} {s}"
            for a in command._actions
            for s in a.option_strings
            if f"`{s}" not in body and s not in (*help_flags, "--plugin")
        ]
    assert not missing, f"docs/api/cli.md lacks {missing}: run `python scripts/gen_docs.py`"


def test_api_reference_documents_every_public_name() -> None:
    """Every name of ``pcgraph.__all__`` has its entry on a task page of the API reference."""
    entries: set[str] = set()
    for page in (DOCS / "api").glob("*.md"):
        entries |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    missing = []
    for name in pc.__all__:
        if name in ("INITIALIZERS", "__version__"):  # a registry (named in prose), the version
            continue
        if f"pcgraph.{name}" not in entries and not any(e.endswith(f".{name}") for e in entries):
            missing.append(name)
    assert not missing, f"no API page documents {missing}"


def test_index_copies_the_readme_quick_start() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"^```bash\n.*?^```", section, re.S | re.M)
    assert block is not None, "README.md has no ```bash block under '## Quick start'"
    assert block.group(0) in (DOCS / "index.md").read_text(encoding="utf-8"), (
        "docs/index.md must show README.md's quick-start commands verbatim"
    )


def test_nav_matches_the_docs_folder() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))

    def flat(entries: list) -> list[str]:  # type: ignore[type-arg]
        out: list[str] = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            out += flat(value) if isinstance(value, list) else [value]
        return out

    nav = flat(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_ext" not in p.parts}
    assert set(nav) <= pages, f"nav pages missing from docs/: {sorted(set(nav) - pages)}"
    assert pages <= set(nav), f"docs/ pages missing from the nav: {sorted(pages - set(nav))}"
    assert set(HAND_WRITTEN) <= set(nav)


def test_figures_are_ones_make_figures_writes(gen_docs: ModuleType) -> None:
    """A page may only show figures/<topology>.png (and _generate.png for the generative ones),
    figures/energy_flow_<topology>[_trained].{png,gif} for a topology make_figures.py runs, or
    figures/flow_<name>.{gif,html} for a comparison make_figures.py writes under that name."""
    stems = {p.stem for p in TOPOLOGIES.glob("*.yaml")}
    script = (REPO / "scripts" / "make_figures.py").read_text(encoding="utf-8")
    generative = set(gen_docs.generative_topologies())
    for page in DOCS.glob("*.md"):
        for figure in re.findall(r"\]\(figures/([^)\s#]+)\)", page.read_text(encoding="utf-8")):
            stem, ext = os.path.splitext(figure)
            flow = re.fullmatch(r"energy_flow_(\w+?)(_trained)?", stem)
            if stem.startswith("perf_"):  # drawn from docs/data/<stem>.csv or a results file
                measured = (DOCS / "data" / f"{stem}.csv").is_file() or (
                    DOCS / "data" / "results" / f"{stem.removeprefix('perf_')}.json"
                ).is_file()
                assert ext == ".png" and measured, figure
                assert f'"{stem}.png"' in script, f"make_figures.py writes no {figure}"
            elif stem.startswith("flow_"):
                assert ext in (".gif", ".html"), (page.name, figure)
                assert f'"{stem}"' in script, f"make_figures.py writes no {figure}"
            elif flow:
                assert ext in (".png", ".gif") and flow.group(1) in stems, (page.name, figure)
                assert f'"{flow.group(1)}' in script, f"make_figures.py draws no {figure}"
                if flow.group(2):  # the trained-network trace is written under this name
                    assert f"energy_flow_{flow.group(1)}_trained" in script, figure
            elif stem.endswith("_generate"):
                assert ext == ".png" and stem.removesuffix("_generate") in generative, figure
            else:
                assert ext == ".png" and stem in stems, f"{page.name}: unknown figure {figure}"


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE)
def test_python_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of the page runs, in order, in one namespace, from a folder that
    looks like the repository root (files the examples write land in tmp_path)."""
    import matplotlib

    matplotlib.use("Agg")
    (tmp_path / "topologies").symlink_to(TOPOLOGIES, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert blocks
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/{page} block {i + 1}", "exec"), namespace)


def test_performance_states_the_smm_counts_of_its_network() -> None:
    """Performance's 'N SMMs against M' is what the analysis counts for the network the page
    benchmarks (784-128×4-10, clamp {x, y}, forward init, T = 8), not a number typed in."""
    text = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert "784-128×4-10" in text
    found = re.search(r"\*\*(\d+) SMMs against (\d+)\*\*", text)
    assert found, "performance.md should state the SMMs per update against backprop's"
    spec = pc.mlp([784, 128, 128, 128, 128, 10], activation="tanh", output_energy="gaussian")
    pc_smm = pc.smm_per_update(spec, ["x", "y"], 8, "forward")
    assert (int(found.group(1)), int(found.group(2))) == (pc_smm, pc.analysis.bp_smm(spec))
