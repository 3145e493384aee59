"""The tools under comparison: how to run each on a corpus, and how to read its groups back."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Tool:
    """One tool: its command for a root and output file, and a parser of that output to groups."""

    name: str
    command: Callable[[str, str], list[str]]  # (root, output path) -> argv; stdout goes to output
    parse: Callable[[bytes, str], list[list[str]]]  # (output bytes, root) -> groups of paths
    writes_own_output: bool = False


def _split_groups(data: bytes, sep: bytes) -> list[list[str]]:
    """Groups of names separated by *sep*, a group ending at an empty item (two seps in a row)."""
    groups, current = [], []
    for item in data.split(sep):
        if item:
            current.append(os.fsdecode(item))
        elif current:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def _split_null(data: bytes) -> list[list[str]]:
    return _split_groups(data, b"\0")


def _split_blank_lines(data: bytes) -> list[list[str]]:
    # fdupes has no NUL output: a name holding a newline is ambiguous here (the tool's limitation).
    return _split_groups(data, b"\n")


def _parse_rdfind(data: bytes, _root: str) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    last: list[str] | None = None
    for line in data.split(b"\n"):
        if line.startswith(b"DUPTYPE_"):
            fields = line.split(b" ", 7)
            last = groups.setdefault(abs(int(fields[1])), [])
            last.append(os.fsdecode(fields[7]))
        elif line.startswith(b"#") or not line:
            continue
        elif last is not None:  # continuation of a name that held a newline
            last[-1] += "\n" + os.fsdecode(line)
    return [g for g in groups.values() if len(g) > 1]


def _parse_rmlint(data: bytes, _root: str) -> list[list[str]]:
    doc = json.loads(data.decode("utf-8", "surrogateescape"))
    groups: dict[tuple[str, int], list[str]] = {}
    for item in doc:
        if item.get("type") == "duplicate_file":
            groups.setdefault((item["checksum"], item["size"]), []).append(item["path"])
    return [g for g in groups.values() if len(g) > 1]


def tools(python: str = sys.executable) -> list[Tool]:
    """Return dedup and its peers, each set to the same policy: recursive, symlinks not followed,
    empty files ignored, report only."""
    return [
        Tool("dedup", lambda root, _out: [python, "-m", "dedup", "-0", "-q", root],
             lambda data, _root: _split_null(data)),
        Tool("jdupes", lambda root, _out: ["jdupes", "-r", "-q", "-0", root],
             lambda data, _root: _split_null(data)),
        Tool("rdfind", lambda root, out: ["rdfind", "-ignoreempty", "true", "-dryrun", "true",
                                          "-outputname", out, root],
             _parse_rdfind, writes_own_output=True),
        Tool("fdupes", lambda root, _out: ["fdupes", "-r", "-n", "-q", root],
             lambda data, _root: _split_blank_lines(data)),
        Tool("rmlint", lambda root, out: ["rmlint", "-T", "df", "-o", f"json:{out}", root],
             _parse_rmlint, writes_own_output=True),
    ]
