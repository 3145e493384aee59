"""The `--out` JSONL writer (I/O): one JSON object per line, handed to the OS on `flush()`."""

from __future__ import annotations

import json
import sys
from typing import IO

from crawler.records import CrawlRecord


class JsonlWriter:
    """Appends records to a file (or stdout for "-"); `flush()` before the state marks them done."""

    def __init__(self, path: str) -> None:
        """Open *path* for appending (a resumed crawl adds to the same file)."""
        self._own = path != "-"
        self._file: IO[str] = open(path, "a", encoding="utf-8") if self._own else sys.stdout  # noqa: SIM115

    def write(self, record: CrawlRecord) -> None:
        """Buffer one record."""
        self._file.write(json.dumps(record.as_dict(), separators=(",", ":")) + "\n")

    def flush(self) -> None:
        """Hand buffered records to the OS (they survive a kill -9 of this process)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close (stdout is flushed, not closed)."""
        self._file.flush()
        if self._own:
            self._file.close()
