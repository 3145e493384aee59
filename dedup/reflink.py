"""`--dedupe`: share a duplicate's extents with the kept copy through FIDEDUPERANGE.

The kernel compares the bytes itself and shares only identical ranges, atomically against
concurrent writers (ioctl_fideduperange(2)); nothing is removed, renamed or replaced, so every
path, inode, owner, mode and mtime stays as it was (a dedupe request does not touch mtime:
generic_remap_file_range_prep skips file_modified() for REMAP_FILE_DEDUP). This is what fclones'
`dedupe` lacked: FICLONE does not compare, and lost data when content changed under an unchanged
mtime (fclones #84, #293).

Pure parts (ranges, extent layout, summary) are plain functions; `apply_dedupe` is the I/O edge and
takes the ioctl module as a seam.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dedup import extents as _extents
from dedup.extents import DedupeReply, Extent
from dedup.model import FileEntry
from dedup.plan import Action
from dedup.table import clamp_ns
from dedup.verify import partition_identical
from dedup.walk import describe_os_error

DedupeStatus = Literal["planned", "done", "shared", "skipped", "failed"]

DIFFERS = ("content differs from the kept copy (the kernel compared the bytes: "
           "FILE_DEDUPE_RANGE_DIFFERS)")
INLINE = "data stored inline in file system metadata: there is no extent to share"


class Kernel(Protocol):
    """The ioctls `apply_dedupe` needs (`dedup.extents`, or a fake in tests)."""

    MAX_DEDUPE_LEN: int

    def fiemap(self, fd: int) -> list[Extent]: ...
    def dedupe_range(self, src_fd: int, src_offset: int, length: int, dest_fd: int,
                     dest_offset: int) -> DedupeReply: ...
    def probe_dedupe(self, src_fd: int) -> int: ...
    def block_size(self, fd: int) -> int: ...


@dataclass(frozen=True, slots=True)
class DedupeResult:
    """What happened to one target: planned, done (bytes shared now), shared (already), skipped, failed."""

    action: Action
    status: DedupeStatus
    detail: str = ""
    bytes: int = 0  # planned: would share; done: shared now; shared: already shared


@dataclass(slots=True)
class DedupeOutcome:
    """Results of a `--dedupe` run, and the file systems that cannot share extents at all."""

    results: list[DedupeResult] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # file system -> why, one per fs


# ---------------------------------------------------------------- pure core


def merged_layout(extents: Iterable[Extent]) -> list[tuple[int, int, int]]:
    """Return (logical, physical, length) runs with physically contiguous neighbours merged."""
    runs: list[tuple[int, int, int]] = []
    for e in extents:
        if runs:
            lo, ph, ln = runs[-1]
            if lo + ln == e.logical and ph + ln == e.physical:
                runs[-1] = (lo, ph, ln + e.length)
                continue
        runs.append((e.logical, e.physical, e.length))
    return runs


def already_shared(target: Sequence[Extent], keep: Sequence[Extent]) -> bool:
    """Return True when *target* maps exactly the kept copy's blocks, every extent flagged shared.

    As duperemove does, the physical layout decides (the shared flag alone could mean a snapshot
    or another file); an empty file or one with unknown/delayed extents is never "already shared".
    """
    if not target or not keep:
        return False
    bad = _extents.FIEMAP_EXTENT_UNKNOWN | _extents.FIEMAP_EXTENT_DELALLOC
    if any(e.flags & bad or not e.shared for e in target):
        return False
    return merged_layout(target) == merged_layout(keep)


def has_inline_data(extents: Iterable[Extent]) -> bool:
    """Return True when some data lives inside metadata (btrfs inline extents): nothing to share."""
    return any(e.flags & _extents.FIEMAP_EXTENT_DATA_INLINE for e in extents)


def next_request(offset: int, size: int, max_len: int) -> int:
    """Return the length of the next dedupe request at *offset* of a *size*-byte file."""
    return min(max_len, size - offset)


def align_down(length: int, block: int) -> int:
    """Return *length* rounded down to a multiple of *block* (duperemove's retry after EINVAL)."""
    return length - length % block if block > 0 else length


def summarize(outcome: DedupeOutcome) -> dict[str, object]:
    """Return bytes shared now, bytes already shared, bytes planned and skipped counts by reason."""
    shared_now = sum(r.bytes for r in outcome.results if r.status == "done")
    already = sum(r.bytes for r in outcome.results if r.status == "shared")
    planned = sum(r.bytes for r in outcome.results if r.status == "planned")
    reasons = Counter(r.detail for r in outcome.results if r.status in ("skipped", "failed"))
    return {"bytes_shared_now": shared_now, "bytes_already_shared": already,
            "bytes_would_share": planned, "files_skipped": sum(reasons.values()),
            "skipped_reasons": dict(reasons), "unsupported_filesystems": dict(outcome.unsupported)}


# ---------------------------------------------------------------- I/O edge


def apply_dedupe(
    actions: Iterable[Action],
    *,
    dry_run: bool = True,
    kernel: Kernel = _extents,  # type: ignore[assignment]
    before_each: Callable[[Action], None] | None = None,
    describe_fs: Callable[[int], str] | None = None,
) -> DedupeOutcome:
    """Share each action's target with its kept copy (or, when *dry_run*, check and report only).

    Before each request both files are opened and checked through their descriptors (same device,
    inode, size and mtime as the scan saw). A dry run compares the bytes in user space (it cannot
    ask the kernel without acting), so it reports what --apply would do. *before_each* is a seam
    called right before a target is handled (tests change a file there, deterministically).
    """
    describe = describe_fs or filesystem_name
    outcome = DedupeOutcome()
    support: dict[int, str] = {}  # st_dev -> "" (supported) or why not
    for action in actions:
        if before_each is not None:
            before_each(action)
        outcome.results.append(_one(action, dry_run, kernel, support, describe, outcome))
    return outcome


_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW


def _one(action: Action, dry_run: bool, kernel: Kernel, support: dict[int, str],
         describe: Callable[[int], str], outcome: DedupeOutcome) -> DedupeResult:
    target, keep = action.target, action.keep
    if action.blocked:
        return DedupeResult(action, "skipped", action.blocked)
    if target.file_id == keep.file_id:
        return DedupeResult(action, "skipped", "target and kept copy are the same file")
    fds: list[int] = []
    try:
        try:
            keep_fd = os.open(keep.path, _OPEN & ~os.O_NOFOLLOW)
            fds.append(keep_fd)
        except OSError as exc:
            return DedupeResult(action, "skipped", f"kept copy: {describe_os_error(exc)}")
        try:
            # O_NOFOLLOW: a target swapped for a symlink is refused, never followed.
            target_fd = os.open(target.path, _OPEN)
            fds.append(target_fd)
        except OSError as exc:
            return DedupeResult(action, "skipped", f"target: {describe_os_error(exc)}")
        why = _unchanged(target_fd, target, "target") or _unchanged(keep_fd, keep, "kept copy")
        if why:
            return DedupeResult(action, "skipped", why)
        why = _filesystem_support(keep_fd, keep.dev, kernel, support)
        if why:
            fs = describe(keep.dev)
            outcome.unsupported.setdefault(fs, why)
            return DedupeResult(action, "skipped", f"{fs} cannot share extents")
        try:
            target_map, keep_map = kernel.fiemap(target_fd), kernel.fiemap(keep_fd)
        except OSError as exc:
            return DedupeResult(action, "failed", f"FIEMAP: {describe_os_error(exc)}")
        if has_inline_data(target_map) or has_inline_data(keep_map):
            return DedupeResult(action, "skipped", INLINE)
        if already_shared(target_map, keep_map):
            return DedupeResult(action, "shared", "already shares the kept copy's extents",
                                target.size)
        if dry_run:
            part = partition_identical([keep, target])
            if part.problems:
                return DedupeResult(action, "skipped", "cannot compare: " + "; ".join(
                    f"{p.path}: {p.error}" for p in part.problems))
            if len(part.classes) != 1:
                return DedupeResult(action, "skipped", DIFFERS)
            return DedupeResult(action, "planned", "", target.size)
        return _share(action, keep_fd, target_fd, kernel, support, describe, outcome)
    finally:
        for fd in fds:
            os.close(fd)


def _unchanged(fd: int, entry: FileEntry, role: str) -> str:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return f"{role} is no longer a regular file"
    if (st.st_dev, st.st_ino) != entry.file_id:
        return f"{role} replaced since the scan"
    if st.st_size != entry.size or clamp_ns(st.st_mtime_ns) != entry.mtime_ns:
        return f"{role} modified since the scan"
    return ""


def _filesystem_support(fd: int, dev: int, kernel: Kernel, support: dict[int, str]) -> str:
    if dev not in support:
        code = kernel.probe_dedupe(fd)
        support[dev] = "" if code == 0 else _unsupported_text(code)
    return support[dev]


def _unsupported_text(code: int) -> str:
    return (f"FIDEDUPERANGE: {os.strerror(code)} (extent sharing needs btrfs, or XFS made with "
            "reflink=1); nothing changed there")


def _share(action: Action, keep_fd: int, target_fd: int, kernel: Kernel, support: dict[int, str],
           describe: Callable[[int], str], outcome: DedupeOutcome) -> DedupeResult:
    size = action.target.size
    offset = done = 0
    note = ""
    while offset < size:
        length = next_request(offset, size, kernel.MAX_DEDUPE_LEN)
        try:
            reply = kernel.dedupe_range(keep_fd, offset, length, target_fd, offset)
        except OSError as exc:
            code = exc.errno or errno.EIO
            if code in _extents.UNSUPPORTED_ERRNOS:
                return _fs_refused(action, code, done, support, describe, outcome)
            return DedupeResult(action, "failed", f"FIDEDUPERANGE: {describe_os_error(exc)}", done)
        if reply.status == -errno.EINVAL:
            # duperemove (dedupe.c, dedupe_extents): on EINVAL, align the length down to the file
            # system block size and retry; what still cannot be shared (an unaligned piece the
            # file system refuses) is left apart and reported, never retried in a loop.
            aligned = align_down(length, kernel.block_size(keep_fd))
            if 0 < aligned < length:
                reply = kernel.dedupe_range(keep_fd, offset, aligned, target_fd, offset)
            if reply.status == -errno.EINVAL or aligned == 0:
                break
            if reply.bytes_deduped < length:
                note = "not block-aligned"
        if reply.status == _extents.FILE_DEDUPE_RANGE_DIFFERS:
            return DedupeResult(action, "skipped", DIFFERS, done)
        if reply.status < 0:
            if -reply.status in _extents.UNSUPPORTED_ERRNOS and done == 0:
                return _fs_refused(action, -reply.status, done, support, describe, outcome)
            return DedupeResult(action, "failed",
                                f"FIDEDUPERANGE: {os.strerror(-reply.status)}", done)
        if reply.bytes_deduped <= 0:
            break  # nothing more the kernel will share (e.g. the unaligned tail): stop, no spin
        done += reply.bytes_deduped
        offset += reply.bytes_deduped
    if done == 0 and size > 0:
        return DedupeResult(action, "failed", "the kernel shared nothing (FIDEDUPERANGE: "
                            f"{'Invalid argument' if reply.status < 0 else 'no bytes deduped'})")
    if offset < size:
        note = f"last {size - offset} bytes not shared ({note or 'refused by the file system'})"
    else:
        note = ""
    return DedupeResult(action, "done", note, done)


def _fs_refused(action: Action, code: int, done: int, support: dict[int, str],
                describe: Callable[[int], str], outcome: DedupeOutcome) -> DedupeResult:
    # XFS without reflink passes the probe and refuses the first real request (EOPNOTSUPP).
    why = _unsupported_text(code)
    support[action.keep.dev] = why
    fs = describe(action.keep.dev)
    outcome.unsupported.setdefault(fs, why)
    return DedupeResult(action, "skipped", f"{fs} cannot share extents", done)


def filesystem_name(dev: int) -> str:
    """Return "TYPE file system at MOUNTPOINT" for device number *dev* (from /proc/self/mountinfo)."""
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and fields[2] == wanted:
                    fs_type = right.split()[0] if right.split() else "?"
                    mount = fields[4].encode().decode("unicode_escape", "replace")
                    return f"{fs_type} file system at {mount}"
    except OSError:
        pass
    return f"file system {wanted}"


# ---------------------------------------------------------------- rendering (pure)


def dedupe_dict(r: DedupeResult) -> dict[str, object]:
    """Return one --dedupe result as the JSON "actions" entry (op "dedupe", with bytes)."""
    return {"op": "dedupe", "path": r.action.target.path, "keep": r.action.keep.path,
            "status": r.status, "detail": r.detail, "bytes": r.bytes}


def dedupe_lines(outcome: DedupeOutcome, *, dry_run: bool) -> list[str]:
    """Return one line per target, then the summary: shared now, already shared, skipped by reason."""
    from dedup.report import format_bytes, quote_path  # lazy: rendering only

    lines = []
    for r in outcome.results:
        target, keep = quote_path(r.action.target.path), quote_path(r.action.keep.path)
        if r.status == "planned":
            lines.append(f"would share {target} with {keep} ({format_bytes(r.bytes)})")
        elif r.status == "done":
            extra = f"; {r.detail}" if r.detail else ""
            lines.append(f"shared {target} with {keep} ({format_bytes(r.bytes)}{extra})")
        elif r.status == "shared":
            lines.append(f"already shared {target} with {keep} ({format_bytes(r.bytes)})")
        else:
            lines.append(f"{r.status} {target}: {r.detail}")
    s = summarize(outcome)
    skipped = "; ".join(f"{n} {why}" for why, n in s["skipped_reasons"].items())  # type: ignore[union-attr]
    tail = f"{s['files_skipped']} files skipped" + (f" ({skipped})" if skipped else "")
    if dry_run:
        lines.append(f"# dry run: {format_bytes(s['bytes_would_share'])} would be shared "  # type: ignore[arg-type]
                     f"(each pair compared), {format_bytes(s['bytes_already_shared'])} already "  # type: ignore[arg-type]
                     f"shared, {tail}; nothing changed; repeat with --apply to act")
    else:
        lines.append(f"# dedupe: {format_bytes(s['bytes_shared_now'])} shared now, "  # type: ignore[arg-type]
                     f"{format_bytes(s['bytes_already_shared'])} already shared, {tail}")  # type: ignore[arg-type]
    return lines
