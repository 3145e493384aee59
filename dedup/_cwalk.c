/* dedup._cwalk: a walk task's listing of one directory into the file table's columns, compiled.
 *
 * `Columns.list_dir` does what dedup/subtrees.py `_Columns.list_dir` does without a --include or
 * --exclude filter (the only case it is used for): the directory opened, every entry stat'ed
 * through the directory's descriptor (fstatat, symlinks not followed), its regular files inside
 * the size range kept in columns (names joined by NUL per directory, numbers as machine arrays),
 * its subdirectories returned, symlinks and special files counted, failures kept as (path, error)
 * problems with the error's strerror (dedup.walk.describe_os_error). The directory is read and its
 * entries stat'ed with the GIL released, into C buffers; the Python objects are made after.
 *
 * A call that fails for want of memory leaves the object's columns partly appended: not to be used
 * again (a walk task's error ends the task). Times of modification past 2262 or before 1678 are
 * clamped to int64 nanoseconds, as dedup.table.extend_ns does for the Python listings.
 *
 * Why: the Python listing spends about half of a warm walk's CPU in the interpreter, per entry
 * (/usr/lib: 0.33 s of CPU for 72,000 entries in one process, 0.16 of it user time), and the walk is
 * a third of a warm run's CPU. tests/dedup/test_cwalk.py checks it against the Python listing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_cdirents.h"

typedef struct {
    PyObject_HEAD
    PyObject *prefixes, *names, *other_devs, *linked, *problems; /* lists, as PackedDirs' */
    Buf roots, devs, file_dir, name_off, name_len, sizes, inos, mtimes;
    Buf entries, scratch_names, kept_names, dents; /* reused from one directory to the next */
    long long symlinks, special, filtered, dirs;
    Py_ssize_t files;
    int busy; /* a list_dir is reading into the buffers (without the GIL) */
} Columns;

static PyObject *vanished; /* "vanished during scan" */

static void Columns_dealloc(Columns *self)
{
    Py_XDECREF(self->prefixes);
    Py_XDECREF(self->names);
    Py_XDECREF(self->other_devs);
    Py_XDECREF(self->linked);
    Py_XDECREF(self->problems);
    Buf *bufs[] = {&self->roots, &self->devs, &self->file_dir, &self->name_off, &self->name_len,
                   &self->sizes, &self->inos, &self->mtimes, &self->entries,
                   &self->scratch_names, &self->kept_names, &self->dents};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_free(bufs[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Columns_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Columns() takes no arguments");
        return NULL;
    }
    Columns *self = (Columns *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->prefixes = PyList_New(0);
    self->names = PyList_New(0);
    self->other_devs = PyList_New(0);
    self->linked = PyList_New(0);
    self->problems = PyList_New(0);
    if (!self->prefixes || !self->names || !self->other_devs || !self->linked || !self->problems) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Append (path, strerror(err)) to the problems, or (path, "vanished during scan") for an entry
 * gone between the listing and its stat (*entry*); *path* is borrowed. */
static int add_problem(Columns *self, PyObject *path, int err, int entry)
{
    PyObject *text = entry && err == ENOENT ? Py_NewRef(vanished)
                                            : PyUnicode_DecodeLocale(strerror(err), "surrogateescape");
    if (text == NULL)
        return -1;
    PyObject *item = PyTuple_Pack(2, path, text);
    Py_DECREF(text);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(self->problems, item);
    Py_DECREF(item);
    return rc;
}

/* Return prefix + the entry's name, a new str. */
static PyObject *entry_path(Columns *self, PyObject *prefix, const Entry *e)
{
    PyObject *name = PyUnicode_DecodeFSDefaultAndSize(self->scratch_names.data + e->name_at, e->name_len);
    if (name == NULL)
        return NULL;
    PyObject *path = PyUnicode_Concat(prefix, name);
    Py_DECREF(name);
    return path;
}

/* An int argument as a long long, clamped to its range (a size bound past it bounds nothing). */
static int clamped_ll(PyObject *obj, long long *out)
{
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    return 0;
}

/* The kept names' lengths and offsets in characters of their joined str: bytes where every byte
 * decoded to one character (ASCII, or undecodable bytes escaped one by one), else name by name. */
static int put_name_columns(Columns *self, PyObject *joined, Py_ssize_t count, const uint16_t *byte_lens)
{
    int same = PyUnicode_GET_LENGTH(joined) == (Py_ssize_t)self->kept_names.len;
    const char *at = self->kept_names.data;
    uint32_t off = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint16_t len = byte_lens[i];
        if (!same) {
            PyObject *one = PyUnicode_DecodeFSDefaultAndSize(at, len);
            if (one == NULL)
                return -1;
            Py_ssize_t chars = PyUnicode_GET_LENGTH(one);
            Py_DECREF(one);
            at += len + 1;
            len = (uint16_t)chars;
        }
        if (buf_put(&self->name_off, &off, sizeof off) < 0 || buf_put(&self->name_len, &len, sizeof len) < 0)
            return -1;
        off += (uint32_t)len + 1;
    }
    return 0;
}

static PyObject *Columns_list_dir(Columns *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *path, *pathbytes = NULL, *prefix = NULL, *subdirs = NULL;
    unsigned long root;
    unsigned long long root_dev, dev;
    int one_fs;
    long long lowest, highest;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "list_dir(path, root, root_dev, dev, one_fs, lowest, highest)");
        return NULL;
    }
    path = args[0];
    if (!PyUnicode_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "path must be a str");
        return NULL;
    }
    root = PyLong_AsUnsignedLong(args[1]);
    root_dev = PyLong_AsUnsignedLongLong(args[2]);
    dev = PyLong_AsUnsignedLongLong(args[3]);
    one_fs = PyObject_IsTrue(args[4]);
    if (PyErr_Occurred() || clamped_ll(args[5], &lowest) < 0 || clamped_ll(args[6], &highest) < 0)
        return NULL;
    if (self->busy) { /* its buffers are used without the GIL: one call at a time */
        PyErr_SetString(PyExc_RuntimeError, "Columns.list_dir is already running on this object");
        return NULL;
    }
    if (!PyUnicode_FSConverter(path, &pathbytes))
        return NULL;
    Py_ssize_t plen = PyUnicode_GET_LENGTH(path);
    if (plen > 0 && PyUnicode_READ_CHAR(path, plen - 1) == '/')
        prefix = Py_NewRef(path);
    else
        prefix = PyUnicode_FromFormat("%U/", path);
    subdirs = PyList_New(0);
    if (prefix == NULL || subdirs == NULL)
        goto fail;
    self->dirs++;
    self->entries.len = self->scratch_names.len = self->kept_names.len = 0;

    int open_err = 0, read_err = 0, nomem = 0;
    const char *cpath = PyBytes_AS_STRING(pathbytes);
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    int fd;
    do /* os.open retries an interrupted open too (PEP 475) */
        fd = open(cpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        open_err = errno;
    else
        read_err = read_entries(&self->dents, &self->entries, &self->scratch_names, fd, &nomem);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (nomem) {
        PyErr_NoMemory();
        goto fail;
    }
    if (open_err) {
        if (add_problem(self, path, open_err, 0) < 0)
            goto fail;
        Py_DECREF(pathbytes);
        Py_DECREF(prefix);
        return Py_BuildValue("(Ni)", subdirs, 0);
    }

    Py_ssize_t n = (Py_ssize_t)(self->entries.len / sizeof(Entry));
    const Entry *entries = (const Entry *)self->entries.data;
    Py_ssize_t first = self->files, kept = 0;
    uint32_t dir_index = (uint32_t)PyList_GET_SIZE(self->prefixes);
    Buf lens = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        const Entry *e = &entries[i];
        if (e->err) {
            PyObject *p = entry_path(self, prefix, e);
            int rc = p == NULL ? -1 : add_problem(self, p, e->err, 1);
            Py_XDECREF(p);
            if (rc < 0)
                goto fail_lens;
            continue;
        }
        if (e->kind == S_IFREG) {
            if (one_fs && e->dev != root_dev)
                continue;
            if (e->size < lowest || e->size > highest) {
                self->filtered++;
                continue;
            }
            Py_ssize_t pos = first + kept;
            if (e->dev != dev) {
                PyObject *item = Py_BuildValue("(nK)", pos, (unsigned long long)e->dev);
                if (item == NULL || PyList_Append(self->other_devs, item) < 0) {
                    Py_XDECREF(item);
                    goto fail_lens;
                }
                Py_DECREF(item);
            }
            if (e->nlink > 1) {
                PyObject *item = PyLong_FromSsize_t(pos);
                if (item == NULL || PyList_Append(self->linked, item) < 0) {
                    Py_XDECREF(item);
                    goto fail_lens;
                }
                Py_DECREF(item);
            }
            if ((kept && buf_put(&self->kept_names, "", 1) < 0)
                    || buf_put(&self->kept_names, self->scratch_names.data + e->name_at, e->name_len) < 0
                    || buf_put(&lens, &e->name_len, sizeof e->name_len) < 0
                    || buf_put(&self->file_dir, &dir_index, sizeof dir_index) < 0
                    || buf_put(&self->sizes, &e->size, sizeof e->size) < 0
                    || buf_put(&self->inos, &e->ino, sizeof e->ino) < 0
                    || buf_put(&self->mtimes, &e->mtime_ns, sizeof e->mtime_ns) < 0)
                goto fail_lens;
            kept++;
        } else if (e->kind == S_IFDIR) {
            PyObject *p = entry_path(self, prefix, e);
            if (p == NULL)
                goto fail_lens;
            PyObject *item = Py_BuildValue("(NKK)", p, (unsigned long long)e->dev, (unsigned long long)e->ino);
            if (item == NULL || PyList_Append(subdirs, item) < 0) {
                Py_XDECREF(item);
                goto fail_lens;
            }
            Py_DECREF(item);
        } else if (e->kind == S_IFLNK) {
            self->symlinks++;
        } else {
            self->special++;
        }
    }
    if (read_err && add_problem(self, path, read_err, 0) < 0)
        goto fail_lens;
    if (kept) {
        PyObject *joined = PyUnicode_DecodeFSDefaultAndSize(self->kept_names.data, (Py_ssize_t)self->kept_names.len);
        if (joined == NULL)
            goto fail_lens;
        uint32_t root32 = (uint32_t)root;
        uint64_t dev64 = dev;
        if (PyList_Append(self->names, joined) < 0 || PyList_Append(self->prefixes, prefix) < 0
                || put_name_columns(self, joined, kept, (const uint16_t *)lens.data) < 0
                || buf_put(&self->roots, &root32, sizeof root32) < 0
                || buf_put(&self->devs, &dev64, sizeof dev64) < 0) {
            Py_DECREF(joined);
            goto fail_lens;
        }
        Py_DECREF(joined);
        self->files += kept;
    }
    buf_free(&lens);
    Py_DECREF(pathbytes);
    Py_DECREF(prefix);
    return Py_BuildValue("(Nn)", subdirs, kept);

fail_lens:
    buf_free(&lens);
fail:
    Py_XDECREF(pathbytes);
    Py_XDECREF(prefix);
    Py_XDECREF(subdirs);
    return NULL;
}

static PyObject *bytes_of(Buf *b)
{
    return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

/* What dedup.table.PackedDirs.pack returns (its __slots__' order: prefixes, roots, devs, names,
 * file_dir, name_off, name_len, sizes, inos, mtimes, other_devs, problems, symlinks, special,
 * filtered, dirs, linked, tree_key), the arrays as bytes, tree_key (). */
static PyObject *Columns_pack(Columns *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(ONNONNNNNNOOLLLLO())", self->prefixes, bytes_of(&self->roots),
                         bytes_of(&self->devs), self->names, bytes_of(&self->file_dir),
                         bytes_of(&self->name_off), bytes_of(&self->name_len),
                         bytes_of(&self->sizes), bytes_of(&self->inos), bytes_of(&self->mtimes),
                         self->other_devs, self->problems, self->symlinks, self->special,
                         self->filtered, self->dirs, self->linked);
}

static PyMethodDef Columns_methods[] = {
    {"list_dir", (PyCFunction)(void (*)(void))Columns_list_dir, METH_FASTCALL,
     "List one directory into the columns; return (its subdirectories, files kept)."},
    {"pack", (PyCFunction)Columns_pack, METH_NOARGS,
     "Return what PackedDirs.pack would for these columns (PackedDirs.unpack takes it)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ColumnsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dedup._cwalk.Columns",
    .tp_basicsize = sizeof(Columns),
    .tp_dealloc = (destructor)Columns_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Directories listed into a walk task's columns (dedup.subtrees._Columns, compiled).",
    .tp_methods = Columns_methods,
    .tp_new = Columns_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "dedup._cwalk",
    .m_doc = "A walk task's directory listing, compiled.", .m_size = -1,
};

PyMODINIT_FUNC PyInit__cwalk(void)
{
    if (PyType_Ready(&ColumnsType) < 0)
        return NULL;
    vanished = PyUnicode_InternFromString("vanished during scan");
    if (vanished == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Columns", (PyObject *)&ColumnsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
