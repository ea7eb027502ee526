"""Tests for pcgraph.data: IDX I/O, dataset search order, embedded subset, batching."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcgraph.data import (
    DataError,
    ImageDataset,
    embedded_dataset,
    load_dataset,
    loader,
    read_idx,
    shuffled_batches,
    sources,
    stream_aligned_batches,
    stream_aligned_labels,
    write_idx,
)

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- helpers


def make_split(directory: Path, split: str = "train", *, n: int = 20, gz: bool = True) -> None:
    """Write a small fake MNIST-style split (labels 0..9 cycling) into ``directory``."""
    images_name, labels_name = sources.FILES[split]
    suffix = ".gz" if gz else ""
    rng = np.random.default_rng(n)
    write_idx(directory / f"{images_name}{suffix}", rng.integers(0, 256, (n, 28, 28), np.uint8))
    write_idx(directory / f"{labels_name}{suffix}", (np.arange(n) % 10).astype(np.uint8))


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide every real data location: no $PCGRAPH_DATA, empty cache, no system dirs."""
    monkeypatch.delenv("PCGRAPH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "SYSTEM_DIRS", (tmp_path / "system",))
    loader.clear_cache()
    return tmp_path


def with_mirror(monkeypatch: pytest.MonkeyPatch, name: str, mirror: str, **changes: object) -> None:
    """Point dataset ``name``'s downloads at ``mirror``."""
    spec = dataclasses.replace(sources.DATASETS[name], mirrors=(mirror,), **changes)
    monkeypatch.setitem(sources.DATASETS, name, spec)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype is np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"a.idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_round_trip_torch_and_deterministic_gzip(tmp_path: Path) -> None:
    tensor = torch.arange(50, dtype=torch.uint8).reshape(5, 10)
    first = write_idx(tmp_path / "a.gz", tensor).read_bytes()
    second = write_idx(tmp_path / "b.gz", tensor).read_bytes()
    assert first == second
    assert torch.equal(torch.from_numpy(read_idx(tmp_path / "a.gz")), tensor)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_idx_truncated(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "imgs.idx", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:1200])
    with pytest.raises(DataError, match=r"imgs\.idx.*expected 7840 bytes.*found 1184.*truncated"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "imgs.gz", np.arange(4000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"imgs\.gz.*truncated"):
        read_idx(path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "notidx.bin"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match=r"notidx\.bin.*magic"):
        read_idx(path)


def test_idx_bad_dtype_code_and_extra_bytes(tmp_path: Path) -> None:
    path = tmp_path / "code.idx"
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError, match=r"code\.idx.*dtype code 0x42"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 7, 7]))
    with pytest.raises(DataError, match=r"code\.idx.*1 extra"):
        read_idx(path)


def test_idx_wrong_dims(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "flat.idx", np.zeros((4, 784), np.uint8))
    with pytest.raises(DataError, match=r"flat\.idx.*2 dimensions, expected 3"):
        read_idx(path, ndim=3)


def test_loader_rejects_wrong_image_shape(tmp_path: Path) -> None:
    make_split(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((20, 14, 14), np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*\[N, 28, 28\]"):
        load_dataset(root=tmp_path)


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, np.int64))


# --------------------------------------------------------------------------- search order


def test_explicit_root_wins(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_split(isolated / "mine", n=30, gz=False)
    make_split(isolated / "env", n=40)
    monkeypatch.setenv("PCGRAPH_DATA", str(isolated / "env"))
    ds = load_dataset(root=isolated / "mine")
    assert len(ds) == 30 and ds.source == str(isolated / "mine")
    assert ds.images.shape == (30, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64


def test_pcgraph_data_env(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_split(isolated / "env" / "fashion-mnist", "test", n=40)
    make_split(isolated / "cache" / "pcgraph" / "fashion-mnist", "test", n=50)
    monkeypatch.setenv("PCGRAPH_DATA", str(isolated / "env"))
    ds = load_dataset(split="test")
    assert len(ds) == 40 and ds.split == "test"
    monkeypatch.delenv("PCGRAPH_DATA")
    assert len(load_dataset(split="test")) == 50  # then the user cache


def test_system_dir_used(isolated: Path) -> None:
    make_split(isolated / "system" / "mnist", n=10)
    ds = load_dataset("MNIST", allow_embedded=False)
    assert ds.name == "mnist" and len(ds) == 10


def test_explicit_root_without_files_raises(isolated: Path) -> None:
    make_split(isolated / "other")  # data elsewhere must not be used
    (isolated / "empty").mkdir()
    with pytest.raises(DataError, match=r"root=.*empty.*train-images-idx3-ubyte"):
        load_dataset(root=isolated / "empty")


def test_nothing_found_names_places(isolated: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(allow_embedded=False)
    message = str(info.value)
    assert "$PCGRAPH_DATA" in message
    assert str(isolated / "cache" / "pcgraph" / "fashion-mnist") in message
    assert str(isolated / "system" / "fashion-mnist") in message
    assert "root=" in message and "dataset-fashion-mnist" in message


def test_missing_falls_back_to_embedded_with_warning(isolated: Path) -> None:
    with pytest.warns(UserWarning, match="embedded subset"):
        ds = load_dataset(split="test")
    assert ds.source == "embedded subset" and len(ds) == 1000


def test_other_dataset_has_no_embedded_fallback(isolated: Path) -> None:
    with pytest.raises(DataError, match=r"kmnist.*fashion-mnist only"):
        load_dataset("kmnist")


def test_unknown_name_and_split() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_dataset(split="valid")


def test_in_process_cache(isolated: Path) -> None:
    make_split(isolated / "d", n=20)
    first = load_dataset(root=isolated / "d")
    first.images.zero_()  # mutating a result must not poison the cache
    hits = loader._read_pair.cache_info().hits
    second = load_dataset(root=isolated / "d")
    assert loader._read_pair.cache_info().hits == hits + 1
    assert second.images.max() > 0


# --------------------------------------------------------------------------- download


def test_download_offline_falls_back_fast(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_mirror(monkeypatch, "fashion-mnist", "http://127.0.0.1:9/")
    start = time.monotonic()
    with pytest.warns(UserWarning, match=r"could not download.*embedded"):
        ds = load_dataset(download=True)
    assert time.monotonic() - start < 5
    assert ds.source == "embedded subset" and len(ds) == 5000
    with pytest.raises(DataError, match=r"could not download.*Other ways.*root="):
        load_dataset(download=True, allow_embedded=False)


def test_download_verifies_checksum(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = isolated / "mirror"
    make_split(mirror, "test", n=30)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mirror.iterdir()}
    with_mirror(monkeypatch, "mnist", mirror.as_uri() + "/", md5=md5)
    ds = load_dataset("mnist", "test", download=True)
    cache = isolated / "cache" / "pcgraph" / "mnist"
    assert len(ds) == 30 and ds.source == str(cache)

    # A recompressed copy is accepted through the checksum of its decompressed content.
    images = mirror / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw, compresslevel=1))
    raw_md5 = {"t10k-images-idx3-ubyte": hashlib.md5(raw).hexdigest()}
    with_mirror(monkeypatch, "mnist", mirror.as_uri() + "/", md5=md5, raw_md5=raw_md5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "cache2"))
    assert len(load_dataset("mnist", "test", download=True)) == 30

    bad = dict(md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with_mirror(monkeypatch, "mnist", mirror.as_uri() + "/", md5=bad)
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "cache3"))
    with pytest.raises(DataError, match="MD5"):
        load_dataset("mnist", "test", download=True)
    assert not (isolated / "cache3" / "pcgraph" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()


# --------------------------------------------------------------------------- embedded subset


@pytest.mark.parametrize(("split", "n"), [("train", 5000), ("test", 1000)])
def test_embedded_subset(split: str, n: int) -> None:
    ds = embedded_dataset(split)
    assert len(ds) == n and ds.source == "embedded subset" and ds.name == "fashion-mnist"
    assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.class_counts().tolist() == [n // 10] * 10
    assert ds.flat().shape == (n, 784)
    one_hot = ds.one_hot()
    assert one_hot.shape == (n, 10) and torch.equal(one_hot.argmax(1), ds.labels)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="full Fashion-MNIST not installed")
@pytest.mark.parametrize("split", ["train", "test"])
def test_embedded_is_subset_of_real(split: str) -> None:
    real = load_dataset(split=split, root=REAL_FASHION)
    assert len(real) == (60000 if split == "train" else 10000)
    real_rows = (real.flat() * 255).round().to(torch.uint8).numpy()
    known = set(zip(map(bytes, real_rows), real.labels.tolist(), strict=True))
    emb = embedded_dataset(split)
    rows = (emb.flat() * 255).round().to(torch.uint8).numpy()
    assert set(zip(map(bytes, rows), emb.labels.tolist(), strict=True)) <= known


def test_subset() -> None:
    ds = embedded_dataset("test")
    first = ds.subset(25)
    assert first.class_counts().tolist() == [3] * 5 + [2] * 5
    assert torch.equal(ds.subset(25).images, first.images)
    rand = ds.subset(20, generator=torch.Generator().manual_seed(1))
    assert rand.class_counts().tolist() == [2] * 10
    plain = ds.subset(7, balanced=False)
    assert torch.equal(plain.labels, ds.labels[:7])
    with pytest.raises(DataError, match="n=2000"):
        ds.subset(2000)
    with pytest.raises(DataError, match=r"class \d has \d+ samples but a balanced subset of 50"):
        ds.select(torch.arange(50)).subset(50)


# --------------------------------------------------------------------------- batching


def check_stream_aligned(
    labels: torch.Tensor, batches: list[torch.Tensor], bs: int, c: int
) -> None:
    """Assert the stream-aligned contract for one epoch."""
    layout = stream_aligned_labels(bs, c)
    counts = torch.bincount(labels, minlength=c)
    assert len(batches) == int(counts.min()) // (bs // c)
    for batch in batches:
        assert batch.shape == (bs,) and batch.dtype == torch.int64
        assert torch.equal(labels[batch], layout)  # same class at position k in every batch
    seen = torch.cat(batches) if batches else torch.empty(0, dtype=torch.int64)
    assert seen.unique().numel() == seen.numel()  # each index at most once per epoch


@st.composite
def label_vectors(draw: st.DrawFn) -> tuple[torch.Tensor, int, int]:
    c = draw(st.integers(1, 6))
    per_class = draw(st.integers(1, 4))
    counts = draw(st.lists(st.integers(per_class, 3 * per_class + 5), min_size=c, max_size=c))
    labels = [k for k, count in enumerate(counts) for _ in range(count)]
    return torch.tensor(draw(st.permutations(labels))), c, c * per_class


@settings(max_examples=60, deadline=None)
@given(case=label_vectors(), seed=st.integers(0, 2**16), shuffle=st.booleans())
def test_stream_aligned_property(
    case: tuple[torch.Tensor, int, int], seed: int, shuffle: bool
) -> None:
    labels, c, bs = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = stream_aligned_batches(
            labels,
            bs,
            num_classes=c,
            generator=torch.Generator().manual_seed(seed),
            shuffle=shuffle,
        )
    check_stream_aligned(labels, batches, bs, c)


def test_stream_aligned_on_dataset() -> None:
    labels = embedded_dataset("train").labels
    batches = stream_aligned_batches(labels, 100, generator=torch.Generator().manual_seed(0))
    check_stream_aligned(labels, batches, 100, 10)
    assert torch.cat(batches).numel() == 5000
    assert stream_aligned_labels(20, 10).tolist() == [c for c in range(10) for _ in range(2)]


def test_stream_aligned_bad_batch_size() -> None:
    with pytest.raises(DataError, match=r"batch_size=25.*num_classes=10.*20 or 30"):
        stream_aligned_batches(torch.arange(100) % 10, 25)
    with pytest.raises(DataError, match="batch_size=25"):
        stream_aligned_labels(25, 10)


def test_stream_aligned_bad_labels() -> None:
    with pytest.raises(DataError, match="label 10 is outside"):
        stream_aligned_batches(torch.arange(100) % 11, 20, num_classes=10)
    with pytest.raises(DataError, match="class 1 has 1 samples"):
        stream_aligned_batches(torch.tensor([0, 0, 1, 2, 2]), 6)


def test_stream_aligned_imbalanced_policy() -> None:
    labels = torch.tensor([0] * 10 + [1] * 30)
    with pytest.warns(UserWarning, match=r"dropped 20 of 40 samples"):
        batches = stream_aligned_batches(labels, 4, generator=torch.Generator().manual_seed(0))
    check_stream_aligned(labels, batches, 4, 2)
    assert len(batches) == 5
    with pytest.warns(UserWarning, match="dropped"):
        other = stream_aligned_batches(labels, 4, generator=torch.Generator().manual_seed(1))
    assert set(torch.cat(batches).tolist()) != set(torch.cat(other).tolist())
    mild = torch.tensor([0] * 10 + [1] * 11)  # 1 of 21 dropped: under 10%, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(stream_aligned_batches(mild, 2)) == 10


def test_shuffled_batches() -> None:
    batches = shuffled_batches(10, 4, generator=torch.Generator().manual_seed(0))
    assert [b.numel() for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    assert [b.numel() for b in shuffled_batches(10, 4, drop_last=True)] == [4, 4]
    with pytest.raises(DataError, match="batch_size"):
        shuffled_batches(10, 0)


def test_dataset_validation() -> None:
    with pytest.raises(DataError, match="labels"):
        ImageDataset(
            torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.int64), "x", "train", "t"
        )
