"""The multi-process protocol of a record log: a shared header, kernel locks, generations.

Modelled on SQLite's WAL index. Beside the log PATH lives PATH.lock, whose first page every process
maps (MAP_SHARED) and whose locks the kernel keeps:

    the writer lock      flock(LOCK_EX) on PATH.lock: one writer at a time, in any process (each open
                         has its own open file description, so two opens in one process exclude each
                         other too). The kernel drops it when its holder dies: no timeout, no guess.
    presence             an OFD lock, shared, on byte PRESENCE, held by every shared open. The first
                         open (who finds nobody present) recovers the log from its bytes alone; the
                         last close (who finds nobody else) may cut the file's preallocated tail.
    exclusive            an OFD lock on byte EXCLUSIVE, held by a single-owner open (exclusive=True).
    key locks            OFD locks on bytes past KEY_BASE, one per key hash: memoize's compute-once.

The shared header (little endian, at offset 0 of PATH.lock)::

    magic       8s   b"FANSHM1\\n" once a first open initialised it
    gen         u64  first_seq of the log file now at PATH: a compaction publishes its new file here
    compacting  u64  a compaction's new gen between its rename and its publication, else 0
    end         u64  the committed end of the log: every record before it is whole and acknowledged
    next_seq    u64  the sequence number of the next record
    dirty       u64  how far the writer may have stored; above `end` only if a writer died mid-append
    snapshot    u64 gen, u64 end, u64 next_seq, u32 CRC32 of those: what finish() published last,
                     for the lock-free look-ahead of cache/sharedlog.py (a torn read fails the CRC)
    (pad)       u32
    request     u64  (at 80) set by an open that wants to join while a sole open holds the file
    sole        u64  (at 88) 1 while a sole open holds the file: the fields above are not kept up

Its fields (but `request`, a hint) are written only under the writer lock and read under it, so such
a read never sees a half-written header and no memory-ordering subtlety arises (the lock's system calls are full
barriers). In an exact LRU every hit writes a touch record, so every operation that writes takes the
writer lock, a hit included. What SQLite's readers do without the lock, replaying what others
published, is done here ahead of taking it, from the CRC-checked snapshot (on x86-64, whose stores
are seen in order): the work of following others leaves the critical section, and so does a get
that misses in an index caught up with the snapshot it read (it writes nothing, and every write
acknowledged before it began was published before that read), and the read of a hit's value, after
the lock (cache/operations.py).

The sole open. An open that finds nobody else present when it opens keeps the writer lock, and its
presence exclusively, between operations: it runs as a single owner does (no lock cycle, no header
write per operation). A shared open that arrives meanwhile finds presence taken, sets `request` and
waits for the writer lock (the wait `_register` already had for a first open's moment); the sole
open's watcher thread (cache/sole.py) sees `request` within SOLE_POLL seconds, publishes the
header, shares its presence and releases the lock, and from then on takes the lock per operation.
If the sole open dies, the kernel releases both locks and `sole` stays set: the next open recovers
the log from its bytes, as a first open does, since the header was not kept up.

A writer that takes the lock and finds `dirty > end` knows a writer died mid-append: it zeroes that
garbage before appending, so no stale record of the dead write can ever be read as part of the log.
A writer that finds `compacting` set knows a compactor died between its rename and its publication:
it finishes the publication (or cleans up, if the rename did not happen) before anything else.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import struct

from cache.crc import crc32
from cache.errors import StoreLockedError, StoreWriteError, UnsupportedFilesystemError

MAGIC = b"FANSHM1\n"
PAGE = 4096
PRESENCE, EXCLUSIVE = 0, 1
KEY_BASE = 1 << 32
_KEY_SPAN = (1 << 61) - 1
_FIELDS = struct.Struct("<QQQQQ")  # gen, compacting, end, next_seq, dirty
_U64 = struct.Struct("<Q")
_SNAP3 = struct.Struct("<QQQ").pack
_U32 = struct.Struct("<I").pack
GEN, COMPACTING, END, NEXT_SEQ, DIRTY, SNAPSHOT = 8, 16, 24, 32, 40, 48  # offsets in the header
REQUEST, SOLE = 80, 88
SOLE_POLL = 0.005  # seconds between a sole open's looks at `request`: a joiner's longest wait
# finish() publishes end, next_seq, dirty and the snapshot in one store: they are contiguous.
_FLOCK = struct.Struct("hhxxxxqqixxxx")  # struct flock on Linux x86-64 / arm64 (l_pid 0 for OFD)
_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)
_FILE_MODE = 0o600

# Filesystems where shared maps or locks between machines (or through a user-space daemon) are not
# reliable: a second host's writes would not be seen through our map, and their locks may be advisory
# per client. The first word of the mountinfo type is checked (fuse.sshfs -> fuse).
REFUSED_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "9p", "fuse", "fuseblk",
     "ceph", "glusterfs", "lustre", "gpfs", "davfs", "sshfs", "vboxsf", "virtiofs"}
)


def filesystem_type(path: str) -> str:
    """Return the type of the filesystem holding *path* (from /proc/self/mountinfo), or "" if unknown."""
    target = os.path.realpath(path)
    best, best_type = -1, ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                try:
                    sep = fields.index("-")
                except ValueError:
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= best and sep + 1 < len(fields):
                    best, best_type = len(mount), fields[sep + 1]
    except OSError:
        return ""
    return best_type


def check_filesystem(path: str, fs_type: str) -> None:
    """Raise UnsupportedFilesystemError if *fs_type* cannot share maps and locks safely."""
    base = fs_type.split(".", 1)[0].lower()
    if base in REFUSED_FILESYSTEMS:
        raise UnsupportedFilesystemError(
            f"{path}: a shared cache needs a local filesystem; this one is on {fs_type!r}, where memory "
            f"maps and locks are not reliable between processes (open it with exclusive=True for a "
            f"single process, or put it on a local disk)"
        )


def _ofd(fd: int, kind: int, start: int, wait: bool) -> bool:
    """Set an OFD lock of *kind* on byte *start*; return False if it is held elsewhere and not *wait*."""
    try:
        fcntl.fcntl(fd, _OFD_SETLKW if wait else _OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, 1, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES) and not wait:
            return False
        raise
    return True


def snapshot(gen: int, end: int, next_seq: int) -> bytes:
    """Return the snapshot bytes publishing (gen, end, next_seq), CRC included."""
    data = _SNAP3(gen, end, next_seq)
    return data + _U32(crc32(data))


def key_offset(key: bytes) -> int:
    """Return the lock byte of *key* (a stable 61-bit hash past KEY_BASE: collisions are negligible)."""
    return KEY_BASE + (int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _KEY_SPAN)


class SharedFile:
    """An open PATH.lock: the shared header, mapped, and the kernel locks of one open of the log."""

    def __init__(self, path: str, *, exclusive: bool = False) -> None:
        """Open (create, 0600) PATH.lock and register this open: shared presence, or sole ownership."""
        self.path = path
        self.exclusive = exclusive
        self.mm: mmap.mmap | None = None
        self.lock_path = lock_path = path + ".lock"
        try:
            self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except OSError as exc:
            raise StoreWriteError(f"{path}: cannot create lock file: {exc.strerror}") from exc
        try:
            if not exclusive:  # mapped first: a joiner writes `request` in it while it waits
                if os.fstat(self.fd).st_size < PAGE:
                    os.ftruncate(self.fd, PAGE)  # zeros: an uninitialised header (no magic)
                self.mm = mmap.mmap(self.fd, PAGE)
            self._register()
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    def _register(self) -> None:
        fd = self.fd
        if self.exclusive:
            if not _ofd(fd, fcntl.F_WRLCK, EXCLUSIVE, False) or not _ofd(fd, fcntl.F_WRLCK, PRESENCE, False):
                raise StoreLockedError(
                    f"{self.path} is open in another process (or another handle in this one); "
                    "exclusive=True needs it to be the only open"
                )
            return
        # Presence, shared. It fails only while a single owner holds it exclusively (then refuse), or
        # while a sole open holds it, or a last close or a first open a moment, under the writer
        # lock: then ask a sole open to let go, and wait for the lock.
        while not _ofd(fd, fcntl.F_RDLCK, PRESENCE, False):
            if not _ofd(fd, fcntl.F_RDLCK, EXCLUSIVE, False):
                raise StoreLockedError(f"{self.path} is open with exclusive=True by another process")
            _ofd(fd, fcntl.F_UNLCK, EXCLUSIVE, False)
            self.set(REQUEST, 1)
            fcntl.flock(fd, fcntl.LOCK_EX)  # the holder has the writer lock: wait it out
            fcntl.flock(fd, fcntl.LOCK_UN)

    # -- the writer lock -------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the writer lock (blocking; released by the kernel if this process dies)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        """Release the writer lock."""
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def alone(self) -> bool:
        """Under the writer lock: True if no other open is present (presence taken exclusively)."""
        return _ofd(self.fd, fcntl.F_WRLCK, PRESENCE, False)

    def share(self) -> None:
        """Turn an exclusive presence (from `alone`) back into a shared one."""
        _ofd(self.fd, fcntl.F_RDLCK, PRESENCE, False)

    # -- the header (only under the writer lock) -------------------------------------------------

    def initialised(self) -> bool:
        """True if a first open has written the header."""
        assert self.mm is not None
        return self.mm[:8] == MAGIC

    def read(self) -> tuple[int, int, int, int, int]:
        """Return (gen, end, next_seq, dirty, compacting)."""
        gen, compacting, end, next_seq, dirty = _FIELDS.unpack_from(self.mm, 8)  # type: ignore[arg-type]
        return gen, end, next_seq, dirty, compacting

    def write(self, gen: int, end: int, next_seq: int, dirty: int, compacting: int = 0) -> None:
        """Write every field (a first open's recovery, a compaction's publication)."""
        assert self.mm is not None
        _FIELDS.pack_into(self.mm, 8, gen, compacting, end, next_seq, dirty)
        self.mm[SNAPSHOT : SNAPSHOT + 28] = snapshot(gen, end, next_seq)
        self.mm[:8] = MAGIC

    def set(self, offset: int, value: int) -> None:
        """Write one u64 field (END, NEXT_SEQ, DIRTY, COMPACTING, REQUEST, SOLE)."""
        _U64.pack_into(self.mm, offset, value)  # type: ignore[arg-type]

    def get(self, offset: int) -> int:
        """Read one u64 field."""
        return _U64.unpack_from(self.mm, offset)[0]  # type: ignore[arg-type]

    # -- key locks -------------------------------------------------------------------------------

    def lock_key(self, key: bytes) -> None:
        """Block until this open holds the lock of *key* (memoize: one computation across processes)."""
        _ofd(self.fd, fcntl.F_WRLCK, key_offset(key), True)

    def unlock_key(self, key: bytes) -> None:
        """Release the lock of *key*."""
        _ofd(self.fd, fcntl.F_UNLCK, key_offset(key), False)

    def close(self) -> None:
        """Unmap and close: the kernel releases every lock of this open."""
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def reopen_after_fork(self) -> None:
        """In a forked child: take fresh locks of its own (the inherited ones are the parent's)."""
        old = self.fd
        self.fd = -1
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        os.close(old)  # the parent's open file description (and its locks) stay the parent's
        self.__init__(self.path, exclusive=self.exclusive)  # type: ignore[misc]
