"""Which device runs the model tier, and which engine runs heavy polars queries.

torch and cudf-polars are imported only here and only when asked for: the UI and the rules
tier must not pay seconds of imports.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import polars as pl

DeviceChoice = Literal["auto", "cuda", "cpu"]


class DeviceUnavailableError(RuntimeError):
    """`device=cuda` was asked for, but torch sees no CUDA device."""


def resolve_device(requested: DeviceChoice) -> str:
    """`auto` picks CUDA when torch sees it, else the CPU; `cuda` without CUDA is an error."""
    if requested == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise DeviceUnavailableError(
            "device=cuda but torch sees no CUDA device (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}). "
            "Use device=auto to fall back to the CPU."
        )
    return "cuda" if available else "cpu"


def gpu_engine_available() -> bool:
    return importlib.util.find_spec("cudf_polars") is not None


def collect(query: pl.LazyFrame, *, device: str) -> tuple[pl.DataFrame, str]:
    """Runs a heavy aggregation on cuDF (polars' GPU engine) when on CUDA with the `gpu`
    extra installed; on the CPU engine otherwise or when the GPU engine refuses the query.
    Returns the frame and the engine that ran it."""
    if device == "cuda" and gpu_engine_available():
        try:
            return query.collect(engine=pl.GPUEngine(raise_on_fail=True)), "gpu"
        except Exception:
            pass
    return query.collect(), "cpu"
