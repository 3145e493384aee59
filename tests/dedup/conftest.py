"""Fixtures for dedup tests: fixture trees and openers that fail on purpose."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection

import pytest

from dedup.hashing import ReadableFile, open_for_read
from fixtures.trees import build_tree, mixed_spec


class FailingFile:
    """Wraps a real file; raises EIO once *fail_after* bytes have been read from it."""

    def __init__(self, inner: ReadableFile, fail_after: int) -> None:
        self.inner = inner
        self.left = fail_after

    def readinto(self, buffer: memoryview) -> int | None:
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        n = self.inner.readinto(buffer[: self.left])
        self.left -= n or 0
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def close(self) -> None:
        self.inner.close()


def failing_opener(
    denied: Collection[str] = (), *, fail_mid_read: Collection[str] = (), after: int = 3
) -> Callable[[str], ReadableFile]:
    """Return an opener that denies *denied* paths (EACCES) and fails reads of *fail_mid_read*."""
    denied_names = {os.path.basename(p) for p in denied}
    mid_names = {os.path.basename(p) for p in fail_mid_read}

    def opener(path: str) -> ReadableFile:
        name = os.path.basename(path)
        if name in denied_names:
            raise PermissionError(13, "Permission denied", path)
        f = open_for_read(path)
        return FailingFile(f, after) if name in mid_names else f

    return opener


class CountingOpener:
    """An opener that counts opens and bytes read, per path, through the real one."""

    def __init__(self) -> None:
        self.opens: dict[str, int] = {}
        self.bytes = 0

    def __call__(self, path: str) -> ReadableFile:
        self.opens[path] = self.opens.get(path, 0) + 1
        return _Counted(open_for_read(path), self)


class _Counted:
    def __init__(self, inner: ReadableFile, owner: CountingOpener) -> None:
        self.inner, self.owner = inner, owner

    def readinto(self, buffer: memoryview) -> int | None:
        n = self.inner.readinto(buffer)
        self.owner.bytes += n or 0
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def mixed(tmp_path):
    """Build the `mixed` edge-case tree; return (root, expected groups as sets of full paths)."""
    spec, groups = mixed_spec()
    root = build_tree(str(tmp_path / "mixed"), spec)
    expected = [{os.path.join(root, os.fsdecode(p)) for p in group} for group in groups]
    return root, expected


@pytest.fixture
def counting_opener():
    """A fresh `CountingOpener`."""
    return CountingOpener()


@pytest.fixture
def make_failing_opener():
    """The `failing_opener` factory (conftest modules cannot be imported by test modules)."""
    return failing_opener


@pytest.fixture(scope="session")
def btrfs_mount():
    """A loop-mounted btrfs image for the session (unmounted and detached at the end)."""
    from tests.dedup.fsimages import mounted

    with mounted("btrfs") as path:
        yield path


@pytest.fixture(scope="session")
def xfs_mount():
    """A loop-mounted XFS image made with reflink=1 for the session."""
    from tests.dedup.fsimages import mounted

    with mounted("xfs") as path:
        yield path


@pytest.fixture(params=["btrfs", "xfs"])
def reflink_dir(request, tmp_path_factory):
    """A fresh empty directory on btrfs, then on XFS (reflink=1)."""
    base = request.getfixturevalue(f"{request.param}_mount")
    path = tempfile.mkdtemp(dir=base, prefix="t-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["ext4", "tmpfs", "xfs-noreflink"])
def noreflink_dir(request):
    """A fresh directory on a file system that cannot share extents: ext4, tmpfs, XFS reflink=0."""
    from tests.dedup.fsimages import mounted

    with mounted(request.param) as path:
        yield path, request.param.split("-")[0]
