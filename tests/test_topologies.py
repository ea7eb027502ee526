"""The shipped topologies/*.yaml: each loads, round-trips, and has the structure it describes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest
import torch
from torch.nn import functional as F

from pcgraph.analysis import analyze, resolve_clamp
from pcgraph.cli import main
from pcgraph.schema import GraphSpec

Topology = Callable[[str], Path]

# Worked from each file by hand: (is a DAG, forward init possible under "train",
# BP SMMs 2L − 1 with L the longest path, or None when cyclic).
EXPECTED = {
    "alexnet_cifar10": (True, True, 2 * 5 - 1),
    "associative_memory": (True, False, 2 * 2 - 1),
    "cnn_fashion": (True, True, 2 * 4 - 1),  # image → c1 → c2 → fc → label
    "dag_unclamped_root": (True, False, 2 * 2 - 1),
    "decoder4_fashion": (True, False, 2 * 4 - 1),
    "fully_connected_groups": (False, False, None),
    "label_decoder_fashion": (True, True, 2 * 3 - 1),  # y → h1 → h2 → image, both clamped
    "loop": (False, False, None),
    "mlp5_fashion": (True, True, 2 * 5 - 1),
    "skip_mlp": (True, True, 2 * 4 - 1),  # x → h1 → h2 → h3 → y
    "residual_mlp8_mupc": (True, True, 2 * 8 - 1),  # x → z1 … z7 → y: 8 weight layers
}


def test_the_shipped_topologies_are_the_documented_ones(topology: Topology) -> None:
    shipped = sorted(p.stem for p in topology("loop").parent.glob("*.yaml"))
    assert shipped == sorted(EXPECTED)


def test_loads_and_is_named_after_its_file(topology: Topology, topology_name: str) -> None:
    spec = GraphSpec.from_yaml(topology(topology_name))
    assert spec.name == topology_name
    assert spec.description.strip()


def test_round_trips_through_yaml(topology: Topology, topology_name: str, tmp_path: Path) -> None:
    spec = GraphSpec.from_yaml(topology(topology_name))
    assert GraphSpec.from_yaml(spec.to_yaml()) == spec
    spec.to_yaml(tmp_path / "copy.yaml")
    assert GraphSpec.from_yaml(tmp_path / "copy.yaml") == spec


def test_round_trips_through_networkx(topology: Topology, topology_name: str) -> None:
    spec = GraphSpec.from_yaml(topology(topology_name))
    assert GraphSpec.from_networkx(spec.to_networkx()) == spec


def test_structure_matches_the_description(topology: Topology, topology_name: str) -> None:
    spec = GraphSpec.from_yaml(topology(topology_name))
    is_dag, forward_ok, smm_bp = EXPECTED[topology_name]
    assert nx.is_directed_acyclic_graph(spec.to_networkx()) is is_dag
    result = analyze(spec, "train")
    assert (result.is_dag, result.forward_init_possible, result.smm_bp) == (
        is_dag,
        forward_ok,
        smm_bp,
    )
    assert result.recommended_init == ("forward" if forward_ok else "memory")
    assert result.unreached == []  # under training every node hears from the data


def test_every_topology_has_data_nodes(topology: Topology, topology_name: str) -> None:
    spec = GraphSpec.from_yaml(topology(topology_name))
    assert resolve_clamp(spec, "train"), "nothing to clamp: no input or output node"
    assert spec.names_with_role("output"), "no output node"


def test_pcgraph_check_accepts_it(
    capsys: pytest.CaptureFixture[str], topology: Topology, topology_name: str
) -> None:
    assert main(["check", str(topology(topology_name))]) == 0
    assert topology_name in capsys.readouterr().out


def test_alexnet_conv_shapes_agree_with_torch(topology: Topology) -> None:
    spec = GraphSpec.from_yaml(topology("alexnet_cifar10"))
    convs = [e for e in spec.edges if e.op == "conv2d"]
    assert len(convs) == 3
    for edge in convs:
        src, dst = spec.node(edge.source), spec.node(edge.target)
        p = edge.params
        weight = torch.zeros(dst.shape[0], src.shape[0], p["kernel_size"], p["kernel_size"])
        out = F.conv2d(
            torch.zeros(1, *src.shape),
            weight,
            stride=p["stride"],
            padding=p["padding"],
            dilation=p["dilation"],
        )
        assert tuple(out.shape[1:]) == dst.shape


def test_skip_mlp_identity_edge_has_no_bias(topology: Topology) -> None:
    spec = GraphSpec.from_yaml(topology("skip_mlp"))
    identity = [e for e in spec.edges if e.op == "identity"]
    assert [(e.key, e.bias) for e in identity] == [(("h1", "h3"), False)]
    assert sorted(spec.parents("h3")) == ["h1", "h2"]


def test_associative_memory_completes_the_lower_half(topology: Topology) -> None:
    spec = GraphSpec.from_yaml(topology("associative_memory"))
    # query: only the upper half clamped → z needs memory, the lower half is free
    result = analyze(spec, ["upper"])
    assert result.memory_targets == ["z"]
    assert "lower" not in result.clamp
    assert result.unreached == []
