"""What made a run: the versions, the source commit and the machine, recorded in the run's
``options.json`` (under ``environment``) so that a result can be traced back and rerun."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "environment", "git_commit"]


def git_commit(path: Path | None = None) -> str | None:
    """The commit checked out where pcgraph's source lives (with ``+dirty`` when the tracked
    files differ from it); None outside a git checkout or without git."""
    where = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment(device: str) -> dict[str, Any]:
    """pcgraph, torch and Python versions, the git commit (None when there is none), the
    device the run used (with the GPU's name on CUDA), the CPU model and the platform."""
    import torch

    import pcgraph

    record: dict[str, Any] = {
        "pcgraph": pcgraph.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device": str(device),
        "cpu": cpu_model(),
        "platform": platform.platform(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record
