"""A throttled one-line progress display on stderr, for terminals only (the CLI's on_progress)."""

from __future__ import annotations

import time

from dedup.report import format_bytes

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from typing import TextIO

_LABELS = {"scan": "scanning", "partial": "partial hashes", "full": "full hashes",
           "verify": "comparing bytes"}


class ProgressLine:
    """Implements `on_progress(phase, done, total)`: rewrites one stderr line at most 10 times/s."""

    def __init__(self, stream: TextIO, *, interval: float = 0.1) -> None:
        self._stream = stream
        self._interval = interval
        self._last = 0.0
        self._phase = ""
        self._phase_started = 0.0
        self._shown = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._phase_started = phase, now
        elif now - self._last < self._interval and done != total:
            return
        self._last = now
        label = _LABELS.get(phase, phase)
        if phase == "scan":
            text = f"{label}: {done} files"
        elif phase == "partial":
            text = f"{label}: {done}/{total} files"
        else:
            text = f"{label}: {format_bytes(done)}/{format_bytes(total)}"
            elapsed = now - self._phase_started
            if 0 < done < total and elapsed > 1:
                text += f", ETA {elapsed / done * (total - done):.0f} s"
        self._stream.write("\r\x1b[K" + text)
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        """Erase the progress line so the summary starts on a clean line."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
