"""Write one tool's section of bench/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
_HEADER = "# fanmill benchmark results\n\nEach section is rewritten by its own `make bench-<part>` run.\n"


def machine_line() -> str:
    """Return a one-line description of this machine and today's date, for a results section."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{datetime.date.today().isoformat()} · {cpu} · {os.cpu_count()} cores · "
        f"{mem_gib:.0f} GiB · Python {platform.python_version()} · {platform.system()} {platform.release()}"
    )


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace the section *name* of the results file with *markdown* (created if missing)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
