/* dedup/_cwalk.c's part that runs without the GIL: growable byte buffers, and one directory read
 * with getdents64 and an fstatat per entry into `Entry` records. Only buf_put touches Python (it
 * raises MemoryError): read_entries and buf_reserve run without the GIL (PyMem_Raw* may). */
#ifndef DEDUP_CDIRENTS_H
#define DEDUP_CDIRENTS_H

#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { DENTS = 32768 }; /* bytes of directory entries a getdents64 call may return */

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_RawRealloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t n)
{
    if (buf_reserve(b, n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b)
{
    PyMem_RawFree(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* One entry of a directory as listed without the GIL: its name at name_at of the names buffer. */
typedef struct {
    size_t name_at;
    uint16_t name_len;
    int err; /* fstatat's errno, or 0 */
    mode_t kind;
    uint64_t dev, ino;
    int64_t size, mtime_ns;
    nlink_t nlink;
} Entry;

/* st_mtime_ns, clamped to int64: a time past 2262 (or before 1678) is the nearest one the table's
 * column holds (dedup.table.clamp_ns: the Python listings do the same). */
static int64_t mtime_ns(const struct stat *st)
{
    /* In 128 bits, as Python's st_mtime_ns: seconds times 10^9 may pass int64 where the sum,
     * with its nanoseconds added, does not (1677). */
    __int128 ns = (__int128)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    return ns < INT64_MIN ? INT64_MIN : ns > INT64_MAX ? INT64_MAX : (int64_t)ns;
}

/* Read directory *fd* (closed here) into *entries* (their names in *names*); return 0, or the errno of a failed read
 * (the entries before it are kept, as os.scandir's loop keeps them). Runs without the GIL.
 * getdents64 itself, not readdir: fdopendir costs an fstat and two fcntl per directory (a third
 * of the walk's system calls on /usr/lib, 11,222 directories and 72,000 entries). */
static int read_entries(Buf *dents, Buf *entries, Buf *names, int fd, int *nomem)
{
    int err = 0;
    if (buf_reserve(dents, DENTS) < 0) {
        *nomem = 1;
        close(fd);
        return 0;
    }
    for (;;) {
        long got = syscall(SYS_getdents64, fd, dents->data, DENTS);
        if (got < 0 && errno == ENOENT)
            got = 0; /* the directory was removed after its open: empty, as readdir says */
        if (got <= 0) {
            err = got < 0 ? errno : 0;
            break;
        }
        for (long at = 0; at < got;) {
            const struct dirent64 *d = (const struct dirent64 *)(dents->data + at);
            at += d->d_reclen;
            const char *n = d->d_name;
            if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
                continue;
            size_t len = strlen(n);
            Entry e;
            memset(&e, 0, sizeof e);
            e.name_at = names->len;
            e.name_len = (uint16_t)len;
            struct stat st;
            if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                e.err = errno;
            } else {
                e.kind = st.st_mode & S_IFMT;
                e.dev = st.st_dev;
                e.ino = st.st_ino;
                e.size = st.st_size;
                e.mtime_ns = mtime_ns(&st);
                e.nlink = st.st_nlink;
            }
            if (buf_reserve(names, len) < 0 || buf_reserve(entries, sizeof e) < 0) {
                *nomem = 1;
                close(fd);
                return 0;
            }
            memcpy(names->data + names->len, n, len);
            names->len += len;
            memcpy(entries->data + entries->len, &e, sizeof e);
            entries->len += sizeof e;
        }
    }
    close(fd);
    return err;
}

#endif
