"""Learning (the M-step, paper Eq. 4) and the init → clamp → infer → learn step.

After T inference steps, one optimizer step on the parameters with ∂E/∂θ evaluated at the final
states (for a linear edge ∂E/∂W_ji = −(w_i ε_i)ᵀ σ_j(x_j)). AdamW for the weights and SGD for
the neurons, as in the paper, are the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch

from pcgraph import fast
from pcgraph.analysis import inference_smm, op_smm
from pcgraph.cache import BoundedCache
from pcgraph.compiler.bound import Sweep
from pcgraph.compiler.network import PCNetwork
from pcgraph.distributed import DistContext
from pcgraph.engine.checks import (
    GRAD_MODES,
    check_choice,
    check_clamped_data,
    check_optimizer_params,
    check_positive,
    check_steps,
)
from pcgraph.engine.epc import ALGORITHMS, check_epc, epc_infer, epc_order, epc_step_smm, epc_update
from pcgraph.engine.incremental import incremental_step
from pcgraph.engine.inference import GradMode, InferenceResult, NeuronOptimizer, solve_inference
from pcgraph.engine.metrics import StepMetrics
from pcgraph.engine.weights import fuse_optimizer, unfused, update_params
from pcgraph.errors import ClampError, ConfigError
from pcgraph.init import InitContext, Initializer, make_initializer
from pcgraph.solvers import SOLVERS, get_solver

# fuse_optimizer and update_params (engine/weights.py) are re-exported for PCLearner's users
__all__ = ["PCLearner", "StepMetrics", "fuse_optimizer", "update_params"]

SCHEDULES = ("standard", "incremental")

_fuse = fuse_optimizer  # PCLearner's keyword of the same name shadows it there


class PCLearner:
    """A network with its initializer and optimizers: ``train_step`` = init → clamp → infer → learn.

    Args:
        net: the compiled network.
        init: an initializer or its name (``auto`` = forward when possible, else memory).
        T: inference steps per weight update.
        lr_neurons: γ, the neuron learning rate.
        neuron_optimizer: the neuron solver, a name in :data:`pcgraph.solvers.SOLVERS`:
            ``sgd`` (paper), ``momentum`` or ``adam``, the ODE solvers ``euler`` (= sgd) and
            ``heun`` (second order, two gradient evaluations per step), or one registered
            with :func:`pcgraph.register_solver`.
        schedule: ``standard`` (T inference steps, then one weight update: the paper's) or
            ``incremental`` (incremental PC, iPC: a weight update after every inference step,
            from the same local errors; T weight updates per ``train_step``).
        tol: stop inference early once the relative energy change of a step is at most
            ``tol`` (see :func:`solve_inference`); None runs all T steps.
        algorithm: ``pc`` (inference descends the energy in the states) or ``epc``
            (error-based PC, :mod:`pcgraph.engine.epc`: it descends the energy in the
            prediction errors through the forward sweep, and updates the weights through it;
            DAGs only, any initialization).
        optimizer: a torch optimizer over ``net.parameters()``; default AdamW(lr=1e-3).
        clamp: the training clamp set (task name or node names).
        grad_mode: ``local`` or ``autograd`` gradients.
        generator: randomness of stochastic initializers.
        cuda_graph: on CUDA, replay the inference loop from a captured CUDA graph (see
            :func:`solve_inference`); a ConfigError for a network that is not on CUDA.
        compile_step: run each inference step through ``torch.compile`` (see
            :func:`solve_inference`).
        dist: the data-parallel job (:func:`pcgraph.distributed.init_from_env`); each rank
            passes its shard of every batch, and gradients and learned init state are reduced.
        step_rule: ``fixed`` or ``backtrack`` (the energy never rises; see
            :func:`solve_inference`); may be changed between calls, e.g. for evaluation.
        fuse_optimizer: run a default-built torch ``Adam``/``AdamW`` with its fused kernel
            (the same update to rounding, ~3.6× faster on the CPU; see
            :func:`fuse_optimizer`); False leaves the optimizer exactly as given. A fast
            path: fused only where the fast paths are on when the learner is built, and run
            on torch's default loop in the steps taken while they are off
            (:mod:`pcgraph.fast`).
    """

    def __init__(
        self,
        net: PCNetwork,
        *,
        init: str | Initializer = "auto",
        T: int = 8,
        lr_neurons: float = 0.1,
        neuron_optimizer: NeuronOptimizer = "sgd",
        optimizer: torch.optim.Optimizer | None = None,
        clamp: str | Iterable[str] = "train",
        grad_mode: GradMode = "local",
        generator: torch.Generator | None = None,
        init_options: Mapping[str, Any] | None = None,
        cuda_graph: bool = False,
        compile_step: bool = False,
        dist: DistContext | None = None,
        fuse_optimizer: bool = True,
        step_rule: str = "fixed",
        schedule: str = "standard",
        tol: float | None = None,
        algorithm: str = "pc",
    ) -> None:
        self.net = net
        self._per_pass = op_smm(net.graph)  # sequential products of one pass (deepest op)
        self.initializer = make_initializer(init, **dict(init_options or {}))
        check_steps(T)
        check_positive(lr_neurons, "lr_neurons (γ)")
        neuron_optimizer = get_solver(neuron_optimizer, what="neuron_optimizer")[0]
        check_choice(grad_mode, "grad_mode", GRAD_MODES)
        self.step_rule = check_choice(step_rule, "step_rule", ("fixed", "backtrack"))
        self.schedule = check_choice(schedule, "schedule", SCHEDULES)
        self.algorithm = check_choice(algorithm, "algorithm", ALGORITHMS)
        if self.algorithm == "epc":
            check_epc(net, neuron_optimizer)
            # the sweep's order and a step's cost depend on the graph only: once here
            self._epc_order = epc_order(net)
            self._epc_smm = epc_step_smm(net, self._per_pass)
            if self.schedule != "standard" or dist is not None:
                raise ConfigError(
                    "algorithm='epc' runs the standard schedule on one process: drop "
                    "schedule='incremental' and dist"
                )
        if tol is not None:
            check_positive(tol, "tol")
        self.tol = tol
        self.T, self.lr_neurons, self.neuron_optimizer = T, lr_neurons, neuron_optimizer
        self.optimizer = optimizer or torch.optim.AdamW(net.parameters(), lr=1e-3)
        check_optimizer_params(net, self.optimizer)
        self.optimizer_fused = fuse_optimizer and _fuse(self.optimizer)
        self.clamp = net.resolve_clamp(clamp)
        # a memory reads only nodes clamped in training and at evaluation: refused here if not
        self.initializer.prepare(net, self.clamp)
        self.grad_mode: GradMode = grad_mode
        self.generator = generator
        self.smm_total = 0
        self.steps = 0
        if cuda_graph and net.device.type != "cuda":
            raise ConfigError(
                f"cuda_graph=True needs the network on a CUDA device, but it is on "
                f"{net.device}; compile it with device='cuda', or leave cuda_graph off"
            )
        self.cuda_graph = bool(cuda_graph)
        self.dist = dist
        self.compile_step = compile_step
        self._contexts: dict[tuple[frozenset[str], bool], InitContext] = {}
        self._states: BoundedCache[int, torch.Tensor] = BoundedCache(4)  # per batch size
        # each node's columns of those buffers, for writing the clamped data
        self._views: BoundedCache[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] = BoundedCache(
            4
        )

    def context(
        self, clamp: frozenset[str], *, train: bool, labels: torch.Tensor | None = None
    ) -> InitContext:
        """The (cached) init context for a clamp set; caches survive across minibatches."""
        key = (clamp, train)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = InitContext(
                self.net, clamp, train=train, generator=self.generator, dist=self.dist
            )
            self._contexts[key] = ctx
        ctx.labels = labels
        return ctx

    def prepare_states(
        self, data: Mapping[str, torch.Tensor], clamp: frozenset[str], *, check_finite: bool = True
    ) -> torch.Tensor:
        """A state buffer with the clamped nodes holding ``data`` (one buffer per batch size).

        ``check_finite=False`` leaves NaN/inf data to the energy monitor of the inference that
        follows (:func:`pcgraph.engine.checks.check_growth` names the node that holds it),
        which costs nothing on a healthy update; a caller that runs no inference keeps it on.
        """
        missing = [n for n in clamp if n not in data]
        extra = [n for n in data if n not in clamp]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"no data for clamped node(s) {', '.join(sorted(missing))}")
            if extra:
                parts.append(
                    f"data given for node(s) {', '.join(sorted(extra))} that are not "
                    f"clamped (clamp set: {', '.join(sorted(clamp)) or 'empty'})"
                )
            raise ClampError("; ".join(parts) + "; pass exactly one tensor per clamped node")
        data = check_clamped_data(self.net, data, check_finite=check_finite)  # named per node
        if not data:  # e.g. query({}): nothing observed, so no batch and nothing to infer from
            raise ClampError(
                "no data given: clamp at least one node with a tensor [B, *shape] (for a query, "
                "the observed nodes; for training, the clamp set's nodes)"
            )
        batch = {int(v.shape[0]) for v in data.values()}
        if len(batch) != 1:
            raise ClampError(
                f"the clamped tensors disagree on the batch size: "
                f"{ {n: int(v.shape[0]) for n, v in data.items()} }"
            )
        (b,) = batch
        x = self._states.get_or_create(b, lambda: self.net.new_states(b))
        found = self._views.get(b)
        if found is None or found[0] is not x:
            found = self._views.put(b, (x, {n.name: x[:, n.cols] for n in self.net.nodes}))
        views = found[1]
        for name, value in data.items():
            view = views[name]
            same = value.dtype == x.dtype and value.device == x.device
            if same and value.numel() == view.numel():  # (the batch sizes agree: checked above)
                view.copy_(value.reshape(view.shape))
            else:
                self.net.write(x, {name: value})  # converts, or names the node and the shape
        return x

    def _update_params(self, result: InferenceResult) -> None:
        """:func:`update_params` with this learner's optimizer; one that it fused runs torch's
        default loop (the fused kernel's reference) while the fast paths are off."""
        off = self.optimizer_fused and not fast.enabled()
        with unfused(self.optimizer) if off else nullcontext():
            update_params(
                self.net, result, self.optimizer, grad_mode=self.grad_mode, dist=self.dist
            )

    def _initialized(
        self,
        data: Mapping[str, torch.Tensor],
        clamp: frozenset[str],
        *,
        train: bool,
        labels: torch.Tensor | None,
        initializer: Initializer | None = None,
    ) -> tuple[torch.Tensor, Sweep | None]:
        """The state buffer with ``data`` clamped and the free nodes initialized (by
        ``initializer``, default the learner's), and the forward sweep the initializer
        returned (None: it ran none), for the inference that follows."""
        x = self.prepare_states(data, clamp, check_finite=False)  # the monitor names bad data
        if self.net.per_batch:  # dropout: a new mask per batch
            self.net.new_batch(train=train, generator=self.generator)
        ctx = self.context(clamp, train=train, labels=labels)
        with torch.no_grad():
            sweep = (initializer or self.initializer).init(x, ctx)
        return x, sweep

    def _solve(
        self,
        x: torch.Tensor,
        clamp: frozenset[str],
        T: int,
        *,
        trace: bool,
        sweep: Sweep | None,
        tol: float | None,
    ) -> InferenceResult:
        """``solve_inference`` with this learner's neuron optimizer, γ, runner and step rule."""
        return solve_inference(
            self.net,
            x,
            clamp,
            T,
            optimizer=self.neuron_optimizer,
            lr=self.lr_neurons,
            trace=trace,
            grad_mode=self.grad_mode,
            cuda_graph=self.cuda_graph,
            compile_step=self.compile_step,
            step_rule=self.step_rule,
            sweep=sweep,
            tol=tol,
        )

    def infer(
        self,
        data: Mapping[str, torch.Tensor],
        *,
        clamp: str | Iterable[str] | None = None,
        T: int | None = None,
        train: bool = False,
        labels: torch.Tensor | None = None,
        trace: bool = False,
        init: str | Initializer | None = None,
    ) -> InferenceResult:
        """Initialize, clamp ``data`` and run inference (no learning). Returns the result whose
        ``states`` buffer is reused by the next call: clone what you keep.

        ``init`` initializes this call instead of the learner's initializer (a name or an
        initializer), e.g. ``"zero"`` for a clamp set no memory was trained for."""
        clamp_set = self.clamp if clamp is None else self.net.resolve_clamp(clamp)
        initializer = None if init is None else make_initializer(init)
        x, sweep = self._initialized(
            data, clamp_set, train=train, labels=labels, initializer=initializer
        )
        if self.algorithm == "epc":  # errors, not states: pcgraph.engine.epc
            T_run = self.T if T is None else T
            check_steps(T_run)
            return epc_infer(  # type: ignore[return-value]
                self.net,
                x,
                clamp_set,
                T_run,
                order=self._epc_order,
                lr=self.lr_neurons,
                neuron_optimizer=self.neuron_optimizer,
                trace=trace,
            )
        # the init just above changed nothing but the free states: its sweep holds
        return self._solve(
            x, clamp_set, self.T if T is None else T, trace=trace, sweep=sweep, tol=self.tol
        )

    def train_step(
        self,
        data: Mapping[str, torch.Tensor],
        *,
        labels: torch.Tensor | None = None,
        trace: bool = False,
    ) -> StepMetrics:
        """One weight update: init → clamp ``data`` → T inference steps → observe → learn.

        Args:
            data: one tensor per clamped node, batch first.
            labels: class labels [B] for average/hybrid (else taken from a clamped output).
            trace: also return the per-node energy trace [T+1, N].
        """
        ctx = self.context(self.clamp, train=True, labels=labels)
        # the initializer learns before the weight step, at the weights inference ran with: a
        # memory's loss E(S(m(o))) and the weights' loss are then gradients at one point, as
        # backprop through an encoder and its decoder takes them (stepping the memory after the
        # weights moved made the decoder's memory chase them: docs/results.md §4)
        if self.algorithm == "epc":
            result = self.infer(data, train=True, labels=labels, trace=trace)
            self.initializer.observe(result.states, ctx)
            epc_update(self.net, result, self._epc_order, self.optimizer)  # type: ignore[arg-type]
        elif self.schedule == "incremental" and self.T > 0:
            result = incremental_step(self, data, labels=labels, trace=trace)
            self.initializer.observe(result.states, ctx)  # the weights moved at every step
        else:
            result = self.infer(data, train=True, labels=labels, trace=trace)
            self.initializer.observe(result.states, ctx)
            self._update_params(result)
        # every gradient evaluation is a prediction pass and a message pass; under iPC the
        # weight gradient of a step reads the errors that step computed and runs beside its
        # message products, so it adds no sequential product
        steps = result.steps if result.steps >= 0 else self.T
        evaluations = steps * SOLVERS.get(self.neuron_optimizer).stages
        if self.algorithm == "epc":  # a step: the sweep forward and back through the graph
            smm = steps * self._epc_smm + self.initializer.smm(ctx)
        else:
            smm = inference_smm(evaluations, per_pass=self._per_pass) + self.initializer.smm(ctx)
        self.smm_total += smm
        self.steps += 1
        return StepMetrics(
            result.energy_before,
            result.energy_after,
            result.node_energies,
            smm,
            self.smm_total,
            self.initializer.name,
            self.T,
            result.trace,
            steps,
        )

    def predict(
        self, inputs: Mapping[str, torch.Tensor], *, T: int | None = None
    ) -> dict[str, torch.Tensor]:
        """See :func:`pcgraph.engine.readout.predict`."""
        from pcgraph.engine.readout import predict

        return predict(self, inputs, T=T)

    def reconstruct(
        self, observed: Mapping[str, torch.Tensor], *, T: int | None = None
    ) -> dict[str, torch.Tensor]:
        """See :func:`pcgraph.engine.readout.reconstruct`."""
        from pcgraph.engine.readout import reconstruct

        return reconstruct(self, observed, T=T)

    def query(
        self,
        observed: Mapping[str, torch.Tensor],
        *,
        T: int | None = None,
        init: str | Initializer | None = None,
    ) -> dict[str, torch.Tensor]:
        """See :func:`pcgraph.engine.readout.query`."""
        from pcgraph.engine.readout import query

        return query(self, observed, T=T, init=init)
