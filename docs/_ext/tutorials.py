"""A mkdocs hook: the tutorials (``docs/tutorials/*.md``) are executed when the site is built, and
each code block's printed output and figures are shown under it.

The work is done by ``scripts/run_tutorials.py`` (one fresh Python process per page, results
cached by the hash of the page and of the package). Figures become files of the site
(``tutorials/figures/<page>-<block>-<k>.png``); nothing is written into ``docs/``. A block that
raises fails the build with the page, the block's line and the traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

_RUNS: dict[str, Any] = {}


def _runner() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "run_tutorials.py"
    spec = importlib.util.spec_from_file_location("run_tutorials", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_tutorials", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: Any) -> Files:
    runner = _runner()
    _RUNS.clear()
    for page in runner.tutorial_pages():
        src_uri = page.relative_to(Path(config["docs_dir"]).resolve()).as_posix()
        try:
            run = runner.run_page(page)
        except Exception as exc:  # a runner failure or timeout: the build must stop
            raise PluginError(f"docs/{src_uri}: {exc}") from exc
        if run.error:
            raise PluginError(f"docs/{src_uri}: a code block failed.\n{run.error}")
        _RUNS[src_uri] = (runner, run)
        folder = src_uri.rsplit("/", 1)[0]
        for name, png in runner.figure_names(run):
            files.append(File.generated(config, f"{folder}/figures/{name}", content=png))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    found = _RUNS.get(page.file.src_uri)
    if found is None:
        return markdown
    runner, run = found
    try:
        return str(runner.weave(markdown, run))
    except RuntimeError as exc:
        raise PluginError(f"docs/{page.file.src_uri}: {exc}") from exc
