"""Durations as people type them: ``90s``, ``30m``, ``12h``, ``2d`` or plain seconds."""

from __future__ import annotations

UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """Milliseconds of ``text`` (90s, 30m, 12h, 3d, or plain seconds); ValueError with the
    reason when it is not a non-negative duration."""
    text = str(text).strip()
    try:
        value = float(text[:-1]) * UNITS_MS[text[-1]] if text and text[-1] in UNITS_MS else float(text) * 1_000
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 3d)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 3d)")
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return int(value)
