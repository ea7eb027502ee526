"""PCX (JAX) side of the peer benchmark: one predictive-coding MLP training rule, timed.

Run with the PCX virtual environment made by ``benchmarks/peers/setup_pcx.sh``::

    .venv-pcx/bin/python benchmarks/peers/pcx_mlp.py --problem P.npz --out R.json \
        [--weights-out W.npz] [--threads N]

Only numpy, jax, optax and pcx (0.6.3) are imported, never torch or pcgraph.

The rule (identical to the torch side; ``benchmarks/peers/check_pcx.py`` checks it)
--------------------------------------------------------------------------------
MLP x_0 -> x_1 -> ... -> x_L.  Prediction mu_l = W_l s(x_{l-1}) + b_l with s = identity for
the input x_0 and s = the activation (tanh | relu | gelu, the exact erf form) for hidden
nodes.  Energy E = sum_{l=1..L} 1/2 ||x_l - mu_l||^2, SUMMED over the batch.  Per minibatch:
x_0 := input, x_L := one-hot label; hidden x_l := mu_l in order (forward init); T synchronous
plain-SGD steps x_l <- x_l - lr_neurons * dE/dx_l on the hidden nodes; then one AdamW step
(optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd), decay on every weight and bias)
on dE/dtheta at x(T).

How that is written with PCX's own API (as in PCX's examples)
--------------------------------------------------------------
* ``PCMLP(pxc.EnergyModule)`` holds ``pxnn.Linear`` layers and one ``pxc.Vode`` (default
  ``pxc.se_energy`` = 1/2 (h - u)^2, a gaussian node) per non-input layer.  The input x_0 is
  not a Vode, just the data fed to the first layer (as in the PCX examples).  The output
  Vode's ``h`` is tagged ``frozen = True`` and set to the label, so the inference mask
  ``pxu.M_hasnot(pxc.VodeParam, frozen=True)`` leaves it clamped.
* Parametrization: PCX's examples write ``x = vode(act(layer(x)))``, i.e.
  mu_l = s(W_l x_{l-1} + b_l).  Our rule is mu_l = W_l s(x_{l-1}) + b_l, so ``__call__``
  applies the activation to the previous node's value before the layer instead
  (``x = vode(layer(act(x)))``, no activation on x_0).  This is ordinary user model code; PCX
  puts no constraint on where the activation sits.
* ``pxc.STATUS.INIT`` with the Vode's default ruleset ``"h, u <- u"`` is PCX's forward
  initialisation (h_l := u_l = mu_l in layer order).
* Energy: ``energy`` is ``pxf.vmap``-ed over the batch and returns
  ``jax.lax.psum(model.energy(), "batch")`` -- the per-sample energies SUMMED over the batch,
  as PCX's examples do.  Inference differentiates that sum, so each node gets its own
  dE/dx_l (no 1/B).  PCX's examples then call ``optim_w.step(..., scale_by=1/B)`` for the
  weights, i.e. a batch MEAN for learning; this rule wants the SUM, so the weight step is
  taken with no ``scale_by`` (with Adam the two differ only through eps and weight decay's
  relative size, but they are not identical, so we follow the rule).
* Inference optimiser: ``pxu.Optim(lambda: optax.sgd(lr_neurons))`` -- plain SGD, no
  momentum, re-``init``-ed per minibatch and cleared after, as in the examples; each step
  updates all hidden nodes from one gradient (synchronous).
* Learning optimiser: ``pxu.Optim(lambda: optax.adamw(...), pxu.M(pxnn.LayerParam)(model))``.
  optax's adamw with ``mask=None`` decays every parameter, biases included, like torch's
  AdamW default; both compute theta - lr*wd*theta - lr*mhat/(sqrt(vhat)+eps) from the same
  theta (torch decays first, but Adam's step does not depend on theta, so it is the same).
* ``train_on_batch`` is ``pxf.jit(static_argnums=0)`` with a Python ``for`` loop over the T
  inference steps (unrolled at trace time), exactly the examples' structure.
* Weights: ``eqx.nn.Linear`` (behind ``pxnn.Linear``) stores ``weight`` as [out, in], the
  torch layout, so W_l is loaded and saved untransposed.

Timing
------
``compile_seconds``: the first call of ``train_on_batch`` (trace + XLA compile + one run).
The first pass over the S minibatches starts from the problem's initial weights; its weights
go to ``--weights-out``.  Then ``warmup`` untimed passes and ``repeats`` timed passes; each
timed pass ends with ``jax.block_until_ready`` on all weights, and ``seconds_per_update`` is
that pass's time / S (``seconds_per_pass`` is also written).

Threads (verified with jax/jaxlib 0.4.38 on a 2-core machine)
--------------------------------------------------------------
XLA's CPU client sizes its intra-op thread pool from the process's CPU affinity mask when the
client starts.  ``taskset -c 0`` (1 thread) or ``taskset -c 0,1`` (2 threads), or
``os.sched_setaffinity`` before jax starts, is what limits it.  The XLA flags do NOT:
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (with or without
``--xla_cpu_use_thunk_runtime=false``) still ran a chained 1024^2 matmul loop at ~1.9 CPU
seconds per wall second, the same as no flag, while ``taskset -c 0`` gave 1.00.
``intra_op_parallelism_threads`` is a TensorFlow setting, not an XLA flag.  An unknown
``--xla_...`` flag makes XLA abort at start.  ``--threads N`` therefore restricts this
process's affinity to the first N CPUs it is allowed (it cannot widen a ``taskset`` of the
caller) before importing jax, and records the affinity in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--problem", required=True, help=".npz written by the torch side")
    p.add_argument("--out", required=True, help="JSON file for the timings")
    p.add_argument("--weights-out", default=None, help=".npz for the weights after pass 1")
    p.add_argument("--threads", type=int, default=None, help="pin XLA CPU to N threads")
    p.add_argument(
        "--serve",
        action="store_true",
        help="after pass 1, time one pass per 'pass' line on stdin (answering its seconds on "
        "stdout) until 'quit': lets the caller interleave PCX with its own contenders",
    )
    return p.parse_args(argv)


def _pin_threads(n: int | None) -> list[int]:
    """Limit this process (and so XLA's CPU thread pool) to ``n`` CPUs; call before jax."""
    allowed = sorted(os.sched_getaffinity(0))
    if n is None:
        return allowed
    if n < 1 or n > len(allowed):
        raise SystemExit(f"--threads {n}: this process may use only CPUs {allowed}")
    os.sched_setaffinity(0, set(allowed[:n]))
    return sorted(os.sched_getaffinity(0))


ARGS = _parse_args() if __name__ == "__main__" else None
CPUS = _pin_threads(ARGS.threads) if ARGS is not None else sorted(os.sched_getaffinity(0))

# jax is imported only after the affinity is set: XLA reads it when its CPU client starts.
import functools  # noqa: E402
import itertools  # noqa: E402
from importlib.metadata import version as _pkg_version  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pcx as px  # noqa: E402
import pcx.functional as pxf  # noqa: E402
import pcx.nn as pxnn  # noqa: E402
import pcx.predictive_coding as pxc  # noqa: E402
import pcx.utils as pxu  # noqa: E402

ACTIVATIONS = {
    "tanh": jax.nn.tanh,
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
}


class PCMLP(pxc.EnergyModule):
    """x_0 -> x_1 -> ... -> x_L with mu_l = W_l act(x_{l-1}) + b_l (no activation on x_0)."""

    def __init__(self, sizes: list[int], act_fn) -> None:
        super().__init__()
        self.act_fn = px.static(act_fn)
        self.layers = [pxnn.Linear(i, o) for i, o in itertools.pairwise(sizes)]
        # Gaussian nodes: hidden ones and the output (se_energy is the default).
        self.vodes = [pxc.Vode(pxc.se_energy) for _ in sizes[1:]]
        # The output node is clamped to the label: keep it out of the inference mask.
        self.vodes[-1].h.frozen = True

    def __call__(self, x, y=None):
        for i, (layer, vode) in enumerate(zip(self.layers, self.vodes, strict=True)):
            x = vode(layer(x if i == 0 else self.act_fn(x)))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model: PCMLP):
    return model(x, y)


@pxf.vmap(
    pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)),
    in_axes=(0,),
    out_axes=(None, 0),
    axis_name="batch",
)
def energy(x, *, model: PCMLP):
    y_ = model(x, None)
    # Per-sample energy summed over nodes, then SUMMED over the batch.
    return jax.lax.psum(model.energy(), "batch"), y_


@pxf.jit(static_argnums=0)
def train_on_batch(T: int, x, y, *, model: PCMLP, optim_w: pxu.Optim, optim_h: pxu.Optim):
    model.train()

    # Forward initialisation; the output node's h is set to the label.
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)

    # Inference: T synchronous plain-SGD steps on the hidden nodes.
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
    for _ in range(T):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            (e, _), g = pxf.value_and_grad(
                pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]), has_aux=True
            )(energy)(x, model=model)
        optim_h.step(model, g["model"])
    optim_h.clear()

    # Learning: one AdamW step on dE/dtheta at x(T), E summed over the batch (no scale_by).
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        (e, _), g = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(
            energy
        )(x, model=model)
    optim_w.step(model, g["model"])
    return e


def load_problem(path: str):
    with np.load(path, allow_pickle=False) as z:
        cfg = json.loads(str(z["config"]))
        n_layers = len([k for k in z.files if k.startswith("W") and k[1:].isdigit()])
        Ws = [np.asarray(z[f"W{i}"], dtype=np.float32) for i in range(1, n_layers + 1)]
        bs = [np.asarray(z[f"b{i}"], dtype=np.float32) for i in range(1, n_layers + 1)]
        x = np.asarray(z["x"], dtype=np.float32)
        y = np.asarray(z["y"], dtype=np.float32)
    return cfg, Ws, bs, x, y


def layer_weights(model: PCMLP) -> list:
    return [(layer.nn.weight.get(), layer.nn.bias.get()) for layer in model.layers]


def main(args: argparse.Namespace) -> None:
    cfg, Ws, bs, xs, ys = load_problem(args.problem)
    S, B = xs.shape[0], xs.shape[1]
    T = int(cfg["T"])
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    if ys.shape != (S, B, sizes[-1]):
        raise SystemExit(f"y has shape {ys.shape}, expected {(S, B, sizes[-1])}")

    model = PCMLP(sizes, ACTIVATIONS[cfg["activation"]])
    # eqx.nn.Linear keeps torch's [out, in] layout: no transpose.
    for layer, W, b in zip(model.layers, Ws, bs, strict=True):
        assert layer.nn.weight.get().shape == W.shape, (layer.nn.weight.get().shape, W.shape)
        layer.nn.weight.set(jnp.asarray(W))
        layer.nn.bias.set(jnp.asarray(b))

    xs_j = [jnp.asarray(xs[s]) for s in range(S)]
    ys_j = [jnp.asarray(ys[s]) for s in range(S)]

    # Give the Vodes their shapes before building the optimisers (as PCX's examples do).
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((B, sizes[0]), jnp.float32), None, model=model)

    optim_h = pxu.Optim(lambda: optax.sgd(float(cfg["lr_neurons"])))
    optim_w = pxu.Optim(
        lambda: optax.adamw(
            float(cfg["lr"]), b1=0.9, b2=0.999, eps=1e-8, weight_decay=float(cfg["weight_decay"])
        ),
        pxu.M(pxnn.LayerParam)(model),
    )

    def sync():
        jax.block_until_ready(layer_weights(model))

    def one_pass(start: int = 0) -> None:
        for s in range(start, S):
            train_on_batch(T, xs_j[s], ys_j[s], model=model, optim_w=optim_w, optim_h=optim_h)

    # Pass 1 from the initial weights; its first update includes the jit compile.
    sync()
    t0 = time.perf_counter()
    train_on_batch(T, xs_j[0], ys_j[0], model=model, optim_w=optim_w, optim_h=optim_h)
    sync()
    compile_seconds = time.perf_counter() - t0
    one_pass(1)
    sync()

    if args.weights_out:
        out = {}
        for i, (W, b) in enumerate(layer_weights(model), start=1):
            out[f"W{i}"] = np.asarray(W, dtype=np.float32)
            out[f"b{i}"] = np.asarray(b, dtype=np.float32)
        np.savez(args.weights_out, **out)

    for _ in range(int(cfg.get("warmup", 0))):
        one_pass()
    sync()

    def timed_pass() -> float:
        t0 = time.perf_counter()
        one_pass()
        sync()
        return time.perf_counter() - t0

    per_pass = []
    if args.serve:
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "pass":
                break
            per_pass.append(timed_pass())
            print(f"{per_pass[-1]:.9f}", flush=True)
    else:
        for _ in range(int(cfg.get("repeats", 1))):
            per_pass.append(timed_pass())

    result = {
        "library": "pcx",
        "compile_seconds": compile_seconds,
        "seconds_per_update": [p / S for p in per_pass],
        "seconds_per_pass": per_pass,
        "updates_per_pass": S,
        "jax_version": jax.__version__,
        "jaxlib_version": _pkg_version("jaxlib"),
        "pcx_version": _pkg_version("pcx"),
        "optax_version": optax.__version__,
        "backend": jax.default_backend(),
        "cpu_affinity": CPUS,
        "threads_arg": args.threads,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "sizes": sizes,
        "batch": B,
        "config": cfg,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    if sys.version_info < (3, 11):
        raise SystemExit("pcx 0.6.3 needs Python >= 3.11")
    main(ARGS)
