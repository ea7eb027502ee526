"""pcgraph.schema: validation, canonical form, lossless YAML / NetworkX round trips, builders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from pcgraph.errors import PCGraphError, SpecError
from pcgraph.schema import EdgeSpec, GraphSpec, NodeSpec, chain, decoder, mlp, spec_to_dict


def two_nodes(
    *, source: dict[str, Any] | None = None, target: dict[str, Any] | None = None, **edge: Any
) -> dict[str, Any]:
    """A graph x → y of vector nodes (size 3), with overrides for the nodes and the edge."""
    return {
        "name": "tiny",
        "nodes": [
            {"name": "x", "shape": 3, **(source or {})},
            {"name": "y", "shape": 3, **(target or {})},
        ],
        "edges": [{"source": "x", "target": "y", **edge}],
    }


def spec_error(data: Any) -> str:
    """The message of the SpecError that validating ``data`` raises."""
    with pytest.raises(SpecError) as info:
        GraphSpec.from_dict(data)
    return str(info.value)


SKIP_MLP = Path(__file__).resolve().parent.parent / "topologies" / "skip_mlp.yaml"


def builder_specs() -> list[GraphSpec]:
    return [
        mlp([784, 256, 256, 256, 256, 10], output_energy="cross_entropy"),
        mlp([5, 4, 3], activation="tanh", bias=False, name="small"),
        decoder([16, 32, 64]),
        chain(
            ["a", "b", "c"],
            [[1, 8, 8], [4, 4, 4], 10],
            op="dense",
            name="dense_chain",
            metadata={"dataset": "toy", "classes": [0, 1]},
        ),
        chain(
            ["img", "f1", "f2"],
            [[3, 16, 16], [8, 14, 14], [4, 12, 12]],
            op="conv2d",
            roles=["input", "latent", "output"],
            activations=["identity", "relu", "sigmoid"],
            description="a conv chain (k=3 s=1 p=0: 16 → 14 → 12)",
        ),
    ]


# --- nodes and edges ----------------------------------------------------------------------------


def test_node_shape_int_means_vector_and_size_is_product() -> None:
    assert NodeSpec(name="v", shape=7).shape == (7,)
    node = NodeSpec(name="img", shape=[3, 4, 5])
    assert node.shape == (3, 4, 5)
    assert node.size == 60


def test_node_defaults_follow_the_design() -> None:
    node = NodeSpec(name="h", shape=4)
    assert (node.role, node.activation, node.energy, node.precision) == (
        "latent",
        "identity",
        "gaussian",
        1.0,
    )


def test_node_activation_names_are_normalised() -> None:
    assert NodeSpec(name="h", shape=4, activation="Leaky-ReLU").activation == "leaky_relu"
    assert NodeSpec(name="h", shape=4, activation="linear").activation == "identity"
    assert NodeSpec(name="h", shape=4, activation="swish").activation == "silu"


def test_specs_are_frozen() -> None:
    node = NodeSpec(name="h", shape=4)
    with pytest.raises(ValidationError):
        node.shape = (5,)  # type: ignore[misc]


def test_edge_defaults_and_alias_canonicalised() -> None:
    edge = EdgeSpec(source="a", target="b")
    assert (edge.op, edge.bias, edge.params) == ("linear", True, {})
    assert EdgeSpec(source="a", target="b", op="FC").op == "linear"
    assert EdgeSpec(source="a", target="b", op="deconv2d").op == "conv_transpose2d"


def test_parameter_free_edges_default_to_no_bias() -> None:
    assert EdgeSpec(source="a", target="b", op="identity").bias is False
    assert EdgeSpec(source="a", target="b", op="linear", bias=False).bias is False


def test_conv_edge_params_get_their_defaults() -> None:
    edge = EdgeSpec(source="a", target="b", op="conv2d", params={"stride": 2})
    assert edge.params == {"kernel_size": 3, "stride": 2, "padding": 0, "dilation": 1}
    assert edge.describe() == "conv2d k=3 s=2"


# --- graph structure ----------------------------------------------------------------------------


def test_graph_lookup_helpers() -> None:
    spec = GraphSpec.from_yaml(SKIP_MLP)
    assert spec.node_names == ["x", "h1", "h2", "h3", "y"]
    assert spec.names_with_role("input") == ["x"]
    assert spec.names_with_role("output") == ["y"]
    assert sorted(spec.parents("h3")) == ["h1", "h2"]
    assert sorted(spec.children("x")) == ["h1", "h2"]
    assert spec.node("h2").shape == (128,)
    with pytest.raises(SpecError, match=r"no node named 'h9'.*known nodes: x, h1"):
        spec.node("h9")


def test_edges_are_kept_in_canonical_node_order() -> None:
    data = {
        "nodes": [{"name": n, "shape": 2} for n in ("a", "b", "c")],
        "edges": [
            {"source": "b", "target": "c"},
            {"source": "a", "target": "c"},
            {"source": "a", "target": "b"},
        ],
    }
    spec = GraphSpec.from_dict(data)
    assert [e.key for e in spec.edges] == [("a", "b"), ("a", "c"), ("b", "c")]


@given(st.permutations(range(7)))
def test_edge_order_in_the_input_does_not_matter(perm: list[int]) -> None:
    data = spec_to_dict(GraphSpec.from_yaml(SKIP_MLP))
    shuffled = dict(data, edges=[data["edges"][i] for i in perm])
    assert GraphSpec.from_dict(shuffled) == GraphSpec.from_dict(data)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", builder_specs(), ids=lambda s: s.name)
def test_builder_specs_round_trip_through_yaml(spec: GraphSpec) -> None:
    assert GraphSpec.from_yaml(spec.to_yaml()) == spec


@pytest.mark.parametrize("spec", builder_specs(), ids=lambda s: s.name)
def test_builder_specs_round_trip_through_networkx(spec: GraphSpec) -> None:
    g = spec.to_networkx()
    assert isinstance(g, nx.DiGraph)
    assert list(g.nodes) == spec.node_names
    assert set(g.edges) == {e.key for e in spec.edges}
    assert GraphSpec.from_networkx(g) == spec


def test_non_default_node_fields_round_trip() -> None:
    data = two_nodes(target={"role": "output", "precision": 0.25, "activation": "tanh"}, bias=False)
    spec = GraphSpec.from_dict(data)
    assert GraphSpec.from_yaml(spec.to_yaml()) == spec
    assert GraphSpec.from_networkx(spec.to_networkx()) == spec
    assert spec.node("y").precision == 0.25
    assert spec.edges[0].bias is False


def test_to_yaml_writes_the_file_atomically(tmp_path: Path) -> None:
    spec = mlp([6, 5, 4], name="written")
    target = tmp_path / "sub" / "net.yaml"
    text = spec.to_yaml(target)
    assert target.read_text(encoding="utf-8") == text
    assert GraphSpec.from_yaml(target) == spec
    assert sorted(p.name for p in target.parent.iterdir()) == ["net.yaml"]  # no temp file left


# --- builders -----------------------------------------------------------------------------------


def test_mlp_builder_layout() -> None:
    spec = mlp([8, 6, 4, 2], activation="relu", output_energy="cross_entropy")
    assert spec.node_names == ["x", "h1", "h2", "y"]
    assert [n.role for n in spec.nodes] == ["input", "latent", "latent", "output"]
    # σ is applied when a value is sent: the input is sent as it is, the output is never sent
    assert [n.activation for n in spec.nodes] == ["identity", "relu", "relu", "identity"]
    assert [n.shape for n in spec.nodes] == [(8,), (6,), (4,), (2,)]
    assert spec.node("y").energy == "cross_entropy"
    assert [e.key for e in spec.edges] == [("x", "h1"), ("h1", "h2"), ("h2", "y")]
    assert all(e.op == "linear" and e.bias for e in spec.edges)


def test_decoder_builder_layout() -> None:
    spec = decoder([4, 6, 9], activation="tanh")
    assert spec.node_names == ["z", "h1", "image"]
    assert [n.role for n in spec.nodes] == ["latent", "latent", "output"]
    # the latent z is a hidden state, so it is sent through σ like the other hidden nodes
    assert [n.activation for n in spec.nodes] == ["tanh", "tanh", "identity"]
    assert spec.node("image").energy == "gaussian"


def test_mlp_builder_matches_the_mlp5_yaml(topology: Any) -> None:
    from_file = GraphSpec.from_yaml(topology("mlp5_fashion"))
    built = mlp(
        [784, 256, 256, 256, 256, 10],
        activation="gelu",
        output_energy="cross_entropy",
        name="mlp5_fashion",
        description=from_file.description,
    )
    assert built == from_file


def test_decoder_builder_matches_the_decoder4_yaml(topology: Any) -> None:
    from_file = GraphSpec.from_yaml(topology("decoder4_fashion"))
    built = decoder(
        [256, 256, 256, 256, 784],
        activation="gelu",
        name="decoder4_fashion",
        description=from_file.description,
    )
    assert built == from_file


def test_chain_rejects_mismatched_lengths() -> None:
    with pytest.raises(SpecError, match="3 names but 2 shapes"):
        chain(["a", "b", "c"], [1, 2])
    with pytest.raises(SpecError, match="at least two nodes"):
        chain(["a"], [1])


# --- bad input: one test per case ---------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    # line 4 has a stray '}' at column 22
    path.write_text(
        "name: broken\nnodes:\n- {name: x, shape: 3}\n- {name: y, shape: 3}}\nedges: []\n",
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        GraphSpec.from_yaml(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "line 4, column 22" in message
    assert "YAML syntax error" in message
    assert "\n" not in message


def test_empty_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(SpecError, match=r"empty\.yaml: the file is empty.*'nodes'"):
        GraphSpec.from_yaml(path)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(SpecError, match=r"top level must be a mapping.*got list"):
        GraphSpec.from_yaml("- a\n- b\n")


def test_missing_yaml_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(SpecError, match=r"nowhere\.yaml: no such file; check the path"):
        GraphSpec.from_yaml(missing)


def test_unreadable_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00nodes")
    with pytest.raises(SpecError, match=r"binary\.yaml: cannot be read as UTF-8"):
        GraphSpec.from_yaml(path)


def test_unknown_op_lists_the_valid_choices() -> None:
    message = spec_error(two_nodes(op="convolution"))
    assert "edges[0] (x→y)" in message
    assert "unknown edge op 'convolution'" in message
    for name in ("conv2d", "conv_transpose2d", "dense", "flatten", "identity", "linear", "reshape"):
        assert name in message


def test_unknown_activation_lists_the_valid_choices() -> None:
    message = spec_error(two_nodes(target={"activation": "gelux"}))
    assert "nodes[1] (y).activation" in message
    assert "unknown activation 'gelux'" in message
    assert "Did you mean 'gelu'?" in message
    assert "Valid choices:" in message and "tanh" in message


def test_unknown_energy_lists_the_valid_choices() -> None:
    # ("mse" is an alias of gaussian, "bce" of bernoulli, "l1" of laplace; "l3" is no energy)
    message = spec_error(two_nodes(target={"energy": "l3"}))
    assert "nodes[1] (y).energy" in message
    assert "gaussian" in message and "cross_entropy" in message and "bernoulli" in message


def test_unknown_role_lists_the_valid_choices() -> None:
    message = spec_error(two_nodes(source={"role": "hidden"}))
    assert "nodes[0] (x).role" in message
    assert "'input'" in message and "'latent'" in message


def test_missing_node_shape() -> None:
    data = {"nodes": [{"name": "x"}]}
    message = spec_error(data)
    assert "nodes[0] (x).shape: required field is missing" in message


def test_misspelled_node_field_names_it_and_the_valid_fields() -> None:
    message = spec_error({"nodes": [{"name": "x", "shap": 3}]})
    assert "nodes[0] (x).shap: unknown field" in message
    assert "check its spelling" in message
    assert re.search(r"valid fields: name, shape, role, activation, energy, precision", message)


def test_misspelled_edge_field_lists_edge_fields() -> None:
    message = spec_error(two_nodes(parms={}))
    assert "edges[0] (x→y).parms: unknown field" in message
    assert "valid fields: source, target, op, params, bias" in message


def test_misspelled_top_level_field_lists_graph_fields() -> None:
    message = spec_error({"nodes": [{"name": "x", "shape": 3}], "edgez": []})
    assert "edgez: unknown field" in message
    assert "valid fields: name, description, nodes, edges, metadata" in message


def test_misspelled_op_parameter_lists_the_op_parameters() -> None:
    data = two_nodes(
        source={"shape": [1, 5, 5]},
        target={"shape": [1, 3, 3]},
        op="conv2d",
        params={"kernal_size": 3},
    )
    message = spec_error(data)
    assert "invalid conv2d parameters: kernal_size: unknown field" in message
    assert "valid parameters: kernel_size, stride, padding, dilation" in message
    # the graph's own fields are not the fix here
    assert "metadata" not in message


def test_non_positive_op_parameter() -> None:
    data = two_nodes(
        source={"shape": [1, 5, 5]}, target={"shape": [1, 5, 5]}, op="conv2d", params={"stride": 0}
    )
    assert "invalid conv2d parameters: stride" in spec_error(data)


def test_duplicate_node() -> None:
    message = spec_error({"nodes": [{"name": "x", "shape": 3}, {"name": "x", "shape": 4}]})
    assert "node 'x' is declared twice (nodes[0] and nodes[1]); rename one" in message


def test_edge_to_an_unknown_node() -> None:
    data = {"nodes": [{"name": "x", "shape": 3}], "edges": [{"source": "x", "target": "q"}]}
    message = spec_error(data)
    assert "edge x→q: target 'q' is not a node" in message
    assert "declare it under 'nodes'" in message


def test_self_loop_is_rejected_with_the_reason() -> None:
    data = {"nodes": [{"name": "x", "shape": 3}], "edges": [{"source": "x", "target": "x"}]}
    message = spec_error(data)
    assert "edge x→x is a self-loop" in message
    assert "predict itself" in message


def test_duplicate_edge() -> None:
    data = two_nodes()
    data["edges"].append({"source": "x", "target": "y", "op": "linear"})
    assert "edge x→y is declared twice; keep one" in spec_error(data)


@pytest.mark.parametrize("shape", [0, -3, [3, 0], [2, -1, 2]])
def test_non_positive_size(shape: Any) -> None:
    message = spec_error({"nodes": [{"name": "x", "shape": shape}]})
    assert "nodes[0] (x).shape" in message
    assert "non-positive" in message


def test_non_integer_size() -> None:
    message = spec_error({"nodes": [{"name": "x", "shape": [2.5]}]})
    assert "nodes[0] (x).shape" in message and "2.5" in message


def test_invalid_node_name() -> None:
    message = spec_error({"nodes": [{"name": "1x", "shape": 3}]})
    assert "nodes[0] (1x).name" in message and "not a valid identifier" in message


def test_non_positive_precision() -> None:
    assert "nodes[0] (x).precision" in spec_error(
        {"nodes": [{"name": "x", "shape": 3, "precision": 0}]}
    )


def test_conv_shape_mismatch_message_has_the_exact_format() -> None:
    # conv2d k=3 s=2 p=1 on 28×28: ⌊(28 + 2·1 − 1·(3−1) − 1)/2⌋ + 1 = ⌊27/2⌋ + 1 = 14
    data = {
        "nodes": [{"name": "h1", "shape": [8, 28, 28]}, {"name": "h2", "shape": [16, 13, 13]}],
        "edges": [
            {
                "source": "h1",
                "target": "h2",
                "op": "conv2d",
                "params": {"kernel_size": 3, "stride": 2, "padding": 1},
            }
        ],
    }
    message = spec_error(data)
    assert message.endswith(
        "edge h1→h2 (conv2d k=3 s=2 p=1): produces [16,14,14] but node h2 has shape [16,13,13]"
    )
    data["nodes"][1]["shape"] = [16, 14, 14]
    assert GraphSpec.from_dict(data).node("h2").shape == (16, 14, 14)


def test_identity_edge_shape_mismatch() -> None:
    message = spec_error(two_nodes(target={"shape": 4}, op="identity"))
    assert message.endswith("edge x→y (identity): produces [3] but node y has shape [4]")


def test_empty_graph() -> None:
    message = spec_error({"name": "empty", "nodes": []})
    assert "the graph has no nodes; add at least one entry under 'nodes'" in message


def test_graph_without_nodes_field() -> None:
    assert "nodes: required field is missing" in spec_error({"name": "nothing"})


def test_output_node_that_nothing_predicts() -> None:
    message = spec_error({"nodes": [{"name": "y", "shape": 3, "role": "output"}]})
    assert "output node 'y' has no incoming edge, so nothing predicts it" in message
    assert "add an edge into 'y'" in message


def test_cross_entropy_on_a_node_without_parents() -> None:
    message = spec_error(two_nodes(source={"energy": "cross_entropy"}))
    assert "node 'x' uses cross_entropy energy but has no incoming edge" in message


def test_cross_entropy_needs_a_vector() -> None:
    data = two_nodes(target={"shape": [1, 3], "energy": "cross_entropy"}, op="dense")
    assert "cross_entropy needs a vector of classes" in spec_error(data)


def test_linear_between_image_shaped_nodes_suggests_dense() -> None:
    data = two_nodes(source={"shape": [1, 4, 4]}, target={"shape": [1, 4, 4]}, op="linear")
    message = spec_error(data)
    assert "edge x→y (linear): linear needs a vector source but it has shape [1, 4, 4]" in message
    assert "use op: dense" in message


def test_bias_on_identity_edge() -> None:
    message = spec_error(two_nodes(op="identity", bias=True))
    assert "edges[0] (x→y)" in message
    assert "identity has no parameters, so it cannot have a bias; drop 'bias'" in message


def test_from_networkx_node_without_shape() -> None:
    g = nx.DiGraph()
    g.add_node("a", shape=3)
    g.add_node("b")
    g.add_edge("a", "b")
    with pytest.raises(SpecError, match=r"node 'b' has no 'shape' attribute; add one"):
        GraphSpec.from_networkx(g)


@pytest.mark.parametrize("graph", [nx.Graph(), nx.MultiDiGraph()], ids=["undirected", "multi"])
def test_from_networkx_needs_a_simple_digraph(graph: nx.Graph) -> None:
    graph.add_node("a", shape=3)
    with pytest.raises(SpecError, match=r"expected a networkx\.DiGraph"):
        GraphSpec.from_networkx(graph)


def test_spec_errors_are_pcgraph_errors() -> None:
    with pytest.raises(PCGraphError):
        GraphSpec.from_dict({"nodes": []})
