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
 * against the Python methods in tests/cache/test_cshared.py. Measured (session 17), callgrind of
 * `crc_speed play --opens K`, instructions an operation at 2 / 8 opens: 46.8k / 59.5k with the
 * Python methods, 40.5k / 54.0k compiled with generic attribute look-ups and the Python map's
 * buffer, 33.9k / 47.8k as here. Real processes (`python -m bench.cache.code_ab`, 5 alternated
 * pairs, a loaded machine), this against the Python methods: x1.183 / x1.127 / x1.024 ops/s at
 * 2 / 4 / 8, CPU per operation 20.0 -> 15.2, 25.3 -> 20.9, 30.3 -> 27.7 us.
 *
 * A Protocol is made for one open (SharedRecordLog.protocol). It maps the shared header's page of
 * PATH.lock itself, once, through a descriptor of its own (the Python map may be closed under it;
 * this one lives as long as the Protocol, so a late call reads a valid page, never freed memory;
 * and it holds no lock of the open's), and reads and writes the log's
 * attributes through the log's instance dict: they are plain instance attributes (checked when the
 * Protocol is made), and a dict look-up is a quarter of the generic attribute look-up's
 * instructions. The descriptor of the lock (`_lfd`) is read at each call, as the methods read it:
 * a forked child gets its own. The snapshot's CRC32 (24 bytes) is computed here, zlib's polynomial.
 */#include "_cshared.h"

/* `follow.apply_published(log._mm, log.end, stop, 0, log.next_seq, log._index)`, its result stored. */
static int apply_inline(Protocol *self, long long self_end, uint64_t stop)
{
    PyObject *mm = attr(self, s_mm), *index = mm ? attr(self, s_index) : NULL, *seq = index ? attr(self, s_next_seq) : NULL;
    if (seq == NULL)
        return -1;
    if (apply_published == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cache._cshared.configure was not called");
        return -1;
    }
    PyObject *args[6] = {mm, PyLong_FromLongLong(self_end), PyLong_FromUnsignedLongLong(stop), NULL, seq, index};
    PyObject *result = NULL;
    if (args[1] && args[2]) {
        args[3] = PyLong_FromLong(0);
        Py_INCREF(mm); /* the call may replace the dict's entries */
        Py_INCREF(seq);
        Py_INCREF(index);
        result = PyObject_Vectorcall(apply_published, args, 6, NULL);
        Py_DECREF(mm);
        Py_DECREF(seq);
        Py_DECREF(index);
    }
    Py_XDECREF(args[1]);
    Py_XDECREF(args[2]);
    Py_XDECREF(args[3]);
    if (result == NULL)
        return -1;
    int rc = 0;
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_published did not return (end, next_seq)");
        rc = -1;
    } else if (PyDict_SetItem(self->dict, s_end, PyTuple_GET_ITEM(result, 0)) < 0 ||
               PyDict_SetItem(self->dict, s_next_seq, PyTuple_GET_ITEM(result, 1)) < 0) {
        rc = -1;
    }
    Py_DECREF(result);
    return rc;
}

/* CatchUp._follow_unlocked: 1 if this index is then current, 0 if not, -1 on error. */
static int follow_unlocked(Protocol *self)
{
    char snap[28];
    long long first_seq, self_end, mapped;
    shared_read(self, SNAPSHOT, snap, sizeof snap);
    if (get_ll(self, s_first_seq, &first_seq) < 0)
        return -1;
    uint64_t gen = rd64(snap), end = rd64(snap + 8), next_seq = rd64(snap + 16);
    uint32_t crc;
    memcpy(&crc, snap + 24, 4);
    if (gen != (uint64_t)first_seq || crc != crc32_of((const unsigned char *)snap, 24))
        return 0;
    if (get_ll(self, s_end, &self_end) < 0)
        return -1;
    if (end > (uint64_t)self_end) {
        if (get_ll(self, s_mapped, &mapped) < 0)
            return -1;
        if (end <= (uint64_t)mapped) { /* _follow's common case, inline */
            if (apply_inline(self, self_end, end) < 0)
                return -1;
        } else {
            PyObject *result = PyObject_CallMethod(self->log, "_follow", "KKO", (unsigned long long)end,
                                                   (unsigned long long)next_seq, Py_False);
            if (result == NULL)
                return -1;
            Py_DECREF(result);
        }
        if (get_ll(self, s_end, &self_end) < 0)
            return -1;
    }
    return end == (uint64_t)self_end;
}

/* CatchUp._lock_following: take the writer lock, replaying what its holder publishes meanwhile. */
static int lock_following(Protocol *self, int fd)
{
    for (long i = 0; i < lock_tries; i++) {
        Py_BEGIN_ALLOW_THREADS
        sched_yield(); /* let the holder run (on a busy machine it may be waiting for this CPU) */
        Py_END_ALLOW_THREADS
        char end[8];
        long long self_end;
        shared_read(self, END, end, 8);
        if (get_ll(self, s_end, &self_end) < 0)
            return -1;
        if (rd64(end) != (uint64_t)self_end && follow_unlocked(self) < 0)
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
static PyObject *begin(Protocol *self, PyObject *unused)
{
    int look = get_true(self, s_look_ahead), fd;
    if (look < 0)
        return NULL;
    if (!look)
        return PyObject_CallMethodNoArgs(self->log, s_begin);
    long long seen, self_end, first_seq;
    char fields[40];
    if (get_ll(self, s_end, &seen) < 0 || lock_fd(self, &fd) < 0)
        return NULL;
    shared_read(self, END, fields, 8);
    if (rd64(fields) != (uint64_t)seen && follow_unlocked(self) < 0)
        return NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (lock_following(self, fd) < 0)
            return NULL;
    }
    /* From here the lock is held: an error must release it, as _catch_up's does. */
    if (get_ll(self, s_end, &self_end) < 0 || get_ll(self, s_first_seq, &first_seq) < 0) {
        flock(fd, LOCK_UN);
        return NULL;
    }
    shared_read(self, GEN, fields, 40); /* gen, compacting, end, next_seq, dirty */
    uint64_t gen = rd64(fields), compacting = rd64(fields + 8), end = rd64(fields + 16);
    uint64_t next_seq = rd64(fields + 24), dirty = rd64(fields + 32);
    if (end == (uint64_t)self_end && dirty == end && gen == (uint64_t)first_seq && !compacting) {
        uint64_t writing = WRITING;
        memcpy(self->base + DIRTY, &writing, 8);
        return PyBool_FromLong(end != (uint64_t)seen);
    }
    return PyObject_CallMethod(self->log, "_catch_up", "KKKKK", (unsigned long long)gen,
                               (unsigned long long)end, (unsigned long long)next_seq,
                               (unsigned long long)dirty, (unsigned long long)compacting);
}

/* SharedRecordLog.finish: publish the end of this process's appends and release the writer lock. */
static PyObject *finish(Protocol *self, PyObject *unused)
{
    long long end, next_seq, gen;
    int fd, flush;
    if (get_ll(self, s_end, &end) < 0 || get_ll(self, s_next_seq, &next_seq) < 0 ||
        get_ll(self, s_first_seq, &gen) < 0 || lock_fd(self, &fd) < 0 ||
        (flush = get_true(self, s_flush_header)) < 0)
        return NULL;
    uint64_t out[6]; /* END, NEXT_SEQ, DIRTY, then the snapshot: gen, end, next_seq, CRC32 (one store) */
    out[0] = out[2] = out[4] = (uint64_t)end;
    out[1] = out[5] = (uint64_t)next_seq;
    out[3] = (uint64_t)gen;
    uint32_t crc = crc32_of((const unsigned char *)&out[3], 24);
    char publish[52];
    memcpy(publish, out, 48);
    memcpy(publish + 48, &crc, 4);
    __asm__ __volatile__("" ::: "memory"); /* the records' bytes are stored before they are published */
    memcpy(self->base + END, publish, 52);
    if (flush) { /* the published end survives power loss too */
        PyObject *smm = attr(self, s_smm), *r = smm ? PyObject_CallMethodNoArgs(smm, s_flush) : NULL;
        if (r == NULL) {
            flock(fd, LOCK_UN); /* a failed flush must not keep the others waiting */
            return NULL;
        }
        Py_DECREF(r);
    }
    if (flock(fd, LOCK_UN) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* SharedRecordLog.follow_published: catch up with what is published; True if current. */
static PyObject *follow_published(Protocol *self, PyObject *unused)
{
    int look = get_true(self, s_look_ahead), fd;
    if (look <= 0)
        return look < 0 ? NULL : PyBool_FromLong(0);
    if (lock_fd(self, &fd) < 0) /* closed: an error, as the Python method's read of its closed map */
        return NULL;
    int rc = follow_unlocked(self);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyObject *protocol_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *log, *path;
    if (!PyArg_ParseTuple(args, "OO&", &log, PyUnicode_FSConverter, &path))
        return NULL;
    /* The names read through the dict must not be descriptors of the log's class. */
    PyObject *names[] = {s_end, s_next_seq, s_first_seq, s_smm, s_lfd, s_look_ahead, s_mm, s_mapped, s_index,
                         s_flush_header};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (_PyType_Lookup(Py_TYPE(log), names[i]) != NULL) {
            PyErr_Format(PyExc_TypeError, "%R is an attribute of the log's class, not of the log", names[i]);
            Py_DECREF(path);
            return NULL;
        }
    }
    /* A map holds its file description open: mapped through the open's own descriptor, it would
     * keep the open's locks (presence, the writer lock) held after the open closed it. */
    int fd = open(PyBytes_AS_STRING(path), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(path);
        return NULL;
    }
    void *base = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int err = errno;
    close(fd);
    Py_DECREF(path);
    if (base == MAP_FAILED) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *dict = PyObject_GenericGetDict(log, NULL);
    Protocol *self = dict ? (Protocol *)type->tp_alloc(type, 0) : NULL;
    if (self == NULL) {
        Py_XDECREF(dict);
        munmap(base, PAGE);
        return NULL;
    }
    Py_INCREF(log);
    self->log = log;
    self->dict = dict;
    self->base = base;
    return (PyObject *)self;
}

static int protocol_traverse(Protocol *self, visitproc visit, void *arg)
{
    Py_VISIT(self->log);
    Py_VISIT(self->dict);
    return 0;
}

static int protocol_clear(Protocol *self)
{
    Py_CLEAR(self->log);
    Py_CLEAR(self->dict);
    return 0;
}

static void protocol_dealloc(Protocol *self)
{
    PyObject_GC_UnTrack(self);
    protocol_clear(self);
    if (self->base != NULL)
        munmap(self->base, PAGE);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef protocol_methods[] = {
    {"begin", (PyCFunction)begin, METH_NOARGS, "Take the writer lock and catch up; True if the index changed."},
    {"finish", (PyCFunction)finish, METH_NOARGS, "Publish this open's end and release the writer lock."},
    {"follow_published", (PyCFunction)follow_published, METH_NOARGS,
     "Catch up with what is published, without the lock; True if the index is current."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProtocolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cache._cshared.Protocol",
    .tp_doc = "Protocol(log, lock_path): the per-operation protocol of one open of a shared log.",
    .tp_basicsize = sizeof(Protocol),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = protocol_new,
    .tp_traverse = (traverseproc)protocol_traverse,
    .tp_clear = (inquiry)protocol_clear,
    .tp_dealloc = (destructor)protocol_dealloc,
    .tp_methods = protocol_methods,
};

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
    {"configure", configure, METH_VARARGS, "Set the follow loop and the spins of a lock wait."},
    {"crc32", snapshot_crc, METH_O, "zlib's CRC-32 of a short buffer (the snapshot's)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "cache._cshared", "The per-operation protocol of a shared log, compiled.", -1, methods,
    NULL, NULL, NULL, NULL,
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
    INTERN(s_begin, "begin");
    INTERN(s_flush, "flush");
#undef INTERN
    if (PyType_Ready(&ProtocolType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&ProtocolType);
    if (PyModule_AddObject(module, "Protocol", (PyObject *)&ProtocolType) < 0) {
        Py_DECREF(&ProtocolType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
