"""Generation from a label: a graph trained with image and label clamped draws images of a class.

The graph is topologies/label_decoder_fashion.yaml, a class-conditional decoder
y → h1 → h2 → image (Bernoulli energy on the image). Training clamps the one-hot label y and the
image; y is the only root, so forward initialization is possible (Proposition 3.2) and every
update starts from the forward sweep. Generation clamps y alone:

  prototype   the forward sweep from the one-hot label (x_i = μ_i, zero internal energy): one
              image per class, the state inference with y clamped rests at;
  sampled     ancestral sampling down the graph, h_l = μ_l + τ s_l ξ (ξ ~ N(0, I)), where s_l is
              the standard deviation of the residuals x_l − μ_l that inference reaches on the
              training images (with image and label clamped, T_train steps): the spread of the
              hidden states the data itself produces. The image is the Bernoulli mean
              sigmoid(μ_image). --taus picks the scales (default 1, 2 and "unit"; the grid
              shows the first); τ = 0 is the prototype; "unit" samples with the energy's
              own precision (s_l = 1), the generative model taken literally.

A classifier trained by backprop on the real training images (pcgraph.BackpropTwin of
topologies/mlp5_fashion.yaml, cross-entropy, AdamW) scores the generated images: the recognition
rate is the fraction classified as the label they were generated from, per class and overall.
Its own test accuracy on the real test images is reported beside it.

The other direction is measured too (--no-discriminative skips it): the discriminative graph
mlp5_fashion (x → h1 … h4 → y), trained by PC with both clamped, queried with y clamped and the
image x free, from zeros, for --T-disc steps with the backtracking step rule (a fixed step of the
training rate diverges: x is a root whose only energy is its children's). Zero init is
deterministic, so it gives one image per class.

Writes under --out:
  results.json        recognition per class and overall (per seed and mean), the classifier's
                      test accuracy, the residual scales s_l, the settings
  generated.png       one row per class: the prototype, then sampled images (first seed)
  discriminative.png  the images the discriminative graph infers from each label (first seed)

Examples:
  python examples/label_to_image.py              # 3 seeds, about a minute on 1 core
  python examples/label_to_image.py --quick      # smoke run (CI runs this)
  python examples/label_to_image.py --taus 0.5,1,2,4,unit --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _shared as shared
import torch
from torch.nn import functional as F

import pcgraph as pc
from pcgraph.data import ImageDataset
from pcgraph.init import forward_order

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
GENERATOR = TOPOLOGIES / "label_decoder_fashion.yaml"
CLASSIFIER = TOPOLOGIES / "mlp5_fashion.yaml"
CLASSES = 10
NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat"]
NAMES += ["Sandal", "Shirt", "Sneaker", "Bag", "Boot"]  # FashionMNIST's classes 0-9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = shared.example_parser(__doc__, out="runs/label_to_image")
    # one thread: the matrices are small (batch 64 × 256), and on 2 shared cores torch's default
    # thread pool ran this script > 20× slower than one thread (main restores the count)
    p.set_defaults(batch_size=64, lr=1e-3, weight_decay=1e-2, lr_neurons=0.1, threads=1)
    p.add_argument("--samples", type=int, default=None, help="generated images per class")
    p.add_argument(
        "--taus",
        default="1,2,unit",
        help="comma-separated noise scales τ of the sampler (the prototype, τ = 0, is always "
        "measured; the grid shows the first); 'unit' samples with the energy's own precision "
        "(s_l = 1) instead of the measured residual scales",
    )
    p.add_argument("--clf-epochs", type=int, default=None, help="epochs of the BP classifier")
    p.add_argument("--T-disc", type=int, default=None, help="inference steps of the y → x query")
    p.add_argument(
        "--no-discriminative", action="store_true", help="skip the discriminative direction"
    )
    args = p.parse_args(argv)
    if args.quick and args.full:
        p.error("--quick and --full exclude each other")
    preset: dict[str, Any] = (
        {
            "T": "8",
            "epochs": 1,
            "seeds": "0",
            "test_size": 500,
            "samples": 10,
            "clf_epochs": 3,
            "T_disc": 64,
        }
        if args.quick
        else {"T": "8", "epochs": 4, "seeds": "0,1,2", "samples": 50, "clf_epochs": 8}
        | {"T_disc": 1024}
    )
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.T = int(str(args.T).split(",")[0])
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.taus = [t.strip() for t in str(args.taus).split(",") if t.strip()]
    for t in args.taus:
        if t != "unit" and not (_is_float(t) and float(t) >= 0):
            p.error(f"--taus: {t!r} is neither a scale ≥ 0 nor 'unit'")
    if args.T < 1 or args.epochs < 1 or args.samples < 1 or args.T_disc < 1:
        p.error("T, epochs, samples and T-disc must be ≥ 1")
    return args


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def batches(n: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches."""
    perm = torch.randperm(n, generator=generator)
    return [perm[i : i + size] for i in range(0, n, size)]


def train_classifier(
    args: argparse.Namespace, train: ImageDataset, test: ImageDataset, seed: int
) -> tuple[pc.BackpropTwin, float]:
    """mlp5_fashion's feed-forward network trained by backprop on the real images; its test
    accuracy on the real test images."""
    net = pc.compile(CLASSIFIER, seed=seed, device=args.device)
    clf = pc.BackpropTwin(net)
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=args.weight_decay)
    x, y = train.flat().to(net.device), train.labels.to(net.device)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(args.clf_epochs):
        for idx in batches(len(x), 100, gen):
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf, recognition(clf, test.flat().to(net.device), test.labels.to(net.device))["overall"]


@torch.no_grad()
def recognition(clf: pc.BackpropTwin, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """The fraction of ``images`` the classifier assigns to their label, overall and per class."""
    hit = clf(images).argmax(-1) == labels
    per_class = [float(hit[labels == k].float().mean()) for k in range(CLASSES)]
    return {"overall": float(hit.float().mean()), "per_class": per_class}


def train_pc(
    args: argparse.Namespace, topology: Path, data: dict[str, str], train: ImageDataset, seed: int
) -> pc.PCLearner:
    """A PC learner trained with both data nodes clamped (forward init, T steps per update).

    Args:
        data: which node takes the image and which the one-hot label, e.g.
            {"image": "image", "label": "y"}.
    """
    net = pc.compile(topology, seed=seed, device=args.device)
    learner = pc.PCLearner(
        net,
        init="forward",
        T=args.T,
        lr_neurons=args.lr_neurons,
        clamp="train",
        optimizer=torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay),
        generator=torch.Generator(device=net.device).manual_seed(seed),
    )
    x, y = train.flat().to(net.device), train.labels.to(net.device)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        for idx in batches(len(x), args.batch_size, gen):
            learner.train_step(
                {data["image"]: x[idx], data["label"]: F.one_hot(y[idx], CLASSES).to(x.dtype)}
            )
    return learner


@torch.no_grad()
def residual_scales(learner: pc.PCLearner, train: ImageDataset, n: int = 1000) -> dict[str, float]:
    """s_l: the standard deviation of x_l − μ_l over the hidden nodes' neurons, at the states
    inference reaches on ``n`` training images with image and label clamped (T_train steps)."""
    net = learner.net
    x, y = train.flat()[:n].to(net.device), train.labels[:n].to(net.device)
    result = learner.infer(
        {"image": x, "y": F.one_hot(y, CLASSES).to(x.dtype)}, clamp={"image", "y"}, train=False
    )
    states = result.states.clone()
    scales = {}
    for node in net.nodes:
        if node.name in ("y", "image"):
            continue
        mu = net.prediction(states, node.index).reshape(len(x), -1)
        scales[node.name] = float((net.view(states, node.name).reshape(len(x), -1) - mu).std())
    return scales


@torch.no_grad()
def sample(
    learner: pc.PCLearner,
    labels: torch.Tensor,
    scales: dict[str, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Ancestral sampling with y clamped to one-hot ``labels``: in topological order each hidden
    node is μ_l + s_l ξ (s_l = ``scales[name]``, ξ ~ N(0, I)), the image the Bernoulli mean
    sigmoid(μ_image). With every scale 0 it is the forward sweep, the prototype of the class."""
    net = learner.net
    clamp = frozenset({"y"})
    x = learner.prepare_states({"y": F.one_hot(labels, CLASSES).to(net.dtype)}, clamp)
    for i, _ in forward_order(net, clamp):
        node = net.nodes[i]
        mu = net.prediction(x, i).reshape(len(labels), node.size)
        s = scales.get(node.name, 0.0)
        if s:
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            mu = mu + s * noise.to(mu.device)
        x[:, node.cols] = mu
    return torch.sigmoid(net.prediction(x, net.node_index["image"]).reshape(len(labels), -1))


def run_seed(
    args: argparse.Namespace, train: ImageDataset, test: ImageDataset, seed: int
) -> dict[str, Any]:
    """Classifier, generator (and discriminative graph) for one seed; the recognition rates."""
    t0 = time.perf_counter()
    clf, clf_acc = train_classifier(args, train, test, seed)
    t_clf = time.perf_counter() - t0
    learner = train_pc(args, GENERATOR, {"image": "image", "label": "y"}, train, seed)
    t_gen = time.perf_counter() - t0 - t_clf
    scales = residual_scales(learner, train)
    labels = torch.arange(CLASSES).repeat_interleave(args.samples).to(learner.net.device)
    gen = torch.Generator().manual_seed(10_000 + seed)
    samples, rates = {}, {}
    for tau in ["0", *args.taus]:
        if tau in samples:
            continue
        s = (
            {k: 1.0 for k in scales}
            if tau == "unit"
            else {k: float(tau) * v for k, v in scales.items()}
        )
        samples[tau] = sample(learner, labels, s, gen)
        rates[tau] = recognition(clf, samples[tau], labels)
    out: dict[str, Any] = {
        "seed": seed,
        "classifier_test_accuracy": clf_acc,
        "residual_scales": scales,
        "recognition": rates,
        "seconds": {"classifier": t_clf, "generator": t_gen},
        "_samples": samples,
        "_labels": labels,
    }
    if not args.no_discriminative:
        t1 = time.perf_counter()
        disc = train_pc(args, CLASSIFIER, {"image": "x", "label": "y"}, train, seed)
        test_x = test.flat().to(disc.net.device)
        with torch.no_grad():
            pred = disc.predict({"x": test_x})["y"].argmax(-1).cpu()
        disc.step_rule = "backtrack"
        one_hot = F.one_hot(torch.arange(CLASSES), CLASSES).to(disc.net.device, disc.net.dtype)
        images = disc.query({"y": one_hot}, T=args.T_disc, init="zero")["x"]
        out["discriminative"] = {
            "pc_test_accuracy": float((pred == test.labels).float().mean()),
            "T": args.T_disc,
            "init": "zero",
            "step_rule": "backtrack",
            "recognition": recognition(clf, images, torch.arange(CLASSES).to(images.device)),
            "pixel_range": [float(images.min()), float(images.max())],
        }
        out["seconds"]["discriminative"] = time.perf_counter() - t1
        out["_disc_images"] = images
    return out


def summarize(runs: list[dict[str, Any]], key: tuple[str, ...]) -> dict[str, Any]:
    """Mean and std over seeds of a recognition entry (overall and per class)."""

    def get(run: dict[str, Any]) -> dict[str, Any]:
        for k in key:
            run = run[k]
        return run

    overall = shared.mean_std([get(r)["overall"] for r in runs])
    per_class = [shared.mean_std([get(r)["per_class"][k] for r in runs])[0] for k in range(CLASSES)]
    return {"overall_mean": overall[0], "overall_std": overall[1], "per_class_mean": per_class}


def save_figures(
    run: dict[str, Any], args: argparse.Namespace, out: Path, names: list[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = args.taus[0]
    cols = min(args.samples, 10)
    fig, axes = plt.subplots(CLASSES, cols + 1, figsize=(cols + 1 + 1.5, CLASSES * 1.05))
    proto, sampled = run["_samples"]["0"].cpu(), run["_samples"][tau].cpu()
    for k in range(CLASSES):
        row = [proto[k * args.samples]] + [sampled[k * args.samples + j] for j in range(cols)]
        for j, img in enumerate(row):
            ax = axes[k, j]
            ax.imshow(img.reshape(28, 28).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(names[k], rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_title("prototype", fontsize=8)
    axes[0, 1].set_title(f"sampled (τ = {tau})", fontsize=8, loc="left")
    rate = run["recognition"][tau]["overall"]
    fig.suptitle(
        f"images generated from the label; recognised by the BP classifier: {rate:.1%} "
        f"(seed {run['seed']})"
    )
    fig.tight_layout()
    fig.savefig(out / "generated.png", dpi=60)
    plt.close(fig)
    if "_disc_images" in run:
        images = run["_disc_images"].cpu()
        fig, axes = plt.subplots(1, CLASSES, figsize=(CLASSES * 1.1, 1.6))
        lim = float(images.abs().max()) or 1.0
        for k in range(CLASSES):
            axes[k].imshow(images[k].reshape(28, 28).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[k].set_title(names[k], fontsize=7)
            axes[k].axis("off")
        fig.suptitle(f"discriminative graph, y clamped, x inferred from zeros (±{lim:.2f})")
        fig.tight_layout()
        fig.savefig(out / "discriminative.png", dpi=90)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    threads = torch.get_num_threads()
    try:
        return run(parse_args(argv))
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out, train, test = shared.start_run(args)
    print(pc.analyze(pc.GraphSpec.from_yaml(GENERATOR), "train", T=args.T).summary())
    runs = []
    for seed in args.seeds:
        run = run_seed(args, train, test, seed)
        runs.append(run)
        rates = ", ".join(f"τ={t}: {r['overall']:.3f}" for t, r in run["recognition"].items())
        line = f"seed {seed}: classifier test accuracy {run['classifier_test_accuracy']:.3f}; "
        line += f"recognised {rates}"
        if "discriminative" in run:
            line += f"; discriminative {run['discriminative']['recognition']['overall']:.3f}"
        print(line)
    summary = {
        "classifier_test_accuracy": shared.mean_std([r["classifier_test_accuracy"] for r in runs]),
        "recognition": {t: summarize(runs, ("recognition", t)) for t in runs[0]["recognition"]},
    }
    if "discriminative" in runs[0]:
        summary["discriminative"] = summarize(runs, ("discriminative", "recognition"))
    names = NAMES
    print(f"\nrecognition of generated images ({len(args.seeds)} seed(s), {args.samples}/class)")
    print(f"{'':>14} {'overall':>8} " + " ".join(f"{n[:7]:>7}" for n in names))
    for tau, s in summary["recognition"].items():
        label = "prototype" if tau == "0" else f"τ = {tau}"
        print(
            f"{label:>14} {s['overall_mean']:8.3f} "
            + " ".join(f"{v:7.2f}" for v in s["per_class_mean"])
        )
    if "discriminative" in summary:
        s = summary["discriminative"]
        print(
            f"{'x→…→y query':>14} {s['overall_mean']:8.3f} "
            + " ".join(f"{v:7.2f}" for v in s["per_class_mean"])
        )
    acc = summary["classifier_test_accuracy"]
    print(f"BP classifier test accuracy on real images: {acc[0]:.3f} ± {acc[1]:.3f}")
    save_figures(runs[0], args, out, names)
    shared.write_results(
        out,
        args,
        train,
        test,
        started,
        summary=summary,
        runs=[{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
        class_names=names,
    )
    print(f"results and figures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
