/* cache._cshared: the per-operation protocol of a shared log (cache/sharedlog.py), compiled.
 *
 * Every operation of a shared open runs `begin` (catch up, take the writer lock) and `finish`
 * (publish, unlock), and a get that misses first runs `follow_published`. In Python these cost
 * more instructions than the operation itself (bench/cache/crc_speed.py play, callgrind: 20.4k
 * instructions an operation on the sole open, 46.8k on one of two opens, of which 2.1k follow the
 * other open's record). These functions do what SharedRecordLog.begin, .finish and
 * .follow_published (and CatchUp._follow_unlocked and ._lock_following, which they call) do, step
 * for step, on the same attributes of the log object, and hand everything but the common case to
 * the same Python methods: `_catch_up` (another generation, a dead writer's garbage, a compaction
 * to finish), `_follow` (records past this process's map) and `begin` (no look-ahead). Checked
 * against the Python methods in tests/cache/test_cshared.py. Measured (session 17): callgrind of
 * `crc_speed play --opens K` 46.8k -> 40.5k instructions an operation at 2 opens, 59.5k -> 54.0k
 * at 8; real processes (`python -m bench.cache.code_ab`, 5 alternated pairs) x1.198 / x1.065 /
 * x1.087 ops/s at 2 / 4 / 8, CPU per operation 17.6 -> 14.6, 21.0 -> 19.8, 26.6 -> 24.3 us.
 *
 * The shared header is read and written through the buffer of the log's header map, taken for each
 * access and released before any call into Python (which may close or remap it: a held buffer
 * would make that fail). The snapshot's CRC32 (24 bytes) is computed here with zlib's polynomial.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>

/* cache/shared.py: offsets in the header */
enum { GEN = 8, END = 24, DIRTY = 40, SNAPSHOT = 48, HEADER_USED = 96 };
#define WRITING UINT64_MAX

static PyObject *apply_published; /* cache.follow.apply_published */
static long lock_tries = 512;     /* cache/catchup.py _LOCK_TRIES */
static PyObject *s_end, *s_next_seq, *s_first_seq, *s_smm, *s_lfd, *s_look_ahead, *s_mm, *s_mapped,
    *s_index, *s_flush_header, *s_follow, *s_catch_up, *s_begin, *s_flush, *s_strict;
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t rd64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little endian, as the header; so is every platform this is built for */
    return v;
}

static int get_ll(PyObject *obj, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int set_ll(PyObject *obj, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return rc;
}

static int get_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int rc = PyObject_IsTrue(v);
    Py_DECREF(v);
    return rc;
}

/* The header map's buffer (the log's _smm), writable, at least HEADER_USED bytes. */
static int header(PyObject *log, Py_buffer *view)
{
    PyObject *smm = PyObject_GetAttr(log, s_smm);
    if (smm == NULL)
        return -1;
    int rc = PyObject_GetBuffer(smm, view, PyBUF_WRITABLE);
    Py_DECREF(smm);
    if (rc < 0)
        return -1;
    if (view->len < HEADER_USED) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "the shared header's map is too small");
        return -1;
    }
    return 0;
}

static int read_header(PyObject *log, Py_ssize_t at, char *out, Py_ssize_t n)
{
    Py_buffer view;
    if (header(log, &view) < 0)
        return -1;
    memcpy(out, (char *)view.buf + at, n);
    PyBuffer_Release(&view);
    return 0;
}

/* CatchUp._follow_unlocked: 1 if this index is then current, 0 if not, -1 on error. */
static int follow_unlocked(PyObject *log)
{
    char snap[28];
    long long first_seq, self_end, mapped, next_seq_self;
    if (read_header(log, SNAPSHOT, snap, sizeof snap) < 0 || get_ll(log, s_first_seq, &first_seq) < 0)
        return -1;
    uint64_t gen = rd64(snap), end = rd64(snap + 8), next_seq = rd64(snap + 16);
    uint32_t crc;
    memcpy(&crc, snap + 24, 4);
    if (gen != (uint64_t)first_seq || crc != crc32_of((const unsigned char *)snap, 24))
        return 0;
    if (get_ll(log, s_end, &self_end) < 0)
        return -1;
    if (end > (uint64_t)self_end) {
        if (get_ll(log, s_mapped, &mapped) < 0)
            return -1;
        PyObject *result;
        if (end <= (uint64_t)mapped) { /* _follow's common case, inline */
            PyObject *args[6] = {NULL};
            if (get_ll(log, s_next_seq, &next_seq_self) < 0)
                return -1;
            args[0] = PyObject_GetAttr(log, s_mm);
            args[1] = PyLong_FromLongLong(self_end);
            args[2] = PyLong_FromUnsignedLongLong(end);
            args[3] = PyLong_FromLong(0);
            args[4] = PyLong_FromLongLong(next_seq_self);
            args[5] = PyObject_GetAttr(log, s_index);
            result = NULL;
            if (args[0] && args[1] && args[2] && args[3] && args[4] && args[5])
                result = PyObject_Vectorcall(apply_published, args, 6, NULL);
            for (int i = 0; i < 6; i++)
                Py_XDECREF(args[i]);
            if (result == NULL)
                return -1;
            if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
                Py_DECREF(result);
                PyErr_SetString(PyExc_TypeError, "apply_published did not return (end, next_seq)");
                return -1;
            }
            int rc = PyObject_SetAttr(log, s_end, PyTuple_GET_ITEM(result, 0)) < 0 ||
                     PyObject_SetAttr(log, s_next_seq, PyTuple_GET_ITEM(result, 1)) < 0;
            Py_DECREF(result);
            if (rc)
                return -1;
        } else {
            PyObject *stop = PyLong_FromUnsignedLongLong(end), *seq = PyLong_FromUnsignedLongLong(next_seq);
            PyObject *kw = Py_BuildValue("{O:O}", s_strict, Py_False);
            result = NULL;
            if (stop && seq && kw) {
                PyObject *method = PyObject_GetAttr(log, s_follow);
                if (method != NULL) {
                    PyObject *args = PyTuple_Pack(2, stop, seq);
                    if (args != NULL)
                        result = PyObject_Call(method, args, kw);
                    Py_XDECREF(args);
                    Py_DECREF(method);
                }
            }
            Py_XDECREF(stop);
            Py_XDECREF(seq);
            Py_XDECREF(kw);
            if (result == NULL)
                return -1;
            Py_DECREF(result);
        }
        if (get_ll(log, s_end, &self_end) < 0)
            return -1;
    }
    return end == (uint64_t)self_end;
}

static int lock_fd(PyObject *log, int *fd)
{
    long long v;
    if (get_ll(log, s_lfd, &v) < 0)
        return -1;
    *fd = (int)v;
    return 0;
}

/* CatchUp._lock_following: take the writer lock, replaying what its holder publishes meanwhile. */
static int lock_following(PyObject *log, int fd)
{
    for (long i = 0; i < lock_tries; i++) {
        Py_BEGIN_ALLOW_THREADS
        sched_yield(); /* let the holder run (on a busy machine it may be waiting for this CPU) */
        Py_END_ALLOW_THREADS
        char end[8];
        long long self_end;
        if (read_header(log, END, end, 8) < 0 || get_ll(log, s_end, &self_end) < 0)
            return -1;
        if (rd64(end) != (uint64_t)self_end && follow_unlocked(log) < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    for (;;) {
        int rc, err;
        Py_BEGIN_ALLOW_THREADS
        rc = flock(fd, LOCK_EX);
        err = errno;
        Py_END_ALLOW_THREADS
        if (rc == 0)
            return 0;
        if (err != EINTR) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* SharedRecordLog.begin: take the writer lock and catch up; True if the index changed. */
static PyObject *begin(PyObject *module, PyObject *log)
{
    int look = get_true(log, s_look_ahead), fd;
    if (look < 0)
        return NULL;
    if (!look)
        return PyObject_CallMethodNoArgs(log, s_begin);
    long long seen, self_end, first_seq;
    char fields[40];
    if (get_ll(log, s_end, &seen) < 0 || lock_fd(log, &fd) < 0 || read_header(log, END, fields, 8) < 0)
        return NULL;
    if (rd64(fields) != (uint64_t)seen && follow_unlocked(log) < 0)
        return NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (lock_following(log, fd) < 0)
            return NULL;
    }
    /* From here the lock is held: an error must release it, as _catch_up's does. */
    Py_buffer view;
    if (get_ll(log, s_end, &self_end) < 0 || get_ll(log, s_first_seq, &first_seq) < 0 ||
        header(log, &view) < 0) {
        flock(fd, LOCK_UN);
        return NULL;
    }
    memcpy(fields, (char *)view.buf + GEN, 40); /* gen, compacting, end, next_seq, dirty */
    uint64_t gen = rd64(fields), compacting = rd64(fields + 8), end = rd64(fields + 16);
    uint64_t next_seq = rd64(fields + 24), dirty = rd64(fields + 32);
    if (end == (uint64_t)self_end && dirty == end && gen == (uint64_t)first_seq && !compacting) {
        uint64_t writing = WRITING;
        memcpy((char *)view.buf + DIRTY, &writing, 8);
        PyBuffer_Release(&view);
        return PyBool_FromLong(end != (uint64_t)seen);
    }
    PyBuffer_Release(&view);
    return PyObject_CallMethod(log, "_catch_up", "KKKKK", (unsigned long long)gen, (unsigned long long)end,
                               (unsigned long long)next_seq, (unsigned long long)dirty,
                               (unsigned long long)compacting);
}

/* SharedRecordLog.finish: publish the end of this process's appends and release the writer lock. */
static PyObject *finish(PyObject *module, PyObject *log)
{
    long long end, next_seq, gen;
    int fd, flush;
    if (get_ll(log, s_end, &end) < 0 || get_ll(log, s_next_seq, &next_seq) < 0 ||
        get_ll(log, s_first_seq, &gen) < 0 || lock_fd(log, &fd) < 0 || (flush = get_true(log, s_flush_header)) < 0)
        return NULL;
    uint64_t out[7]; /* END, NEXT_SEQ, DIRTY, then the snapshot: gen, end, next_seq, CRC32 (one store) */
    out[0] = out[2] = out[4] = (uint64_t)end;
    out[1] = out[5] = (uint64_t)next_seq;
    out[3] = (uint64_t)gen;
    uint32_t crc = crc32_of((const unsigned char *)&out[3], 24);
    out[6] = 0;
    Py_buffer view;
    if (header(log, &view) < 0)
        return NULL;
    memcpy((char *)view.buf + END, out, 48);
    memcpy((char *)view.buf + END + 48, &crc, 4);
    PyBuffer_Release(&view);
    if (flush) { /* the published end survives power loss too */
        PyObject *smm = PyObject_GetAttr(log, s_smm), *r = NULL;
        if (smm != NULL)
            r = PyObject_CallMethodNoArgs(smm, s_flush);
        Py_XDECREF(smm);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    if (flock(fd, LOCK_UN) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* SharedRecordLog.follow_published: catch up with what is published; True if current. */
static PyObject *follow_published(PyObject *module, PyObject *log)
{
    int look = get_true(log, s_look_ahead);
    if (look <= 0)
        return look < 0 ? NULL : PyBool_FromLong(0);
    int rc = follow_unlocked(log);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

/* configure(apply_published, lock_tries): what follow_unlocked calls, and the spins of a wait. */
static PyObject *configure(PyObject *module, PyObject *args)
{
    PyObject *apply;
    long tries;
    if (!PyArg_ParseTuple(args, "Ol", &apply, &tries))
        return NULL;
    Py_INCREF(apply);
    Py_XSETREF(apply_published, apply);
    lock_tries = tries;
    Py_RETURN_NONE;
}

static PyObject *snapshot_crc(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t crc = crc32_of(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef methods[] = {
    {"begin", begin, METH_O, "Take the writer lock of a shared log and catch up; True if the index changed."},
    {"finish", finish, METH_O, "Publish a shared log's end and release the writer lock."},
    {"follow_published", follow_published, METH_O, "Catch up with what is published; True if current."},
    {"configure", configure, METH_VARARGS, "Set the follow loop and the spins of a lock wait."},
    {"crc32", snapshot_crc, METH_O, "zlib's CRC-32 of a short buffer (the snapshot's)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cache._cshared", "The per-operation protocol of a shared log, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__cshared(void)
{
    crc_init();
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_end, "end");
    INTERN(s_next_seq, "next_seq");
    INTERN(s_first_seq, "first_seq");
    INTERN(s_smm, "_smm");
    INTERN(s_lfd, "_lfd");
    INTERN(s_look_ahead, "_look_ahead");
    INTERN(s_mm, "_mm");
    INTERN(s_mapped, "_mapped");
    INTERN(s_index, "_index");
    INTERN(s_flush_header, "_flush_header");
    INTERN(s_follow, "_follow");
    INTERN(s_catch_up, "_catch_up");
    INTERN(s_begin, "begin");
    INTERN(s_flush, "flush");
    INTERN(s_strict, "strict");
#undef INTERN
    return PyModule_Create(&module_def);
}
