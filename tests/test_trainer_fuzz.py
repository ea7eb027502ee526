"""A fuzz of Trainer's inputs: random (images, labels) pairs of any dtype, width, length and
values, and random batch sizes. The property, from the documented contract (images [N, F] of
real numbers or bool, uint8 scaled to [0, 1] with a warning, other integers refused; labels
integral in [0, C); at least one batch): the run succeeds exactly when the input is valid, and
an invalid one raises a pcgraph error — never another exception, and never a silent run on
data it should have refused."""

from __future__ import annotations

import math
import warnings

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pcgraph as pc
from pcgraph.errors import PCGraphError
from pcgraph.train import Trainer

F, C = 4, 3
DTYPES = [torch.float32, torch.float64, torch.uint8, torch.int64, torch.bool, torch.complex64]
LABEL_DTYPES = [torch.int64, torch.int32, torch.float32, torch.bool]


def _learner() -> pc.PCLearner:
    net = pc.compile(pc.mlp([F, 5, C], activation="tanh"), seed=0, dtype=torch.float64)
    return pc.PCLearner(net, init="forward", T=2, lr_neurons=0.1)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    n = draw(st.integers(0, 12))
    width = draw(st.sampled_from([F - 1, F, F, F, F + 2]))
    dtype = draw(st.sampled_from(DTYPES))
    special = draw(st.sampled_from([None, None, None, math.nan, math.inf]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    images = torch.rand(n, width, generator=g, dtype=torch.float64)
    if special is not None and n:
        images[draw(st.integers(0, n - 1)), 0] = special
    if dtype == torch.uint8:
        images, special = (images.nan_to_num(0.5, 1.0) * 255).to(torch.uint8), None
    elif dtype in (torch.int64, torch.bool):
        images, special = images.nan_to_num(0.5, 1.0).round().to(dtype), None
    else:
        images = images.to(dtype)
    label_dtype = draw(st.sampled_from(LABEL_DTYPES))
    values = draw(st.lists(st.integers(-1, C), min_size=n, max_size=n))
    labels = torch.tensor(values, dtype=torch.int64)
    fractional = label_dtype == torch.float32 and draw(st.booleans()) and n > 0
    labels = labels.to(label_dtype)
    if fractional:
        labels = labels + 0.5
    batch = draw(st.integers(1, 6))
    valid = (
        n >= batch
        and width == F
        and dtype in (torch.float32, torch.float64, torch.uint8, torch.bool)
        and (special is None or n == 0)
        and label_dtype in (torch.int64, torch.int32)
        and all(0 <= v < C for v in values)
    )
    return images, labels, batch, valid


@settings(max_examples=60)
@given(inputs())
def test_trainer_trains_exactly_on_valid_inputs(
    case: tuple[torch.Tensor, torch.Tensor, int, bool],
) -> None:
    images, labels, batch, valid = case
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the uint8 note
            trainer = Trainer(
                _learner(), (images, labels), batch_size=batch, epochs=1, progress=False
            )
            history = trainer.fit()
    except PCGraphError:
        assert not valid, "a valid input was refused"
        return
    assert valid, (
        f"trained on an invalid input: images {images.dtype} {tuple(images.shape)}, labels "
        f"{labels.dtype} {labels.tolist()}, batch {batch}"
    )
    assert all(math.isfinite(e) for e in history["energy"])
