"""Draw the figures of the docs gallery: every shipped topology, and energy during inference.

Usage (from the repository root)::

    python scripts/make_figures.py [--out docs/figures] [--steps 16]

Writes, under ``--out``:

- ``<topology>.png`` for every ``topologies/*.yaml`` (train clamp), and
  ``<topology>_generate.png`` for the generative ones (decoder4_fashion, associative_memory);
- ``energy_flow_mlp5_fashion.{png,gif}``: per-node energy during ``--steps`` inference steps of
  mlp5_fashion from zero-initialized states, with random images and labels clamped (train);
- ``energy_flow_mlp5_fashion_trained.{png,gif}``: mlp5_fashion after one epoch of training, from
  forward init on real test images: the error front travelling back from the output;
- ``energy_flow_decoder4_fashion.{png,gif}``: the same for decoder4_fashion with random images
  clamped (generate).

The figures are build outputs (docs and CI make them); do not commit them. Same ``--seed``, same
figures.
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


def energy_flow(
    out: Path, name: str, clamp: str, steps: int, *, generator: torch.Generator
) -> list[Path]:
    """Run ``steps`` inference steps from zero states with random clamped data; plot the trace."""
    net = pcgraph.compile(str(TOPOLOGIES / f"{name}.yaml"), seed=0)
    x = net.new_states(BATCH)  # zero initialization
    data = {}
    for node in net.spec.nodes:
        if node.name not in net.resolve_clamp(clamp):
            continue
        if node.energy == "cross_entropy":  # one-hot labels
            classes = torch.randint(0, node.size, (BATCH,), generator=generator)
            data[node.name] = torch.eye(node.size)[classes]
        else:
            data[node.name] = torch.rand(BATCH, *node.shape, generator=generator)
    net.write(x, data)
    trace = pcgraph.solve_inference(net, x, clamp, T=steps, lr=0.1, trace=True).trace
    assert trace is not None
    png, gif = out / f"energy_flow_{name}.png", out / f"energy_flow_{name}.gif"
    plot_energy_flow(trace, net.spec, path=png)
    animate_energy_flow(trace, net.spec, gif, clamp=clamp)
    return [png, gif]


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
    parser.add_argument(
        "--steps",
        type=int,
        default=16,
        help="inference steps T of the energy-flow runs (default: 16)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random clamped data (default: 0)"
    )
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(args.seed)
    written = draw_topologies(args.out)
    written += energy_flow(args.out, "mlp5_fashion", "train", args.steps, generator=generator)
    written += energy_flow(
        args.out, "decoder4_fashion", "generate", args.steps, generator=generator
    )
    written += energy_flow_trained(args.out, 8)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
