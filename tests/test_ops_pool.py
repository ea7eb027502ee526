"""``avg_pool2d``, ``max_pool2d``, ``layer_norm`` and ``self_attention`` edges: their shape rules
and bad inputs, and each kernel's forward and message against formulas written out by hand.
(Every op × energy × solver against hand autograd of the energy is in tests/test_extend.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import pcgraph as pc
from pcgraph.errors import SpecError
from pcgraph.ops import get_op

F64 = torch.float64


def _spec(src: list[int], dst: list[int], op: str, params: dict[str, Any]) -> pc.GraphSpec:
    return pc.GraphSpec.from_dict(
        {
            "name": "one-edge",
            "nodes": [
                {"name": "x", "shape": src, "role": "input"},
                {"name": "h", "shape": dst},
            ],
            "edges": [{"source": "x", "target": "h", "op": op, "params": params}],
        }
    )


def _kernel(op: str, src: list[int], dst: list[int], params: dict[str, Any]) -> Any:
    edge = _spec(src, dst, op, params).edges[0]
    found = get_op(op)
    return found.make_kernel(
        tuple(src), tuple(dst), found.parse_params(edge.params), bias=False, dtype=F64
    )


@pytest.mark.parametrize(
    ("op", "src", "params", "expected"),
    [
        ("avg_pool2d", [3, 8, 8], {"kernel_size": 2}, [3, 4, 4]),
        ("max_pool2d", [2, 7, 5], {"kernel_size": 3, "stride": 2}, [2, 3, 2]),
        ("avg_pool2d", [1, 6, 6], {"kernel_size": 3, "stride": 1, "padding": 1}, [1, 6, 6]),
        ("layer_norm", [4, 3], {}, [4, 3]),
        ("self_attention", [5, 8], {"heads": 4}, [5, 8]),
    ],
)
def test_shape_rules(op: str, src: list[int], params: dict[str, Any], expected: list[int]) -> None:
    # (H + 2p − k) // s + 1 per spatial dimension; the others keep the source's shape
    spec = _spec(src, expected, op, params)
    assert list(spec.node("h").shape) == expected


@pytest.mark.parametrize(
    ("op", "src", "dst", "params", "words"),
    [
        (
            "avg_pool2d",
            [1, 4, 4],
            [1, 1, 1],
            {"kernel_size": 5},
            ["x→h", "kernel_size=5", "[1, 4, 4]"],
        ),
        ("max_pool2d", [16], [4], {"kernel_size": 2}, ["x→h", "[C, H, W]", "[16]"]),
        ("max_pool2d", [1, 4, 4], [1, 2, 2], {"kernel_size": 2, "padding": 2}, ["padding=2"]),
        ("avg_pool2d", [1, 4, 4], [1, 3, 3], {"kernel_size": 2}, ["[1,2,2]", "[1,3,3]"]),
        ("avg_pool2d", [1, 4, 4], [1, 2, 2], {"kernel_size": 0}, ["kernel_size"]),
        ("self_attention", [3, 6], [3, 6], {"heads": 4}, ["heads=4", "dim=6", "[3, 6]"]),
        ("self_attention", [6], [6], {"heads": 1}, ["[tokens, dim]", "[6]"]),
    ],
)
def test_bad_inputs_name_the_edge_and_the_shapes(
    op: str, src: list[int], dst: list[int], params: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(SpecError) as info:
        _spec(src, dst, op, params)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_avg_pool_forward_and_message_by_hand() -> None:
    """k = s = 2: each output is the mean of its 2×2 window; the message J_fᵀ δ puts δ/4 on
    every pixel of the window."""
    kernel = _kernel("avg_pool2d", [1, 4, 4], [1, 2, 2], {"kernel_size": 2})
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 1, 4, 4, generator=g, dtype=F64)
    delta = torch.randn(3, 1, 2, 2, generator=g, dtype=F64)
    by_hand = s.reshape(3, 1, 2, 2, 2, 2).mean(dim=(3, 5))
    torch.testing.assert_close(kernel(s), by_hand)
    spread = delta.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) / 4
    torch.testing.assert_close(kernel.vjp(s, delta), spread)


def test_max_pool_message_goes_to_the_arg_max() -> None:
    kernel = _kernel("max_pool2d", [1, 2, 4], [1, 1, 2], {"kernel_size": 2})
    s = torch.tensor([[[[1.0, 5.0, -1.0, 0.0], [2.0, 3.0, 4.0, 0.5]]]], dtype=F64)
    delta = torch.tensor([[[[10.0, 20.0]]]], dtype=F64)
    torch.testing.assert_close(kernel(s), torch.tensor([[[[5.0, 4.0]]]], dtype=F64))
    routed = torch.tensor([[[[0.0, 10.0, 0.0, 0.0], [0.0, 0.0, 20.0, 0.0]]]], dtype=F64)
    torch.testing.assert_close(kernel.vjp(s, delta), routed)


def test_layer_norm_forward_by_hand() -> None:
    kernel = _kernel("layer_norm", [2, 3], [2, 3], {})
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in kernel.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64))
    gain, bias = (p.detach() for p in kernel.parameters())
    s = torch.randn(4, 2, 3, generator=g, dtype=F64)
    flat = s.reshape(4, 6)
    mean = flat.mean(1, keepdim=True)
    var = ((flat - mean) ** 2).mean(1, keepdim=True)  # the biased variance
    by_hand = ((flat - mean) / torch.sqrt(var + 1e-5)).reshape(4, 2, 3) * gain + bias
    torch.testing.assert_close(kernel(s), by_hand)


def test_self_attention_forward_by_hand() -> None:
    """out = concat_h softmax(Q_h K_hᵀ / √d_h) V_h · W_oᵀ + b_o with [Q K V] = s W_inᵀ + b_in."""
    tokens, dim, heads = 3, 4, 2
    kernel = _kernel("self_attention", [tokens, dim], [tokens, dim], {"heads": heads})
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, tokens, dim, generator=g, dtype=F64)
    named = dict(kernel.named_parameters())
    w_in = next(v for k, v in named.items() if k.endswith("in_proj_weight")).detach()
    b_in = next(v for k, v in named.items() if k.endswith("in_proj_bias")).detach()
    w_o = next(v for k, v in named.items() if k.endswith("out_proj.weight")).detach()
    b_o = next(v for k, v in named.items() if k.endswith("out_proj.bias")).detach()
    q, k, v = (s @ w_in.T + b_in).split(dim, dim=-1)
    d = dim // heads
    outs = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d), -1)
        outs.append(weights @ v[..., part])
    by_hand = torch.cat(outs, -1) @ w_o.T + b_o
    torch.testing.assert_close(kernel(s), by_hand)


def test_self_attention_costs_four_sequential_products() -> None:
    # the Q/K/V projections (one parallel product), Q Kᵀ, the weights times V, W_o
    assert get_op("self_attention").smm == 4


def _dropout_net(p: float = 0.5) -> pc.PCNetwork:
    spec = pc.GraphSpec.from_dict(
        {
            "name": "dropout",
            "nodes": [
                {"name": "x", "shape": 6, "role": "input"},
                {"name": "h", "shape": 6, "activation": "tanh"},
                {"name": "y", "shape": 3, "role": "output"},
            ],
            "edges": [
                {"source": "x", "target": "h", "op": "dropout", "params": {"p": p}},
                {"source": "h", "target": "y", "op": "linear"},
            ],
        }
    )
    return pc.compile(spec, seed=0, dtype=F64)


def _dropout_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return {
        "x": torch.randn(5, 6, generator=g, dtype=F64),
        "y": torch.randn(5, 3, generator=g, dtype=F64),
    }


def test_dropout_is_one_mask_per_training_batch_and_the_identity_at_evaluation() -> None:
    net = _dropout_net()
    data, clamp = _dropout_data(), {"x", "y"}
    learner = pc.PCLearner(net, init="forward", T=3, lr_neurons=0.1,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    h = net.node("h").cols
    evaluated = learner.infer(data, clamp=clamp, T=0).states[:, h].clone()
    torch.testing.assert_close(evaluated, data["x"])  # identity: h = μ_h = x
    got = learner.infer(data, clamp=clamp, T=3, train=True).states[:, h].clone()
    mask = net.kernels[0].module.mask
    assert mask is not None and set(mask.unique().tolist()) <= {0.0, 2.0}  # m / (1 − p)
    assert 0 < int((mask == 0).sum()) < mask.numel()
    # the reference: forward init and 3 SGD steps on E with that same mask held fixed
    x = torch.zeros(5, net.state_size, dtype=F64)
    net.write(x, data)
    with torch.no_grad():
        x[:, h] = data["x"] * mask
    for _ in range(3):
        x_ = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(net.energy(x_), x_)
        x = (x_ - 0.1 * grad * (torch.arange(net.state_size) >= h.start)
             * (torch.arange(net.state_size) < h.stop)).detach()  # fmt: skip
    torch.testing.assert_close(got, x[:, h])
    # the next training batch draws a new mask; the same generator seed, the same masks
    learner.infer(data, clamp=clamp, T=0, train=True)
    second = net.kernels[0].module.mask.clone()
    assert not torch.equal(second, mask)
    again = pc.PCLearner(_dropout_net(), init="forward", T=3, lr_neurons=0.1,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    again.infer(data, clamp=clamp, T=3, train=True)
    torch.testing.assert_close(again.net.kernels[0].module.mask, mask)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_p_outside_0_1_is_refused(p: float) -> None:
    with pytest.raises(SpecError, match=r"x→h.*p"):
        _spec([6], [6], "dropout", {"p": p})
