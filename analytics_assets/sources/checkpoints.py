"""Page checkpoints for a day's pull, so a retried pull resumes after its last completed page
instead of starting from zero.

Each completed page is spooled as Parquet with the last record id it held; a retry loads the
spooled pages and continues with `Id > last id` (keyset paging, sorted by id), which stays
correct even if rows were inserted or deleted meanwhile. A spool older than `max_age_s` is
stale (the records may have changed since) and is discarded; a finished pull removes its own.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import polars as pl


class PageSpool:
    def __init__(self, root: Path, key: str, max_age_s: float):
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        self.folder = root / digest
        self.key = key
        self.max_age_s = max_age_s

    def _state_path(self) -> Path:
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
        frames = [pl.read_parquet(self.folder / f"page-{n}.parquet") for n in range(state["pages"])]
        return frames, state["last_id"]

    def save(self, index: int, frame: pl.DataFrame, last_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(self.folder / f"page-{index}.parquet")
        # The state moves only after its page is on disk, and atomically.
        state = {"key": self.key, "pages": index + 1, "last_id": last_id, "updated": time.time()}
        partial = self.folder / "state.json.tmp"
        partial.write_text(json.dumps(state))
        partial.replace(self._state_path())

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
