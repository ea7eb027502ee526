"""The executed tutorials (docs/tutorials/*.md, run by scripts/run_tutorials.py at docs build).

The runner's contract is checked on a page written here: every python block runs in order in
one namespace, what it prints lands under it, figures (pyplot's and a returned Figure) become
images under it, and a failing block is reported with its line. The real tutorials run in the
slow test, each within twice its stated budget (the docs build runs them too).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runner() -> ModuleType:
    path = REPO / "scripts" / "run_tutorials.py"
    spec = importlib.util.spec_from_file_location("run_tutorials", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_tutorials"] = module
    spec.loader.exec_module(module)
    return module


PAGE = """---
budget_s: 5
---

# A page

```python
x = 6 * 7
print("x is", x)
```

Text between.

```python
import matplotlib.pyplot as plt

plt.plot([0, 1], [x, 0])
plt.title("a line")
plt.show()
```

```python
from matplotlib.figure import Figure

fig = Figure()
fig.subplots().set_title("returned")
fig
```
"""


def test_blocks_run_in_order_and_outputs_land_under_them(
    runner: ModuleType, tmp_path: Path
) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    run = runner.run_page(page, fresh=True, cache=tmp_path / "cache")
    assert run.error is None
    assert [b.line for b in run.blocks] == [8, 15, 23]
    assert run.blocks[0].output == "x is 42\n"
    assert [len(b.figures) for b in run.blocks] == [0, 1, 1]
    assert run.blocks[1].alts == ("a line",) and run.blocks[2].alts == ("returned",)
    assert run.budget_s == 5
    body = page.read_text().split("---\n", 2)[2]  # mkdocs hands the hook the page without it
    woven = runner.weave(body, run)
    # the timing note under the title, each output under its own block, figures by name
    assert woven.index("# A page") < woven.index("Executed when this site was built")
    assert woven.index("x = 6 * 7") < woven.index("x is 42") < woven.index("Text between.")
    figures = re.findall(r"!\[([^\]]*)\]\(figures/([^)]+)\)", woven)
    assert figures == [("a line", "page-2-1.png"), ("returned", "page-3-1.png")]
    assert [name for name, _ in runner.figure_names(run)] == ["page-2-1.png", "page-3-1.png"]
    assert all(png.startswith(b"\x89PNG") for _, png in runner.figure_names(run))


def test_a_failing_block_is_reported_with_its_line(runner: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "bad.md"
    page.write_text("# Bad\n\n```python\nprint('before')\n```\n\n```python\n1 / 0\n```\n")
    run = runner.run_page(page, fresh=True, cache=tmp_path / "cache")
    assert run.error is not None and "block at line 8" in run.error
    assert "ZeroDivisionError" in run.error
    assert len(run.blocks) == 2 and run.blocks[0].output == "before\n"
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        runner.weave(page.read_text(), run)


def test_every_tutorial_is_in_the_nav_and_states_a_budget(runner: ModuleType) -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = runner.tutorial_pages()
    assert len(pages) >= 5
    for page in pages:
        assert f"tutorials/{page.name}" in nav, page.name
        assert runner.budget_s(page.read_text(encoding="utf-8")) is not None, page.name
    assert "  - docs/_ext/tutorials.py" in nav  # the build hook that executes them


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["first-pcn", "initializations", "generation", "cyclic", "extending"]
)
def test_tutorial_runs_within_its_budget(runner: ModuleType, name: str) -> None:
    page = REPO / "docs" / "tutorials" / f"{name}.md"
    run = runner.run_page(page, fresh=True)
    assert run.error is None, run.error
    assert run.budget_s is not None
    # twice the stated budget: CI machines are shared and slower than the one that measured it
    assert run.seconds <= 2 * run.budget_s, f"{name}: {run.seconds:.1f} s, budget {run.budget_s} s"
