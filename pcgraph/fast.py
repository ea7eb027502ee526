"""One switch for every fast path of pcgraph.

Beside its plain torch computation, pcgraph has fast paths that compute the same numbers sooner:
the native float32 C kernels (:mod:`pcgraph.ops.native`), oneDNN for large float32 products on
the CPU (:mod:`pcgraph.ops.matmul`), the specialised step closures of the inference program
(:mod:`pcgraph.compiler.steps`: bound products, the fused SGD step, bound weight gradients,
per-node energies in one native call), 2σ(2x) − 1 for tanh, the fused Adam/AdamW kernel, and
the sparse backend's products (:mod:`pcgraph.compiler.sparse_mp`).
Each names the plain reference it equals; with the switch off only that reference runs: no C
compiler is started, no private torch op is called, and every product is a public torch one
(``torch.addmm``, ``torch.mm``, ``torch.nn.functional.linear``).

The switch starts from the environment variable ``PCGRAPH_FAST`` (``0``, ``false``, ``off`` or
``no`` turn the fast paths off; ``1``, ``true``, ``on``, ``yes`` or unset leave them on) and is
set in a program with :func:`fast_paths`, as a call or as a context manager::

    with pcgraph.fast_paths(False):  # the plain reference inside, the previous value after
        learner.train_step(batch)

A program's cached step closures are bound for one value of the switch and bound again when it
changes (they key on :func:`enabled`), so no result mixes the two. The switch is global to the
process (not per thread). This module imports no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import TracebackType

from pcgraph.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "SPECIALISATIONS",
    "FastPaths",
    "Specialisation",
    "check_environment",
    "enabled",
    "fast_paths",
    "generation",
]

ENV_VAR = "PCGRAPH_FAST"
_ON = ("1", "true", "on", "yes")
_OFF = ("0", "false", "off", "no")


def _from_environment() -> bool:
    raw = os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return True
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(
        f"{ENV_VAR}={raw!r} is not one of {', '.join(_ON + _OFF)}; set {ENV_VAR}=0 to run "
        "only the plain torch reference, or unset it to use the fast paths"
    )


def _read_environment() -> tuple[bool, ConfigError | None]:
    try:
        return _from_environment(), None
    except ConfigError as exc:  # raised by check_environment(), where it can be reported
        return True, exc


# an unknown value does not break ``import pcgraph`` (the CLI could not report it in one line
# then): compile() and every command raise it through check_environment()
_enabled, _environment_error = _read_environment()
_generation = 0  # bumped at every change of the switch


def check_environment() -> None:
    """Raise the :class:`ConfigError` of an unknown ``PCGRAPH_FAST`` value, if any (unless a
    program has set the switch since, which decides it)."""
    if _environment_error is not None:
        raise _environment_error


def enabled() -> bool:
    """Whether the fast paths are on (the default; see the module docstring)."""
    return _enabled


def generation() -> int:
    """A counter that changes whenever the switch does: a cache of things built for one value
    of it keys on this (or on :func:`enabled`)."""
    return _generation


def _set(value: bool) -> None:
    global _enabled, _generation, _environment_error
    _environment_error = None  # the program decided
    if value != _enabled:
        _enabled = value
        _generation += 1


class FastPaths:
    """The switch set by :func:`fast_paths`; as a context manager it puts the previous value
    back on exit."""

    def __init__(self, on: bool) -> None:
        self.previous = _enabled
        self.enabled = bool(on)
        _set(self.enabled)

    def __enter__(self) -> FastPaths:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _set(self.previous)

    def __repr__(self) -> str:
        return f"fast_paths({self.enabled})"


def fast_paths(enabled: bool) -> FastPaths:
    """Turn pcgraph's fast paths on or off: with them off, only the plain torch reference runs.

    The fast paths (native C kernels, oneDNN products, fused inference steps and Adam) compute
    the same numbers as the reference sooner; ``PCGRAPH_FAST=0`` in the environment turns them
    off from the start.

    Called plainly it sets the switch for the rest of the process; used as ``with
    fast_paths(False): ...`` it sets it for the block and restores the previous value after.

    Args:
        enabled: True for the fast paths (the default state), False for the plain torch
            reference only.
    """
    if not isinstance(enabled, bool):
        raise ConfigError(f"fast_paths(enabled=...) takes True or False, not {enabled!r}")
    return FastPaths(enabled)


@dataclass(frozen=True)
class Specialisation:
    """One fast path: where it applies, the code that runs, the plain reference it must equal,
    and the test that checks that they agree (``tests/test_fast.py`` checks that each named
    object and test exists).

    Attributes:
        name: a short name.
        applies: the pattern it is chosen for (everything else takes the reference).
        code: the fast code, ``module:qualified.name``.
        reference: the plain code it equals, ``module:qualified.name``; the only code that
            runs while the switch is off.
        test: ``tests/file.py::test_name``.
    """

    name: str
    applies: str
    code: str
    reference: str
    test: str


_S = Specialisation
_TRAINING = "tests/test_fast.py::test_float32_training_is_the_same_with_fast_paths_on_and_off"

#: Every fast path of pcgraph, each named against the plain reference it must equal.
SPECIALISATIONS: tuple[Specialisation, ...] = (
    _S(
        "bound prediction error",
        "a node whose only parent is one plain linear edge",
        "pcgraph.compiler.steps:error_step",
        "pcgraph.ops.kernel:EdgeKernel.error_into",
        "tests/test_matmul.py::test_fast_step_equals_autograd_of_the_energy",
    ),
    _S(
        "bound sweep and fixed products",
        "forward init or a clamped parent's fixed part through one plain linear edge",
        "pcgraph.compiler.steps:forward_step",
        "pcgraph.ops.kernel:EdgeKernel.forward_into",
        _TRAINING,
    ),
    _S(
        "bound message",
        "a free node whose only child is one plain linear edge",
        "pcgraph.compiler.steps:message_step",
        "pcgraph.compiler.gradient:GradientSteps.general",
        "tests/test_matmul.py::test_fast_step_equals_autograd_of_the_energy",
    ),
    _S(
        "fused SGD step",
        "plain SGD neurons after a forward sweep, float32 on the CPU, one linear child",
        "pcgraph.compiler.steps:sgd_message_step",
        "pcgraph.compiler.gradient:GradientSteps.general",
        "tests/test_quiet_front.py::test_fused_float32_sgd_steps_match_autograd",
    ),
    _S(
        "bound weight gradients",
        "param_grads(accumulate=False) with .grad tensors of the right shape, no stacks",
        "pcgraph.compiler.steps:param_grad_step",
        "pcgraph.compiler.program_readout:Readout._general_param_grads",
        "tests/test_matmul.py::test_fast_step_equals_autograd_of_the_energy",
    ),
    _S(
        "per-node energies in one call",
        "gaussian nodes, node-blocked float32 buffers on the CPU",
        "pcgraph.ops.native:bind_block_energy",
        "pcgraph.compiler.program_readout:Readout.node_energies",
        "tests/test_native.py::test_block_energies_are_half_weighted_sums_of_squares",
    ),
    _S(
        "one-call write-back with a finiteness check",
        "the working states into x's columns, float32 on the CPU",
        "pcgraph.ops.native:bind_store_blocks",
        "pcgraph.compiler.steps:write_back",
        "tests/test_native.py::test_stored_blocks_land_in_their_columns_and_nowhere_else",
    ),
    _S(
        "native tanh and GELU",
        "float32 on the CPU (custom ops inside torch.compile)",
        "pcgraph.ops.native:tanh_into",
        "pcgraph.activations:_tanh",
        "tests/test_native.py::test_activations_agree_with_torch_whichever_kernel_runs",
    ),
    _S(
        "tanh as 2 sigma(2x) - 1",
        "CPU tanh of 2048 elements or more where the native kernel is not built",
        "pcgraph.activations:_tanh_into",
        "pcgraph.activations:_tanh",
        "tests/test_activations.py::test_tanh_keeps_autograd_and_float32_accuracy",
    ),
    _S(
        "oneDNN products",
        "float32 CPU products above the fixed size rule, outside autograd",
        "pcgraph.ops.matmul:linear",
        "pcgraph.ops.kernel:EdgeKernel.forward_into",
        "tests/test_matmul.py::test_onednn_products_equal_float64_references",
    ),
    _S(
        "fused Adam/AdamW",
        "a default-built torch Adam or AdamW",
        "pcgraph.engine.weights:fuse_optimizer",
        "pcgraph.engine.weights:unfused",
        "tests/test_learning.py::test_fused_optimizer_gives_the_default_update",
    ),
    _S(
        "memory init's graph kept for its loss",
        "memory init in training, every target retrieved and every free node set by it",
        "pcgraph.init.memory_kept:KeptInit",
        "pcgraph.init.memory:MemoryInit.initial_states",
        "tests/test_memory_linear.py::test_kept_init_graph_trains_as_the_reference",
    ),
    _S(
        "sparse weight gradient as an SDDMM",
        "the sparse backend on the CPU",
        "pcgraph.compiler.sparse_mp:_weight_grad_sampled_addmm",
        "pcgraph.compiler.sparse_mp:_weight_grad_torch",
        "tests/test_sparse_mp.py::test_every_implementation_equals_the_dense_math",
    ),
)
