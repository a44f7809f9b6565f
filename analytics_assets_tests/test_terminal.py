"""What the command line prints of the data: seen, not obeyed by the terminal."""

from __future__ import annotations

from datetime import date

import polars as pl
from upath import UPath

from analytics_assets.storage.lake import Lake
from analytics_assets.summary import lake_summary
from analytics_assets.terminal import terminal_safe

# A CSI that clears the screen, an OSC 8 hyperlink, a right-to-left override, and an ESC.
HOSTILE = "ok\x9b2J\x9d8;;https://evil.example\x9cclick\u202etxt.exe\x1b]0;pwned"


def test_controls_and_direction_overrides_are_printed_as_escapes():
    safe = terminal_safe(HOSTILE + "\ttab\nline 👨‍👩‍👧 é")
    assert not any(0x7F <= ord(c) < 0xA0 or c in "\x1b\u202e" for c in safe)
    assert "\\u009b2J" in safe and "\\u202etxt.exe" in safe and "\\u001b]0;pwned" in safe
    # Tabs, line breaks, joined emoji and accents are text, printed as they are.
    assert safe.endswith("\ttab\nline 👨‍👩‍👧 é")


def test_the_demo_summary_shows_what_went_wrong_not_what_was_written(tmp_path):
    """It printed each rejected record's reason as written, quoting the value: whatever a
    source row held, terminal controls and personal data included."""
    day = date(2026, 11, 3)
    lake = Lake(UPath(str(tmp_path / "lake")))
    reasons = [f"invalid feedback '{HOSTILE}'", "invalid feedback 'jane@example.com'"]
    lake.write_day("processing_errors", day, pl.DataFrame(
        {"day": [day, day], "table": ["messages", "messages"], "reason": reasons}
    ))  # fmt: skip
    summary = lake_summary(lake, day, day, run_id="r1", seconds=1.0)
    assert "  messages: invalid feedback '…' (2)" in summary
    assert "evil.example" not in summary and "jane@" not in summary
