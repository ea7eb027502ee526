"""pcgraph.ops shape inference, checked against the formulas and against torch itself.

Only the shape logic is tested here (what the schema relies on); the kernels belong to the engine.
The reference for conv shapes is torch.nn.functional run on a zeros tensor, which knows nothing of
pcgraph.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from pcgraph.errors import SpecError
from pcgraph.ops import OPS, ShapeMismatch, get_op


def conv_params(**kw: int):  # type: ignore[no-untyped-def]
    return get_op("conv2d").parse_params(kw)


def convT_params(**kw: int):  # type: ignore[no-untyped-def]
    return get_op("conv_transpose2d").parse_params(kw)


def torch_conv2d_shape(
    c_in: int, h: int, w: int, c_out: int, k: int, s: int, p: int, d: int
) -> tuple[int, ...] | None:
    """Shape torch produces for one sample, or None if torch refuses the configuration."""
    x = torch.zeros(1, c_in, h, w)
    weight = torch.zeros(c_out, c_in, k, k)
    try:
        return tuple(F.conv2d(x, weight, stride=s, padding=p, dilation=d).shape[1:])
    except RuntimeError:
        return None


def torch_conv_transpose2d_shape(
    c_in: int, h: int, w: int, c_out: int, k: int, s: int, p: int, d: int, op: int
) -> tuple[int, ...] | None:
    x = torch.zeros(1, c_in, h, w)
    weight = torch.zeros(c_in, c_out, k, k)  # transposed conv weights are [C_in, C_out, k, k]
    try:
        out = F.conv_transpose2d(x, weight, stride=s, padding=p, output_padding=op, dilation=d)
    except RuntimeError:
        return None
    # torch returns an empty tensor where the formula gives 0; a node cannot have size 0
    return tuple(out.shape[1:]) if out.numel() else None


# --- registry -----------------------------------------------------------------------------------


def test_the_documented_ops_are_registered() -> None:
    assert OPS.names() == sorted(
        [
            "linear",
            "dense",
            "scaled_linear",
            "conv2d",
            "conv_transpose2d",
            "identity",
            "flatten",
            "reshape",
            "module",
            "avg_pool2d",
            "max_pool2d",
            "layer_norm",
            "dropout",
            "self_attention",
        ]
    )


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("fc", "linear"),
        ("Fully-Connected", "linear"),
        ("conv", "conv2d"),
        ("ConvTranspose2d", "conv_transpose2d"),
        ("deconv2d", "conv_transpose2d"),
        ("flatten_linear", "dense"),
    ],
)
def test_op_aliases(alias: str, canonical: str) -> None:
    assert get_op(alias).name == canonical


def test_unknown_op_lists_choices() -> None:
    with pytest.raises(SpecError, match=r"unknown edge op 'pool'.*choices: avg_pool2d, conv2d"):
        get_op("pool")


def test_learnable_ops() -> None:
    learnable = {name for name in OPS.names() if get_op(name).learnable}
    assert learnable == {
        "linear",
        "dense",
        "scaled_linear",
        "conv2d",
        "conv_transpose2d",
        "module",
        "layer_norm",
        "self_attention",
    }


# --- conv2d -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "k", "s", "p", "d", "expected"),
    [
        # ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1, worked by hand
        ((28, 28), 3, 2, 1, 1, (14, 14)),  # ⌊27/2⌋ + 1
        ((28, 28), 3, 2, 0, 1, (13, 13)),  # ⌊25/2⌋ + 1
        ((32, 32), 3, 2, 1, 1, (16, 16)),  # ⌊31/2⌋ + 1
        ((16, 16), 3, 2, 1, 1, (8, 8)),  # ⌊15/2⌋ + 1
        ((8, 8), 3, 2, 1, 1, (4, 4)),  # ⌊7/2⌋ + 1
        ((10, 7), 3, 1, 0, 2, (6, 3)),  # ⌊5/1⌋ + 1, ⌊2/1⌋ + 1
        ((5, 5), 5, 1, 0, 1, (1, 1)),  # kernel exactly covers the image
    ],
)
def test_conv2d_output_shape_formula(
    hw: tuple[int, int], k: int, s: int, p: int, d: int, expected: tuple[int, int]
) -> None:
    params = conv_params(kernel_size=k, stride=s, padding=p, dilation=d)
    out = get_op("conv2d").output_shape((4, *hw), (6, 1, 1), params)
    assert out == (6, *expected)  # channels come from the target
    assert torch_conv2d_shape(4, *hw, 6, k, s, p, d) == out


@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 3),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
)
def test_conv2d_output_shape_agrees_with_torch(
    c_in: int, c_out: int, h: int, w: int, k: int, s: int, p: int, d: int
) -> None:
    op = get_op("conv2d")
    params = conv_params(kernel_size=k, stride=s, padding=p, dilation=d)
    reference = torch_conv2d_shape(c_in, h, w, c_out, k, s, p, d)
    if reference is None:
        with pytest.raises(ShapeMismatch, match="kernel is larger than the padded image"):
            op.output_shape((c_in, h, w), (c_out, 1, 1), params)
    else:
        assert op.output_shape((c_in, h, w), (c_out, 1, 1), params) == reference


@pytest.mark.parametrize("op_name", ["conv2d", "conv_transpose2d"])
def test_conv_needs_image_shaped_nodes(op_name: str) -> None:
    op = get_op(op_name)
    params = op.parse_params({})
    with pytest.raises(ShapeMismatch, match=rf"{op_name} needs a \[C, H, W\] source"):
        op.output_shape((784,), (4, 26, 26), params)
    with pytest.raises(ShapeMismatch, match=rf"{op_name} needs a \[C, H, W\] target"):
        op.output_shape((1, 28, 28), (10,), params)


def test_conv_describe() -> None:
    op = get_op("conv2d")
    assert op.describe(conv_params()) == "conv2d k=3 s=1"
    assert op.describe(conv_params(kernel_size=5, stride=2, padding=1, dilation=2)) == (
        "conv2d k=5 s=2 p=1 d=2"
    )
    assert get_op("conv_transpose2d").describe(convT_params(stride=2)) == "conv_transpose2d k=3 s=2"


def test_conv_params_are_validated() -> None:
    from pydantic import ValidationError

    for bad in (
        {"kernel_size": 0},
        {"stride": 0},
        {"padding": -1},
        {"dilation": 0},
        {"kernal_size": 3},
    ):
        with pytest.raises(ValidationError):
            conv_params(**bad)
    with pytest.raises(ValidationError):
        convT_params(output_padding=-1)


# --- conv_transpose2d ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "k", "s", "p", "d", "op", "expected"),
    [
        # (H − 1)s − 2p + d(k − 1) + op + 1, worked by hand
        ((14, 14), 3, 2, 1, 1, 1, (28, 28)),  # 26 − 2 + 2 + 1 + 1
        ((7, 7), 4, 2, 1, 1, 0, (14, 14)),  # 12 − 2 + 3 + 0 + 1
        ((4, 5), 3, 1, 0, 1, 0, (6, 7)),  # 3 + 2 + 1, 4 + 2 + 1
        ((3, 3), 3, 3, 0, 2, 2, (13, 13)),  # 6 + 4 + 2 + 1
    ],
)
def test_conv_transpose2d_output_shape_formula(
    hw: tuple[int, int], k: int, s: int, p: int, d: int, op: int, expected: tuple[int, int]
) -> None:
    params = convT_params(kernel_size=k, stride=s, padding=p, dilation=d, output_padding=op)
    out = get_op("conv_transpose2d").output_shape((5, *hw), (2, 1, 1), params)
    assert out == (2, *expected)
    assert torch_conv_transpose2d_shape(5, *hw, 2, k, s, p, d, op) == out


@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
    op=st.integers(0, 3),
)
def test_conv_transpose2d_output_shape_agrees_with_torch(
    c_in: int, c_out: int, h: int, w: int, k: int, s: int, p: int, d: int, op: int
) -> None:
    edge_op = get_op("conv_transpose2d")
    params = convT_params(kernel_size=k, stride=s, padding=p, dilation=d, output_padding=op)
    reference = torch_conv_transpose2d_shape(c_in, h, w, c_out, k, s, p, d, op)
    if reference is None:
        with pytest.raises(ShapeMismatch):
            edge_op.output_shape((c_in, h, w), (c_out, 1, 1), params)
    else:
        assert edge_op.output_shape((c_in, h, w), (c_out, 1, 1), params) == reference


def test_conv_transpose2d_output_padding_must_be_below_stride_or_dilation() -> None:
    op = get_op("conv_transpose2d")
    with pytest.raises(ShapeMismatch, match="output_padding=2 must be smaller than stride"):
        op.output_shape((1, 4, 4), (1, 1, 1), convT_params(stride=2, output_padding=2))


def test_conv_transpose2d_inverts_the_conv2d_shape() -> None:
    # 28 → conv2d k=3 s=2 p=1 → 14 → conv_transpose2d k=3 s=2 p=1 op=1 → 28: the usual decoder pair
    down = get_op("conv2d").output_shape(
        (1, 28, 28), (8, 1, 1), conv_params(kernel_size=3, stride=2, padding=1)
    )
    up = get_op("conv_transpose2d").output_shape(
        down, (1, 1, 1), convT_params(kernel_size=3, stride=2, padding=1, output_padding=1)
    )
    assert (down, up) == ((8, 14, 14), (1, 28, 28))


# --- fully connected and parameter-free ops -----------------------------------------------------


def test_linear_maps_vectors_to_the_target_size() -> None:
    op = get_op("linear")
    assert op.output_shape((784,), (256,), op.parse_params({})) == (256,)


@pytest.mark.parametrize(
    ("src", "dst", "which"), [((1, 28, 28), (10,), "source"), ((10,), (1, 28, 28), "target")]
)
def test_linear_rejects_image_shaped_nodes_and_suggests_dense(
    src: tuple[int, ...], dst: tuple[int, ...], which: str
) -> None:
    op = get_op("linear")
    with pytest.raises(ShapeMismatch, match=rf"linear needs a vector {which}.*use op: dense"):
        op.output_shape(src, dst, op.parse_params({}))


@pytest.mark.parametrize(
    ("src", "dst"),
    [((1, 28, 28), (256,)), ((256,), (1, 28, 28)), ((64, 4, 4), (8, 2, 2)), ((5,), (7,))],
)
def test_dense_connects_any_shapes(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    op = get_op("dense")
    assert op.output_shape(src, dst, op.parse_params({})) == dst


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_identity_keeps_the_shape(shape: tuple[int, ...]) -> None:
    op = get_op("identity")
    assert op.output_shape(shape, (1,), op.parse_params({})) == shape


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_flatten_matches_torch_flatten(shape: tuple[int, ...]) -> None:
    op = get_op("flatten")
    expected = tuple(torch.zeros(1, *shape).flatten(1).shape[1:])
    assert op.output_shape(shape, (1,), op.parse_params({})) == expected == (math.prod(shape),)


@pytest.mark.parametrize(
    ("src", "dst"),
    [((12,), (3, 4)), ((2, 6), (4, 3)), ((12,), (5,)), ((2, 3, 4), (24,)), ((2, 3, 4), (25,))],
)
def test_reshape_accepts_exactly_what_torch_reshape_accepts(
    src: tuple[int, ...], dst: tuple[int, ...]
) -> None:
    op = get_op("reshape")
    try:
        torch.zeros(src).reshape(dst)
    except RuntimeError:
        with pytest.raises(ShapeMismatch, match="reshape cannot turn"):
            op.output_shape(src, dst, op.parse_params({}))
    else:
        assert op.output_shape(src, dst, op.parse_params({})) == dst


@pytest.mark.parametrize("name", ["linear", "dense", "identity", "flatten", "reshape"])
def test_ops_without_parameters_reject_unknown_ones(name: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        get_op(name).parse_params({"kernel_size": 3})
