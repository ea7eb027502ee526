"""Bad data at the boundary (issue #29): the Trainer, StreamAlignedSampler, the CIFAR-10 reader,
the loggers and datasets/DataLoaders of any kind refuse what they cannot use with a pcgraph
error that names the data, the node, the index or the value and the fix — or, for uint8 images,
scale them to the documented [0, 1] range with a warning.

Expectations come from the spec: ImageDataset documents images in [0, 1] and labels in [0, C);
a bernoulli energy is a log-likelihood of values in [0, 1]; an IterableDataset streamed in
batches of B must train exactly like the same batches from a map-style DataLoader.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import pcgraph as pc
from pcgraph.data import DataError, StreamAlignedSampler, as_image_dataset, load_cifar10
from pcgraph.errors import ClampError, ConfigError, PCGraphError
from pcgraph.train import CSVLogger, JSONLinesLogger, Trainer

N, F, C = 40, 16, 4


def learner(net_spec: pc.GraphSpec | None = None, seed: int = 0) -> pc.PCLearner:
    spec = net_spec or pc.mlp([F, 8, C], activation="tanh")
    net = pc.compile(spec, seed=seed, dtype=torch.float64)
    return pc.PCLearner(net, init="forward", T=2, lr_neurons=0.1)


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, F, generator=g), torch.arange(N) % C


class Stream(IterableDataset):  # type: ignore[type-arg]
    """An IterableDataset without a length: (image, label) pairs in order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from zip(self.x, self.y, strict=True)


# --- dtypes -----------------------------------------------------------------------------------
def test_uint8_images_are_scaled_to_unit_range_with_a_warning_naming_the_fix() -> None:
    x, y = data()
    raw = (x * 255).round().to(torch.uint8)
    with pytest.warns(UserWarning, match=r"uint8.*images\.float\(\) / 255"):
        t = Trainer(learner(), (raw, y), batch_size=8, progress=False)
    assert t.train_set is not None
    # the documented range: exactly the bytes / 255
    expected = raw.to(torch.float32) / 255
    assert torch.equal(t.train_set.images.reshape(N, F), expected)
    assert float(t.train_set.images.max()) <= 1.0


def test_uint8_batches_from_a_dataloader_train_like_the_scaled_floats() -> None:
    x, y = data()
    raw = (x * 255).round().to(torch.uint8)
    scaled = raw.to(torch.float32) / 255
    a, b = learner(), learner()
    with pytest.warns(UserWarning, match="uint8"):
        Trainer(a, DataLoader(TensorDataset(raw, y), batch_size=8), progress=False).fit()
    Trainer(b, DataLoader(TensorDataset(scaled, y), batch_size=8), progress=False).fit()
    for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q)


def test_complex_images_are_refused() -> None:
    x, y = data()
    with pytest.raises(DataError, match=r"the train data.*complex64.*real"):
        Trainer(learner(), (x.to(torch.complex64), y), batch_size=8, progress=False)
    loader = DataLoader(TensorDataset(x.to(torch.complex64), y), batch_size=8)
    with pytest.raises(DataError, match=r"batch 0.*complex64"):
        Trainer(learner(), loader, progress=False).fit()


# --- labels -----------------------------------------------------------------------------------
def test_float_labels_are_refused_never_truncated() -> None:
    x, y = data()
    bad = y.to(torch.float32)
    bad[3] = 2.5
    loader = DataLoader(TensorDataset(x, bad), batch_size=8)
    with pytest.raises(DataError, match=r"batch 0.*label 2\.5 \(sample 3\).*integer class"):
        Trainer(learner(), loader, progress=False).fit()
    with pytest.raises(DataError, match=r"StreamAlignedSampler.*label 2\.5 \(sample 3\)"):
        StreamAlignedSampler(bad, 8)
    with pytest.raises(DataError, match=r"item 3.*2\.5.*not a class index"):
        as_image_dataset([(x[i], 2.5 if i == 3 else int(y[i])) for i in range(N)])


def test_labels_out_of_range_name_the_data_the_index_and_the_value() -> None:
    x, y = data()
    y = y.clone()
    y[5] = 12  # the graph's output node has 4 values: classes 0 … 3
    with pytest.raises(
        DataError, match=r"the train data: label 12 is outside the classes 0 … 3 \(sample 5\)"
    ):
        Trainer(learner(), (x, y), batch_size=8, progress=False)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.raises(DataError, match=r"batch 0 \(epoch 1\): label 12 is outside.*\(sample 5\)"):
        Trainer(learner(), loader, progress=False).fit()
    ok = data()
    with pytest.raises(DataError, match=r"the test data: label 12 .*\(sample 5\)"):
        Trainer(learner(), ok, (x, y), batch_size=8, progress=False)


# --- empty data, widths -----------------------------------------------------------------------
def test_empty_data_is_refused() -> None:
    x, y = data()
    with pytest.raises(DataError, match="the train data: no samples"):
        Trainer(learner(), (x[:0], y[:0]), batch_size=8, progress=False)
    empty = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=8)
    with pytest.raises(DataError, match="yielded no batches in epoch 1"):
        Trainer(learner(), empty, progress=False).fit()


def test_wrong_widths_name_the_node_and_both_shapes() -> None:
    _, y = data()
    wide = torch.rand(N, 17)
    with pytest.raises(
        ClampError, match=r"the train data: each image has shape .*\(17 values\).*'x' \[16\]"
    ):
        Trainer(learner(), (wide, y), batch_size=8, progress=False)
    loader = DataLoader(TensorDataset(wide, y), batch_size=8)
    with pytest.raises(ClampError, match=r"batch 0.*shape \[17\].*'x' \[16\].*16 values"):
        Trainer(learner(), loader, progress=False).fit()


def test_dataloader_without_batching_names_batch_size() -> None:
    x, y = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=None)
    with pytest.raises(DataError, match=r"single sample \(inputs of shape \[16\].*batch_size=B"):
        Trainer(learner(), loader, progress=False).fit()


# --- argument types ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: StreamAlignedSampler(torch.arange(N) % C, "20"), DataError, "batch_size"),
        (lambda: StreamAlignedSampler(torch.arange(N) % C, 8, rank=0.5), DataError, "rank"),
        (lambda: CSVLogger(None), ConfigError, "log_dir"),
        (lambda: JSONLinesLogger(3), ConfigError, "log_dir"),
        (lambda: load_cifar10(None), DataError, "root"),
        (lambda: Trainer(learner(), data(), batch_size=8, seed=1.5), ConfigError, "seed"),
        (lambda: Trainer(learner(), data(), batch_size=8, checkpoint=3), ConfigError, "checkpoint"),
    ],
)
def test_argument_types_get_a_pcgraph_error(make, error, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=words) as info:
        make()
    assert isinstance(info.value, PCGraphError)


# --- IterableDataset --------------------------------------------------------------------------
def test_an_iterable_dataset_is_streamed_like_the_same_batches_from_a_dataloader() -> None:
    x, y = data()
    a, b, c = learner(), learner(), learner()
    ha = Trainer(a, Stream(x, y), batch_size=8, epochs=2, progress=False).fit()
    Trainer(b, DataLoader(Stream(x, y), batch_size=8), epochs=2, progress=False).fit()
    # the reference: the same batches in the same order from a map-style dataset
    Trainer(c, DataLoader(TensorDataset(x, y), batch_size=8), epochs=2, progress=False).fit()
    for p, q, r in zip(a.net.parameters(), b.net.parameters(), c.net.parameters(), strict=True):
        assert torch.equal(p, r) and torch.equal(q, r)
    assert ha["epoch"] == [1, 2]


def test_an_iterable_test_set_is_refused_with_the_reason() -> None:
    x, y = data()
    with pytest.raises(DataError, match=r"IterableDataset.*no length.*map-style Dataset"):
        Trainer(learner(), (x, y), Stream(x, y), batch_size=8, progress=False)
    with pytest.raises(DataError, match="IterableDataset"):
        Trainer(learner(), (x, y), DataLoader(Stream(x, y), batch_size=8), batch_size=8)


# --- bernoulli targets ------------------------------------------------------------------------
BERNOULLI_DECODER = """
name: bern
nodes:
- {name: z, shape: 4}
- {name: img, shape: 16, role: output, energy: bernoulli}
edges:
- {source: z, target: img}
"""


@pytest.mark.parametrize(("scale", "shift"), [(2.0, -1.0), (255.0, 0.0)])
def test_bernoulli_targets_outside_unit_range_are_refused(scale: float, shift: float) -> None:
    spec = pc.GraphSpec.from_yaml(BERNOULLI_DECODER)
    x, y = data()
    bad = x * scale + shift  # -1 … 1 or 0 … 255
    low, high = float(bad.min()), float(bad.max())
    with pytest.raises(DataError, match=rf"node 'img'.*bernoulli.*\[{low:g}, {high:g}\]"):
        Trainer(learner(spec), (bad, y), batch_size=8, progress=False)
    loader = DataLoader(TensorDataset(bad, y), batch_size=N)
    with pytest.raises(DataError, match=rf"batch 0.*node 'img'.*\[{low:g}, {high:g}\]"):
        Trainer(learner(spec), loader, progress=False).fit()
    Trainer(learner(spec), (x, y), batch_size=8, progress=False)  # [0, 1]: accepted


# --- CIFAR-10 ---------------------------------------------------------------------------------
def _write_batches(root: Path, labels: object, protocol: int) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": pixels, b"labels": labels}, f, protocol=protocol)
    return folder


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("executed",))


def test_cifar_batches_pickled_with_protocol_5_are_read_and_code_still_refused(
    tmp_path: Path,
) -> None:
    labels = np.array([3, 0, 9], dtype=np.int64)
    folder = _write_batches(tmp_path, labels, protocol=5)
    test = load_cifar10(tmp_path, "test")
    with (folder / "test_batch").open("rb") as f:
        raw = pickle.load(f)  # the test's own file: the reference bytes
    assert torch.equal(test.labels, torch.tensor([3, 0, 9]))
    expected = torch.from_numpy(raw[b"data"].copy()).view(3, 3, 32, 32).float() / 255
    assert torch.equal(test.images, expected)
    # protocol 5 opens no door to code: a callable in the pickle is still refused
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": _Boom(), b"labels": [0]}, f, protocol=5)
    with pytest.raises(DataError, match=r"refused to load builtins\.print"):
        load_cifar10(tmp_path, "test")


def test_cifar_labels_as_strings_name_the_file_and_the_label(tmp_path: Path) -> None:
    _write_batches(tmp_path, ["cat", "dog", "ship"], protocol=2)
    with pytest.raises(DataError, match=r"test_batch: label 0 is 'cat' \(str\), not a class index"):
        load_cifar10(tmp_path, "test")


# --- configuration by environment -------------------------------------------------------------
def test_pcgraph_data_pointing_nowhere_is_an_error_naming_the_variable_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pcgraph.data import load_dataset

    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("PCGRAPH_DATA", str(missing))
    with pytest.raises(DataError, match=rf"PCGRAPH_DATA='{missing}' is not an existing folder"):
        load_dataset("fashion-mnist", "test")  # never a silent fall-back to the embedded subset


def test_average_init_refuses_labels_made_up_from_a_non_label_output() -> None:
    """average/hybrid read class labels as the argmax of the clamped output's rows; an image
    in that role (a decoder) is not one-hot, so its "labels" would be its brightest pixel."""
    spec = pc.decoder([4, 6, 9], activation="tanh")
    net = pc.compile(spec, seed=0, dtype=torch.float64)
    learner = pc.PCLearner(net, init="average", clamp="generate", T=2)
    images = torch.rand(5, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(pc.InitError, match=r"'image'.*not one-hot.*labels="):
        learner.train_step({"image": images})
    # with the labels given, the same data trains
    learner.train_step({"image": images}, labels=torch.tensor([0, 1, 2, 0, 1]))
