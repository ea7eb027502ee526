"""Per-update cost on a convolutional topology: pcgraph next to a backprop step of the same CNN.

    python benchmarks/bench_conv.py [--json] [--batch 64] [--T 8] [--device cpu|cuda]

topologies/alexnet_cifar10.yaml (3 strided conv2d edges, a dense and a linear edge, GELU,
cross-entropy output) on random CIFAR-sized data. pcgraph: ``PCLearner.train_step`` with forward
init (conv kernels use their closed-form messages conv2d_input / conv2d_weight). BP: an
``pcgraph.BackpropTwin`` (the same layers and initial weights), cross-entropy, AdamW — one
forward + backward + step. Medians of interleaved updates (``_common.round_robin``). Also
prints the ideal ratio of sequential layer operations, PC (2(L−1)T + 3L − 1, as for the MLP in
bench_step) over BP (3L − 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

import pcgraph as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, round_robin

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "alexnet_cifar10.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = pc.compile(TOPOLOGY, seed=0, device=device)
    bp = pc.BackpropTwin(net)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g).to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    y = nn.functional.one_hot(labels, 10).float()
    with torch.no_grad():  # the copy is the same network: same logits from a forward pass
        learner0 = pc.PCLearner(net, init="forward", T=args.T)
        probs = learner0.predict({"image": x})["label"]  # softmax of the output's logits
        gap = float((torch.softmax(bp(x), -1) - probs).abs().max())
    learner = pc.PCLearner(
        net,
        init="forward",
        T=args.T,
        lr_neurons=0.05,
        optimizer=torch.optim.AdamW(net.parameters(), lr=5e-4),
    )
    opt = torch.optim.AdamW(bp.parameters(), lr=5e-4)

    def bp_step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(bp(x), labels).backward()
        opt.step()

    fns = {"pcgraph": lambda: learner.train_step({"image": x, "label": y}), "bp": bp_step}
    times = round_robin(fns, device, repeats=args.repeats, warmup=3)
    med = {k: median(v) * 1e3 for k, v in times.items()}
    L = len(net.edges)
    result = {
        "topology": TOPOLOGY.name,
        "batch": args.batch,
        "T": args.T,
        "device": str(device),
        "pcgraph_ms": med["pcgraph"],
        "bp_ms": med["bp"],
        "ratio_vs_bp": med["pcgraph"] / med["bp"],
        "ideal_ratio_vs_bp": (2 * (L - 1) * args.T + 3 * L - 1) / (3 * L - 1),
        "forward_logits_max_abs_diff": gap,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"bench_conv — {TOPOLOGY.name}, {device}, batch {args.batch}, T={args.T}, "
            f"torch {torch.__version__}; BP copy vs pcgraph outputs: max |Δ| = {gap:.1e}"
        )
        print(
            f"pcgraph {med['pcgraph']:.2f} ms   bp {med['bp']:.2f} ms   "
            f"ratio {result['ratio_vs_bp']:.2f}   ideal {result['ideal_ratio_vs_bp']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
