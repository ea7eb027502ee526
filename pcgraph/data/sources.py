"""Where the MNIST-family datasets live: known datasets, search locations and downloads."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from pcgraph.atomic import atomic_writer
from pcgraph.data.errors import DataError

__all__ = [
    "DATASETS",
    "EMBEDDED_DIR",
    "FILES",
    "SYSTEM_DIRS",
    "DatasetSpec",
    "cache_dir",
    "download_split",
    "find_in",
    "get_spec",
]

#: Standard file names per split: (images, labels); each may also carry a ``.gz`` suffix.
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: System-wide data folders; ``<dir>/<name>`` is searched (Debian's ``dataset-fashion-mnist``
#: installs into ``/usr/share/datasets/fashion-mnist``).
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))

#: The class-balanced Fashion-MNIST subset shipped with the package.
EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "embedded"

DOWNLOAD_TIMEOUT_S: float = 10.0


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in the MNIST IDX layout and where to fetch it.

    Attributes:
        name: Canonical name, e.g. ``"fashion-mnist"``.
        mirrors: Base URLs holding the four ``*.gz`` files.
        md5: MD5 of each official ``*.gz`` file, keyed by file name.
        raw_md5: MD5 of each decompressed file (accepted when a mirror recompressed the .gz).
        torchvision_dir: Folder name torchvision uses (``<root>/<dir>/raw`` is searched too).
        embedded: Whether a subset ships with the package.
    """

    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    raw_md5: dict[str, str]
    torchvision_dir: str
    embedded: bool = False


def _by_file(*md5: str, suffix: str = ".gz") -> dict[str, str]:
    """Checksums keyed by file name, given in FILES order (train images, train labels, test
    images, test labels)."""
    names = [f"{name}{suffix}" for split in FILES.values() for name in split]
    return dict(zip(names, md5, strict=True))


# Checksums of the official .gz files are those torchvision uses. The Fashion-MNIST raw
# (decompressed) checksums were computed from Debian's dataset-fashion-mnist files, which were
# recompressed by Debian (so their .gz checksums differ) but hold the same IDX bytes.
DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5=_by_file(
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        raw_md5=_by_file(
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "9018921c3c673c538a1fc5bad174d6f9",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "15d484375f8d13e6eb1aabb0c3f46965",
            suffix="",
        ),
        torchvision_dir="FashionMNIST",
        embedded=True,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        md5=_by_file(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        raw_md5={},
        torchvision_dir="MNIST",
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5=_by_file(
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ),
        raw_md5={},
        torchvision_dir="KMNIST",
    ),
}

_ALIASES = {
    "fashion": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "kuzushiji-mnist": "kmnist",
}


def get_spec(name: str) -> DatasetSpec:
    """Return the spec for ``name`` (case, ``_`` and ``-`` are normalised).

    Args:
        name: Dataset name such as ``"fashion-mnist"``, ``"FashionMNIST"`` or ``"mnist"``.

    Returns:
        The dataset's spec.
    """
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[key]


def cache_dir(name: str) -> Path:
    """Return the per-user cache folder for dataset ``name``.

    Args:
        name: Canonical dataset name.

    Returns:
        ``$XDG_CACHE_HOME/pcgraph/<name>`` or ``~/.cache/pcgraph/<name>``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pcgraph" / name


def find_in(directory: Path, split: str) -> tuple[Path | None, Path | None]:
    """Look for a split's image and label files directly inside ``directory``.

    Args:
        directory: Folder to inspect.
        split: ``"train"`` or ``"test"``.

    Returns:
        (images, labels) paths, each None when absent; plain files win over ``.gz``.
    """
    found: list[Path | None] = []
    for base in FILES[split]:
        hit = next((p for p in (directory / base, directory / f"{base}.gz") if p.is_file()), None)
        found.append(hit)
    return found[0], found[1]


def _md5(path: Path, *, decompress: bool = False) -> str:
    """Return the hex MD5 of a file, optionally of its gunzipped content."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(spec: DatasetSpec, filename: str, path: Path, url: str) -> None:
    """Check a downloaded ``.gz`` file against the known MD5 of the file or its content."""
    got = _md5(path)
    if got == spec.md5.get(filename):
        return
    raw_expected = spec.raw_md5.get(filename.removesuffix(".gz"))
    if raw_expected is not None:
        try:
            if _md5(path, decompress=True) == raw_expected:
                return
        except (OSError, EOFError, zlib.error):
            pass
    raise DataError(
        f"{url}: MD5 {got} does not match the expected {spec.md5.get(filename)}; "
        "the download is corrupt or the mirror changed — try again later or provide the files"
    )


def _fetch(url: str, dest: Path, *, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_writer(dest) as out:
        shutil.copyfileobj(resp, out, length=1 << 20)


def download_split(spec: DatasetSpec, split: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download a split's two ``.gz`` files into the cache folder, verifying checksums.

    Args:
        spec: The dataset to fetch.
        split: ``"train"`` or ``"test"``.
        timeout: Socket timeout per request, in seconds.

    Returns:
        The cache folder now holding the files.

    Raises:
        DataError: Every mirror failed for some file; the message lists the failures.
    """
    target = cache_dir(spec.name)
    for base in FILES[split]:
        filename = f"{base}.gz"
        dest = target / filename
        if dest.is_file():
            continue
        failures: list[str] = []
        for mirror in spec.mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                _fetch(url, dest, timeout=timeout)
                _verify(spec, filename, dest, url)
                break
            except DataError as err:
                dest.unlink(missing_ok=True)
                failures.append(str(err))
            except (OSError, ValueError) as err:  # URLError, timeouts and HTTP errors are OSError
                failures.append(f"{url}: {err}")
        else:
            raise DataError(
                f"could not download {spec.name} {filename} into {target}: " + "; ".join(failures)
            )
    return target
