"""A root node's prior (:class:`PriorSpec`): a Gaussian energy ½ p ‖x − m‖² of its own."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PriorSpec", "check_prior"]


class PriorSpec(BaseModel):
    """``prior: {mean: m, precision: p}`` on a root node (one without parents): its energy is
    E = ½ p ‖x − m‖² summed over the batch, the energy of a Gaussian prior N(m, 1/p) on every
    entry. It gives a generative root (a decoder's latent) an energy of its own, pulling it to
    m. The network computes it as a fixed prediction μ = m with precision p.

    Attributes:
        mean: m, the same for every entry of the node (default 0).
        precision: p > 0 (default 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float = Field(0.0, allow_inf_nan=False)
    precision: float = Field(1.0, gt=0, allow_inf_nan=False)

    @field_validator("mean", "precision", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):  # YAML true would be 1.0
            raise ValueError(f"a prior's mean and precision are numbers, got {v!r}")
        return v


def check_prior(
    name: str, prior: PriorSpec | None, has_parents: bool, energy: str, precision: object
) -> None:
    """Raise ValueError for a prior where it has no meaning: on a node with parents, or on a
    root that also declares another energy or a precision of its own."""
    if prior is None:
        return
    if has_parents:
        raise ValueError(
            f"node {name!r} has a prior but also incoming edges; a prior applies to root "
            "nodes only (a predicted node's energy is its prediction error): remove 'prior' or "
            f"the edges into {name!r}"
        )
    if energy != "gaussian" or precision != 1.0:
        raise ValueError(
            f"node {name!r}: a prior is Gaussian with its own precision; drop 'energy' "
            "and 'precision' from the node and set prior: {mean: ..., precision: ...}"
        )
