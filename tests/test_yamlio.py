"""pcgraph.yamlio: every way YAML input goes wrong is one SpecError naming the source and line.

Expectations come from the YAML text itself (which line holds the duplicate, how many values
the aliases expand to), not from the loader's current output.
"""

from __future__ import annotations

import time

import pytest

import pcgraph as pc
from pcgraph.errors import SpecError
from pcgraph.yamlio import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml

VALID = "name: x\nnodes: [{name: a, shape: 2}]\nedges: []\n"


def test_plain_yaml_loads_as_plain_values() -> None:
    assert load_yaml(VALID, "t") == {"name": "x", "nodes": [{"name": "a", "shape": 2}], "edges": []}
    assert load_yaml("", "t") is None
    # aliases are fine while they stay small
    assert load_yaml("a: &s [1, 2]\nb: *s\n", "t") == {"a": [1, 2], "b": [1, 2]}


def test_duplicate_key_names_both_lines() -> None:
    text = "name: x\nnodes: []\nedges: []\nedges: [{source: a, target: b}]\n"
    with pytest.raises(SpecError, match=r"t: line 4.*duplicate key 'edges' \(first on line 3"):
        load_yaml(text, "t")


def test_nested_duplicate_key_in_a_node() -> None:
    text = "name: x\nnodes:\n- name: a\n  shape: 2\n  shape: 3\n"
    with pytest.raises(SpecError, match=r"line 5.*duplicate key 'shape' \(first on line 4"):
        load_yaml(text, "t")


def test_billion_laughs_is_refused_fast() -> None:
    # 9 levels of 9 aliases: 9**9 ≈ 387 million values if expanded
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for k in range(1, 9):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]")
    lines.append("nodes: [{name: a, shape: *l8}]")
    start = time.perf_counter()
    with pytest.raises(SpecError, match=f"more than {MAX_NODES:,} values"):
        pc.GraphSpec.from_yaml("\n".join(lines))
    assert time.perf_counter() - start < 5.0


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(SpecError, match=f"more than {MAX_DEPTH} levels"):
        load_yaml("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5), "t")
    with pytest.raises(SpecError, match="nested too deeply"):  # deeper than the parser recurses
        pc.GraphSpec.from_yaml("[" * 100_000 + "]" * 100_000)


def test_size_bound(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(SpecError, match=f"more than the {MAX_BYTES:,}"):
        load_yaml("#" * (MAX_BYTES + 1), "big")
    path = tmp_path / "big.yaml"  # type: ignore[operator]
    path.write_text("#" * (MAX_BYTES + 1))
    with pytest.raises(SpecError, match=r"big\.yaml.*bytes, more than"):
        pc.GraphSpec.from_yaml(path)


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!custom 1"]
)
def test_tags_are_refused(tag: str) -> None:
    with pytest.raises(SpecError, match="no !tags"):
        load_yaml(f"name: {tag}\n", "t")


def test_syntax_error_has_the_line() -> None:
    with pytest.raises(SpecError, match=r"t: line 3, column 1: YAML syntax error"):
        load_yaml("name: x\nnodes: [\n", "t")


def test_not_utf8_bytes() -> None:
    with pytest.raises(SpecError, match=r"not UTF-8 text \(byte 6\)"):
        load_yaml(b"name: \xff\xfe", "t")


@pytest.mark.parametrize("word", ["off", "no", "yes", "on"])
def test_bare_boolean_word_as_a_name_gets_the_quote_hint(word: str) -> None:
    text = f"name: x\nnodes: [{{name: {word}, shape: 2}}]\nedges: []\n"
    with pytest.raises(SpecError, match=r"quote it, e\.g\. name: 'off'"):
        pc.GraphSpec.from_yaml(text)


def test_paths_without_a_yaml_suffix_are_paths(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path  # type: ignore[assignment]
    with pytest.raises(SpecError, match="is a folder"):
        pc.GraphSpec.from_yaml(str(folder))
    with pytest.raises(SpecError, match=r"topology\.txt: no such file"):
        pc.GraphSpec.from_yaml(str(folder / "topology.txt"))  # type: ignore[operator]
    good = folder / "net.txt"  # type: ignore[operator]
    good.write_text(VALID)
    assert pc.GraphSpec.from_yaml(str(good)).name == "x"
