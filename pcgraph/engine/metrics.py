"""What one training step reports (:class:`StepMetrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["StepMetrics"]


@dataclass
class StepMetrics:
    """What one training step reports (tensors stay on the device until read); ``steps``: the
    inference steps run, fewer than ``T`` where ``tol`` stopped them early."""

    energy_before: torch.Tensor
    energy_after: torch.Tensor
    node_energies: torch.Tensor
    smm: int
    smm_total: int
    init: str
    T: int
    trace: torch.Tensor | None = None
    steps: int = -1

    def to_dict(self, node_names: list[str] | None = None) -> dict[str, Any]:
        """Plain Python numbers (forces a device sync)."""
        out: dict[str, Any] = {
            "energy_before": float(self.energy_before),
            "energy_after": float(self.energy_after),
            "smm": self.smm,
            "smm_total": self.smm_total,
            "init": self.init,
            "T": self.T,
            "steps": self.steps,
        }
        if node_names is not None:
            out["node_energies"] = dict(zip(node_names, self.node_energies.tolist(), strict=True))
        return out
