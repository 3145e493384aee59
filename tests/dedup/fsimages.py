"""Loop-mounted file system images for the extent tests (btrfs, XFS reflink=1, ext4, tmpfs).

Made with mkfs in a temporary directory and mounted through a loop device we attach ourselves, so
teardown can always unmount and detach it (also when a test fails). A test is skipped only when
the kernel refuses the mount (no root, no loop devices, file system not built in), with the
kernel's own message; a missing mkfs is a failure (`make test` installs btrfs-progs/xfsprogs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

IMAGE_BYTES = {"btrfs": 256 << 20, "xfs": 320 << 20, "xfs-noreflink": 320 << 20, "ext4": 64 << 20}
MKFS = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
    "xfs-noreflink": ["mkfs.xfs", "-q", "-f", "-m", "reflink=0"],
    "ext4": ["mkfs.ext4", "-q", "-F"],
}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def mounted(fs_type: str) -> Iterator[str]:
    """Yield the mount point of a fresh *fs_type* file system; unmount and detach afterwards."""
    work = tempfile.mkdtemp(prefix=f"fanmill-{fs_type}-")
    mount_point = os.path.join(work, "mnt")
    os.mkdir(mount_point)
    device = ""
    mounted_ok = False
    try:
        if fs_type == "tmpfs":
            proc = _run(["mount", "-t", "tmpfs", "-o", "size=64m", "fanmill-test", mount_point])
        else:
            tool = MKFS[fs_type][0]
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is missing: `make test` installs it (apt-get install "
                            f"{'btrfs-progs' if fs_type == 'btrfs' else 'xfsprogs'})")
            fs_label = fs_type.split("-")[0]
            image = os.path.join(work, f"{fs_label}.img")
            with open(image, "wb") as f:
                f.truncate(IMAGE_BYTES[fs_type])
            made = _run([*MKFS[fs_type], image])
            assert made.returncode == 0, f"{tool} failed: {made.stderr}"
            attach = _run(["losetup", "--find", "--show", image])
            if attach.returncode != 0:
                pytest.skip(f"the kernel cannot attach a loop device for the {fs_type} image: "
                            f"{attach.stderr.strip()}")
            device = attach.stdout.strip()
            proc = _run(["mount", device, mount_point])
        if proc.returncode != 0:
            pytest.skip(f"the kernel cannot mount the {fs_type} image: {proc.stderr.strip()}")
        mounted_ok = True
        yield mount_point
    finally:
        if mounted_ok:
            done = _run(["umount", mount_point])
            if done.returncode != 0:  # something still holds it: detach lazily, never leak it
                _run(["umount", "-l", mount_point])
        if device:
            _run(["losetup", "-d", device])
        shutil.rmtree(work, ignore_errors=True)
