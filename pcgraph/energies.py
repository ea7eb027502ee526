"""Node energies: one object per kind, with everything the engine needs of it.

For node i with prediction μ_i and state x_i (precision w_i), every energy gives

- ``value``: E_i summed over the batch;
- ``error``: the "ε" for which δ_i = −∂E_i/∂μ_i = w_i ε_i, so that the engine treats every
  node alike (messages δ W, weight gradients −δᵀ s);
- ``held``: whether a free node of this energy is *held* at ``mean(μ_i)`` instead of moved by
  gradient steps. E_i is linear in x_i for the likelihood energies below, so gradient steps
  would never stop; their minimiser over the data's domain is the model's mean, where δ_i = 0.

The kinds:

- ``gaussian``:       E = ½ w ‖x − μ‖²,                       ε = x − μ   (not held)
- ``cross_entropy``:  E = −w Σ_k x_k log softmax(μ)_k,         ε = x − softmax(μ) Σ_k x_k,
                      held at softmax(μ) (labels, one-hot or soft)
- ``bernoulli``:      E = −w Σ [x log σ(μ) + (1 − x) log(1 − σ(μ))] = w Σ [softplus(μ) − x μ],
                      ε = x − σ(μ), held at σ(μ) (binary or [0, 1] data such as images)
- ``laplace``:        E = w Σ |x − μ|,                        ε = sign(x − μ)   (not held).
                      Not differentiable at x = μ: ε there is 0, the subgradient of least norm
                      (what autograd of |·| gives), so a node at its prediction stays there.
                      A fixed step γ then moves a free node by ±γw until it sits within γw of
                      its prediction, where it jumps back and forth: use a decaying γ or the
                      backtracking step rule for exact fixed points.
- ``huber``:          E = w Σ h(x − μ), h(e) = ½ e² for |e| ≤ 1, |e| − ½ otherwise (δ = 1),
                      ε = clamp(x − μ, −1, 1)   (not held). Continuously differentiable: no
                      non-smooth point, only the curvature jumps at |e| = 1. ``Huber(delta)``
                      registered under a name of your own gives another δ.

A new energy is one :class:`Energy` subclass plus :func:`register_energy`, in this file or in a
user's own; the schema, the program, the network, the initializers and the analysis ask the
object. This module imports torch only inside the functions, so that the schema can read the
names without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pcgraph.errors import SpecError
from pcgraph.registry import Registry

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENERGIES",
    "Bernoulli",
    "CrossEntropy",
    "Energy",
    "Gaussian",
    "Huber",
    "Laplace",
    "check_energy",
    "get_energy",
    "is_gaussian",
    "node_energy",
    "register_energy",
]


class Energy:
    """One kind of node energy E_i(x_i, μ_i): its value and its error ε, δ_i = −∂E_i/∂μ_i = w_i ε_i.

    The built-in kinds and their formulas are listed in the module docstring (and on the YAML
    reference page).

    Subclass it and define ``value`` and ``error``; register an instance with
    :func:`register_energy`. For a free node that is not ``held``, inference uses ``w · error``
    both as δ = −∂E/∂μ and as the node's own term ∂E/∂x, which is exact for every energy of the
    difference x − μ (gaussian, Laplace, Huber, pseudo-Huber, …): registration checks both
    against autograd of ``value``.
    """

    name: ClassVar[str]
    held: ClassVar[bool] = False  # a free node sits at mean(μ) instead of being stepped
    needs_vector: ClassVar[bool] = False  # defined over a vector (classes), not any shape

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        """E_i summed over the batch (differentiable)."""
        raise NotImplementedError

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """ε with δ = −∂E/∂μ = w ε."""
        raise NotImplementedError

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        """The state a free node of this energy is held at (μ itself when not held)."""
        return mu


class Gaussian(Energy):
    name = "gaussian"

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        diff = x - mu
        return 0.5 * precision * (diff * diff).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return x - mu


class LearnedGaussian(Gaussian):
    """The gaussian energy of a node whose precision w = exp(s) is learned
    (``precision: learnable``): ½ w ‖x − μ‖² − ½ N log w, N the entries summed over. The log
    term keeps w from growing without bound: ∂E/∂s = ½ w ‖ε‖² − ½ N is 0 at w = N / ‖ε‖², the
    inverse mean squared error. Not a registered name: the node's energy stays ``gaussian``."""

    name = "gaussian (learned precision)"

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        w = torch.as_tensor(precision, dtype=x.dtype, device=x.device)
        return super().value(x, mu, precision) - 0.5 * x.numel() * torch.log(w)


LEARNED_GAUSSIAN = LearnedGaussian()


class CrossEntropy(Energy):
    name = "cross_entropy"
    held = True
    needs_vector = True

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        return -precision * (x * torch.log_softmax(mu, dim=-1)).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return x - torch.softmax(mu, dim=-1) * x.sum(-1, keepdim=True)

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(mu, dim=-1)


class Bernoulli(Energy):
    name = "bernoulli"
    held = True

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        return precision * (torch.nn.functional.softplus(mu) - x * mu).sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return x - torch.sigmoid(mu)

    def mean(self, mu: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.sigmoid(mu)


class Laplace(Energy):
    """E = w Σ |x − μ|: robust to outliers, sparse errors (see the module docstring for the
    point x = μ)."""

    name = "laplace"

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        return precision * (x - mu).abs().sum()

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return (x - mu).sign()


class Huber(Energy):
    """E = w Σ h_δ(x − μ), quadratic within δ of the prediction and linear beyond it.

    Args:
        delta: where the quadratic part ends (> 0); ``huber`` uses δ = 1.
    """

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        ok = isinstance(delta, int | float) and not isinstance(delta, bool) and delta > 0
        if not ok or delta == float("inf"):
            raise SpecError(f"huber: delta must be a finite number > 0, got {delta!r}")
        self.delta = float(delta)

    def value(self, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
        import torch

        return precision * torch.nn.functional.huber_loss(x, mu, reduction="sum", delta=self.delta)

    def error(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return (x - mu).clamp(-self.delta, self.delta)


def is_gaussian(energy: Energy) -> bool:
    """Whether ``energy`` is the built-in gaussian, whose closed forms (ε = x − μ, E = ½ w ‖ε‖²,
    ε = 0 at x = μ) the engine's fast paths use; any other energy is asked for ε and E."""
    return type(energy) is Gaussian


ENERGIES: Registry[Energy] = Registry("energy")
ENERGIES.register("gaussian", Gaussian(), aliases=("mse", "squared_error"))
ENERGIES.register("cross_entropy", CrossEntropy(), aliases=("ce", "xent"))
ENERGIES.register("bernoulli", Bernoulli(), aliases=("bce", "binary_cross_entropy"))
ENERGIES.register("laplace", Laplace(), aliases=("l1", "absolute_error"))
ENERGIES.register("huber", Huber(), aliases=("smooth_l1",))


def register_energy(
    name: str, energy: Energy, *, aliases: tuple[str, ...] = (), replace: bool = False
) -> Energy:
    """Make ``energy`` usable as ``energy: name`` on a node (YAML, Python specs, the CLI with
    ``--plugin``, every backend that supports it).

    Args:
        name: the name nodes give in ``energy:``.
        energy: an instance of an :class:`Energy` subclass defining ``value`` and ``error``.
        aliases: other names for it.
        replace: put it in place of an energy already registered as ``name``.

    Raises:
        SpecError: ``energy`` is not an Energy instance, lacks ``value`` or ``error``, or its
            ``error`` is not −∂E/∂μ / w (nor ∂E/∂x / w for an energy that is not held) by
            autograd of its ``value`` at a few random points; or the name is taken.
    """
    check_energy(name, energy)
    return ENERGIES.register(name, energy, aliases=aliases, replace=replace)


def check_energy(name: str, energy: object) -> None:
    """The checks of :func:`register_energy` (see there)."""
    if isinstance(energy, type) and issubclass(energy, Energy):
        raise SpecError(f"energy {name!r}: pass an instance, {energy.__name__}(), not the class")
    if not isinstance(energy, Energy):
        raise SpecError(
            f"energy {name!r} must be an instance of a pcgraph.Energy subclass, got "
            f"{type(energy).__name__}"
        )
    missing = [m for m in ("value", "error") if getattr(type(energy), m) is getattr(Energy, m)]
    if missing:
        raise SpecError(
            f"energy {name!r} ({type(energy).__name__}) does not define {' and '.join(missing)}; "
            "an Energy needs value(x, mu, precision) (E summed over the batch) and "
            "error(x, mu) (ε with δ = −∂E/∂μ = precision · ε)"
        )
    _check_against_autograd(name, energy)


def _check_against_autograd(name: str, energy: Energy) -> None:
    """``error`` against autograd of ``value`` at random points of the data's usual domain."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, generator=g, dtype=torch.float64)  # [0, 1]: images, probabilities
    if energy.needs_vector:
        x = x / x.sum(-1, keepdim=True)  # class probabilities
    mu = torch.randn(3, 4, generator=g, dtype=torch.float64)
    w = 0.7
    try:
        xg, mg = x.clone().requires_grad_(True), mu.clone().requires_grad_(True)
        value = energy.value(xg, mg, w)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise SpecError(
                f"energy {name!r}: value() must return one number (E summed over the batch), "
                f"got {type(value).__name__} {getattr(value, 'shape', '')}"
            )
        dx, dmu = torch.autograd.grad(value, (xg, mg), allow_unused=True)
        err = energy.error(x, mu)
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(
            f"energy {name!r} failed on float64 tensors of shape [3, 4]: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(err, torch.Tensor) or err.shape != x.shape:
        raise SpecError(f"energy {name!r}: error(x, mu) must return a tensor shaped like x")
    zero = torch.zeros_like(x)
    dmu = zero if dmu is None else dmu
    if not torch.allclose(w * err, -dmu, rtol=1e-6, atol=1e-9):
        raise SpecError(
            f"energy {name!r}: precision · error(x, mu) is not −∂value/∂mu by autograd "
            f"(largest difference {float((w * err + dmu).abs().max()):.3g}); error must return "
            "ε with δ = −∂E/∂μ = precision · ε"
        )
    dx = zero if dx is None else dx
    if not energy.held and not torch.allclose(w * err, dx, rtol=1e-6, atol=1e-9):
        raise SpecError(
            f"energy {name!r}: precision · error(x, mu) is −∂E/∂μ but not ∂E/∂x; inference "
            "steps a free node with precision · error, which is exact for energies of x − mu "
            "only. Write E as a function of x − mu, or declare held = True with a mean(mu)"
        )


def get_energy(name: str) -> Energy:
    """The energy registered as ``name`` (aliases accepted)."""
    return ENERGIES.get(name)


def node_energy(kind: str, x: torch.Tensor, mu: torch.Tensor, precision: float) -> torch.Tensor:
    """E_i summed over the batch (differentiable; the reference the closed forms are tested on)."""
    return ENERGIES.get(kind).value(x, mu, precision)
