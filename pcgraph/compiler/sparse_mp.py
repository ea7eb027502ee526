"""The three products of the sparse backend, each in its plain-torch reference and alternatives.

One inference step of :class:`~pcgraph.compiler.sparse.SparseProgram` on a flat state [B, D]
with W [D, D] stored as ``edge_index`` [2, nnz] (target, source) and a weight per edge:

- ``predictions``: s Wᵀ for s = σ(x) [B, D] (μ without its bias);
- ``messages``: δ W for the precision-weighted errors δ [B, D];
- ``weight_grad``: ∂E/∂W_e = −Σ_b δ[b, row_e] s[b, col_e] per edge [nnz].

:data:`IMPLEMENTATIONS` lists each op's implementations; each names the reference it must equal
(``torch``, the computation the backend has always run). The backend calls :func:`predictions`,
:func:`messages` and :func:`weight_grad`, which pick one through :func:`choose`, a fixed rule of
the op, the device and the fast switch (:func:`pcgraph.fast.enabled`); nothing is
timed at run time, so the same seed gives the same numbers. With the switch off the reference
runs.

The rule (:data:`DEFAULT`), from ``benchmarks/bench_sparse_mp.py``: medians of interleaved
calls, time / the reference's time, float32, 1 torch thread, on an idle 2-core AMD EPYC
(torch 2.13, torch-geometric 2.8.1 without torch-sparse or pyg-lib), decoder4_fashion as one
sparse W (12 % dense) and random W of 1k-20k neurons at 1-5 % density, B 16/64/256:

- ``predictions`` and ``messages`` keep the reference (MKL's CSR product). torch-geometric's
  ``EdgeIndex.matmul`` took 0.70-5.3x its time: faster only on the decoder at B 256, where
  ``row_sum``, torch's row-parallel ``torch.sparse.mm(csr, X, reduce="sum")`` that it reaches
  without torch-sparse or pyg-lib, was faster still (0.66-0.68x); up to 5.3x slower at B 16
  (building the EdgeIndex per call costs more than the product), and ``row_sum`` itself was
  0.66-2.3x across the graphs: no fixed rule wins everywhere. ``torch_geometric.utils.spmm``
  of a torch CSR tensor runs the reference's own product (0.91-1.17x: noise), and
  ``torch_geometric.utils.scatter`` (message passing edge by edge) took 10-61x.
- ``weight_grad`` runs ``torch.sparse.sampled_addmm`` on the CPU (an SDDMM over W's pattern;
  plain torch: torch-geometric has no CPU SDDMM without pyg-lib): 0.01-0.14x the reference's
  time, without the reference's two [B, nnz] gathers (8 GiB at 4M edges and B 256).
- On other devices the reference runs (the alternatives are untested there).

The reference and ``sampled_addmm`` gave the same bits at 1 and 2 threads (a 200k-edge W,
B 256).

torch_geometric is imported inside the functions that use it, so that importing pcgraph, and
every program that does not choose it, starts without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from pcgraph import fast

__all__ = [
    "DEFAULT",
    "IMPLEMENTATIONS",
    "Implementation",
    "SparseOperands",
    "choose",
    "messages",
    "predictions",
    "weight_grad",
]


@dataclass(frozen=True)
class SparseOperands:
    """W in the forms the products read.

    Attributes:
        edge_index: [2, nnz] (target, source) neurons, sorted by (row, column), no duplicates.
        w: W [D, D] as a CSR tensor, values in ``edge_index`` order.
        wt: Wᵀ [D, D] as a CSR tensor.
    """

    edge_index: torch.Tensor
    w: torch.Tensor
    wt: torch.Tensor

    @classmethod
    def from_edges(
        cls, edge_index: torch.Tensor, values: torch.Tensor, size: int
    ) -> SparseOperands:
        """The operands of W [size, size] with ``values`` at a coalesced ``edge_index``, built
        as :meth:`SparseProgram.prepare <pcgraph.compiler.sparse.SparseProgram.prepare>` does."""
        shape = (size, size)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
            w = torch.sparse_coo_tensor(
                edge_index, values, shape, is_coalesced=True, check_invariants=False
            )
            wt = torch.sparse_coo_tensor(
                edge_index.flip(0), values, shape, check_invariants=False
            ).coalesce()
            return cls(edge_index, w.to_sparse_csr(), wt.to_sparse_csr())


@dataclass(frozen=True)
class Implementation:
    """One way to compute an op: ``fn(operands, *dense)``, equal to ``IMPLEMENTATIONS[op][equals]``.

    ``torch_geometric``: whether it runs through torch-geometric (and so imports it).
    """

    fn: Callable[..., torch.Tensor]
    equals: str
    torch_geometric: bool


def _torch_geometric() -> ModuleType:
    """torch_geometric, imported on first use with its import warnings (``torch.jit.script``
    deprecations, which concern its own code) not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import torch_geometric
        import torch_geometric.utils

    return torch_geometric


# --- the references: the backend's plain-torch products ------------------------------------
def _csr_product(csr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(csr · denseᵀ)ᵀ [B, D] by ``torch.sparse.mm`` (MKL's CSR product on the CPU)."""
    return torch.sparse.mm(csr, dense.t()).t()


def _predictions_torch(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    return _csr_product(ops.w, s)


def _messages_torch(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    return _csr_product(ops.wt, delta)


def _weight_grad_torch(ops: SparseOperands, delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    rows, cols = ops.edge_index
    return -(delta[:, rows] * s[:, cols]).sum(0)


# --- torch-geometric -------------------------------------------------------------------------
def _edge_index_product(csr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(csr · denseᵀ)ᵀ by ``EdgeIndex.matmul`` (the EdgeIndex keeps the CSR's row pointers)."""
    tg = _torch_geometric()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
        warnings.filterwarnings("ignore", message=".*[Ss]parse invariant checks.*")
        out: torch.Tensor = tg.EdgeIndex(csr).matmul(dense.t(), csr.values())
    return out.t()


def _spmm_product(csr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(csr · denseᵀ)ᵀ by ``torch_geometric.utils.spmm``."""
    out: torch.Tensor = _torch_geometric().utils.spmm(csr, dense.t())
    return out.t()


def _scatter_product(
    index: torch.Tensor, gather: torch.Tensor, values: torch.Tensor, dense: torch.Tensor
) -> torch.Tensor:
    """Message passing edge by edge: out[:, index_e] += values_e · dense[:, gather_e], by
    ``torch_geometric.utils.scatter`` on node-major [D, B] rows."""
    scatter = _torch_geometric().utils.scatter
    edges = dense.t()[gather] * values[:, None]  # [nnz, B]
    out: torch.Tensor = scatter(edges, index, 0, dim_size=dense.shape[1], reduce="sum")
    return out.t()


def _values(csr: torch.Tensor) -> torch.Tensor:
    return csr.values()


def _predictions_tg_edge_index(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    return _edge_index_product(ops.w, s)


def _messages_tg_edge_index(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    return _edge_index_product(ops.wt, delta)


def _predictions_tg_spmm(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    return _spmm_product(ops.w, s)


def _messages_tg_spmm(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    return _spmm_product(ops.wt, delta)


def _predictions_tg_scatter(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    rows, cols = ops.edge_index
    return _scatter_product(rows, cols, _values(ops.w), s)


def _messages_tg_scatter(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    rows, cols = ops.edge_index
    return _scatter_product(cols, rows, _values(ops.w), delta)


# --- plain torch, other kernels ---------------------------------------------------------------
def _row_sum_product(csr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """(csr · denseᵀ)ᵀ by ``torch.sparse.mm(csr, X, reduce="sum")``: the kernel that
    ``EdgeIndex.matmul`` reaches on the CPU, called directly (a control for its overhead)."""
    return torch.sparse.mm(csr, dense.t(), "sum").t()


def _predictions_row_sum(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    return _row_sum_product(ops.w, s)


def _messages_row_sum(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    return _row_sum_product(ops.wt, delta)


def _weight_grad_sampled_addmm(
    ops: SparseOperands, delta: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """−(δᵀ s) sampled at W's pattern (an SDDMM): the values come in the CSR's order, which is
    ``edge_index``'s."""
    pattern = torch.sparse_csr_tensor(
        ops.w.crow_indices(),
        ops.w.col_indices(),
        torch.zeros_like(ops.w.values()),  # beta = 0 still reads them: NaN would propagate
        ops.w.shape,
        check_invariants=False,
    )
    return torch.sparse.sampled_addmm(pattern, delta.t(), s, beta=0.0, alpha=-1.0).values()


IMPLEMENTATIONS: dict[str, dict[str, Implementation]] = {
    "predictions": {
        "torch": Implementation(_predictions_torch, "torch", torch_geometric=False),
        "tg_edge_index": Implementation(_predictions_tg_edge_index, "torch", torch_geometric=True),
        "tg_spmm": Implementation(_predictions_tg_spmm, "torch", torch_geometric=True),
        "tg_scatter": Implementation(_predictions_tg_scatter, "torch", torch_geometric=True),
        "row_sum": Implementation(_predictions_row_sum, "torch", torch_geometric=False),
    },
    "messages": {
        "torch": Implementation(_messages_torch, "torch", torch_geometric=False),
        "tg_edge_index": Implementation(_messages_tg_edge_index, "torch", torch_geometric=True),
        "tg_spmm": Implementation(_messages_tg_spmm, "torch", torch_geometric=True),
        "tg_scatter": Implementation(_messages_tg_scatter, "torch", torch_geometric=True),
        "row_sum": Implementation(_messages_row_sum, "torch", torch_geometric=False),
    },
    "weight_grad": {
        "torch": Implementation(_weight_grad_torch, "torch", torch_geometric=False),
        "sampled_addmm": Implementation(_weight_grad_sampled_addmm, "torch", torch_geometric=False),
    },
}


DEFAULT = {"predictions": "torch", "messages": "torch", "weight_grad": "sampled_addmm"}
"""The implementation of each op that runs on the CPU with the fast paths on (see above)."""


def choose(op: str, batch_size: int, device: torch.device) -> str:
    """The name of the implementation of ``op`` that runs: :data:`DEFAULT` on the CPU with the
    fast paths on, else the ``torch`` reference. A fixed rule: nothing is timed.

    Args:
        op: ``predictions``, ``messages`` or ``weight_grad``.
        batch_size: B of the dense operands (the rule may depend on it; today it does not).
        device: where they are.
    """
    if op not in IMPLEMENTATIONS:
        raise KeyError(f"unknown sparse op {op!r}; choose from {', '.join(IMPLEMENTATIONS)}")
    if not fast.enabled() or device.type != "cpu":
        return "torch"
    return DEFAULT[op]


def _run(op: str, ops: SparseOperands, *dense: torch.Tensor) -> Any:
    name = choose(op, dense[0].shape[0], dense[0].device)
    return IMPLEMENTATIONS[op][name].fn(ops, *dense)


def predictions(ops: SparseOperands, s: torch.Tensor) -> torch.Tensor:
    """s Wᵀ [B, D] for s = σ(x) [B, D] (μ without its bias)."""
    out: torch.Tensor = _run("predictions", ops, s)
    return out


def messages(ops: SparseOperands, delta: torch.Tensor) -> torch.Tensor:
    """δ W [B, D] for the precision-weighted errors δ [B, D]."""
    out: torch.Tensor = _run("messages", ops, delta)
    return out


def weight_grad(ops: SparseOperands, delta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """∂E/∂W_e = −Σ_b δ[b, row_e] s[b, col_e] [nnz], in ``edge_index`` order."""
    out: torch.Tensor = _run("weight_grad", ops, delta, s)
    return out
