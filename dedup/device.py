"""I/O: how many threads a device wants, from sysfs (as fclones' device.rs does).

Solid-state and virtual disks serve many requests at once: a cold tree is listed and read with
4 threads per core (fclones' SSD default), at most `MAX_IO_THREADS`. A rotating disk seeks for
every request, so it gets one thread. QEMU's virtio disks report "rotational" unless the host
says otherwise, whatever the storage behind them is; they are taken as solid state (on the
bench machine, a virtio disk reads a cold tree 2.5x faster with 8 readers than with one: see
bench/RESULTS.md).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_IO_THREADS = 16
_VIRTUAL = ("vd", "xvd", "nbd", "loop", "zram", "ram", "nvme", "dm-", "md", "rbd")


def io_threads_for(paths: Sequence[str]) -> int:
    """Return the I/O threads for a scan of *paths*: 1 if any is on a rotating disk."""
    cores = os.cpu_count() or 1
    ssd = min(MAX_IO_THREADS, 4 * cores)
    for path in paths:
        if is_rotating_disk(path):
            return 1
    return ssd


def is_rotating_disk(path: str) -> bool:
    """Return True when *path* lies on a block device that says it rotates and is not virtual."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return False
    base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    try:
        real = os.path.realpath(base)
    except OSError:
        return False
    for where in (real, os.path.dirname(real)):  # a partition's queue is its disk's
        try:
            # Bytes, not text: a text file's encoding module is one more import a run.
            with open(os.path.join(where, "queue", "rotational"), "rb") as f:
                rotational = f.read().strip() == b"1"
        except OSError:
            continue
        name = os.path.basename(where)
        return rotational and not name.startswith(_VIRTUAL) and "virtio" not in real
    return False  # no block device (tmpfs, overlay, network): no seeks to avoid
