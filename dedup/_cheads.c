/* dedup._cheads: the first loop of dedup/heads.py `Heads._finish_warm`, compiled.
 *
 * `open_heads(paths, flags, nowait, head)` opens every path of one same-size group (flags: the
 * default opener's, retried without O_NOATIME when refused, as hashing.open_noatime), reads its
 * first *head* bytes with preadv2 (RWF_NOWAIT while *nowait*; a read the page cache cannot serve
 * is made again blocking, and counts as a miss; a file system refusing RWF_NOWAIT turns it off, as
 * cachedreads.nowait_refused), and groups the files by their heads. It returns
 * (fds, sharing, failures, missed, nowait): the descriptors of the files sharing a head with
 * another (-1 for the rest, closed here), the classes of positions sharing a head (in the order
 * the Python loop's `shared` dict holds them: by when a head's second file came), the failures as
 * (position, error text) in position order (strerror, or "now N bytes or fewer" for a file that
 * shrank), whether a read missed the page cache, and the RWF_NOWAIT flag to read with from now on.
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
#include <string.h>
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

static int refused_nowait(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == EINVAL || err == ENOSYS;
}

/* Open and read every slot's head into heads[k * head]; runs without the GIL. */
static void read_all(Slot *slots, Py_ssize_t n, char *heads, size_t head, int flags, int *nowait,
                     int *missed)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        int fd = open(s->path, flags);
        if (fd < 0 && (errno == EPERM || errno == EACCES) && (flags & O_NOATIME))
            fd = open(s->path, flags & ~O_NOATIME); /* O_NOATIME: the owner's (or root's) alone */
        if (fd < 0) {
            s->err = errno;
            continue;
        }
        struct iovec io = {heads + (size_t)k * head, head};
        ssize_t got = preadv2(fd, &io, 1, 0, *nowait);
        if (got < 0 && *nowait) {
            if (errno == EAGAIN)
                *missed = 1;
            else if (refused_nowait(errno))
                *nowait = 0;
            else
                goto failed;
            got = preadv2(fd, &io, 1, 0, 0);
        }
        if (got < 0)
            goto failed;
        s->got = got;
        if ((size_t)got != head) {
            s->err = 0;
            s->fd = -2; /* short: a failure without an errno */
            close(fd);
            continue;
        }
        s->fd = fd;
        continue;
    failed:
        s->err = errno;
        close(fd);
    }
}

static PyObject *open_heads(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "open_heads(paths: list, flags, nowait, head)");
        return NULL;
    }
    PyObject *paths = args[0];
    int flags = (int)PyLong_AsLong(args[1]);
    int nowait = (int)PyLong_AsLong(args[2]);
    long head = PyLong_AsLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (head <= 0 || head > MAX_HEAD) {
        PyErr_SetString(PyExc_ValueError, "head out of range");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(paths);
    PyObject **encoded = PyMem_Calloc(n ? n : 1, sizeof *encoded);
    Slot *slots = PyMem_Calloc(n ? n : 1, sizeof *slots);
    char *heads = PyMem_Malloc((size_t)(n ? n : 1) * (size_t)head);
    PyObject *fds = NULL, *sharing = NULL, *failures = NULL, *result = NULL;
    int missed = 0;
    if (encoded == NULL || slots == NULL || heads == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!PyUnicode_FSConverter(PyList_GET_ITEM(paths, k), &encoded[k]))
            goto done;
        slots[k].path = PyBytes_AS_STRING(encoded[k]);
        slots[k].fd = -1;
        slots[k].cls = -1;
    }
    Py_BEGIN_ALLOW_THREADS
    read_all(slots, n, heads, (size_t)head, flags, &nowait, &missed);
    Py_END_ALLOW_THREADS

    /* Group: each head against the distinct heads before it (a group holds at most KEEP_OPEN). */
    int classes = 0;
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
    fds = PyList_New(n);
    sharing = PyList_New(classes);
    failures = PyList_New(0);
    if (fds == NULL || sharing == NULL || failures == NULL)
        goto done;
    for (Py_ssize_t c = 0; c < classes; c++) {
        PyObject *members = PyList_New(0);
        if (members == NULL)
            goto done;
        PyList_SET_ITEM(sharing, c, members);
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        int fd = s->fd;
        if (fd >= 0) {
            int cls = slots[s->first].cls;
            if (cls < 0) { /* no other file has its head: not read again */
                close(fd);
                s->fd = fd = -1;
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
            fd = -1;
        }
        PyObject *num = PyLong_FromLong(fd);
        if (num == NULL)
            goto done;
        PyList_SET_ITEM(fds, k, num);
    }
    result = Py_BuildValue("(OOOOi)", fds, sharing, failures, missed ? Py_True : Py_False, nowait);
    if (result != NULL) {
        for (Py_ssize_t k = 0; k < n; k++)
            slots[k].fd = -1; /* the caller's now */
    }
done:
    if (slots != NULL) {
        for (Py_ssize_t k = 0; k < n; k++)
            if (slots[k].fd >= 0)
                close(slots[k].fd);
    }
    if (encoded != NULL) {
        for (Py_ssize_t k = 0; k < n; k++)
            Py_XDECREF(encoded[k]);
    }
    PyMem_Free(encoded);
    PyMem_Free(slots);
    PyMem_Free(heads);
    Py_XDECREF(fds);
    Py_XDECREF(sharing);
    Py_XDECREF(failures);
    return result;
}

static PyMethodDef methods[] = {
    {"open_heads", (PyCFunction)(void (*)(void))open_heads, METH_FASTCALL,
     "Open a same-size group's files, read their heads, and group them (see the module doc)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "dedup._cheads",
    .m_doc = "The warm head stage's open-and-read loop, compiled.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__cheads(void)
{
    return PyModule_Create(&module);
}
