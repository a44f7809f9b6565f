"""Text from the data, made safe to print to a terminal.

Ingestion keeps message text as written (only C0 controls other than tab and line breaks
are removed, `transforms/records.py`), so C1 controls (U+0080-U+009F, of which U+009B is a
CSI and U+009D an OSC in terminals that act on them) and the bidirectional overrides
(U+202E makes `txt.exe` read backwards) reach whatever prints a conversation. Printed as
escapes (`\\u009b`) they are seen, not obeyed.
"""

from __future__ import annotations

_BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPED = {
    code: f"\\u{code:04x}"
    for code in (
        *(c for c in range(0x20) if chr(c) not in "\t\n"),
        *range(0x7F, 0xA0),
        *_BIDI_CONTROLS,
    )
}


def terminal_safe(text: str) -> str:
    """`text` with control characters and bidirectional overrides written as escapes."""
    return text.translate(_ESCAPED)
