"""--dedupe's pure parts and its request loop, driven through a fake kernel (no file system)."""

from __future__ import annotations

import errno
import os

from dedup import extents
from dedup.extents import DedupeReply, Extent
from dedup.model import DuplicateGroup, FileEntry
from dedup.plan import Action, plan_actions
from dedup.reflink import (
    DIFFERS,
    INLINE,
    DedupeOutcome,
    _share,
    align_down,
    already_shared,
    merged_layout,
    summarize,
)

SHARED = extents.FIEMAP_EXTENT_SHARED


class FakeKernel:
    """Records requests; answers from a script of (status, bytes) or raises."""

    MAX_DEDUPE_LEN = 16 * 1024 * 1024

    def __init__(self, answer, block=4096):
        self.answer, self.block, self.calls = answer, block, []

    def dedupe_range(self, src_fd, src_offset, length, dest_fd, dest_offset):
        self.calls.append((src_offset, length))
        return self.answer(src_offset, length)

    def block_size(self, fd):
        return self.block


def entry(path, size, dev=1, ino=1):
    return FileEntry(path, size, dev, ino, 0)


def share(size, answer, block=4096):
    kernel = FakeKernel(answer, block)
    action = Action("dedupe", entry("t", size, ino=2), entry("k", size))
    result = _share(action, 3, 4, kernel, {}, lambda dev: "fs", DedupeOutcome())
    return result, kernel.calls


def test_large_files_go_in_16_mib_requests_advanced_by_bytes_deduped():
    size = 40 * 1024 * 1024 + 5
    result, calls = share(size, lambda off, n: DedupeReply(0, n))
    assert [n for _, n in calls] == [16 << 20, 16 << 20, (8 << 20) + 5]
    assert result.status == "done" and result.bytes == size


def test_a_short_answer_is_continued_from_where_the_kernel_stopped():
    result, calls = share(10_000_000, lambda off, n: DedupeReply(0, min(n, 1_000_000)))
    assert [off for off, _ in calls] == list(range(0, 10_000_000, 1_000_000))
    assert result.bytes == 10_000_000


def test_einval_is_retried_once_aligned_down_to_the_block_size():
    def answer(off, n):
        return DedupeReply(-errno.EINVAL, 0) if n % 4096 else DedupeReply(0, n)

    result, calls = share(10_000, answer)
    assert calls == [(0, 10_000), (0, 8192), (8192, 1808)]
    assert result.status == "done" and result.bytes == 8192
    assert result.detail == "last 1808 bytes not shared (not block-aligned)"


def test_differs_stops_and_reports_what_was_shared_before():
    result, _ = share(20 << 20, lambda off, n: DedupeReply(1 if off else 0, 0 if off else n))
    assert (result.status, result.detail, result.bytes) == ("skipped", DIFFERS, 16 << 20)


def test_unsupported_errno_marks_the_file_system():
    def answer(off, n):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    kernel = FakeKernel(answer)
    outcome = DedupeOutcome()
    support: dict[int, str] = {}
    action = Action("dedupe", entry("t", 100, ino=2), entry("k", 100))
    result = _share(action, 3, 4, kernel, support, lambda dev: "xfs file system at /m", outcome)
    assert result.status == "skipped" and "cannot share extents" in result.detail
    assert "Operation not supported" in support[1] and list(outcome.unsupported) == [
        "xfs file system at /m"]


def test_zero_bytes_deduped_never_spins():
    result, calls = share(1000, lambda off, n: DedupeReply(0, 0))
    assert len(calls) == 1 and result.status == "failed" and result.bytes == 0


def test_already_shared_needs_the_same_physical_blocks_all_flagged_shared():
    keep = [Extent(0, 1000, 4096, 0), Extent(4096, 5096, 4096, 1)]
    same = [Extent(0, 1000, 8192, SHARED | 1)]  # merged view of the same blocks
    assert merged_layout(keep) == merged_layout(same) and already_shared(same, keep)
    assert not already_shared([Extent(0, 1000, 8192, 1)], keep)  # not flagged shared
    assert not already_shared([Extent(0, 9000, 8192, SHARED)], keep)  # shared with another file
    assert not already_shared([], [])


def test_alignment_and_summary_are_plain_arithmetic():
    assert align_down(10_000, 4096) == 8192 and align_down(4096, 4096) == 4096
    assert align_down(5, 0) == 5
    outcome = DedupeOutcome()
    assert summarize(outcome)["bytes_shared_now"] == 0
    assert INLINE  # documented reason text exists


def test_plan_dedupe_targets_each_inode_once_and_never_crosses_devices():
    k = entry("/a/k", 10, ino=1)
    t1, t2 = entry("/a/t", 10, ino=2), entry("/a/t2", 10, ino=2)  # hard links of one file
    other = entry("/b/o", 10, dev=2, ino=3)
    plan = plan_actions([DuplicateGroup(10, (k, t1, t2, other))], op="dedupe")
    assert [a.target.path for a in plan] == ["/a/t", "/b/o"]
    assert plan[0].blocked == "" and "one file system" in plan[1].blocked
    assert os.sep == "/"


def test_help_documents_every_new_option(capsys):
    from dedup.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--dedupe", "--dirs", "--similar", "--similar-min-size",
                   "--similar-threshold", "FIDEDUPERANGE"):
        assert option in out, option
