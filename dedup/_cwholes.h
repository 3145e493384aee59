/* dedup._cheads.read_wholes: the loop of dedup/heads.py `_finish_whole_warm`, compiled (included
 * by _cheads.c, whose open_file, read_head, refusal, regular, int_arg and free_encoded it uses).
 *
 * `read_wholes(paths, size, flags, nowait)` reads every file of one group of files of *size*
 * bytes (0 to MAX_WHOLE) whole, one byte past the end too (growth), each opened, read and
 * closed in turn with the GIL released (CHUNK files at a time), RWF_NOWAIT asked while *nowait*. At the first read the
 * page cache cannot serve it stops and returns None (every descriptor closed, the group left to
 * the whole-read stage). Otherwise it returns (classes, failures, nowait): the classes of two or
 * more positions whose bytes are equal (by their first position; grouped by the bytes
 * themselves, not a digest), the failures as (position, error text: strerror, or
 * "changed during scan: grew/shrank (expected N bytes)") in position order, and the RWF_NOWAIT
 * flag from now on (0 once a regular file's file system refused it). dedup/cachedreads.py
 * `read_wholes_python` is its twin; tests/dedup/test_cheads.py compares them.
 *
 * Why: that loop runs once per small candidate of at most 256 bytes (the small corpus: 62,000 of
 * its 94,000 candidates), and its interpreter work was as much as its system calls.
 */
enum { MAX_WHOLE = 65536, CHUNK = 1024 };

/* Read *fd* from *got* on until *want* bytes are in *buf* or the file ends (a short read before
 * the end: FUSE, NFS; or the page past it); return the bytes in it, or -1 (errno set). */
static ssize_t read_to_end(int fd, char *buf, ssize_t got, size_t want)
{
    while ((size_t)got < want) {
        ssize_t more;
        do
            more = pread(fd, buf + got, want - (size_t)got, got);
        while (more < 0 && errno == EINTR);
        if (more < 0)
            return -1;
        if (more == 0)
            break;
        got += more;
    }
    return got;
}

/* Read every slot's file whole into bufs[k * (size + 1)]; return 1 at a page-cache miss (the rest
 * not read), else 0. Runs without the GIL. */
static int read_every(Slot *slots, Py_ssize_t n, char *bufs, size_t size, int flags, int *nowait)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        Slot *s = &slots[k];
        int fd = open_file(s->path, flags);
        if (fd < 0) {
            s->err = errno;
            continue;
        }
        char *buf = bufs + (size_t)k * (size + 1);
        struct iovec io = {buf, size + 1};
        ssize_t got = read_head(fd, &io, *nowait);
        if (got < 0 && *nowait && (errno == EAGAIN || refusal(errno))) {
            if (errno == EAGAIN) {
                close(fd);
                return 1;
            }
            if (regular(fd))
                *nowait = 0;
            got = read_head(fd, &io, 0);
        }
        if (got >= 0 && (size_t)got <= size && ((size_t)got < size || size % 4096 == 0))
            got = read_to_end(fd, buf, got, size + 1); /* short, or the byte past the end unread */
        s->err = got < 0 ? errno : 0;
        s->got = got;
        close(fd);
    }
    return 0;
}

/* A size argument: an int in 0..MAX_WHOLE, else ValueError (as the Python twin's check). */
static int size_arg(PyObject *obj, size_t *out)
{
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL)
        return -1;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || v > MAX_WHOLE) {
        PyErr_SetString(PyExc_ValueError, "size out of range");
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* Add positions first.. of one chunk read by read_every to the classes or the failures. */
static int take_chunk(const Slot *slots, Py_ssize_t first, Py_ssize_t count, const char *bufs,
                      size_t size, PyObject *firsts, PyObject *classes, PyObject *failures)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        const Slot *s = &slots[i];
        Py_ssize_t k = first + i;
        if (s->err || (size_t)s->got != size) {
            PyObject *text = s->err ? PyUnicode_DecodeLocale(strerror(s->err), "surrogateescape")
                                    : PyUnicode_FromFormat("changed during scan: %s (expected %zu bytes)",
                                                           (size_t)s->got > size ? "grew" : "shrank", size);
            PyObject *item = text == NULL ? NULL : Py_BuildValue("(nN)", k, text);
            int rc = item == NULL ? -1 : PyList_Append(failures, item);
            Py_XDECREF(item);
            if (rc < 0)
                return -1;
            continue;
        }
        PyObject *key = PyBytes_FromStringAndSize(bufs + (size_t)i * (size + 1), (Py_ssize_t)size);
        PyObject *pos = key == NULL ? NULL : PyLong_FromSsize_t(k);
        PyObject *members = pos == NULL ? NULL : PyDict_GetItemWithError(firsts, key); /* borrowed */
        int rc = -1;
        if (members != NULL) {
            /* Its second position: the list (kept in the dict too) becomes a class. */
            if (PyList_GET_SIZE(members) == 1 && PyList_Append(classes, members) < 0)
                rc = -1;
            else
                rc = PyList_Append(members, pos);
        } else if (pos != NULL && !PyErr_Occurred()) {
            PyObject *one = PyList_New(1);
            if (one != NULL) {
                PyList_SET_ITEM(one, 0, Py_NewRef(pos));
                rc = PyDict_SetItem(firsts, key, one);
                Py_DECREF(one);
            }
        }
        Py_XDECREF(key);
        Py_XDECREF(pos);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static PyObject *read_wholes(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int flags, nowait;
    size_t size;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "read_wholes(paths, size, flags, nowait)");
        return NULL;
    }
    if (size_arg(args[1], &size) < 0 || int_arg(args[2], &flags) < 0 || int_arg(args[3], &nowait) < 0)
        return NULL;
    PyObject *paths = PySequence_Tuple(args[0]); /* its own: __fspath__ cannot change it */
    if (paths == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(paths);
    /* Chunk by chunk: a group of 200,000 files read at once held them all (97 MB against the
     * Python loop's 6), and an interrupt waited for the whole group. */
    PyObject **encoded = PyMem_Calloc(CHUNK, sizeof *encoded);
    Slot *slots = PyMem_Malloc(CHUNK * sizeof *slots);
    char *bufs = PyMem_Malloc((size_t)CHUNK * (size + 1));
    PyObject *firsts = PyDict_New(); /* the bytes -> the list of positions holding them */
    PyObject *failures = PyList_New(0), *classes = PyList_New(0), *result = NULL;
    if (encoded == NULL || slots == NULL || bufs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (firsts == NULL || failures == NULL || classes == NULL)
        goto done;
    for (Py_ssize_t first = 0; first < n; first += CHUNK) {
        Py_ssize_t count = n - first < CHUNK ? n - first : CHUNK;
        memset(slots, 0, CHUNK * sizeof *slots);
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_CLEAR(encoded[i]);
            if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(paths, first + i), &encoded[i]))
                goto done;
            slots[i].path = PyBytes_AS_STRING(encoded[i]);
        }
        int missed;
        Py_BEGIN_ALLOW_THREADS
        missed = read_every(slots, count, bufs, size, flags, &nowait);
        Py_END_ALLOW_THREADS
        if (missed) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (take_chunk(slots, first, count, bufs, size, firsts, classes, failures) < 0
                || PyErr_CheckSignals() < 0)
            goto done;
    }
    /* Classes in the order of their first positions (the Python dict's), not of their seconds. */
    if (PyList_Sort(classes) < 0)
        goto done;
    result = Py_BuildValue("(OOi)", classes, failures, nowait);
done:
    free_encoded(encoded, CHUNK);
    PyMem_Free(slots);
    PyMem_Free(bufs);
    Py_DECREF(paths);
    Py_XDECREF(firsts);
    Py_XDECREF(failures);
    Py_XDECREF(classes);
    return result;
}
