"""Draw the class-balanced Fashion-MNIST subset that ships in ``pcgraph/data/embedded/``.

Usage (from the repository root)::

    python scripts/make_embedded_subset.py [--source /usr/share/datasets/fashion-mnist]

Per class, a seeded ``torch.randperm`` (one ``torch.Generator``, seed 0, train then test)
picks ``--train-per-class`` training and ``--test-per-class`` test images; the chosen
indices are kept in their original order. Output is gzipped IDX (gzip mtime 0), so running
the script twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pcgraph.data.errors import DataError  # noqa: E402
from pcgraph.data.idx import read_idx, write_idx  # noqa: E402
from pcgraph.data.sources import FILES, find_in  # noqa: E402

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = REPO / "pcgraph" / "data" / "embedded"
NUM_CLASSES = 10

LICENSE_TEXT = """\
The MIT License (MIT) Copyright © 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

README_TEMPLATE = """\
# Embedded Fashion-MNIST subset

A class-balanced subset of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist)
bundled with pcgraph so that examples and tests run without downloading anything.
`pcgraph.data.load_dataset("fashion-mnist")` falls back to it (with a warning) when the full
dataset is not found; `pcgraph.data.embedded_dataset(split)` loads it directly.

| split | images | per class | files |
|---|---|---|---|
| train | {n_train} | {train_per_class} | `train-{{images-idx3,labels-idx1}}-ubyte.gz` |
| test | {n_test} | {test_per_class} | `t10k-{{images-idx3,labels-idx1}}-ubyte.gz` |

Format: gzipped IDX, the same layout as the official files (uint8 images 28x28, uint8 labels).

## How it was drawn

From the official training and test files (Debian package `dataset-fashion-mnist`), for each
class 0..9 in turn, `torch.randperm` with a single `torch.Generator` seeded {seed} (train
split first, then test) picks that class's images; the chosen indices are sorted back into
their original order. Training images come only from the official training set and test
images only from the official test set.

Regenerate from the repository root (the output is byte-identical for the same zlib build):

    python scripts/make_embedded_subset.py --source /usr/share/datasets/fashion-mnist

MD5 of the files:

{checksums}

## Licence

Fashion-MNIST is © 2017 Zalando SE and released under the MIT licence; see `LICENSE` here.
"""


def choose(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Pick ``per_class`` random indices of each class, returned in ascending order.

    Args:
        labels: int64 labels ``[N]``.
        per_class: Samples to draw from each class.
        generator: Seeded source of randomness.

    Returns:
        int64 indices, sorted.
    """
    picked = []
    for c in range(NUM_CLASSES):
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < per_class:
            raise DataError(f"class {c} has only {members.numel()} samples, need {per_class}")
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.sort(torch.cat(picked)).values


def make_subset(
    source: Path, out: Path, *, train_per_class: int, test_per_class: int, seed: int
) -> dict[str, str]:
    """Write the subset's four IDX files plus LICENSE and README.md into ``out``.

    Args:
        source: Folder with the full Fashion-MNIST files (plain or .gz).
        out: Destination folder.
        train_per_class: Training images per class.
        test_per_class: Test images per class.
        seed: Generator seed.

    Returns:
        File name to MD5 of every IDX file written.
    """
    generator = torch.Generator().manual_seed(seed)
    checksums: dict[str, str] = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images_path, labels_path = find_in(source, split)
        if images_path is None or labels_path is None:
            raise DataError(f"{source}: missing {' or '.join(FILES[split])}[.gz]")
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        index = choose(torch.from_numpy(labels.astype("int64")), per_class, generator).numpy()
        for base, array in zip(FILES[split], (images[index], labels[index]), strict=True):
            path = write_idx(out / f"{base}.gz", array)
            checksums[path.name] = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    (out / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
    (out / "README.md").write_text(
        README_TEMPLATE.format(
            n_train=train_per_class * NUM_CLASSES,
            n_test=test_per_class * NUM_CLASSES,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            seed=seed,
            checksums="\n".join(f"    {md5}  {name}" for name, md5 in checksums.items()),
        ),
        encoding="utf-8",
    )
    return checksums


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the subset and print the checksums.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        checksums = make_subset(
            args.source,
            args.out,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, md5 in checksums.items():
        print(f"{md5}  {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
