"""Number, table and plan formatting for the crawler-pg-scale section (pg_report.py)."""

from __future__ import annotations

import re
from typing import Any


def n(x: float | None, digits: int = 0) -> str:
    """A number with thousands separators."""
    if x is None:
        return "–"
    return f"{float(x):,.{digits}f}"


def mib(b: float) -> str:
    """Bytes in MiB, one decimal."""
    return f"{b / 2**20:,.1f}"


def table(head: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A markdown table; *align* is one letter per column, l or r (default: first left)."""
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def exec_ms(plan: str) -> float:
    """The Execution Time of an EXPLAIN ANALYZE text, in ms (NaN if absent)."""
    m = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(m.group(1)) if m else float("nan")


def key_lines(plan: str, limit: int = 34) -> str:
    """The plan's nodes with their actual rows (costs and buffer lines dropped), long lines cut."""
    keep = []
    for line in plan.splitlines():
        if re.search(r"Buffers:|Planning|Heap Blocks|Buckets|Recheck Cond|Hash Cond|Sort Key|"
                     r"Memory Usage|Workers Planned|Workers Launched", line):
            continue
        line = re.sub(r"\(cost=[^)]*\) ", "", line.rstrip())
        line = re.sub(r"'\{http[^}]*\}'", "'{…origins…}'", line)
        if len(line) > 150:
            line = line[:147] + "..."
        keep.append(line)
    if len(keep) > limit:
        keep = keep[:limit - 1] + ["  ..."] + keep[-1:]
    return "\n".join(keep)


def details(title: str, plan: str) -> str:
    """A collapsed markdown block with the plan's key lines."""
    return (f"<details><summary>{title}</summary>\n\n```\n{key_lines(plan)}\n```\n</details>\n")


def plan_by_label(plans: list[list[str]], prefix: str, nth: int = 0) -> str:
    """The *nth* plan whose statement label starts with *prefix* (empty if none)."""
    found = [p for label, p in plans if label.startswith(prefix)]
    return found[nth] if len(found) > nth else ""


def _rows_of(plan: str) -> str:
    m = re.search(r"^\S.*?actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", plan, re.M)
    return n(int(m.group(1))) if m else "?"
