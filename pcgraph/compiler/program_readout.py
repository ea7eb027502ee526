"""What a bound inference program reads from the errors of its last step: the per-node
energies and the parameter gradients ∂E/∂θ (:class:`Readout`)."""

from __future__ import annotations

import functools

import torch

from pcgraph import fast
from pcgraph.compiler.program_base import ProgramBase
from pcgraph.compiler.protocol import Buffers
from pcgraph.compiler.steps import (
    param_grad_step,
    without_grad,
    zero_grads_step,
)
from pcgraph.errors import ConfigError
from pcgraph.ops import native
from pcgraph.ops.kernel import store_grad
from pcgraph.ops.linear_kernel import LinearKernel

__all__ = ["Readout"]


class Readout(ProgramBase):
    """Per-node energies and parameter gradients (a part of :class:`InferenceProgram`)."""

    @without_grad
    def node_energies(
        self, buf: Buffers, out: torch.Tensor | None = None, *, zero: frozenset[int] = frozenset()
    ) -> torch.Tensor:
        """Per-node energies [N] from the current errors (gaussian: ½ w Σ ε²).

        Args:
            zero: nodes known to be at ε = 0 (swept by forward init): their energy is 0 and is
                not recomputed, so the energy at t = 0 after a forward sweep costs one norm per
                node that carries error (the clamped output), not one per node.
        """
        n = len(self.net.nodes)
        skip = zero | buf.quiet if buf.quiet else zero
        gauss, index, half_w = self.gauss_plan(skip)
        fast = self._energy_step(buf, skip, gauss)
        energies = torch.empty(n, device=buf.eps.device, dtype=buf.eps.dtype)
        if fast is not None and fast(energies):
            pass  # one native call wrote all N (0 for the nodes outside gauss)
        elif not gauss:
            energies.zero_()
        elif self.per_node_energy:  # few nodes: one norm per node, skipping clamped columns
            ev = self.bound.ev
            norms = torch.stack([torch.linalg.vector_norm(ev[i]) for i in gauss])
            energies.zero_().index_copy_(0, index, norms.square_().mul_(half_w))
        else:  # many nodes: squares, then a segment sum per node
            sq = buf.eps * buf.eps
            if buf.precision is not None:
                sq.mul_(buf.precision)
            assert buf.node_of is not None
            energies.zero_().index_add_(0, buf.node_of.reshape(-1), sq.reshape(-1), alpha=0.5)
        for i in self.custom_nodes:  # from the μ errors() kept, asked of the Energy object
            w = self.net.precision_of(i)  # a learned one: exp(s_i), out of autograd here
            energies[i] = self.energy_of[i].value(self.bound.xv[i], buf.ce_mu[i], w)  # type: ignore[arg-type]
        if out is not None:
            out.copy_(energies)
            return out
        return energies

    def _energy_step(
        self, buf: Buffers, skip: frozenset[int], gauss: list[int]
    ) -> native.BoundEnergy | None:
        """The gaussian energies of ``gauss`` (all but ``skip``) as one native call on
        ``buf.eps`` (None: not node-blocked, not float32 on the CPU, inside a trace, no native
        library, the fast paths off). A fast path; its reference is the norms or segment sums
        of :meth:`node_energies`."""
        if not self.node_blocked or not fast.enabled() or torch.compiler.is_compiling():
            return None  # (nothing bound inside a trace: ctypes arrays break the graph)
        memo = self.bound.derived.energy  # per skipped set, bound to these buffers' ε
        if skip in memo:
            return memo[skip]  # type: ignore[return-value]
        b = buf.eps.numel() // self.net.state_size
        nodes, listed = self.net.nodes, set(gauss)
        # every node gets a block, so that all N entries are written: an empty one (E = 0)
        # for the nodes outside ``gauss``
        blocks = [
            (b * n.offset, b * n.size if n.index in listed else 0, 0.5 * n.precision, n.index)
            for n in nodes
        ]
        if len(memo) >= 16:  # a few zero sets in practice
            memo.clear()
        found = memo[skip] = native.bind_block_energy(buf.eps, blocks)
        return found

    def param_grads(self, x: torch.Tensor, buf: Buffers, *, accumulate: bool = True) -> None:
        """∂E/∂θ at the current errors into ``.grad`` of every parameter: added to it, or, with
        ``accumulate=False``, written over it (in place where a ``.grad`` exists, so that
        learning allocates nothing per update)."""
        if self._bound is None or buf is not self._bound.buf:  # other buffers: bind them first
            self.prepare(x)
            if self._bound is None or buf is not self._bound.buf:
                raise ConfigError(
                    "param_grads needs the buffers that prepare() returned for these states "
                    f"(batch {x.shape[0]}); pass the InferenceResult's own states and buffers"
                )
        # bound gradient steps: a fast path equal to _general_param_grads (the reference)
        if not accumulate and not self.stacks and fast.enabled() and self._bound_param_grads(buf):
            self._precision_grads(accumulate=False)
            return
        with torch.no_grad():
            for st in self.stacks:
                st.param_grads(buf.sent_free | buf.sent, self.bound.dv, accumulate=accumulate)
            unstacked = [e for e in self.learnable_edges if e not in self.stacked_edges]
            self._general_param_grads(buf, unstacked, accumulate=accumulate)
            self._precision_grads(accumulate=accumulate)

    def _precision_grads(self, *, accumulate: bool) -> None:
        """∂E/∂s_i = ½ w_i ‖ε_i‖² − ½ N_i of each learned precision w_i = exp(s_i), at the
        errors of the last errors() call (:class:`pcgraph.energies.LearnedGaussian`)."""
        for i in self.learned:
            s = self.net.log_precision[f"n{i}"]
            eps = self.bound.ev[i]
            with torch.no_grad():
                g = 0.5 * s.exp() * eps.square().sum() - 0.5 * eps.numel()
            store_grad(s, g, accumulate=accumulate)

    def _zero_grads(self, e: int) -> None:
        for p in self.kernel(e).parameters():
            if p.grad is not None and p.grad.shape == p.shape:
                p.grad.zero_()
            else:
                p.grad = torch.zeros_like(p)

    def _bound_param_grads(self, buf: Buffers) -> bool:
        """``param_grads(accumulate=False)`` as steps bound to the current views and ``.grad``
        tensors, cached per quiet set: a plain linear edge's gradient is one product straight
        into ``.grad``. False (nothing written) when some parameter has no ``.grad`` of its
        shape yet, or one was replaced since the steps were bound: the general path then runs
        (and the steps are bound again on the next call)."""
        bound = self.bound
        memo = bound.derived.grad_steps
        steps = memo.get(buf.quiet)
        if steps is None:
            if any(p.grad is None or p.grad.shape != p.shape for p in self._params):
                return False
            edges, sent = self.net.edges, buf.sent_free | buf.sent
            steps = []
            with torch.no_grad():  # the library choice is made for products outside autograd
                for e in self.learnable_edges:
                    target = edges[e].target
                    kern = self.kernel(e)
                    if target in buf.quiet:  # δ = 0: the gradient is exactly 0
                        steps.append(zero_grads_step(list(kern.parameters())))
                        continue
                    s, d = sent[edges[e].source], bound.dv[target]
                    one = param_grad_step(kern, s, d) if isinstance(kern, LinearKernel) else None
                    general = functools.partial(kern.set_param_grads, s, d, accumulate=False)
                    steps.append(one or general)
            memo[buf.quiet] = steps
        with torch.no_grad():
            for k, step in enumerate(steps):
                if step() is False:  # a .grad was replaced (zero_grad(set_to_none=True), …):
                    memo.clear()  # this edge and the rest by the general path
                    self._general_param_grads(buf, self.learnable_edges[k:], accumulate=False)
                    break
        return True

    def _general_param_grads(self, buf: Buffers, learnable: list[int], *, accumulate: bool) -> None:
        """Edge by edge through the kernels: σ(x) at the states of the last errors() call; an
        edge into a node at δ = 0 has a zero gradient (nothing added, or zeros written)."""
        edges, sent, dv = self.net.edges, buf.sent_free | buf.sent, self.bound.dv
        for e in learnable:
            if edges[e].target in buf.quiet:
                if not accumulate:
                    self._zero_grads(e)
            else:
                self.kernel(e).set_param_grads(
                    sent[edges[e].source], dv[edges[e].target], accumulate=accumulate
                )
