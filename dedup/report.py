"""Pure rendering of a `Report`: JSON (the DESIGN.md shape), CSV, text, NUL-separated paths."""

from __future__ import annotations

import itertools
import os
import sys

from dedup.model import DuplicateGroup, Report

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("\\"), ord("'")}


def quote_path(path: str) -> str:
    """Return *path* as printable text: unchanged if plain, else bash-style $'...' with escapes.

    Newlines, tabs, other control bytes and bytes that are not UTF-8 are written as escapes, so one
    path is always one line and the bytes can be recovered.
    """
    raw = os.fsencode(path)
    if all(b in _PLAIN for b in raw):
        return path
    try:
        text = raw.decode("utf-8")
        if all(c.isprintable() and c not in "\\'" for c in text):
            return text
    except UnicodeDecodeError:
        pass
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F or not ch.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def to_json(report: Report) -> str:
    """Return the report as JSON: {"groups": [{"size", "paths"}], "errors": [...], "stats": {...}}.

    Paths are `os.fsdecode` strings; undecodable bytes appear as \\udcXX escapes, so
    `os.fsencode(json.loads(...)[...])` gives back the exact bytes.
    """
    import json  # lazy: only this format needs it

    doc: dict[str, object] = {}
    if report.dirs is not None:
        doc["dirs"] = [{"size": d.size, "files": d.files, "paths": list(d.paths)}
                       for d in report.dirs]
    doc["groups"] = [{"size": g.size, "paths": g.paths} for g in shown_groups(report)]
    if report.similar is not None:
        doc["similar"] = [{"paths": list(p.paths), "sizes": list(p.sizes),
                           "shared_bytes": p.shared_bytes} for p in report.similar]
    doc["errors"] = [{"path": p.path, "error": p.error} for p in report.problems]
    doc["stats"] = report.stats.as_dict()
    return json.dumps(doc, ensure_ascii=True, indent=2) + "\n"


def shown_groups(report: Report) -> list[DuplicateGroup]:
    """Return the groups a report shows: with --dirs, those inside duplicate directories are folded."""
    if not report.dirs:
        return list(report.groups)
    from dedup.dirs import folded_group_indexes  # lazy: only --dirs needs it

    folded = folded_group_indexes(report.groups, report.dirs)
    return [g for i, g in enumerate(report.groups) if i not in folded]


def to_csv(report: Report) -> bytes:
    """Return one CSV row per path (group, size, file number, path) as bytes, header first.

    Paths are written as their exact bytes (quoted by the csv rules when they hold commas,
    quotes or newlines). With --dirs or --similar a leading "kind" column says what a row is:
    "dir" (size: bytes of one copy; file: files in it), "file", or "similar" (size: shared bytes).
    """
    import csv  # lazy: only this format needs it
    import io

    buffer = io.BytesIO()
    text = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="")
    writer = csv.writer(text, lineterminator="\n")
    kinds = report.dirs is not None or report.similar is not None
    lead: list[str] = ["file"] if kinds else []
    writer.writerow((["kind"] if kinds else []) + ["group", "size", "file", "path"])
    for number, d in enumerate(report.dirs or (), 1):
        for path in d.paths:
            writer.writerow(["dir", number, d.size, d.files, path])
    for number, group in enumerate(shown_groups(report), 1):
        file_numbers: dict[tuple[int, int], int] = {}
        for entry in group.entries:
            file_no = file_numbers.setdefault(entry.file_id, len(file_numbers) + 1)
            writer.writerow(lead + [number, group.size, file_no, entry.path])
    for number, pair in enumerate(report.similar or (), 1):
        for index, path in enumerate(pair.paths, 1):
            writer.writerow(["similar", number, pair.shared_bytes, index, path])
    text.flush()
    return buffer.getvalue()


def to_null_separated(report: Report) -> bytes:
    """Return each path's exact bytes followed by NUL, with an extra NUL after each group."""
    return b"".join(iter_null_separated(report))


def iter_null_separated(report: Report) -> Iterator[bytes]:
    """Yield `to_null_separated(report)` in pieces of about 64 KiB (no copy of the whole output)."""
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    batch: list[str] = []
    pending = 0
    # A group's paths are packed joined by NUL already (model.DuplicateGroup); os.fsencode's
    # encoding is applied to a piece of many groups at once, not per group (pyenv tree: 17,000
    # groups, an encode and a concatenation each took 0.03 s of a 1.2 s run). Encoding is per
    # character, so the bytes are the same.
    joined = itertools.chain(("\0".join(d.paths) for d in report.dirs or ()),
                             (g.pack()[1] for g in shown_groups(report)),
                             ("\0".join(p.paths) for p in report.similar or ()))
    for paths in joined:
        batch.append(paths)
        pending += len(paths)
        if pending >= 65536:
            batch.append("")  # the last group's "\0\0"
            yield "\0\0".join(batch).encode(encoding, errors)
            batch.clear()
            pending = 0
    if batch:
        batch.append("")
        yield "\0\0".join(batch).encode(encoding, errors)


def header_lines(report: Report) -> list[str]:
    """Return the policy lines that open a text report ("# key: value")."""
    return ["# dedup report"] + [f"# {key}: {value}" for key, value in report.policy.items()]


def summary_line(report: Report) -> str:
    """Return the one-line final summary (files, groups, wasted bytes, bytes read, errors, time)."""
    s = report.stats
    extra = ""
    if report.dirs is not None:
        extra += f"{len(report.dirs)} duplicate directory groups, "
    if report.similar is not None:
        extra += f"{len(report.similar)} similar pairs, "
    return (extra +
        f"{s.files} files ({format_bytes(s.bytes_scanned)}), {s.groups} duplicate groups, "
        f"{s.duplicate_files} redundant files, {format_bytes(s.wasted_bytes)} wasted, "
        f"{format_bytes(s.bytes_read)} read, {s.errors} errors, {s.elapsed_s:.2f} s"
    )


def to_text(report: Report) -> str:
    """Return the human report: policy header, one block per group, errors, summary."""
    lines = header_lines(report)
    for d in report.dirs or ():
        lines.append("")
        lines.append(f"{format_bytes(d.size)} ({d.size} bytes) in {d.files} files x "
                     f"{len(d.paths)} directories:")
        lines.extend("    " + quote_path(p.rstrip("/") + "/") for p in d.paths)
    for group in shown_groups(report):
        lines.append("")
        lines.append(
            f"{format_bytes(group.size)} ({group.size} bytes) x {group.file_count} files:"
        )
        seen: set[tuple[int, int]] = set()
        for entry in group.entries:
            # A hard link of a file already listed is marked: it is the same file, not a copy.
            mark = "  = " if entry.file_id in seen else "    "
            seen.add(entry.file_id)
            lines.append(mark + quote_path(entry.path))
    for pair in report.similar or ():
        lines.append("")
        lines.append(f"similar: {format_bytes(pair.shared_bytes)} ({pair.shared_bytes} bytes) "
                     f"shared by files of {pair.sizes[0]} and {pair.sizes[1]} bytes:")
        lines.extend("  ~ " + quote_path(p) for p in pair.paths)
    if report.problems:
        lines.append("")
        lines.append("# errors:")
        lines.extend(f"#   {quote_path(p.path)}: {p.error}" for p in report.problems)
    lines.append("")
    lines.append("# " + summary_line(report))
    return "\n".join(lines) + "\n"


def format_bytes(n: int) -> str:
    """Return *n* bytes in binary units with one decimal ("1.5 MiB"); plain bytes below 1 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
