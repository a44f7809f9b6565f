"""Page checkpoints for a day's pull, so a retried pull resumes after its last completed page
instead of starting from zero.

Each completed page is spooled as Parquet with the last record id it held; a retry loads the
spooled pages and continues with `Id > last id` (keyset paging, sorted by id), which stays
correct even if rows were inserted or deleted meanwhile. A spool older than `max_age_s` is
stale (the records may have changed since) and is discarded; a finished pull removes its own.
A spool belongs to one run and its re-executions (its key holds the root run's id): a new
run never resumes another's pages, which may predate the edit it was requested for.
`sweep_stale` removes the stale spools of runs that never came back.

The root is a local folder or, in production, an S3 location (`ANALYTICS_STATE_URL`), so a
retry that lands on another worker still finds the pages.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import polars as pl
from upath import UPath

from analytics_assets.storage.state import remove_tree, state_path, write_text_atomically


class PageSpool:
    def __init__(
        self,
        root: str | Path | UPath,
        key: str,
        max_age_s: float,
        storage_options: dict[str, Any] | None = None,
    ):
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.folder = state_path(root, storage_options) / digest
        self.key = key
        self.max_age_s = max_age_s

    def _state_path(self) -> Path | UPath:
        return self.folder / "state.json"

    def load(self) -> tuple[list[pl.DataFrame], str | None]:
        """The spooled pages and the last id they reached; nothing when there is no fresh
        spool for this exact query."""
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            self.clear()
            return [], None
        if state.get("key") != self.key or time.time() - state["updated"] > self.max_age_s:
            self.clear()
            return [], None
        frames = []
        for n in range(state["pages"]):
            with (self.folder / f"page-{n}.parquet").open("rb") as page:
                frames.append(pl.read_parquet(page))
        return frames, state["last_id"]

    def save(self, index: int, frame: pl.DataFrame, last_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"page-{index}.parquet").open("wb") as page:
            frame.write_parquet(page)
        # The state moves only after its page is stored, and atomically.
        state = {"key": self.key, "pages": index + 1, "last_id": last_id, "updated": time.time()}
        write_text_atomically(self._state_path(), json.dumps(state))

    def clear(self) -> None:
        remove_tree(self.folder)


def sweep_stale(
    root: str | Path | UPath, max_age_s: float, storage_options: dict[str, Any] | None = None
) -> int:
    """Removes the spools under `root` last saved more than `max_age_s` ago (those of runs
    that failed and were never re-executed); returns how many."""
    base = state_path(root, storage_options)
    if not base.exists():
        return 0
    removed = 0
    for folder in base.iterdir():
        try:
            updated = json.loads((folder / "state.json").read_text())["updated"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not a spool: a pull's own load decides
        if time.time() - updated > max_age_s:
            remove_tree(folder)
            removed += 1
    return removed
