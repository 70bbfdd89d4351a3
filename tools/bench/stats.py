"""Medians with min/max over repetitions, and latency percentiles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarise(name: str, values: Sequence[float | None]) -> dict[str, float | None]:
    """``name`` (median), ``name_min`` and ``name_max``; all ``None`` when nothing measured."""
    present = [v for v in values if v is not None]
    if not present:
        return {name: None, f"{name}_min": None, f"{name}_max": None}
    return {
        name: float(np.median(present)),
        f"{name}_min": float(min(present)),
        f"{name}_max": float(max(present)),
    }


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float | None]:
    if not samples_s:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(samples_s) * 1000.0
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }
