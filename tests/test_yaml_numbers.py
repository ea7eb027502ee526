"""YAML as users write it (issue 29): exponent numbers without a dot (``1e-3``, which YAML 1.1
reads as a string) are numbers as in YAML 1.2, merge keys (``<<: *defaults``) copy a mapping,
and every documented ``--config`` key is accepted with its type."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import pcgraph as pc
from pcgraph.cli.main import main
from pcgraph.cli.options import read_options
from pcgraph.errors import SpecError
from pcgraph.yamlio import load_yaml

ROOT = Path(__file__).resolve().parent.parent
MLP = str(ROOT / "topologies" / "mlp5_fashion.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("2E+5", 2e5), ("-1e2", -100.0), ("+3e0", 3.0), (".5e1", 5.0)],
)
def test_exponent_numbers_are_floats(text: str, value: float) -> None:
    got = load_yaml(f"a: {text}\nquoted: '{text}'\nword: e3\ncut: 1e-\nhex: 0x1e3\n", "t")
    assert isinstance(got["a"], float) and got["a"] == value
    # a quoted number, and words that only look like one, stay what they were
    assert (got["quoted"], got["word"], got["cut"], got["hex"]) == (text, "e3", "1e-", 0x1E3)


TOPOLOGY = """\
name: merged
nodes:
- {name: x, shape: 4, role: input}
- &hidden {name: h1, shape: 8, activation: tanh, precision: 1e-3}
- {<<: *hidden, name: h2}
- {name: y, shape: 2, role: output}
edges:
- {source: x, target: h1}
- {source: h1, target: h2}
- {source: h2, target: y}
"""


def test_topology_with_merge_keys_and_exponent_precision() -> None:
    spec = pc.GraphSpec.from_yaml(TOPOLOGY)
    h1, h2 = spec.node("h1"), spec.node("h2")
    assert h1.precision == h2.precision == 1e-3
    assert (h2.shape, h2.activation) == ((8,), "tanh")  # merged from h1; its own name wins


def test_a_duplicate_key_beside_a_merge_is_still_an_error() -> None:
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        load_yaml("d: &d {a: 1}\ne: {<<: *d, name: a, name: b}\n", "t")


def _config(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return read_options(argparse.Namespace(config=str(path)))[0]


def test_documented_path_keys_of_config_are_accepted(tmp_path: Path) -> None:
    opts = _config(tmp_path, "data_root: /data/sets\nlog-dir: runs/logs\nlr: 1e-3\ntol: 1e-4\n")
    assert (opts["data_root"], opts["log_dir"]) == ("/data/sets", "runs/logs")
    assert (opts["lr"], opts["tol"]) == (1e-3, 1e-4)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("data_root: 5", ["'data_root'", "str", "5"]),
        ("log_dir: [a]", ["'log_dir'", "str"]),
        ("tol: fast", ["'tol'", "int or float", "'fast'"]),
        ("mem_linear: 1", ["'mem_linear'", "bool"]),
    ],
)
def test_config_values_of_the_wrong_type_name_the_key(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    with pytest.raises(SpecError) as info:
        _config(tmp_path, text + "\n")
    assert all(w in str(info.value) for w in words), str(info.value)
    assert "NoneType" not in str(info.value)


def test_config_with_merge_keys_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config that merges shared options and sets an exponent lr reaches check_train (T of
    10⁹ from the merged mapping is refused there, naming --T: the merge was applied)."""
    config = tmp_path / "run.yaml"
    config.write_text("<<: {T: 1000000000, epochs: 1}\nlr: 5e-4\n")
    rc = main(["train", MLP, "--embedded", "--config", str(config), "--out", str(tmp_path / "o")])
    assert rc == 2 and "--T = 1,000,000,000" in capsys.readouterr().err


def test_the_yaml_reference_says_so() -> None:
    page = (ROOT / "docs" / "yaml-reference.md").read_text(encoding="utf-8")
    assert "1e-3" in page and "<<: *" in page
