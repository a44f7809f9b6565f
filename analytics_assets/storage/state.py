"""Where a deployment keeps its working state that is not data: a pull's resume checkpoints
and the trained category heads.

A local folder by default; `ANALYTICS_STATE_URL=s3://bucket/state` puts them in S3, so a
step that resumes or loads heads on another machine (Celery, Kubernetes) finds what an
earlier attempt or the training job wrote, instead of an empty local disk. The same code
runs on both through universal_pathlib, as the lake does.

Pure: no Dagster.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from upath import UPath

CHECKPOINTS_FOLDER = "nocodb_pages"
HEADS_FOLDER = "heads"


def is_url(location: str | Path | UPath) -> bool:
    """An object-store location (not a local folder, whatever type names it)."""
    if isinstance(location, UPath):
        return location.protocol not in ("", "file", "local")
    return "://" in str(location)


def state_path(location: str | Path | UPath, storage_options: dict[str, Any] | None = None):
    """A local `Path`, or a `UPath` for a URL (`s3://…`) with s3fs's `storage_options`."""
    if isinstance(location, UPath):
        return location
    if is_url(location):
        return UPath(str(location), **(storage_options or {}))
    return Path(location)


def write_text_atomically(path: Path | UPath, text: str) -> None:
    """Readers see the old text or the new, never half: a local file is written beside and
    renamed; an object store's PUT replaces an object whole by itself."""
    if is_url(path):
        path.write_text(text)
        return
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)


def remove_tree(path: Path | UPath) -> None:
    """The folder and everything under it; nothing when it is absent."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        path.fs.rm(path.path, recursive=True)
