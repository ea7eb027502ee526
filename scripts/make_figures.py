"""Draw the figures of the docs gallery: every shipped topology, and energy during inference.

Usage (from the repository root)::

    python scripts/make_figures.py [--out docs/figures]

Writes, under ``--out``:

- ``<topology>.png`` for every ``topologies/*.yaml`` (train clamp), and
  ``<topology>_generate.png`` for the generative ones (decoder4_fashion, associative_memory);
- ``energy_flow_mlp5_fashion_trained.{png,gif}``: mlp5_fashion after one epoch of training, from
  forward init on real test images: the error front travelling back from the output;
- ``flow_mlp5_inits.{gif,html}``: the same batch of test images through mlp5_fashion trained one
  epoch under each of zero, forward, hybrid and memory init, side by side (nodes by energy per
  sample, edges by message size);
- ``flow_cyclic.{gif,html}``: the cyclic fully_connected_groups, trained one epoch under zero,
  random and memory init;
- ``flow_decoder.{gif,html}``: decoder4_fashion (generate: only the image clamped), trained one
  epoch under zero and memory init.

- ``perf_peers.png``, ``perf_scaling.png``, ``perf_gpu.png``, ``perf_tta.png``: the Performance
  page's plots, from the measured tables in ``docs/data/`` (their provenance is in
  ``docs/data/PROVENANCE.txt``).

Every network is trained on the embedded FashionMNIST subset (about a minute in all on 2 CPU
cores), never drawn with random weights.

The figures are build outputs (docs and CI make them); do not commit them. Every run is seeded:
the same figures each time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pcgraph  # noqa: E402
from pcgraph.analysis import memory_targets  # noqa: E402
from pcgraph.viz import animate_energy_flow, draw_graph, plot_energy_flow  # noqa: E402

TOPOLOGIES = REPO / "topologies"
GENERATIVE = ("decoder4_fashion", "associative_memory")
BATCH = 16


def draw_topologies(out: Path) -> list[Path]:
    """One PNG per topology (train clamp), plus the generate clamp for the generative ones."""
    written = []
    for file in sorted(TOPOLOGIES.glob("*.yaml")):
        written.append(out / f"{file.stem}.png")
        draw_graph(file, clamp="train", path=written[-1])
        if file.stem in GENERATIVE:
            written.append(out / f"{file.stem}_generate.png")
            draw_graph(file, clamp="generate", path=written[-1])
    return written


def energy_flow_trained(out: Path, steps: int) -> list[Path]:
    """mlp5_fashion trained for one epoch on the embedded subset (forward init, T = 8), then the
    per-node energy of ``steps`` inference steps on real test images from forward init: the
    error starts at the output and travels back one layer per step (the error front)."""
    from pcgraph.data import embedded_dataset
    from pcgraph.train import Trainer

    torch.manual_seed(0)
    net = pcgraph.compile(str(TOPOLOGIES / "mlp5_fashion.yaml"), seed=0)
    learner = pcgraph.PCLearner(net, init="forward", T=8, lr_neurons=0.1)
    train, test = embedded_dataset("train"), embedded_dataset("test")
    Trainer(learner, train, batch_size=64, epochs=1, progress=False).fit()
    batch = Trainer(learner, test, batch_size=64, progress=False).batch_data(
        test, torch.arange(BATCH)
    )
    trace = learner.infer(batch, T=steps, trace=True).trace
    assert trace is not None
    png = out / "energy_flow_mlp5_fashion_trained.png"
    gif = out / "energy_flow_mlp5_fashion_trained.gif"
    plot_energy_flow(trace, net.spec, path=png)
    animate_energy_flow(trace, net.spec, gif, clamp="train")
    return [png, gif]


def _trained(
    topology: str, init: str, *, clamp: str = "train", T: int = 8, epochs: int = 1
) -> pcgraph.PCLearner:
    """A learner trained ``epochs`` epochs on the embedded subset (seeded)."""
    from pcgraph.data import embedded_dataset
    from pcgraph.train import Trainer

    torch.manual_seed(0)
    net = pcgraph.compile(str(TOPOLOGIES / f"{topology}.yaml"), seed=0)
    learner = pcgraph.PCLearner(
        net, init=init, T=T, lr_neurons=0.1, clamp=clamp,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    Trainer(learner, embedded_dataset("train"), batch_size=100, epochs=epochs, progress=False).fit()
    return learner


def flow_comparison(
    out: Path, name: str, topology: str, inits: tuple[str, ...], *, clamp: str = "train", T: int = 8
) -> list[Path]:
    """The same test batch through ``topology`` trained under each of ``inits``."""
    from pcgraph.data import embedded_dataset
    from pcgraph.train import Trainer
    from pcgraph.viz import animate_flow, record_flow

    test = embedded_dataset("test")
    idx = torch.arange(BATCH)
    runs = []
    for init in inits:
        learner = _trained(topology, init, clamp=clamp, T=T)
        batch = Trainer(learner, test, batch_size=BATCH, progress=False).batch_data(test, idx)
        labels = test.labels[idx] if clamp == "train" else None
        title = f"{init} init"
        if init == "memory" and not memory_targets(learner.net.graph, learner.clamp):
            title += " (no targets: = forward)"  # Proposition 3.2 holds: nothing to retrieve
        runs.append(record_flow(learner, batch, T=T, labels=labels, title=title))
    gif, html = out / f"{name}.gif", out / f"{name}.html"
    animate_flow(runs, gif)
    animate_flow(runs, html)  # self-contained: pcgraph.viz.jshtml.offline_page
    return [gif, html]


def _table(name: str) -> list[dict[str, str]]:
    import csv

    with (REPO / "docs" / "data" / f"{name}.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def performance_plots(out: Path) -> list[Path]:
    """Bars of the paired ratios against PCX, the tuned loop and BP; step time against edges
    on log-log axes; the GPU's eager, CUDA-graph and BP update times."""
    import numpy as np

    from pcgraph.viz import save_figure
    from pcgraph.viz._common import new_figure

    rows = _table("perf_peers")
    labels = [f"{r['activation']}\nB={r['batch']}\n{r['threads']} thr" for r in rows]
    fig = new_figure(10.5, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for k, (key, name) in enumerate(
        (("pcgraph_vs_pcx", "pcgraph / PCX"), ("pcgraph_vs_tuned", "pcgraph / tuned torch loop"))
    ):
        ax.bar(x + (k - 0.5) * 0.38, [float(r[key]) for r in rows], 0.38, label=name)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("time per weight update, ratio")
    ax.set_title("one PC weight update, T = 8 (lower is faster; 1 = the same time)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    written = [save_figure(fig, out / "perf_peers.png", dpi=110)]

    scaling = _table("perf_scaling")
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    for family in dict.fromkeys((r["family"], r["backend"]) for r in scaling):
        pts = [r for r in scaling if (r["family"], r["backend"]) == family and int(r["edges"]) > 0]
        edges = [int(r["edges"]) for r in pts]
        ax.loglog(edges, [float(r["step_ms"]) for r in pts], marker="o", ms=3,
                  label=f"{family[0]} ({family[1]})")  # fmt: skip
    ax.set_xlabel("edges (chain: layers of 64; dag, cyclic: groups of 8 neurons)")
    ax.set_ylabel("ms per inference step (batch 64)")
    ax.set_title("step time grows linearly with the graph", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    written.append(save_figure(fig, out / "perf_scaling.png", dpi=110))

    gpu = _table("perf_gpu")
    fig = new_figure(6.4, 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(gpu))
    for k, (key, name) in enumerate(
        (("eager_ms", "PC, eager"), ("cuda_graph_ms", "PC, CUDA graph"), ("bp_ms", "backprop"))
    ):
        ax.bar(x + (k - 1) * 0.27, [float(r[key]) for r in gpu], 0.27, label=name)
    ax.set_xticks(x, [f"B = {r['batch']}" for r in gpu])
    ax.set_ylabel("ms per weight update (T = 8)")
    ax.set_title("mlp5 on an NVIDIA H200", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    written.append(save_figure(fig, out / "perf_gpu.png", dpi=110))
    written.append(time_to_accuracy_plot(out))
    return written


def time_to_accuracy_plot(out: Path) -> Path:
    """Test accuracy against cumulative training seconds, per contender of the measured
    time-to-accuracy run (``docs/data/results/tta.json``), with the four target lines."""
    import json

    from pcgraph.viz import save_figure
    from pcgraph.viz._common import new_figure

    run = json.loads((REPO / "docs" / "data" / "results" / "tta.json").read_text("utf-8"))
    fig = new_figure(7.2, 4.2)
    ax = fig.add_subplot()
    for c in run["contenders"]:
        bp = c["name"].startswith(("bp", "tuned bp"))
        ax.plot(c["seconds"], c["accuracy"], marker="o", ms=3, ls="--" if bp else "-",
                label=c["name"].replace("pc ", "PC ").replace("bp ", "BP "))  # fmt: skip
    for target in run["targets"]:
        ax.axhline(float(target), color="grey", lw=0.6, ls=":")
    ax.set_ylim(0.82, 0.90)
    machine = run.get("machine", {})
    cpu = machine.get("cpu") or ""
    if cpu in ("", "x86_64", "AMD64", "i386", "aarch64", "arm64"):  # a bare architecture: runs
        cpu = "2-core AMD EPYC"  # before 2026-12-07 recorded platform.processor() only
    capability = machine.get("cpu_capability", "AVX2")
    threads = machine.get("threads", 2)
    ax.set_xlabel(f"training seconds ({cpu}, {capability}, {threads} threads)")
    ax.set_ylabel("test accuracy")
    ax.set_title(
        f"FashionMNIST, MLP 784-256×4-10, batch 300 ({run['kept']['date']}, "
        f"commit {run['kept']['commit']})",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, out / "perf_tta.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "figures",
        help="folder for the figures (default: docs/figures)",
    )
    args = parser.parse_args(argv)
    written = draw_topologies(args.out)
    written += performance_plots(args.out)
    written += energy_flow_trained(args.out, 8)
    inits = ("zero", "forward", "hybrid", "memory")
    written += flow_comparison(args.out, "flow_mlp5_inits", "mlp5_fashion", inits)
    cyclic = ("zero", "random", "memory")
    written += flow_comparison(args.out, "flow_cyclic", "fully_connected_groups", cyclic)
    decoder = ("zero", "memory")
    written += flow_comparison(
        args.out, "flow_decoder", "decoder4_fashion", decoder, clamp="generate"
    )
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
