"""Check that ``pcx_mlp.py`` (PCX 0.6.3 / JAX) runs exactly the benchmark's training rule.

Run with the MAIN python (torch + numpy), after ``bash benchmarks/peers/setup_pcx.sh``::

    python benchmarks/peers/check_pcx.py [--tol 5e-6] [--keep DIR]

For each activation (tanh, relu, gelu) it writes a tiny problem (MLP [20, 16, 16, 5], B=8,
S=3 minibatches, T=4), runs ``pcx_mlp.py`` on it in ``.venv-pcx`` and compares the weights
PCX returns after one pass with a float64 reference written here in plain torch:
E = sum over layers and batch of 1/2 ||x_l - (W_l s(x_{l-1}) + b_l)||^2 (s = identity on x_0),
forward init, T synchronous SGD steps on the hidden nodes (gradients by torch.autograd), then
one ``torch.optim.AdamW`` step (betas 0.9/0.999, eps 1e-8, decay on all parameters).  Prints
the max abs weight difference per activation and exits 1 if any exceeds ``--tol``.

It also prints how far the same comparison would put a few WRONG rules, as its resolution.
Under Adam, taking the learning gradient as a batch sum or a batch mean changes the update only
through eps (Adam is invariant to the gradient's scale), so that choice is below any float32
tolerance; ``pcx_mlp.py`` uses the sum (no ``scale_by``), which is read in its source, not
measured here.  The inference gradient's sum vs mean, T, weight decay (wd = 0.1 here so that
it moves weights by ~lr*wd*|W|*S = 7.5e-5) and gelu's exact vs tanh form are all resolved.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
VENV_PY = REPO / ".venv-pcx" / "bin" / "python"
PCX_SCRIPT = Path(__file__).resolve().parent / "pcx_mlp.py"

SIZES = [20, 16, 16, 5]
B, S, T = 8, 3, 4
CONFIG = dict(T=T, lr_neurons=0.1, lr=1e-3, weight_decay=0.1, repeats=1, warmup=0)

ACT = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": lambda v: torch.nn.functional.gelu(v, approximate="none"),
}


def make_problem(activation: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES), start=1):
        bound = 1.0 / np.sqrt(n_in)
        prob[f"W{i}"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        prob[f"b{i}"] = rng.uniform(-bound, bound, (n_out,)).astype(np.float32)
    prob["x"] = rng.standard_normal((S, B, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], (S, B))
    prob["y"] = np.eye(SIZES[-1], dtype=np.float32)[labels]
    prob["config"] = np.array(json.dumps({"activation": activation, **CONFIG}))
    return prob


def reference(
    prob: dict[str, np.ndarray],
    activation: str,
    *,
    steps: int = T,
    w_scale: float = 1.0,
    h_scale: float = 1.0,
    weight_decay: float = CONFIG["weight_decay"],
    act=None,
) -> dict[str, np.ndarray]:
    """The rule in float64 torch: autograd for every gradient, torch's own AdamW.

    The keyword arguments make deliberately WRONG variants (other T, batch mean instead of sum,
    no decay, tanh-approximate gelu) to show how far from the rule a mistake would land.
    """
    act = act or ACT[activation]
    L = len(SIZES) - 1

    def leaf(key: str) -> torch.Tensor:
        return torch.tensor(prob[key], dtype=torch.float64, requires_grad=True)

    Ws = [leaf(f"W{i}") for i in range(1, L + 1)]
    bs = [leaf(f"b{i}") for i in range(1, L + 1)]
    params = [p for pair in zip(Ws, bs, strict=True) for p in pair]
    opt = torch.optim.AdamW(
        params,
        lr=CONFIG["lr"],
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=weight_decay,
        foreach=False,
    )

    def mu(l: int, xs: list[torch.Tensor]) -> torch.Tensor:  # prediction of node l (1-based)
        a = xs[l - 1] if l == 1 else act(xs[l - 1])
        return a @ Ws[l - 1].T + bs[l - 1]

    def energy(xs: list[torch.Tensor]) -> torch.Tensor:
        return sum(0.5 * ((xs[l] - mu(l, xs)) ** 2).sum() for l in range(1, L + 1))

    for s in range(S):
        x0 = torch.tensor(prob["x"][s], dtype=torch.float64)
        xL = torch.tensor(prob["y"][s], dtype=torch.float64)
        xs: list[torch.Tensor] = [x0]
        with torch.no_grad():
            for l in range(1, L):
                xs.append(mu(l, xs))
        xs.append(xL)
        for _ in range(steps):
            hidden = [v.detach().requires_grad_(True) for v in xs[1:L]]
            grads = torch.autograd.grad(h_scale * energy([x0, *hidden, xL]), hidden)
            stepped = [
                (h - CONFIG["lr_neurons"] * g).detach() for h, g in zip(hidden, grads, strict=True)
            ]
            xs = [x0, *stepped, xL]
        opt.zero_grad()
        (w_scale * energy(xs)).backward()
        opt.step()
    out = {}
    for i in range(L):
        out[f"W{i + 1}"] = Ws[i].detach().numpy()
        out[f"b{i + 1}"] = bs[i].detach().numpy()
    return out


VARIANTS = {
    f"T={T - 1}": dict(steps=T - 1),
    "inference on batch mean": dict(h_scale=1.0 / B),
    "learning on batch mean": dict(w_scale=1.0 / B),
    "no weight decay": dict(weight_decay=0.0),
}


def max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(
        float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max()) for k in b
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--tol", type=float, default=5e-6)
    ap.add_argument("--keep", default=None, help="keep the problem/result files in DIR")
    args = ap.parse_args()
    if not VENV_PY.exists():
        print(f"{VENV_PY} is missing: run `bash benchmarks/peers/setup_pcx.sh`", file=sys.stderr)
        return 2

    torch.set_num_threads(1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for seed, activation in enumerate(ACT):
            prob = make_problem(activation, seed)
            p_path, r_path, w_path = (
                work / f"{activation}_{n}" for n in ("problem.npz", "result.json", "weights.npz")
            )
            np.savez(p_path, **prob)
            cmd = [
                str(VENV_PY),
                str(PCX_SCRIPT),
                "--problem",
                str(p_path),
                "--out",
                str(r_path),
                "--weights-out",
                str(w_path),
                "--threads",
                "1",
            ]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                print(
                    f"{activation}: pcx_mlp.py failed ({run.returncode})\n{run.stderr[-4000:]}",
                    file=sys.stderr,
                )
                ok = False
                continue
            ref = reference(prob, activation)
            with np.load(w_path) as got:
                diffs = {k: float(np.abs(got[k].astype(np.float64) - ref[k]).max()) for k in ref}
                moved = max(float(np.abs(ref[k] - prob[k].astype(np.float64)).max()) for k in ref)
            worst = max(diffs.values())
            good = worst <= args.tol
            ok &= good
            meta = json.loads(r_path.read_text())
            print(
                f"{activation:5s} max|W_pcx - W_ref| = {worst:.3e} (largest weight change in "
                f"the pass {moved:.3e}; pcx {meta['pcx_version']}, jax {meta['jax_version']}) "
                f"{'OK' if good else 'MISMATCH'}"
            )
            if not good:
                print("   per tensor: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
            # Resolution: how far the same comparison puts a wrong rule (not a pass/fail).
            variants = dict(VARIANTS)
            if activation == "gelu":
                variants["tanh-approximate gelu"] = dict(
                    act=lambda v: torch.nn.functional.gelu(v, approximate="tanh")
                )
            print(
                "      wrong rules would differ by: "
                + ", ".join(
                    f"{name} {d:.1e}{'' if d > args.tol else ' (below tol: not resolved)'}"
                    for name, kw in variants.items()
                    for d in [max_diff(reference(prob, activation, **kw), ref)]
                )
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
