"""I/O: byte-for-byte comparison of a group's files, read in lockstep, splitting on mismatch.

This is the `--verify` pass and the check actions make right before they act. Members are read
chunk by chunk side by side; a member whose chunk matches nobody else's stops being read at once,
so files that differ early cost little. Open files are bounded by `MAX_OPEN` per call.
"""

from __future__ import annotations

from dedup.errors import FileChangedError
from dedup.hashing import open_for_read, read_exact
from dedup.model import FileEntry, FileProblem
from dedup.walk import describe_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from dedup.hashing import Opener, ReadableFile

LOCKSTEP_CHUNK = 128 * 1024
MAX_OPEN = 64


class Partition:
    """Result of comparing files: classes of identical files (singletons included) and failures."""

    __slots__ = ("classes", "problems", "bytes_read")

    def __init__(self, classes: list[list[FileEntry]] | None = None,
                 problems: list[FileProblem] | None = None, bytes_read: int = 0) -> None:
        self.classes = [] if classes is None else classes
        self.problems = [] if problems is None else problems
        self.bytes_read = bytes_read


def partition_identical(
    entries: Sequence[FileEntry], *, opener: Opener = open_for_read, max_open: int = MAX_OPEN
) -> Partition:
    """Partition same-size *entries* into classes of byte-identical content.

    Every readable entry lands in exactly one class; an unreadable one becomes a problem alone.
    At most *max_open* files are open at once: larger sets are compared against one reference
    member in batches, which re-reads the reference but never exceeds the bound.
    """
    if max_open < 2:
        raise ValueError("max_open must be >= 2")
    result = Partition()
    pending = list(entries)
    while pending:
        if len(pending) <= max_open:
            _lockstep(pending, opener, result)
            break
        reference, rest = pending[0], pending[1:]
        same, others = [reference], []
        reference_ok = True
        for start in range(0, len(rest), max_open - 1):
            batch = Partition()
            _lockstep([reference, *rest[start : start + max_open - 1]], opener, batch)
            result.bytes_read += batch.bytes_read
            result.problems.extend(p for p in batch.problems if p.path != reference[0])
            if any(p.path == reference[0] for p in batch.problems):
                reference_ok = False
            for cls in batch.classes:
                if reference in cls:
                    same.extend(e for e in cls if e is not reference)
                else:
                    others.extend(cls)
            if not reference_ok:
                # Matches found so far and members not yet compared go back to the pool.
                others.extend(same[1:])
                others.extend(rest[start + max_open - 1 :])
                result.problems.append(
                    next(p for p in batch.problems if p.path == reference[0])
                )
                break
        if reference_ok:
            result.classes.append(same)
        pending = others
    return result


def _lockstep(entries: Sequence[FileEntry], opener: Opener, out: Partition) -> None:
    size = entries[0][1]
    chunk = min(LOCKSTEP_CHUNK, size + 1)
    members: list[tuple[FileEntry, ReadableFile, bytearray]] = []
    try:
        for entry in entries:
            try:
                members.append((entry, opener(entry[0]), bytearray(chunk)))
            except OSError as exc:
                out.problems.append(FileProblem(entry[0], describe_os_error(exc)))
        # Invariant: within each list of `groups`, every member's bytes so far are equal.
        groups = [members] if members else []
        offset = 0
        while groups:
            # Read one byte past the expected size so a file that grew is caught on the last round.
            want = min(chunk, size + 1 - offset)
            expected = min(want, size - offset)
            next_groups = []
            for group in groups:
                if len(group) == 1:  # unique so far: stop reading it
                    out.classes.append([group[0][0]])
                    continue
                # Reused buffers compared with == (memcmp): no per-chunk allocation or hashing.
                classes: list[tuple[bytes | bytearray, list]] = []
                for member in group:
                    entry, f, buf = member
                    try:
                        got = read_exact(f, memoryview(buf)[:want], expected)
                        out.bytes_read += got
                        if got != expected:
                            raise FileChangedError(_changed(size, offset + got))
                    except OSError as exc:
                        out.problems.append(FileProblem(entry[0], describe_os_error(exc)))
                        continue
                    data = buf if expected == len(buf) else bytes(buf[:expected])
                    for first, same in classes:
                        if first == data:
                            same.append(member)
                            break
                    else:
                        classes.append((data, [member]))
                next_groups.extend(same for _, same in classes)
            offset += want
            if offset > size:
                out.classes.extend([m[0] for m in g] for g in next_groups)
                break
            groups = next_groups
    finally:
        for _, f, _ in members:
            f.close()


def _changed(expected: int, got: int) -> str:
    verb = "grew" if got > expected else "shrank"
    return f"changed during comparison: {verb} (expected {expected} bytes)"
