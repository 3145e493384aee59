"""I/O edge: the FIDEDUPERANGE and FS_IOC_FIEMAP ioctls, packed with `struct`, called with `fcntl.ioctl`.

Layouts are those of <linux/fs.h> and <linux/fiemap.h> (ioctl_fideduperange(2), ioctl_fiemap(2)).
Nothing here decides anything: `dedup.reflink` plans and interprets; this module only talks to the
kernel, so tests can replace it with a fake.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass


def _iowr(kind: int, number: int, size: int) -> int:
    # _IOWR from <asm-generic/ioctl.h>: direction read|write (3) << 30, size << 16, type << 8, nr.
    return (3 << 30) | (size << 16) | (kind << 8) | number


# struct file_dedupe_range { __u64 src_offset, src_length; __u16 dest_count, reserved1;
#                            __u32 reserved2; struct file_dedupe_range_info info[]; }
_RANGE = struct.Struct("=QQHHI")
# struct file_dedupe_range_info { __s64 dest_fd; __u64 dest_offset, bytes_deduped;
#                                 __s32 status; __u32 reserved; }
_INFO = struct.Struct("=qQQiI")
FIDEDUPERANGE = _iowr(0x94, 54, _RANGE.size)  # 0xC0189436
FILE_DEDUPE_RANGE_SAME = 0
FILE_DEDUPE_RANGE_DIFFERS = 1

# struct fiemap { __u64 fm_start, fm_length; __u32 fm_flags, fm_mapped_extents, fm_extent_count,
#                 fm_reserved; struct fiemap_extent fm_extents[]; }
_FIEMAP = struct.Struct("=QQIIII")
# struct fiemap_extent { __u64 fe_logical, fe_physical, fe_length, fe_reserved64[2];
#                        __u32 fe_flags, fe_reserved[3]; }
_EXTENT = struct.Struct("=QQQQQIIII")
FS_IOC_FIEMAP = _iowr(ord("f"), 11, _FIEMAP.size)  # 0xC020660B
FIEMAP_MAX_OFFSET = 2**64 - 1
FIEMAP_FLAG_SYNC = 0x1  # flush delayed allocation first, so new files map to real blocks
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_ENCODED = 0x8
FIEMAP_EXTENT_NOT_ALIGNED = 0x100
FIEMAP_EXTENT_DATA_INLINE = 0x200
FIEMAP_EXTENT_SHARED = 0x2000
EXTENTS_PER_CALL = 256

# btrfs shares at most 16 MiB per request (BTRFS_MAX_DEDUPE_LEN; ioctl_fideduperange(2): "each
# request may not exceed 16MiB"); XFS takes more, but one size keeps both paths the same.
MAX_DEDUPE_LEN = 16 * 1024 * 1024

# Errors meaning "this file system cannot share extents at all" (as opposed to "not these bytes").
# ENOTTY: no such ioctl (pre-4.5 kernels, some FUSE); EOPNOTSUPP: no remap_file_range (ext4, tmpfs)
# or XFS without reflink; EXDEV: not the same mount; EINVAL before 4.20 meant "unsupported" too
# (kernel commit 494633fac789 "vfs_dedupe_file_range() doesn't return EOPNOTSUPP").
UNSUPPORTED_ERRNOS = frozenset({errno.ENOTTY, errno.EOPNOTSUPP, errno.ENOSYS})


@dataclass(frozen=True, slots=True)
class Extent:
    """One FIEMAP extent: logical and physical byte offsets, length and FIEMAP_EXTENT_* flags."""

    logical: int
    physical: int
    length: int
    flags: int

    @property
    def shared(self) -> bool:
        """Return True when the file system reports these blocks as shared with another file."""
        return bool(self.flags & FIEMAP_EXTENT_SHARED)


def fiemap(fd: int, length: int = FIEMAP_MAX_OFFSET) -> list[Extent]:
    """Return the extents mapping bytes [0, *length*) of the open file *fd*; raise OSError."""
    extents: list[Extent] = []
    start = 0
    while True:
        request = bytearray(_FIEMAP.size + EXTENTS_PER_CALL * _EXTENT.size)
        want = FIEMAP_MAX_OFFSET - start if length == FIEMAP_MAX_OFFSET else length - start
        _FIEMAP.pack_into(request, 0, start, want, FIEMAP_FLAG_SYNC, 0, EXTENTS_PER_CALL, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, request, True)
        mapped = _FIEMAP.unpack_from(request, 0)[3]
        if mapped == 0:
            return extents
        last = False
        for i in range(mapped):
            logical, physical, size, _, _, flags, _, _, _ = _EXTENT.unpack_from(
                request, _FIEMAP.size + i * _EXTENT.size)
            extents.append(Extent(logical, physical, size, flags))
            last = bool(flags & FIEMAP_EXTENT_LAST)
        tail = extents[-1]
        start = tail.logical + tail.length
        if last or mapped < EXTENTS_PER_CALL or (length != FIEMAP_MAX_OFFSET and start >= length):
            return extents


@dataclass(frozen=True, slots=True)
class DedupeReply:
    """The kernel's answer for one destination: status (0 same, 1 differs, <0 -errno) and bytes."""

    status: int
    bytes_deduped: int


def dedupe_range(src_fd: int, src_offset: int, length: int, dest_fd: int,
                 dest_offset: int) -> DedupeReply:
    """Ask the kernel to share [src_offset, +length) of *src_fd* into *dest_fd* if identical.

    One destination per call. Raise OSError when the ioctl itself fails (the whole request was
    refused); a per-destination failure comes back as a negative status.
    """
    buf = bytearray(_RANGE.size + _INFO.size)
    _RANGE.pack_into(buf, 0, src_offset, length, 1, 0, 0)
    _INFO.pack_into(buf, _RANGE.size, dest_fd, dest_offset, 0, 0, 0)
    fcntl.ioctl(src_fd, FIDEDUPERANGE, buf, True)
    _, _, deduped, status, _ = _INFO.unpack_from(buf, _RANGE.size)
    return DedupeReply(status, deduped)


def probe_dedupe(src_fd: int) -> int:
    """Return 0 if the file system of *src_fd* has the dedupe operation, else an errno.

    A request with no destination: the kernel checks the file system's remap operation before it
    loops over destinations (vfs_dedupe_file_range), so ext4 or tmpfs answer EOPNOTSUPP and
    nothing is touched. XFS without reflink passes this probe and refuses the first real request.
    """
    buf = bytearray(_RANGE.size)
    _RANGE.pack_into(buf, 0, 0, 0, 0, 0, 0)
    try:
        fcntl.ioctl(src_fd, FIDEDUPERANGE, buf, True)
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def block_size(fd: int) -> int:
    """Return the file system's fundamental block size for *fd* (statvfs f_frsize, else f_bsize)."""
    st = os.fstatvfs(fd)
    return st.f_frsize or st.f_bsize or 4096
