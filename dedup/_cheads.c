/* dedup._cheads: the first loop of dedup/heads.py `Heads._finish_warm`, compiled.
 *
 * `open_heads(paths, flags, nowait, head, fds)` opens every path of one same-size group (flags:
 * the default opener's, retried without O_NOATIME when refused, as hashing.open_noatime), reads
 * its first *head* bytes with preadv2 (RWF_NOWAIT while *nowait*; a read the page cache cannot
 * serve is made again blocking, and counts as a miss; a file system refusing RWF_NOWAIT for a
 * regular file turns it off, as cachedreads.nowait_refused), and groups the files by their
 * heads. Interrupted calls are made again (EINTR), as os.open and os.preadv do. It appends to the
 * caller's list *fds* a descriptor per path, before anything else can fail: the caller closes
 * what is in it, also when this raises or a signal's exception comes as it returns; the files
 * sharing no head are closed here (-1 in *fds*: the item set first, then the descriptor closed).
 * It returns (sharing, failures, missed, nowait): the classes of positions sharing a head (in the
 * order the Python loop's `shared` dict holds them: by when a head's second file came), the
 * failures as (position, error text) in position order (strerror, or "now N bytes or fewer" for a
 * file that shrank), whether a read missed the page cache, and the RWF_NOWAIT flag from now on.
 *
 * Why: that loop is run once per small candidate over `HEAD_FROM` bytes (/usr/lib: 43,000 of 47,000
 * candidates), and its interpreter work was as much as its system calls. The system calls are made
 * with the GIL released. It is dedup/cachedreads.py `open_heads_python`, compiled; tests/dedup/
 * test_cheads.py checks the two against each other.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

enum { MAX_HEAD = 4096 };

typedef struct {
    const char *path;
    int fd, err;
    ssize_t got;
    int first;   /* position of the first file with this head (itself if none before) */
    int cls;     /* its class among the heads shared (-1: none yet), on the first position */
} Slot;

/* The errors of a read refusing RWF_NOWAIT (hashing._NOWAIT_REFUSED). */
static int refusal(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == EINVAL || err == ENOSYS;
}

/* Whether *fd* is a regular file: only then is a refusal the file system's (a directory answers
 * EOPNOTSUPP too, and must not turn RWF_NOWAIT off for the run). */
static int regular(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* open(2) as hashing.open_noatime opens: retried without O_NOATIME when refused (the owner's,
 * or root's, alone), and when interrupted (EINTR), as os.open is. */
static int open_file(const char *path, int flags)
{
    int fd;
    do
        fd = open(path, flags);
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && (errno == EPERM || errno == EACCES) && (flags & O_NOATIME)) {
        do
            fd = open(path, flags & ~O_NOATIME);
        while (fd < 0 && errno == EINTR);
    }
    return fd;
}

static ssize_t read_head(int fd, struct iovec *io, int flags)
{
    ssize_t got;
    do
        got = preadv2(fd, io, 1, 0, flags);
    while (got < 0 && errno == EINTR);
    return got;
}

/* Open and read every slot's head into heads[k * head]; runs without the GIL. */
static void read_all(Slot *slots, Py_ssize_t n, char *heads, size_t head, int flags, int *nowait,
                     int *missed)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        int fd = open_file(s->path, flags);
        if (fd < 0) {
            s->err = errno;
            continue;
        }
        struct iovec io = {heads + (size_t)k * head, head};
        ssize_t got = read_head(fd, &io, *nowait);
        if (got < 0 && *nowait && (errno == EAGAIN || refusal(errno))) {
            if (errno == EAGAIN)
                *missed = 1;
            else if (regular(fd))
                *nowait = 0;
            got = read_head(fd, &io, 0);
        }
        if (got < 0) {
            s->err = errno;
            close(fd);
            continue;
        }
        s->got = got;
        if ((size_t)got != head) {
            s->err = 0;
            s->fd = -2; /* short: a failure without an errno */
            close(fd);
            continue;
        }
        s->fd = fd;
    }
}

/* Release the encoded paths (NULL where not made) and their array. */
static void free_encoded(PyObject **encoded, Py_ssize_t n)
{
    if (encoded != NULL) {
        for (Py_ssize_t k = 0; k < n; k++)
            Py_XDECREF(encoded[k]);
    }
    PyMem_Free(encoded);
}

/* An int argument that must fit a C int. */
static int int_arg(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "argument out of int range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static PyObject *open_heads(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int flags, nowait, head, missed = 0, classes = 0;
    if (nargs != 5 || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "open_heads(paths, flags, nowait, head, fds: list)");
        return NULL;
    }
    if (int_arg(args[1], &flags) < 0 || int_arg(args[2], &nowait) < 0 || int_arg(args[3], &head) < 0)
        return NULL;
    if (head <= 0 || head > MAX_HEAD) {
        PyErr_SetString(PyExc_ValueError, "head out of range");
        return NULL;
    }
    PyObject *fds = args[4];
    /* A tuple of its own: an item's __fspath__ cannot change what is walked. */
    PyObject *paths = PySequence_Tuple(args[0]);
    if (paths == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(paths), given = 0;
    PyObject **encoded = PyMem_Calloc(n ? n : 1, sizeof *encoded);
    Slot *slots = PyMem_Calloc(n ? n : 1, sizeof *slots);
    char *heads = PyMem_Malloc((size_t)(n ? n : 1) * (size_t)head);
    PyObject *sharing = NULL, *failures = NULL, *result = NULL;
    if (encoded == NULL || slots == NULL || heads == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        slots[k].fd = -1; /* all of them, before any can fail: none is closed by mistake */
        slots[k].cls = -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(paths, k), &encoded[k]))
            goto done;
        slots[k].path = PyBytes_AS_STRING(encoded[k]);
    }
    Py_BEGIN_ALLOW_THREADS
    read_all(slots, n, heads, (size_t)head, flags, &nowait, &missed);
    Py_END_ALLOW_THREADS
    /* The descriptors are the caller's from here on (closed by it whatever comes next). */
    for (; given < n; given++) {
        PyObject *num = PyLong_FromLong(slots[given].fd >= 0 ? slots[given].fd : -1);
        if (num == NULL || PyList_Append(fds, num) < 0) {
            Py_XDECREF(num);
            goto done;
        }
        Py_DECREF(num);
    }
    Py_ssize_t base = PyList_GET_SIZE(fds) - n;

    /* Group: each head against the distinct heads before it (a group holds at most KEEP_OPEN). */
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        if (s->fd < 0)
            continue;
        s->first = (int)k;
        const char *mine = heads + (size_t)k * (size_t)head;
        for (Py_ssize_t j = 0; j < k; j++) {
            if (slots[j].fd >= 0 && slots[j].first == (int)j
                    && memcmp(heads + (size_t)j * (size_t)head, mine, (size_t)head) == 0) {
                s->first = (int)j;
                if (slots[j].cls < 0)
                    slots[j].cls = classes++;
                break;
            }
        }
    }
    sharing = PyList_New(classes);
    failures = PyList_New(0);
    if (sharing == NULL || failures == NULL)
        goto done;
    for (Py_ssize_t c = 0; c < classes; c++) {
        PyObject *members = PyList_New(0);
        if (members == NULL)
            goto done;
        PyList_SET_ITEM(sharing, c, members);
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        if (s->fd >= 0) {
            int cls = slots[s->first].cls;
            if (cls < 0) { /* no other file has its head: not read again */
                int fd = s->fd;
                if (PyList_SetItem(fds, base + k, PyLong_FromLong(-1)) < 0) /* -1: a cached int */
                    goto done;
                s->fd = -1;
                close(fd);
            } else {
                PyObject *pos = PyLong_FromSsize_t(k);
                if (pos == NULL || PyList_Append(PyList_GET_ITEM(sharing, cls), pos) < 0) {
                    Py_XDECREF(pos);
                    goto done;
                }
                Py_DECREF(pos);
            }
        } else {
            PyObject *text = s->fd == -2 ? PyUnicode_FromFormat("now %zd bytes or fewer", (Py_ssize_t)s->got)
                                         : PyUnicode_DecodeLocale(strerror(s->err), "surrogateescape");
            PyObject *item = text == NULL ? NULL : Py_BuildValue("(nN)", k, text);
            if (item == NULL || PyList_Append(failures, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        }
    }
    result = Py_BuildValue("(OOOi)", sharing, failures, missed ? Py_True : Py_False, nowait);
done:
    if (slots != NULL) {
        for (Py_ssize_t k = given; k < n; k++) /* not handed to the caller */
            if (slots[k].fd >= 0)
                close(slots[k].fd);
    }
    free_encoded(encoded, n);
    PyMem_Free(slots);
    PyMem_Free(heads);
    Py_DECREF(paths);
    Py_XDECREF(sharing);
    Py_XDECREF(failures);
    return result;
}

#include "_cwholes.h"

static PyMethodDef methods[] = {
    {"open_heads", (PyCFunction)(void (*)(void))open_heads, METH_FASTCALL,
     "Open a same-size group's files, read their heads, and group them (see the module doc)."},
    {"read_wholes", (PyCFunction)(void (*)(void))read_wholes, METH_FASTCALL,
     "Read a group of small files whole and group them by content (see _cwholes.h)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "dedup._cheads",
    .m_doc = "The warm head stage's open-and-read loops, compiled.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__cheads(void)
{
    return PyModule_Create(&module);
}
