"""`--dedupe` without reading the bytes twice: the kernel's compare proves large candidate groups.

FIDEDUPERANGE shares a range only after the kernel has compared its bytes, with both inodes
locked (ioctl_fideduperange(2)); so when a target's whole length comes back shared with the kept
copy, or FIEMAP shows it already maps the kept copy's very blocks, the two files are proven
identical. A user-space byte compare before that (what the report of any other run needs) would
be the same work done twice: issue 19 measured 0.36 s against duperemove's 0.21 s for it.

Whatever the kernel does not prove — content differs, a file changed since the scan, a file
system without the ioctl, a tail it refused, a file under --keep-path it never touched — is
compared in user space as in any other run, so the report still lists only identical files. A
dry run proves by the byte compare each planned action makes. The kernel shares nothing it has
not compared, so no user data is at risk whatever the candidates are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dedup.grouping import CandidateGroup, Record, expand_groups
from dedup.model import DuplicateGroup, FileProblem
from dedup.plan import plan_actions
from dedup.reflink import DIFFERS, DedupeOutcome, DedupeResult, apply_dedupe
from dedup.verify import partition_identical

if TYPE_CHECKING:
    from dedup.plan import KeepPolicy


def proves_identity(result: DedupeResult) -> bool:
    """Return True when *result* shows its target byte-identical to its kept copy (pure)."""
    if result.status == "shared":  # maps exactly the kept copy's blocks (FIEMAP layout)
        return True
    if result.status == "done":  # the kernel compared and shared every byte
        return result.bytes == result.action.target.size and not result.detail
    return result.status == "planned"  # a dry run compared the bytes in user space


class KernelProof:
    """The pipeline's `prove` seam for --dedupe: share each candidate group's files with its kept
    copy and return the groups proven identical; `outcome` collects what was done."""

    def __init__(self, *, dry_run: bool, keep: KeepPolicy = "first",
                 keep_paths: Sequence[str] = ()) -> None:
        self.dry_run, self.keep, self.keep_paths = dry_run, keep, keep_paths
        self.outcome = DedupeOutcome()
        self.handled: set[tuple[int, int]] = set()  # (device, inode) of every file seen here
        self.bytes_read = 0

    def __call__(self, groups: list[CandidateGroup], links: dict[tuple[int, int], list[Record]],
                 problem: Callable[[FileProblem], None]) -> list[CandidateGroup]:
        """Return the classes of identical files in *groups* (same-size candidates)."""
        proven: list[CandidateGroup] = []
        for group in groups:
            proven.extend(self._group(group, links, problem))
        return proven

    def _group(self, group: CandidateGroup, links: dict[tuple[int, int], list[Record]],
               problem: Callable[[FileProblem], None]) -> list[CandidateGroup]:
        self.handled.update((r[2], r[3]) for r in group)
        results = self._apply([group], links).results
        if not results:
            return []
        keep_id = results[0].action.keep.file_id
        same = {keep_id} | {r.action.target.file_id for r in results if proves_identity(r)}
        kept = [r for r in group if (r[2], r[3]) in same]
        rest = [r for r in group if (r[2], r[3]) not in same]
        classes: list[CandidateGroup] = []
        # The kernel found these unlike the kept copy: they are compared only among themselves
        # (one alone is read not at all); the others, unproven, with the kept copy too.
        unlike = {r.action.target.file_id for r in results if r.detail == DIFFERS}
        keeper = next(r for r in group if (r[2], r[3]) == keep_id)
        with_keeper = any((r[2], r[3]) not in unlike for r in rest)
        if with_keeper or len(rest) > 1:
            part = partition_identical([keeper, *rest] if with_keeper else rest)  # type: ignore[list-item]
            self.bytes_read += part.bytes_read
            for item in part.problems:
                problem(item)
            for cls in part.classes:
                if with_keeper and any(r is keeper for r in cls):
                    kept.extend(r for r in cls if r is not keeper)
                elif len(cls) > 1:
                    classes.append(list(cls))  # identical to each other, not to the kept copy
            if classes:  # proven in user space: shared with a kept copy of their own
                self.outcome.results.extend(self._apply(classes, links).results)
        duplicates = {(r[2], r[3]) for r in kept}
        # A candidate that proved no duplicate is no action, unless the kernel shared some of its
        # 16 MiB pieces before the one that differs (identical ranges: nothing lost), which the
        # output then shows as skipped with the bytes shared.
        self.outcome.results.extend(r for r in results if r.action.target.file_id in duplicates
                                    or r.bytes > 0)
        if len(kept) > 1:
            classes.append(kept)
        return classes

    def _apply(self, groups: list[CandidateGroup], links: dict[tuple[int, int], list[Record]]
               ) -> DedupeOutcome:
        plan = plan_actions(expand_groups(groups, links), op="dedupe", keep=self.keep,
                            keep_paths=self.keep_paths)
        outcome = apply_dedupe(plan, dry_run=self.dry_run)
        for fs, why in outcome.unsupported.items():
            self.outcome.unsupported.setdefault(fs, why)
        return outcome

    def finish(self, groups: Sequence[DuplicateGroup]) -> DedupeOutcome:
        """Share the report's other groups (those the scan proved itself) and return every
        result in report order: group by group, targets in path order."""
        rest = [g for g in groups if g.entries[0].file_id not in self.handled]
        if rest:
            more = apply_dedupe(plan_actions(rest, op="dedupe", keep=self.keep,
                                             keep_paths=self.keep_paths), dry_run=self.dry_run)
            self.outcome.results.extend(more.results)
            for fs, why in more.unsupported.items():
                self.outcome.unsupported.setdefault(fs, why)
        where = {e.path: (g, i) for g, group in enumerate(groups)
                 for i, e in enumerate(group.entries)}
        self.outcome.results.sort(key=lambda r: where.get(r.action.target.path, (len(groups), 0)))
        return self.outcome
