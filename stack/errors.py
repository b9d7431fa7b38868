"""The one error type the stack CLI turns into a single readable line and a non-zero exit."""

from __future__ import annotations


class StackError(RuntimeError):
    """A setup or start-up failure with a message that says what to do."""
