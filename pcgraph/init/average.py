"""Stream-aligned average initialization and the hybrid (paper Eq. 10).

average: x_{i,k}(0, b+1) = mean of x_i(T, b) over the samples of minibatch b whose label equals
sample k's label. pcgraph indexes the class means by each sample's label, so the result never
depends on where a sample sits in its batch; stream-aligned batches
(:func:`pcgraph.data.stream_aligned_batches`: n/C samples of every class, same class order every
batch) guarantee that every class has a fresh mean after every batch, as the paper assumes.

Policy for the cases the paper leaves open:
- a class absent from the last batch keeps the mean of the last batch that had it;
- a sample whose class has never been seen, evaluation, and unlabeled samples use forward init
  (zero init where Proposition 3.2 forbids forward);
- labels come from ``InitContext.labels`` or, when absent, from the argmax of a clamped output.

hybrid(K): forward init for the nodes at forward level ≤ K, class averages for the rest.
"""

from __future__ import annotations

import torch

from pcgraph.analysis import init_smm
from pcgraph.compiler.bound import Sweep
from pcgraph.errors import InitError
from pcgraph.init.base import InitContext, Initializer
from pcgraph.init.simple import ForwardInit

__all__ = ["AverageInit", "HybridInit", "labels_from_context"]


def labels_from_context(x: torch.Tensor, ctx: InitContext) -> torch.Tensor | None:
    """The minibatch's labels: ``ctx.labels``, else the argmax of a clamped output node."""
    if ctx.labels is not None:
        labels = ctx.labels.to(device=x.device, dtype=torch.long)
        if labels.shape != (x.shape[0],):
            raise InitError(
                f"labels must have shape [{x.shape[0]}] (one per sample), got {list(labels.shape)}"
            )
        return labels
    outputs = [n for n in ctx.net.spec.names_with_role("output") if n in ctx.clamp]
    if not outputs:
        return None
    rows = ctx.net.view(x, outputs[0]).reshape(x.shape[0], -1)
    # the labels are the argmax of one-hot (or class-probability) rows; any other data in the
    # output (an image) would give class "labels" silently made up from its brightest value
    sums = rows.sum(-1)
    bad = (rows < 0).any(-1) | ((sums - 1).abs() > 1e-3)
    if bool(bad.any()):  # one device sync per batch
        i = int(bad.nonzero()[0, 0])
        raise InitError(
            f"average and hybrid initialization read class labels from the clamped output "
            f"{outputs[0]!r}, but its rows are not one-hot or class probabilities (row {i} "
            f"sums to {float(sums[i]):.4g}); pass labels=... to train_step (or Trainer data "
            "with labels), or use another initialization"
        )
    return rows.argmax(-1)


class AverageInit(Initializer):
    """Class means of the last minibatch's converged states (see the module docstring).

    Args:
        num_classes: C; default: the size of the (first) output node.
    """

    name = "average"

    def __init__(self, *, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.means: torch.Tensor | None = None  # [C, D]
        self.seen: torch.Tensor | None = None  # [C] bool
        self._cost = 0  # SMMs of the last init
        # class-mean columns as [lo, hi) ranges per (clamp set, device)
        self._col_runs: dict[tuple[frozenset[str], str], list[tuple[int, int]]] = {}

    def _classes(self, ctx: InitContext) -> int:
        if self.num_classes is None:
            outputs = ctx.net.spec.names_with_role("output")
            if not outputs:
                raise InitError(
                    f"initialization {self.name!r} needs num_classes: the graph has "
                    "no output node to take the class count from"
                )
            self.num_classes = ctx.net.node(outputs[0]).size
        return self.num_classes

    def _fallback(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        if ctx.forward_check[0]:
            self._cost = init_smm(ctx.net.graph, ctx.clamp, "forward")
            return ForwardInit().init(x, ctx)
        x[:, ctx.free_cols] = 0.0
        self._cost = 0
        return None

    def _average_cols(self, ctx: InitContext) -> torch.Tensor:
        """Columns this initializer fills with class means (all free columns)."""
        return ctx.free_cols

    def _runs(self, ctx: InitContext) -> list[tuple[int, int]]:
        """The class-mean columns as contiguous [lo, hi) ranges, cached per clamp set: one
        gather and one copy per range instead of a boolean mask's index and index_put."""
        key = (ctx.plan.clamp, str(ctx.plan.free_cols.device))
        runs = self._col_runs.get(key)
        if runs is None:
            cols = self._average_cols(ctx).nonzero().flatten().tolist()
            runs = []
            for c in cols:
                if runs and runs[-1][1] == c:
                    runs[-1] = (runs[-1][0], c + 1)
                else:
                    runs.append((c, c + 1))
            self._col_runs[key] = runs
        return runs

    def _fill_means(
        self, x: torch.Tensor, ctx: InitContext, labels: torch.Tensor, known: torch.Tensor | None
    ) -> None:
        """x[k, cols] = the class mean of sample k's label (only where ``known``, if given)."""
        assert self.means is not None
        for lo, hi in self._runs(ctx):
            rows = self.means[labels, lo:hi]
            if known is None:
                x[:, lo:hi] = rows
            else:
                x[:, lo:hi] = torch.where(known[:, None], rows, x[:, lo:hi])

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        labels = labels_from_context(x, ctx) if ctx.train else None
        if (
            labels is not None
            and labels.numel()
            and (int(labels.min()) < 0 or int(labels.max()) >= self._classes(ctx))
        ):
            raise InitError(
                f"labels must lie in [0, {self._classes(ctx)}), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        if labels is None or self.means is None or self.seen is None:
            return self._fallback(x, ctx)  # first batch, evaluation, unlabeled samples
        known = self.seen[labels]
        if bool(known.all()):
            # the class means first: the forward part then sweeps from x as it stands, and
            # the inference that follows may reuse its sweep (its nodes start at ε = 0)
            self._fill_means(x, ctx, labels, None)
            return self._partial_forward(x, ctx)
        self._fallback(x, ctx)  # unseen classes start from forward
        self._fill_means(x, ctx, labels, known)
        return None  # the class means moved nodes after the sweep: it no longer holds

    def _partial_forward(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        """The forward part that the class means do not overwrite (none for pure average),
        run after they are written."""
        self._cost = 0
        return None

    def observe(self, x_final: torch.Tensor, ctx: InitContext) -> None:
        if not ctx.train:
            return
        labels = labels_from_context(x_final, ctx)
        if labels is None:
            return
        c = self._classes(ctx)
        if self.means is None or self.seen is None:
            self.means = torch.zeros(
                c, x_final.shape[1], device=x_final.device, dtype=x_final.dtype
            )
            self.seen = torch.zeros(c, dtype=torch.bool, device=x_final.device)
        sums = torch.zeros_like(self.means).index_add_(0, labels, x_final.detach())
        counts = torch.bincount(labels, minlength=c)
        if ctx.dist is not None:  # class means over the global batch
            counts = counts.to(sums.dtype)
            ctx.dist.all_reduce_many_([sums, counts])
            counts = counts.round().long()
        present = counts > 0
        self.means[present] = sums[present] / counts[present, None].to(sums.dtype)
        self.seen |= present

    def smm(self, ctx: InitContext) -> int:
        """What the last :meth:`init` cost (a forward sweep on first/eval batches)."""
        return self._cost

    def reset(self) -> None:
        self.means = self.seen = None

    def state_dict(self) -> dict[str, object]:
        return {"means": self.means, "seen": self.seen, "num_classes": self.num_classes}

    def load_state_dict(self, state: dict[str, object]) -> None:
        means, seen, c = state.get("means"), state.get("seen"), state.get("num_classes")
        self.means = means if isinstance(means, torch.Tensor) else None
        self.seen = seen if isinstance(seen, torch.Tensor) else None
        self.num_classes = c if isinstance(c, int) else self.num_classes


class HybridInit(AverageInit):
    """Forward init for the nodes at forward level ≤ K, class averages above (paper Eq. 10).

    Args:
        K: the forward depth (K≈2 worked best in the paper); K=0 is pure average.
    """

    name = "hybrid"

    def __init__(self, *, K: int = 2, num_classes: int | None = None) -> None:
        if K < 0:
            raise InitError(f"hybrid: K must be ≥ 0, got {K}")
        super().__init__(num_classes=num_classes)
        self.K = K

    def init(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        self.require_forward(ctx)
        return super().init(x, ctx)

    def _partial_forward(self, x: torch.Tensor, ctx: InitContext) -> Sweep | None:
        sweep = ForwardInit(depth=self.K).init(x, ctx)
        self._cost = init_smm(ctx.net.graph, ctx.clamp, "hybrid", depth=self.K)
        return sweep

    def _average_cols(self, ctx: InitContext) -> torch.Tensor:
        cols = ctx.plan.free_cols.clone()
        for i in ctx.plan.forward_order(max_level=self.K):
            cols[ctx.net.nodes[i].cols] = False
        return cols

    def __repr__(self) -> str:
        return f"HybridInit(K={self.K})"
